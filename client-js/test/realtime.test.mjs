// Realtime against a live doska: postgres_changes under RLS, broadcast, presence, statuses, a
// socket that closes mid-join, resume after a dropped socket (each change exactly once), and the
// access token following a refresh in-band.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocketServer } from 'ws';
import { start, client, user, until, subscribed, cuttable, createClient, WebSocket } from './sync-helpers.mjs';

const notes = `
create table public.notes (id bigserial primary key, owner uuid not null default auth.uid(), body text);
alter table public.notes enable row level security;
create policy own on public.notes for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
alter publication supabase_realtime add table public.notes;
create policy team_read on realtime.messages for select to authenticated using (realtime.topic() = 'team');
create policy team_write on realtime.messages for insert to authenticated with check (realtime.topic() = 'team');
`;

let d, service;
before(async () => {
  d = await start({ '0002_notes.sql': notes });
  service = createClient(d.url, d.serviceKey);
});
after(() => d?.stop());

/** Subscribes `c` to notes changes; returns the list they arrive in and the channel. */
async function watch(c, filter = {}) {
  const got = [];
  const ch = c.channel('notes-' + Math.random())
    .on('postgres_changes', { event: '*', schema: 'public', table: 'notes', ...filter }, (p) => got.push(p));
  const { status, err } = await subscribed(ch);
  assert.equal(status, 'SUBSCRIBED', err?.message);
  return { got, ch };
}

test('postgres_changes: a user receives only the rows its RLS shows, in realtime-js shape', async () => {
  const a = await user(d), b = await user(d);
  const { got } = await watch(a);
  assert.equal((await b.from('notes').insert({ body: 'b secret' })).error, null);
  // Each change arrives before the next write: an INSERT or UPDATE is checked against the row as
  // it stands (by key, as Supabase does), so one whose row is deleted before its check runs is not
  // delivered — with the writes back to back, the UPDATE could miss.
  const { data } = await a.from('notes').insert({ body: 'a1' }).select().single();
  await until(() => got.length >= 1, 'the insert');
  await a.from('notes').update({ body: 'a2' }).eq('id', data.id);
  await until(() => got.length >= 2, 'the update');
  await a.from('notes').delete().eq('id', data.id);
  await until(() => got.length >= 3, 'three changes');
  assert.deepEqual(got.map((p) => [p.eventType, p.new.body ?? null]), [['INSERT', 'a1'], ['UPDATE', 'a2'], ['DELETE', null]]);
  assert.equal(got[2].old.id, data.id);
  assert.equal(got[0].schema, 'public');
  assert.equal(got[0].table, 'notes');
  assert.match(got[0].position, /^[0-9A-F]+\/[0-9A-F]+:\d+$/);
  assert.ok(got.every((p) => p.new.body !== 'b secret'));
  await a.removeAllChannels();
});

test('postgres_changes: event and filter narrow what arrives', async () => {
  const a = await user(d);
  const { got } = await watch(a, { event: 'INSERT', filter: 'body=eq.wanted' });
  await a.from('notes').insert([{ body: 'other' }, { body: 'wanted' }]);
  await a.from('notes').update({ body: 'x' }).eq('body', 'wanted');
  await a.from('notes').insert({ body: 'wanted' });
  await until(() => got.length >= 2, 'two inserts');
  assert.deepEqual(got.map((p) => [p.eventType, p.new.body]), [['INSERT', 'wanted'], ['INSERT', 'wanted']]);
  await a.removeAllChannels();
});

