// OfflineQueue (`options.offline`): writes that failed for lack of network, kept in order in the
// storage area across reloads and sent again — each with the Idempotency-Key it was first sent
// with, so a write whose answer was lost is applied once. A 4xx answer moves a write to `failed`
// (reported, never retried); a network failure or 5xx stops the flush and retries later with
// backoff, on the browser's `online` event, or on `flush()`. One tab at a time flushes (a
// device-wide lock). Also the read cache: the last answer to each GET, for a select that fails
// for lack of network.
import { send, uuid } from './http.js';

const Q = 'doska.queue', F = 'doska.failed', C = 'doska.cache';
const CACHE_MAX = 50;

/**
 * @typedef {{id: string, method: string, url: string, headers: Record<string,string>, body?: string}} QueuedRequest
 * @typedef {{status: 'online'|'offline'|'syncing', pending: number, failed: number, error: Error|null}} QueueState
 */

export class OfflineQueue {
  /** @param {any} client a DoskaClient */
  constructor(client) {
    this.c = client;
    this.s = client.storageArea;
    /** @type {'online'|'offline'|'syncing'} */
    this.status = globalThis.navigator?.onLine === false ? 'offline' : 'online';
    /** @type {Error|null} the last trouble with the persisted queue (corrupt, storage full) */
    this.error = null;
    /** @type {Set<(state: QueueState) => void>} */
    this.subs = new Set();
    this.tries = 0;
    /** @type {Promise<{sent: number, failed: number, pending: number}> | null} */
    this.busy = null;
    /** @type {any} the backoff timer */
    this.t = null;
    this.read(Q); // finds a corrupt queue now, so the first subscriber hears of it
    client.tabs.on('queue', () => this.emit());
    globalThis.addEventListener?.('online', () => this.flush());
    globalThis.addEventListener?.('offline', () => this.set('offline'));
    if (this.pending()) this.later();
    client.auth?.onAuthStateChange((/** @type {string} */ e) => e === 'SIGNED_IN' && this.pending() && this.flush());
  }

  /**
   * A persisted list; a corrupt one is moved aside under `<key>.corrupt` (never dropped) and
   * reported through `error` and the subscribers.
   * @param {string} key @returns {any[]}
   */
  read(key) {
    const raw = this.s.getItem(key);
    if (raw == null) return [];
    try {
      const v = JSON.parse(raw);
      if (Array.isArray(v)) return v;
    } catch { /* below */ }
    try { this.s.setItem(key + '.corrupt', raw); this.s.removeItem(key); } catch { /* kept where it is */ }
    this.fail(new Error(`doska: the persisted offline queue (${key}) is corrupt; kept as ${key}.corrupt, starting empty`));
    return [];
  }

  /** @param {string} key @param {any[]} list */
  write(key, list) {
    if (list.length) this.s.setItem(key, JSON.stringify(list));
    else this.s.removeItem(key);
  }

  /** @param {Error} e */
  fail(e) {
    this.error = e;
    this.emit();
  }

  /** @param {'online'|'offline'|'syncing'} status */
  set(status) {
    this.status = status;
    this.emit();
  }

  emit() {
    const state = { status: this.status, pending: this.pending(), failed: this.failed().length, error: this.error };
    for (const cb of this.subs) try { cb(state); } catch { /* the app's callback */ }
  }

  /** Called with the state now and on every change. @param {(state: QueueState) => void} cb */
  subscribe(cb) {
    this.subs.add(cb);
    cb({ status: this.status, pending: this.pending(), failed: this.failed().length, error: this.error });
    return () => this.subs.delete(cb);
  }

  pending() { return this.read(Q).length; }

  /** Writes the server refused (4xx), with its answer: `{..request, status, error}`. */
  failed() { return this.read(F); }

  /**
   * Save a write for later, after the ones already queued. Resolves once it is in storage:
   * `{error: null}`, or `{error}` when storage refused it (full) — the write is then NOT queued.
   * @param {{method: string, url: string, headers?: Record<string,string>, body?: string}} req
   * @returns {Promise<{error: Error|null}>}
   */
  async enqueue({ method, url, headers = {}, body }) {
    const { Authorization, authorization, ...h } = headers; // a fresh token is added when sent
    const entry = { id: uuid(), user: this.c.auth?.currentSession?.user?.id ?? null, method, url, headers: h, body };
    const save = () => this.write(Q, [...this.read(Q), entry]);
    try {
      await this.c.tabs.withLock('queue', () => {
        try { save(); } catch {
          // Storage full: the read cache gives way to the write, then it is tried once more.
          for (const k of this.read(C)) this.s.removeItem(k);
          this.s.removeItem(C);
          save();
        }
      });
    } catch (e) {
      const error = new Error('doska: could not save the write in the offline queue: ' + /** @type {Error} */ (e).message);
      error.name = /** @type {Error} */ (e).name === 'QuotaExceededError' ? 'QuotaExceededError' : 'StorageError';
      this.fail(error);
      return { error };
    }
    this.status = 'offline';
    this.emit();
    this.c.tabs.post('queue', 1);
    this.t || this.later();
    return { error: null };
  }

