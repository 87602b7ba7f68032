// The core in headless Chromium (playwright-core, Debian's chromium): a page on another origin
// (http://localhost:<port>, a small static server for the page and the SDK's source; a real server,
// because a mailed link's redirect back to the app is a navigation that page routes do not see)
// calls a live doska, so every header the core sends
// must pass CORS — auth's X-Supabase-Api-Version, REST's Prefer/Accept-Profile/Idempotency-Key,
// storage's x-upsert/cache-control, TUS's Tus-Resumable/Upload-* — and the session lives in the
// page's real localStorage across a reload. Uploads take a browser File; downloads are Blobs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { client, email, lastMailSql, live } from './live.mjs';

let ORIGIN;
const src = new URL('../src/', import.meta.url);
const fixture = `
create table public.todos (id bigserial primary key, owner uuid not null default auth.uid(), title text not null);
alter table public.todos enable row level security;
create policy own on public.todos for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
create schema other;
create table other.notes (id int primary key, body text);
grant usage on schema other to anon, authenticated;
grant all on other.notes to anon, authenticated;
create policy own_files on storage.objects for all to authenticated
  using (bucket_id = 'files' and (storage.foldername(name))[1] = auth.uid()::text)
  with check (bucket_id = 'files' and (storage.foldername(name))[1] = auth.uid()::text);
insert into storage.buckets (id, name, public) values ('files', 'files', false);
`;

let doska, browser, site;

/** The app page and, under /sdk/, the SDK's source files. */
const app = (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  const send = (status, type, body) => (res.writeHead(status, { 'content-type': type }), res.end(body));
  if (!path.startsWith('/sdk/')) {
    return send(200, 'text/html', `<!doctype html><script type="module">
      import { createClient } from '/sdk/index.js';
      window.db = createClient(${JSON.stringify(doska.url)}, ${JSON.stringify(doska.anonKey)}, {
        offline: true, tus: { threshold: 64 * 1024, chunkSize: 32 * 1024 } });
      window.events = [];
      window.db.auth.onAuthStateChange((e) => window.events.push(e));
      window.ready = true;
    </script>`);
  }
  readFile(new URL(path.slice(5), src), 'utf8').then((body) => send(200, 'text/javascript', body), () => send(404, 'text/plain', 'no such file'));
};

