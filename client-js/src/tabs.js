// Tabs: what clients sharing one `storage` (one device id) say to each other, and the locks
// they take so one of them at a time refreshes a token or flushes the queue. A BroadcastChannel
// named after the device id where the platform has one (browsers; Node too, within a process),
// navigator.locks where available, else an in-process mutex per device and name.

/** @type {Map<string, Promise<unknown>>} the tail of each in-process lock's chain */
const chains = new Map();

export class Tabs {
  /** @param {{deviceId: string}} client */
  constructor(client) {
    this.id = 'doska:' + client.deviceId;
    /** @type {Record<string, Set<(msg: any) => void>>} */
    this.h = {};
    const BC = globalThis.BroadcastChannel;
    if (BC) {
      this.bc = new BC(this.id);
      this.bc.onmessage = (e) => this.h[e.data?.t]?.forEach((cb) => cb(e.data.m));
      // Node: a channel nobody closes must not keep the process alive.
      /** @type {any} */ (this.bc).unref?.();
    }
  }

  /** Tell the other tabs of this device. @param {string} topic @param {any} msg */
  post(topic, msg) {
    try { this.bc?.postMessage({ t: topic, m: msg }); } catch { /* closed */ }
  }

  /** @param {string} topic @param {(msg: any) => void} cb @returns {() => void} unsubscribe */
  on(topic, cb) {
    (this.h[topic] ||= new Set()).add(cb);
    return () => this.h[topic].delete(cb);
  }

  /**
   * Run `fn` while holding the device-wide lock `name`; the others wait.
   * @template T @param {string} name @param {() => Promise<T>|T} fn @returns {Promise<T>}
   */
  withLock(name, fn) {
    const id = this.id + ':' + name;
    const locks = /** @type {any} */ (globalThis.navigator)?.locks;
    if (locks) return locks.request(id, () => fn());
    const run = (chains.get(id) || Promise.resolve()).then(() => fn());
    const tail = run.catch(() => {});
    chains.set(id, tail);
    tail.then(() => chains.get(id) === tail && chains.delete(id));
    return run;
  }

  close() {
    this.bc?.close();
    this.bc = undefined;
  }
}
