// The foundation seen from a browser-like client: health, CORS preflight as supabase-js triggers it,
// exposed headers, request ids, and the project keys doska hands out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDoska } from './harness.mjs';

let doska;
before(async () => { doska = await startDoska(); });
after(async () => { await doska?.stop(); });

test('health answers ok with a request id', async () => {
  const res = await fetch(`${doska.url}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { status: 'ok', database: 'ok' });
  assert.ok(res.headers.get('x-request-id'));
});

test('a CORS preflight from a browser origin succeeds and Content-Range is exposed', async () => {
  const origin = 'http://localhost:5173';
  const pre = await fetch(`${doska.url}/rest/v1/anything`, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'GET',
      'access-control-request-headers': 'apikey,authorization,x-client-info,accept-profile,prefer',
    },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), origin);
  assert.match(pre.headers.get('access-control-allow-headers'), /x-client-info/);
  const res = await fetch(`${doska.url}/health`, { headers: { origin } });
  assert.match(res.headers.get('access-control-expose-headers'), /Content-Range/);
});

test('keys are JWTs with the right roles and no aud', () => {
  for (const [key, role] of [[doska.anonKey, 'anon'], [doska.serviceKey, 'service_role']]) {
    const claims = JSON.parse(Buffer.from(key.split('.')[1], 'base64url').toString());
    assert.equal(claims.role, role);
    assert.equal(claims.aud, undefined);
  }
});

test('metrics are Prometheus text', async () => {
  const res = await fetch(`${doska.url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/plain/);
  assert.match(await res.text(), /doska_http_requests_total\{door="health",status="200"\} \d+/);
});
