"""Shared pieces of doska's benchmarks: build and start a release doska on a temp data dir, find its
embedded PostgreSQL, run wrk and pgbench, and print ratio tables. Loopback only; every run is bounded
in time. Machines here are shared and noisy: compare ratios taken in one run, never absolute times."""
import json, os, re, shutil, signal, subprocess, sys, tempfile, time, urllib.request, glob

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


def sh(cmd, **kw):
    r = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f'{cmd[0]} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}')
    return r.stdout


def need(tool, package):
    if shutil.which(tool) is None:
        print(f'installing {package} for {tool}', file=sys.stderr)
        subprocess.run(['apt-get', 'install', '-y', '-qq', package], check=True,
                       env={**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'})


def pg_tool(name):
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(glob.glob('/usr/lib/postgresql/*/bin'), reverse=True):
        if os.path.exists(os.path.join(d, name)):
            return os.path.join(d, name)
    raise SystemExit(f'{name} not found: apt-get install postgresql')


def build_release():
    # DOSKA_BENCH_BIN: a binary already built (a smoke run of a harness with a debug build).
    if os.environ.get('DOSKA_BENCH_BIN'):
        return os.environ['DOSKA_BENCH_BIN']
    subprocess.run(['cargo', 'build', '--release', '--bin', 'doska'], cwd=ROOT, check=True)
    return os.path.join(ROOT, 'target/release/doska')


class Doska:
    """A release doska serving `migrations` (a dict name → SQL) on a random port."""

    def __init__(self, migrations, args=()):
        self.bin = build_release()
        self.dir = tempfile.mkdtemp(prefix='doska-bench-')
        os.chmod(self.dir, 0o755)
        mig = os.path.join(self.dir, 'migrations')
        os.makedirs(mig)
        for name, sql in migrations.items():
            with open(os.path.join(mig, name), 'w') as f:
                f.write(sql)
        self.data = os.path.join(self.dir, 'data')
        self.common = ['--data-dir', self.data, '--migrations', mig, '--policies', os.path.join(self.dir, 'none')]
        self.log = open(os.path.join(self.dir, 'doska.log'), 'w+')
        self.proc = subprocess.Popen([self.bin, 'serve', '--listen', '127.0.0.1:0', '--log-format', 'json',
                                      *self.common, *args], stderr=self.log, stdout=subprocess.DEVNULL,
                                     env={**os.environ, 'DOSKA_LOG': os.environ.get(
                                         'DOSKA_BENCH_LOG', 'warn,doska::startup=info,doska::storage::s3=info')})
        self.url = None
        self.s3_url = None
        s3 = any(a == '--s3-access-key-id' for a in args)
        deadline = time.time() + 120
        while time.time() < deadline and (self.url is None or (s3 and self.s3_url is None)):
            if self.proc.poll() is not None:
                raise SystemExit('doska exited:\n' + open(self.log.name).read())
            for line in open(self.log.name):
                try:
                    fields = json.loads(line).get('fields', {})
                except ValueError:
                    continue
                self.url = fields.get('url') or self.url
                self.s3_url = fields.get('s3_url') or self.s3_url
            time.sleep(0.1)
        if self.url is None or (s3 and self.s3_url is None):
            raise SystemExit('doska did not start:\n' + open(self.log.name).read()[-3000:])
        keys = json.loads(sh([self.bin, 'keys', *self.common]))
        self.anon_key, self.service_key = keys['anon_key'], keys['service_role_key']
        serve = dict(l.strip().split('=', 1) for l in open(os.path.join(self.data, 'doska.serve')) if '=' in l)
        self.socket_dir, self.pg_port = serve['socket_dir'], serve['port']

    def psql(self, sql, user='postgres'):
        return sh([pg_tool('psql'), '-h', self.socket_dir, '-p', self.pg_port, '-U', user, '-d', 'postgres',
                   '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        keep_log(self.log.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def keep_log(path):
    """Copies a doska.log about to be removed into $DOSKA_BENCH_KEEP_LOGS (a folder), if set: with
    DOSKA_BENCH_LOG raising the level, what a run did can be read afterwards."""
    keep = os.environ.get('DOSKA_BENCH_KEEP_LOGS')
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(path, os.path.join(keep, f'doska-{time.strftime("%H%M%S")}-{os.getpid()}-{id(path)}.log'))


def wrk(url, seconds, conns, script=None, headers=()):
    need('wrk', 'wrk')
    cmd = ['wrk', '-t2', f'-c{conns}', f'-d{seconds}s', '--latency', '--timeout', '10s']
    for h in headers:
        cmd += ['-H', h]
    if script:
        cmd += ['-s', script]
    # Warm up (pool connections opened, caches filled) outside the measured run, as pgbench's
    # figures exclude connection time too.
    sh([c.replace(f'-d{seconds}s', '-d2s') for c in cmd] + [url])
    out = sh(cmd + [url])
    rate = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    p99 = parse_duration(re.search(r'99%\s+([\d.]+\w+)', out).group(1))
    non2xx = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    errors = re.search(r'Socket errors: (.*)', out)
    if non2xx or (errors and 'timeout 0' not in errors.group(1)):
        raise SystemExit(f'wrk saw failures:\n{out}')
    return rate, p99


def parse_duration(s):
    m = re.match(r'([\d.]+)(us|ms|s|m)$', s)
    v, unit = float(m.group(1)), m.group(2)
    return v * {'us': 1e-6, 'ms': 1e-3, 's': 1.0, 'm': 60.0}[unit]


def pgbench(doska, script_text, seconds, conns, user='authenticator'):
    d = tempfile.mkdtemp(prefix='doska-pgbench-')
    script = os.path.join(d, 'script.sql')
    with open(script, 'w') as f:
        f.write(script_text)
    out = sh([pg_tool('pgbench'), '-h', doska.socket_dir, '-p', doska.pg_port, '-U', user, '-n',
              '-c', str(conns), '-j', '2', '-T', str(seconds), '-M', 'extended', '-l', '--log-prefix',
              os.path.join(d, 'log'), '-f', script, 'postgres'], cwd=d)
    tps = float(re.search(r'tps = ([\d.]+) \(without initial connection time\)', out).group(1))
    lat = []
    for path in glob.glob(os.path.join(d, 'log*')):
        for line in open(path):
            parts = line.split()
            if len(parts) >= 3:
                lat.append(int(parts[2]) / 1e6)
    lat.sort()
    p99 = lat[int(len(lat) * 0.99) - 1] if lat else float('nan')
    shutil.rmtree(d, ignore_errors=True)
    return tps, p99


def table(rows):
    """rows: (case, doska, anchor, ratio, target, ok) → printed, and PASS/FAIL summary returned."""
    print(f"{'case':<44} {'doska':>11} {'anchor':>11} {'ratio':>7} {'target':>8}  result")
    for case, a, b, ratio, target, ok in rows:
        print(f'{case:<44} {a:>11} {b:>11} {ratio:>7.2f} {target:>8}  {"PASS" if ok else "FAIL"}')
    return all(r[5] for r in rows)
