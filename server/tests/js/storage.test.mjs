// Supabase storage as supabase-js (storage-js) speaks it, against a live doska: buckets, uploads
// (raw and form-data, upsert, limits), downloads (Range, ETag/304), info/exists/list, move, copy,
// remove, public and signed URLs, and row-level security on storage.objects deciding who reads and
// writes what (TeacherUchit's shape: students' private submissions, a school's teaching materials),
// declared in a policy file's storage section.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska } from './harness.mjs';

const SECRET = 'storage-suite-secret-0123456789-0123456789';
const SCHOOL = 'school-1';
const teacher = randomUUID();
const student = randomUUID();
const other = randomUUID();

// The buckets and who may do what in them come from a policy file's `storage` section (doska
// compiles it to policies on storage.objects); a user's school and role come from app_metadata (set
// by trusted code, not the user).
const policies = {
  'storage.toml': `
[storage.buckets.materials]
[storage.buckets.avatars]
public = true
[storage.buckets.submissions]

[[storage.buckets.submissions.rules]]
name = "students keep their own"
to = ["authenticated"]
allow = ["read", "upload", "overwrite"]
path = "{auth.uid}/**"

[[storage.buckets.materials.rules]]
name = "a school reads its materials"
to = ["authenticated"]
allow = ["read"]
path = "{jwt.app_metadata.school}/**"

[[storage.buckets.materials.rules]]
name = "teachers upload"
to = ["authenticated"]
allow = ["upload", "overwrite"]
path = "{jwt.app_metadata.school}/**"
when = "auth.jwt() -> 'app_metadata' ->> 'role' = 'teacher'"

[[storage.buckets.avatars.rules]]
name = "anyone reads"
allow = ["read"]

[[storage.buckets.avatars.rules]]
name = "users upload their avatar"
to = ["authenticated"]
allow = ["upload"]
path = "{auth.uid}.png"
`,
};

function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function userToken(sub, appMetadata) {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub, role: 'authenticated', aud: 'authenticated', iat: now, exp: now + 3600,
    app_metadata: appMetadata });
}

let doska, admin, anon, asTeacher, asStudent, asOther;