test('broadcast: self, ack, event filter, and sending before the join goes over HTTP', async () => {
  const a = client(d), b = client(d);
  const seenA = [], seenB = [];
  const cha = a.channel('room1', { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: 'hi' }, (m) => seenA.push(m));
  const chb = b.channel('room1').on('broadcast', { event: 'hi' }, (m) => seenB.push(m)).on('broadcast', { event: 'other' }, (m) => seenB.push(m));
  assert.equal((await subscribed(cha)).status, 'SUBSCRIBED');
  assert.equal((await subscribed(chb)).status, 'SUBSCRIBED');
  assert.equal(await cha.send({ type: 'broadcast', event: 'hi', payload: { n: 1 } }), 'ok');
  await until(() => seenA.length && seenB.length, 'the broadcast on both sides');
  assert.deepEqual(seenB[0], { type: 'broadcast', event: 'hi', payload: { n: 1 } });
  assert.deepEqual(seenA[0].payload, { n: 1 });
  // An unjoined channel sends through POST /realtime/v1/api/broadcast.
  const c = client(d);
  assert.equal(await c.channel('room1').send({ type: 'broadcast', event: 'other', payload: { n: 2 } }), 'ok');
  await until(() => seenB.length === 2, 'the HTTP broadcast');
  assert.deepEqual(seenB[1].payload, { n: 2 });
  assert.equal(seenA.length, 1, 'a listens to "hi" only');
  await a.removeAllChannels();
  await b.removeAllChannels();
});

test('presence: sync, join, leave and presenceState in realtime-js shape', async () => {
  const a = client(d), b = client(d);
  const events = [];
  const cha = a.channel('lobby', { config: { presence: { key: 'alice' } } });
  const chb = b.channel('lobby', { config: { presence: { key: 'bob' } } })
    .on('presence', { event: 'join' }, (e) => events.push(['join', e.key, e.newPresences.map((p) => p.name)]))
    .on('presence', { event: 'leave' }, (e) => events.push(['leave', e.key]))
    .on('presence', { event: 'sync' }, () => events.push(['sync']));
  assert.equal((await subscribed(chb)).status, 'SUBSCRIBED');
  assert.equal((await subscribed(cha.on('presence', { event: 'sync' }, () => {}))).status, 'SUBSCRIBED');
  assert.equal(await cha.track({ name: 'Alice' }), 'ok');
  await until(() => chb.presenceState().alice, 'alice in b\'s presence state');
  const [meta] = chb.presenceState().alice;
  assert.equal(meta.name, 'Alice');
  assert.ok(meta.presence_ref);
  assert.ok(events.some((e) => e[0] === 'join' && e[1] === 'alice' && e[2][0] === 'Alice'));
  assert.equal(await cha.untrack(), 'ok');
  await until(() => !chb.presenceState().alice, 'alice gone');
  assert.ok(events.some((e) => e[0] === 'leave' && e[1] === 'alice'));
  assert.ok(events.some((e) => e[0] === 'sync'));
  await a.removeAllChannels();
  await b.removeAllChannels();
});

test('statuses: a refused join is CHANNEL_ERROR with the reason; unsubscribe is CLOSED', async () => {
  const a = await user(d);
  const bad = a.channel('bad').on('postgres_changes', { event: '*', schema: 'public', table: 'notes', filter: 'nope' }, () => {});
  const { status, err } = await subscribed(bad);
  assert.equal(status, 'CHANNEL_ERROR');
  assert.ok(err.message.length > 0);
  // A push waiting for a join that never comes resolves when the channel leaves.
  const never = a.channel('never', { config: { private: true } });
  never.subscribe();
  const pending = never.track({ x: 1 });
  await until(() => never.state === 'errored', 'the refusal');
  assert.equal(await never.unsubscribe(), 'ok');
  assert.equal(await pending, 'error');
  const ok = a.channel('fine');
  const statuses = [];
  await new Promise((r) => ok.subscribe((s) => { statuses.push(s); r(); }));
  assert.equal(await ok.unsubscribe(), 'ok');
  assert.deepEqual(statuses, ['SUBSCRIBED', 'CLOSED']);
  // A private channel nobody's policy opens is refused.
  const priv = a.channel('secret', { config: { private: true } });
  assert.equal((await subscribed(priv)).status, 'CHANNEL_ERROR');
  await a.removeAllChannels();
});

