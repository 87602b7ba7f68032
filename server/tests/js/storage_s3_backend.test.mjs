// Supabase storage as supabase-js (storage-js) and tus-js-client speak it, and boto3 on the S3 door,
// against a doska whose object bytes live on an S3 service (`--storage-backend s3`). The service is
// s3s-fs (an S3 implementation of its own, keeping each object as a plain file under its root folder),
// started by this suite; scripts/setup installs it. Every object's bytes are checked where the
// service keeps them — `<root>/<bucket>/<blob name>`, by the blob names doska's rows give — and the
// service's folder is compared with the rows: no blob a row does not name, no multipart upload left.
// Covered: raw and form-data uploads, a long body of declared length (one streamed PUT upstream) and
// one of unknown length (an upstream multipart upload), ranges, copy, move, overwrite, remove, TUS,
// boto3's puts, ranges, multipart and copies, and the service stopped (503s) and started again
// (working without restarting doska).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, mkdir, readFile, readdir, rm, chmod, stat, utimes, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska, repoRoot } from './harness.mjs';

const BACKEND_KEY = 'BACKENDKEY';
const BACKEND_SECRET = 'backend-secret-access-key';
const DOOR_KEY = 'DOORKEY';
const DOOR_SECRET = 'door-secret-access-key';
const BUCKET = 'blobs';
const MIB = 1 << 20;
// Where scripts/setup's `cargo install` puts it (S3S_FS_BIN overrides).
const s3sFs = process.env.S3S_FS_BIN
  ?? join(process.env.CARGO_HOME ?? join(homedir(), '.cargo'), 'bin', 's3s-fs');

// Test-only functions, callable by service_role alone: the blob names holding an object's bytes
// (its parts in order, or its one blob), and every blob name a row refers to.
const MIGRATION = `
create function public.blob_names(bucket text, key text) returns text[]
language sql stable security definer set search_path = '' as $$
  select coalesce(
    (select array_agg('data/' || substr(replace(p.part_id::text, '-', ''), 1, 2) || '/' || p.part_id || '.part'
                      order by p.part_number)
       from storage.doska_object_parts p where p.object_id = o.id and p.object_version = o.version),
    array['data/' || substr(replace(o.id::text, '-', ''), 1, 2) || '/' || o.id || '.' || o.version])
  from storage.objects o where o.bucket_id = bucket and o.name = key
$$;
create function public.live_blobs() returns text[]
language sql stable security definer set search_path = '' as $$
  select coalesce(array_agg(n order by n), '{}') from (
    select 'data/' || substr(replace(o.id::text, '-', ''), 1, 2) || '/' || o.id || '.' || o.version
      from storage.objects o
     where not exists (select 1 from storage.doska_object_parts p
                        where p.object_id = o.id and p.object_version = o.version)
    union all
    select 'data/' || substr(replace(part_id::text, '-', ''), 1, 2) || '/' || part_id || '.part'
      from storage.doska_object_parts
    union all
    select 'data/' || substr(replace(id::text, '-', ''), 1, 2) || '/' || id || '.part'
      from storage.s3_multipart_uploads_parts) b(n)
$$;
revoke all on function public.blob_names(text, text), public.live_blobs() from public, anon, authenticated;
grant execute on function public.blob_names(text, text), public.live_blobs() to service_role;
`;

