#!/usr/bin/env python3
"""bench/storage/put_cpu.py: CPU per small PUT. Starts one release doska (S3 listener, --db-pool 32),
then runs --rounds rounds of N x 4 KiB PUTs (s5cmd, 32 workers, fresh keys each round) and prints,
per round, PUTs per second, the CPU seconds (utime + stime from /proc) per PUT of doska and of its
PostgreSQL (every process under doska), and doska's context switches per PUT. On a shared machine
throughput swings with everyone else's load; CPU per request much less — compare binaries with it,
alternating them (DOSKA_BENCH_BIN).
Usage: bench/storage/put_cpu.py [--small N] [--rounds N] [--workers N]"""
import argparse, os, sys, shutil, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, os.path.dirname(__file__))
import lib  # noqa: E402
import run  # noqa: E402

TICK = os.sysconf('SC_CLK_TCK')


def stat(pid):
    with open(f'/proc/{pid}/stat') as f:
        return f.read().rsplit(')', 1)[1].split()


def tree(pid):
    """pid and every process under it."""
    children = {}
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                children.setdefault(int(stat(p)[1]), []).append(int(p))
            except OSError:
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu(pids):
    total = 0
    for p in pids:
        try:
            f = stat(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])
    return total / TICK


def switches(pid):
    n = 0
    for t in os.listdir(f'/proc/{pid}/task'):
        try:
            with open(f'/proc/{pid}/task/{t}/status') as f:
                n += sum(int(l.split()[1]) for l in f if 'ctxt_switches' in l)
        except OSError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--small', type=int, default=1000)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--workers', type=int, default=32)
    a = ap.parse_args()
    run.ensure_tools()
    work = tempfile.mkdtemp(prefix='doska-bench-put-cpu-')
    d = None
    try:
        small = os.path.join(work, 'in')
        run.make_files(small, a.small, 4096, 'small')
        d = lib.Doska({}, args=['--s3-listen', '127.0.0.1:0', '--s3-access-key-id', run.ACCESS,
                                '--s3-secret-access-key', run.SECRET, '--db-pool', str(min(a.workers, 32))])
        c = run.Client('doska', d.s3_url, a.workers)
        c.run('mb', f's3://{run.BUCKET}')
        c.run('cp', os.path.join(small, '*'), f's3://{run.BUCKET}/warm/')
        pid = d.proc.pid
        for r in range(a.rounds):
            pids = tree(pid)
            own0, all0, sw0 = cpu([pid]), cpu(pids), switches(pid)
            took, _ = c.run('cp', os.path.join(small, '*'), f's3://{run.BUCKET}/r{r}/')
            own1, all1, sw1 = cpu([pid]), cpu(pids), switches(pid)
            n = a.small
            print(f'round {r}: {n / took:.0f} PUT/s, doska {(own1 - own0) / n * 1e6:.0f} us/PUT, '
                  f'PostgreSQL {((all1 - all0) - (own1 - own0)) / n * 1e6:.0f} us/PUT, '
                  f'{(sw1 - sw0) / n:.1f} context switches/PUT (doska), '
                  f'load {os.getloadavg()[0]:.1f}', flush=True)
    finally:
        if d is not None:
            d.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