test('statuses: a socket that closes mid-join gives CHANNEL_ERROR, one that never answers TIMED_OUT', async () => {
  // Stand-ins for a broken network path: one server drops the socket on the join, one ignores it.
  const closer = new WebSocketServer({ port: 0 });
  closer.on('connection', (s) => s.on('message', () => s.terminate()));
  const silent = new WebSocketServer({ port: 0 });
  const url = (srv) => `http://127.0.0.1:${srv.address().port}`;
  try {
    const c1 = createClient(url(closer), d.anonKey, { WebSocket, realtime: { reconnectAfterMs: () => 60000 } });
    const r1 = await subscribed(c1.channel('x'));
    assert.equal(r1.status, 'CHANNEL_ERROR');
    assert.match(r1.err.message, /closed/);
    c1.realtime.disconnect();
    const c2 = createClient(url(silent), d.anonKey, { WebSocket, realtime: { reconnectAfterMs: () => 60000, timeout: 300 } });
    const r2 = await subscribed(c2.channel('y'));
    assert.equal(r2.status, 'TIMED_OUT');
    c2.realtime.disconnect();
    // Heartbeats find a socket that stopped answering: it is closed, the channel errs.
    const c5 = createClient(url(silent), d.anonKey, { WebSocket, realtime: { reconnectAfterMs: () => 60000, timeout: 60000, heartbeatIntervalMs: 100 } });
    const r5 = await subscribed(c5.channel('w'));
    assert.equal(r5.status, 'CHANNEL_ERROR');
    c5.realtime.disconnect();
    // A wrong key: doska refuses the upgrade (401); the channel errs, nothing throws.
    const c3 = createClient(d.url, 'not-a-key', { WebSocket, realtime: { reconnectAfterMs: () => 60000 } });
    assert.equal((await subscribed(c3.channel('z'))).status, 'CHANNEL_ERROR');
    c3.realtime.disconnect();
    // Node 20 has no WebSocket of its own: the error says what to pass.
    const c6 = createClient(d.url, d.anonKey, { realtime: { reconnectAfterMs: () => 60000 } });
    const r6 = await subscribed(c6.channel('v'));
    assert.equal(r6.status, 'CHANNEL_ERROR');
    assert.match(r6.err.message, /WebSocket/);
    c6.realtime.disconnect();
    // A URL where nothing listens.
    const c4 = createClient('http://127.0.0.1:9', d.anonKey, { WebSocket, realtime: { reconnectAfterMs: () => 60000 } });
    assert.equal((await subscribed(c4.channel('z'))).status, 'CHANNEL_ERROR');
    c4.realtime.disconnect();
  } finally {
    closer.close();
    silent.close();
  }
});

test('resume: changes committed while the socket was down arrive once each, then live ones', async () => {
  const net = cuttable();
  const a = await user(d, { WebSocket: net.WebSocket });
  const { got, ch } = await watch(a, { event: 'INSERT' });
  const statuses = [];
  ch.subscribe((s) => statuses.push(s));
  const add = async (body) => assert.equal((await a.from('notes').insert({ body })).error, null);
  await add('before');
  await until(() => got.length === 1, 'the first change');
  net.drop();
  await until(() => statuses.includes('CHANNEL_ERROR'), 'the channel to notice');
  for (const body of ['away1', 'away2', 'away3']) await add(body);
  // Give the changes time to be logged while the client keeps failing to reconnect.
  await new Promise((r) => setTimeout(r, 500));
  net.restore();
  await until(() => got.length >= 4, 'the missed changes');
  await add('live');
  await add('last');
  await until(() => got.some((p) => p.new.body === 'last'), 'the live changes');
  assert.deepEqual(got.map((p) => p.new.body), ['before', 'away1', 'away2', 'away3', 'live', 'last']);
  assert.ok(statuses.at(-1) === 'SUBSCRIBED');
  const rejoin = net.sent.map((f) => (typeof f === 'string' ? JSON.parse(f) : null)).filter((m) => m?.[3] === 'phx_join').at(-1);
  assert.equal(rejoin[4].config.since, got[0].position, 'the rejoin resumes after the last delivered change');
  await a.removeAllChannels();
});

