// Realtime seen from the official client: @supabase/supabase-js (realtime-js, Phoenix channels over
// `ws`) against a live doska — postgres_changes with filters and typed values, RLS per subscriber,
// broadcast (self, ack, REST), presence, both serializers (vsn 1.0.0 and 2.0.0); plus raw frames for
// what realtime-js never sends (malformed input must get an error reply, never a dropped server);
// broadcast.replay through realtime-js's own option, and the change position in raw frames.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { collector, startDoska, subscribed } from './harness.mjs';

const SECRET = 'realtime-js-secret-realtime-js-secret-0123';
const ALICE = randomUUID();
const BOB = randomUUID();

const MIGRATION = `
create table public.notes (
  id bigint generated always as identity primary key,
  owner uuid not null,
  body text,
  score numeric,
  done boolean not null default false,
  tags text[],
  meta jsonb
);
alter table public.notes enable row level security;
create policy notes_own on public.notes for select to authenticated using (owner = auth.uid());
alter publication supabase_realtime add table public.notes;

-- Private channel 'staff': only Alice may join (read) and send (write); Supabase's model.
create policy staff_read on realtime.messages for select to authenticated
  using (realtime.topic() = 'staff' and auth.uid() = '${ALICE}');
create policy staff_write on realtime.messages for insert to authenticated
  with check (realtime.topic() = 'staff' and auth.uid() = '${ALICE}');

-- A trigger announces each note on the public channel 'feed' with realtime.send.
create function public.announce_note() returns trigger language plpgsql security definer as $$
begin
  perform realtime.send(jsonb_build_object('id', new.id, 'body', new.body), 'note_added', 'feed', false);
  return new;
end $$;
create trigger notes_announce after insert on public.notes for each row execute function public.announce_note();
`;

let doska;
let service;
const clients = [];

function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function userToken(sub, expIn = 3600) {
  const now = Math.floor(Date.now() / 1000);
  return sign({ sub, role: 'authenticated', aud: 'authenticated', iat: now, exp: now + expIn });
}

function client(key, { token, vsn } = {}) {
  const c = createClient(doska.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket, ...(vsn ? { vsn } : {}) },
  });
  // setAuth(token) sets the token synchronously, before any join payload is built.
  if (token) c.realtime.setAuth(token);
  clients.push(c);
  return c;
}


const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  doska = await startDoska({ migrations: { '0001_notes.sql': MIGRATION }, env: { DOSKA_JWT_SECRET: SECRET } });
  service = client(doska.serviceKey);
  // The replication slot is made just after doska starts listening: write until a change arrives,
  // so every test below runs with the change stream live.
  const events = collector();
  const ch = service.channel('warmup').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, (p) => events.push(p));
  await subscribed(ch);
  for (let i = 0; i < 60; i++) {
    const { error } = await service.from('notes').insert({ owner: randomUUID(), body: 'warmup' });
    assert.equal(error, null);
    try {
      await events.next(() => true, 500);
      break;
    } catch { /* not yet */ }
  }
  await service.removeChannel(ch);
});

after(async () => {
  if (process.env.DOSKA_SHOW_LOG) console.error(doska?.log());
  for (const c of clients) await c.removeAllChannels();
  await doska?.stop();
});

test('postgres_changes: INSERT/UPDATE/DELETE with a filter arrive with typed values', async () => {
  const alice = client(doska.anonKey, { token: userToken(ALICE) });
  const events = collector();
  const ch = alice
    .channel('alice-notes')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'notes', filter: `owner=eq.${ALICE}` }, (p) => events.push(p))
    .on('postgres_changes', { event: 'DELETE', schema: 'public', table: 'notes' }, (p) => events.push(p));
  await subscribed(ch);

  const { data: inserted, error } = await service
    .from('notes')
    .insert({ owner: ALICE, body: 'hello', score: 12.5, tags: ['a', 'b c'], meta: { k: [1, 2] } })
    .select()
    .single();
  assert.equal(error, null);
  const ins = await events.next((e) => e.eventType === 'INSERT');
  assert.equal(ins.schema, 'public');
  assert.equal(ins.table, 'notes');
  assert.ok(!Number.isNaN(Date.parse(ins.commit_timestamp)));
  assert.deepEqual(ins.new, { id: inserted.id, owner: ALICE, body: 'hello', score: 12.5, done: false, tags: ['a', 'b c'], meta: { k: [1, 2] } });
  assert.equal(typeof ins.new.id, 'number');

  await service.from('notes').update({ done: true, body: 'edited' }).eq('id', inserted.id);
  const upd = await events.next((e) => e.eventType === 'UPDATE');
  assert.equal(upd.new.done, true);
  assert.equal(upd.new.body, 'edited');
  assert.deepEqual(upd.old, { id: inserted.id });

  await service.from('notes').delete().eq('id', inserted.id);
  const del = await events.next((e) => e.eventType === 'DELETE');
  // A delete reveals only the key.
  assert.deepEqual(del.old, { id: inserted.id });

  // Bob's row does not pass Alice's filter (and RLS would hide it anyway).
  await service.from('notes').insert({ owner: BOB, body: 'not for alice' });
  await sleep(500);
  assert.equal(events.seen.filter((e) => e.eventType === 'INSERT').length, 0, JSON.stringify(events.seen));
});

