// Auth with the official client: @supabase/supabase-js (auth-js) against a live doska, unchanged.
// Runs against the binary (startDoska, with fixtures/auth_teacher_role.sql as the app migration)
// or, when DOSKA_URL/DOSKA_ANON_KEY/DOSKA_SERVICE_KEY are set, against a doska someone else
// started with that fixture applied.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createClient } from '@supabase/supabase-js';
import WebSocket from 'ws';
import { startDoska } from './harness.mjs';

let doska;
before(async () => {
  if (process.env.DOSKA_URL) {
    doska = {
      url: process.env.DOSKA_URL,
      anonKey: process.env.DOSKA_ANON_KEY,
      serviceKey: process.env.DOSKA_SERVICE_KEY,
      stop: async () => {},
    };
  } else {
    const sql = await readFile(new URL('./fixtures/auth_teacher_role.sql', import.meta.url), 'utf8');
    doska = await startDoska({ migrations: { '0001_teacher_role.sql': sql } });
  }
});
after(async () => { await doska?.stop(); });

const client = (key = doska.anonKey) =>
  createClient(doska.url, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    // Node 20 has no global WebSocket; realtime-js wants one even when unused.
    realtime: { transport: WebSocket },
  });
const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());
let n = 0;
const email = (tag) => `${tag}-${process.pid}-${n++}@school.test`;

test('signUp: the trigger-set role is already in the first token', async () => {
  const sb = client();
  const { data, error } = await sb.auth.signUp({
    email: email('teacher'), password: 'teacher-pass-1', options: { data: { kind: 'teacher' } },
  });
  assert.equal(error, null);
  assert.ok(data.session, 'autoconfirm gives a session');
  assert.equal(data.user.role, 'teacher');
  assert.equal(claims(data.session.access_token).role, 'teacher');
  assert.equal(claims(data.session.access_token).aud, 'authenticated');
  assert.equal(data.user.user_metadata.kind, 'teacher');
});

test('signInWithPassword, getUser, updateUser, refreshSession', async () => {
  const addr = email('student');
  await client().auth.signUp({ email: addr, password: 'student-pass-1' });
  const sb = client();
  const { data, error } = await sb.auth.signInWithPassword({ email: addr, password: 'student-pass-1' });
  assert.equal(error, null);
  assert.equal(claims(data.session.access_token).role, 'authenticated');
  const got = await sb.auth.getUser();
  assert.equal(got.error, null);
  assert.equal(got.data.user.email, addr);
  const upd = await sb.auth.updateUser({ data: { grade: 7 } });
  assert.equal(upd.error, null);
  assert.equal(upd.data.user.user_metadata.grade, 7);
  const before = (await sb.auth.getSession()).data.session;
  const ref = await sb.auth.refreshSession();
  assert.equal(ref.error, null);
  assert.notEqual(ref.data.session.refresh_token, before.refresh_token);
  assert.equal(claims(ref.data.session.access_token).user_metadata.grade, 7);
  const again = await sb.auth.getUser();
  assert.equal(again.data.user.email, addr);
});

test('wrong password and an existing email come back as auth-js error codes', async () => {
  const addr = email('dup');
  await client().auth.signUp({ email: addr, password: 'dup-pass-1' });
  const dup = await client().auth.signUp({ email: addr, password: 'dup-pass-2' });
  assert.equal(dup.error?.code, 'user_already_exists');
  assert.equal(dup.error?.status, 422);
  const bad = await client().auth.signInWithPassword({ email: addr, password: 'nope-nope' });
  assert.equal(bad.error?.code, 'invalid_credentials');
  assert.equal(bad.error?.status, 400);
  const unknown = await client().auth.signInWithPassword({ email: email('ghost'), password: 'nope-nope' });
  assert.equal(unknown.error?.code, 'invalid_credentials');
  assert.equal(unknown.error?.message, bad.error?.message);
  const weak = await client().auth.signUp({ email: email('weak'), password: '123' });
  assert.equal(weak.error?.code, 'weak_password');
  assert.equal(weak.error?.name, 'AuthWeakPasswordError');
});