test('resume: a channel that never got a change asks the app to refetch after a drop', async () => {
  const net = cuttable();
  const a = await user(d, { WebSocket: net.WebSocket });
  const { got, ch } = await watch(a, { event: 'INSERT' });
  const system = [];
  ch.on('system', {}, (m) => system.push(m));
  net.drop();
  await until(() => ch.state === 'errored', 'the channel to notice');
  await a.from('notes').insert({ body: 'missed' });
  net.restore();
  await until(() => system.some((m) => m.status === 'error'), 'the refetch message');
  assert.match(system.find((m) => m.status === 'error').message, /refetch/);
  assert.equal(system.filter((m) => m.status === 'error').length, 1);
  assert.deepEqual(got, []);
  await a.removeAllChannels();
});

test('the access token follows a refresh in-band and the channel keeps its changes', async () => {
  const net = cuttable();
  const a = await user(d, { WebSocket: net.WebSocket });
  const { got } = await watch(a, { event: 'INSERT' });
  const old = a.auth.currentSession.access_token;
  await new Promise((r) => setTimeout(r, 1100)); // a token issued in another second differs
  const { error } = await a.auth.refreshSession();
  assert.equal(error, null);
  const fresh = a.auth.currentSession.access_token;
  assert.notEqual(fresh, old);
  const frames = () => net.sent.map((f) => JSON.parse(f)).filter((m) => m[3] === 'access_token');
  await until(() => frames().some((m) => m[4].access_token === fresh), 'an access_token frame with the new token');
  await a.from('notes').insert({ body: 'after refresh' });
  await until(() => got.length === 1, 'a change after the refresh');
  // Signing out hands the channel the anon key: the user's rows stop arriving.
  await a.auth.signOut();
  await until(() => frames().some((m) => m[4].access_token === d.anonKey), 'the anon key in-band');
  await a.removeAllChannels();
});

test('past the replay window the channel says so through system, and localStore refetches', async () => {
  const short = await start({ '0002_notes.sql': notes }, ['--realtime-replay-window', '1s']);
  try {
    const net = cuttable();
    const a = await user(short, { WebSocket: net.WebSocket });
    const b = client(short);
    assert.equal((await b.auth.signInWithPassword({ email: a.email, password: 'password-123' })).error, null);
    const { got, ch } = await watch(a, { event: 'INSERT' });
    const system = [];
    ch.on('system', {}, (m) => system.push(m));
    const sa = await a.localStore('prefs');
    const sb = await b.localStore('prefs');
    await a.from('notes').insert({ body: 'seen' });
    sb.setItem('k', 'seen');
    await sb.flush();
    await until(() => got.length === 1 && sa.getItem('k') === 'seen', 'the first changes');
    net.drop();
    await a.from('notes').insert({ body: 'trimmed' });
    sb.setItem('k', 'while away');
    await sb.flush();
    // doska trims changes older than the window every 10 s; wait past one trim.
    await new Promise((r) => setTimeout(r, 12500));
    net.restore();
    await until(() => system.some((m) => m.status === 'error' && m.extension === 'postgres_changes'), 'the refetch message');
    assert.match(system.find((m) => m.status === 'error').message, /refetch/);
    await until(() => sa.getItem('k') === 'while away', 'localStore to refetch the server\'s copy');
    await a.removeAllChannels();
    await b.removeAllChannels();
  } finally {
    await short.stop();
  }
});

test('private channels: a topic the policies open joins and carries broadcasts; others are refused', async () => {
  const a = await user(d), b = await user(d);
  const seen = [];
  const cha = a.channel('team', { config: { private: true } }).on('broadcast', { event: 'm' }, (m) => seen.push(m.payload));
  const chb = b.channel('team', { config: { private: true, broadcast: { ack: true } } });
  assert.equal((await subscribed(cha)).status, 'SUBSCRIBED');
  assert.equal((await subscribed(chb)).status, 'SUBSCRIBED');
  assert.equal(await chb.send({ type: 'broadcast', event: 'm', payload: { x: 1 } }), 'ok');
  await until(() => seen.length === 1, 'the private broadcast');
  const anon = client(d);
  const refused = await subscribed(anon.channel('team', { config: { private: true } }));
  assert.equal(refused.status, 'CHANNEL_ERROR');
  assert.match(refused.err.message, /Unauthorized/);
  for (const c of [a, b, anon]) await c.removeAllChannels();
});
