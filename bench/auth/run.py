#!/usr/bin/env python3
"""bench/auth: sign-in, refresh and REST-under-flood figures beside their anchors, in one run.
  (a) sign-in/s ≥ 0.9 × (argon2id verifications/s on one core, measured now with doska's own code and
      cost) × (hashing pool size);
  (b) REST GET/s while a sign-in flood runs ≥ 0.4 × REST GET/s idle;
  (c) refresh-token grants/s ≥ 0.5 × pgbench running the same rotation SQL on the same database.
Also reports the time difference between unknown-user and wrong-password sign-ins (not a target).
Usage: bench/auth/run.py [--seconds N]"""
import argparse, http.client, json, os, statistics, subprocess, sys, tempfile, time, urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
import lib  # noqa: E402

SCHEMA = """
create table items (id int primary key, name text not null);
insert into items select g, 'item ' || g from generate_series(1, 10000) g;
alter table items enable row level security;
create policy read_all on items for select to anon, authenticated using (true);
"""
PASSWORD = 'bench-password-123'

SIGNIN_LUA = """
math.randomseed(os.time())
request = function()
  local body = '{"email":"user' .. math.random(1, %d) .. '@bench.test","password":"%s"}'
  return wrk.format("POST", "/auth/v1/token?grant_type=password", {["Content-Type"] = "application/json"}, body)
end
"""

