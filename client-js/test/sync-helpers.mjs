// Shared by the sync suites (realtime, offline, localStore, import): a live doska (every doska has
// the localStore table: an internal migration) with the given migrations, clients on `ws`, users,
// and polling.
import WebSocket from 'ws';
import { startDoska } from '../../server/tests/js/harness.mjs';
import { createClient, memoryStorage } from '../src/index.js';

export { WebSocket, createClient, memoryStorage };

const probe = `create table public.sync_probe (id serial primary key);
alter publication supabase_realtime add table public.sync_probe;`;

/**
 * doska with `migrations` ({'0002_x.sql': sql}), once its realtime
 * pipeline runs: the replication slot is made just after doska starts listening, and a change
 * committed before it exists is never streamed. So write until a change arrives.
 */
export async function start(migrations = {}, args = []) {
  const d = await startDoska({ migrations: { '0000_probe.sql': probe, ...migrations }, args });
  const service = createClient(d.url, d.serviceKey, { WebSocket });
  let seen = false;
  const ch = service.channel('probe').on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'sync_probe' }, () => (seen = true));
  const { status, err } = await subscribed(ch);
  if (status !== 'SUBSCRIBED') throw new Error('probe channel: ' + (err?.message ?? status));
  await until(async () => {
    if (!seen) await service.from('sync_probe').insert({});
    return seen || new Promise((r) => setTimeout(() => r(seen), 200));
  }, 'realtime to stream', 60000);
  await service.removeAllChannels();
  const stop = d.stop;
  d.stop = async () => {
    for (const c of made) if (c.url === d.url) {
      if (c.getChannels().length) c.realtime.disconnect();
      c.tabs.close();
      made.delete(c);
    }
    await stop();
  };
  return d;
}

/** Every client the helpers made, closed when their doska stops (a socket reconnects forever). */
const made = new Set();

/** A client on `ws`, with fast reconnects. */
export const client = (d, opts = {}) => {
  const c = createClient(d.url, d.anonKey, { WebSocket, realtime: { reconnectAfterMs: () => 200 }, ...opts });
  made.add(c);
  return c;
};

let n = 0;
/** A signed-up, signed-in user's client. */
export async function user(d, opts = {}) {
  const c = client(d, opts);
  const email = `u${process.pid}-${++n}-${Date.now()}@example.com`;
  const { data, error } = await c.auth.signUp({ email, password: 'password-123' });
  if (error || !data.session) throw new Error('sign-up failed: ' + JSON.stringify(error));
  c.email = email;
  return c;
}

/** Resolves with `fn()` once it is truthy; fails after `ms` with `what`. */
export async function until(fn, what, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The status a channel reaches next. */
export const subscribed = (ch) =>
  new Promise((resolve) => ch.subscribe((status, err) => resolve({ status, err })));

/**
 * A WebSocket class the test can cut: `drop()` kills the live socket and refuses new ones (they
 * dial a closed port) until `restore()`. `sent` records every frame the client sent.
 */
export function cuttable() {
  const socks = [], sent = [];
  let down = false;
  class W extends WebSocket {
    constructor(url, ...rest) {
      super(down ? 'ws://127.0.0.1:9/' : url, ...rest);
      socks.push(this);
    }
    send(data, ...rest) {
      sent.push(data);
      return super.send(data, ...rest);
    }
  }
  return {
    WebSocket: W, sent,
    drop() { down = true; for (const s of socks) s.terminate(); },
    restore() { down = false; },
  };
}