function clientFor(token) {
  return createClient(doska.url, doska.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

before(async () => {
  doska = await startDoska({ policies, env: { DOSKA_JWT_SECRET: SECRET } });
  const opts = { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: WebSocket } };
  admin = createClient(doska.url, doska.serviceKey, opts);
  anon = createClient(doska.url, doska.anonKey, opts);
  asTeacher = clientFor(userToken(teacher, { role: 'teacher', school: SCHOOL }));
  asStudent = clientFor(userToken(student, { role: 'student', school: SCHOOL }));
  asOther = clientFor(userToken(other, { role: 'student', school: SCHOOL }));
});
after(async () => { await doska?.stop(); });

test('bucket create, get, list, update, empty, delete', async () => {
  let r = await admin.storage.createBucket('scratch', { public: false, fileSizeLimit: 1024 });
  assert.equal(r.error, null);
  assert.deepEqual(r.data, { name: 'scratch' });
  r = await admin.storage.getBucket('scratch');
  assert.equal(r.data.id, 'scratch');
  assert.equal(r.data.public, false);
  assert.equal(r.data.file_size_limit, 1024);
  r = await admin.storage.listBuckets();
  assert.deepEqual(r.data.map((b) => b.id).sort(), ['avatars', 'materials', 'scratch', 'submissions']);
  r = await admin.storage.updateBucket('scratch', { public: true, allowedMimeTypes: ['text/*'] });
  assert.equal(r.error, null);
  assert.equal((await admin.storage.getBucket('scratch')).data.public, true);
  r = await admin.storage.createBucket('scratch');
  assert.equal(r.error.statusCode, '409');
  await admin.storage.from('scratch').upload('a.txt', Buffer.from('x'), { contentType: 'text/plain' });
  r = await admin.storage.deleteBucket('scratch');
  assert.ok(r.error, 'a bucket with objects cannot be deleted');
  assert.equal((await admin.storage.emptyBucket('scratch')).error, null);
  assert.equal((await admin.storage.deleteBucket('scratch')).error, null);
  r = await admin.storage.getBucket('scratch');
  assert.equal(r.error.statusCode, '404');
  // Callers without a policy on storage.buckets do not see private buckets at all.
  assert.deepEqual((await anon.storage.listBuckets()).data, []);
});

test('upload, download, info, exists, list, move, copy, remove', async () => {
  const files = admin.storage.from('materials');
  const key = `${SCHOOL}/unit 1/übung ✓.txt`;
  let r = await files.upload(key, Buffer.from('hello teachers'), { contentType: 'text/plain' });
  assert.equal(r.error, null);
  assert.equal(r.data.path, key);
  assert.equal(r.data.fullPath, `materials/${key}`);
  assert.ok(r.data.id);
  r = await files.upload(key, Buffer.from('again'));
  assert.equal(r.error.statusCode, '409', 'no silent overwrite without upsert');
  r = await files.upload(key, Buffer.from('hello again'), { upsert: true, contentType: 'text/plain' });
  assert.equal(r.error, null);
  r = await files.download(key);
  assert.equal(await r.data.text(), 'hello again');
  // Form-data upload (a Blob), with metadata.
  r = await files.upload(`${SCHOOL}/slides.pdf`, new Blob([Buffer.from('%PDF-1.4 ...')], { type: 'application/pdf' }),
    { metadata: { unit: 1 } });
  assert.equal(r.error, null);
  r = await files.info(`${SCHOOL}/slides.pdf`);
  assert.equal(r.error, null);
  assert.equal(r.data.contentType, 'application/pdf');
  assert.equal(r.data.size, 12);
  assert.deepEqual(r.data.metadata, { unit: 1 });
  assert.equal((await files.exists(`${SCHOOL}/slides.pdf`)).data, true);
  assert.equal((await files.exists(`${SCHOOL}/nope.pdf`)).data, false);
  r = await files.list(SCHOOL);
  assert.deepEqual(r.data.map((o) => o.name), ['slides.pdf', 'unit 1']);
  assert.equal(r.data[1].id, null, 'folders have no id');
  r = await files.list(`${SCHOOL}/unit 1`);
  assert.deepEqual(r.data.map((o) => o.name), ['übung ✓.txt']);
  assert.equal(r.data[0].metadata.size, 11);
  r = await files.move(`${SCHOOL}/slides.pdf`, `${SCHOOL}/unit 1/slides.pdf`);
  assert.equal(r.error, null);
  r = await files.copy(`${SCHOOL}/unit 1/slides.pdf`, `${SCHOOL}/copy.pdf`);
  assert.equal(r.error, null);
  assert.equal(r.data.path, `materials/${SCHOOL}/copy.pdf`);
  assert.equal(await (await files.download(`${SCHOOL}/copy.pdf`)).data.text(), '%PDF-1.4 ...');
  r = await files.remove([`${SCHOOL}/copy.pdf`, `${SCHOOL}/unit 1/slides.pdf`]);
  assert.equal(r.error, null);
  assert.equal(r.data.length, 2);
  assert.equal((await files.download(`${SCHOOL}/copy.pdf`)).error.statusCode, '404');
  const v2 = await files.listV2({ prefix: `${SCHOOL}/`, with_delimiter: true });
  assert.equal(v2.error, null);
  assert.deepEqual(v2.data.folders.map((f) => [f.key, f.name]), [['unit 1', `${SCHOOL}/unit 1/`]]);
});

test('downloads honour Range and ETag', async () => {
  const files = admin.storage.from('materials');
  const body = Buffer.from('0123456789abcdef');
  await files.upload(`${SCHOOL}/range.bin`, body, { contentType: 'application/octet-stream' });
  const url = `${doska.url}/storage/v1/object/materials/${SCHOOL}/range.bin`;
  const auth = { apikey: doska.serviceKey, authorization: `Bearer ${doska.serviceKey}` };
  let res = await fetch(url, { headers: { ...auth, range: 'bytes=2-5' } });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), 'bytes 2-5/16');
  assert.equal(await res.text(), '2345');
  res = await fetch(url, { headers: auth });
  const etag = res.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]{32}"$/);
  await res.arrayBuffer();
  res = await fetch(url, { headers: { ...auth, 'if-none-match': etag } });
  assert.equal(res.status, 304);
  res = await fetch(`${url}?download=notes.bin`, { headers: auth });
  assert.match(res.headers.get('content-disposition'), /attachment; filename\*=UTF-8''notes\.bin/);
  await res.arrayBuffer();
  res = await fetch(url, { headers: { ...auth, range: 'bytes=100-' } });
  assert.equal(res.status, 416);
  const err = await res.json();
  assert.deepEqual(Object.keys(err).sort(), ['error', 'message', 'statusCode']);
});

