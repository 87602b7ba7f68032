// localStore(name): the Web Storage interface over the signed-in user's rows of
// `public.doska_local_store` (docs/client-js.md, "localStore: server contract"). Reads are
// synchronous from a local copy; writes apply at once and are upserted in the background. Every
// key carries the version the server assigned to its last write: a change with a version not
// above the one known is an older echo and is ignored, and while a local write is on its way the
// local value stands (the server will order it after what it has). Other tabs hear of a write
// over the tabs link, other devices through realtime. The copy and the writes not yet sent are
// kept in the storage area, so a reload (or a start while offline) loses nothing.
import { send } from './http.js';

const CAP = 5 * 1024 * 1024; // code units of keys + values, as localStorage counts
const TABLE = '/rest/v1/doska_local_store';

/**
 * @typedef {{key: string, oldValue: string|null, newValue: string|null, origin: 'local'|'tab'|'remote'}} StoreEvent
 */

/**
 * Open (once per client and name) the signed-in user's store `name`.
 * @param {any} client a DoskaClient @param {string} name @returns {Promise<LocalStore>}
 */
export function openLocalStore(client, name) {
  const uid = client.auth?.currentSession?.user?.id;
  if (!uid) return Promise.reject(new Error('localStore: sign in first (signInAnonymously works too)'));
  const all = (client._stores ||= {}), id = uid + ':' + name;
  return (all[id] ||= new LocalStore(client, name, id).open().catch((e) => {
    delete all[id];
    throw e;
  }));
}

export class LocalStore {
  /** @param {any} client @param {string} name @param {string} id `<user id>:<name>` */
  constructor(client, name, id) {
    this.c = client;
    this.name = name;
    this.id = id;
    this.key_ = 'doska.ls:' + id;
    /** @type {Map<string, string|null>} the local copy (null: deleted) */
    this.d = new Map();
    /** @type {Map<string, number>} the server's version of each key's last write */
    this.ver = new Map();
    /** @type {Map<string, string|null>} local writes not yet acknowledged */
    this.p = new Map();
    /** @type {Map<string, {v: string|null, version: number}>} the newest remote write seen while a local one was pending */
    this.r = new Map();
    /** @type {Map<string, string|null>} writes acknowledged since the last save */
    this.done = new Map();
    this.size = 0;
    /** @type {Set<(e: StoreEvent) => void>} */
    this.subs = new Set();
    this.tries = 0;
    /** @type {((v?: any) => void) | undefined} wakes a sync waiting for the network */
    this.wake = undefined;
    /** @type {Promise<{error: Error|null}> | null} */
    this.busy = null;
  }

  async open() {
    const c = this.c;
    try {
      const s = JSON.parse(c.storageArea.getItem(this.key_) || '{}');
      for (const [k, v, n] of s.d || []) this.put(k, v, 'remote'), this.ver.set(k, n);
      for (const [k, v] of s.p || []) this.put(k, v, 'local'), this.p.set(k, v);
    } catch { /* no usable copy: the server's is loaded below */ }
    this.off = c.tabs.on('ls:' + this.key_, (/** @type {[string, string|null]} */ [k, v]) => this.p.has(k) || this.put(k, v, 'tab'));
    this.online = () => this.wake?.();
    // Signed out, or another user signed in (here or in another tab): this user's data goes.
    this.authSub = c.auth.onAuthStateChange((/** @type {string} */ _e, /** @type {any} */ s) => s?.user?.id + ':' + this.name !== this.id && this.close(true)).data?.subscription;
    globalThis.addEventListener?.('online', this.online);
    await new Promise((resolve, reject) => {
      let first = true;
      this.ch = c.channel('doska.ls.' + this.name)
        .on('postgres_changes', { event: '*', schema: 'public', table: 'doska_local_store', filter: 'store=eq.' + this.name },
          (/** @type {any} */ e) => e.new?.key != null && this.apply(e.new.key, e.new.value, e.new.version))
        // Past the server's replay window: start again from the server's copy.
        .on('system', {}, (/** @type {any} */ m) => m?.status === 'error' && m.extension === 'postgres_changes' && this.load().catch(() => {}))
        .subscribe((/** @type {string} */ status, /** @type {Error} */ err) => {
          // The first join reads the server's copy; later ones resume (or get the refetch message).
          if (status === 'SUBSCRIBED' && !this.loaded && (this.loaded = true)) this.load().then(() => first && resolve(this), (e) => first && reject(e)).finally(() => (first = false));
          else if (first && status !== 'SUBSCRIBED') {
            first = false;
            if (c.storageArea.getItem(this.key_)) resolve(this); // offline: the kept copy
            else reject(new Error(`localStore(${this.name}): ${err?.message || status}`));
          }
        });
    }).catch((e) => {
      this.close();
      throw e;
    });
    if (this.p.size) this.flush();
    return this;
  }

  /** Merge the server's rows. */
  async load() {
    const r = await send(this.c, this.c.url + TABLE + '?store=eq.' + encodeURIComponent(this.name) + '&select=key,value,version',
      { headers: await this.c.headers() });
    if (!r.res?.ok || !Array.isArray(r.json)) {
      throw new Error(`localStore(${this.name}): ${r.json?.message || /** @type {any} */ (r.thrown)?.message || 'the server answered ' + r.res?.status}`);
    }
    for (const row of r.json) this.apply(row.key, row.value, row.version);
  }

  /** A write the server ordered: applied unless it is older than what we know or a local write is pending. */
  apply(/** @type {string} */ k, /** @type {string|null} */ v, /** @type {number} */ version) {
    if (version <= (this.ver.get(k) ?? -1)) return;
    this.ver.set(k, version);
    if (this.p.has(k)) this.r.set(k, { v, version });
    else this.put(k, v, 'remote');
    this.save();
  }

