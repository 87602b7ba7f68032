#!/usr/bin/env bash
# The scaled configuration on one machine, from Debian's packages, for trying it out: PostgreSQL
# (wal_level=logical), Redis, two doska instances on them, and nginx in front with
# deploy/nginx-doska.conf rendered for local use (a self-signed certificate, local ports, both
# instances as its upstream). Everything lives in one folder; nothing is installed as a service.
#
#   deploy/local-cluster.sh start     start what is not running (installs missing packages as root)
#   deploy/local-cluster.sh stop      stop everything it started (the data stays for the next start)
#   deploy/local-cluster.sh status    what runs
#
# Settings (environment): DOSKA_BIN (default target/release/doska, else target/debug/doska),
# DOSKA_CLUSTER_DIR (default /tmp/doska-local-cluster: the `postgres` user must reach it),
# LC_HTTPS_PORT (8443), LC_HTTP_PORT (8080), LC_A_PORT (8001), LC_B_PORT (8002), LC_PG_PORT (54329),
# LC_REDIS_PORT (63790). doska runs from the repository, so its migrations, policies and the
# TeacherUchit app are the defaults'.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

dir="${DOSKA_CLUSTER_DIR:-/tmp/doska-local-cluster}"
https_port="${LC_HTTPS_PORT:-8443}"
http_port="${LC_HTTP_PORT:-8080}"
a_port="${LC_A_PORT:-8001}"
b_port="${LC_B_PORT:-8002}"
pg_port="${LC_PG_PORT:-54329}"
redis_port="${LC_REDIS_PORT:-63790}"
if [ -z "${DOSKA_BIN:-}" ]; then
  if [ -x target/release/doska ]; then DOSKA_BIN="$repo/target/release/doska"; else DOSKA_BIN="$repo/target/debug/doska"; fi
fi

say() { echo "local-cluster: $*" >&2; }
die() { say "$*"; exit 1; }

pg_bin() {
  local b
  b="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$b" ] && echo "$b" || dirname "$(command -v postgres 2>/dev/null || echo /usr/bin/postgres)"
}

# Runs a PostgreSQL tool as the `postgres` user when we are root (PostgreSQL refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

need_packages() {
  local missing=()
  [ -x "$(pg_bin)/postgres" ] || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing packages: ${missing[*]} (sudo apt-get install ${missing[*]})"
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # url what
  for _ in $(seq 1 300); do
    curl -sk -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.2
  done
  die "$2 did not answer at $1 (see $dir/*.log)"
}