test('two clients refreshing one session at once both stay signed in; reuse after the window is refused', async () => {
  const addr = email('tabs');
  const { data } = await client().auth.signUp({ email: addr, password: 'tabs-pass-1' });
  const rt = data.session.refresh_token;
  const [a, b] = await Promise.all([
    client().auth.refreshSession({ refresh_token: rt }),
    client().auth.refreshSession({ refresh_token: rt }),
  ]);
  assert.equal(a.error, null);
  assert.equal(b.error, null);
  const a2 = await client().auth.refreshSession({ refresh_token: a.data.session.refresh_token });
  const b2 = await client().auth.refreshSession({ refresh_token: b.data.session.refresh_token });
  assert.equal(a2.error, null);
  assert.equal(b2.error, null);
  // The default reuse window is 10 s.
  await new Promise((r) => setTimeout(r, 11_000));
  const reuse = await client().auth.refreshSession({ refresh_token: rt });
  assert.equal(reuse.error?.code, 'refresh_token_already_used');
  const after = await client().auth.refreshSession({ refresh_token: a2.data.session.refresh_token });
  assert.ok(after.error, 'the whole family is revoked');
});

test('signOut local ends one session, global ends all', async () => {
  const addr = email('out');
  await client().auth.signUp({ email: addr, password: 'out-pass-1' });
  const one = client();
  const two = client();
  await one.auth.signInWithPassword({ email: addr, password: 'out-pass-1' });
  await two.auth.signInWithPassword({ email: addr, password: 'out-pass-1' });
  const twoToken = (await two.auth.getSession()).data.session.access_token;
  assert.equal((await one.auth.signOut({ scope: 'local' })).error, null);
  assert.equal((await one.auth.getSession()).data.session, null);
  assert.equal((await two.auth.getUser()).error, null);
  assert.equal((await two.auth.signOut()).error, null);
  const gone = await client().auth.getUser(twoToken);
  assert.equal(gone.error?.name, 'AuthSessionMissingError');
});

test('signInAnonymously gives an anonymous user', async () => {
  const { data, error } = await client().auth.signInAnonymously({ options: { data: { nick: 'x' } } });
  assert.equal(error, null);
  assert.equal(data.user.is_anonymous, true);
  assert.equal(claims(data.session.access_token).is_anonymous, true);
});

test('admin: createUser, listUsers, updateUserById with a role', async () => {
  const admin = client(doska.serviceKey).auth.admin;
  const addr = email('staff');
  const created = await admin.createUser({ email: addr, password: 'staff-pass-1', email_confirm: true });
  assert.equal(created.error, null);
  const id = created.data.user.id;
  const list = await admin.listUsers({ page: 1, perPage: 1 });
  assert.equal(list.error, null);
  assert.equal(list.data.users.length, 1);
  assert.ok(list.data.total >= 1);
  const upd = await admin.updateUserById(id, { role: 'teacher', app_metadata: { school: 1 } });
  assert.equal(upd.error, null);
  assert.equal(upd.data.user.role, 'teacher');
  const denied = await admin.updateUserById(id, { role: 'service_role' });
  assert.equal(denied.error?.status, 400);
  const { data } = await client().auth.signInWithPassword({ email: addr, password: 'staff-pass-1' });
  const c = claims(data.session.access_token);
  assert.equal(c.role, 'teacher');
  assert.equal(c.app_metadata.school, 1);
  const notAdmin = await client().auth.admin.listUsers();
  assert.equal(notAdmin.error?.status, 403);
  assert.equal((await admin.deleteUser(id)).error, null);
  assert.equal((await admin.getUserById(id)).error?.status, 404);
});

