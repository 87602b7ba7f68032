// importLocalStorage against a live doska: tables upserted in batches on their conflict key, values
// copied into a localStore, a second run duplicating nothing, and bad keys reported without
// stopping the others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { start, user, memoryStorage } from './sync-helpers.mjs';

const schema = `
create table public.students (id bigserial primary key, owner uuid not null default auth.uid(), legacy_id text not null, name text not null, unique (owner, legacy_id));
alter table public.students enable row level security;
create policy own on public.students for all to authenticated using (owner = auth.uid()) with check (owner = auth.uid());
`;

let d;
before(async () => { d = await start({ '0002_students.sql': schema }); });
after(() => d?.stop());

test('imports tables and stores, idempotently, with bad keys reported', async () => {
  const a = await user(d);
  const source = memoryStorage();
  const students = Array.from({ length: 7 }, (_, i) => ({ id: 's' + i, fullName: 'Student ' + i }));
  source.setItem('tu_students', JSON.stringify(students));
  source.setItem('tu_theme', 'dark');
  source.setItem('tu_broken', '{not json');
  source.setItem('tu_wrong_table', '[{"x": 1}]');
  const plan = {
    tu_students: { table: 'students', rows: (list) => list.map((s) => ({ legacy_id: s.id, name: s.fullName })), onConflict: 'owner,legacy_id', batch: 3 },
    tu_theme: { store: 'prefs' },
    tu_broken: { table: 'students' },
    tu_wrong_table: { table: 'no_such_table' },
    tu_missing: { store: 'prefs' },
  };
  const progress = [];
  const first = await a.importLocalStorage(plan, { source, onProgress: (p) => progress.push(p) });
  assert.deepEqual(first.imported, { tu_students: 7, tu_theme: 1 });
  assert.deepEqual(first.skipped, ['tu_missing']);
  assert.deepEqual(first.errors.map((e) => e.key), ['tu_broken', 'tu_wrong_table']);
  assert.match(first.errors[0].message, /JSON/);
  assert.ok(first.errors[1].message.length > 0);
  assert.deepEqual(progress.map((p) => [p.key, p.done, p.total]), Object.keys(plan).map((k, i) => [k, i + 1, 5]));
  // The second run changes nothing and duplicates nothing.
  const second = await a.importLocalStorage(plan, { source });
  assert.deepEqual(second.imported, first.imported);
  const { data, count } = await a.from('students').select('legacy_id,name', { count: 'exact' }).order('legacy_id');
  assert.equal(count, 7);
  assert.deepEqual(data[6], { legacy_id: 's6', name: 'Student 6' });
  const prefs = await a.localStore('prefs');
  assert.equal(prefs.getItem('tu_theme'), 'dark');
  assert.equal(prefs.length, 1);
  // Node has no localStorage: without a source every key says so.
  const none = await a.importLocalStorage({ k: { store: 'prefs' } });
  assert.deepEqual(none.errors, [{ key: 'k', message: 'no source to import from: pass {source}' }]);
  await a.removeAllChannels();
});