let root, service, doska, admin, orphan;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** s3s-fs serving `root` on `port`; resolves once it accepts connections. */
async function startService(port) {
  let log = '';
  const child = spawn(s3sFs, ['--host', '127.0.0.1', '--port', String(port),
    '--access-key', BACKEND_KEY, '--secret-key', BACKEND_SECRET, root], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (c) => { log += c; });
  child.stderr.on('data', (c) => { log += c; });
  const spawned = new Promise((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (e) => reject(new Error(`${s3sFs} did not start (scripts/setup installs it): ${e.message}`)));
  });
  await spawned;
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`s3s-fs exited (${child.exitCode}):\n${log}`);
    if (Date.now() > deadline) throw new Error(`s3s-fs did not listen within 30 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'doska-s3s-fs-'));
  await chmod(root, 0o755);
  await mkdir(join(root, BUCKET));
  // An orphan on the service, as a crash between the bytes and the row leaves one: no row names it.
  const id = randomUUID();
  orphan = `data/${id.replace(/-/g, '').slice(0, 2)}/${id}.part`;
  await mkdir(join(root, BUCKET, orphan, '..'), { recursive: true });
  await writeFile(join(root, BUCKET, orphan), 'bytes a crash left');
  const hourAgo = new Date(Date.now() - 3600_000);
  await utimes(join(root, BUCKET, orphan), hourAgo, hourAgo);
  service = await startService(await freePort());
  doska = await startDoska({
    migrations: { '0001_blob_names.sql': MIGRATION },
    args: [
      '--storage-backend', 's3',
      '--storage-s3-endpoint', `http://127.0.0.1:${service.port}`,
      '--storage-s3-bucket', BUCKET,
      '--storage-s3-access-key-id', BACKEND_KEY,
      '--storage-s3-secret-access-key', BACKEND_SECRET,
      '--s3-listen', '127.0.0.1:0',
      '--s3-access-key-id', DOOR_KEY,
      '--s3-secret-access-key', DOOR_SECRET,
      // The orphan cleanup runs every 10 s and removes blobs no row names once 40 s old (long
      // enough for any live write here to commit its row first).
      '--storage-orphan-age', '40s',
    ],
  });
  admin = createClient(doska.url, doska.serviceKey, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
  });
  assert.equal((await admin.storage.createBucket('docs')).error, null);
});

after(async () => {
  await doska?.stop();
  await service?.kill();
  if (root) await rm(root, { recursive: true, force: true });
});

const md5 = (b) => createHash('md5').update(b).digest('hex');
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

async function blobNames(bucket, key) {
  const { data, error } = await admin.rpc('blob_names', { bucket, key });
  assert.equal(error, null);
  assert.ok(Array.isArray(data) && data.length > 0, `${bucket}/${key} has a row`);
  return data;
}

/** A blob's bytes as the service keeps them; null when it has no such file. */
async function blob(name) {
  try {
    return await readFile(join(root, BUCKET, name));
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

/** An object's bytes as the service holds them: its blobs, concatenated. */
async function backendBytes(bucket, key) {
  const out = [];
  for (const name of await blobNames(bucket, key)) {
    const b = await blob(name);
    assert.ok(b, `${name} (${bucket}/${key}) is on the service`);
    out.push(b);
  }
  return Buffer.concat(out);
}

/** Every file under the service's bucket folder (its objects), by key. */
async function serviceKeys(dir = join(root, BUCKET), prefix = '') {
  const out = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...(await serviceKeys(join(dir, e.name), `${prefix}${e.name}/`)));
    else out.push(`${prefix}${e.name}`);
  }
  return out.sort();
}

/** Multipart uploads the service has open (s3s-fs keeps one `.upload-<id>.json` per upload). */
async function openUploads() {
  return (await readdir(root)).filter((n) => n.startsWith('.upload-') && n.endsWith('.json'));
}

/** A body of `len` bytes handed over as a stream of 1 MiB pieces: sent chunked, length unknown. */
function streamOf(bytes) {
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) { controller.close(); return; }
      controller.enqueue(new Uint8Array(bytes.subarray(at, at + MIB)));
      at += MIB;
    },
  });
}

const files = () => admin.storage.from('docs');

async function download(key, range) {
  const f = files();
  const r = range
    ? await f.download(key, {}, { headers: { ...f.headers, range } })
    : await f.download(key);
  if (r.error) return r;
  return { data: Buffer.from(await r.data.arrayBuffer()), error: null };
}

const small = randomBytes(5000);
const big = randomBytes(20 * MIB);