test('a token with an app role makes REST run as that role', async () => {
  const admin = client(doska.serviceKey).auth.admin;
  const addr = email('role-rest');
  const { data: created } = await admin.createUser({ email: addr, password: 'role-pass-1', email_confirm: true });
  const sb = client();
  await sb.auth.signInWithPassword({ email: addr, password: 'role-pass-1' });
  const before = await sb.from('lessons').select('id');
  assert.equal(before.error, null);
  assert.deepEqual(before.data, [], 'a plain authenticated user sees no lessons');
  assert.equal((await admin.updateUserById(created.user.id, { role: 'teacher' })).error, null);
  // The role is in the next token, not the current one.
  const ref = await sb.auth.refreshSession();
  assert.equal(claims(ref.data.session.access_token).role, 'teacher');
  const after = await sb.from('lessons').select('id, title').order('id');
  assert.equal(after.error, null);
  assert.deepEqual(after.data.map((l) => l.title), ['Fractions', 'Photosynthesis']);
});

// Supabase's signing keys are JWKs with their own `kid` (the CLI's signing_keys.json is an array of
// them): `--jwt-signing-key` takes that file, signs with that kid, and accepts tokens made elsewhere
// with the key and its kid (the project's keys, as Supabase issues them).
test('--jwt-signing-key as a JWK array: tokens carry and are accepted with its own kid', { skip: !!process.env.DOSKA_URL }, async () => {
  const { generateKeyPairSync, randomUUID, createSign } = await import('node:crypto');
  const { mkdtemp, writeFile, rm, chmod } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID();
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, key_ops: ['sign', 'verify'], alg: 'RS256' };
  const dir = await mkdtemp(join(tmpdir(), 'doska-jwk-'));
  await chmod(dir, 0o755);
  const file = join(dir, 'signing_keys.json');
  await writeFile(file, JSON.stringify([jwk]));
  const rs256 = (claims, headerKid = kid) => {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const body = `${enc({ alg: 'RS256', typ: 'JWT', kid: headerKid })}.${enc(claims)}`;
    return `${body}.${createSign('RSA-SHA256').update(body).sign(privateKey).toString('base64url')}`;
  };
  const own = await startDoska({ args: ['--jwt-signing-key', file] });
  try {
    const now = Math.floor(Date.now() / 1000);
    const opts = { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: WebSocket } };
    const anonKey = rs256({ iss: 'supabase-demo', role: 'anon', iat: now, exp: now + 3600 });
    const secretKey = rs256({ iss: 'supabase-demo', role: 'service_role', iat: now, exp: now + 3600 });
    const jwks = await (await fetch(`${own.url}/auth/v1/.well-known/jwks.json`)).json();
    assert.equal(jwks.keys[0].kid, kid);
    assert.equal(jwks.keys[0].d, undefined, 'no private part published');
    const users = createClient(own.url, anonKey, opts).auth;
    const addr = email('jwk');
    const { data, error } = await users.signUp({ email: addr, password: 'jwk-pass-1' });
    assert.equal(error, null);
    const header = JSON.parse(Buffer.from(data.session.access_token.split('.')[0], 'base64url').toString());
    assert.deepEqual([header.alg, header.kid], ['RS256', kid]);
    // A token made outside doska with the key and its kid: an admin's.
    const admin = createClient(own.url, secretKey, opts).auth.admin;
    const listed = await admin.listUsers();
    assert.equal(listed.error, null);
    assert.ok(listed.data.users.some((u) => u.email === addr));
    // supabase_admin is an admin role too, as in GoTrue.
    const supabaseAdmin = createClient(own.url, anonKey, {
      ...opts, global: { headers: { Authorization: `Bearer ${rs256({ sub: '1234567890', role: 'supabase_admin' })}` } },
    }).auth.admin;
    assert.equal((await supabaseAdmin.deleteUser(data.user.id)).error, null);
    // The same key under another kid is not this key's token.
    const forged = createClient(own.url, rs256({ role: 'service_role', iat: now, exp: now + 3600 }, 'other-kid'), opts).auth.admin;
    assert.notEqual((await forged.listUsers()).error, null);
  } finally {
    await own.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
