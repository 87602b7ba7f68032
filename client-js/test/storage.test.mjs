// The storage door of @doska/client against a live doska: buckets (service key), objects under RLS
// (each user writes only below a folder named by their id), downloads as Blobs, signed URLs and
// signed uploads, public URLs, TUS uploads above the threshold — also cut mid-way by the network —
// and the bad inputs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client, email, htmlServer, live, offlineFetch } from './live.mjs';

const fixture = `
create policy own_select on storage.objects for select to authenticated
  using (bucket_id in ('docs', 'pub') and (storage.foldername(name))[1] = auth.uid()::text);
create policy own_insert on storage.objects for insert to authenticated
  with check (bucket_id in ('docs', 'pub') and (storage.foldername(name))[1] = auth.uid()::text);
create policy own_update on storage.objects for update to authenticated
  using (bucket_id in ('docs', 'pub') and (storage.foldername(name))[1] = auth.uid()::text);
create policy own_delete on storage.objects for delete to authenticated
  using (bucket_id in ('docs', 'pub') and (storage.foldername(name))[1] = auth.uid()::text);
`;

let doska, service, user, uid;
before(async () => {
  doska = await live({ migrations: { '0001_storage.sql': fixture } });
  service = client(doska, {}, doska.serviceKey);
  for (const [id, pub] of [['docs', false], ['pub', true]]) {
    const r = await service.storage.createBucket(id, { public: pub });
    assert.deepEqual(r, { data: { name: id }, error: null });
  }
  user = client(doska, { tus: { threshold: 100 * 1024, chunkSize: 64 * 1024 } });
  await user.auth.signUp({ email: email(), password: 'password-1' });
  uid = user.auth.currentSession.user.id;
});
after(() => doska?.stop());

const bytes = (n, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * seed + (i >> 8)) & 255);

test('buckets: create, get, list, update, empty, delete; a duplicate and an unknown bucket are error values', async () => {
  let r = await service.storage.createBucket('tmp', { public: false, fileSizeLimit: 1024, allowedMimeTypes: ['text/plain'] });
  assert.equal(r.error, null);
  r = await service.storage.getBucket('tmp');
  assert.equal(r.data.id, 'tmp');
  assert.equal(r.data.public, false);
  assert.equal(r.data.file_size_limit, 1024);
  r = await service.storage.listBuckets();
  assert.deepEqual(r.data.map((b) => b.id).sort(), ['docs', 'pub', 'tmp']);
  r = await service.storage.updateBucket('tmp', { public: true });
  assert.equal(r.error, null);
  assert.equal((await service.storage.getBucket('tmp')).data.public, true);
  // The bucket's limits hold for uploads.
  r = await service.storage.from('tmp').upload('big.txt', 'x'.repeat(2000), { contentType: 'text/plain' });
  assert.equal(r.error.status, 413);
  r = await service.storage.from('tmp').upload('a.png', 'x', { contentType: 'image/png' });
  assert.equal(r.error.status, 415);
  await service.storage.from('tmp').upload('a.txt', 'x', { contentType: 'text/plain' });
  r = await service.storage.deleteBucket('tmp');
  assert.equal(r.error.status, 409, 'a bucket with objects is not deleted');
  assert.equal((await service.storage.emptyBucket('tmp')).error, null);
  assert.equal((await service.storage.deleteBucket('tmp')).error, null);
  r = await service.storage.getBucket('tmp');
  assert.deepEqual([r.data, r.error.name, r.error.status, r.error.statusCode], [null, 'StorageApiError', 404, '404']);
  r = await service.storage.createBucket('docs');
  assert.equal(r.error.status, 409);
  r = await user.storage.createBucket('mine');
  assert.equal(r.data, null);
  assert.equal(r.error.name, 'StorageApiError');
  assert.ok(r.error.status === 403 || r.error.status === 400, JSON.stringify(r.error));
});

