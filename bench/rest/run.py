#!/usr/bin/env python3
"""bench/rest: doska's REST door under wrk beside pgbench doing the same per-request work (set role
and claims, then the statement that builds the same JSON body) on the same database, at the same
concurrency, in one run. Prints both rates, their ratio and PASS/FAIL per target:
  GET by primary key ≥ 0.7 of pgbench; GET 50 rows filtered+ordered, GET with a 1-n embed and
  POST one row ≥ 0.5; p99 latency ≤ 2 × pgbench's p99 at 32 connections.
Usage: bench/rest/run.py [--seconds N] [--conns N]"""
import argparse, os, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

SCHEMA = """
create table authors (id int primary key, name text not null);
create table items (
  id bigserial primary key, name text not null, category int not null, price numeric(10,2) not null,
  author_id int references authors(id), created_at timestamptz not null default now());
create index items_category_price on items (category, price desc);
create index items_author on items (author_id);
insert into authors select g, 'author ' || g from generate_series(1, 1000) g;
insert into items (name, category, price, author_id)
  select 'item ' || g, g % 100, (g % 997) + 0.99, (g % 1000) + 1 from generate_series(1, 10000) g;
alter table authors enable row level security;
alter table items enable row level security;
create policy read_all on authors for select to anon using (true);
create policy read_all on items for select to anon using (true);
create policy add_any on items for insert to anon with check (true);
"""

# What every doska request runs first, in one round trip with BEGIN.
SETUP = ("select set_config('role', 'anon', true), set_config('request.jwt.claims', '{\"role\":\"anon\"}', true), "
         "set_config('request.method', 'GET', true), set_config('request.path', '/rest/v1/items', true), "
         "set_config('request.headers', '{}', true);\n")


def script(body):
    return "BEGIN;\n" + SETUP + body + "COMMIT;\n"


CASES = [
    ('GET one row by primary key', 0.7,
     "/rest/v1/items?select=*&id=eq.{id}",
     "\\set id random(1, 10000)\n",
     "WITH pgrst_source AS (SELECT items.* FROM public.items WHERE items.id = :id) "
     "SELECT NULL::bigint AS total, pg_catalog.count(_t) AS page_total, "
     "coalesce(json_agg(_t), '[]')::text AS body FROM (SELECT * FROM pgrst_source) _t;\n"),
    ('GET 50 rows, filter + order', 0.5,
     "/rest/v1/items?select=id,name,price&category=eq.{cat}&order=price.desc&limit=50",
     "\\set cat random(0, 99)\n",
     "WITH pgrst_source AS (SELECT items.id, items.name, items.price FROM public.items "
     "WHERE items.category = :cat ORDER BY items.price DESC LIMIT 50) "
     "SELECT NULL::bigint AS total, pg_catalog.count(_t) AS page_total, "
     "coalesce(json_agg(_t), '[]')::text AS body FROM (SELECT * FROM pgrst_source) _t;\n"),
    ('GET with a one-to-many embed', 0.5,
     "/rest/v1/authors?select=id,name,items(id,name)&id=eq.{author}",
     "\\set author random(1, 1000)\n",
     "WITH pgrst_source AS (SELECT authors.id, authors.name, coalesce(e.v, '[]') AS items FROM public.authors "
     "LEFT JOIN LATERAL (SELECT json_agg(x) AS v FROM (SELECT items.id, items.name FROM public.items "
     "WHERE items.author_id = authors.id) x) e ON true WHERE authors.id = :author) "
     "SELECT NULL::bigint AS total, pg_catalog.count(_t) AS page_total, "
     "coalesce(json_agg(_t), '[]')::text AS body FROM (SELECT * FROM pgrst_source) _t;\n"),
    ('POST one row (return=minimal)', 0.5, None,
     "\\set cat random(0, 99)\n",
     "INSERT INTO public.items (name, category, price) SELECT name, category, price FROM "
     "json_to_recordset(json_build_array(json_build_object('name', 'new', 'category', :cat::int, 'price', 1.5))) "
     "AS r(name text, category int, price numeric);\n"),
]

# Requests are formatted once, in init, and cycled: wrk's own docs warn that building one per call
# costs the client CPU, and on a 2-core machine the client's CPU is taken from the server's.
WRK_GET = """
local reqs = {}
local n = 0
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for k = 1, 4096 do
    local p = ("{path}"):gsub("{id}", math.random(1, 10000)):gsub("{cat}", math.random(0, 99)):gsub("{author}", math.random(1, 1000))
    reqs[k] = wrk.format("GET", p)
  end
  n = #reqs
end
request = function()
  i = i % n + 1
  return reqs[i]
end
"""

WRK_POST = """
local reqs = {}
local n = 0
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  local h = {["Content-Type"] = "application/json", ["Prefer"] = "return=minimal"}
  for k = 1, 4096 do
    local body = '{"name":"new","category":' .. math.random(0, 99) .. ',"price":1.5}'
    reqs[k] = wrk.format("POST", "/rest/v1/items", h, body)
  end
  n = #reqs
end
request = function()
  i = i % n + 1
  return reqs[i]
end
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=10)
    ap.add_argument('--conns', type=int, default=32)
    ap.add_argument('--db-pool', type=int, default=None, help="doska's pool size (default: doska's own default)")
    a = ap.parse_args()
    a.doska_args = ['--db-pool', str(a.db_pool)] if a.db_pool else []
    # doska runs with its default pool (4 × cores, at least 8): the 32 HTTP connections are
    # multiplexed over it, as PostgREST multiplexes over its pool of 10. pgbench, a client per
    # connection, needs its 32 backends.
    d = lib.Doska({'001_bench.sql': SCHEMA}, args=a.doska_args)
    rows = []
    try:
        # The fixture was just loaded: without this, autovacuum's first pass over it (and the
        # catalogs the migrations touched) lands inside whichever case runs a minute after start.
        d.psql('vacuum analyze')
        d.psql('checkpoint')
        for name, target, path, setvars, sql in CASES:
            with tempfile.NamedTemporaryFile('w', suffix='.lua', delete=False) as f:
                f.write(WRK_POST if path is None else WRK_GET.replace('{path}', path))
                lua = f.name
            headers = [f'apikey: {d.anon_key}', f'Authorization: Bearer {d.anon_key}']
            rate, p99 = lib.wrk(d.url, a.seconds, a.conns, lua, headers)
            os.unlink(lua)
            tps, pg_p99 = lib.pgbench(d, setvars + script(sql), a.seconds, a.conns)
            rows.append((f'{name}: rate', f'{rate:.0f}/s', f'{tps:.0f}/s', rate / tps, f'>= {target}', rate / tps >= target))
            rows.append((f'{name}: p99', f'{p99*1000:.2f}ms', f'{pg_p99*1000:.2f}ms', p99 / pg_p99, '<= 2.0', p99 / pg_p99 <= 2.0))
    finally:
        d.stop()
    print(f'\nbench/rest: wrk vs pgbench (-M extended), {a.conns} connections, {a.seconds}s each, {os.cpu_count()} cores')
    ok = lib.table(rows)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
