// The REST door: postgrest-js's builder, names and result shape `{data, error, count, status,
// statusText}`. A builder is a thenable that sends nothing until awaited. Errors are values in
// PostgREST's shape; a network failure is `NetworkError` with status 0, or — with `offline: true` —
// a write saved in the offline queue (`queued: true`) and a read answered from the read cache
// (`stale: true`).
import { networkError, notJson, send, uuid } from './http.js';

const reserved = /[,()]/;
const key = (/** @type {string | undefined} */ t, /** @type {string} */ k) => (t ? `${t}.${k}` : k);
const list = (/** @type {any[]} */ v) => `{${v.join(',')}}`;
/** A value for cs/cd/ov: a literal string, an array as `{a,b}`, an object as JSON. */
const containment = (/** @type {any} */ v) => (typeof v === 'string' ? v : Array.isArray(v) ? list(v) : JSON.stringify(v));

export class PostgrestQuery {
  /**
   * @param {import('./client.js').DoskaClient} client
   * @param {string} path a table/view name, or `rpc/fn`
   * @param {string} [schema]
   */
  constructor(client, path, schema) {
    this.client = client;
    this.url = new URL(`${client.url}/rest/v1/${path}`);
    this.schema = schema;
    this.method = 'GET';
    /** @type {Record<string, string>} */
    this.h = {};
    /** @type {string[]} */
    this.prefer = [];
    /** @type {any} */
    this.body = undefined;
    /** @type {AbortSignal | undefined} */
    this.signal = undefined;
    this.maybe = false;
    this.verb = false;
    /** @type {string | undefined} the Idempotency-Key of this write, once sent */
    this.idem = undefined;
  }

  /** @param {string} k @param {string} v */
  _p(k, v) {
    this.url.searchParams.append(k, v);
    return this;
  }

  /** @param {string | undefined} count */
  _count(count) {
    if (count) this.prefer.push(`count=${count}`);
  }

  /**
   * On a table: a read. After insert/update/upsert/delete/rpc: the columns of the written rows
   * (`return=representation`).
   * @param {string} [columns]
   * @param {{head?: boolean, count?: string}} [opts]
   */
  select(columns = '*', opts = {}) {
    let quoted = false;
    const cleaned = [...columns].filter((c) => (c === '"' && (quoted = !quoted), quoted || !/\s/.test(c))).join('');
    this.url.searchParams.set('select', cleaned);
    if (this.verb) {
      this.prefer.push('return=representation');
    } else {
      this.verb = true;
      if (opts.head) this.method = 'HEAD';
      this._count(opts.count);
    }
    return this;
  }

  /**
   * @param {string} method
   * @param {any} values
   * @param {{count?: string, defaultToNull?: boolean}} opts
   */
  _write(method, values, opts) {
    this.verb = true;
    this.method = method;
    this.body = values;
    this._count(opts.count);
    if (opts.defaultToNull === false) this.prefer.push('missing=default');
    if (Array.isArray(values) && method == 'POST') {
      const cols = [...new Set(values.flatMap(Object.keys))];
      if (cols.length) this.url.searchParams.set('columns', cols.map((c) => `"${c}"`).join(','));
    }
    return this;
  }

  /** @param {any} values @param {{count?: string, defaultToNull?: boolean}} [opts] */
  insert(values, opts = {}) {
    return this._write('POST', values, opts);
  }

  /** @param {any} values @param {{onConflict?: string, ignoreDuplicates?: boolean, count?: string, defaultToNull?: boolean}} [opts] */
  upsert(values, opts = {}) {
    this.prefer.push(`resolution=${opts.ignoreDuplicates ? 'ignore' : 'merge'}-duplicates`);
    if (opts.onConflict !== undefined) this.url.searchParams.set('on_conflict', opts.onConflict);
    return this._write('POST', values, opts);
  }

  /** @param {any} values @param {{count?: string}} [opts] */
  update(values, opts = {}) {
    return this._write('PATCH', values, opts);
  }

  /** @param {{count?: string}} [opts] */
  delete(opts = {}) {
    return this._write('DELETE', undefined, opts);
  }

