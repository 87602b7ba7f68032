// DoskaClient: one object per doska (or Supabase) project. It resolves the options, owns the fetch,
// the storage area and the device id, builds every request's headers with the current access token,
// and hands out the doors: REST (`from`, `rpc`, `schema`), `auth`, `storage`, realtime channels,
// `localStore`, the offline queue and the tabs link.
import { Auth } from './auth.js';
import { PostgrestQuery, rpc } from './rest.js';
import { StorageClient } from './storage.js';
import { Realtime } from './realtime.js';
import { OfflineQueue } from './offline.js';
import { openLocalStore } from './localstore.js';
import { importLocalStorage } from './import.js';
import { Tabs } from './tabs.js';
import { uuid } from './http.js';

/** A Web-Storage-like area kept in memory (Node, or a browser without localStorage). */
export const memoryStorage = () => {
  const m = new Map();
  return {
    getItem: (/** @type {string} */ k) => (m.has(k) ? m.get(k) : null),
    setItem: (/** @type {string} */ k, /** @type {string} */ v) => void m.set(k, String(v)),
    removeItem: (/** @type {string} */ k) => void m.delete(k),
  };
};

const defaultStorage = () => {
  try {
    // Reading `localStorage` throws in sandboxed iframes and when the user blocked site data.
    if (globalThis.localStorage) return globalThis.localStorage;
  } catch {
    /* fall through to memory */
  }
  return memoryStorage();
};

export class DoskaClient {
  /**
   * @param {string} url the project's base URL, e.g. http://localhost:8000
   * @param {string} key the anon (or service_role) key
   * @param {any} [options]
   */
  constructor(url, key, options = {}) {
    if (!url) throw new Error('createClient: url is required');
    if (!key) throw new Error('createClient: key is required');
    this.url = String(url).replace(/\/+$/, '');
    this.key = key;
    this.options = options;
    const f = options.fetch ?? globalThis.fetch;
    // Called unbound: a browser's fetch refuses `this` other than window.
    this.fetch = (/** @type {any} */ input, /** @type {any} */ init) => f(input, init);
    this.storageArea = options.storage ?? defaultStorage();
    this.deviceId = this.storageArea.getItem('doska.device');
    if (!this.deviceId) {
      this.deviceId = uuid();
      this.storageArea.setItem('doska.device', this.deviceId);
    }
    this.tabs = new Tabs(this);
    this.auth = new Auth(this);
    this.storage = new StorageClient(this);
    this.offline = options.offline ? new OfflineQueue(this) : null;
    /** @type {Realtime | undefined} */
    this._rt = undefined;
  }

  /** The realtime connection, made on first use. */
  get realtime() {
    return (this._rt ??= new Realtime(this));
  }

  /**
   * Headers for a request as the current caller: the key, the session's access token (refreshed
   * first when it is about to expire) or the key, and the `headers` option.
   * @returns {Promise<Record<string, string>>}
   */
  async headers() {
    const token = await this.auth._token();
    return { apikey: this.key, Authorization: `Bearer ${token ?? this.key}`, ...this.options.headers };
  }

  /** @param {string} table */
  from(table) {
    return new PostgrestQuery(this, table, this.options.db?.schema);
  }

  /**
   * @param {string} fn
   * @param {Record<string, any>} [args]
   * @param {{head?: boolean, get?: boolean, count?: string}} [opts]
   */
  rpc(fn, args, opts) {
    return rpc(this, this.options.db?.schema, fn, args, opts);
  }

  /** REST calls against another exposed schema. @param {string} name */
  schema(name) {
    return {
      from: (/** @type {string} */ table) => new PostgrestQuery(this, table, name),
      rpc: (/** @type {string} */ fn, /** @type {any} */ args, /** @type {any} */ opts) => rpc(this, name, fn, args, opts),
    };
  }

  /** @param {string} name @param {any} [opts] */
  channel(name, opts) {
    return this.realtime.channel(name, opts);
  }

  /** @param {any} channel */
  removeChannel(channel) {
    return this.realtime.removeChannel(channel);
  }

  removeAllChannels() {
    return this._rt ? this._rt.removeAllChannels() : Promise.resolve([]);
  }

  getChannels() {
    return this._rt ? this._rt.getChannels() : [];
  }

  /** @param {string} name */
  localStore(name) {
    return openLocalStore(this, name);
  }

  /** @param {any} plan @param {any} [opts] */
  importLocalStorage(plan, opts) {
    return importLocalStorage(this, plan, opts);
  }
}

/**
 * @param {string} url
 * @param {string} key
 * @param {any} [options]
 */
export const createClient = (url, key, options) => new DoskaClient(url, key, options);