test('objects: upload, duplicate, upsert, update, download as a Blob, list, move, copy, remove', async () => {
  const docs = user.storage.from('docs');
  let r = await docs.upload(`${uid}/notes/a b.txt`, 'hello', { contentType: 'text/plain' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.equal(r.data.path, `${uid}/notes/a b.txt`);
  assert.equal(r.data.fullPath, `docs/${uid}/notes/a b.txt`);
  assert.ok(r.data.id);
  r = await docs.upload(`${uid}/notes/a b.txt`, 'again');
  assert.equal(r.error.status, 409);
  r = await docs.upload(`${uid}/notes/a b.txt`, new Blob(['hello, world'], { type: 'text/plain' }), { upsert: true });
  assert.equal(r.error, null);
  r = await docs.download(`${uid}/notes/a b.txt`);
  assert.ok(r.data instanceof Blob);
  assert.equal(await r.data.text(), 'hello, world');
  assert.match(r.data.type, /^text\/plain/);
  r = await docs.update(`${uid}/notes/a b.txt`, bytes(1000), { contentType: 'application/octet-stream' });
  assert.equal(r.error, null);
  r = await docs.download(`${uid}/notes/a b.txt`);
  assert.deepEqual(new Uint8Array(await r.data.arrayBuffer()), bytes(1000));
  r = await docs.list(`${uid}/notes`);
  assert.deepEqual(r.data.map((o) => o.name), ['a b.txt']);
  r = await docs.move(`${uid}/notes/a b.txt`, `${uid}/moved.bin`);
  assert.equal(r.error, null, JSON.stringify(r.error));
  r = await docs.copy(`${uid}/moved.bin`, `${uid}/copy.bin`);
  assert.deepEqual(r, { data: { path: `docs/${uid}/copy.bin` }, error: null });
  r = await docs.list(uid, { sortBy: { column: 'name', order: 'desc' } });
  assert.deepEqual(r.data.map((o) => o.name), ['moved.bin', 'copy.bin']);
  r = await docs.list(uid, { search: 'cop' });
  assert.deepEqual(r.data.map((o) => o.name), ['copy.bin']);
  r = await docs.remove([`${uid}/moved.bin`, `${uid}/copy.bin`]);
  assert.equal(r.error, null);
  assert.equal(r.data.length, 2);
  r = await docs.download(`${uid}/copy.bin`);
  assert.deepEqual([r.data, r.error.status], [null, 404]);
});

test('signed URLs, signed uploads and public URLs', async () => {
  const docs = user.storage.from('docs');
  await docs.upload(`${uid}/signed.txt`, 'signed body', { contentType: 'text/plain' });
  let r = await docs.createSignedUrl(`${uid}/signed.txt`, 60);
  assert.equal(r.error, null);
  let res = await fetch(r.data.signedUrl);
  assert.equal(await res.text(), 'signed body');
  r = await docs.createSignedUrl(`${uid}/signed.txt`, 60, { download: 'named.txt' });
  res = await fetch(r.data.signedUrl);
  assert.match(res.headers.get('content-disposition'), /attachment.*named\.txt/);
  r = await docs.createSignedUrl(`${uid}/nothing.txt`, 60);
  assert.equal(r.error.status, 404);

  r = await docs.createSignedUploadUrl(`${uid}/dropbox.txt`);
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.ok(r.data.token);
  // Anyone holding the token may upload there once.
  const anon = client(doska);
  const up = await anon.storage.from('docs').uploadToSignedUrl(`${uid}/dropbox.txt`, r.data.token, 'dropped', { contentType: 'text/plain' });
  assert.equal(up.error, null, JSON.stringify(up.error));
  assert.equal(await (await docs.download(`${uid}/dropbox.txt`)).data.text(), 'dropped');
  r = await anon.storage.from('docs').uploadToSignedUrl(`${uid}/dropbox.txt`, 'forged-token', 'x');
  assert.equal(r.data, null);
  assert.ok(r.error.status >= 400 && r.error.status < 500);

  await user.storage.from('pub').upload(`${uid}/open.txt`, 'public body', { contentType: 'text/plain' });
  const { data } = anon.storage.from('pub').getPublicUrl(`${uid}/open.txt`);
  assert.equal(data.publicUrl, `${doska.url}/storage/v1/object/public/pub/${uid}/open.txt`);
  assert.equal(await (await fetch(data.publicUrl)).text(), 'public body');
  const dl = anon.storage.from('pub').getPublicUrl(`${uid}/open.txt`, { download: true }).data.publicUrl;
  assert.match((await fetch(dl)).headers.get('content-disposition'), /attachment/);
});

test('RLS: another user\'s folder and anonymous writes are refused as values', async () => {
  const other = client(doska);
  await other.auth.signUp({ email: email(), password: 'password-1' });
  let r = await other.storage.from('docs').upload(`${uid}/intruder.txt`, 'x');
  assert.equal(r.data, null);
  assert.equal(r.error.name, 'StorageApiError');
  assert.equal(r.error.status, 403);
  await user.storage.from('docs').upload(`${uid}/secret.txt`, 'secret');
  r = await other.storage.from('docs').download(`${uid}/secret.txt`);
  assert.equal(r.error.status, 404, 'what the caller may not see does not exist for them');
  r = await client(doska).storage.from('docs').upload('anon.txt', 'x');
  assert.ok(r.error.status === 403 || r.error.status === 400, JSON.stringify(r.error));
  r = await other.storage.from('docs').remove([`${uid}/secret.txt`]);
  assert.deepEqual(r.data, []);
  assert.equal((await user.storage.from('docs').download(`${uid}/secret.txt`)).error, null);
});

test('TUS: a file above the threshold uploads resumably in chunks; a cut chunk is sent again', async () => {
  const body = bytes(300 * 1024, 13);
  const seen = [];
  let cut = 1;
  const flaky = client(doska, {
    tus: { threshold: 100 * 1024, chunkSize: 64 * 1024 },
    storage: user.storageArea,
    fetch: (url, init) => {
      seen.push(init.method);
      // The network drops during the second PATCH, once.
      if (init.method === 'PATCH' && seen.filter((m) => m === 'PATCH').length === 2 && cut-- > 0) return offlineFetch();
      return fetch(url, init);
    },
  });
  let r = await flaky.storage.from('docs').upload(`${uid}/big.bin`, new Blob([body], { type: 'application/octet-stream' }));
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.deepEqual(r.data, { path: `${uid}/big.bin`, fullPath: `docs/${uid}/big.bin` });
  assert.equal(seen[0], 'POST');
  assert.ok(seen.includes('HEAD'), 'asked the server for its offset after the cut');
  assert.equal(seen.filter((m) => m === 'PATCH').length, 6, '5 chunks of 64 KiB, one sent twice');
  r = await user.storage.from('docs').download(`${uid}/big.bin`);
  assert.deepEqual(new Uint8Array(await r.data.arrayBuffer()), body);
  // An existing path without upsert is refused when the upload is created; with upsert it replaces.
  r = await user.storage.from('docs').upload(`${uid}/big.bin`, body);
  assert.equal(r.error.status, 409);
  r = await user.storage.from('docs').upload(`${uid}/big.bin`, bytes(150 * 1024, 3), { upsert: true });
  assert.equal(r.error, null, JSON.stringify(r.error));
  r = await user.storage.from('docs').download(`${uid}/big.bin`);
  assert.deepEqual(new Uint8Array(await r.data.arrayBuffer()), bytes(150 * 1024, 3));
  // resumable: true forces TUS for a small body; the server's refusal (no such bucket) is a value.
  r = await user.storage.from('docs').upload(`${uid}/small.txt`, 'tiny', { resumable: true, contentType: 'text/plain' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.equal(await (await user.storage.from('docs').download(`${uid}/small.txt`)).data.text(), 'tiny');
  r = await user.storage.from('nope').upload(`${uid}/x.bin`, body);
  assert.equal(r.data, null);
  assert.equal(r.error.status, 404);
  r = await user.storage.from('docs').upload(`someone-else/x.bin`, body);
  assert.equal(r.error.status, 403);
});

test('bad inputs: no network, an HTML answer, an unknown bucket', async () => {
  let r = await client(doska, { fetch: offlineFetch }).storage.from('docs').download('x');
  assert.deepEqual([r.data, r.error.name, r.error.status], [null, 'NetworkError', 0]);
  r = await client(doska, { fetch: offlineFetch }).storage.from('docs').upload('x', 'y');
  assert.equal(r.error.name, 'NetworkError');
  const html = await htmlServer(404);
  try {
    r = await client({ url: html.url, anonKey: 'k' }).storage.listBuckets();
    assert.deepEqual([r.data, r.error.name, r.error.code, r.error.status], [null, 'StorageUnknownError', 'NOT_JSON', 404]);
    r = await client({ url: html.url, anonKey: 'k' }).storage.from('docs').download('x');
    assert.equal(r.error.code, 'NOT_JSON');
  } finally {
    await html.close();
  }
  r = await user.storage.from('nope').download('x');
  assert.deepEqual([r.data, r.error.name, r.error.status], [null, 'StorageApiError', 404]);
  r = await user.storage.from('nope').list();
  assert.deepEqual([r.data, r.error], [[], null], 'an unknown bucket lists as empty, as Supabase');
});