  // Filters: each appends `column=op.value`, as postgrest-js does.
  /** @param {string} c @param {any} v */
  eq(c, v) { return this._p(c, `eq.${v}`); }
  /** @param {string} c @param {any} v */
  neq(c, v) { return this._p(c, `neq.${v}`); }
  /** @param {string} c @param {any} v */
  gt(c, v) { return this._p(c, `gt.${v}`); }
  /** @param {string} c @param {any} v */
  gte(c, v) { return this._p(c, `gte.${v}`); }
  /** @param {string} c @param {any} v */
  lt(c, v) { return this._p(c, `lt.${v}`); }
  /** @param {string} c @param {any} v */
  lte(c, v) { return this._p(c, `lte.${v}`); }
  /** @param {string} c @param {string} v */
  like(c, v) { return this._p(c, `like.${v}`); }
  /** @param {string} c @param {string} v */
  ilike(c, v) { return this._p(c, `ilike.${v}`); }
  /** @param {string} c @param {boolean | null} v */
  is(c, v) { return this._p(c, `is.${v}`); }
  /** @param {string} c @param {any[]} v */
  in(c, v) {
    const items = [...new Set(v)].map((s) => (typeof s == 'string' && reserved.test(s) ? `"${s}"` : `${s}`));
    return this._p(c, `in.(${items.join(',')})`);
  }
  /** @param {string} c @param {any} v */
  contains(c, v) { return this._p(c, `cs.${containment(v)}`); }
  /** @param {string} c @param {any} v */
  containedBy(c, v) { return this._p(c, `cd.${containment(v)}`); }
  /** @param {string} c @param {any} v */
  overlaps(c, v) { return this._p(c, `ov.${typeof v == 'string' ? v : list(v)}`); }
  /**
   * @param {string} c
   * @param {string} q
   * @param {{config?: string, type?: 'plain' | 'phrase' | 'websearch'}} [opts]
   */
  textSearch(c, q, { config, type } = {}) {
    const t = type ? { plain: 'pl', phrase: 'ph', websearch: 'w' }[type] : '';
    return this._p(c, `${t}fts${config ? `(${config})` : ''}.${q}`);
  }
  /** @param {Record<string, any>} q */
  match(q) {
    for (const [c, v] of Object.entries(q)) if (v !== undefined) this.eq(c, v);
    return this;
  }
  /** @param {string} c @param {string} op @param {any} v */
  not(c, op, v) { return this._p(c, `not.${op}.${v}`); }
  /** @param {string} filters @param {{referencedTable?: string, foreignTable?: string}} [opts] */
  or(filters, { referencedTable, foreignTable } = {}) {
    const t = referencedTable ?? foreignTable;
    return this._p(t ? `${t}.or` : 'or', `(${filters})`);
  }
  /** @param {string} c @param {string} op @param {any} v */
  filter(c, op, v) { return this._p(c, `${op}.${v}`); }

  /**
   * @param {string} column
   * @param {{ascending?: boolean, nullsFirst?: boolean, referencedTable?: string, foreignTable?: string}} [opts]
   */
  order(column, { ascending = true, nullsFirst, referencedTable, foreignTable } = {}) {
    const k = key(referencedTable ?? foreignTable, 'order');
    const prev = this.url.searchParams.get(k);
    const nulls = nullsFirst === undefined ? '' : nullsFirst ? '.nullsfirst' : '.nullslast';
    this.url.searchParams.set(k, `${prev ? prev + ',' : ''}${column}.${ascending ? 'asc' : 'desc'}${nulls}`);
    return this;
  }

  /** @param {number} n @param {{referencedTable?: string, foreignTable?: string}} [opts] */
  limit(n, { referencedTable, foreignTable } = {}) {
    this.url.searchParams.set(key(referencedTable ?? foreignTable, 'limit'), `${n}`);
    return this;
  }

  /** @param {number} from @param {number} to @param {{referencedTable?: string, foreignTable?: string}} [opts] */
  range(from, to, { referencedTable, foreignTable } = {}) {
    const t = referencedTable ?? foreignTable;
    this.url.searchParams.set(key(t, 'offset'), `${from}`);
    this.url.searchParams.set(key(t, 'limit'), `${to - from + 1}`);
    return this;
  }

  /** Exactly one row as an object; none or several is an error (PGRST116, 406). */
  single() {
    this.h.Accept = 'application/vnd.pgrst.object+json';
    return this;
  }

  /** At most one row as an object, or null; several is an error. */
  maybeSingle() {
    this.maybe = true;
    return this;
  }

  /** The answer as CSV text. */
  csv() {
    this.h.Accept = 'text/csv';
    return this;
  }

  /** @param {AbortSignal} signal */
  abortSignal(signal) {
    this.signal = signal;
    return this;
  }

  /** @param {string} name @param {string} value */
  setHeader(name, value) {
    this.h[name] = value;
    return this;
  }

  /**
   * @param {((value: any) => any) | null} [ok]
   * @param {((reason: any) => any) | null} [fail]
   */
  then(ok, fail) {
    return this._run().then(ok, fail);
  }

