#!/usr/bin/env python3
"""bench/scale, realtime half: two release doska (`serve --database-url`) on one PostgreSQL this
script starts (wal_level=logical), with bench/realtime's load client (doska-loadgen). Prints
PASS/FAIL per target:
  (a) RLS on, 1,000 subscribers each filtered to their own rows: deliveries/s with the subscribers
      split 500/500 across the two instances >= 0.8 of the rate with all 1,000 on one instance
      (the slot holder; the other instance runs idle). The split case pays for the shared log: the
      standby reads every batch back from doska.realtime_changes, woken by NOTIFY.
  (b) failover: one subscriber on the standby, pgbench committing a steady trickle; the slot
      holder is SIGKILLed. Reported: the time from the SIGKILL to the first change committed after
      it reaching the survivor's subscriber (target <= 5 s), measured as the longest
      commit->client wait of the run (the first change committed after the kill waits through the
      whole failover); and the time until the survivor's /metrics says doska_realtime_slot_holder 1.

Throughput (a) is measured on a backlog, as bench/realtime does: both instances are paused
(SIGSTOP, sockets stay joined) while pgbench commits N one-row inserts, then resumed; the clock runs
until the last change reached its subscriber.
Usage: bench/scale/realtime.py [--changes N] [--sockets N] [--rate N]"""
import argparse, importlib.util, json, os, resource, shutil, signal, subprocess, sys, tempfile, time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

# bench/realtime/run.py's tokens, load client and pgbench helpers (loaded by path: bench/scale has
# a run.py of its own).
_spec = importlib.util.spec_from_file_location(
    'bench_realtime_run', os.path.join(os.path.dirname(__file__), '..', 'realtime', 'run.py'))
rt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rt)


def as_postgres(cmd):
    return ['runuser', '-u', 'postgres', '--', *cmd] if os.geteuid() == 0 else cmd


