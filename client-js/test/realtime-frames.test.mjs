// Realtime's pure parts, no server: change positions (resume order, duplicates dropped) and the
// binary broadcast frame realtime-js's serializer decodes (kind 4), plus frames that do not parse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Realtime } from '../src/realtime.js';

const channel = () => {
  const rt = new Realtime({ url: 'http://x', key: 'k', options: {} });
  const ch = rt.channel('x');
  return { rt, ch };
};

test('positions: a change at or below the last delivered one is dropped; one that does not parse is kept', () => {
  const { ch } = channel();
  const got = [];
  ch.on('postgres_changes', {}, (p) => got.push(p.position));
  ch.b[0].id = 1;
  const table = [
    ['0/10:0', true], ['0/10:1', true], ['0/F:5', false], ['0/10:1', false], ['0/A0:0', true],
    ['1/0:0', true], ['0/FFFFFFFF:9', false], ['weird', true], ['1/0:1', true],
  ];
  for (const [position] of table) ch.recv({ join_ref: null, event: 'postgres_changes', payload: { ids: [1], data: { position } } });
  assert.deepEqual(got, table.filter(([, kept]) => kept).map(([p]) => p));
  assert.equal(ch.since, '1/0:1');
});

test('frames: text and binary broadcasts reach the channel; garbage is ignored', () => {
  const { rt, ch } = channel();
  const seen = [];
  ch.on('broadcast', { event: '*' }, (m) => seen.push(m));
  const enc = new TextEncoder();
  const frame = (topic, event, meta, encoding, payload) => {
    const parts = [topic, event, meta].map((s) => enc.encode(s));
    const body = typeof payload === 'string' ? enc.encode(payload) : payload;
    const out = new Uint8Array(5 + parts.reduce((n, p) => n + p.length, 0) + body.length);
    out.set([4, parts[0].length, parts[1].length, parts[2].length, encoding]);
    let o = 5;
    for (const p of [...parts, body]) { out.set(p, o); o += p.length; }
    return out.buffer;
  };
  rt.recv(frame('realtime:x', 'hi', '', 1, '{"n":1}'));
  rt.recv(frame('realtime:x', 'raw', '{"id":"7"}', 0, new Uint8Array([1, 2, 3])));
  rt.recv(frame('realtime:other', 'hi', '', 1, '{"n":2}'));
  rt.recv(JSON.stringify([null, null, 'realtime:x', 'broadcast', { type: 'broadcast', event: 'text', payload: { n: 3 } }]));
  for (const bad of ['not json', '[1,2', frame('realtime:x', 'hi', '', 1, '{bad'), new ArrayBuffer(0)]) rt.recv(bad);
  assert.equal(seen.length, 3);
  assert.deepEqual(seen[0], { type: 'broadcast', event: 'hi', payload: { n: 1 } });
  assert.equal(seen[1].event, 'raw');
  assert.deepEqual([...new Uint8Array(seen[1].payload)], [1, 2, 3]);
  assert.deepEqual(seen[1].meta, { id: '7' });
  assert.deepEqual(seen[2].payload, { n: 3 });
});