GET_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/rest/v1/items?select=*&id=eq." .. math.random(1, 10000))
end
"""

# Each connection's response hands back the next refresh token; a token is never presented twice.
REFRESH_LUA = """
local queue = {}
init = function(args) for _, t in ipairs(args) do table.insert(queue, t) end end
request = function()
  local t = table.remove(queue, 1)
  return wrk.format("POST", "/auth/v1/token?grant_type=refresh_token", {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. t .. '"}')
end
response = function(status, headers, body)
  local t = body:match('"refresh_token":"([^"]+)"')
  if t then table.insert(queue, t) end
end
"""

# The statements doska's refresh grant runs (auth::refresh::rotate + users::by_id), with the
# presented token found by the client's session instead of by its hash (same index work).
ROTATE_SQL = """BEGIN;
select rt.token as tok, rt.revoked, extract(epoch from now() - rt.updated_at)::float8 as age, rt.session_id as sid, s.user_id as uid, s.created_at, (s.not_after is not null and s.not_after < now()) as expired from auth.refresh_tokens rt join auth.sessions s on s.id = rt.session_id where rt.session_id = md5('bench-' || :client_id)::uuid and not rt.revoked for update of rt \\gset
update auth.refresh_tokens set revoked = true, updated_at = now() where token = :tok;
insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, parent, session_id) values ('00000000-0000-0000-0000-000000000000', encode(sha256(extensions.gen_random_bytes(32)), 'hex'), :uid, false, now(), now(), :tok, :sid::uuid);
delete from auth.refresh_tokens where session_id = :sid::uuid and revoked and updated_at < now() - interval '1 day';
update auth.sessions set refreshed_at = now() at time zone 'utc', updated_at = now() where id = :sid::uuid;
select * from auth.users where id = :uid::uuid;
COMMIT;
"""


def post(url, path, body, headers=()):
    u = urllib.parse.urlparse(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    c.request('POST', path, json.dumps(body), {'Content-Type': 'application/json', **dict(headers)})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def lua(text):
    f = tempfile.NamedTemporaryFile('w', suffix='.lua', delete=False)
    f.write(text)
    f.close()
    return f.name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seconds', type=int, default=10)
    ap.add_argument('--users', type=int, default=20)
    a = ap.parse_args()
    per_core = json.loads(lib.sh(['cargo', 'run', '-q', '--release', '-p', 'doska', '--example', 'argon2_rate', '--', '3'],
                                 cwd=lib.ROOT))['per_core']
    pool = max(1, (os.cpu_count() or 2) - 1)
    d = lib.Doska({'001_bench.sql': SCHEMA}, args=['--rate-limits', 'off'])
    rows = []
    try:
        svc = [('apikey', d.service_key), ('Authorization', f'Bearer {d.service_key}')]
        for i in range(1, a.users + 1):
            st, body = post(d.url, '/auth/v1/admin/users',
                            {'email': f'user{i}@bench.test', 'password': PASSWORD, 'email_confirm': True}, svc)
            assert st == 200, (st, body)
        anon = [f'apikey: {d.anon_key}']

        # (a) sign-in throughput against the hashing ceiling.
        signin = lua(SIGNIN_LUA % (a.users, PASSWORD))
        rate, _ = lib.wrk(d.url, a.seconds, 8, signin, anon)
        ceiling = per_core * pool
        rows.append(('sign-in/s vs argon2/s/core × pool', f'{rate:.1f}/s', f'{ceiling:.1f}/s', rate / ceiling, '>= 0.9', rate / ceiling >= 0.9))

        # (b) REST while a sign-in flood runs.
        get = lua(GET_LUA)
        idle, _ = lib.wrk(d.url, a.seconds, 16, get, anon)
        flood = subprocess.Popen(['wrk', '-t1', '-c16', f'-d{a.seconds + 4}s', '-s', signin, '-H', anon[0], d.url],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        busy, _ = lib.wrk(d.url, a.seconds, 16, get, anon)
        flood.wait()
        rows.append(('REST GET/s during sign-in flood vs idle', f'{busy:.0f}/s', f'{idle:.0f}/s', busy / idle, '>= 0.4', busy / idle >= 0.4))

        # (c) refresh grants vs pgbench running the rotation SQL.
        conns = 16
        tokens = []
        for i in range(conns * 2):
            st, body = post(d.url, '/auth/v1/token?grant_type=password',
                            {'email': f'user{1 + i % a.users}@bench.test', 'password': PASSWORD}, [('apikey', d.anon_key)])
            assert st == 200, (st, body)
            tokens.append(json.loads(body)['refresh_token'])
        refresh = lua(REFRESH_LUA)
        out = lib.sh(['wrk', '-t1', f'-c{conns}', f'-d{a.seconds}s', '--latency', '-s', refresh, '-H', anon[0], d.url, '--', *tokens])
        import re
        rrate = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
        if 'Non-2xx' in out:
            raise SystemExit('refresh grants failed:\n' + out)
        uid = d.psql("select id from auth.users where email = 'user1@bench.test'").strip()
        d.psql(f"""insert into auth.sessions (id, user_id, created_at, updated_at, aal)
                    select md5('bench-' || g)::uuid, '{uid}', now(), now(), 'aal1' from generate_series(0, {conns - 1}) g;
                  insert into auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, session_id)
                    select '00000000-0000-0000-0000-000000000000', md5(random()::text), '{uid}', false, now(), now(),
                           md5('bench-' || g)::uuid from generate_series(0, {conns - 1}) g;""")
        tps, _ = lib.pgbench(d, ROTATE_SQL, a.seconds, conns, user='postgres')
        rows.append(('refresh grants/s vs pgbench rotation SQL', f'{rrate:.0f}/s', f'{tps:.0f}/s', rrate / tps, '>= 0.5', rrate / tps >= 0.5))

        # Unknown user vs wrong password: same work by design; report the difference.
        def timed(email, password):
            t = time.perf_counter()
            st, _ = post(d.url, '/auth/v1/token?grant_type=password', {'email': email, 'password': password}, [('apikey', d.anon_key)])
            assert st == 400
            return time.perf_counter() - t
        unknown, wrong = [], []
        for i in range(30):
            unknown.append(timed(f'nobody{i}@bench.test', 'whatever-123'))
            wrong.append(timed('user1@bench.test', 'not-the-password'))
        mu, mw = statistics.median(unknown), statistics.median(wrong)
    finally:
        d.stop()
    print(f'\nbench/auth: {os.cpu_count()} cores, hashing pool {pool}, argon2id {per_core:.1f} verifications/s on one core, {a.seconds}s runs')
    ok = lib.table(rows)
    print(f'\nunknown user vs wrong password (30 each, sequential): median {mu*1000:.1f} ms vs {mw*1000:.1f} ms, '
          f'difference {(mu - mw)*1000:+.1f} ms ({(mu - mw) / mw * 100:+.1f}%)')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
