#!/usr/bin/env bash
# Local throwaway PostgreSQL cluster for tests, demos and benchmarks.
#
#   scripts/pg.sh start   initdb (first time) and start; prints nothing else on success
#   scripts/pg.sh stop    stop the cluster (keeps the data directory)
#   scripts/pg.sh destroy stop and delete the data directory
#   scripts/pg.sh url     print the connection string of the local cluster's consumer database
#
# The cluster has a database named consumer (created on start). Data lives in .pgdata/ (git-ignored) unless the postgres user cannot reach the checkout, in
# which case a directory under /tmp named after the checkout is used. The server listens on
# 127.0.0.1:${CONSUMER_PG_PORT:-54329} only, with trust authentication on loopback.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${CONSUMER_PG_PORT:-54329}

die() { echo "pg.sh: $*" >&2; exit 1; }

find_bindir() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    # Resolve symlinks: the real directory also holds psql and createdb.
    dirname "$(readlink -f "$(command -v pg_ctl)")"; return 0
  fi
  if command -v pg_config >/dev/null 2>&1; then
    local d; d=$(pg_config --bindir)
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

ensure_server_binaries() {
  bindir=$(find_bindir) && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "pg.sh: PostgreSQL server not found; installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    # The package starts its own cluster on 5432; we don't use it.
    bindir=$(find_bindir) && return 0
  fi
  die "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL 14+ (Debian: apt-get install postgresql) or set DATABASE_URL"
}

# run_pg runs a server binary as the postgres user when we are root (postgres refuses root).
run_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

pick_datadir() {
  local d="$root/.pgdata"
  if [ "$(id -u)" != 0 ]; then echo "$d"; return; fi
  id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to run the server"
  mkdir -p "$d"; chown postgres: "$d"; chmod 700 "$d"
  if runuser -u postgres -- test -w "$d"; then echo "$d"; return; fi
  # The checkout is not reachable by the postgres user (for example under /root).
  local h; h=$(printf '%s' "$root" | md5sum | cut -c1-10)
  d="/tmp/consumer-pgdata-$h"
  mkdir -p "$d"; chown postgres: "$d"; chmod 700 "$d"
  echo "$d"
}

url() { echo "postgres://postgres@127.0.0.1:$port/consumer?sslmode=disable"; }

start() {
  ensure_server_binaries
  local data; data=$(pick_datadir)
  if [ ! -f "$data/PG_VERSION" ]; then
    run_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$root/.pgdata.initdb.log" 2>&1 \
      || { cat "$root/.pgdata.initdb.log" >&2; die "initdb failed"; }
  fi
  if ! run_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    start_server "$data"
  fi
  # The database the consumer, the demo and the tests connect to.
  if ! run_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'consumer'" | grep -q 1; then
    run_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres consumer
  fi
}

start_server() {
  local data=$1
  # pg_stat_statements is preloaded when the server has it, so benchmarks and profiling can
  # read per-statement costs (they create the extension themselves; migrations never do).
  local preload=""
  if [ -f "$("$bindir/pg_config" --pkglibdir 2>/dev/null || echo /nonexistent)/pg_stat_statements.so" ]; then
    preload="-c shared_preload_libraries=pg_stat_statements"
  fi
  # fsync off: a throwaway cluster; a server crash (not an OS crash) still loses no commit.
  run_pg "$bindir/pg_ctl" -D "$data" -w -t 60 -l "$data/server.log" \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300 -c fsync=off -c full_page_writes=off -c shared_buffers=256MB $preload" \
    start >/dev/null || { tail -n 30 "$data/server.log" >&2; die "server did not start (port $port in use?)"; }
}

stop() {
  bindir=$(find_bindir) || return 0
  local data; data=$(pick_datadir)
  [ -f "$data/PG_VERSION" ] || return 0
  if run_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    run_pg "$bindir/pg_ctl" -D "$data" -w -t 60 -m fast stop >/dev/null
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  destroy) stop; rm -rf "$(pick_datadir)" ;;
  url) url ;;
  restart) ensure_server_binaries; data=$(pick_datadir); run_pg "$bindir/pg_ctl" -D "$data" -w -m "${2:-fast}" restart >/dev/null ;;
  datadir) pick_datadir ;;
  *) echo "usage: $0 start|stop|destroy|url|restart [fast|immediate]|datadir" >&2; exit 2 ;;
esac
