// The auth door of @doska/client against a live doska: auth-js's names and GoTrue's request shapes,
// the session kept in the client's storage, refresh before expiry (timer and on demand), events,
// one session shared by clients on one storage (tabs) and kept apart across storages (devices),
// mailed codes (read from auth.mail_outbox by a service-only function), and the bad inputs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { client, email, htmlServer, lastMailSql, live, offlineFetch, recording } from './live.mjs';
import { createClient, memoryStorage } from '../src/index.js';

const fixture = `
create table public.notes(id serial primary key, owner uuid not null default auth.uid(), body text);
alter table public.notes enable row level security;
create policy notes_own on public.notes using (owner = auth.uid()) with check (owner = auth.uid());
`;

let doska, service;
before(async () => {
  doska = await live({ migrations: { '0001_auth.sql': fixture, '0002_mail.sql': lastMailSql } });
  service = client(doska, {}, doska.serviceKey);
});
after(() => doska?.stop());

/** Records every auth event of a client; `next(name)` resolves at the next such event. */
function events(c) {
  const seen = [];
  const waiting = [];
  c.auth.onAuthStateChange((event, session) => {
    seen.push([event, session?.user?.email ?? session?.user?.id ?? null]);
    for (const w of waiting.splice(0)) w.event === event ? w.resolve(session) : waiting.push(w);
  });
  return { seen, next: (event) => new Promise((resolve) => waiting.push({ event, resolve })) };
}

/** The 6-digit code of the latest mail to `to`. */
async function mailedCode(to) {
  const { data, error } = await service.rpc('last_mail', { addr: to });
  assert.equal(error, null, JSON.stringify(error));
  return data.match(/code: (\d{6})/)[1];
}


test('signUp: a session, SIGNED_IN, persisted in storage; another client on that storage starts signed in', async () => {
  const storage = memoryStorage();
  const { seen, fetch } = recording();
  const a = createClient(doska.url, doska.anonKey, { storage, fetch });
  const ev = events(a);
  const addr = email();
  const { data, error } = await a.auth.signUp({ email: addr, password: 'password-1', options: { data: { name: 'Ann' } } });
  assert.equal(error, null);
  assert.equal(data.user.email, addr);
  assert.equal(data.user.user_metadata.name, 'Ann');
  assert.equal(data.session.user.id, data.user.id);
  assert.ok(data.session.expires_at > Date.now() / 1000);
  assert.deepEqual(ev.seen, [['INITIAL_SESSION', null], ['SIGNED_IN', addr]]);
  const req = seen.at(-1);
  assert.equal(new URL(req.url).pathname, '/auth/v1/signup');
  assert.equal(req.headers['X-Supabase-Api-Version'], '2024-01-01');
  assert.deepEqual(JSON.parse(req.body), { email: addr, password: 'password-1', data: { name: 'Ann' }, gotrue_meta_security: {} });
  assert.equal(JSON.parse(storage.getItem('sb-127-auth-token')).access_token, data.session.access_token);

  const b = createClient(doska.url, doska.anonKey, { storage });
  assert.equal(b.auth.currentSession.access_token, data.session.access_token);
  const evb = events(b);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(evb.seen, [['INITIAL_SESSION', addr]]);
  const s = await b.auth.getSession();
  assert.equal(s.data.session.user.email, addr);
  // Every REST call carries the user's token: RLS sees the user.
  let r = await b.from('notes').insert({ body: 'b wrote' }).select('owner');
  assert.deepEqual(r.data, [{ owner: data.user.id }]);
});

test('signInWithPassword: wrong password is an AuthApiError value; the right one signs in', async () => {
  const addr = email();
  await client(doska).auth.signUp({ email: addr, password: 'password-1' });
  const c = client(doska);
  let r = await c.auth.signInWithPassword({ email: addr, password: 'wrong-password' });
  assert.deepEqual(r.data, { user: null, session: null });
  assert.equal(r.error.name, 'AuthApiError');
  assert.equal(r.error.status, 400);
  assert.equal(r.error.code, 'invalid_credentials');
  assert.ok(r.error.message);
  assert.equal(c.auth.currentSession, null);
  r = await c.auth.signInWithPassword({ email: addr, password: 'password-1' });
  assert.equal(r.error, null);
  assert.equal(r.data.user.email, addr);
  assert.equal(c.auth.currentSession.access_token, r.data.session.access_token);
});

test('signInAnonymously: an anonymous user with its own session', async () => {
  const c = client(doska);
  const { data, error } = await c.auth.signInAnonymously({ options: { data: { nick: 'x' } } });
  assert.equal(error, null);
  assert.equal(data.user.is_anonymous, true);
  assert.equal(data.user.user_metadata.nick, 'x');
  const u = await c.auth.getUser();
  assert.equal(u.data.user.id, data.user.id);
});

