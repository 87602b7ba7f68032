// One measurement in a fresh process, for bench/client-js/run.mjs: `node worker.mjs <lib> <mode>
// <url> <key> <n> [serviceKey]` with lib `doska` (client-js/dist/index.js) or `supabase`
// (supabase-js 2.109 from server/tests/js), mode `rest` (client CPU per REST call) or `realtime`
// (postgres_changes events per second received by one client). Prints one JSON line.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join, dirname } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const mod = (p) => import(pathToFileURL(join(root, p)).href);
const [lib, mode, url, key, nArg, serviceKey] = process.argv.slice(2);
const n = Number(nArg);
const { default: WebSocket } = await mod('server/tests/js/node_modules/ws/wrapper.mjs');
const make = async (k) => {
  if (lib === 'doska') {
    const { createClient } = await mod('client-js/dist/index.js');
    return createClient(url, k, { WebSocket, auth: { persistSession: false } });
  }
  const { createClient } = await mod('server/tests/js/node_modules/@supabase/supabase-js/dist/index.mjs');
  return createClient(url, k, { realtime: { transport: WebSocket }, auth: { persistSession: false, autoRefreshToken: false } });
};
const db = await make(key);
const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000; // ms
};

if (mode === 'rest') {
  const call = (i) => db.from('items').select('id, name').eq('id', (i % 10000) + 1);
  for (let i = 0; i < 300; i++) await call(i); // warm up JIT, sockets
  const c0 = cpu(), t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const { data, error } = await call(i);
    if (error || data.length !== 1) throw new Error(JSON.stringify(error));
  }
  const ms = performance.now() - t0;
  console.log(JSON.stringify({ cpuUsPerCall: ((cpu() - c0) * 1000) / n, wallUsPerCall: (ms * 1000) / n }));
  process.exit(0);
}

if (mode === 'realtime') {
  const service = await make(serviceKey);
  let got = 0, first = 0, c0 = 0;
  const done = new Promise((resolve) => {
    db.channel('bench')
      .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'events' }, () => {
        if (got++ === 0) {
          first = performance.now();
          c0 = cpu();
        }
        if (got === n) resolve(undefined);
      })
      .subscribe(async (status) => {
        if (status !== 'SUBSCRIBED') return;
        const { error } = await service.rpc('bench_insert', { n });
        if (error) throw new Error(JSON.stringify(error));
      });
  });
  await done;
  const ms = performance.now() - first;
  // From the first change received to the last: the rate this client takes them in.
  console.log(JSON.stringify({ eventsPerSec: ((n - 1) * 1000) / ms, cpuUsPerEvent: ((cpu() - c0) * 1000) / (n - 1) }));
  process.exit(0);
}
throw new Error(`unknown mode ${mode}`);
