// What the core's suites share: a live doska started by the JS harness of server/tests/js (its own
// embedded PostgreSQL, a random port) with a known JWT secret and no auth rate limits, a signer for
// hand-made tokens, clients with their own in-memory storage, a recording fetch, and plain HTTP
// servers for the bad-answer cases (an HTML page where doska's JSON was due, a body cut short).
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { startDoska } from '../../server/tests/js/harness.mjs';
import { createClient, memoryStorage } from '../src/index.js';

export const SECRET = 'client-js-core-secret-0123456789abcdef';

/** @param {Parameters<typeof startDoska>[0]} [o] */
export const live = (o = {}) =>
  startDoska({ ...o, env: { DOSKA_JWT_SECRET: SECRET, ...o.env }, args: ['--rate-limits', 'off', ...(o.args ?? [])] });

/** An HS256 JWT with these claims, signed with the test secret. */
export function sign(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc(claims)}`;
  return `${body}.${createHmac('sha256', SECRET).update(body).digest('base64url')}`;
}

/** A client with its own storage (a device of its own) unless one is given. */
export const client = (doska, options = {}, key = doska.anonKey) =>
  createClient(doska.url, key, { storage: memoryStorage(), ...options });

/** SQL for `last_mail(addr)`: the body of the latest auth mail to `addr`, callable by service_role only. */
export const lastMailSql = `
create function public.last_mail(addr text) returns text language sql security definer set search_path = ''
  as $$ select body from auth.mail_outbox where recipient = addr order by id desc limit 1 $$;
revoke execute on function public.last_mail(text) from public, anon, authenticated;
grant execute on function public.last_mail(text) to service_role;
`;

let n = 0;
/** A fresh e-mail address per call. */
export const email = () => `u${process.pid}-${Date.now()}-${n++}@example.com`;

/** A fetch that fails as fetch does with no network. */
export const offlineFetch = async () => {
  throw new TypeError('fetch failed', { cause: new Error('connect ECONNREFUSED 127.0.0.1:9') });
};

/** A plain HTTP server on a random port running `handler`. Resolves `{url, close}`. */
async function serve(handler) {
  const server = createServer((req, res) => (req.resume(), handler(res)));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = /** @type {any} */ (server.address());
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(r)) };
}

/** A server that answers every request with `status` and an HTML page (a wrong URL, a proxy's error page). */
export const htmlServer = (status = 200) =>
  serve((res) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>');
  });

/** A server that starts a JSON answer and drops the connection half-way through its body. */
export const cutServer = () =>
  serve((res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
    res.write('[{"id":1,');
    setTimeout(() => res.socket.destroy(), 10);
  });

/** A fetch that records each request it passes on: `{seen, fetch}`. */
export const recording = () => {
  const seen = [];
  return { seen, fetch: (url, init) => (seen.push({ url: String(url), ...init }), globalThis.fetch(url, init)) };
};