test('getUser: without a session no request is sent; with one, the server\'s user; updateUser: USER_UPDATED', async () => {
  const { seen, fetch } = recording();
  const c = client(doska, { fetch });
  let r = await c.auth.getUser();
  assert.deepEqual(r.data, { user: null });
  assert.equal(r.error.name, 'AuthSessionMissingError');
  assert.equal(seen.length, 0);
  r = await c.auth.updateUser({ data: { x: 1 } });
  assert.equal(r.error.name, 'AuthSessionMissingError');
  assert.equal(seen.length, 0);

  const addr = email();
  await c.auth.signUp({ email: addr, password: 'password-1' });
  const ev = events(c);
  r = await c.auth.getUser();
  assert.equal(r.data.user.email, addr);
  assert.equal(seen.at(-1).headers.Authorization, `Bearer ${c.auth.currentSession.access_token}`);
  r = await c.auth.updateUser({ data: { theme: 'dark' } });
  assert.equal(r.error, null);
  assert.equal(r.data.user.user_metadata.theme, 'dark');
  assert.equal(c.auth.currentSession.user.user_metadata.theme, 'dark');
  assert.deepEqual(ev.seen.map((e) => e[0]), ['INITIAL_SESSION', 'USER_UPDATED']);
  r = await c.auth.updateUser({ password: 'password-2', current_password: 'password-1' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  r = await client(doska).auth.signInWithPassword({ email: addr, password: 'password-2' });
  assert.equal(r.error, null);
});

test('signInWithOtp + verifyOtp with the mailed code; resetPasswordForEmail + verifyOtp(recovery)', async () => {
  const addr = email();
  const c = client(doska);
  const ev = events(c);
  let r = await c.auth.signInWithOtp({ email: addr, options: { data: { via: 'otp' } } });
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.deepEqual([r.data.user, r.data.session], [null, null]);
  r = await c.auth.verifyOtp({ email: addr, token: '000000', type: 'email' });
  assert.equal(r.error.status, 403);
  assert.equal(r.error.code, 'otp_expired');
  r = await c.auth.verifyOtp({ email: addr, token: await mailedCode(addr), type: 'email' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.equal(r.data.user.email, addr);
  assert.equal(c.auth.currentSession.user.email, addr);
  // shouldCreateUser: false for an unknown address creates nobody.
  r = await client(doska).auth.signInWithOtp({ email: email(), options: { shouldCreateUser: false } });
  assert.ok(r.error);

  r = await c.auth.resetPasswordForEmail(addr);
  assert.deepEqual(r, { data: {}, error: null });
  const other = client(doska);
  const evo = events(other);
  r = await other.auth.verifyOtp({ email: addr, token: await mailedCode(addr), type: 'recovery' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  assert.deepEqual(evo.seen.map((e) => e[0]), ['INITIAL_SESSION', 'PASSWORD_RECOVERY']);
  r = await other.auth.updateUser({ password: 'new-password-1' });
  assert.equal(r.error, null, JSON.stringify(r.error));
  r = await client(doska).auth.signInWithPassword({ email: addr, password: 'new-password-1' });
  assert.equal(r.error, null);
  assert.deepEqual(ev.seen.map((e) => e[0]), ['INITIAL_SESSION', 'SIGNED_IN']);
});

test('refreshSession: new tokens, TOKEN_REFRESHED, the old refresh token no longer works past its window', async () => {
  const c = client(doska);
  await c.auth.signUp({ email: email(), password: 'password-1' });
  const before = c.auth.currentSession;
  const ev = events(c);
  const r = await c.auth.refreshSession();
  assert.equal(r.error, null);
  assert.notEqual(r.data.session.refresh_token, before.refresh_token);
  assert.equal(c.auth.currentSession.refresh_token, r.data.session.refresh_token);
  assert.equal(r.data.user.id, before.user.id);
  assert.deepEqual(ev.seen.map((e) => e[0]), ['INITIAL_SESSION', 'TOKEN_REFRESHED']);
  assert.equal((await client(doska).auth.refreshSession()).error.name, 'AuthSessionMissingError');
});

test('a token about to expire is refreshed before the request that needs it (on demand)', async () => {
  const { seen, fetch } = recording();
  const c = client(doska, { fetch, auth: { autoRefreshToken: false } });
  await c.auth.signUp({ email: email(), password: 'password-1' });
  const old = c.auth.currentSession;
  c.auth.currentSession = { ...old, expires_at: Math.floor(Date.now() / 1000) + 5 };
  const n = seen.length;
  const r = await c.from('notes').insert({ body: 'after refresh' }).select('owner');
  assert.deepEqual(r.data, [{ owner: old.user.id }]);
  const sent = seen.slice(n);
  assert.deepEqual(sent.map((s) => new URL(s.url).pathname), ['/auth/v1/token', '/rest/v1/notes']);
  assert.notEqual(c.auth.currentSession.refresh_token, old.refresh_token);
  assert.equal(sent[1].headers.Authorization, `Bearer ${c.auth.currentSession.access_token}`);
  // Concurrent requests share one refresh.
  c.auth.currentSession = { ...c.auth.currentSession, expires_at: Math.floor(Date.now() / 1000) + 5 };
  const m = seen.length;
  await Promise.all([c.from('notes').select(), c.from('notes').select(), c.auth.getSession()]);
  assert.equal(seen.slice(m).filter((s) => s.url.includes('/auth/v1/token')).length, 1);
});

test('the timer refreshes a stored session that is near its expiry, without any call', async () => {
  const a = client(doska);
  await a.auth.signUp({ email: email(), password: 'password-1' });
  const storage = memoryStorage();
  const stale = { ...a.auth.currentSession, expires_at: Math.floor(Date.now() / 1000) + 10 };
  storage.setItem('sb-127-auth-token', JSON.stringify(stale));
  const c = createClient(doska.url, doska.anonKey, { storage });
  const refreshed = await events(c).next('TOKEN_REFRESHED');
  assert.notEqual(refreshed.refresh_token, stale.refresh_token);
  assert.equal(JSON.parse(storage.getItem('sb-127-auth-token')).refresh_token, refreshed.refresh_token);
});

test('an expired session whose refresh token the server revoked ends in SIGNED_OUT; requests go on as anon', async () => {
  const addr = email();
  const a = client(doska);
  await a.auth.signUp({ email: addr, password: 'password-1' });
  await a.from('notes').insert({ body: 'private' });
  // Another device signs the user out everywhere: every session and refresh token goes.
  const b = client(doska);
  await b.auth.signInWithPassword({ email: addr, password: 'password-1' });
  assert.deepEqual(await b.auth.signOut({ scope: 'global' }), { error: null });
  const ev = events(a);
  a.auth.currentSession = { ...a.auth.currentSession, expires_at: Math.floor(Date.now() / 1000) - 10 };
  const r = await a.from('notes').select('body');
  assert.deepEqual([r.data, r.error], [[], null]);
  assert.equal(a.auth.currentSession, null);
  assert.ok(ev.seen.some((e) => e[0] === 'SIGNED_OUT'));
  // A session ended from another device (scope: others): getUser reports it and ends it here too.
  const c = client(doska), d = client(doska);
  await c.auth.signInWithPassword({ email: addr, password: 'password-1' });
  await d.auth.signInWithPassword({ email: addr, password: 'password-1' });
  const dToken = d.auth.currentSession.access_token;
  assert.deepEqual(await c.auth.signOut({ scope: 'others' }), { error: null });
  assert.ok(c.auth.currentSession, 'scope others keeps this session');
  assert.equal((await c.auth.getUser()).error, null);
  const u = await d.auth.getUser();
  assert.equal(u.error.code, 'session_not_found');
  assert.equal(d.auth.currentSession, null);
  assert.equal((await client(doska).auth.getUser(dToken)).error.status, 403);
});

test('signOut: the server ends the session, the storage forgets it, SIGNED_OUT', async () => {
  const storage = memoryStorage();
  const c = createClient(doska.url, doska.anonKey, { storage });
  await c.auth.signUp({ email: email(), password: 'password-1' });
  const token = c.auth.currentSession.access_token;
  const ev = events(c);
  assert.deepEqual(await c.auth.signOut(), { error: null });
  assert.equal(c.auth.currentSession, null);
  assert.equal(storage.getItem('sb-127-auth-token'), null);
  assert.deepEqual(ev.seen.map((e) => e[0]), ['INITIAL_SESSION', 'SIGNED_OUT']);
  const u = await c.auth.getUser(token);
  assert.equal(u.error.status, 403);
  // Signing out without a session sends nothing and is no error.
  assert.deepEqual(await c.auth.signOut(), { error: null });
});

test('setSession: tokens from elsewhere become this client\'s session; missing or refused tokens are errors', async () => {
  const a = client(doska);
  await a.auth.signUp({ email: email(), password: 'password-1' });
  const { access_token, refresh_token, user } = a.auth.currentSession;
  const b = client(doska);
  let r = await b.auth.setSession({ access_token, refresh_token });
  assert.equal(r.error, null);
  assert.equal(r.data.user.id, user.id);
  assert.equal(b.auth.currentSession.access_token, access_token);
  r = await client(doska).auth.setSession({ access_token: '', refresh_token: '' });
  assert.equal(r.error.name, 'AuthSessionMissingError');
  r = await client(doska).auth.setSession({ access_token: 'garbage', refresh_token: 'garbage' });
  assert.equal(r.error.name, 'AuthApiError');
  assert.equal(r.error.status, 400);
});

test('clients on one storage are tabs of one device: sign-in and sign-out reach the other; separate storages are separate devices', async () => {
  const storage = memoryStorage();
  const tab1 = createClient(doska.url, doska.anonKey, { storage });
  const tab2 = createClient(doska.url, doska.anonKey, { storage });
  const other = client(doska);
  assert.equal(tab1.deviceId, tab2.deviceId);
  assert.notEqual(tab1.deviceId, other.deviceId);
  const ev2 = events(tab2);
  const signedIn = ev2.next('SIGNED_IN');
  const addr = email();
  await tab1.auth.signUp({ email: addr, password: 'password-1' });
  assert.equal((await signedIn).user.email, addr);
  assert.equal(tab2.auth.currentSession.access_token, tab1.auth.currentSession.access_token);
  assert.equal(other.auth.currentSession, null);
  const refreshed = ev2.next('TOKEN_REFRESHED');
  await tab1.auth.refreshSession();
  assert.equal((await refreshed).refresh_token, tab1.auth.currentSession.refresh_token);
  const signedOut = ev2.next('SIGNED_OUT');
  await tab1.auth.signOut();
  assert.equal(await signedOut, null);
  assert.equal(tab2.auth.currentSession, null);
});

test('bad inputs: no network, an HTML answer, a wrong key, a taken e-mail, a weak password, a corrupt stored session', async () => {
  let r = await client(doska, { fetch: offlineFetch }).auth.signInWithPassword({ email: 'a@b.c', password: 'x' });
  assert.equal(r.error.name, 'NetworkError');
  assert.equal(r.error.status, 0);
  // Offline, a session is kept (not signed out) when its refresh cannot reach the server.
  const storage = memoryStorage();
  const a = createClient(doska.url, doska.anonKey, { storage });
  await a.auth.signUp({ email: email(), password: 'password-1' });
  const kept = { ...a.auth.currentSession, expires_at: Math.floor(Date.now() / 1000) + 5 };
  storage.setItem('sb-127-auth-token', JSON.stringify(kept));
  const off = createClient(doska.url, doska.anonKey, { storage, fetch: offlineFetch, auth: { autoRefreshToken: false } });
  const s = await off.auth.getSession();
  assert.equal(s.error.name, 'NetworkError');
  assert.equal(s.data.session.refresh_token, kept.refresh_token);
  r = await off.auth.signOut();
  assert.equal(r.error.name, 'NetworkError');
  assert.equal(off.auth.currentSession, null, 'signed out here even when the server cannot be told');

  const html = await htmlServer(200);
  try {
    r = await client({ url: html.url, anonKey: 'k' }).auth.signInWithPassword({ email: 'a@b.c', password: 'x' });
    assert.equal(r.error.name, 'AuthUnknownError');
    assert.equal(r.error.code, 'NOT_JSON');
    assert.equal(r.error.status, 200);
  } finally {
    await html.close();
  }
  // A token that is not a JWT: the server refuses it, as a value.
  r = await client(doska, {}, 'not-a-key').auth.getUser('not-a-jwt');
  assert.equal(r.error.name, 'AuthApiError');
  assert.ok(r.error.status >= 400 && r.error.status < 500, JSON.stringify(r.error));
  const addr = email();
  await client(doska).auth.signUp({ email: addr, password: 'password-1' });
  r = await client(doska).auth.signUp({ email: addr, password: 'password-1' });
  assert.equal(r.error.status, 422);
  assert.equal(r.error.code, 'user_already_exists');
  r = await client(doska).auth.signUp({ email: email(), password: '1' });
  assert.equal(r.error.status, 422);
  assert.equal(r.error.code, 'weak_password');
  const corrupt = memoryStorage();
  corrupt.setItem('sb-127-auth-token', '{not json');
  const c = createClient(doska.url, doska.anonKey, { storage: corrupt });
  assert.equal(c.auth.currentSession, null);
  assert.equal(corrupt.getItem('sb-127-auth-token'), null);
  assert.deepEqual((await c.auth.getSession()).data, { session: null });
});
