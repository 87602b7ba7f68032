// The REST door seen from the official client: @supabase/supabase-js (postgrest-js) against a live
// doska with the REST fixture (tests/rest_fixture/fixture.sql) — reads, filters, embeds, counts,
// writes, RPC, errors and RLS; plus raw HTTP for what postgrest-js cannot send.
// Set DOSKA_URL (+ DOSKA_ANON_KEY, DOSKA_SERVICE_KEY, DOSKA_JWT_SECRET) to run against a doska
// already serving the fixture instead of starting one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createHmac } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska } from './harness.mjs';

const SECRET = process.env.DOSKA_JWT_SECRET ?? 'rest-js-secret-rest-js-secret-0123456789';
let doska;
let anon;
let service;

function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

function client(key, token) {
  return createClient(doska.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: WebSocket },
    global: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
  });
}

before(async () => {
  if (process.env.DOSKA_URL) {
    doska = { url: process.env.DOSKA_URL, anonKey: process.env.DOSKA_ANON_KEY, serviceKey: process.env.DOSKA_SERVICE_KEY, stop: async () => {} };
  } else {
    const fixture = await readFile(new URL('../rest_fixture/fixture.sql', import.meta.url), 'utf8');
    doska = await startDoska({ migrations: { '0001_rest_fixture.sql': fixture }, env: { DOSKA_JWT_SECRET: SECRET } });
  }
  anon = client(doska.anonKey);
  service = client(doska.serviceKey);
});
after(async () => { await doska?.stop(); });

test('select with filters, order and limit', async () => {
  const { data, error, status } = await anon.from('films').select('id, title').gte('year', 1960).lt('year', 1985).order('year', { ascending: false }).limit(5);
  assert.equal(error, null);
  assert.equal(status, 200);
  assert.deepEqual(data, [{ id: 2, title: 'The Shining' }, { id: 1, title: '2001' }]);
});

test('every filter builder postgrest-js has', async () => {
  const ids = async (q) => {
    const { data, error } = await q.order('id');
    assert.equal(error, null, JSON.stringify(error));
    return data.map((r) => r.id);
  };
  const f = () => anon.from('films').select('id');
  assert.deepEqual(await ids(f().eq('title', 'Ran')), [3]);
  assert.deepEqual(await ids(f().neq('director_id', 1)), [3, 4]);
  assert.deepEqual(await ids(f().gt('rating', 8.3)), [2]);
  assert.deepEqual(await ids(f().lte('year', 1968)), [1, 4]);
  assert.deepEqual(await ids(f().like('title', '%Shin%')), [2]);
  assert.deepEqual(await ids(f().ilike('title', '%shin%')), [2]);
  assert.deepEqual(await ids(f().likeAnyOf('title', ['R%', 'I%'])), [3, 4]);
  assert.deepEqual(await ids(f().is('year', null)), [5]);
  assert.deepEqual(await ids(f().in('title', ['Ran', 'The Shining', 'a,b'])), [2, 3]);
  assert.deepEqual(await ids(f().not('year', 'is', null).lt('year', 1970)), [1, 4]);
  assert.deepEqual(await ids(f().contains('tags', ['classic'])), [1, 3]);
  assert.deepEqual(await ids(f().containedBy('tags', ['horror', 'war'])), [2, 4, 5]);
  assert.deepEqual(await ids(f().overlaps('tags', ['space', 'war'])), [1, 3]);
  assert.deepEqual(await ids(f().contains('meta', { lang: 'ja' })), [3]);
  assert.deepEqual(await ids(f().textSearch('title', 'shining', { config: 'english', type: 'plain' })), [2]);
  assert.deepEqual(await ids(f().textSearch('title', "'ran' | 'ikiru'")), [3, 4]);
  assert.deepEqual(await ids(f().or('year.eq.1968,title.eq.Ran')), [1, 3]);
  assert.deepEqual(await ids(f().or('id.eq.5,and(year.gt.1970,year.lt.1981)')), [2, 5]);
  assert.deepEqual(await ids(f().match({ director_id: 2, year: 1985 })), [3]);
  assert.deepEqual(await ids(f().filter('year', 'in', '(1952,1980)')), [2, 4]);
  assert.deepEqual(await ids(f().isDistinct('director_id', 1)), [3, 4, 5]);
  assert.deepEqual(await ids(f().eq('meta->>lang', 'ja')), [3]);
});