start_pg() {
  if [ -f "$dir/pg/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    return
  fi
  mkdir -p "$dir/run"
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    mkdir -p "$dir/pg"
    if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/pg"; fi
    chmod 700 "$dir/pg"
    as_pg "$(pg_bin)/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # The socket and the server's log go where the `postgres` user may write.
  if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$dir/run"; fi
  as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -l "$dir/run/pg.log" -w start \
    -o "-c port=$pg_port -c listen_addresses='' -c unix_socket_directories=$dir/run -c wal_level=logical -c max_connections=200" >/dev/null
  say "PostgreSQL on $dir/run (port $pg_port)"
}

start_redis() {
  alive "$dir/redis.pid" && return
  redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" --dir "$dir" --save "" --appendonly no
  for _ in $(seq 1 100); do alive "$dir/redis.pid" && break; sleep 0.1; done
  say "Redis on 127.0.0.1:$redis_port"
}

start_doska() { # name port
  alive "$dir/$1.pid" && return
  [ -x "$DOSKA_BIN" ] || die "no doska binary at $DOSKA_BIN (cargo build --release, or set DOSKA_BIN)"
  DOSKA_DATABASE_URL="host=$dir/run port=$pg_port user=postgres dbname=postgres" \
  DOSKA_REDIS_URL="redis://127.0.0.1:$redis_port" \
  DOSKA_TRUSTED_PROXIES="127.0.0.1,::1" \
  DOSKA_EXTERNAL_URL="https://127.0.0.1:$https_port" \
    nohup "$DOSKA_BIN" serve --listen "127.0.0.1:$2" --data-dir "$dir/$1" >"$dir/$1.log" 2>&1 &
  echo $! >"$dir/$1.pid"
  wait_for "http://127.0.0.1:$2/health" "doska $1"
  say "doska $1 on http://127.0.0.1:$2"
}

render_nginx() {
  local n="$dir/nginx"
  mkdir -p "$n"
  if [ ! -f "$n/cert.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
      -keyout "$n/key.pem" -out "$n/cert.pem" >/dev/null 2>&1
  fi
  sed -e "s|/etc/letsencrypt/live/school.example.org/fullchain.pem|$n/cert.pem|" \
      -e "s|/etc/letsencrypt/live/school.example.org/privkey.pem|$n/key.pem|" \
      -e "s|/var/www/letsencrypt|$n|" \
      -e "s|server_name school.example.org;|server_name localhost 127.0.0.1;|" \
      -e "s|server 127.0.0.1:8000 max_fails=3 fail_timeout=10s;|server 127.0.0.1:$a_port max_fails=3 fail_timeout=10s;\n    server 127.0.0.1:$b_port max_fails=3 fail_timeout=10s;|" \
      -e "s|listen 80;|listen 127.0.0.1:$http_port;|" \
      -e "s|listen 443 ssl http2;|listen 127.0.0.1:$https_port ssl http2;|" \
      -e "s|return 301 https://\$host\$request_uri;|return 301 https://\$host:$https_port\$request_uri;|" \
      -e "/listen \[::\]/d" \
      deploy/nginx-doska.conf >"$n/site.conf"
  cat >"$n/nginx.conf" <<CONF
pid $n/nginx.pid;
error_log $n/error.log;
events {}
http {
  access_log $n/access.log;
  client_body_temp_path $n/body;
  proxy_temp_path $n/proxy;
  fastcgi_temp_path $n/fcgi;
  uwsgi_temp_path $n/uwsgi;
  scgi_temp_path $n/scgi;
  include $n/site.conf;
}
CONF
}

start_nginx() {
  alive "$dir/nginx/nginx.pid" && return
  render_nginx
  nginx -t -q -c "$dir/nginx/nginx.conf" || die "nginx -t failed for $dir/nginx/nginx.conf"
  nginx -c "$dir/nginx/nginx.conf"
  wait_for "https://127.0.0.1:$https_port/health" "nginx"
  say "nginx on https://127.0.0.1:$https_port (self-signed) and http://127.0.0.1:$http_port"
}

stop_pid() { # pidfile what
  alive "$1" || { rm -f "$1"; return 0; }
  local pid
  pid="$(cat "$1")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$2 did not stop within 15 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
  say "$2 stopped"
}

case "${1:-}" in
  start)
    need_packages
    mkdir -p "$dir"
    chmod 755 "$dir"
    start_pg
    start_redis
    start_doska a "$a_port"
    start_doska b "$b_port"
    start_nginx
    say "running: https://127.0.0.1:$https_port (stop with: deploy/local-cluster.sh stop)"
    ;;
  stop)
    stop_pid "$dir/nginx/nginx.pid" nginx
    stop_pid "$dir/b.pid" "doska b"
    stop_pid "$dir/a.pid" "doska a"
    stop_pid "$dir/redis.pid" Redis
    if [ -f "$dir/pg/postmaster.pid" ]; then
      as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null && say "PostgreSQL stopped"
    fi
    ;;
  status)
    for p in nginx/nginx.pid a.pid b.pid redis.pid pg/postmaster.pid; do
      if [ -f "$dir/$p" ] && kill -0 "$(head -n 1 "$dir/$p")" 2>/dev/null; then
        echo "running  $p ($(head -n 1 "$dir/$p"))"
      else
        echo "stopped  $p"
      fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