test('public URLs need no token; private buckets do not reveal objects', async () => {
  const r = await asStudent.storage.from('avatars').upload(`${student}.png`, Buffer.from('PNG'), { contentType: 'image/png' });
  assert.equal(r.error, null);
  const { data } = anon.storage.from('avatars').getPublicUrl(`${student}.png`);
  let res = await fetch(data.publicUrl);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'PNG');
  await admin.storage.from('materials').upload(`${SCHOOL}/secret.txt`, Buffer.from('s'));
  res = await fetch(anon.storage.from('materials').getPublicUrl(`${SCHOOL}/secret.txt`).data.publicUrl);
  assert.equal(res.status, 404);
  await res.arrayBuffer();
  const d = await anon.storage.from('materials').download(`${SCHOOL}/secret.txt`);
  assert.equal(d.error.statusCode, '404');
});

test('signed download and upload URLs', async () => {
  const files = asTeacher.storage.from('materials');
  await files.upload(`${SCHOOL}/signed.txt`, Buffer.from('signed content'));
  let r = await files.createSignedUrl(`${SCHOOL}/signed.txt`, 60);
  assert.equal(r.error, null);
  let res = await fetch(r.data.signedUrl);
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'signed content');
  res = await fetch(r.data.signedUrl.replace('signed.txt', 'secret.txt'));
  assert.equal(res.status, 400);
  await res.arrayBuffer();
  r = await files.createSignedUrls([`${SCHOOL}/signed.txt`, `${SCHOOL}/missing.txt`], 60);
  assert.equal(r.data[0].error, null);
  assert.ok(r.data[1].error);
  // Someone who cannot see the object cannot sign it.
  r = await asStudent.storage.from('submissions').createSignedUrl(`${other}/x.txt`, 60);
  assert.ok(r.error);
  // Signed upload: the teacher may upload there, so the URL lets an anonymous client do it once.
  r = await files.createSignedUploadUrl(`${SCHOOL}/via-signed.txt`);
  assert.equal(r.error, null);
  r = await anon.storage.from('materials').uploadToSignedUrl(`${SCHOOL}/via-signed.txt`, r.data.token, Buffer.from('uploaded'));
  assert.equal(r.error, null);
  assert.equal(await (await files.download(`${SCHOOL}/via-signed.txt`)).data.text(), 'uploaded');
  r = await asStudent.storage.from('materials').createSignedUploadUrl(`${SCHOOL}/nope.txt`);
  assert.ok(r.error, 'a student may not hand out upload URLs for materials');
});

test('bucket limits: size and MIME type', async () => {
  await admin.storage.createBucket('limited', { public: false, fileSizeLimit: 10, allowedMimeTypes: ['image/*'] });
  const files = admin.storage.from('limited');
  let r = await files.upload('big.png', Buffer.alloc(11), { contentType: 'image/png' });
  assert.equal(r.error.statusCode, '413');
  r = await files.upload('doc.txt', Buffer.from('x'), { contentType: 'text/plain' });
  assert.equal(r.error.statusCode, '415');
  r = await files.upload('ok.png', Buffer.alloc(10), { contentType: 'image/png' });
  assert.equal(r.error, null);
});