test('embeds: many-to-one, one-to-many, many-to-many, inner join and embedded filters', async () => {
  const { data, error } = await anon
    .from('directors')
    .select('name, films(title, actors(name))')
    .eq('id', 1)
    .order('id', { referencedTable: 'films' })
    .single();
  assert.equal(error, null);
  assert.deepEqual(data, {
    name: 'Kubrick',
    films: [
      { title: '2001', actors: [{ name: 'Keir Dullea' }] },
      { title: 'The Shining', actors: [{ name: 'Jack Nicholson' }, { name: 'Shelley Duvall' }] },
    ],
  });
  const inner = await anon.from('directors').select('name, films!inner(title)').eq('films.year', 1985);
  assert.deepEqual(inner.data, [{ name: 'Kurosawa', films: [{ title: 'Ran' }] }]);
  const m2o = await anon.from('films').select('title, director:directors(name)').eq('id', 3).maybeSingle();
  assert.deepEqual(m2o.data, { title: 'Ran', director: { name: 'Kurosawa' } });
  const limited = await anon.from('directors').select('id, films(id)').eq('id', 2).limit(1, { referencedTable: 'films' }).order('id', { referencedTable: 'films', ascending: false });
  assert.deepEqual(limited.data, [{ id: 2, films: [{ id: 4 }] }]);
  const orEmbedded = await anon.from('directors').select('id, films(id)').eq('id', 1).or('id.eq.2,id.eq.9', { referencedTable: 'films' });
  assert.deepEqual(orEmbedded.data, [{ id: 1, films: [{ id: 2 }] }]);
  const amb = await anon.from('actors').select('messages(*)');
  assert.equal(amb.status, 300);
  assert.equal(amb.error.code, 'PGRST201');
});

test('count, range, head, single and maybeSingle', async () => {
  const counted = await anon.from('films').select('id', { count: 'exact' }).order('id').range(1, 2);
  assert.equal(counted.error, null);
  assert.equal(counted.count, 5);
  assert.equal(counted.status, 206);
  assert.deepEqual(counted.data, [{ id: 2 }, { id: 3 }]);
  const head = await anon.from('films').select('*', { count: 'exact', head: true });
  assert.equal(head.count, 5);
  assert.equal(head.data, null);
  const single = await anon.from('films').select('title').eq('id', 1).single();
  assert.deepEqual(single.data, { title: '2001' });
  const many = await anon.from('films').select('title').single();
  assert.equal(many.status, 406);
  assert.equal(many.error.code, 'PGRST116');
  const none = await anon.from('films').select('title').eq('id', 999).maybeSingle();
  assert.equal(none.error, null);
  assert.equal(none.data, null);
  const csv = await anon.from('directors').select('id,name').order('id').limit(2).csv();
  assert.equal(csv.data, 'id,name\n1,Kubrick\n2,Kurosawa');
});

test('insert, upsert, update and delete with select()', async () => {
  const ins = await service.from('actors').insert({ name: 'Ingrid' }).select('id, name').single();
  assert.equal(ins.error, null, JSON.stringify(ins.error));
  assert.equal(ins.status, 201);
  assert.equal(ins.data.name, 'Ingrid');
  const bulk = await service.from('actors').insert([{ name: 'B1' }, { name: 'B2' }]).select('name');
  assert.deepEqual(bulk.data, [{ name: 'B1' }, { name: 'B2' }]);
  const defaults = await service.from('films').insert([{ title: 'D1', year: 1900 }, { title: 'D2' }], { defaultToNull: false }).select('title, year, tags');
  assert.equal(defaults.error, null, JSON.stringify(defaults.error));
  assert.deepEqual(defaults.data, [{ title: 'D1', year: 1900, tags: [] }, { title: 'D2', year: null, tags: [] }]);
  const up = await service.from('directors').upsert([{ id: 3, name: 'Somebody' }, { id: 77, name: 'Seventy-seven' }]).select('id, name').order('id');
  assert.equal(up.error, null, JSON.stringify(up.error));
  assert.deepEqual(up.data, [{ id: 3, name: 'Somebody' }, { id: 77, name: 'Seventy-seven' }]);
  const ignore = await service.from('directors').upsert({ id: 3, name: 'Ignored' }, { ignoreDuplicates: true }).select();
  assert.deepEqual(ignore.data, []);
  const upd = await service.from('films').update({ rating: 9.9 }).eq('id', 4).select('id, rating');
  assert.deepEqual(upd.data, [{ id: 4, rating: 9.9 }]);
  const plain = await service.from('films').update({ rating: 9.8 }).eq('id', 4);
  assert.equal(plain.status, 204);
  const del = await service.from('directors').delete().eq('id', 77).select('name');
  assert.deepEqual(del.data, [{ name: 'Seventy-seven' }]);
  const delCount = await service.from('messages').delete({ count: 'exact' }).eq('id', 2);
  assert.equal(delCount.count, 1);
  const dup = await service.from('directors').insert({ id: 1, name: 'dup' });
  assert.equal(dup.status, 409);
  assert.equal(dup.error.code, '23505');
  assert.ok(dup.error.message.includes('duplicate key'));
});

