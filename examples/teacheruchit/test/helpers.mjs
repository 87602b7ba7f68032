// What the browser tests share: a live doska serving the app (the repository's migrations, policies
// and static files), headless Chromium, the operator's steps and small page helpers.
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startDoska, repoRoot, doskaBin } from '../../../server/tests/js/harness.mjs';

export const appDir = join(repoRoot, 'examples/teacheruchit');
export const shotsDir = join(repoRoot, 'docs/teacheruchit');

/**
 * doska with TeacherUchit's migrations and policies, serving the app from the repository as checked
 * out (`--static`), with the SDK and its config at `/sdk/` from the binary itself.
 */
export function startApp() {
  return startDoska({
    migrations: join(repoRoot, 'migrations'),
    policies: join(repoRoot, 'policies'),
    // Password-reset links may lead back to the app on whatever port the test got.
    args: ['--static', appDir, '--redirect-urls', 'http://127.0.0.1:*'],
  });
}

/** Headless Debian Chromium with the flags this machine needs (docs in shared/design.md). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
  });
}

/** Calls doska's REST/auth APIs with the service key, as the operator. */
export async function service(doska, method, path, body) {
  const res = await fetch(`${doska.url}${path}`, {
    method,
    headers: { apikey: doska.serviceKey, Authorization: `Bearer ${doska.serviceKey}`, 'Content-Type': 'application/json', Prefer: 'return=representation' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Rows of a table as the service role (bypasses RLS): what the database really holds. */
export const rows = (doska, query) => service(doska, 'GET', `/rest/v1/${query}`);

/**
 * The operator registers a school and appoints its first admin: `doska school create` against the
 * running doska's data dir (the admin's password through its env var, as the docs advise).
 */
export async function registerSchool(doska, { name, city, adminEmail, adminPassword, adminName }) {
  const { stdout } = await promisify(execFile)(doskaBin, ['school', 'create', '--data-dir', doska.dataDir,
    '--migrations', join(repoRoot, 'migrations'), '--policies', join(repoRoot, 'policies'),
    '--name', name, '--city', city, '--admin-email', adminEmail, '--admin-name', adminName],
  { env: { ...process.env, DOSKA_ADMIN_PASSWORD: adminPassword } });
  return JSON.parse(stdout);
}

/**
 * The newest mail of a kind to an address, as the operator reads it without SMTP: from
 * auth.mail_outbox, with psql on the running doska's socket (<data_dir>/doska.serve says where).
 */
export async function lastMail(doska, recipient, kind) {
  const record = Object.fromEntries((await readFile(join(doska.dataDir, 'doska.serve'), 'utf8'))
    .split('\n').filter(Boolean).map((l) => l.split('=')));
  const sql = `select body from auth.mail_outbox where recipient = '${recipient.replace(/'/g, "''")}' and kind = '${kind}' order by id desc limit 1`;
  const { stdout } = await promisify(execFile)('psql', ['-h', record.socket_dir, '-p', record.port, '-U', 'postgres', '-d', 'postgres', '-Atc', sql]);
  return stdout;
}

/**
 * A page that records what must not happen: console errors and warnings, failed requests, and
 * answers ≥ 400.
 */
export async function openPage(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  if (url) await page.goto(url);
  return { page, problems };
}

export async function signIn(page, email, password) {
  await page.fill('#signin input[name=email]', email);
  await page.fill('#signin input[name=password]', password);
  await page.click('#signin button[type=submit]');
}

export async function shot(page, name, fullPage = true) {
  await mkdir(shotsDir, { recursive: true });
  await page.screenshot({ path: join(shotsDir, `${name}.png`), fullPage });
}
