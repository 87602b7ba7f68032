// importLocalStorage: moves a legacy app's localStorage data into doska (TeacherUchit's stage
// 1.4). Each planned key is either rows for a table — the value parsed as JSON, turned into rows
// by `rows`, upserted in batches on `onConflict`, so a second run duplicates nothing — or a copy
// of the value, as it is, under the same key in a localStore. One bad key is reported and the
// others go on.
import { openLocalStore } from './localstore.js';

/**
 * @typedef {{table: string, rows?: (parsed: any) => any[]|any, onConflict?: string, ignoreDuplicates?: boolean, batch?: number} | {store: string}} ImportPlanEntry
 * @param {any} client a DoskaClient
 * @param {Record<string, ImportPlanEntry>} plan legacy key → where its data goes
 * @param {{source?: {getItem(k: string): string|null}, onProgress?: (p: {key: string, done: number, total: number}) => void}} [opts]
 * @returns {Promise<{imported: Record<string, number>, skipped: string[], errors: {key: string, message: string}[]}>}
 */
export async function importLocalStorage(client, plan, { source = globalThis.localStorage, onProgress } = {}) {
  /** @type {Record<string, number>} */
  const imported = {};
  const skipped = [], errors = [], keys = Object.keys(plan || {});
  let done = 0;
  for (const key of keys) {
    try {
      if (!source) throw new Error('no source to import from: pass {source}');
      const p = /** @type {any} */ (plan[key]), raw = source.getItem(key);
      if (raw == null) skipped.push(key);
      else if (p.store) {
        const s = await openLocalStore(client, p.store);
        s.setItem(key, raw);
        const { error } = await s.flush();
        if (error) throw error;
        imported[key] = 1;
      } else {
        let rows = JSON.parse(raw);
        if (p.rows) rows = p.rows(rows);
        rows = Array.isArray(rows) ? rows : [rows];
        imported[key] = 0;
        for (let i = 0, n = p.batch || 500; i < rows.length; i += n) {
          const { error } = await client.from(p.table).upsert(rows.slice(i, i + n), { onConflict: p.onConflict, ignoreDuplicates: !!p.ignoreDuplicates });
          if (error) throw new Error(`${error.message}${imported[key] ? ` (after ${imported[key]} rows)` : ''}`);
          imported[key] += Math.min(n, rows.length - i);
        }
      }
    } catch (e) {
      delete imported[key];
      errors.push({ key, message: /** @type {Error} */ (e)?.message || String(e) });
    }
    try { onProgress?.({ key, done: ++done, total: keys.length }); } catch { /* the app's callback */ }
  }
  return { imported, skipped, errors };
}
