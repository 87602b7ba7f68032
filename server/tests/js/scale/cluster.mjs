// Two doska instances on one database, seen from supabase-js clients on each: broadcast (socket,
// a payload over NOTIFY's 8,000 bytes, the REST endpoint, realtime.send from SQL), private
// channels authorized at join on the receiving instance, presence that converges, and a killed
// instance's presences leaving. Driven by server/tests/scale_out.rs, which starts PostgreSQL,
// Redis (or not) and the instances, and passes:
//   A_URL, B_URL   the two instances     SECRET   their JWT secret     B_PID   B's process id
// Exits non-zero with the failed assertion; prints one line per step.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { collector, subscribed } from '../harness.mjs';

const { A_URL, B_URL, SECRET, B_PID } = process.env;
const ALICE = '00000000-0000-4000-8000-00000000a11c';
const BOB = '00000000-0000-4000-8000-000000000b0b';

function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}
const anon = sign({ role: 'anon' });
const serviceKey = sign({ role: 'service_role' });
const now = Math.floor(Date.now() / 1000);
const userToken = (sub) => sign({ sub, role: 'authenticated', aud: 'authenticated', iat: now, exp: now + 3600 });

const clients = [];
function client(url, { token, key = anon } = {}) {
  const c = createClient(url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
  });
  if (token) c.realtime.setAuth(token);
  clients.push(c);
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const step = (what) => console.log(`scale: ${what}`);

/** A channel on `c` collecting broadcasts of `event` and presence events. */
async function join(c, topic, config = {}) {
  const got = collector();
  const ch = c.channel(topic, { config })
    .on('broadcast', { event: '*' }, (m) => got.push({ kind: 'broadcast', ...m }))
    .on('presence', { event: 'sync' }, () => got.push({ kind: 'sync', state: ch.presenceState() }))
    .on('presence', { event: 'join' }, (p) => got.push({ kind: 'join', ...p }))
    .on('presence', { event: 'leave' }, (p) => got.push({ kind: 'leave', ...p }));
  await subscribed(ch);
  return { ch, got };
}

/** Nothing more of `kind` arrives at `got` within a while (no double delivery). */
async function nothingMore(got, pred, what) {
  await sleep(700);
  assert.deepEqual(got.seen.filter(pred), [], `${what} arrived more than once`);
}