before(async () => {
  site = createServer(app);
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  ORIGIN = `http://localhost:${site.address().port}`;
  doska = await live({
    migrations: { '0001_core.sql': fixture, '0002_mail.sql': lastMailSql },
    args: ['--db-schemas', 'public,other', '--site-url', ORIGIN + '/app.html'],
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});
after(async () => {
  await browser?.close();
  await doska?.stop();
  await new Promise((r) => site?.close(r));
});

async function page() {
  const ctx = await browser.newContext();
  const p = await ctx.newPage();
  p.errors = [];
  p.on('pageerror', (e) => p.errors.push(e));
  await p.goto(ORIGIN + '/app.html');
  await p.waitForFunction(() => window.ready);
  return p;
}

test('in a browser, cross-origin: auth, REST, storage and TUS pass CORS; the session survives a reload', async () => {
  const p = await page();
  const addr = email();
  const signUp = await p.evaluate((addr) => window.db.auth.signUp({ email: addr, password: 'password-1' }).then((r) => r.error), addr);
  assert.equal(signUp, null);
  assert.ok(await p.evaluate(() => JSON.parse(localStorage.getItem('sb-127-auth-token')).access_token));

  const rest = await p.evaluate(async () => {
    const db = window.db;
    const ins = await db.from('todos').insert([{ title: 'a' }, { title: 'b' }]).select('title');
    const sel = await db.from('todos').select('title', { count: 'exact' }).order('id').limit(1);
    const one = await db.from('todos').select('title').eq('title', 'b').maybeSingle();
    const other = await db.schema('other').from('notes').upsert({ id: 1, body: 'x' }).select();
    const bad = await db.from('nope').select();
    return { ins: ins.data, sel: [sel.data, sel.count], one: one.data, other: other.data, bad: [bad.status, bad.error.code] };
  });
  assert.deepEqual(rest, {
    ins: [{ title: 'a' }, { title: 'b' }],
    sel: [[{ title: 'a' }], 2],
    one: { title: 'b' },
    other: [{ id: 1, body: 'x' }],
    bad: [404, 'PGRST205'],
  });

  const files = await p.evaluate(async () => {
    const db = window.db;
    const uid = db.auth.currentSession.user.id;
    const small = new File(['hello from a page'], 'hello.txt', { type: 'text/plain' });
    const big = new File([new Uint8Array(200 * 1024).map((_, i) => i & 255)], 'big.bin', { type: 'application/octet-stream' });
    const up1 = await db.storage.from('files').upload(`${uid}/hello.txt`, small);
    const up2 = await db.storage.from('files').upload(`${uid}/big.bin`, big); // TUS: over the 64 KiB threshold
    const again = await db.storage.from('files').upload(`${uid}/hello.txt`, small, { upsert: true, cacheControl: '60' });
    const d1 = await db.storage.from('files').download(`${uid}/hello.txt`);
    const d2 = await db.storage.from('files').download(`${uid}/big.bin`);
    const bytes = new Uint8Array(await d2.data.arrayBuffer());
    const signed = await db.storage.from('files').createSignedUrl(`${uid}/hello.txt`, 60);
    const viaUrl = await (await fetch(signed.data.signedUrl)).text();
    const denied = await db.storage.from('files').upload('someone-else/x.txt', small);
    return {
      errors: [up1.error, up2.error, again.error, d1.error, d2.error, signed.error],
      blob: d1.data instanceof Blob,
      type: d1.data.type,
      text: await d1.data.text(),
      big: [bytes.length, bytes.every((b, i) => b === (i & 255))],
      viaUrl,
      denied: denied.error.status,
    };
  });
  assert.deepEqual(files, {
    errors: [null, null, null, null, null, null],
    blob: true,
    type: 'text/plain',
    text: 'hello from a page',
    big: [200 * 1024, true],
    viaUrl: 'hello from a page',
    denied: 403,
  });

  await p.reload();
  await p.waitForFunction(() => window.ready);
  const after = await p.evaluate(async () => {
    const u = await window.db.auth.getUser();
    const r = await window.db.from('todos').select('title').order('id');
    return [u.data.user?.email, r.data.map((x) => x.title)];
  });
  assert.deepEqual(after, [addr, ['a', 'b']]);
  assert.deepEqual(p.errors, []);
  await p.context().close();
});

test('a mailed link (magic link, recovery) signs the page in: the session in the URL fragment is taken and removed from the address bar', async () => {
  const addr = email();
  const p = await page();
  const r = await p.evaluate((addr) => window.db.auth.signInWithOtp({ email: addr }).then((r) => r.error), addr);
  assert.equal(r, null);
  const service = client(doska, {}, doska.serviceKey);
  // The harness listens on port 0, so the mail's links name 127.0.0.1:0 (--external-url's default):
  // point them at the port doska got.
  const linkIn = async () => (await service.rpc('last_mail', { addr })).data.match(/link: (\S+)/)[1].replace(/^http:\/\/[^/]+/, doska.url);
  const link = await linkIn();
  // The link is doska's /auth/v1/verify; it redirects to the site URL with the session in the fragment.
  await p.goto(link);
  await p.waitForFunction(() => window.ready && window.events.includes('SIGNED_IN'));
  const seen = await p.evaluate(() => [window.db.auth.currentSession?.user?.email, location.hash, location.pathname, window.events]);
  assert.deepEqual(seen.slice(0, 3), [addr, '', '/app.html']);
  assert.ok(seen[3].includes('INITIAL_SESSION'));
  const user = await p.evaluate(() => window.db.auth.getUser().then((r) => r.data.user?.email));
  assert.equal(user, addr);
  // Recovery: the link's session arrives as PASSWORD_RECOVERY, and the new password can be set.
  await p.evaluate((addr) => window.db.auth.resetPasswordForEmail(addr), addr);
  const recovery = await linkIn();
  await p.goto(recovery);
  await p.waitForFunction(() => window.ready && window.events.includes('PASSWORD_RECOVERY'));
  const changed = await p.evaluate(() => window.db.auth.updateUser({ password: 'password-2' }).then((r) => r.error));
  assert.equal(changed, null);
  assert.equal((await client(doska).auth.signInWithPassword({ email: addr, password: 'password-2' })).error, null);
  assert.deepEqual(p.errors, []);
  await p.context().close();
});
