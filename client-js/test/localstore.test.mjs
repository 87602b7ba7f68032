// localStore against a live doska: two devices converge, tabs hear each other's writes, the
// quota throws as localStorage does, deletes travel as tombstones, and an older echo never
// overwrites a newer local write.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDoska } from '../../server/tests/js/harness.mjs';
import { start, client, user, until, memoryStorage, cuttable } from './sync-helpers.mjs';

let d;
before(async () => { d = await start(); });
after(() => d?.stop());

/** A second device of the same user: its own storage, signed in with the same password. */
async function sameUser(c) {
  const other = client(d);
  const { error } = await other.auth.signInWithPassword({ email: c.email, password: 'password-123' });
  assert.equal(error, null);
  return other;
}

test('two devices converge; subscribe reports local and remote origins', async () => {
  const a = await user(d);
  const b = await sameUser(a);
  const sa = await a.localStore('prefs');
  const sb = await b.localStore('prefs');
  const seenA = [], seenB = [];
  sa.subscribe((e) => seenA.push(e));
  sb.subscribe((e) => seenB.push(e));
  sa.setItem('theme', 'dark');
  assert.equal(sa.getItem('theme'), 'dark', 'reads see the write at once');
  assert.deepEqual(seenA, [{ key: 'theme', oldValue: null, newValue: 'dark', origin: 'local' }]);
  assert.deepEqual(await sa.flush(), { error: null });
  await until(() => sb.getItem('theme') === 'dark', 'the write on device b');
  assert.deepEqual(seenB, [{ key: 'theme', oldValue: null, newValue: 'dark', origin: 'remote' }]);
  sb.setItem('theme', 'light');
  sb.setItem('lang', 'ru');
  sb.removeItem('theme');
  await sb.flush();
  await until(() => sa.getItem('lang') === 'ru' && sa.getItem('theme') === null, 'b\'s writes and delete on a');
  assert.equal(sa.length, 1);
  assert.equal(sa.key(0), 'lang');
  assert.equal(sa.key(1), null);
  // A store opened later starts from the server's copy.
  const c = await sameUser(a);
  const sc = await c.localStore('prefs');
  assert.equal(sc.getItem('lang'), 'ru');
  assert.equal(sc.getItem('theme'), null);
  assert.equal(sc.length, 1);
  sa.clear();
  await sa.flush();
  await until(() => sb.length === 0 && sc.length === 0, 'clear on the other devices');
  for (const x of [a, b, c]) await x.removeAllChannels();
});

test('stores are per user and per name: RLS keeps other users out', async () => {
  const a = await user(d), b = await user(d);
  const sa = await a.localStore('notes');
  sa.setItem('k', 'a\'s');
  await sa.flush();
  const sb = await b.localStore('notes');
  assert.equal(sb.getItem('k'), null);
  const other = await a.localStore('other');
  assert.equal(other.getItem('k'), null);
  // Even asked directly, the table shows b nothing of a's.
  const { data } = await b.from('doska_local_store').select('key');
  assert.deepEqual(data, []);
  const anon = client(d);
  await assert.rejects(anon.localStore('notes'), /sign in/);
  await a.removeAllChannels();
  await b.removeAllChannels();
});

test('tabs sharing a storage hear each other at once (origin tab)', async () => {
  const storage = memoryStorage();
  const a = await user(d, { storage });
  const tab2 = client(d, { storage }); // the same storage: the same session and device
  assert.equal(tab2.deviceId, a.deviceId);
  const s1 = await a.localStore('tabs');
  const s2 = await tab2.localStore('tabs');
  const seen = [];
  s2.subscribe((e) => seen.push(e));
  s1.setItem('x', '1');
  await until(() => s2.getItem('x') === '1', 'the write in the other tab');
  assert.deepEqual(seen[0], { key: 'x', oldValue: null, newValue: '1', origin: 'tab' });
  await s1.flush();
  // Its echo from the server carries the same value: no second event.
  s1.setItem('y', '2');
  await s1.flush();
  await until(() => s2.getItem('y') === '2', 'the second write');
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(seen.map((e) => [e.key, e.origin]), [['x', 'tab'], ['y', 'tab']]);
  a.tabs.close();
  tab2.tabs.close();
  await a.removeAllChannels();
  await tab2.removeAllChannels();
});