test('RLS: students keep to their own submissions; only teachers upload materials', async () => {
  const mine = `${student}/essay.txt`;
  let r = await asStudent.storage.from('submissions').upload(mine, Buffer.from('my essay'));
  assert.equal(r.error, null);
  // Another student can neither read it, list it, nor write into that folder.
  r = await asOther.storage.from('submissions').download(mine);
  assert.equal(r.error.statusCode, '404');
  r = await asOther.storage.from('submissions').list(student);
  assert.deepEqual(r.data, []);
  r = await asOther.storage.from('submissions').upload(mine, Buffer.from('overwritten'), { upsert: true });
  assert.equal(r.error.statusCode, '403');
  r = await asOther.storage.from('submissions').upload(`${student}/fake.txt`, Buffer.from('planted'));
  assert.equal(r.error.statusCode, '403');
  assert.equal(await (await asStudent.storage.from('submissions').download(mine)).data.text(), 'my essay');
  // The student may replace their own file.
  r = await asStudent.storage.from('submissions').update(mine, Buffer.from('my essay v2'));
  assert.equal(r.error, null);
  assert.equal(await (await asStudent.storage.from('submissions').download(mine)).data.text(), 'my essay v2');
  // Teachers upload to their school's materials; students cannot; students read them.
  r = await asTeacher.storage.from('materials').upload(`${SCHOOL}/lesson.txt`, Buffer.from('lesson'));
  assert.equal(r.error, null);
  r = await asStudent.storage.from('materials').upload(`${SCHOOL}/fake-lesson.txt`, Buffer.from('x'));
  assert.equal(r.error.statusCode, '403');
  r = await asTeacher.storage.from('materials').upload(`other-school/lesson.txt`, Buffer.from('x'));
  assert.equal(r.error.statusCode, '403');
  assert.equal(await (await asStudent.storage.from('materials').download(`${SCHOOL}/lesson.txt`)).data.text(), 'lesson');
  // Without a delete policy nothing is removed.
  r = await asStudent.storage.from('submissions').remove([mine]);
  assert.deepEqual(r.data, []);
});

test('bad tokens and unknown routes answer in the storage error shape', async () => {
  let res = await fetch(`${doska.url}/storage/v1/bucket`, { headers: { authorization: 'Bearer not.a.jwt' } });
  assert.equal(res.status, 400);
  let body = await res.json();
  assert.equal(body.error, 'InvalidJWT');
  res = await fetch(`${doska.url}/storage/v1/nothing-here`);
  assert.equal(res.status, 404);
  body = await res.json();
  assert.equal(body.statusCode, '404');
});

