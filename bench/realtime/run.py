#!/usr/bin/env python3
"""bench/realtime: doska's realtime door under a Rust load client (bench/realtime/loadgen), beside
pg_recvlogical consuming the same change load through the same publication and plugin (pgoutput,
proto_version 1) and a bare tokio-tungstenite fan-out server, in one run. Prints PASS/FAIL per target:
  (a) no RLS, one subscriber: delivered changes/s >= 0.5 of pg_recvlogical's
  (b) RLS on, 1,000 subscribers each filtered to their own rows (user_id=eq.<me>): >= 0.03 of it
  (c) commit-to-client p99 at 1,000 subscribers, at half the rate reached in (b), <= 5x the p99 at
      one subscriber at the same rate
  (d) broadcast fan-out to 1,000 sockets >= 0.3 of the bare fan-out server's frames/s
  (e) memory per idle joined connection <= 50 KiB (doska's RSS delta from 1,000 to 2,000 sockets / 1,000)

Throughput (a, b) is measured on a backlog, so both sides run as fast as they can: doska is paused
(SIGSTOP) while pgbench commits N one-row transactions; then pg_recvlogical reads that WAL from its own
slot up to the end position (its time is the ceiling), then doska is resumed and the clock runs until
the last change reached its subscribers. Latency (c) is measured live, with pgbench at a fixed rate;
commit_timestamp in each payload is compared with the arrival time on the same machine clock.
Usage: bench/realtime/run.py [--changes N] [--sockets N] [--seconds N]"""
import argparse, base64, hashlib, hmac, json, os, resource, shutil, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

SECRET = 'bench-realtime-secret-' + 'x' * 24

SCHEMA = """
create table bench_open (id bigserial primary key, user_id uuid not null, body text not null default 'hello',
  created_at timestamptz not null default clock_timestamp());
create table bench_rls (id bigserial primary key, user_id uuid not null, body text not null default 'hello',
  created_at timestamptz not null default clock_timestamp());
alter table bench_rls enable row level security;
create policy own_rows on bench_rls for select to authenticated using (user_id = auth.uid());
alter publication supabase_realtime add table bench_open, bench_rls;
"""


def user_id(n):
    return f'00000000-0000-0000-0000-{n:012d}'


