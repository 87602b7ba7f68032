// "Reload what you show": screens register a callback here; main.js runs them all once the queue of
// writes made offline has been sent, so the page shows what the server now holds.

const reloaders = new Set();

/** @param {() => void} fn @returns {() => void} unregister */
export function onReload(fn) {
  reloaders.add(fn);
  return () => reloaders.delete(fn);
}

export function reloadAll() {
  for (const r of reloaders) r();
}

export function clearReloaders() {
  reloaders.clear();
}
