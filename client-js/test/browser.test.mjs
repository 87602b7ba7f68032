// What only a browser has, in headless Chromium (playwright-core, Debian's chromium): tabs of one
// origin sharing a session (sign-out in one signs out the other), localStore changes crossing tabs
// over BroadcastChannel, and the offline queue surviving a reload while offline
// (context.setOffline) and flushing once online. The page and the SDK's source are served by page
// routes on http://localhost:4999 (a secure context: Web Locks exist); doska is the live one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { start } from './sync-helpers.mjs';

const ORIGIN = 'http://localhost:4999';
const src = new URL('../src/', import.meta.url);
const items = `
create table public.items (id bigserial primary key, owner uuid not null default auth.uid(), name text not null);
alter table public.items enable row level security;
create policy own on public.items for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
`;

let d, browser;
before(async () => {
  d = await start({ '0002_items.sql': items });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    // A page fulfilled by a route has no address, so Chromium's Local Network Access would refuse
    // its calls to doska on 127.0.0.1 ("loopback address space"); an app served by doska itself
    // is same-origin and never meets that check.
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-features=LocalNetworkAccessChecks'],
  });
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

/** A fresh context (its own origin storage) whose pages load the app page and the SDK by routes. */
async function context(origin = ORIGIN) {
  const ctx = await browser.newContext();
  ctx.origin = origin;
  await ctx.route(origin + '/**', async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path.startsWith('/sdk/')) {
      const body = await readFile(new URL(path.slice(5), src), 'utf8').catch(() => null);
      return route.fulfill(body == null ? { status: 404 } : { body, contentType: 'text/javascript' });
    }
    return route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><script type="module">
        import { createClient } from '/sdk/index.js';
        window.doska = createClient(${JSON.stringify(d.url)}, ${JSON.stringify(d.anonKey)}, { offline: true });
        window.events = [];
        window.doska.auth.onAuthStateChange((e) => window.events.push(e));
        window.ready = true;
      </script>`,
    });
  });
  return ctx;
}

async function open(ctx) {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(ctx.origin + '/app.html');
  await page.waitForFunction(() => window.ready);
  page.errors = errors;
  return page;
}

test('two tabs share one session; signing out in one signs out the other', async () => {
  const ctx = await context();
  const [t1, t2] = [await open(ctx), await open(ctx)];
  const email = `b${Date.now()}@example.com`;
  const err = await t1.evaluate((email) => window.doska.auth.signUp({ email, password: 'password-123' }).then((r) => r.error), email);
  assert.equal(err, null);
  await t2.waitForFunction((email) => window.doska.auth.currentSession?.user?.email === email, email);
  assert.ok(await t2.evaluate(() => window.events.includes('SIGNED_IN')));
  // The second tab calls the API as the user.
  const who = await t2.evaluate(() => window.doska.auth.getUser().then((r) => r.data.user?.email));
  assert.equal(who, email);
  // A page opened now starts signed in.
  const t3 = await open(ctx);
  assert.equal(await t3.evaluate(() => window.doska.auth.currentSession?.user?.email), email);
  await t1.evaluate(() => window.doska.auth.signOut());
  await t2.waitForFunction(() => window.doska.auth.currentSession === null && window.events.includes('SIGNED_OUT'));
  await t3.waitForFunction(() => window.doska.auth.currentSession === null);
  for (const t of [t1, t2, t3]) assert.deepEqual(t.errors, []);
  await ctx.close();
});

test('localStore changes cross tabs at once (origin tab), and reach another device', async () => {
  const ctx = await context();
  const [t1, t2] = [await open(ctx), await open(ctx)];
  const email = `l${Date.now()}@example.com`;
  await t1.evaluate((email) => window.doska.auth.signUp({ email, password: 'password-123' }), email);
  await t2.waitForFunction(() => window.doska.auth.currentSession);
  const openStore = () => window.doska.localStore('prefs').then((s) => {
    window.prefs = s;
    window.changes = [];
    s.subscribe((e) => window.changes.push(e));
  });
  await t1.evaluate(openStore);
  await t2.evaluate(openStore);
  await t1.evaluate(() => window.prefs.setItem('theme', 'dark'));
  await t2.waitForFunction(() => window.prefs.getItem('theme') === 'dark');
  assert.deepEqual(await t2.evaluate(() => window.changes), [{ key: 'theme', oldValue: null, newValue: 'dark', origin: 'tab' }]);
  await t1.evaluate(() => window.prefs.flush());
  // Another device (another browser context = other storage) signed in as the same user.
  const other = await context();
  const t3 = await open(other);
  await t3.evaluate((email) => window.doska.auth.signInWithPassword({ email, password: 'password-123' }), email);
  await t3.evaluate(openStore);
  assert.equal(await t3.evaluate(() => window.prefs.getItem('theme')), 'dark');
  await t3.evaluate(() => { window.prefs.setItem('lang', 'ru'); return window.prefs.flush(); });
  await t1.waitForFunction(() => window.prefs.getItem('lang') === 'ru');
  await t2.waitForFunction(() => window.prefs.getItem('lang') === 'ru');
  for (const t of [t1, t2, t3]) assert.deepEqual(t.errors, []);
  await ctx.close();
  await other.close();
});

test('the offline queue survives a reload while offline and flushes once online', async () => {
  const ctx = await context();
  const t1 = await open(ctx);
  const email = `q${Date.now()}@example.com`;
  await t1.evaluate((email) => window.doska.auth.signUp({ email, password: 'password-123' }), email);
  await ctx.setOffline(true);
  const r = await t1.evaluate(async () => [
    await window.doska.from('items').insert({ name: 'one' }),
    await window.doska.from('items').insert({ name: 'two' }),
  ]);
  assert.deepEqual(r.map((x) => x.queued), [true, true]);
  assert.equal(await t1.evaluate(() => window.doska.offline.pending()), 2);
  await t1.reload();
  await t1.waitForFunction(() => window.ready);
  assert.equal(await t1.evaluate(() => window.doska.offline.pending()), 2, 'the queue is still there after the reload');
  assert.equal(await t1.evaluate(() => navigator.onLine), false);
  // A second tab hears the same `online` event: the Web Lock lets one of them send the queue, so
  // nothing goes twice (each write would otherwise make a second row).
  const t2 = await open(ctx);
  assert.equal(await t2.evaluate(() => typeof navigator.locks?.request), 'function');
  assert.equal(await t2.evaluate(() => window.doska.offline.pending()), 2);
  await ctx.setOffline(false);
  // The browser's `online` event flushes it.
  await t1.waitForFunction(() => window.doska.offline.pending() === 0);
  await t2.waitForFunction(() => window.doska.offline.pending() === 0 && window.doska.offline.status === 'online');
  const names = await t1.evaluate(() => window.doska.from('items').select('name').order('id').then((r) => r.data.map((x) => x.name)));
  assert.deepEqual(names, ['one', 'two']);
  assert.deepEqual(t1.errors, []);
  await ctx.close();
});

test('realtime on the browser\'s own WebSocket: broadcast (binary frames) and presence between tabs', async () => {
  const ctx = await context();
  const [t1, t2] = [await open(ctx), await open(ctx)];
  const join = (key) => new Promise((resolve) => {
    window.seen = [];
    window.room = window.doska.channel('room', { config: { presence: { key } } })
      .on('broadcast', { event: 'hi' }, (m) => window.seen.push(m.payload))
      .on('presence', { event: 'sync' }, () => {})
      .subscribe((s) => s === 'SUBSCRIBED' && resolve(s));
  });
  assert.equal(await t1.evaluate(join, 'one'), 'SUBSCRIBED');
  assert.equal(await t2.evaluate(join, 'two'), 'SUBSCRIBED');
  await t1.evaluate(() => window.room.track({ page: 1 }));
  await t2.waitForFunction(() => window.room.presenceState().one?.[0]?.page === 1);
  assert.equal(await t1.evaluate(() => window.room.send({ type: 'broadcast', event: 'hi', payload: { n: 1 } })), 'ok');
  await t2.waitForFunction(() => window.seen.length === 1);
  assert.deepEqual(await t2.evaluate(() => window.seen), [{ n: 1 }]);
  for (const t of [t1, t2]) assert.deepEqual(t.errors, []);
  await ctx.close();
});

test('on plain http (no secure context: no Web Locks, no randomUUID) writes still queue and flush', async () => {
  const ctx = await context('http://school.test');
  const t = await open(ctx);
  assert.equal(await t.evaluate(() => window.isSecureContext), false);
  await t.evaluate(() => window.doska.auth.signUp({ email: `p${Date.now()}@example.com`, password: 'password-123' }));
  await ctx.setOffline(true);
  assert.equal(await t.evaluate(() => window.doska.from('items').insert({ name: 'plain' }).then((r) => r.queued)), true);
  await ctx.setOffline(false);
  await t.waitForFunction(() => window.doska.offline.pending() === 0);
  assert.deepEqual(await t.evaluate(() => window.doska.from('items').select('name').then((r) => r.data)), [{ name: 'plain' }]);
  assert.deepEqual(t.errors, []);
  await ctx.close();
});
