#!/usr/bin/env bash
# Command 2: the whole test suite against its own PostgreSQL+PostGIS, Redis and
# Stripe-compatible server (localstripe + Connect plugin), all on loopback; stopped afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PG_PORT="${GASDISPATCH_TEST_PG_PORT:-55442}"
REDIS_PORT="${GASDISPATCH_TEST_REDIS_PORT:-56389}"
STRIPE_PORT="${GASDISPATCH_TEST_STRIPE_PORT:-58420}"
CLUSTER_PORTS=(16301 16302 16303)  # and port + 10000 for the cluster bus: all below the ephemeral range (32768+), where a free-port pick of another process may land
PG_PASSWORD=gasdispatch-test

NEED_TEST_TOOLS=1 ensure_debian_packages
ensure_venv

stripe_pid=""
cleanup() {
  [ -n "$stripe_pid" ] && kill "$stripe_pid" 2>/dev/null || true
  stop_redis "$REDIS_PORT"
  for port in "${CLUSTER_PORTS[@]}"; do stop_redis "$port"; done
  stop_postgres pg-test
}
trap cleanup EXIT INT TERM

# The test cluster holds nothing worth keeping: skip fsync for speed.
PG_FSYNC=off start_postgres pg-test "$PG_PORT" "$PG_PASSWORD" gasdispatch_test
start_redis redis-test "$REDIS_PORT"
start_redis_cluster redis-cluster-test "${CLUSTER_PORTS[@]}"

mkdir -p var/test
python tests/support/stripe_server.py --host 127.0.0.1 --port "$STRIPE_PORT" > var/test/stripe.log 2>&1 &
stripe_pid=$!
python - "$STRIPE_PORT" <<'PY'
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()
        break
    except OSError:
        time.sleep(0.1)
PY

export GASDISPATCH_DATABASE_URL="postgresql+asyncpg://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/gasdispatch_test"
export GASDISPATCH_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export GASDISPATCH_TEST_REDIS_PORT="$REDIS_PORT"
export GASDISPATCH_TEST_REDIS_CLUSTER_PORTS="$(IFS=,; echo "${CLUSTER_PORTS[*]}")"
export GASDISPATCH_STRIPE_API_BASE="http://127.0.0.1:$STRIPE_PORT"
export GASDISPATCH_JWT_SECRET="test-secret-not-for-production-0123456789"
export GASDISPATCH_EMBEDDED_WORKER=false

python -m pytest "$@"
