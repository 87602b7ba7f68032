// The storage door: storage-js's names and result shapes over doska's /storage/v1. Files larger than
// the TUS threshold (default 6 MB, option `tus: {threshold, chunkSize}`) upload resumably (tus.js).
// Errors are values `{name: 'StorageApiError', message, status, statusCode}`; a network failure is
// `NetworkError` with status 0.
import { encodePath, networkError, notJson, query, send } from './http.js';
import { tusUpload } from './tus.js';

const MB = 1024 * 1024;

/**
 * One storage request; `{data}` with the parsed JSON (or the Response with `raw`), or `{error}`.
 * @param {import('./client.js').DoskaClient} client
 * @param {string} method
 * @param {string} path under /storage/v1
 * @param {any} [body] a plain object is sent as JSON, anything else as it is
 * @param {Record<string, string>} [extra] headers
 * @param {boolean} [raw]
 * @returns {Promise<{data: any, error: any}>}
 */
export async function call(client, method, path, body, extra, raw) {
  const url = `${client.url}/storage/v1${path}`;
  const json = body?.constructor === Object || Array.isArray(body);
  const headers = { ...(await client.headers()), ...(json && { 'Content-Type': 'application/json' }), ...extra };
  const init = { method, headers, body: json ? JSON.stringify(body) : body, duplex: 'half' };
  const { res, text = '', json: j, bad, thrown } = await send(client, url, init, { raw });
  if (!res) return { data: null, error: networkError(thrown) };
  const status = res.status;
  if (res.ok && raw) return { data: res, error: null };
  if (bad) return { data: null, error: { name: 'StorageUnknownError', ...notJson(res, url, text), status } };
  if (!res.ok) {
    const message = j?.message ?? j?.error ?? (text || `${status} ${res.statusText}`);
    return { data: null, error: { name: 'StorageApiError', message, status, statusCode: `${j?.statusCode ?? status}`, error: j?.error } };
  }
  return { data: j ?? null, error: null };
}

export class StorageClient {
  /** @param {import('./client.js').DoskaClient} client */
  constructor(client) {
    this.c = client;
  }

  /** @param {string} bucket */
  from(bucket) {
    return new Bucket(this.c, bucket);
  }

  listBuckets() {
    return call(this.c, 'GET', '/bucket');
  }

  /** @param {string} id */
  getBucket(id) {
    return call(this.c, 'GET', `/bucket/${encodeURIComponent(id)}`);
  }

  /**
   * @param {string} id
   * @param {{public?: boolean, fileSizeLimit?: number | string | null, allowedMimeTypes?: string[] | null}} [o]
   */
  async createBucket(id, o = { public: false }) {
    const r = await call(this.c, 'POST', '/bucket', bucketBody(id, o));
    return { data: r.error ? null : { name: id }, error: r.error };
  }

  /** @param {string} id @param {{public?: boolean, fileSizeLimit?: number | string | null, allowedMimeTypes?: string[] | null}} o */
  updateBucket(id, o) {
    return call(this.c, 'PUT', `/bucket/${encodeURIComponent(id)}`, bucketBody(id, o));
  }

  /** @param {string} id */
  emptyBucket(id) {
    return call(this.c, 'POST', `/bucket/${encodeURIComponent(id)}/empty`, {});
  }

  /** @param {string} id */
  deleteBucket(id) {
    return call(this.c, 'DELETE', `/bucket/${encodeURIComponent(id)}`, {});
  }
}

/** @param {string} id @param {any} o */
const bucketBody = (id, o) => ({
  id,
  name: id,
  public: o.public,
  file_size_limit: o.fileSizeLimit,
  allowed_mime_types: o.allowedMimeTypes,
});

/** @typedef {{upsert?: boolean, contentType?: string, cacheControl?: string | number, metadata?: Record<string, any>, resumable?: boolean}} FileOptions */

class Bucket {
  /** @param {import('./client.js').DoskaClient} client @param {string} bucket */
  constructor(client, bucket) {
    this.c = client;
    this.bucket = bucket;
  }

  /** `bucket/path`, each part percent-encoded. @param {string} path */
  _p(path) {
    return encodePath(`${this.bucket}/${path.replace(/^\/+|\/+$/g, '').replace(/\/+/g, '/')}`);
  }

  /**
   * Uploads `body` to `path`: one request, or TUS above the threshold (or with `resumable: true`).
   * @param {string} path
   * @param {Blob | ArrayBuffer | ArrayBufferView | string | FormData | ReadableStream} body
   * @param {FileOptions} [o]
   * @param {string} [method]
   */
  async upload(path, body, o = {}, method = 'POST') {
    const t = this.c.options.tus ?? {};
    const size = /** @type {any} */ (body)?.size ?? /** @type {any} */ (body)?.byteLength;
    const contentType = o.contentType ?? /** @type {any} */ (body)?.type ?? 'text/plain;charset=UTF-8';
    const cacheControl = `${o.cacheControl ?? 3600}`;
    if (method == 'POST' && size != null && (o.resumable ?? size > (t.threshold ?? 6 * MB))) {
      return tusUpload(this.c, this.bucket, path, body instanceof Blob ? body : new Blob([/** @type {any} */ (body)]), {
        ...o,
        contentType,
        cacheControl,
        chunkSize: t.chunkSize ?? 6 * MB,
      });
    }
    const headers = {
      'x-upsert': `${!!o.upsert}`,
      ...(!(body instanceof FormData) && {
        'content-type': contentType,
        'cache-control': `max-age=${cacheControl}`,
        ...(o.metadata && { 'x-metadata': btoa(JSON.stringify(o.metadata)) }),
      }),
    };
    const r = await call(this.c, method, `/object/${this._p(path)}`, body, headers);
    return r.error ? r : { data: { path, id: r.data?.Id ?? r.data?.id, fullPath: r.data?.Key }, error: null };
  }

