#!/usr/bin/env bash
# run.sh: the consumer and the example worker from bin/ in the foreground, together (make run,
# which builds them first and starts a local PostgreSQL when DATABASE_URL is unset).
#
#   DATABASE_URL=postgres://… scripts/run.sh
#
# Defaults (each can be overridden from the environment): CONSUMER_TEMPLATE_PATH=testdata/templates,
# CONSUMER_HTTP_ADDR=127.0.0.1:9090, LOG_FORMAT=console, WORKER_NAMESPACE=demo.
# Ctrl-C or SIGTERM stops both gracefully (a second one kills them). If either exits on its own,
# the other is stopped too and the script exits 1. It exits 0 only when both stopped cleanly.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { echo "run.sh: $*" >&2; exit 2; }

[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set (use 'make run', or: scripts/with-db.sh scripts/run.sh)"
for b in consumer example-worker; do
  [ -x "bin/$b" ] || die "bin/$b not found: run 'make build' first (make run does)"
done

export CONSUMER_TEMPLATE_PATH=${CONSUMER_TEMPLATE_PATH:-$root/testdata/templates}
export CONSUMER_HTTP_ADDR=${CONSUMER_HTTP_ADDR-127.0.0.1:9090} # set but empty: HTTP disabled
export LOG_FORMAT=${LOG_FORMAT:-console}
export WORKER_NAMESPACE=${WORKER_NAMESPACE:-demo}

http= readyz="HTTP disabled (CONSUMER_HTTP_ADDR is empty)" metrics=-
if [ -n "$CONSUMER_HTTP_ADDR" ]; then
  http=$CONSUMER_HTTP_ADDR
  case $http in :*) http=127.0.0.1$http ;; esac
  readyz=http://$http/readyz metrics=http://$http/metrics
fi

if [ -n "$http" ] && command -v curl >/dev/null 2>&1 && curl -s -o /dev/null --max-time 1 "$readyz" 2>/dev/null; then
  die "something already answers on $http (another 'make run'?); stop it or set CONSUMER_HTTP_ADDR"
fi

consumer= worker= stopping=0
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# stop forwards SIGTERM to both (graceful shutdown); called again, it kills them.
stop() {
  local sig=TERM
  if [ "$stopping" = 1 ]; then
    sig=KILL
    echo "run.sh: stopping again: killing both" >&2
  fi
  stopping=1
  for pid in "$consumer" "$worker"; do
    if alive "$pid"; then kill -s "$sig" "$pid" 2>/dev/null || true; fi
  done
}
trap stop INT TERM

bin/consumer run &
consumer=$!

# The worker starts once the consumer is ready: by then the schema and the worker queue exist.
if [ -n "$http" ] && command -v curl >/dev/null 2>&1; then
  for _ in $(seq 600); do
    if ! alive "$consumer" || [ "$stopping" = 1 ]; then break; fi
    if curl -fsS -o /dev/null --max-time 1 "$readyz" 2>/dev/null; then break; fi
    sleep 0.1 & wait $! || true
  done
fi

if alive "$consumer" && [ "$stopping" = 0 ]; then
  bin/example-worker &
  worker=$!
  cat >&2 <<EOF

run.sh: the consumer and the example worker (namespace $WORKER_NAMESPACE) are running; Ctrl-C stops both.
  readiness: $readyz
  metrics:   $metrics
  submit a task from another terminal (an identical context is a duplicate: vary n):
    DATABASE_URL='$DATABASE_URL' bin/consumer submit --namespace demo --name linear --version 1.0.0 --context '{"n":6}' --wait
  then: bin/consumer status TASK_UUID (same DATABASE_URL); templates in $CONSUMER_TEMPLATE_PATH

EOF
fi

# Wait until either exits or a signal arrives (the trap interrupts the sleep's wait).
while alive "$consumer" && alive "$worker" && [ "$stopping" = 0 ]; do
  sleep 0.2 & wait $! || true
done

failed=0
if [ "$stopping" = 0 ]; then
  if alive "$consumer"; then died="example worker"; else died=consumer; fi
  echo "run.sh: the $died exited on its own; stopping the other" >&2
  failed=1
  stop
fi

# reap PID: waits for PID to exit (a signal interrupts wait: keep waiting) and sets rc to its
# exit status. Not in a $(subshell): only this shell can wait for its children.
reap() {
  rc=0
  [ -n "$1" ] || return 0
  while alive "$1"; do wait "$1" 2>/dev/null || true; done
  wait "$1" 2>/dev/null || rc=$?
}
reap "$consumer"; consumer_rc=$rc
reap "$worker"; worker_rc=$rc
echo "run.sh: consumer exited $consumer_rc, example worker exited $worker_rc" >&2
if [ "$failed" = 1 ] || [ "$consumer_rc" != 0 ] || [ "$worker_rc" != 0 ]; then
  exit 1
fi
