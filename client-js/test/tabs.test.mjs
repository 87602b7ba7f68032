// The tabs link in Node: clients sharing one storage are tabs of one device (a BroadcastChannel
// named after its device id); withLock runs one holder at a time per device and name. No server
// is needed: this is the platform's BroadcastChannel and the in-process lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tabs } from '../src/tabs.js';

const tabsOf = (deviceId) => new Tabs({ deviceId });

test('messages reach the other tabs of the device only, never the sender', async () => {
  const [a, b, other] = [tabsOf('dev1'), tabsOf('dev1'), tabsOf('dev2')];
  const got = { a: [], b: [], other: [] };
  a.on('t', (m) => got.a.push(m));
  const off = b.on('t', (m) => got.b.push(m));
  other.on('t', (m) => got.other.push(m));
  b.on('u', (m) => got.b.push(['u', m]));
  a.post('t', { n: 1 });
  a.post('u', 2);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(got, { a: [], b: [{ n: 1 }, ['u', 2]], other: [] });
  off();
  a.post('t', { n: 3 });
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(got.b.length, 2, 'unsubscribed');
  for (const t of [a, b, other]) t.close();
  a.post('t', 'after close is a no-op');
});

test('withLock: one holder at a time per device and name; errors pass through and free the lock', async () => {
  const [a, b] = [tabsOf('dev3'), tabsOf('dev3')];
  const log = [];
  const hold = (t, id) => t.withLock('flush', async () => {
    log.push('in ' + id);
    await new Promise((r) => setTimeout(r, 20));
    log.push('out ' + id);
    return id;
  });
  const results = await Promise.all([hold(a, 1), hold(b, 2), hold(a, 3)]);
  assert.deepEqual(results, [1, 2, 3]);
  assert.deepEqual(log, ['in 1', 'out 1', 'in 2', 'out 2', 'in 3', 'out 3']);
  await assert.rejects(a.withLock('flush', () => { throw new Error('boom'); }), /boom/);
  assert.equal(await b.withLock('flush', () => 'free again'), 'free again');
  // Another name, or another device, does not wait.
  let inner;
  await a.withLock('x', async () => { inner = await tabsOf('dev4').withLock('x', () => 'not blocked'); });
  assert.equal(inner, 'not blocked');
  a.close();
  b.close();
});