test('RLS: a subscriber never receives rows its policies hide', async () => {
  const bob = client(doska.anonKey, { token: userToken(BOB) });
  const anonClient = client(doska.anonKey);
  const bobEvents = collector();
  const anonEvents = collector();
  await subscribed(bob.channel('bob-all').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, (p) => bobEvents.push(p)));
  await subscribed(anonClient.channel('anon-all').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, (p) => anonEvents.push(p)));

  await service.from('notes').insert({ owner: ALICE, body: 'secret of alice' });
  await service.from('notes').insert({ owner: BOB, body: 'bob sees this' });
  const got = await bobEvents.next();
  assert.equal(got.new.body, 'bob sees this');
  await sleep(500);
  assert.deepEqual(bobEvents.seen, []);
  // anon has no policy on notes: nothing at all.
  assert.deepEqual(anonEvents.seen, []);
});

test('token refresh keeps the channel; a bad token closes it', async () => {
  const carol = randomUUID();
  const c = client(doska.anonKey, { token: userToken(carol) });
  const events = collector();
  const ch = c.channel('carol').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes' }, (p) => events.push(p));
  await subscribed(ch);
  await c.realtime.setAuth(userToken(carol, 7200));
  await sleep(200);
  await service.from('notes').insert({ owner: carol, body: 'after refresh' });
  assert.equal((await events.next()).new.body, 'after refresh');
  assert.equal(ch.state, 'joined');

  // A token that does not verify: a system error, then the server closes the channel.
  const systems = collector();
  const closed = new Promise((resolve) => ch.channelAdapter.onClose(resolve));
  ch.on('system', {}, (m) => systems.push(m));
  await c.realtime.setAuth(`${userToken(carol)}x`);
  const sys = await systems.next((m) => m.status === 'error');
  assert.match(sys.message, /Invalid token/);
  await closed;
  await service.from('notes').insert({ owner: carol, body: 'after close' });
  await sleep(500);
  assert.deepEqual(events.seen, []);
});