test('rpc: post, get, head, set-returning with filters, void, errors', async () => {
  assert.deepEqual((await anon.rpc('add', { a: 1, b: 2 })).data, 3);
  assert.deepEqual((await anon.rpc('add', { a: 4 }, { get: true })).data, 5);
  assert.deepEqual((await anon.rpc('hello')).data, 'Hello world');
  const set = await anon.rpc('films_by_year', { y: 1970 }).select('id').order('id', { ascending: false }).limit(1);
  assert.deepEqual(set.data, [{ id: 3 }]);
  const counted = await anon.rpc('films_by_year', { y: 1950 }, { count: 'exact', head: true });
  assert.equal(counted.count, 4);
  const v = await anon.rpc('touch');
  assert.equal(v.error, null);
  assert.equal(v.status, 204);
  const arr = await anon.rpc('sum_all', { nums: [1, 2, 3] });
  assert.equal(arr.data, 6);
  const missing = await anon.rpc('nope');
  assert.equal(missing.status, 404);
  assert.equal(missing.error.code, 'PGRST202');
  const raised = await anon.rpc('oops');
  assert.equal(raised.status, 400);
  assert.deepEqual([raised.error.code, raised.error.message, raised.error.hint], ['P0001', 'nope', 'try again']);
  const custom = await anon.rpc('pay');
  assert.equal(custom.status, 402);
  assert.equal(custom.error.message, 'Payment Required');
});

test('row level security follows the caller', async () => {
  const alice = client(doska.anonKey, sign({ role: 'authenticated', sub: '00000000-0000-0000-0000-0000000000a1', exp: 4102444800 }));
  const bob = client(doska.anonKey, sign({ role: 'authenticated', sub: '00000000-0000-0000-0000-0000000000b1', exp: 4102444800 }));
  const ins = await alice.from('notes').insert({ body: 'alice only' }).select('body');
  assert.deepEqual(ins.data, [{ body: 'alice only' }]);
  assert.deepEqual((await bob.from('notes').select('body').eq('body', 'alice only')).data, []);
  assert.deepEqual((await alice.from('notes').select('body').eq('body', 'alice only')).data, [{ body: 'alice only' }]);
  const denied = await anon.from('items').select('*');
  assert.equal(denied.status, 401);
  assert.equal(denied.error.code, '42501');
  const expired = await client(doska.anonKey, sign({ role: 'authenticated', exp: 1 })).from('films').select('id');
  assert.equal(expired.status, 401);
});

test('raw HTTP: Range header, headers-only with Location, PUT, CSV and form bodies, OpenAPI root', async () => {
  const h = { apikey: doska.serviceKey, authorization: `Bearer ${doska.serviceKey}` };
  const ranged = await fetch(`${doska.url}/rest/v1/films?select=id&order=id&id=lt.100`, { headers: { ...h, range: '0-1', prefer: 'count=exact' } });
  assert.equal(ranged.status, 206);
  assert.equal(ranged.headers.get('content-range'), '0-1/5');
  const loc = await fetch(`${doska.url}/rest/v1/directors`, { method: 'POST', headers: { ...h, 'content-type': 'application/json', prefer: 'return=headers-only' }, body: JSON.stringify({ id: 90, name: 'Loc' }) });
  assert.equal(loc.status, 201);
  assert.equal(loc.headers.get('location'), '/directors?id=eq.90');
  const put = await fetch(`${doska.url}/rest/v1/directors?id=eq.91`, { method: 'PUT', headers: { ...h, 'content-type': 'application/json', prefer: 'return=representation' }, body: JSON.stringify({ id: 91, name: 'Put' }) });
  assert.equal(put.status, 201, 'a PUT that inserts answers 201 (PostgREST 12+)');
  assert.deepEqual(await put.json(), [{ id: 91, name: 'Put' }]);
  const csv = await fetch(`${doska.url}/rest/v1/directors`, { method: 'POST', headers: { ...h, 'content-type': 'text/csv', prefer: 'return=representation' }, body: 'id,name\n92,"Csv, Jr."' });
  assert.deepEqual(await csv.json(), [{ id: 92, name: 'Csv, Jr.' }]);
  const form = await fetch(`${doska.url}/rest/v1/directors`, { method: 'POST', headers: { ...h, 'content-type': 'application/x-www-form-urlencoded', prefer: 'return=representation' }, body: 'id=93&name=Form+Field' });
  assert.deepEqual(await form.json(), [{ id: 93, name: 'Form Field' }]);
  const root = await fetch(`${doska.url}/rest/v1/`, { headers: h });
  assert.equal(root.status, 200);
  const doc = await root.json();
  assert.ok(doc.paths['/films']);
});