test("Supabase storage's answers: decimal size units, list-v2 shapes, info metadata, empty", async () => {
  // "20mb" is 20,000,000 bytes, as Supabase's storage reads it; the limit's error is its text.
  let r = await admin.storage.createBucket('units', { public: false, fileSizeLimit: '20mb' });
  assert.equal(r.error, null);
  assert.equal((await admin.storage.getBucket('units')).data.file_size_limit, 20000000);
  r = await admin.storage.updateBucket('units', { public: false, fileSizeLimit: '1kb' });
  assert.equal(r.error, null);
  assert.equal((await admin.storage.getBucket('units')).data.file_size_limit, 1000);
  r = await admin.storage.from('units').upload('big.bin', Buffer.alloc(1001));
  assert.equal(r.error.statusCode, '413');
  assert.equal(r.error.message, 'The object exceeded the maximum allowed size');
  assert.equal((await admin.storage.from('units').upload('fits.bin', Buffer.alloc(1000))).error, null);
  r = await admin.storage.createBucket('units-bad', { fileSizeLimit: '20 megabytes' });
  assert.equal(r.error.statusCode, '400');

  // list-v2: objects by their full key as `name`; folders as {key: "dir", name: "dir/"}.
  await admin.storage.from('units').upload('dir/a.txt', Buffer.from('a'));
  // `key`: the entry's segment at the level listed (Supabase's `split_part(name, '/', levels)`).
  r = await admin.storage.from('units').listV2({ prefix: 'dir/' });
  assert.equal(r.error, null);
  assert.deepEqual(r.data.objects.map((o) => [o.name, o.key]), [['dir/a.txt', 'a.txt']]);
  assert.deepEqual(r.data.folders, []);
  r = await admin.storage.from('units').listV2({ with_delimiter: true });
  assert.deepEqual(r.data.folders.map((f) => ({ key: f.key, name: f.name })), [{ key: 'dir', name: 'dir/' }]);
  assert.deepEqual(r.data.objects.map((o) => o.name), ['fits.bin']);

  // list-v2 orders: name descending, creation and update time, paged by the cursor it returns; a
  // folder sorts by the latest time among its objects.
  for (const k of ['p/zz', 'p/bb', 'p/xx', 'p/sub/one', 'p/aa']) {
    assert.equal((await admin.storage.from('units').upload(k, Buffer.from('x'))).error, null);
  }
  const pages = async (sortBy) => {
    const seen = [];
    let cursor;
    for (let n = 0; n < 10; n++) {
      const r = await admin.storage.from('units').listV2({ prefix: 'p/', with_delimiter: true, limit: 2, sortBy, ...(cursor ? { cursor } : {}) });
      assert.equal(r.error, null);
      // A page's folders and objects come apart; which entries share a page shows the order.
      seen.push([...r.data.folders.map((f) => f.name), ...r.data.objects.map((o) => o.name)].sort());
      if (!r.data.hasNext) return seen;
      cursor = r.data.nextCursor;
    }
    throw new Error('no last page');
  };
  assert.deepEqual(await pages({ column: 'name', order: 'desc' }), [['p/xx', 'p/zz'], ['p/bb', 'p/sub/'], ['p/aa']]);
  assert.deepEqual(await pages({ column: 'created_at', order: 'asc' }), [['p/bb', 'p/zz'], ['p/sub/', 'p/xx'], ['p/aa']]);
  assert.deepEqual(await pages({ column: 'created_at', order: 'desc' }), [['p/aa', 'p/sub/'], ['p/bb', 'p/xx'], ['p/zz']]);
  assert.equal((await admin.storage.from('units').update('p/bb', Buffer.from('y'))).error, null);
  assert.deepEqual(await pages({ column: 'updated_at', order: 'desc' }), [['p/aa', 'p/bb'], ['p/sub/', 'p/xx'], ['p/zz']]);

  // Object info without metadata: `{}`, never null.
  r = await admin.storage.from('units').info('dir/a.txt');
  assert.equal(r.error, null);
  assert.deepEqual(r.data.metadata, {});

  r = await admin.storage.emptyBucket('units');
  assert.equal(r.error, null);
  assert.deepEqual(r.data, { message: 'Empty bucket has been queued. Completion may take up to an hour.' });
  assert.deepEqual((await admin.storage.from('units').list()).data, []);
});

