#!/usr/bin/env bash
# bench/rest: doska's REST door against pgbench doing the same per-request work (BEGIN, set role and
# claims, the SELECT or INSERT, COMMIT) on the same database, at the same concurrency, one target
# after the other; prints both rates, their ratio, p99 latencies and PASS/FAIL per target.
#   bench/rest/run.sh                 release build, 10 s per run, 32 connections
#   DURATION=3 CONNECTIONS=8 DOSKA_BIN=target/debug/doska bench/rest/run.sh   (a quick smoke run)
# Needs wrk and pgbench (PostgreSQL's), runs its own PostgreSQL as the postgres user under /tmp.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/rest
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
if [ -z "${DOSKA_BIN:-}" ]; then
  cargo build --release -p doska >&2
  DOSKA_BIN=target/release/doska
fi
command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 2; }

WORK=$(mktemp -d /tmp/doska-bench-XXXXXX)
chmod 755 "$WORK"
chown postgres "$WORK"
PGDATA="$WORK/pg"
PORT=$((20000 + RANDOM % 20000))
DOSKA_PID=""
cleanup() {
  [ -n "$DOSKA_PID" ] && kill "$DOSKA_PID" 2>/dev/null && wait "$DOSKA_PID" 2>/dev/null || true
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$PGDATA" && chown postgres "$PGDATA"
runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA" -E UTF8 --locale=C.UTF-8 -A trust >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/log" -w \
  -o "-p $PORT -k $WORK -c listen_addresses= -c max_connections=200 -c shared_buffers=256MB -c fsync=off -c synchronous_commit=off -c wal_level=logical" start >/dev/null
PSQL=("$PGBIN/psql" -h "$WORK" -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1)
"${PSQL[@]}" -d postgres -c "create database bench"

mkdir -p "$WORK/migrations" "$WORK/policies"
cp "$HERE/schema.sql" "$WORK/migrations/0001_bench.sql"
"$DOSKA_BIN" serve --listen 127.0.0.1:0 --log-format json --data-dir "$WORK/data" \
  --database-url "postgres://postgres@localhost/bench?host=$WORK&port=$PORT" \
  --migrations "$WORK/migrations" --policies "$WORK/policies" --db-pool "$CONNECTIONS" \
  2>"$WORK/doska.log" >/dev/null &
DOSKA_PID=$!
URL=""
for _ in $(seq 1 120); do
  URL=$(grep -o '"url":"[^"]*"' "$WORK/doska.log" | head -1 | cut -d'"' -f4 || true)
  [ -n "$URL" ] && break
  kill -0 "$DOSKA_PID" 2>/dev/null || { cat "$WORK/doska.log" >&2; exit 1; }
  sleep 0.5
done
[ -n "$URL" ] || { echo "bench: doska did not start" >&2; cat "$WORK/doska.log" >&2; exit 1; }

# p99 in ms from pgbench's per-transaction log (3rd field: latency in µs).
pg_p99() { cat "$1".* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}'; }
# wrk's "99%" latency line, in ms.
wrk_p99() { awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.2f", v}' "$1"; }

printf '%-14s %12s %12s %7s %8s %10s %10s %7s %s\n' target doska_rps pgbench_tps ratio needed doska_p99 pg_p99 p99x result
FAILED=0
for target in get_pk get_filter get_embed post_row; do
  need=0.5; [ "$target" = get_pk ] && need=0.7
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$HERE/$target.lua" "$URL" >"$WORK/$target.wrk"
  doska_rps=$(awk '/^Requests\/sec:/ {print $2}' "$WORK/$target.wrk")
  non2xx=$(awk '/Non-2xx/ {print $5}' "$WORK/$target.wrk")
  (cd "$WORK" && "$PGBIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -n -M extended -c "$CONNECTIONS" -j "$THREADS" \
    -T "$DURATION" -l --log-prefix="$WORK/$target.pglog" -f "$OLDPWD/$HERE/$target.sql" bench >"$WORK/$target.pgb" 2>&1)
  pg_tps=$(awk '/^tps = / {print $3; exit}' "$WORK/$target.pgb")
  ratio=$(awk -v a="$doska_rps" -v b="$pg_tps" 'BEGIN {printf "%.2f", a/b}')
  dp99=$(wrk_p99 "$WORK/$target.wrk")
  pp99=$(pg_p99 "$WORK/$target.pglog")
  p99x=$(awk -v a="$dp99" -v b="$pp99" 'BEGIN {printf "%.2f", a/b}')
  result=PASS
  awk -v r="$ratio" -v n="$need" -v x="$p99x" 'BEGIN {exit !(r >= n && x <= 2)}' || result=FAIL
  [ -n "$non2xx" ] && result="FAIL(non-2xx:$non2xx)"
  [ "$result" = PASS ] || FAILED=1
  printf '%-14s %12s %12s %7s %8s %10s %10s %7s %s\n' "$target" "$doska_rps" "$pg_tps" "$ratio" "$need" "$dp99" "$pp99" "$p99x" "$result"
done
echo "machine: $(nproc) cpu, $(uname -sr); duration ${DURATION}s, ${CONNECTIONS} connections, doska $DOSKA_BIN"
exit $FAILED
