// Image transformations as storage-js asks for them (`transform` on download, getPublicUrl and
// createSignedUrl → /storage/v1/render/image/…), against a live doska: the answers are real images
// of the asked size and format (read from their headers here), WebP when `Accept` takes it, access
// as for downloads (RLS for the caller, public buckets, signed tokens that fix the transformation),
// rendered variants served again from the cache, and refusals in storage's error shape: bad
// parameters 400, a non-image 422.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { deflateSync } from 'node:zlib';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska } from './harness.mjs';

const SECRET = 'render-suite-secret-0123456789-0123456789';
const owner = randomUUID();
const stranger = randomUUID();

const policies = {
  'storage.toml': `
[storage.buckets.pictures]
[storage.buckets.avatars]
public = true

[[storage.buckets.pictures.rules]]
name = "users read their own pictures"
to = ["authenticated"]
allow = ["read"]
path = "{auth.uid}/**"
`,
};

function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function userClient(sub) {
  const now = Math.floor(Date.now() / 1000);
  const token = sign({ sub, role: 'authenticated', aud: 'authenticated', iat: now, exp: now + 3600 });
  return createClient(doska.url, doska.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

// --- A PNG writer (RGB, 8 bits) and readers of the three formats' headers, on node's zlib alone.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'ascii');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
function png(width, height) {
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) {
      rows[row + 1 + x * 3] = x % 256;
      rows[row + 2 + x * 3] = y % 256;
      rows[row + 3 + x * 3] = 90;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** `{format, width, height}` read from an image's header (PNG, WebP, JPEG). */
function imageInfo(buf) {
  if (buf.subarray(1, 4).toString('ascii') === 'PNG') {
    return { format: 'png', width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
  }
  if (buf.subarray(0, 4).toString('ascii') === 'RIFF' && buf.subarray(8, 12).toString('ascii') === 'WEBP') {
    const kind = buf.subarray(12, 16).toString('ascii');
    if (kind === 'VP8 ') {
      return { format: 'webp', width: buf.readUInt16LE(26) & 0x3fff, height: buf.readUInt16LE(28) & 0x3fff };
    }
    if (kind === 'VP8X') {
      return { format: 'webp', width: buf.readUIntLE(24, 3) + 1, height: buf.readUIntLE(27, 3) + 1 };
    }
    if (kind === 'VP8L') {
      const bits = buf.readUInt32LE(21);
      return { format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
    }
  }
  if (buf[0] === 0xff && buf[1] === 0xd8) {
    for (let i = 2; i < buf.length;) {
      const marker = buf[i + 1];
      if (marker >= 0xc0 && marker <= 0xc2) {
        return { format: 'jpeg', width: buf.readUInt16BE(i + 7), height: buf.readUInt16BE(i + 5) };
      }
      i += 2 + buf.readUInt16BE(i + 2);
    }
  }
  return { format: 'unknown' };
}

async function infoOf(res) {
  assert.equal(res.status, 200, `HTTP ${res.status}`);
  return imageInfo(Buffer.from(await res.arrayBuffer()));
}

let doska, admin, anon, asOwner, asStranger;

before(async () => {
  doska = await startDoska({ policies, env: { DOSKA_JWT_SECRET: SECRET } });
  const opts = { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: WebSocket } };
  admin = createClient(doska.url, doska.serviceKey, opts);
  anon = createClient(doska.url, doska.anonKey, opts);
  asOwner = userClient(owner);
  asStranger = userClient(stranger);
  const up = async (bucket, key, bytes, contentType) => {
    const r = await admin.storage.from(bucket).upload(key, bytes, { contentType });
    assert.equal(r.error, null, `${bucket}/${key}: ${r.error?.message}`);
  };
  await up('pictures', `${owner}/photo.png`, png(400, 300), 'image/png');
  await up('pictures', `${owner}/notes.txt`, Buffer.from('not a picture'), 'text/plain');
  // The content type claims an image; the bytes decide.
  await up('pictures', `${owner}/fake.png`, Buffer.from('%PDF-1.4 not a png'), 'image/png');
  await up('avatars', 'face.png', png(300, 300), 'image/png');
});
after(async () => { await doska?.stop(); });

test('download with transform: the caller reads a resized image under RLS', async () => {
  const files = asOwner.storage.from('pictures');
  let r = await files.download(`${owner}/photo.png`, { transform: { width: 100, height: 100 } });
  assert.equal(r.error, null);
  // Node's fetch sends `Accept: */*`: no WebP, the source's format.
  assert.deepEqual(imageInfo(Buffer.from(await r.data.arrayBuffer())), { format: 'png', width: 100, height: 100 });
  r = await files.download(`${owner}/photo.png`, { transform: { width: 200 } });
  assert.deepEqual(imageInfo(Buffer.from(await r.data.arrayBuffer())), { format: 'png', width: 200, height: 150 });
  r = await files.download(`${owner}/photo.png`, { transform: { width: 100, height: 100, resize: 'contain' } });
  assert.deepEqual(imageInfo(Buffer.from(await r.data.arrayBuffer())), { format: 'png', width: 100, height: 75 });
  r = await files.download(`${owner}/photo.png`, { transform: { width: 100, height: 100, resize: 'fill' } });
  assert.deepEqual(imageInfo(Buffer.from(await r.data.arrayBuffer())), { format: 'png', width: 100, height: 100 });
  // Never enlarged, as imgproxy: a 1,000-pixel ask of a 400-pixel image gives 400.
  r = await files.download(`${owner}/photo.png`, { transform: { width: 1000 } });
  assert.deepEqual(imageInfo(Buffer.from(await r.data.arrayBuffer())), { format: 'png', width: 400, height: 300 });
  // Someone whose policies do not show the object gets "not found", as for a download.
  r = await asStranger.storage.from('pictures').download(`${owner}/photo.png`, { transform: { width: 50 } });
  assert.equal(r.error.statusCode, '404');
  r = await anon.storage.from('pictures').download(`${owner}/photo.png`, { transform: { width: 50 } });
  assert.equal(r.error.statusCode, '404');
});

test('getPublicUrl with transform: WebP when Accept takes it, unless format is origin', async () => {
  const avatars = anon.storage.from('avatars');
  const { data } = avatars.getPublicUrl('face.png', { transform: { width: 64, height: 64 } });
  assert.match(data.publicUrl, /\/storage\/v1\/render\/image\/public\/avatars\/face\.png\?width=64&height=64$/);
  assert.deepEqual(await infoOf(await fetch(data.publicUrl)), { format: 'png', width: 64, height: 64 });
  let res = await fetch(data.publicUrl, { headers: { Accept: 'image/avif,image/webp,*/*' } });
  assert.equal(res.headers.get('content-type'), 'image/webp');
  assert.equal(res.headers.get('vary'), 'Accept');
  assert.deepEqual(await infoOf(res), { format: 'webp', width: 64, height: 64 });
  const origin = avatars.getPublicUrl('face.png', { transform: { width: 32, format: 'origin', quality: 50 } });
  res = await fetch(origin.data.publicUrl, { headers: { Accept: 'image/webp' } });
  assert.deepEqual(await infoOf(res), { format: 'png', width: 32, height: 32 });
  // A private bucket's objects are not public, rendered or not.
  const hidden = anon.storage.from('pictures').getPublicUrl(`${owner}/photo.png`, { transform: { width: 10 } });
  res = await fetch(hidden.data.publicUrl);
  assert.equal(res.status, 404);
  assert.equal((await res.json()).statusCode, '404');
});

test('createSignedUrl with transform: the token fixes the rendering', async () => {
  const files = asOwner.storage.from('pictures');
  const r = await files.createSignedUrl(`${owner}/photo.png`, 60, { transform: { width: 120, height: 60, resize: 'cover' } });
  assert.equal(r.error, null);
  assert.match(r.data.signedUrl, /\/storage\/v1\/render\/image\/sign\/pictures\//);
  assert.deepEqual(await infoOf(await fetch(r.data.signedUrl)), { format: 'png', width: 120, height: 60 });
  // Parameters added to the URL change nothing: the token says what to render.
  assert.deepEqual(await infoOf(await fetch(`${r.data.signedUrl}&width=10`)), { format: 'png', width: 120, height: 60 });
  // The token is for that object only.
  const res = await fetch(r.data.signedUrl.replace('photo.png', 'notes.txt'));
  assert.equal(res.status, 400);
  assert.equal((await res.json()).error, 'InvalidJWT');
  // A stranger cannot sign what they cannot see.
  const denied = await asStranger.storage.from('pictures').createSignedUrl(`${owner}/photo.png`, 60, { transform: { width: 10 } });
  assert.ok(denied.error);
  // Without a transform, the signed URL is a plain download, as before.
  const plain = await files.createSignedUrl(`${owner}/photo.png`, 60);
  assert.match(plain.data.signedUrl, /\/storage\/v1\/object\/sign\//);
  assert.deepEqual(await infoOf(await fetch(plain.data.signedUrl)), { format: 'png', width: 400, height: 300 });
});

test('non-images are refused with 422; bad parameters with 400', async () => {
  const files = asOwner.storage.from('pictures');
  for (const key of ['notes.txt', 'fake.png']) {
    const r = await files.download(`${owner}/${key}`, { transform: { width: 50 } });
    assert.equal(r.error?.statusCode, '422', key);
    assert.match(r.error.message, /invalid or unsupported/);
  }
  const base = `${doska.url}/storage/v1/render/image/public/avatars/face.png`;
  for (const [query, message] of [
    ['width=abc', /width must be a non-negative integer/],
    ['height=-5', /height must be a non-negative integer/],
    ['quality=5', /quality/],
    ['resize=stretch', /resize/],
    ['format=avif', /avif/],
    ['format=tiff', /format/],
    ['gravity=ce', /gravity/],
  ]) {
    const res = await fetch(`${base}?${query}`);
    assert.equal(res.status, 400, query);
    const body = await res.json();
    assert.equal(body.statusCode, '400', query);
    assert.equal(body.error, 'InvalidRequest', query);
    assert.match(body.message, message, query);
  }
  const signed = await files.createSignedUrl(`${owner}/photo.png`, 60, { transform: { quality: 3 } });
  assert.equal(signed.error?.statusCode, '400');
});

test('rendered variants are cached per object version', async () => {
  const url = anon.storage.from('avatars').getPublicUrl('face.png', { transform: { width: 77 } }).data.publicUrl;
  assert.deepEqual(await infoOf(await fetch(url)), { format: 'png', width: 77, height: 77 });
  const cached = await readdir(join(doska.dataDir, 'render-cache'));
  assert.ok(cached.some((f) => f.includes('width_77')), cached.join(' '));
  // ETag revalidation answers 304 without rendering.
  const again = await fetch(url);
  const etag = again.headers.get('etag');
  await again.arrayBuffer();
  const revalidated = await fetch(url, { headers: { 'If-None-Match': etag } });
  assert.equal(revalidated.status, 304);
  // A new version of the object renders anew (and the old variant is never served for it).
  const r = await admin.storage.from('avatars').upload('face.png', png(154, 100), { contentType: 'image/png', upsert: true });
  assert.equal(r.error, null);
  assert.deepEqual(await infoOf(await fetch(url)), { format: 'png', width: 77, height: 50 });
});
