// The build's three files (run `npm run build` first; `npm test` does): dist/index.js and
// dist/doska.min.js load as ESM and export the whole API, dist/index.d.ts is the typed API, and the
// whole SDK minified stays within its budget of 15 KB gzipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

const BUDGET = 15 * 1024;
const dist = new URL('../dist/', import.meta.url);
const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));

test('package.json points at the built files; no runtime dependencies', () => {
  assert.equal(pkg.name, '@doska/client');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './dist/index.d.ts', import: './dist/index.js' });
  assert.equal(pkg.types, './dist/index.d.ts');
  assert.equal(pkg.dependencies, undefined);
  for (const v of Object.values(pkg.devDependencies)) assert.match(v, /^\d+\.\d+\.\d+$/, 'dev tools are pinned exactly');
});

for (const file of ['index.js', 'doska.min.js']) {
  test(`dist/${file} loads as ESM and exports the API`, async () => {
    const m = await import(new URL(file, dist));
    for (const name of ['createClient', 'DoskaClient', 'memoryStorage', 'importLocalStorage']) assert.equal(typeof m[name], 'function', name);
    const c = m.createClient('http://127.0.0.1:9/', 'key', { storage: m.memoryStorage() });
    assert.equal(c.url, 'http://127.0.0.1:9');
    for (const name of ['from', 'rpc', 'schema', 'channel', 'localStore', 'importLocalStorage']) assert.equal(typeof c[name], 'function', name);
    // The minified build behaves like the source: an unreachable server is a NetworkError value.
    const r = await c.from('t').select();
    assert.deepEqual([r.data, r.status, r.error.name], [null, 0, 'NetworkError']);
  });
}

test('dist/index.d.ts declares the public API', async () => {
  const dts = await readFile(new URL('index.d.ts', dist), 'utf8');
  for (const name of ['createClient', 'DoskaClient', 'PostgrestError', 'Session', 'LocalStore', 'OfflineQueue', 'RealtimeChannel']) {
    assert.match(dts, new RegExp(`\\b${name}\\b`), name);
  }
});

test(`dist/doska.min.js, the whole SDK, is at most ${BUDGET / 1024} KB gzipped`, async () => {
  const min = await readFile(new URL('doska.min.js', dist));
  const gz = gzipSync(min, { level: 9 }).length;
  console.log(`# doska.min.js: ${min.length} bytes minified, ${gz} bytes gzipped (budget ${BUDGET})`);
  assert.ok(gz <= BUDGET, `${gz} bytes gzipped is over the budget of ${BUDGET}`);
});