test('broadcast: self and ack between two clients, and from the REST endpoint', async () => {
  const a = client(doska.anonKey);
  const b = client(doska.anonKey);
  const atA = collector();
  const atB = collector();
  const chA = a.channel('room1', { config: { broadcast: { self: true, ack: true } } }).on('broadcast', { event: 'msg' }, (m) => atA.push(m));
  const chB = b.channel('room1').on('broadcast', { event: 'msg' }, (m) => atB.push(m));
  await subscribed(chA);
  await subscribed(chB);

  assert.equal(await chA.send({ type: 'broadcast', event: 'msg', payload: { text: 'hi', n: 1 } }), 'ok');
  assert.deepEqual((await atB.next()).payload, { text: 'hi', n: 1 });
  assert.deepEqual((await atA.next()).payload, { text: 'hi', n: 1 });

  // Without self, the sender does not hear itself.
  await chB.send({ type: 'broadcast', event: 'msg', payload: { from: 'b' } });
  assert.deepEqual((await atA.next()).payload, { from: 'b' });
  await sleep(300);
  assert.deepEqual(atB.seen, []);

  // The REST endpoint realtime-js's httpSend uses, and the messages list form.
  assert.deepEqual(await chB.httpSend('msg', { via: 'rest' }), { success: true });
  assert.deepEqual((await atA.next((m) => m.payload?.via === 'rest')).payload, { via: 'rest' });
  const res = await fetch(`${doska.url}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: doska.serviceKey, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic: 'room1', event: 'msg', payload: { via: 'list' } }] }),
  });
  assert.equal(res.status, 202);
  assert.deepEqual((await atB.next((m) => m.payload?.via === 'list')).payload, { via: 'list' });
});

test('presence: sync, join and leave between two clients', async () => {
  const a = client(doska.anonKey);
  const b = client(doska.anonKey);
  const atA = collector();
  const chA = a.channel('lobby', { config: { presence: { key: 'alice' } } })
    .on('presence', { event: 'sync' }, () => atA.push({ event: 'sync', state: chA.presenceState() }))
    .on('presence', { event: 'join' }, (p) => atA.push({ event: 'join', ...p }))
    .on('presence', { event: 'leave' }, (p) => atA.push({ event: 'leave', ...p }));
  await subscribed(chA);
  assert.equal(await chA.track({ online_at: 1 }), 'ok');
  await atA.next((e) => e.event === 'join' && e.key === 'alice');

  const chB = b.channel('lobby', { config: { presence: { key: 'bob' } } });
  await subscribed(chB);
  assert.equal(await chB.track({ online_at: 2 }), 'ok');
  const joined = await atA.next((e) => e.event === 'join' && e.key === 'bob');
  assert.equal(joined.newPresences[0].online_at, 2);
  await atA.next((e) => e.event === 'sync' && e.state.bob && e.state.alice);

  // B's socket goes away entirely: its presence leaves.
  await b.removeAllChannels();
  b.realtime.disconnect();
  const left = await atA.next((e) => e.event === 'leave' && e.key === 'bob');
  assert.equal(left.leftPresences[0].online_at, 2);
  await atA.next((e) => e.event === 'sync' && !e.state.bob && e.state.alice);
});

test('vsn 1.0.0 and 2.0.0 clients talk to each other', async () => {
  const v1 = client(doska.anonKey, { vsn: '1.0.0' });
  const v2 = client(doska.anonKey, { vsn: '2.0.0' });
  const at1 = collector();
  const at2 = collector();
  const ch1 = v1.channel('mixed').on('broadcast', { event: 'e' }, (m) => at1.push(m));
  const ch2 = v2.channel('mixed').on('broadcast', { event: 'e' }, (m) => at2.push(m));
  assert.match(v1.realtime.endpointURL(), /vsn=1\.0\.0/);
  assert.match(v2.realtime.endpointURL(), /vsn=2\.0\.0/);
  await subscribed(ch1);
  await subscribed(ch2);
  await ch1.send({ type: 'broadcast', event: 'e', payload: { from: 1 } });
  await ch2.send({ type: 'broadcast', event: 'e', payload: { from: 2 } });
  assert.deepEqual((await at2.next()).payload, { from: 1 });
  assert.deepEqual((await at1.next()).payload, { from: 2 });

  // postgres_changes over 1.0.0 too.
  const dave = randomUUID();
  const v1user = client(doska.anonKey, { vsn: '1.0.0', token: userToken(dave) });
  const changes = collector();
  await subscribed(v1user.channel('v1changes').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'notes', filter: `owner=eq.${dave}` }, (p) => changes.push(p)));
  await service.from('notes').insert({ owner: dave, body: 'v1', score: 3 });
  const got = await changes.next();
  assert.equal(got.new.body, 'v1');
  assert.equal(got.new.score, 3);
});

/** A raw socket speaking vsn 2.0.0; resolves with it once open. */
function raw(query = `apikey=${doska.anonKey}&vsn=2.0.0`) {
  const ws = new WebSocket(`${doska.url.replace(/^http/, 'ws')}/realtime/v1/websocket?${query}`);
  const inbox = collector();
  ws.on('message', (data, isBinary) => inbox.push(isBinary ? { binary: data } : JSON.parse(data.toString())));
  return new Promise((resolve, reject) => {
    ws.on('open', () => resolve({ ws, inbox }));
    ws.on('unexpected-response', (_req, res) => reject(Object.assign(new Error(`status ${res.statusCode}`), { status: res.statusCode })));
    ws.on('error', reject);
  });
}

test('bad input gets an error reply, and the socket keeps working', async () => {
  const { ws, inbox } = await raw();
  const cases = [
    ['not json', 'malformed'],
    ['{"an":"object"}', 'malformed'],
    ['["1","2","realtime:x","no_such_event",{}]', 'unknown event'],
    ['["1","3","realtime:x","phx_join",{"config":{"postgres_changes":[{"event":"INSERT","schema":"public","table":"notes","filter":"id=like.5"}]}}]', 'unknown operator'],
    ['["1","4","realtime:x","phx_join",{"config":{"postgres_changes":[{"event":"TRUNCATE","schema":"public"}]}}]', 'unknown event'],
    ['["1","5","realtime:never-joined","broadcast",{"event":"e","payload":{}}]', 'unmatched topic'],
    [`["1","6","realtime:x","broadcast",{"event":"e","payload":"${'x'.repeat(300 * 1024)}"}]`, 'over the limit'],
    ['["1","7","realtime:x","phx_join",{"access_token":"not.a.jwt"}]', 'JWT'],
  ];
  for (const [frame, expect] of cases) {
    ws.send(frame);
    const reply = await inbox.next();
    const text = JSON.stringify(reply);
    assert.ok(text.includes('error'), `${frame.slice(0, 80)} → ${text}`);
    assert.ok(text.toLowerCase().includes(expect.toLowerCase()), `${frame.slice(0, 80)} → ${text}`);
  }
  ws.send(Buffer.from([9, 9, 9]));
  assert.match(JSON.stringify(await inbox.next()), /unknown kind/);
  ws.send('[null,"99","phoenix","heartbeat",{}]');
  assert.deepEqual(await inbox.next(), [null, '99', 'phoenix', 'phx_reply', { status: 'ok', response: {} }]);
  ws.close();

  // Upgrades without a valid apikey, or with an unknown vsn, are refused before the socket opens.
  await assert.rejects(raw('vsn=2.0.0'), { status: 401 });
  await assert.rejects(raw(`apikey=${sign({ role: 'anon' })}x&vsn=2.0.0`), { status: 401 });
  await assert.rejects(raw(`apikey=${doska.anonKey}&vsn=9.9.9`), { status: 400 });
});

test('phx_join echoes postgres_changes bindings in order with ids; phx_leave closes', async () => {
  const { ws, inbox } = await raw();
  const bindings = [
    { event: 'INSERT', schema: 'public', table: 'notes', filter: 'id=gt.0' },
    { event: '*', schema: 'public' },
  ];
  ws.send(JSON.stringify(['1', '1', 'realtime:echo', 'phx_join', { config: { postgres_changes: bindings } }]));
  const reply = await inbox.next((m) => m[3] === 'phx_reply');
  assert.equal(reply[4].status, 'ok');
  const echoed = reply[4].response.postgres_changes;
  assert.equal(echoed.length, 2);
  for (const [i, b] of bindings.entries()) {
    assert.equal(typeof echoed[i].id, 'number');
    assert.equal(echoed[i].event, b.event);
    assert.equal(echoed[i].schema, b.schema);
    assert.equal(echoed[i].table ?? undefined, b.table);
    assert.equal(echoed[i].filter ?? undefined, b.filter);
  }
  assert.notEqual(echoed[0].id, echoed[1].id);
  ws.send(JSON.stringify(['1', '2', 'realtime:echo', 'phx_leave', {}]));
  assert.equal((await inbox.next((m) => m[1] === '2'))[4].status, 'ok');
  await inbox.next((m) => m[3] === 'phx_close');
  ws.close();
});

test('private channels: RLS on realtime.messages decides who joins and sends', async () => {
  const alice = client(doska.anonKey, { token: userToken(ALICE) });
  const bob = client(doska.anonKey, { token: userToken(BOB) });
  const atAlice = collector();
  const chAlice = alice.channel('staff', { config: { private: true, broadcast: { self: true, ack: true } } })
    .on('broadcast', { event: 'memo' }, (m) => atAlice.push(m));
  await subscribed(chAlice);
  await assert.rejects(
    subscribed(bob.channel('staff', { config: { private: true } })),
    /do not have permissions to read/,
  );
  // A public channel of the same name does not see private messages.
  const atPublic = collector();
  const bobPublic = client(doska.anonKey, { token: userToken(BOB) });
  await subscribed(bobPublic.channel('staff').on('broadcast', { event: 'memo' }, (m) => atPublic.push(m)));

  assert.equal(await chAlice.send({ type: 'broadcast', event: 'memo', payload: { text: 'staff only' } }), 'ok');
  assert.deepEqual((await atAlice.next()).payload, { text: 'staff only' });
  await sleep(300);
  assert.deepEqual(atPublic.seen, []);

  // The REST endpoint checks the same write policy.
  const post = (token) => fetch(`${doska.url}/realtime/v1/api/broadcast`, {
    method: 'POST',
    headers: { apikey: doska.anonKey, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic: 'staff', event: 'memo', payload: { via: 'rest' }, private: true }] }),
  });
  assert.equal((await post(userToken(BOB))).status, 403);
  assert.equal((await post(userToken(ALICE))).status, 202);
  assert.deepEqual((await atAlice.next()).payload, { via: 'rest' });
});

test('private channels: a refreshed token is asked again; one that may not read closes the channel', async () => {
  const c = client(doska.anonKey, { token: userToken(ALICE) });
  const ch = c.channel('staff', { config: { private: true } });
  await subscribed(ch);
  const systems = collector();
  ch.on('system', {}, (m) => systems.push(m));
  // Still Alice, with a later expiry: the channel stays.
  await c.realtime.setAuth(userToken(ALICE, 7200));
  await sleep(300);
  assert.equal(ch.state, 'joined');
  assert.deepEqual(systems.seen.filter((m) => m.status === 'error'), []);
  // Bob's token on Alice's socket: his policies say no, so the channel closes.
  const closed = new Promise((resolve) => ch.channelAdapter.onClose(resolve));
  await c.realtime.setAuth(userToken(BOB));
  const sys = await systems.next((m) => m.status === 'error');
  assert.match(sys.message, /do not have permissions to read from this Channel topic: staff/);
  await closed;
});

test('realtime.send from a trigger reaches the channel as a broadcast', async () => {
  const c = client(doska.anonKey);
  const feed = collector();
  await subscribed(c.channel('feed').on('broadcast', { event: 'note_added' }, (m) => feed.push(m)));
  const { data, error } = await service.from('notes').insert({ owner: ALICE, body: 'announced' }).select().single();
  assert.equal(error, null);
  const got = await feed.next((m) => m.payload.id === data.id);
  assert.deepEqual(got.payload, { id: data.id, body: 'announced' });
});

test('broadcast.replay: a private channel joined later gets the logged broadcasts, marked replayed', async () => {
  const since = Date.now() - 1000;
  const alice = client(doska.anonKey, { token: userToken(ALICE) });
  const sender = alice.channel('staff', { config: { private: true, broadcast: { ack: true } } });
  await subscribed(sender);
  assert.equal(await sender.send({ type: 'broadcast', event: 'memo', payload: { n: 1 } }), 'ok');
  assert.equal(await sender.send({ type: 'broadcast', event: 'memo', payload: { n: 2 } }), 'ok');

  const later = client(doska.anonKey, { token: userToken(ALICE) });
  const got = collector();
  await subscribed(later.channel('staff', { config: { private: true, broadcast: { replay: { since, limit: 10 } } } })
    .on('broadcast', { event: 'memo' }, (m) => got.push(m)));
  const first = await got.next((m) => m.payload.n === 1);
  const second = await got.next((m) => m.payload.n === 2);
  for (const m of [first, second]) {
    assert.equal(m.meta?.replayed, true, JSON.stringify(m));
    assert.equal(typeof m.meta?.id, 'string');
  }
  // Live broadcasts carry no replay mark.
  assert.equal(await sender.send({ type: 'broadcast', event: 'memo', payload: { n: 3 } }), 'ok');
  const live = await got.next((m) => m.payload.n === 3);
  assert.notEqual(live.meta?.replayed, true);
});

test('postgres_changes payloads carry their position (data.position) for resuming with since', async () => {
  const raw = new WebSocket(`${doska.url.replace('http', 'ws')}/realtime/v1/websocket?apikey=${doska.serviceKey}&vsn=1.0.0`);
  await new Promise((r) => raw.once('open', r));
  const frames = collector();
  raw.on('message', (d) => frames.push(JSON.parse(d.toString())));
  raw.send(JSON.stringify({ topic: 'realtime:pos', event: 'phx_join', ref: '1', join_ref: '1',
    payload: { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'notes' }] } } }));
  await frames.next((f) => f.event === 'system');
  const { error } = await service.from('notes').insert({ owner: ALICE, body: 'positioned' });
  assert.equal(error, null);
  const change = await frames.next((f) => f.event === 'postgres_changes' && f.payload.data.record.body === 'positioned');
  assert.match(change.payload.data.position, /^[0-9A-F]+\/[0-9A-F]+:\d+$/);
  raw.close();
});