  /** Set the local copy and tell subscribers if it changed. */
  put(/** @type {string} */ k, /** @type {string|null} */ v, /** @type {StoreEvent['origin']} */ origin) {
    const old = this.getItem(k);
    this.d.set(k, v);
    if (old === v) return;
    this.size += (v == null ? 0 : k.length + v.length) - (old == null ? 0 : k.length + old.length);
    for (const cb of this.subs) try { cb({ key: k, oldValue: old, newValue: v, origin }); } catch { /* the app's */ }
  }

  /** @param {string} k @param {string|null} v */
  write(k, v) {
    this.put(k, v, 'local');
    this.p.set(k, v);
    this.c.tabs.post('ls:' + this.key_, [k, v]);
    this.save();
    queueMicrotask(() => this.flush());
  }

  /** Keep the copy and the pending writes (merged with other tabs' pending ones) in storage. */
  save() {
    if (this.saving) return;
    this.saving = true;
    queueMicrotask(() => {
      this.saving = false;
      const area = this.c.storageArea;
      try {
        const p = new Map(JSON.parse(area.getItem(this.key_) || '{}').p || []);
        for (const [k, v] of this.done) if (p.get(k) === v) p.delete(k);
        this.done.clear();
        for (const e of this.p) p.set(...e);
        const d = [...this.d].map(([k, v]) => [k, v, this.ver.get(k) ?? 0]);
        // Storage full: keep at least the writes not yet sent (the server has the rest).
        try { area.setItem(this.key_, JSON.stringify({ d, p: [...p] })); } catch { area.setItem(this.key_, JSON.stringify({ p: [...p] })); }
      } catch { /* still full, or corrupt: the pending writes stay in memory and go when they can */ }
    });
  }

  getItem(/** @type {string} */ k) { return this.d.get(String(k)) ?? null; }

  /** @param {string} k @param {string} v */
  setItem(k, v) {
    k = String(k);
    v = String(v);
    const old = this.getItem(k);
    if (this.size + k.length + v.length - (old == null ? 0 : k.length + old.length) > CAP) {
      const msg = `localStore(${this.name}): setting '${k}' would exceed the 5 MB quota`;
      throw typeof DOMException == 'function' ? new DOMException(msg, 'QuotaExceededError') : Object.assign(new Error(msg), { name: 'QuotaExceededError' });
    }
    if (old !== v) this.write(k, v);
  }

  removeItem(/** @type {string} */ k) {
    if (this.getItem(k) != null) this.write(String(k), null);
  }

  clear() { for (const k of this.keys()) this.write(k, null); }

  keys() { return [...this.d.keys()].filter((k) => this.d.get(k) != null); }

  key(/** @type {number} */ i) { return this.keys()[i] ?? null; }

  get length() { return this.keys().length; }

  /** @param {(e: StoreEvent) => void} cb @returns {() => void} */
  subscribe(cb) {
    this.subs.add(cb);
    return () => this.subs.delete(cb);
  }

  /**
   * Resolves when every write so far has reached the server: `{error: null}`, or `{error}` when
   * the server refused them (they stay pending and go again with the next write or flush).
   * @returns {Promise<{error: Error|null}>}
   */
  flush() {
    return (this.busy ||= this.sync().finally(() => (this.busy = null)));
  }

  async sync() {
    while (this.p.size && !this.closed) {
      // Batches of about 256 K characters, so 5 MB of offline writes is not one request.
      let n = 0;
      const batch = [...this.p].filter(([k, v]) => (n += k.length + (v?.length ?? 0)) < 262144 || n === k.length + (v?.length ?? 0));
      const c = this.c;
      let r;
      try {
        r = await send(c, c.url + TABLE + '?on_conflict=user_id,store,key', {
          method: 'POST',
          headers: { ...(await c.headers()), 'Content-Type': 'application/json', Prefer: 'return=representation,resolution=merge-duplicates' },
          body: JSON.stringify(batch.map(([key, value]) => ({ store: this.name, key, value }))),
        });
      } catch (e) {
        r = { thrown: e };
      }
      const st = r.res?.status || 0;
      if (st >= 400 && st < 500) {
        return { error: new Error(`localStore(${this.name}): the server refused the writes (${st}): ${r.json?.message || r.text}`) };
      }
      if (!r.res?.ok || !Array.isArray(r.json)) {
        // No network or a server in trouble: wait (backoff, or the browser's `online`), then again.
        await new Promise((go) => {
          this.wake = go;
          /** @type {any} */ (setTimeout(go, Math.min(30000, 500 * 2 ** this.tries++))).unref?.();
        });
        continue;
      }
      this.tries = 0;
      const sent = new Map(batch);
      for (const { key: k, value: v, version } of r.json) {
        if (this.p.has(k) && this.p.get(k) === sent.get(k)) {
          this.p.delete(k);
          this.done.set(k, v);
          const remote = this.r.get(k);
          this.r.delete(k);
          // A write another device got in after ours, seen while ours was on its way, stands.
          if (remote && remote.version > version) this.put(k, remote.v, 'remote');
        }
        if (version > (this.ver.get(k) ?? -1)) this.ver.set(k, version);
      }
      this.save();
    }
    return { error: null };
  }

  /** Stop listening (the copy and pending writes stay in storage); `forget` empties the copy in memory. */
  close(forget = false) {
    this.closed = true;
    if (forget) {
      this.d.clear();
      this.size = 0;
    }
    this.authSub?.unsubscribe();
    this.off?.();
    if (this.online) globalThis.removeEventListener?.('online', this.online);
    if (this.ch) this.c.removeChannel(this.ch);
    this.wake?.();
    delete this.c._stores?.[this.id];
  }
}