class Postgres:
    """A PostgreSQL for the instances to share, on a unix socket in a temp dir."""

    def __init__(self, port=5499):
        self.dir = tempfile.mkdtemp(prefix='doska-scale-pg-')
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, 'data')
        self.socket_dir, self.pg_port = self.dir, str(port)
        if os.geteuid() == 0:
            shutil.chown(self.dir, 'postgres', 'postgres')
        lib.sh(as_postgres([lib.pg_tool('initdb'), '-U', 'postgres', '--auth=trust', '-E', 'UTF8',
                            '--locale=C.UTF-8', '-D', self.data]))
        self.log = open(os.path.join(self.dir, 'postgres.log'), 'w')
        self.proc = subprocess.Popen(as_postgres([
            lib.pg_tool('postgres'), '-D', self.data, '-p', self.pg_port, '-c', 'listen_addresses=',
            '-c', f'unix_socket_directories={self.dir}', '-c', 'wal_level=logical', '-c', 'max_connections=400',
            '-c', 'max_wal_senders=10', '-c', 'max_replication_slots=10', '-c', 'shared_buffers=256MB',
            '-c', 'synchronous_commit=off']), stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(self.dir, f'.s.PGSQL.{self.pg_port}')):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit('PostgreSQL did not start:\n' + open(self.log.name).read())
            time.sleep(0.1)
        time.sleep(0.5)
        self.url = f'host={self.dir} port={self.pg_port} user=postgres dbname=postgres'

    def psql(self, sql):
        return lib.sh([lib.pg_tool('psql'), '-h', self.dir, '-p', self.pg_port, '-U', 'postgres', '-d', 'postgres',
                       '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql])

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Instance:
    """A release `doska serve --database-url` with its own data dir."""

    def __init__(self, pg, migrations):
        self.bin = lib.build_release()
        self.dir = tempfile.mkdtemp(prefix='doska-scale-')
        os.chmod(self.dir, 0o755)
        self.log = open(os.path.join(self.dir, 'doska.log'), 'w+')
        self.proc = subprocess.Popen(
            [self.bin, 'serve', '--listen', '127.0.0.1:0', '--log-format', 'json', '--data-dir',
             os.path.join(self.dir, 'data'), '--migrations', migrations, '--policies',
             os.path.join(self.dir, 'none'), '--database-url', pg.url, '--static', ''],
            stderr=self.log, stdout=subprocess.DEVNULL,
            env={**os.environ, 'DOSKA_LOG': os.environ.get('DOSKA_BENCH_LOG', 'warn,doska::startup=info')})
        self.url = None
        deadline = time.time() + 120
        while self.url is None:
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit('doska did not start:\n' + open(self.log.name).read()[-3000:])
            for line in open(self.log.name):
                try:
                    self.url = json.loads(line).get('fields', {}).get('url') or self.url
                except ValueError:
                    continue
            time.sleep(0.1)
        self.ws = self.url.replace('http', 'ws', 1)

    def holder(self):
        try:
            text = urllib.request.urlopen(f'{self.url}/metrics', timeout=2).read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith('doska_realtime_slot_holder '):
                return line.split()[1] == '1'
        raise SystemExit('no doska_realtime_slot_holder in /metrics')

    def until_holder(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.holder():
                return
            time.sleep(0.05)
        raise SystemExit(f'{self.url} did not become the slot holder:\n' + open(self.log.name).read()[-3000:])

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        lib.keep_log(self.log.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def token_files(d, users, parts):
    """`parts` files of `<user id> <token>` lines splitting users 1..=users evenly."""
    whole = open(rt.tokens_file(d, users)).read().splitlines()
    per = users // parts
    paths = []
    for i in range(parts):
        path = os.path.join(d, f'tokens-{parts}-{i}.txt')
        with open(path, 'w') as f:
            f.write('\n'.join(whole[i * per:(i + 1) * per]) + '\n')
        paths.append(path)
    return paths


def backlog(pg, instances, loadgen, placement, changes, sockets, users):
    """Deliveries/s of `changes` RLS-checked one-row commits to `sockets` subscribers placed on
    instances by `placement` (a list of (instance, tokens file, sockets))."""
    anon = rt.sign({'role': 'anon'})
    gens = [rt.Loadgen(loadgen, 'changes', '--url', inst.ws, '--apikey', anon, '--sockets', str(n),
                       '--table', 'bench_rls', '--tokens', tokens, '--expect', str(changes),
                       '--idle-secs', '5', '--max-secs', '300')
            for inst, tokens, n in placement]
    for inst in instances:
        inst.signal(signal.SIGSTOP)
    try:
        rt.pgbench(pg, rt.insert_script('bench_rls', users), transactions=changes)
    finally:
        t1 = time.time()
        for inst in instances:
            inst.signal(signal.SIGCONT)
    outs = [g.result() for g in gens]
    received = sum(o['received'] for o in outs)
    if received < changes:
        print(f'  only {received} of {changes} changes arrived: {[o["received"] for o in outs]}', file=sys.stderr)
    last = max(o['last_micros'] for o in outs) / 1e6
    return received / max(last - t1, 1e-6)


def failover(pg, holder, survivor, loadgen, rate, seconds):
    """(longest commit->client wait in s, seconds until the survivor says it holds the slot, changes
    received) with the holder SIGKILLed a third of the way into a steady trickle of commits."""
    anon = rt.sign({'role': 'anon'})
    lg = rt.Loadgen(loadgen, 'changes', '--url', survivor.ws, '--apikey', anon, '--sockets', '1',
                    '--table', 'bench_open', '--idle-secs', '10', '--max-secs', str(seconds + 60))
    tmp = tempfile.mkdtemp(prefix='doska-pgbench-')
    script = os.path.join(tmp, 'script.sql')
    with open(script, 'w') as f:
        f.write(rt.insert_script('bench_open', 1))
    bench = subprocess.Popen([lib.pg_tool('pgbench'), '-h', pg.socket_dir, '-p', pg.pg_port, '-U', 'postgres', '-n',
                              '-c', '1', '-R', str(rate), '-T', str(seconds), '-f', script, 'postgres'],
                             cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds / 3)
    killed = time.time()
    holder.proc.kill()
    holder.proc.wait()
    took_slot = None
    while time.time() - killed < 60:
        if survivor.holder():
            took_slot = time.time() - killed
            break
        time.sleep(0.02)
    bench.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    out = lg.result()
    return out['max_ms'] / 1000, took_slot, out['received']


def main(args=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--changes', type=int, default=20000, help='one-row commits per throughput case')
    ap.add_argument('--sockets', type=int, default=1000)
    ap.add_argument('--rate', type=int, default=100, help='commits/s during the failover')
    ap.add_argument('--seconds', type=int, default=15, help='length of the failover run')
    a = ap.parse_args(args)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * a.sockets + 1024)), hard))
    loadgen = rt.build_loadgen()
    os.environ['DOSKA_JWT_SECRET'] = rt.SECRET
    pg = Postgres()
    mig = tempfile.mkdtemp(prefix='doska-scale-mig-')
    with open(os.path.join(mig, '001_bench.sql'), 'w') as f:
        f.write(rt.SCHEMA)
    rows, instances = [], []
    try:
        a_ = Instance(pg, mig)
        instances.append(a_)
        a_.until_holder()
        b_ = Instance(pg, mig)
        instances.append(b_)
        if b_.holder():
            raise SystemExit('both instances say they hold the slot')
        d = tempfile.mkdtemp(dir=pg.dir)
        [whole] = token_files(d, a.sockets, 1)
        half = token_files(d, a.sockets, 2)

        one = backlog(pg, instances, loadgen, [(a_, whole, a.sockets)], a.changes, a.sockets, a.sockets)
        split = backlog(pg, instances, loadgen, [(a_, half[0], a.sockets // 2), (b_, half[1], a.sockets // 2)],
                        a.changes, a.sockets, a.sockets)
        ratio = split / one
        rows.append((f'(a) RLS, {a.sockets} subs split over 2: changes/s', f'{split:.0f}/s', f'{one:.0f}/s', ratio,
                     '>= 0.8', ratio >= 0.8))

        gap, took_slot, received = failover(pg, a_, b_, loadgen, a.rate, a.seconds)
        took = f'{took_slot:.2f}s' if took_slot is not None else 'never'
        rows.append(('(b) failover: SIGKILL -> next change on survivor', f'{gap:.2f}s', '5s', gap / 5, '<= 1.0',
                     gap <= 5 and took_slot is not None and received > 0))
        print(f'  survivor reported doska_realtime_slot_holder 1 after {took}; {received} changes received')
    finally:
        for inst in instances:
            inst.stop()
        pg.stop()
        shutil.rmtree(mig, ignore_errors=True)
    load = os.getloadavg()
    print(f'\nbench/scale realtime: {a.changes} one-row commits per throughput case, {a.sockets} sockets, '
          f'{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}')
    return lib.table(rows)


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
