// The offline queue and read cache against a live doska: writes made with no network are saved in
// order, survive a reload (a new client on the same storage), flush in order; a refused write
// leaves as failed; reads answer from the cache marked stale; a corrupt queue or full storage is
// an error value, never a lost write or an unhandled rejection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { start, user, client, memoryStorage, until } from './sync-helpers.mjs';

const items = `
create table public.items (id bigserial primary key, owner uuid not null default auth.uid(), name text not null unique check (name <> 'bad'), n int);
alter table public.items enable row level security;
create policy own on public.items for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
`;

let d;
before(async () => { d = await start({ '0002_items.sql': items }); });
after(() => d?.stop());

/** A fetch the test switches off: thrown TypeError, as browsers and Node do offline. */
function network() {
  const n = { down: false, calls: 0 };
  n.fetch = (u, i) => (n.calls++, n.down ? Promise.reject(new TypeError('fetch failed')) : globalThis.fetch(u, i));
  return n;
}

test('writes queue while offline, survive a reload, and flush in order', async () => {
  const storage = memoryStorage(), net = network();
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  const states = [];
  a.offline.subscribe((s) => states.push(s.status));
  net.down = true;
  const tag = 'q' + Date.now();
  const r1 = await a.from('items').insert({ name: tag + '1', n: 1 });
  assert.deepEqual(r1, { data: null, error: null, count: null, status: 0, statusText: '', queued: true });
  await a.from('items').insert({ name: tag + '2', n: 2 });
  await a.from('items').update({ n: 10 }).eq('name', tag + '1');
  await a.from('items').delete().eq('name', tag + '2');
  await a.from('items').insert({ name: tag + '3', n: 3 });
  assert.equal(a.offline.pending(), 5);
  assert.equal(a.offline.status, 'offline');
  // Reads fail as network errors (nothing cached for them yet).
  const read = await a.from('items').select();
  assert.equal(read.error.name, 'NetworkError');
  // The "reload": a new client on the same storage finds the queue and sends it.
  const again = client(d, { storage, fetch: net.fetch, offline: true });
  assert.equal(again.offline.pending(), 5);
  net.down = false;
  assert.deepEqual(await again.offline.flush(), { sent: 5, failed: 0, pending: 0 });
  assert.equal(a.offline.pending(), 0);
  const { data } = await again.from('items').select('name,n').like('name', tag + '%').order('id');
  assert.deepEqual(data, [{ name: tag + '1', n: 10 }, { name: tag + '3', n: 3 }]);
  assert.ok(states.includes('offline'));
});

test('a write the server refuses leaves the queue as failed; the ones around it go', async () => {
  const storage = memoryStorage(), net = network();
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  const tag = 'f' + Date.now();
  net.down = true;
  await a.from('items').insert({ name: tag + 'a' });
  await a.from('items').insert({ name: 'bad' }); // violates the check: 400
  await a.from('items').insert({ name: tag + 'b' });
  net.down = false;
  assert.deepEqual(await a.offline.flush(), { sent: 2, failed: 1, pending: 0 });
  const [f] = a.offline.failed();
  assert.equal(f.status, 400);
  assert.equal(f.method, 'POST');
  assert.equal(JSON.parse(f.body).name, 'bad');
  assert.equal(f.error.code, '23514');
  assert.equal(f.headers, undefined, 'no credentials kept with a failed write');
  assert.deepEqual(await a.offline.flush(), { sent: 0, failed: 0, pending: 0 }, 'never retried');
  const { data } = await a.from('items').select('name').like('name', tag + '%').order('id');
  assert.deepEqual(data.map((r) => r.name), [tag + 'a', tag + 'b']);
});

