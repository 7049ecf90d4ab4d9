#!/usr/bin/env bash
# with-db.sh CMD...: runs CMD with DATABASE_URL and TEST_DATABASE_URL pointing at a PostgreSQL.
# When neither is set, a local throwaway cluster is started (scripts/pg.sh) and stopped again
# afterwards, unless it was already running before (then it is left as it was). With the local
# cluster comes a PgBouncer in transaction mode in front of it (TEST_PGBOUNCER_URL).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ -n "${TEST_DATABASE_URL:-}" ] || [ -n "${DATABASE_URL:-}" ]; then
  export TEST_DATABASE_URL=${TEST_DATABASE_URL:-$DATABASE_URL}
  export DATABASE_URL=${DATABASE_URL:-$TEST_DATABASE_URL}
  exec "$@"
fi

was_running=0
if "$root/scripts/pg.sh" url >/dev/null && command -v psql >/dev/null 2>&1 \
   && psql "$("$root/scripts/pg.sh" url)" -Atqc 'select 1' >/dev/null 2>&1; then
  was_running=1
fi
"$root/scripts/pg.sh" start
# A PgBouncer in transaction mode in front of it, for the tests that run the consumer through one.
"$root/scripts/pgbouncer.sh" start
if [ "$was_running" = 0 ] && [ "${KEEP_DB:-0}" != 1 ]; then
  trap '"$root/scripts/pgbouncer.sh" stop; "$root/scripts/pg.sh" stop' EXIT
fi
export DATABASE_URL=$("$root/scripts/pg.sh" url)
export TEST_DATABASE_URL=$DATABASE_URL
export TEST_PGBOUNCER_URL=$("$root/scripts/pgbouncer.sh" url)
"$@"
