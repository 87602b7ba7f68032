// Resumable uploads with TUS 1.0 (creation, PATCH at an offset) at /storage/v1/upload/resumable, as
// Supabase and doska serve them. A PATCH that fails for lack of network, or that the server answers
// with 409 (offset moved) or a 5xx, is retried after asking the server for its offset (HEAD), up to
// `retries` times with backoff; each PATCH the server acknowledged is kept, so only the cut chunk is
// sent again.
import { call } from './storage.js';

/** base64 of a string's UTF-8 bytes (Upload-Metadata values). @param {string} s */
const b64 = (s) => btoa(String.fromCharCode(...new TextEncoder().encode(s)));
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

/**
 * @param {import('./client.js').DoskaClient} client
 * @param {string} bucket
 * @param {string} path
 * @param {Blob} blob
 * @param {{upsert?: boolean, contentType: string, cacheControl: string, metadata?: object, chunkSize: number, retries?: number}} o
 * @returns {Promise<{data: any, error: any}>}
 */
export async function tusUpload(client, bucket, path, blob, o) {
  const tus = { 'Tus-Resumable': '1.0.0' };
  const meta = { bucketName: bucket, objectName: path, contentType: o.contentType, cacheControl: o.cacheControl, ...(o.metadata && { metadata: JSON.stringify(o.metadata) }) };
  const created = await call(client, 'POST', '/upload/resumable', undefined, {
    ...tus,
    'Upload-Length': `${blob.size}`,
    'Upload-Metadata': Object.entries(meta).map(([k, v]) => `${k} ${b64(v)}`).join(','),
    'x-upsert': `${!!o.upsert}`,
  }, true);
  if (created.error) return created;
  // Location is absolute or from the root; the PATCH/HEAD path is what follows /storage/v1.
  const at = new URL(created.data.headers.get('location'), client.url).pathname.replace(/^.*?\/storage\/v1/, '');
  let offset = 0;
  let failures = 0;
  for (;;) {
    const r = await call(client, 'PATCH', at, blob.slice(offset, offset + o.chunkSize), {
      ...tus,
      'Upload-Offset': `${offset}`,
      'Content-Type': 'application/offset+octet-stream',
    }, true);
    if (!r.error) {
      offset = +r.data.headers.get('upload-offset');
      failures = 0;
      if (offset >= blob.size) break;
      continue;
    }
    const st = r.error.status;
    if (st && st != 409 && st < 500) return r;
    if (++failures > (o.retries ?? 5)) return r;
    await sleep(500 * 2 ** failures);
    const head = await call(client, 'HEAD', at, undefined, tus, true);
    if (!head.error) offset = +head.data.headers.get('upload-offset');
  }
  return { data: { path, fullPath: `${bucket}/${path}` }, error: null };
}
