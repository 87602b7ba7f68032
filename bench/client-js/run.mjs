#!/usr/bin/env node
// bench/client-js: @doska/client beside @supabase/supabase-js 2.109 in one run (not a test).
//   (a) bytes of the whole SDK minified + gzipped (target ≤ 15 KB; supabase-js's UMD bundle);
//   (b) cold `import` time in Node, a fresh process each time, median (target ≤ 0.5×);
//   (c) client CPU per REST call against a live doska (a one-row select by key), median of runs
//       in fresh processes (target ≤ 1×);
//   (d) realtime postgres_changes events per second handled by one client, from one statement
//       inserting N rows (target ≥ 1×).
// Usage: (cd client-js && npm run build) && DOSKA_BIN=target/release/doska node bench/client-js/run.mjs
//        [--runs N] [--calls N] [--events N]. Needs server/tests/js's node_modules (npm ci there).
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { startDoska } from '../../server/tests/js/harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '../..');
const { values: opt } = parseArgs({ options: { runs: { type: 'string', default: '5' }, calls: { type: 'string', default: '3000' }, events: { type: 'string', default: '20000' } } });
const runs = Number(opt.runs);
const run = promisify(execFile);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const libs = {
  doska: { entry: 'client-js/dist/index.js', min: 'client-js/dist/doska.min.js' },
  supabase: { entry: 'server/tests/js/node_modules/@supabase/supabase-js/dist/index.mjs', min: 'server/tests/js/node_modules/@supabase/supabase-js/dist/umd/supabase.js' },
};
const rows = [];
const row = (name, d, s, target, pass) => rows.push({ name, doska: d, supabase: s, target, result: pass ? 'PASS' : 'FAIL' });

// (a) bytes
const gz = async (p) => gzipSync(await readFile(join(root, p)), { level: 9 }).length;
const [bd, bs] = [await gz(libs.doska.min), await gz(libs.supabase.min)];
row('(a) whole SDK, minified + gzipped, bytes', bd, bs, '≤ 15360', bd <= 15360);

// (b) cold import, alternating so neither gets a warmer disk cache
const importMs = async (p) => {
  const code = `const t = performance.now(); await import(${JSON.stringify(pathToFileURL(join(root, p)).href)}); process.stdout.write(String(performance.now() - t));`;
  return Number((await run(process.execPath, ['--input-type=module', '-e', code])).stdout);
};
const imp = { doska: [], supabase: [] };
for (let i = 0; i < runs * 3; i++) for (const k of i % 2 ? ['supabase', 'doska'] : ['doska', 'supabase']) imp[k].push(await importMs(libs[k].entry));
const [id, is] = [median(imp.doska), median(imp.supabase)];
row('(b) cold import, ms (median)', id.toFixed(1), is.toFixed(1), '≤ 0.5×', id <= 0.5 * is);

// (c), (d) against a live doska
const doska = await startDoska({
  migrations: {
    '0001_bench.sql': `
create table items (id int primary key, name text not null);
insert into items select g, 'item ' || g from generate_series(1, 10000) g;
alter table items enable row level security;
create policy read_all on items for select to anon, authenticated using (true);
create table events (id bigint generated always as identity primary key, body text not null);
alter table events enable row level security;
create policy read_all on events for select to anon, authenticated using (true);
alter publication supabase_realtime add table events;
create function bench_insert(n int) returns void language sql as $$ insert into events(body) select 'event ' || g from generate_series(1, n) g $$;
revoke execute on function bench_insert(int) from public, anon, authenticated;
grant execute on function bench_insert(int) to service_role;
`,
  },
});
try {
  const worker = async (lib, mode, n) =>
    JSON.parse((await run(process.execPath, [join(here, 'worker.mjs'), lib, mode, doska.url, doska.anonKey, String(n), doska.serviceKey], { maxBuffer: 1 << 20 })).stdout);
  const rest = { doska: [], supabase: [] };
  for (let i = 0; i < runs; i++) for (const k of i % 2 ? ['supabase', 'doska'] : ['doska', 'supabase']) rest[k].push((await worker(k, 'rest', Number(opt.calls))).cpuUsPerCall);
  const [cd, cs] = [median(rest.doska), median(rest.supabase)];
  row('(c) client CPU per REST call, µs (median)', cd.toFixed(1), cs.toFixed(1), '≤ 1×', cd <= cs);
  const rt = { doska: [], supabase: [] };
  for (let i = 0; i < Math.min(runs, 3); i++) for (const k of i % 2 ? ['supabase', 'doska'] : ['doska', 'supabase']) rt[k].push(await worker(k, 'realtime', Number(opt.events)));
  const [ed, es] = [median(rt.doska.map((r) => r.eventsPerSec)), median(rt.supabase.map((r) => r.eventsPerSec))];
  row('(d) realtime events/s by one client (median)', ed.toFixed(0), es.toFixed(0), '≥ 1×', ed >= es);
  const [ud, us] = [median(rt.doska.map((r) => r.cpuUsPerEvent)), median(rt.supabase.map((r) => r.cpuUsPerEvent))];
  rows.push({ name: '    client CPU per event, µs (median; not a target)', doska: ud.toFixed(1), supabase: us.toFixed(1), target: '', result: '' });
} finally {
  await doska.stop();
}

console.log('| case | @doska/client | supabase-js 2.109 | ratio | target | result |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) {
  const ratio = Number(r.supabase) ? (Number(r.doska) / Number(r.supabase)).toFixed(2) : '';
  console.log(`| ${r.name} | ${r.doska} | ${r.supabase} | ${ratio} | ${r.target} | ${r.result} |`);
}