test('queued writes go as the user who made them, when that user is signed in', async () => {
  const storage = memoryStorage(), net = network();
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  const tag = 'u' + Date.now();
  net.down = true;
  await a.from('items').insert({ name: tag + 'a' });
  net.down = false;
  await a.auth.signOut();
  const b = await user(d); // another user signs in on the same device
  const emailA = a.email;
  assert.equal((await a.auth.signInWithPassword({ email: b.email, password: 'password-123' })).error, null);
  await a.offline.flush();
  assert.equal(a.offline.pending(), 1, 'a\'s write waits for a');
  assert.deepEqual((await b.from('items').select('name').eq('name', tag + 'a')).data, []);
  await a.auth.signOut();
  // Signing in again sends it, as a.
  const again = client(d, { storage, fetch: net.fetch, offline: true });
  assert.equal((await again.auth.signInWithPassword({ email: emailA, password: 'password-123' })).error, null);
  await until(() => again.offline.pending() === 0, 'the write to go after sign-in');
  const { data } = await again.from('items').select('name').eq('name', tag + 'a');
  assert.equal(data.length, 1);
});

test('a flush that meets the network down again stops, keeps order, and retries', async () => {
  const storage = memoryStorage(), net = network();
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  const tag = 'r' + Date.now();
  net.down = true;
  for (const i of [1, 2, 3]) await a.from('items').insert({ name: tag + i });
  assert.deepEqual(await a.offline.flush(), { sent: 0, failed: 0, pending: 3 });
  assert.equal(a.offline.status, 'offline');
  net.down = false;
  // The backoff timer flushes without being asked.
  await until(() => a.offline.pending() === 0, 'the retry to send the queue', 20000);
  const { data } = await a.from('items').select('name').like('name', tag + '%').order('id');
  assert.deepEqual(data.map((r) => r.name), [tag + 1, tag + 2, tag + 3]);
  assert.equal(a.offline.status, 'online');
});

test('read cache: a select that fails for lack of network answers the last answer, stale', async () => {
  const net = network(), m = new Map();
  const storage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => void m.set(k, String(v)), removeItem: (k) => void m.delete(k) };
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  const tag = 'c' + Date.now();
  await a.from('items').insert({ name: tag, n: 7 });
  const fresh = await a.from('items').select('name,n', { count: 'exact' }).eq('name', tag);
  assert.equal(fresh.stale, undefined);
  net.down = true;
  const cached = await a.from('items').select('name,n', { count: 'exact' }).eq('name', tag);
  assert.deepEqual(cached, { data: [{ name: tag, n: 7 }], error: null, count: 1, status: 200, statusText: fresh.statusText, stale: true });
  // Another request (a different filter) has no cached answer: a network error.
  const other = await a.from('items').select('name,n').eq('name', tag + 'x');
  assert.equal(other.error.name, 'NetworkError');
  // The cache is bounded: old entries go.
  net.down = false;
  for (let i = 0; i < 60; i++) await a.from('items').select('name').eq('n', i);
  assert.ok(JSON.parse(a.storageArea.getItem('doska.cache')).length <= 50);
  // Signing out leaves no one's answers behind in the browser's storage.
  assert.ok([...m.keys()].some((k) => k.startsWith('doska.cache:')));
  await a.auth.signOut();
  assert.deepEqual([...m.keys()].filter((k) => k.startsWith('doska.cache')), []);
});

test('a corrupt persisted queue is kept aside and reported; new writes still queue', async () => {
  const storage = memoryStorage(), net = network();
  storage.setItem('doska.queue', '{"this is": not json');
  const a = client(d, { storage, fetch: net.fetch, offline: true });
  const seen = [];
  a.offline.subscribe((s) => seen.push(s));
  assert.match(seen[0].error.message, /corrupt/);
  assert.equal(storage.getItem('doska.queue.corrupt'), '{"this is": not json');
  net.down = true;
  const r = await a.from('items').insert({ name: 'x' + Date.now() });
  assert.equal(r.queued, true);
  assert.equal(a.offline.pending(), 1);
});

