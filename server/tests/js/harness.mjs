// Starts a live doska for a JavaScript suite: the built binary on a random port, a temp data dir (its
// own embedded PostgreSQL), the given migrations and policies; waits until it listens and hands out
// the URL and the project keys. Every JS suite uses it; nothing here mocks doska or PostgreSQL.
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '../../..');
export const doskaBin = process.env.DOSKA_BIN ?? join(repoRoot, 'target/debug/doska');

// A folder of files from `{ 'name.sql': 'contents' }`, or the path given as a string.
async function folder(root, name, spec) {
  if (typeof spec === 'string') return spec;
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  for (const [file, text] of Object.entries(spec ?? {})) await writeFile(join(dir, file), text);
  return dir;
}

/**
 * @param {{migrations?: string|Record<string,string>, policies?: string|Record<string,string>,
 *          env?: Record<string,string>, args?: string[]}} options
 */
export async function startDoska({ migrations, policies, env = {}, args = [] } = {}) {
  const root = await mkdtemp(join(tmpdir(), 'doska-js-'));
  // mkdtemp makes it 0700; the `postgres` user (doska runs PostgreSQL as it under root) must pass
  // through, or the cluster is relocated outside the folder and outlives the test.
  await chmod(root, 0o755);
  const dataDir = join(root, 'data');
  const common = [
    '--data-dir', dataDir,
    '--migrations', await folder(root, 'migrations', migrations),
    '--policies', await folder(root, 'policies', policies),
  ];
  const child = spawn(doskaBin, ['serve', '--listen', '127.0.0.1:0', '--log-format', 'json', ...common, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  // With `--s3-listen`, its S3 listener's URL too (logged on its own line, in either order).
  const wantS3 = args.includes('--s3-listen');
  let url;
  let s3Url;
  await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`doska did not start within 60 s:\n${log}`)), 60_000);
    let buffered = '';
    child.stderr.on('data', (chunk) => {
      log += chunk;
      buffered += chunk;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const fields = JSON.parse(line)?.fields;
          url = fields?.url ?? url;
          s3Url = fields?.s3_url ?? s3Url;
          if (url && (s3Url || !wantS3)) { clearTimeout(timer); resolveUrl(); }
        } catch { /* not a JSON line */ }
      }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`doska exited (${code}) before listening:\n${log}`)); });
  });
  const { stdout } = await promisify(execFile)(doskaBin, ['keys', ...common], { env: { ...process.env, ...env } });
  const keys = JSON.parse(stdout);
  return {
    url,
    s3Url,
    anonKey: keys.anon_key,
    serviceKey: keys.service_role_key,
    dataDir,
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Subscribes and resolves once SUBSCRIBED (rejects on error or timeout). */
export function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(channel);
      else if (status !== 'CLOSED') reject(err ?? new Error(status));
    });
  });
}

/** Collects events; `next(pred)` waits for the first not yet taken that matches. */
export function collector() {
  const seen = [];
  const waiters = [];
  return {
    seen,
    push(e) {
      seen.push(e);
      for (const w of [...waiters]) {
        const i = seen.findIndex(w.pred);
        if (i >= 0) {
          waiters.splice(waiters.indexOf(w), 1);
          clearTimeout(w.timer);
          w.resolve(seen.splice(i, 1)[0]);
        }
      }
    },
    next(pred = () => true, ms = 10_000) {
      const i = seen.findIndex(pred);
      if (i >= 0) return Promise.resolve(seen.splice(i, 1)[0]);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve, timer: setTimeout(() => reject(new Error(`no matching event within ${ms} ms; seen: ${JSON.stringify(seen).slice(0, 2000)}`)), ms) };
        waiters.push(w);
      });
    },
  };
}