test('storage-js stores and reads objects whose bytes are on the S3 service', async () => {
  // A raw body (one PUT upstream), a form-data upload with metadata, a 20 MiB body of declared
  // length (streamed on in one PUT) and the same sent as a stream of unknown length (an upstream
  // multipart upload, which the service assembles into one object).
  const form = randomBytes(3000);
  const cases = [
    ['a/small.bin', small, () => files().upload('a/small.bin', small, { contentType: 'application/octet-stream' })],
    ['a/form.pdf', form, () => files().upload('a/form.pdf', new Blob([form], { type: 'application/pdf' }), { metadata: { unit: 1 } })],
    ['a/big.bin', big, () => files().upload('a/big.bin', big)],
    ['a/streamed.bin', big, () => files().upload('a/streamed.bin', streamOf(big))],
  ];
  for (const [key, bytes, upload] of cases) {
    const r = await upload();
    assert.equal(r.error, null, `${key}: ${r.error?.message}`);
    assert.equal(r.data.path, key);
    const got = await download(key);
    assert.equal(got.error, null, key);
    assert.ok(got.data.equals(bytes), `${key} reads back`);
    const names = await blobNames('docs', key);
    assert.equal(names.length, 1, `${key} is one object upstream`);
    assert.ok((await backendBytes('docs', key)).equals(bytes), `${key} on the service`);
  }
  assert.deepEqual(await openUploads(), [], 'the multipart upload was completed upstream');
  // The ETag is the bytes' MD5 (as on disk); info and metadata come from the rows.
  const url = `${doska.url}/storage/v1/object/docs/a/big.bin`;
  const res = await fetch(url, { method: 'HEAD', headers: { authorization: `Bearer ${doska.serviceKey}`, apikey: doska.serviceKey } });
  assert.equal(res.headers.get('etag'), `"${md5(big)}"`);
  const info = await files().info('a/form.pdf');
  assert.equal(info.error, null);
  assert.equal(info.data.contentType, 'application/pdf');
  assert.equal(info.data.size, 3000);
  assert.deepEqual(info.data.metadata, { unit: 1 });

  // Ranges through storage-js pass through to the service: inside, across doska's 8 MiB part size,
  // a suffix, and past the end (416, in the storage shape).
  for (const [range, want] of [
    ['bytes=10-19', big.subarray(10, 20)],
    ['bytes=8388600-8388620', big.subarray(8388600, 8388621)],
    ['bytes=-5', big.subarray(big.length - 5)],
  ]) {
    for (const key of ['a/big.bin', 'a/streamed.bin']) {
      const r = await download(key, range);
      assert.equal(r.error, null, `${key} ${range}`);
      assert.ok(r.data.equals(want), `${key} ${range}`);
    }
  }
  const past = await download('a/big.bin', 'bytes=99999999-');
  assert.equal(past.error.statusCode, '416');
});

test('copy, move, overwrite and remove keep the service in step with the rows', async () => {
  // A copy is bytes of its own upstream.
  let r = await files().copy('a/big.bin', 'b/copy.bin');
  assert.equal(r.error, null);
  const [original] = await blobNames('docs', 'a/big.bin');
  const [copied] = await blobNames('docs', 'b/copy.bin');
  assert.notEqual(copied, original);
  assert.ok((await blob(copied)).equals(big), 'the copy on the service');
  // A move renames the row; its bytes stay where they are.
  r = await files().move('b/copy.bin', 'b/moved.bin');
  assert.equal(r.error, null);
  assert.deepEqual(await blobNames('docs', 'b/moved.bin'), [copied]);
  assert.ok((await download('b/moved.bin')).data.equals(big));
  // An overwrite replaces the blob upstream; the old one is removed.
  const [before] = await blobNames('docs', 'a/small.bin');
  const newer = randomBytes(7000);
  r = await files().upload('a/small.bin', newer, { upsert: true });
  assert.equal(r.error, null);
  const [after] = await blobNames('docs', 'a/small.bin');
  assert.notEqual(after, before);
  assert.equal(await blob(before), null, 'the replaced version is gone from the service');
  assert.ok((await blob(after)).equals(newer));
  assert.ok((await download('a/small.bin')).data.equals(newer));
  // A remove takes the bytes with it.
  r = await files().remove(['b/moved.bin']);
  assert.equal(r.error, null);
  assert.equal(r.data.length, 1);
  assert.equal(await blob(copied), null, "a removed object's bytes are gone from the service");
});

