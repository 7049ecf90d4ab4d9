#!/usr/bin/env bash
# with-db.sh CMD...: runs CMD with DATABASE_URL and TEST_DATABASE_URL pointing at a PostgreSQL.
# When neither is set, a local throwaway cluster is started (scripts/pg.sh) and stopped again
# afterwards, unless it was already running before (then it is left as it was).
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
if [ "$was_running" = 0 ] && [ "${KEEP_DB:-0}" != 1 ]; then
  trap '"$root/scripts/pg.sh" stop' EXIT
fi
export DATABASE_URL=$("$root/scripts/pg.sh" url)
export TEST_DATABASE_URL=$DATABASE_URL
"$@"