  /** Replaces the file at `path`. @param {string} path @param {any} body @param {FileOptions} [o] */
  update(path, body, o) {
    return this.upload(path, body, o, 'PUT');
  }

  /**
   * The file's bytes as a Blob.
   * @param {string} path
   * @param {{download?: string | boolean}} [o]
   */
  async download(path, o = {}) {
    const dl = o.download === true ? '' : o.download || undefined;
    const r = await call(this.c, 'GET', `/object/authenticated/${this._p(path)}${query({ download: dl })}`, undefined, {}, true);
    if (r.error) return r;
    try {
      return { data: await r.data.blob(), error: null };
    } catch (e) {
      return { data: null, error: networkError(e) };
    }
  }

  /**
   * @param {string} [prefix]
   * @param {{limit?: number, offset?: number, sortBy?: {column: string, order: string}, search?: string}} [o]
   */
  list(prefix = '', o = {}) {
    const body = { limit: 100, offset: 0, sortBy: { column: 'name', order: 'asc' }, ...o, prefix };
    return call(this.c, 'POST', `/object/list/${encodeURIComponent(this.bucket)}`, body);
  }

  /** @param {string[]} paths */
  remove(paths) {
    return call(this.c, 'DELETE', `/object/${encodeURIComponent(this.bucket)}`, { prefixes: paths });
  }

  /** @param {string} from @param {string} to @param {{destinationBucket?: string}} [o] */
  async move(from, to, o = {}) {
    return call(this.c, 'POST', '/object/move', this._fromTo(from, to, o));
  }

  /** @param {string} from @param {string} to @param {{destinationBucket?: string}} [o] */
  async copy(from, to, o = {}) {
    const r = await call(this.c, 'POST', '/object/copy', this._fromTo(from, to, o));
    return r.error ? r : { data: { path: r.data?.Key }, error: null };
  }

  /** @param {string} from @param {string} to @param {{destinationBucket?: string}} o */
  _fromTo(from, to, o) {
    return { bucketId: this.bucket, sourceKey: from, destinationKey: to, destinationBucket: o.destinationBucket };
  }

  /**
   * A URL anyone may GET for `expiresIn` seconds.
   * @param {string} path
   * @param {number} expiresIn
   * @param {{download?: string | boolean}} [o]
   */
  async createSignedUrl(path, expiresIn, o = {}) {
    const r = await call(this.c, 'POST', `/object/sign/${this._p(path)}`, { expiresIn });
    if (r.error) return r;
    const dl = o.download ? `&download=${o.download === true ? '' : encodeURIComponent(o.download)}` : '';
    return { data: { signedUrl: `${this.c.url}/storage/v1${r.data.signedURL}${dl}` }, error: null };
  }

  /**
   * A token that lets anyone upload to `path` once (`uploadToSignedUrl`).
   * @param {string} path
   * @param {{upsert?: boolean}} [o]
   */
  async createSignedUploadUrl(path, o = {}) {
    const r = await call(this.c, 'POST', `/object/upload/sign/${this._p(path)}`, {}, o.upsert ? { 'x-upsert': 'true' } : {});
    if (r.error) return r;
    const signedUrl = new URL(r.data.url, `${this.c.url}/storage/v1/`).toString();
    return { data: { signedUrl, path, token: new URL(signedUrl).searchParams.get('token') }, error: null };
  }

  /**
   * @param {string} path
   * @param {string} token from createSignedUploadUrl
   * @param {any} body
   * @param {FileOptions} [o]
   */
  async uploadToSignedUrl(path, token, body, o = {}) {
    const headers = {
      'x-upsert': `${!!o.upsert}`,
      'content-type': o.contentType ?? body?.type ?? 'text/plain;charset=UTF-8',
      'cache-control': `max-age=${o.cacheControl ?? 3600}`,
    };
    const r = await call(this.c, 'PUT', `/object/upload/sign/${this._p(path)}?token=${encodeURIComponent(token)}`, body, headers);
    return r.error ? r : { data: { path, fullPath: r.data?.Key }, error: null };
  }

  /**
   * The URL of a file in a public bucket (no request is sent).
   * @param {string} path
   * @param {{download?: string | boolean}} [o]
   */
  getPublicUrl(path, o = {}) {
    const dl = o.download ? `?download=${o.download === true ? '' : encodeURIComponent(o.download)}` : '';
    return { data: { publicUrl: `${this.c.url}/storage/v1/object/public/${this._p(path)}${dl}` } };
  }
}