  async _run() {
    const { client, method } = this;
    const read = method == 'GET' || method == 'HEAD';
    const h = { ...this.h };
    if (this.schema) h[read ? 'Accept-Profile' : 'Content-Profile'] = this.schema;
    if (!read) h['Content-Type'] = 'application/json';
    if (this.prefer.length) h.Prefer = this.prefer.join(',');
    // The key is made once per builder: awaiting the same write again is a retry, not a new write.
    if (client.offline && !read) h['Idempotency-Key'] = this.idem ??= uuid();
    const url = this.url.toString();
    // BigInt values (int8 ids) go as their decimal text, as postgrest-js sends them.
    const body = this.body === undefined ? undefined : JSON.stringify(this.body, (_, v) => (typeof v == 'bigint' ? `${v}` : v));
    const headers = { ...(await client.headers()), ...h };
    const r = await send(client, url, { method, headers, body, signal: this.signal });
    const none = { data: null, count: null, status: 0, statusText: '' };
    // What else shapes the answer to a GET, so the read cache keeps answers apart: the media type,
    // schema and Prefer (count) — and the user, so one user's answers never serve another's.
    const shape = [h.Accept, h['Accept-Profile'], h.Prefer, client.auth.currentSession?.user?.id].join(';');
    if (r.thrown) {
      const e = networkError(r.thrown);
      const q = client.offline;
      if (q && e.name == 'NetworkError') {
        try {
          if (!read) {
            const { Authorization, ...kept } = headers;
            const saved = await q.enqueue({ method, url, headers: kept, body });
            if (saved?.error) throw saved.error;
            return { ...none, error: null, queued: true };
          }
          const hit = await q.cached(url, shape);
          if (hit) return { ...hit, error: null, stale: true };
        } catch (qe) {
          // The queue could not keep it (storage full, say): the caller must know it is not saved.
          return { ...none, error: { ...e, details: `offline queue: ${/** @type {any} */ (qe)?.message ?? qe}` } };
        }
      }
      const { status, ...error } = e;
      return { ...none, error };
    }
    const { res, text = '', json, bad } = r;
    let { status, statusText } = /** @type {Response} */ (res);
    let data = null, error = null, count = null;
    if (bad && (!res?.ok || h.Accept != 'text/csv')) {
      error = notJson(/** @type {Response} */ (res), url, text);
    } else if (!res?.ok) {
      error = json && typeof json == 'object' && !Array.isArray(json)
        ? json
        : { message: text || `${status} ${statusText}`, details: null, hint: null, code: `${status}` };
    } else {
      data = h.Accept == 'text/csv' ? text : json ?? null;
      const range = res.headers.get('content-range')?.split('/')[1];
      if (h.Prefer?.includes('count=') && range && range != '*') count = parseInt(range);
      if (this.maybe && Array.isArray(data)) {
        if (data.length > 1) {
          error = {
            code: 'PGRST116',
            details: `Results contain ${data.length} rows, application/vnd.pgrst.object+json requires 1 row`,
            hint: null,
            message: 'JSON object requested, multiple (or no) rows returned',
          };
          data = count = null;
          status = 406;
          statusText = 'Not Acceptable';
        } else data = data[0] ?? null;
      }
    }
    const out = { data, error, count, status, statusText };
    if (method == 'GET' && !error && client.offline) {
      try {
        await client.offline.remember(url, shape, { data, count, status, statusText });
      } catch {
        /* a cache that cannot keep an answer costs only a future stale read */
      }
    }
    return out;
  }
}

/**
 * A call of a database function: POST with the arguments as JSON, or GET/HEAD with them in the
 * query string (`{get: true}` / `{head: true}`; arrays as `{a,b}`).
 * @param {import('./client.js').DoskaClient} client
 * @param {string | undefined} schema
 * @param {string} fn
 * @param {Record<string, any>} [args]
 * @param {{head?: boolean, get?: boolean, count?: string}} [opts]
 */
export function rpc(client, schema, fn, args = {}, { head, get, count } = {}) {
  const q = new PostgrestQuery(client, `rpc/${fn}`, schema);
  q.verb = true;
  const isObject = (/** @type {any} */ v) => v !== null && typeof v == 'object' && (!Array.isArray(v) || v.some(isObject));
  if ((head || get) && !(head && Object.values(args).some(isObject))) {
    q.method = head ? 'HEAD' : 'GET';
    for (const [k, v] of Object.entries(args)) if (v !== undefined) q._p(k, Array.isArray(v) ? list(v) : `${v}`);
    q._count(count);
  } else {
    q.method = 'POST';
    q.body = args;
    q._count(count);
    if (head) q.prefer.push('return=minimal');
  }
  return q;
}
