#!/usr/bin/env bash
# Throwaway PgBouncer in transaction pooling mode in front of the local cluster (scripts/pg.sh),
# for the tests that prove the consumer works behind a transaction pooler.
#
#   scripts/pgbouncer.sh start   install (Debian's pgbouncer package, when missing) and start
#   scripts/pgbouncer.sh stop    stop it
#   scripts/pgbouncer.sh url     print the pooled connection string of the consumer database
#
# It listens on 127.0.0.1:${CONSUMER_PGBOUNCER_PORT:-16432 for the default cluster port} only and forwards every
# database to the local cluster at 127.0.0.1:${CONSUMER_PG_PORT:-54329}, with trust authentication (a loopback test setup).
# Server-side prepared statements do not survive transaction pooling in PgBouncer before 1.21,
# so pgx clients use default_query_exec_mode=cache_describe through it (see docs/operations.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pg_port=${CONSUMER_PG_PORT:-54329}
# Below Linux's ephemeral port range (32768 and up), so an outgoing connection never holds it.
port=${CONSUMER_PGBOUNCER_PORT:-$((pg_port - 54329 + 16432))}
dir="/tmp/consumer-pgbouncer-$(printf '%s:%s' "$root" "$port" | md5sum | cut -c1-10)"

die() { echo "pgbouncer.sh: $*" >&2; exit 1; }

find_binary() {
  command -v pgbouncer 2>/dev/null && return 0
  [ -x /usr/sbin/pgbouncer ] && { echo /usr/sbin/pgbouncer; return 0; }
  return 1
}

ensure_binary() {
  bin=$(find_binary) && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "pgbouncer.sh: pgbouncer not found; installing Debian's pgbouncer package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >&2
    bin=$(find_binary) && return 0
  fi
  die "pgbouncer not found: install it (Debian: apt-get install pgbouncer)"
}

# PgBouncer refuses to run as root; as root it runs as the postgres user, like the server.
run_as() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() { echo "postgres://postgres@127.0.0.1:$port/consumer?sslmode=disable"; }

running() { [ -f "$dir/pgbouncer.pid" ] && kill -0 "$(cat "$dir/pgbouncer.pid")" 2>/dev/null; }

start() {
  ensure_binary
  running && return 0
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF
  echo '"postgres" ""' >"$dir/userlist.txt"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"/*
  run_as "$bin" -d "$dir/pgbouncer.ini" >/dev/null 2>&1 || { tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null; die "pgbouncer did not start (port $port in use?)"; }
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  tail -n 20 "$dir/pgbouncer.log" >&2 2>/dev/null
  die "pgbouncer is not accepting connections on 127.0.0.1:$port"
}

stop() {
  running || return 0
  kill "$(cat "$dir/pgbouncer.pid")"
  for _ in $(seq 1 100); do running || return 0; sleep 0.05; done
  die "pgbouncer did not stop"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