test('quota: past 5 MB setItem throws QuotaExceededError and changes nothing', async () => {
  const a = await user(d);
  const s = await a.localStore('big');
  const mb = 'x'.repeat(1024 * 1024);
  for (let i = 0; i < 4; i++) s.setItem('k' + i, mb);
  assert.throws(() => s.setItem('k4', mb + mb), (e) => e.name === 'QuotaExceededError' && /5 MB/.test(e.message));
  assert.equal(s.getItem('k4'), null);
  assert.equal(s.length, 4);
  s.setItem('k0', 'small'); // replacing frees room
  s.setItem('k4', mb);
  assert.deepEqual(await s.flush(), { error: null });
  const again = await (await sameUser(a)).localStore('big');
  assert.equal(again.getItem('k4'), mb);
  assert.equal(again.getItem('k0'), 'small');
  await a.removeAllChannels();
});

/**
 * A fetch that holds POSTs to doska_local_store while `hold` is set: `before` holds them before
 * they leave, `after` lets them reach the server and holds the answer.
 */
function gate() {
  const g = { mode: null, held: [] };
  g.fetch = async (u, i) => {
    const mode = i?.method === 'POST' && String(u).includes('doska_local_store') ? g.mode : null;
    if (mode === 'before') await new Promise((r) => g.held.push(r));
    const res = await globalThis.fetch(u, i);
    if (mode === 'after') await new Promise((r) => g.held.push(r));
    return res;
  };
  g.release = () => { g.mode = null; g.held.splice(0).forEach((r) => r()); };
  return g;
}

test('an older echo never overwrites a newer local write still on its way', async () => {
  const g = gate();
  const a = await user(d, { fetch: g.fetch });
  const b = await sameUser(a);
  const sa = await a.localStore('race');
  const sb = await b.localStore('race');
  const seen = [];
  sa.subscribe((e) => seen.push(e));
  g.mode = 'before';
  sa.setItem('k', 'from a'); // the user's latest intent; not yet at the server
  await until(() => g.held.length, 'a\'s write held');
  sb.setItem('k', 'from b'); // reaches the server first: older than a's will be
  await sb.flush();
  await until(() => sa.r.get('k')?.v === 'from b', 'b\'s change seen by a while its own write is pending');
  assert.equal(sa.getItem('k'), 'from a');
  g.release();
  assert.deepEqual(await sa.flush(), { error: null });
  await until(() => sb.getItem('k') === 'from a', 'a\'s write on b');
  assert.equal(sa.getItem('k'), 'from a');
  assert.deepEqual(seen.map((e) => [e.newValue, e.origin]), [['from a', 'local']]);
  await a.removeAllChannels();
  await b.removeAllChannels();
});

test('a newer write from another device seen while ours was on its way wins', async () => {
  const g = gate();
  const a = await user(d, { fetch: g.fetch });
  const b = await sameUser(a);
  const sa = await a.localStore('race2');
  const sb = await b.localStore('race2');
  g.mode = 'after';
  sa.setItem('k', 'from a'); // reaches the server; its answer is held
  await until(() => g.held.length, 'a\'s answer held');
  await until(() => sb.getItem('k') === 'from a', 'a\'s write on b');
  sb.setItem('k', 'from b'); // newer on the server
  await sb.flush();
  await until(() => sa.r.get('k')?.v === 'from b', 'b\'s change seen by a');
  assert.equal(sa.getItem('k'), 'from a', 'while pending, the local write stands');
  g.release();
  await sa.flush();
  assert.equal(sa.getItem('k'), 'from b', 'the server ordered b\'s write last');
  await a.removeAllChannels();
  await b.removeAllChannels();
});