  /** Retry with backoff: 1 s, 2 s, 4 s … at most a minute. */
  later() {
    clearTimeout(this.t);
    this.t = setTimeout(() => { this.t = null; this.flush(); }, Math.min(60000, 1000 * 2 ** this.tries++));
    /** @type {any} */ (this.t).unref?.();
  }

  /** Remove one sent (or refused) entry; another tab may have changed the list meanwhile. */
  drop(/** @type {any} */ e, /** @type {any} */ failed = null) {
    const s = JSON.stringify(e);
    return this.c.tabs.withLock('queue', () => {
      const q = this.read(Q), i = q.findIndex((x) => JSON.stringify(x) === s);
      if (i >= 0) q.splice(i, 1);
      this.write(Q, q);
      if (failed) this.write(F, [...this.read(F), failed].slice(-100));
    });
  }

  /**
   * Send the queued writes in order. Stops at the first one that gets no answer or a 5xx.
   * @returns {Promise<{sent: number, failed: number, pending: number}>}
   */
  flush() {
    return (this.busy ||= this.c.tabs.withLock('flush', async () => {
      let sent = 0, failed = 0, ok = true;
      clearTimeout(this.t);
      this.t = null;
      // Each user's writes go as that user: others' wait for them to sign in again.
      for (let e; ok && (e = this.read(Q).find((x) => x?.user === undefined || x.user === (this.c.auth?.currentSession?.user?.id ?? null))); ) {
        this.set('syncing');
        try { new URL(e.url); if (typeof e.method != 'string') throw 0; } catch {
          // Not a request at all (storage edited by hand?): set aside as failed, never sent.
          failed++;
          await this.drop(e, { ...e, headers: undefined, status: 0, error: 'not a queued request' });
          continue;
        }
        let headers;
        try { headers = { ...e.headers, ...(await this.c.headers()) }; } catch { ok = false; break; }
        const r = await send(this.c, e.url, { method: e.method, headers, body: e.body });
        const st = r.res?.status || 0;
        // No answer, the server in trouble, or a token it no longer takes (401): later.
        if (!st || st >= 500 || st === 408 || st === 429 || st === 401) ok = false;
        else if (st >= 400) {
          failed++;
          await this.drop(e, { ...e, headers: undefined, status: st, error: r.json ?? r.text });
        } else {
          sent++;
          await this.drop(e);
        }
        this.c.tabs.post('queue', 1);
      }
      if (ok) this.tries = 0;
      else this.later();
      this.set(ok ? 'online' : 'offline');
      return { sent, failed, pending: this.pending() };
    }).catch((/** @type {Error} */ e) => {
      this.fail(e);
      return { sent: 0, failed: 0, pending: this.pending() };
    }).finally(() => { this.busy = null; }));
  }

  /** The cache entry's key. @param {string} url @param {string} [accept] */
  ck(url, accept) { return C + ':' + (accept || '') + ' ' + url; }

  /** The last answer to this GET, or null. @param {string} url @param {string} [accept] */
  cached(url, accept) {
    try { return JSON.parse(this.s.getItem(this.ck(url, accept)) || 'null'); } catch { return null; }
  }

  /**
   * Keep a successful GET's answer (up to 256 K characters); the oldest of more than 50 go.
   * Storage being full only means nothing is cached, and a queued write makes the cache give way.
   * @param {string} url @param {string|undefined} accept @param {{data: any, count?: number|null, status: number, statusText: string}} result
   */
  remember(url, accept, { data, count, status, statusText }) {
    const k = this.ck(url, accept), v = JSON.stringify({ data, count, status, statusText });
    if (v.length > 262144) return; // a big answer would crowd the queue out of storage
    try {
      const keys = this.read(C).filter((x) => x !== k);
      keys.push(k);
      for (const old of keys.splice(0, keys.length - CACHE_MAX)) this.s.removeItem(old);
      this.write(C, keys);
      this.s.setItem(k, v);
    } catch { /* full: not cached */ }
  }
}
