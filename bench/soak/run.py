#!/usr/bin/env python3
"""bench/soak: one doska held under many connections for a bounded time, on the loopback only.

A release doska (lib.Doska, a small schema: soak_items to read, soak_posts to write, soak_feed in the
realtime publication, RLS on with permissive policies) gets, from one `doska-loadgen soak` process:
  - --sockets WebSockets (Phoenix vsn 2.0.0) in rooms of 25 (a class), each joined with presence on
    and a postgres_changes INSERT binding on soak_feed filtered to its room; heartbeats every 10 s
    (the round trip is the WebSocket latency), a presence track at the join and one more during the
    load, a binary broadcast to its room every 20 s, and a trickle of up to 10 inserts/s into soak_feed;
  - --http HTTP/1.1 keep-alive connections, each looping REST GETs on soak_items (by key, and a
    filtered, ordered page) and every 10th request a POST into soak_posts, with a 500 ms pause after
    each answer (so the REST load is what 1,000 active clients offer, not an unbounded queue);
for --seconds, then 10 s of drain. Every error counts: failed connects and joins, non-2xx, resets,
closes and 10 s timeouts of requests, sockets closed or failed before the stop, unanswered heartbeats
and presence pushes, system errors, and broadcast or change deliveries missing against what each
room's members should have received.

doska's RSS (VmRSS) is taken at start, after a short warm-up ("before": pools open, caches filled),
every 0.5 s from the ramp to the end of the load (peak), and 30 s after the load ended ("after"). Prints PASS/FAIL for:
errors == 0, and RSS after within 10 % of before. Exit status 1 when one fails.
Not run in CI. Usage: bench/soak/run.py [--http N] [--sockets N] [--seconds N] [--rounds N]"""
import argparse, collections, json, os, resource, subprocess, sys, threading, time, urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

SCHEMA = """
create table soak_items (id bigint primary key, name text not null, room int not null);
insert into soak_items select g, 'item ' || g, g % 50 from generate_series(1, 1000) g;
create index soak_items_room on soak_items (room, id);
create table soak_posts (id bigserial primary key, conn int not null, body text not null,
  created_at timestamptz not null default now());
create table soak_feed (id bigserial primary key, room int not null, body text not null default 'tick',
  created_at timestamptz not null default clock_timestamp());
alter table soak_items enable row level security;
alter table soak_posts enable row level security;
alter table soak_feed enable row level security;
create policy read_all on soak_items for select to anon using (true);
create policy add_any on soak_posts for insert to anon with check (true);
create policy read_all on soak_feed for select to anon using (true);
create policy add_any on soak_feed for insert to anon with check (true);
alter publication supabase_realtime add table soak_feed;
"""

AFTER_SECS = 30


def build_loadgen():
    subprocess.run(['cargo', 'build', '--release', '-p', 'doska-loadgen'], cwd=lib.ROOT, check=True)
    return os.path.join(lib.ROOT, 'target/release/doska-loadgen')


def status_kib(pid, field='VmRSS'):
    for line in open(f'/proc/{pid}/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1])
    raise SystemExit(f'no {field} for {pid}')


def lazy_free_kib(pid):
    """Memory the allocator gave back with MADV_FREE: still in RSS until the kernel needs it."""
    for line in open(f'/proc/{pid}/smaps_rollup'):
        if line.startswith('LazyFree:'):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f'/proc/{pid}/fd'))


def nofile_limit(pid):
    for line in open(f'/proc/{pid}/limits'):
        if line.startswith('Max open files'):
            return int(line.split()[3])
    return None