test('queued entries that are not requests are set aside as failed, the others sent', async () => {
  const storage = memoryStorage();
  const a = await user(d, { storage, offline: true });
  const tag = 'm' + Date.now();
  const good = { id: 'g', method: 'POST', url: `${d.url}/rest/v1/items`, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: tag }) };
  storage.setItem('doska.queue', JSON.stringify([{ nonsense: true }, { id: 'x', method: 'POST', url: 'not a url' }, good]));
  assert.deepEqual(await a.offline.flush(), { sent: 1, failed: 2, pending: 0 });
  assert.deepEqual(a.offline.failed().map((f) => f.error), ['not a queued request', 'not a queued request']);
  const { data } = await a.from('items').select('name').eq('name', tag);
  assert.equal(data.length, 1);
});

test('storage full on enqueue: the write resolves an error value, not queued: true', async () => {
  const base = memoryStorage(), net = network();
  const storage = {
    ...base,
    setItem(k, v) {
      if (k === 'doska.queue') throw Object.assign(new Error('quota exceeded'), { name: 'QuotaExceededError' });
      base.setItem(k, v);
    },
  };
  const a = await user(d, { storage, fetch: net.fetch, offline: true });
  net.down = true;
  const r = await a.from('items').insert({ name: 'full' + Date.now() });
  assert.equal(r.queued, undefined);
  assert.equal(r.error.name, 'NetworkError');
  assert.match(r.error.details, /offline queue/);
  assert.equal(a.offline.pending(), 0);
  assert.equal(a.offline.error.name, 'QuotaExceededError');
});

test('when storage is full the read cache gives way to a queued write', async () => {
  const base = memoryStorage(), net = network();
  let used = 0;
  const sizes = new Map();
  // A storage area of 7,000 characters, as a browser's quota is a few megabytes.
  const storage = {
    getItem: base.getItem,
    removeItem(k) { used -= sizes.get(k) ?? 0; sizes.delete(k); base.removeItem(k); },
    setItem(k, v) {
      const n = used - (sizes.get(k) ?? 0) + k.length + v.length;
      if (n > 7000) throw Object.assign(new Error('quota'), { name: 'QuotaExceededError' });
      used = n;
      sizes.set(k, k.length + v.length);
      base.setItem(k, v);
    },
  };
  const a = await user(d, { fetch: net.fetch, offline: true, storage });
  const tag = 'w' + Date.now();
  await a.from('items').insert({ name: tag + 'x'.repeat(900) });
  for (let i = 0; i < 3; i++) await a.from('items').select('name').eq('name', tag + 'x'.repeat(900)).limit(i + 1);
  assert.ok(used > 5000, 'the cache filled the area: ' + used);
  net.down = true;
  const r = await a.from('items').insert({ name: tag + 'y'.repeat(1500) });
  assert.equal(r.queued, true);
  assert.equal(storage.getItem('doska.cache'), null);
  assert.equal(a.offline.pending(), 1);
  net.down = false;
  assert.deepEqual(await a.offline.flush(), { sent: 1, failed: 0, pending: 0 });
});

test('a write whose answer was lost on the way back is applied once', async () => {
  const storage = memoryStorage();
  let lose = 0;
  // The request reaches doska and commits; its answer never reaches the app.
  const fetch = async (u, i) => {
    const res = await globalThis.fetch(u, i);
    if (lose > 0 && i?.method === 'POST') {
      lose--;
      throw new TypeError('fetch failed: connection reset');
    }
    return res;
  };
  const a = await user(d, { storage, fetch, offline: true });
  const tag = 'once' + Date.now();
  lose = 1;
  // doska's REST door honours Idempotency-Key: the repeat gets the stored answer (without it the
  // repeat would run again and the unique name would make it a 409).
  const r = await a.from('items').insert({ name: tag, n: 1 });
  assert.equal(r.queued, true);
  const q = JSON.parse(storage.getItem('doska.queue'));
  assert.ok(q[0].headers['Idempotency-Key'], 'the queued write keeps the key of its first attempt');
  assert.deepEqual(await a.offline.flush(), { sent: 1, failed: 0, pending: 0 });
  const { data } = await a.from('items').select('name').eq('name', tag);
  assert.equal(data.length, 1);
  assert.deepEqual(a.offline.failed(), [], 'the retry was answered as the first attempt (not a 409)');
});