test('TUS (tus-js-client): each chunk is one blob on the service; a cut upload resumes', async () => {
  const { Upload } = await import('tus-js-client');
  const data = randomBytes(7 * MIB);
  const chunkSize = 3 * MIB;
  const options = (extra) => ({
    endpoint: `${doska.url}/storage/v1/upload/resumable`,
    chunkSize,
    retryDelays: [],
    headers: { authorization: `Bearer ${doska.serviceKey}`, apikey: doska.serviceKey },
    metadata: { bucketName: 'docs', objectName: 't/video.bin', contentType: 'application/octet-stream' },
    ...extra,
  });
  const url = await new Promise((resolve, reject) => {
    const up = new Upload(data, options({
      onChunkComplete: () => up.abort().then(() => resolve(up.url), reject),
      onError: reject,
      onSuccess: () => reject(new Error('should have been cut')),
    }));
    up.start();
  });
  await new Promise((resolve, reject) => {
    new Upload(data, options({ uploadUrl: url, onError: reject, onSuccess: resolve })).start();
  });
  const got = await download('t/video.bin');
  assert.equal(got.error, null);
  assert.ok(got.data.equals(data), 'the TUS upload reads back');
  assert.equal((await blobNames('docs', 't/video.bin')).length, 3, 'kept as its three pieces');
  assert.ok((await backendBytes('docs', 't/video.bin')).equals(data), 'the pieces on the service');
  const r = await download('t/video.bin', `bytes=${3 * MIB - 2}-${6 * MIB + 1}`);
  assert.ok(r.data.equals(data.subarray(3 * MIB - 2, 6 * MIB + 2)), 'a range across the pieces');
});

test("boto3 through doska's S3 door: puts, ranges, multipart and copies land on the service", async () => {
  const script = join(repoRoot, 'server/tests/s3/upstream_check.py');
  const env = { ...process.env, S3_URL: doska.s3Url, S3_KEY: DOOR_KEY, S3_SECRET: DOOR_SECRET, BUCKET: 'boto' };
  delete env.AWS_PROFILE;
  delete env.AWS_CONFIG_FILE;
  let out;
  try {
    out = (await promisify(execFile)('python3', [script], { env, maxBuffer: 16 * MIB })).stdout;
  } catch (e) {
    assert.fail(`boto3 check failed (scripts/setup installs boto3):\n${e.stdout}${e.stderr}`);
  }
  assert.match(out, / passed, 0 failed/);
  const stored = JSON.parse(out.split('\n').find((l) => l.startsWith('RESULT ')).slice('RESULT '.length));
  assert.deepEqual(Object.keys(stored).sort(), ['boto/big.bin', 'boto/copy.bin', 'boto/small.bin']);
  for (const [key, sum] of Object.entries(stored)) {
    assert.equal(sha256(await backendBytes('boto', key)), sum, `${key} on the service`);
  }
  assert.equal((await blobNames('boto', 'boto/big.bin')).length, 3, 'an S3 multipart object keeps its parts');
});

test('every blob on the service is one a row names (the orphan cleanup removed the stray one), no multipart upload is left open', async () => {
  // s3s-fs has no ListMultipartUploads: the cleanup's sweep of incomplete uploads fails there, and
  // the orphan blobs must be removed all the same.
  const deadline = Date.now() + 60_000;
  while ((await blob(orphan)) !== null) {
    assert.ok(Date.now() < deadline, `the orphan ${orphan} is still on the service after 60 s:\n${doska.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
  const { data, error } = await admin.rpc('live_blobs');
  assert.equal(error, null);
  assert.deepEqual(await serviceKeys(), data);
  assert.deepEqual(await openUploads(), []);
});

test('the service stopped: storage answers 503 saying why; started again: works without restarting doska', async () => {
  await service.kill();
  let r = await files().upload('c/new.txt', Buffer.from('new bytes'));
  assert.equal(r.error?.statusCode, '503', r.error?.message);
  assert.match(r.error.message, /unreachable/);
  r = await files().download('a/big.bin');
  assert.equal(r.error?.statusCode, '503');
  // What needs no bytes keeps working.
  r = await files().list('a');
  assert.equal(r.error, null);
  assert.deepEqual(r.data.map((o) => o.name), ['big.bin', 'form.pdf', 'small.bin', 'streamed.bin']);
  r = await files().exists('c/new.txt');
  assert.equal(r.data, false, 'no row without its bytes');

  service = await startService(service.port);
  r = await files().upload('c/new.txt', Buffer.from('new bytes'));
  assert.equal(r.error, null);
  assert.equal((await download('c/new.txt')).data.toString(), 'new bytes');
  assert.ok((await download('a/big.bin')).data.equals(big));
  assert.deepEqual((await backendBytes('docs', 'c/new.txt')).toString(), 'new bytes');
  const size = (await stat(join(root, BUCKET, (await blobNames('docs', 'a/big.bin'))[0]))).size;
  assert.equal(size, big.length);
});