test('writes made while the server is unreachable are kept and sent once it answers', async () => {
  const storage = memoryStorage();
  let down = false;
  const fetch = (u, i) => (down ? Promise.reject(new TypeError('fetch failed')) : globalThis.fetch(u, i));
  const a = await user(d, { storage, fetch });
  const s = await a.localStore('later');
  down = true;
  s.setItem('k', 'v');
  const flushed = s.flush();
  await new Promise((r) => setTimeout(r, 50));
  // A reload meanwhile would find the pending write in the storage area.
  const kept = JSON.parse(storage.getItem(`doska.ls:${a.auth.currentSession.user.id}:later`));
  assert.deepEqual(kept.p, [['k', 'v']]);
  down = false;
  assert.deepEqual(await flushed, { error: null });
  const other = await (await sameUser(a)).localStore('later');
  assert.equal(other.getItem('k'), 'v');
  await a.removeAllChannels();
});

test('a reload finds the pending writes and the copy, and opens while offline', async () => {
  const storage = memoryStorage();
  let down = false;
  const fetch = (u, i) => (down ? Promise.reject(new TypeError('fetch failed')) : globalThis.fetch(u, i));
  const net = cuttable();
  const a = await user(d, { storage, fetch, WebSocket: net.WebSocket });
  const s = await a.localStore('reload');
  s.setItem('seen', 'yes');
  await s.flush();
  down = true;
  net.drop();
  s.setItem('offline', 'write');
  await new Promise((r) => setTimeout(r, 50));
  a.realtime.disconnect();
  // The "reloaded page": a new client on the same storage, still offline.
  const again = client(d, { storage, fetch, WebSocket: net.WebSocket });
  const s2 = await again.localStore('reload');
  assert.equal(s2.getItem('seen'), 'yes');
  assert.equal(s2.getItem('offline'), 'write');
  down = false;
  net.restore();
  assert.deepEqual(await s2.flush(), { error: null });
  const other = await (await sameUser(a)).localStore('reload');
  assert.equal(other.getItem('offline'), 'write');
  await again.removeAllChannels();
});

test('a doska that does not expose public (no localStore table in reach): open rejects with a clear error', async () => {
  const bare = await startDoska({ migrations: { '0001_api.sql': 'create schema api;' }, args: ['--db-schemas', 'api'] });
  try {
    const a = await user(bare);
    await assert.rejects(a.localStore('prefs'), /localStore\(prefs\): .*doska_local_store/);
    await a.removeAllChannels();
  } finally {
    await bare.stop();
  }
});

test('a storage area too full for the copy still keeps the writes not yet sent', async () => {
  const base = memoryStorage();
  const storage = {
    ...base,
    setItem(k, v) {
      if (k.startsWith('doska.ls:') && v.length > 1000) throw Object.assign(new Error('full'), { name: 'QuotaExceededError' });
      base.setItem(k, v);
    },
  };
  let down = false;
  const fetch = (u, i) => (down ? Promise.reject(new TypeError('fetch failed')) : globalThis.fetch(u, i));
  const a = await user(d, { storage, fetch });
  const s = await a.localStore('full');
  s.setItem('big', 'x'.repeat(5000));
  await s.flush();
  down = true;
  s.setItem('small', 'pending');
  await new Promise((r) => setTimeout(r, 50));
  const kept = JSON.parse(storage.getItem(`doska.ls:${a.auth.currentSession.user.id}:full`));
  assert.deepEqual(kept, { p: [['small', 'pending']] });
  down = false;
  assert.deepEqual(await s.flush(), { error: null });
  await a.removeAllChannels();
});

test('signing out closes the store and empties it; signing in again finds the data', async () => {
  const storage = memoryStorage();
  const a = await user(d, { storage });
  const s = await a.localStore('mine');
  s.setItem('k', 'v');
  await s.flush();
  await a.auth.signOut();
  await until(() => s.closed, 'the store to close');
  assert.equal(s.getItem('k'), null);
  assert.equal(s.length, 0);
  await a.auth.signInWithPassword({ email: a.email, password: 'password-123' });
  const again = await a.localStore('mine');
  assert.notEqual(again, s);
  assert.equal(again.getItem('k'), 'v');
  await a.removeAllChannels();
});