try {
  // 1. A socket broadcast on A reaches a client on A and one on B, each once; the sender, without
  //    `self`, hears nothing.
  const a1 = await join(client(A_URL), 'room1');
  const a2 = await join(client(A_URL), 'room1');
  const b1 = await join(client(B_URL), 'room1');
  assert.equal(await a1.ch.send({ type: 'broadcast', event: 'msg', payload: { n: 1 } }), 'ok');
  for (const [who, r] of [['A', a2], ['B', b1]]) {
    const m = await r.got.next((e) => e.kind === 'broadcast' && e.payload?.n === 1);
    assert.equal(m.event, 'msg', who);
  }
  for (const r of [a2, b1]) await nothingMore(r.got, (e) => e.payload?.n === 1, 'broadcast n=1');
  assert.deepEqual(a1.got.seen.filter((e) => e.kind === 'broadcast'), []);
  step('socket broadcast from A reached A and B once each');

  // 2. Over NOTIFY's 8,000-byte limit (a stored message without Redis), from B.
  const big = 'x'.repeat(20_000);
  await b1.ch.send({ type: 'broadcast', event: 'big', payload: { big } });
  for (const r of [a1, a2]) {
    const m = await r.got.next((e) => e.event === 'big');
    assert.equal(m.payload.big, big);
    await nothingMore(r.got, (e) => e.event === 'big', 'the big broadcast');
  }
  step('a 20 kB broadcast from B reached A intact, once');

  // 3. The REST endpoint on B (both forms) reaches clients on A.
  const res = await fetch(`${B_URL}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: serviceKey, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic: 'room1', event: 'rest', payload: { via: 'list' } }] }),
  });
  assert.equal(res.status, 202);
  assert.deepEqual((await a1.got.next((e) => e.event === 'rest')).payload, { via: 'list' });
  assert.deepEqual(await b1.ch.httpSend('rest', { via: 'httpSend' }), { success: true });
  assert.deepEqual((await a2.got.next((e) => e.payload?.via === 'httpSend')).payload, { via: 'httpSend' });
  await nothingMore(a1.got, (e) => e.event === 'rest' && e.payload?.via === 'list', 'the REST broadcast');
  step('REST broadcasts on B reached A');

  // 4. realtime.send from SQL (through A's REST): whichever instance reads the replication slot,
  //    clients on both hear it, each message once. The slot may still be starting: send until
  //    one arrives.
  const service = client(A_URL, { key: serviceKey });
  let sent = 0;
  for (; sent < 60; sent++) {
    const { error } = await service.rpc('shout', { n: sent });
    assert.equal(error, null, JSON.stringify(error));
    if (b1.got.seen.some((e) => e.event === 'shout')) break;
    await sleep(500);
  }
  await b1.got.next((e) => e.event === 'shout', 30_000);
  await a1.got.next((e) => e.event === 'shout', 10_000);
  await sleep(1500);
  for (const r of [a1, b1]) {
    const ns = [...r.got.seen.filter((e) => e.event === 'shout'), { payload: { n: -1 } }].map((e) => e.payload.n);
    assert.equal(new Set(ns).size, ns.length, `realtime.send delivered twice: ${ns}`);
  }
  step(`realtime.send from SQL reached A and B (${sent + 1} sent)`);

  // 5. Private channel 'staff': Alice may join on B, Bob may not (B asks its policies at join);
  //    Alice's private broadcast on A reaches Alice on B, and not a public 'staff' channel.
  const aliceB = await join(client(B_URL, { token: userToken(ALICE) }), 'staff', { private: true });
  const publicB = await join(client(B_URL), 'staff');
  const bobB = client(B_URL, { token: userToken(BOB) }).channel('staff', { config: { private: true } });
  await assert.rejects(subscribed(bobB), /permission|Unauthorized/i);
  const aliceA = await join(client(A_URL, { token: userToken(ALICE) }), 'staff', { private: true });
  assert.equal(await aliceA.ch.send({ type: 'broadcast', event: 'memo', payload: { secret: 1 } }), 'ok');
  assert.deepEqual((await aliceB.got.next((e) => e.event === 'memo')).payload, { secret: 1 });
  await nothingMore(publicB.got, (e) => e.event === 'memo', 'a private broadcast on a public channel');
  step('private broadcast from A reached the authorized private channel on B only');

  // 6. Presence converges: tracked on A and on B, both see both; an untrack on B leaves on A; a
  //    client joining A later gets B's presence in its first state.
  const pa = await join(client(A_URL), 'lobby', { presence: { key: 'alice' } });
  const pb = await join(client(B_URL), 'lobby', { presence: { key: 'bob' } });
  assert.equal(await pa.ch.track({ at: 'A' }), 'ok');
  assert.equal(await pb.ch.track({ at: 'B' }), 'ok');
  for (const r of [pa, pb]) await r.got.next((e) => e.kind === 'sync' && e.state.alice && e.state.bob);
  assert.equal(await pb.ch.untrack(), 'ok');
  const left = await pa.got.next((e) => e.kind === 'leave' && e.key === 'bob');
  assert.equal(left.leftPresences[0].at, 'B');
  assert.equal(await pb.ch.track({ at: 'B again' }), 'ok');
  await pa.got.next((e) => e.kind === 'join' && e.key === 'bob' && e.newPresences[0]?.at === 'B again');
  const late = await join(client(A_URL), 'lobby', { presence: { key: 'carol' } });
  const first = await late.got.next((e) => e.kind === 'sync');
  assert.equal(first.state.bob?.[0]?.at, 'B again', JSON.stringify(first.state));
  assert.equal(first.state.alice?.[0]?.at, 'A', JSON.stringify(first.state));
  step('presence converged across A and B (track, untrack, state for a late joiner)');

  // 7. B dies without a word: its presences leave A within 30 s.
  if (B_PID) {
    const killed = Date.now();
    process.kill(Number(B_PID), 'SIGKILL');
    const gone = await pa.got.next((e) => e.kind === 'leave' && e.key === 'bob', 30_000);
    assert.equal(gone.leftPresences[0].at, 'B again');
    step(`B killed: its presence left A after ${((Date.now() - killed) / 1000).toFixed(1)} s`);
  }
  console.log('scale: ok');
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  for (const c of clients) {
    try { c.realtime.disconnect(); } catch { /* B may be dead */ }
  }
  setTimeout(() => process.exit(), 200).unref();
}
