#!/usr/bin/env python3
"""bench/scale (c): REST GET through nginx to two doska instances vs straight to one, in one run.
The scaled configuration comes from deploy/local-cluster.sh (PostgreSQL, Redis, two release doska,
nginx with deploy/nginx-doska.conf: TLS, least_conn) on free ports in a temp folder; the app is a
10,000-row table readable by anon. wrk GETs one row by primary key (random ids), first straight to
instance A over plain HTTP, then through nginx over HTTPS to A and B. Prints both rates, p99s and
the ratio (nginx+2 / 1), with the load average. A report, not a pass/fail target: on one 2-core
machine the two instances, PostgreSQL, nginx and wrk share the same cores, so the ratio measures
nginx's and TLS's cost more than the second instance's gain.
Usage: bench/scale/rest.py [--seconds N] [--conns N]"""
import argparse, json, os, socket, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

SCHEMA = """
create table items (id bigint primary key, name text not null, price numeric(10,2) not null);
insert into items select g, 'item ' || g, (g % 997) + 0.99 from generate_series(1, 10000) g;
alter table items enable row level security;
create policy read_all on items for select to anon using (true);
"""

WRK_GET = """
local reqs = {}
local n = 0
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for k = 1, 4096 do
    reqs[k] = wrk.format("GET", "/rest/v1/items?select=*&id=eq." .. math.random(1, 10000))
  end
  n = #reqs
end
request = function()
  i = i % n + 1
  return reqs[i]
end
"""


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=10)
    ap.add_argument('--conns', type=int, default=32)
    a = ap.parse_args()
    lib.need('wrk', 'wrk')
    binary = lib.build_release()
    work = tempfile.mkdtemp(prefix='doska-bench-scale-')
    os.chmod(work, 0o755)
    mig = os.path.join(work, 'migrations')
    os.makedirs(mig)
    with open(os.path.join(mig, '001_items.sql'), 'w') as f:
        f.write(SCHEMA)
    ports = {k: free_port() for k in ('LC_HTTPS_PORT', 'LC_HTTP_PORT', 'LC_A_PORT', 'LC_B_PORT',
                                      'LC_PG_PORT', 'LC_REDIS_PORT')}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, 'DOSKA_BIN': binary,
           'DOSKA_CLUSTER_DIR': os.path.join(work, 'cluster'), 'DOSKA_MIGRATIONS': mig,
           'DOSKA_POLICIES': os.path.join(work, 'no-policies'), 'DOSKA_STATIC': '',
           'DOSKA_LOG': 'warn'}
    script = os.path.join(lib.ROOT, 'deploy/local-cluster.sh')
    load_before = os.getloadavg()
    lib.sh(['bash', script, 'start'], env=env)
    try:
        url = (f"host={env['DOSKA_CLUSTER_DIR']}/run port={ports['LC_PG_PORT']} "
               'user=postgres dbname=postgres')
        keys = json.loads(lib.sh([binary, 'keys', '--data-dir', os.path.join(env['DOSKA_CLUSTER_DIR'], 'a'),
                                  '--database-url', url]))
        headers = [f"apikey: {keys['anon_key']}", f"Authorization: Bearer {keys['anon_key']}"]
        with tempfile.NamedTemporaryFile('w', suffix='.lua', delete=False) as f:
            f.write(WRK_GET)
            lua = f.name
        one, one_p99 = lib.wrk(f"http://127.0.0.1:{ports['LC_A_PORT']}", a.seconds, a.conns, lua, headers)
        two, two_p99 = lib.wrk(f"https://127.0.0.1:{ports['LC_HTTPS_PORT']}", a.seconds, a.conns, lua, headers)
        os.unlink(lua)
    finally:
        lib.sh(['bash', script, 'stop'], env=env)
    load_after = os.getloadavg()
    print(f'\nbench/scale (c): REST GET by primary key, {a.conns} connections, {a.seconds}s each, '
          f'{os.cpu_count()} cores')
    print(f"{'path':<44} {'rate':>11} {'p99':>10}")
    print(f"{'straight to one instance (HTTP)':<44} {one:>9.0f}/s {one_p99 * 1000:>8.2f}ms")
    print(f"{'nginx (HTTPS) to two instances':<44} {two:>9.0f}/s {two_p99 * 1000:>8.2f}ms")
    print(f'ratio (nginx + two / one): {two / one:.2f}')
    print('load average before: {:.2f} {:.2f} {:.2f}; after: {:.2f} {:.2f} {:.2f}'.format(*load_before, *load_after))


if __name__ == '__main__':
    main()