def sign(claims):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()
    head = enc(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    body = enc(json.dumps(claims).encode())
    sig = hmac.new(SECRET.encode(), f'{head}.{body}'.encode(), hashlib.sha256).digest()
    return f'{head}.{body}.{enc(sig)}'


def tokens_file(d, users):
    path = os.path.join(d, 'tokens.txt')
    exp = int(time.time()) + 3600
    with open(path, 'w') as f:
        for n in range(1, users + 1):
            token = sign({'sub': user_id(n), 'role': 'authenticated', 'aud': 'authenticated', 'exp': exp})
            f.write(f'{user_id(n)} {token}\n')
    return path


def build_loadgen():
    subprocess.run(['cargo', 'build', '--release', '-p', 'doska-loadgen'], cwd=lib.ROOT, check=True)
    return os.path.join(lib.ROOT, 'target/release/doska-loadgen')


class Loadgen:
    """One doska-loadgen process; waits for its first JSON line (ready / port)."""

    def __init__(self, binary, *args):
        self.proc = subprocess.Popen([binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.first = self.line()

    def line(self):
        out = self.proc.stdout.readline()
        if not out:
            raise SystemExit(f'doska-loadgen ended early ({self.proc.wait()})')
        return json.loads(out)

    def result(self, timeout=300):
        self.proc.stdin.close()
        out = self.line()
        self.proc.wait(timeout)
        return out


def pgbench(d, script, transactions=None, rate=None, seconds=None, clients=4):
    tmp = tempfile.mkdtemp(prefix='doska-pgbench-')
    path = os.path.join(tmp, 'script.sql')
    with open(path, 'w') as f:
        f.write(script)
    cmd = [lib.pg_tool('pgbench'), '-h', d.socket_dir, '-p', d.pg_port, '-U', 'postgres', '-n', '-c', str(clients),
           '-j', '2', '-M', 'prepared', '-f', path]
    cmd += ['-t', str(transactions // clients)] if transactions else ['-T', str(seconds)]
    if rate:
        cmd += ['-R', str(rate)]
    lib.sh(cmd + ['postgres'], cwd=tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def insert_script(table, users):
    if users == 1:
        return f"insert into {table} (user_id) values ('{user_id(1)}');\n"
    return (f"\\set u random(1, {users})\n"
            f"insert into {table} (user_id) values (('00000000-0000-0000-0000-' || lpad(:u::text, 12, '0'))::uuid);\n")


def recvlogical(d, *args):
    return [lib.pg_tool('pg_recvlogical'), '-h', d.socket_dir, '-p', d.pg_port, '-U', 'postgres', '-d', 'postgres',
            '--slot', 'bench_recv', *args]


def backlog(d, loadgen, table, users, changes, sockets, tokens):
    """(delivered/s by doska, consumed/s by pg_recvlogical) for `changes` one-row commits."""
    d.psql("select pg_drop_replication_slot('bench_recv') from pg_replication_slots where slot_name = 'bench_recv'")
    lib.sh(recvlogical(d, '--create-slot', '--plugin', 'pgoutput'))
    args = ['changes', '--url', d.url.replace('http', 'ws', 1), '--apikey', d.anon_key, '--sockets', str(sockets),
            '--table', table, '--expect', str(changes), '--idle-secs', '20', '--max-secs', '300']
    if tokens:
        args += ['--tokens', tokens]
    lg = Loadgen(loadgen, *args)
    d.proc.send_signal(signal.SIGSTOP)
    try:
        pgbench(d, insert_script(table, users), transactions=changes)
        end = d.psql('select pg_current_wal_lsn()').strip()
        t0 = time.time()
        lib.sh(recvlogical(d, '--start', '-o', 'proto_version=1', '-o', 'publication_names=supabase_realtime',
                           '--endpos', end, '-f', '/dev/null', '--no-loop'))
        recv_rate = changes / (time.time() - t0)
    finally:
        t1 = time.time()
        d.proc.send_signal(signal.SIGCONT)
    out = lg.result()
    if out['received'] < changes:
        print(f'  {table}: only {out["received"]} of {changes} changes arrived', file=sys.stderr)
    rate = out['received'] / max(out['last_micros'] / 1e6 - t1, 1e-6)
    lib.sh(recvlogical(d, '--drop-slot'))
    return rate, recv_rate


def latency(d, loadgen, sockets, users, rate, seconds, tokens):
    """p99 commit-to-client latency (ms) with `sockets` filtered subscribers at `rate` commits/s."""
    lg = Loadgen(loadgen, 'changes', '--url', d.url.replace('http', 'ws', 1), '--apikey', d.anon_key,
                 '--sockets', str(sockets), '--table', 'bench_rls', '--tokens', tokens,
                 '--idle-secs', '5', '--max-secs', str(seconds + 60))
    pgbench(d, insert_script('bench_rls', users), rate=rate, seconds=seconds, clients=2)
    out = lg.result()
    return out['p99_ms'], out['received']


def rss_kib(pid):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise SystemExit('no VmRSS')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--changes', type=int, default=40000, help='one-row commits per throughput case')
    ap.add_argument('--sockets', type=int, default=1000)
    ap.add_argument('--seconds', type=int, default=10, help='length of each latency run')
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * a.sockets + 1024)), hard))
    loadgen = build_loadgen()
    os.environ['DOSKA_JWT_SECRET'] = SECRET
    d = lib.Doska({'001_bench.sql': SCHEMA})
    ws = d.url.replace('http', 'ws', 1)
    rows = []
    try:
        tokens = tokens_file(d.dir, a.sockets)
        one_token = tokens_file(tempfile.mkdtemp(dir=d.dir), 1)

        # (e) first: what 1,000 more idle joined sockets cost, measured between 1,000 and 2,000
        # held sockets. (From a fresh process the start-up's own garbage, handed back to the OS by
        # the allocator meanwhile, blurred the delta, once below zero.)
        def hold():
            return Loadgen(loadgen, 'changes', '--url', ws, '--apikey', d.anon_key, '--sockets',
                           str(a.sockets), '--table', 'bench_open', '--hold')
        first = hold()
        time.sleep(2)
        before = rss_kib(d.proc.pid)
        second = hold()
        time.sleep(2)
        per_conn = (rss_kib(d.proc.pid) - before) / a.sockets
        second.result()
        first.result()
        rows.append(('(e) memory per idle joined socket', f'{per_conn:.1f}KiB', '50KiB', per_conn / 50,
                     '<= 1.0', per_conn <= 50))

        rate, recv = backlog(d, loadgen, 'bench_open', a.sockets, a.changes, 1, None)
        rows.append(('(a) no RLS, 1 subscriber: changes/s', f'{rate:.0f}/s', f'{recv:.0f}/s', rate / recv,
                     '>= 0.5', rate / recv >= 0.5))

        rate_b, recv = backlog(d, loadgen, 'bench_rls', a.sockets, a.changes, a.sockets, tokens)
        rows.append((f'(b) RLS, {a.sockets} filtered subs: changes/s', f'{rate_b:.0f}/s', f'{recv:.0f}/s',
                     rate_b / recv, '>= 0.03', rate_b / recv >= 0.03))

        target = max(int(rate_b / 2), 10)
        p99_one, n_one = latency(d, loadgen, 1, 1, target, a.seconds, one_token)
        p99_many, n_many = latency(d, loadgen, a.sockets, a.sockets, target, a.seconds, tokens)
        ratio = p99_many / max(p99_one, 1e-3)
        rows.append((f'(c) p99 commit->client at {target}/s', f'{p99_many:.1f}ms', f'{p99_one:.1f}ms', ratio,
                     '<= 5.0', ratio <= 5.0 and n_many > 0 and n_one > 0))

        bare = Loadgen(loadgen, 'bare')
        try:
            fan_args = ['--sockets', str(a.sockets), '--senders', '20', '--wave', '400', '--waves', '5']
            # A fanout run prints one line, its result, and ends.
            base_out = Loadgen(loadgen, 'fanout', '--url', f'ws://127.0.0.1:{bare.first["port"]}/ws', *fan_args).first
            ours_out = Loadgen(loadgen, 'fanout', '--url', ws, '--apikey', d.anon_key, *fan_args).first
        finally:
            bare.proc.kill()
        ratio = ours_out['rate'] / base_out['rate']
        rows.append((f'(d) broadcast fan-out to {a.sockets}: frames/s', f'{ours_out["rate"]:.0f}/s',
                     f'{base_out["rate"]:.0f}/s', ratio, '>= 0.3', ratio >= 0.3 and ours_out['lost'] == 0))
    finally:
        d.stop()
    print(f'\nbench/realtime: {a.changes} one-row commits per throughput case, {a.sockets} sockets, '
          f'{os.cpu_count()} cores')
    ok = lib.table(rows)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