test('no key at all: storage refuses with "Invalid Compact JWS"; public objects and signed URLs stay open', async () => {
  const bare = (path, init) => fetch(`${doska.url}/storage/v1${path}`, init);
  for (const [method, path] of [['GET', '/bucket'], ['POST', '/object/list/avatars'],
    ['GET', '/object/avatars/face.png'], ['POST', '/object/avatars/new.png']]) {
    const res = await bare(path, { method, body: method === 'POST' ? '{}' : undefined });
    assert.equal(res.status, 400, `${method} ${path}`);
    const body = await res.json();
    assert.equal(body.message, 'Invalid Compact JWS', `${method} ${path}`);
    assert.equal(body.statusCode, '400');
  }
  // With the anon key the same request is anon's (RLS decides).
  const { StorageClient } = await import('@supabase/storage-js');
  const noKey = new StorageClient(`${doska.url}/storage/v1`);
  const { data, error } = await noKey.listBuckets();
  assert.equal(data, null);
  assert.equal(error.message, 'Invalid Compact JWS');

  assert.equal((await admin.storage.from('avatars').upload('open.png', Buffer.from('png'), { upsert: true })).error, null);
  let res = await bare('/object/public/avatars/open.png');
  assert.equal(res.status, 200);
  assert.equal(await res.text(), 'png');
  const signed = await admin.storage.from('avatars').createSignedUrl('open.png', 60);
  res = await fetch(signed.data.signedUrl);
  assert.equal(res.status, 200);
  const up = await admin.storage.from('avatars').createSignedUploadUrl('signed-up.png');
  res = await fetch(up.data.signedUrl, { method: 'PUT', body: 'x', headers: { 'content-type': 'image/png' } });
  assert.equal(res.status, 200, await res.text());
});

test('TUS resumable upload (tus-js-client) continues after a cut, under RLS', async () => {
  const { Upload } = await import('tus-js-client');
  const data = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
  const chunkSize = 256 * 1024;
  const token = userToken(teacher, { role: 'teacher', school: SCHOOL });
  const endpoint = `${doska.url}/storage/v1/upload/resumable`;
  const options = (extra) => ({
    endpoint,
    chunkSize,
    retryDelays: [],
    headers: { authorization: `Bearer ${token}`, apikey: doska.anonKey, 'x-upsert': 'true' },
    metadata: { bucketName: 'materials', objectName: `${SCHOOL}/video.bin`,
      contentType: 'application/octet-stream', cacheControl: '3600' },
    ...extra,
  });
  // First attempt: cut after two chunks.
  const url = await new Promise((resolve, reject) => {
    let chunks = 0;
    const up = new Upload(data, options({
      onChunkComplete: () => {
        chunks += 1;
        if (chunks === 2) up.abort().then(() => resolve(up.url), reject);
      },
      onError: reject,
      onSuccess: () => reject(new Error('should have been cut')),
    }));
    up.start();
  });
  const head = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${token}`, 'tus-resumable': '1.0.0' } });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('upload-offset'), String(2 * chunkSize));
  assert.equal(head.headers.get('upload-length'), String(data.length));
  // Someone else cannot see or continue it.
  const foreign = await fetch(url, { method: 'HEAD', headers: {
    authorization: `Bearer ${userToken(student, { role: 'student', school: SCHOOL })}`, 'tus-resumable': '1.0.0' } });
  assert.equal(foreign.status, 404);
  // Second attempt resumes from the offset the server reports.
  let firstProgress = null;
  await new Promise((resolve, reject) => {
    const up = new Upload(data, options({
      uploadUrl: url,
      onProgress: (sent) => { if (firstProgress === null) firstProgress = sent; },
      onError: reject,
      onSuccess: resolve,
    }));
    up.start();
  });
  assert.ok(firstProgress > 2 * chunkSize - 1, `resumed at ${firstProgress}`);
  const got = await asStudent.storage.from('materials').download(`${SCHOOL}/video.bin`);
  assert.equal(got.error, null);
  assert.ok(Buffer.from(await got.data.arrayBuffer()).equals(data));
  // A student may not start one in materials.
  const denied = await fetch(endpoint, { method: 'POST', headers: {
    authorization: `Bearer ${userToken(student, { role: 'student', school: SCHOOL })}`,
    'tus-resumable': '1.0.0', 'upload-length': '3',
    'upload-metadata': `bucketName ${Buffer.from('materials').toString('base64')},objectName ${Buffer.from(`${SCHOOL}/x`).toString('base64')}` } });
  assert.equal(denied.status, 403);
});
