// CORS on doska's S3 listener in headless Chromium (playwright-core, Debian's chromium): a page on
// another origin uploads with a presigned PUT URL — the browser's preflight is answered from the
// bucket's CORS rules, the PUT's answer carries them (the page reads the exposed ETag) — and a page
// on an origin the rules do not name is stopped by the browser before its PUT is sent. The bucket
// and its rules are made over S3 itself, with SigV4 presigned requests signed here (node:crypto).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';
import { live } from './live.mjs';

const KEY = 'DOSKAJSCORSKEY';
const SECRET = 'doska-js-cors-secret-access-key';
const BUCKET = 'uploads';

let doska, browser, site, s3url, allowed, denied;

const hmac = (key, text) => createHmac('sha256', key).update(text).digest();
const enc = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());

/** A SigV4 presigned URL (UNSIGNED-PAYLOAD, as browsers' uploads are) for `method` on `path`. */
function presign(method, path, query = {}) {
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const date = amzDate.slice(0, 8);
  const scope = `${date}/us-east-1/s3/aws4_request`;
  const q = {
    ...query,
    'X-Amz-Algorithm': 'AWS4-HMAC-SHA256',
    'X-Amz-Credential': `${KEY}/${scope}`,
    'X-Amz-Date': amzDate,
    'X-Amz-Expires': '300',
    'X-Amz-SignedHeaders': 'host',
  };
  const canonicalQuery = Object.keys(q).sort().map((k) => `${enc(k)}=${enc(q[k])}`).join('&');
  const canonicalPath = path.split('/').map(enc).join('/');
  const host = new URL(s3url).host;
  const canonical = [method, canonicalPath, canonicalQuery, `host:${host}\n`, 'host', 'UNSIGNED-PAYLOAD'].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
  let key = hmac('AWS4' + SECRET, date);
  for (const part of ['us-east-1', 's3', 'aws4_request']) key = hmac(key, part);
  return `${s3url}${canonicalPath}?${canonicalQuery}&X-Amz-Signature=${hmac(key, toSign).toString('hex')}`;
}

before(async () => {
  site = createServer((req, res) => (res.writeHead(200, { 'content-type': 'text/html' }), res.end('<!doctype html><p>app</p>')));
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  // One server, two origins: the rules name `localhost`, not `127.0.0.1`.
  allowed = `http://localhost:${site.address().port}`;
  denied = `http://127.0.0.1:${site.address().port}`;
  doska = await live({ args: ['--s3-listen', '127.0.0.1:0', '--s3-access-key-id', KEY, '--s3-secret-access-key', SECRET] });
  s3url = doska.log().split('\n').map((l) => { try { return JSON.parse(l)?.fields?.s3_url; } catch { return undefined; } }).find(Boolean);
  assert.ok(s3url, 'the S3 listener logged its url');
  assert.equal((await fetch(presign('PUT', `/${BUCKET}`), { method: 'PUT' })).status, 200);
  const rules = `<CORSConfiguration><CORSRule><AllowedOrigin>${allowed}</AllowedOrigin>
    <AllowedMethod>PUT</AllowedMethod><AllowedMethod>GET</AllowedMethod><AllowedHeader>*</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>60</MaxAgeSeconds></CORSRule></CORSConfiguration>`;
  const put = await fetch(presign('PUT', `/${BUCKET}`, { cors: '' }), { method: 'PUT', body: rules });
  assert.equal(put.status, 200, await put.text());
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

/** A page on `origin` PUTs `text` to `url`; resolves what the page could see. */
async function upload(origin, url, text) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  await page.goto(origin + '/app.html');
  const seen = await page.evaluate(async ([u, body]) => {
    try {
      const r = await fetch(u, { method: 'PUT', body: new Blob([body]), headers: { 'content-type': 'text/plain', 'x-amz-meta-by': 'page' } });
      return { status: r.status, etag: r.headers.get('etag') };
    } catch (e) {
      return { error: String(e) };
    }
  }, [url, text]);
  await ctx.close();
  return seen;
}

test('a page on an allowed origin uploads with a presigned URL and reads the ETag', async () => {
  const seen = await upload(allowed, presign('PUT', `/${BUCKET}/avatar.txt`), 'from the page');
  assert.equal(seen.status, 200, JSON.stringify(seen));
  assert.equal(seen.etag, `"${createHash('md5').update('from the page').digest('hex')}"`);
  const got = await fetch(presign('GET', `/${BUCKET}/avatar.txt`));
  assert.equal(await got.text(), 'from the page');
  assert.equal(got.headers.get('content-type'), 'text/plain');
});

test('a page on an origin the rules do not name is stopped before its PUT is sent', async () => {
  const seen = await upload(denied, presign('PUT', `/${BUCKET}/denied.txt`), 'should not land');
  assert.match(seen.error ?? '', /Failed to fetch/, JSON.stringify(seen));
  assert.equal((await fetch(presign('GET', `/${BUCKET}/denied.txt`))).status, 404);
});
