// The core in headless Chromium (playwright-core, Debian's chromium): a page on another origin
// (http://localhost:4998, served by page routes) calls a live doska, so every header the core sends
// must pass CORS — auth's X-Supabase-Api-Version, REST's Prefer/Accept-Profile/Idempotency-Key,
// storage's x-upsert/cache-control, TUS's Tus-Resumable/Upload-* — and the session lives in the
// page's real localStorage across a reload. Uploads take a browser File; downloads are Blobs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { email, live } from './live.mjs';

const ORIGIN = 'http://localhost:4998';
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

let doska, browser;
before(async () => {
  doska = await live({ migrations: { '0001_core.sql': fixture }, args: ['--db-schemas', 'public,other'] });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // A routed page has no address, so Local Network Access checks would refuse its calls to
    // 127.0.0.1; an app that doska serves itself is same-origin and never meets them.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-features=LocalNetworkAccessChecks'],
  });
});
after(async () => {
  await browser?.close();
  await doska?.stop();
});

async function page() {
  const ctx = await browser.newContext();
  await ctx.route(ORIGIN + '/**', async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path.startsWith('/sdk/')) {
      const body = await readFile(new URL(path.slice(5), src), 'utf8').catch(() => null);
      return route.fulfill(body == null ? { status: 404 } : { body, contentType: 'text/javascript' });
    }
    return route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><script type="module">
        import { createClient } from '/sdk/index.js';
        window.db = createClient(${JSON.stringify(doska.url)}, ${JSON.stringify(doska.anonKey)}, {
          offline: true, tus: { threshold: 64 * 1024, chunkSize: 32 * 1024 } });
        window.ready = true;
      </script>`,
    });
  });
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