def gauges(url):
    text = urllib.request.urlopen(url + '/metrics', timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(('doska_realtime_sockets ', 'doska_realtime_channels ')):
            name, value = line.split()
            out[name] = float(value)
    return out


def soak(loadgen, d, sockets, http, seconds):
    """Runs one `doska-loadgen soak`; returns (ready line, result line)."""
    proc = subprocess.Popen([loadgen, 'soak', '--url', d.url, '--apikey', d.anon_key, '--sockets', str(sockets),
                             '--http', str(http), '--seconds', str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(json.loads(line))
        # The loadgen bounds itself (ramp ≤ 300 s, load, drain, stop ≤ 60 s); this is the backstop.
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if rc != 0 or len(lines) != 2:
        raise SystemExit(f'doska-loadgen soak failed (exit {rc}, {len(lines)} lines)')
    return lines[0], lines[1]


class Sampler(threading.Thread):
    """doska's RSS and open fds every 0.5 s until stopped: the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_rss, self.peak_fds = pid, 0, 0
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            self.peak_rss = max(self.peak_rss, status_kib(self.pid))
            self.peak_fds = max(self.peak_fds, fds(self.pid))
            self.done.wait(0.5)


def log_summary(path, since):
    """WARN/ERROR lines doska logged after byte offset `since`, counted by message."""
    counts = collections.Counter()
    with open(path) as f:
        f.seek(since)
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get('level') in ('WARN', 'ERROR'):
                fields = entry.get('fields', {})
                counts[f"{entry['level']} {entry.get('target', '')}: {fields.get('message', '')}"] += 1
    return counts


def mib(kib):
    return f'{kib / 1024:.1f} MiB'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--http', type=int, default=1000, help='HTTP/1.1 keep-alive connections')
    ap.add_argument('--sockets', type=int, default=10000, help='WebSockets')
    ap.add_argument('--seconds', type=int, default=60, help='length of the load')
    ap.add_argument('--rounds', type=int, default=1,
                    help='loads in a row on one doska (RSS after each: a leak grows, a cache plateaus)')
    a = ap.parse_args()
    # Both doska and the load client hold one descriptor per connection, plus their own; both
    # inherit this limit (doska does not raise its soft limit itself).
    need = a.sockets + a.http + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        raise SystemExit(f'RLIMIT_NOFILE hard limit {hard} < {need} needed: raise it (ulimit -Hn) first')
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lo, hi = map(int, open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
    if hi - lo + 1 < a.sockets + a.http + 1000:
        raise SystemExit(f'only {hi - lo + 1} ephemeral ports for {a.sockets + a.http} connections')
    load_start = os.getloadavg()
    started_at = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    loadgen = build_loadgen()
    d = lib.Doska({'001_soak.sql': SCHEMA})
    pid = d.proc.pid
    ok = True
    try:
        limit = nofile_limit(pid)
        if limit is not None and limit < need:
            raise SystemExit(f"doska's open-file limit is {limit}, < {need} needed")
        rss_start = status_kib(pid)
        # Warm-up: the pools' connections, caches and prepared statements exist before "before".
        _, warm = soak(loadgen, d, min(100, a.sockets), min(20, a.http), 3)
        time.sleep(5)
        rss_before, fds_before = status_kib(pid), fds(pid)
        log_offset = os.path.getsize(d.log.name)
        rounds = []
        for _ in range(a.rounds):
            sampler = Sampler(pid)
            sampler.start()
            ready, out = soak(loadgen, d, a.sockets, a.http, a.seconds)
            sampler.done.set()
            time.sleep(AFTER_SECS)
            rounds.append((ready, out, sampler, status_kib(pid), lazy_free_kib(pid), fds(pid), gauges(d.url)))
        logged = log_summary(d.log.name, log_offset)
    finally:
        d.stop()

    ms = lambda s: f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms"
    print(f'\nbench/soak: {a.sockets} WebSockets and {a.http} HTTP/1.1 connections for {a.seconds} s'
          f'{f" × {a.rounds} rounds" if a.rounds > 1 else ""}; {os.cpu_count()} cores; started {started_at}, '
          f'load average {load_start[0]:.2f} at start, {os.getloadavg()[0]:.2f} at the end')
    print(f'  doska RSS: at start {mib(rss_start)}, before (after a warm-up) {mib(rss_before)}; open fds before '
          f'{fds_before}')
    errors = warm['errors']
    if warm['errors']:
        print(f'  warm-up errors: {warm["error_kinds"]}')
    for n, (ready, out, sampler, rss_after, lazy, fds_after, left) in enumerate(rounds, 1):
        rest, ws = out['rest'], out['ws']
        if a.rounds > 1:
            print(f' round {n}:')
        print(f'  ramp: {ready["ramp_secs"]:.1f} s to join {ready["sockets_joined"]} sockets ({out["rooms"]} rooms) '
              f'and open {ready["http_connected"]} connections')
        print(f'  REST: {rest["requests"]} requests ({rest["gets"]} GET, {rest["posts"]} POST), '
              f'{rest["rate"]:.0f}/s; ' + ms(rest['latency']))
        print(f'  WebSocket heartbeat round trip: {ws["heartbeat_rtt"]["count"]} heartbeats; '
              + ms(ws['heartbeat_rtt']))
        print(f'  broadcasts: {ws["broadcasts_sent"]} sent, {ws["broadcasts_received"]} of '
              f'{ws["broadcasts_expected"]} deliveries; presence diffs received: {ws["presence_diffs"]}')
        print(f'  postgres_changes: {ws["changes_inserted"]} inserts, {ws["changes_received"]} of '
              f'{ws["changes_expected"]} deliveries; commit->client ' + ms(ws['change_latency']))
        print(f'  doska RSS: peak {mib(sampler.peak_rss)}, {AFTER_SECS} s after {mib(rss_after)} '
              f'({rss_after / rss_before:.2f}x before; {mib(lazy)} of it lazily freed); open fds: peak {sampler.peak_fds}, after {fds_after}; '
              f'realtime sockets/channels after: {left.get("doska_realtime_sockets")}/'
              f'{left.get("doska_realtime_channels")}')
        for kind, count in out['error_kinds'].items():
            print(f'  error: {kind}: {count}')
        for sample in out['error_samples']:
            print(f'    e.g. {sample[:300]}')
        errors += out['errors']
    for message, count in logged.most_common(10):
        print(f'  doska logged {count}x {message[:200]}')
    rss_after = rounds[-1][3]
    checks = [
        (f'errors == 0 ({errors})', errors == 0),
        (f'RSS {AFTER_SECS} s after within 10 % of before ({rss_after / rss_before:.2f}x)',
         rss_after <= rss_before * 1.10),
    ]
    for name, passed in checks:
        print(f'{name:<60} {"PASS" if passed else "FAIL"}')
        ok = ok and passed
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
