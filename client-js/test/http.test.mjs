// The pure helpers of src/http.js: ids where `crypto.randomUUID` is missing (a page on plain http
// is not a secure context), path encoding, query strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodePath, query, uuid } from '../src/http.js';

test('uuid: version-4 UUIDs, also without crypto.randomUUID (insecure context)', () => {
  const shape = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
  const original = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(crypto), 'randomUUID');
  assert.match(uuid(), shape);
  Object.defineProperty(crypto, 'randomUUID', { value: undefined, configurable: true });
  try {
    const ids = new Set(Array.from({ length: 2000 }, uuid));
    assert.equal(ids.size, 2000);
    for (const id of ids) assert.match(id, shape);
  } finally {
    delete crypto.randomUUID;
  }
  assert.ok(original);
  assert.match(crypto.randomUUID(), shape);
});

test('encodePath keeps slashes and encodes each part; query drops missing values', () => {
  assert.equal(encodePath('docs/a b/ä?#.txt'), 'docs/a%20b/%C3%A4%3F%23.txt');
  assert.equal(query({ redirect_to: 'http://x/?a=1', none: undefined, nul: null }), '?redirect_to=http%3A%2F%2Fx%2F%3Fa%3D1');
  assert.equal(query({ a: undefined }), '');
});
