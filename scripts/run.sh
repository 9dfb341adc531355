#!/usr/bin/env bash
# Command 1: install what is missing, start PostgreSQL+PostGIS and Redis under var/,
# migrate, seed the demo city and serve the marketplace on 127.0.0.1:8000. Ctrl-C stops it all.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

PG_PORT="${GASDISPATCH_PG_PORT:-55432}"
REDIS_PORT="${GASDISPATCH_REDIS_PORT:-56379}"
PG_PASSWORD="${GASDISPATCH_PG_PASSWORD:-gasdispatch-local}"

ensure_debian_packages
ensure_venv

started_pg=0; started_redis=0
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$(pg_data_dir pg)" status >/dev/null 2>&1 || started_pg=1
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || started_redis=1
cleanup() {
  [ "$started_redis" = 1 ] && stop_redis "$REDIS_PORT"
  [ "$started_pg" = 1 ] && stop_postgres pg
  log "stopped"
}
trap cleanup EXIT INT TERM

start_postgres pg "$PG_PORT" "$PG_PASSWORD" gasdispatch
start_redis redis "$REDIS_PORT"

export GASDISPATCH_DATABASE_URL="${GASDISPATCH_DATABASE_URL:-postgresql+asyncpg://postgres:$PG_PASSWORD@127.0.0.1:$PG_PORT/gasdispatch}"
export GASDISPATCH_REDIS_URL="${GASDISPATCH_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
# This install's own secrets (JWT, QR, Stripe webhook, metrics, one per IoT platform), generated
# once into var/secrets.env (0600) and read by every command; development values are refused.
gasdispatch secrets init

gasdispatch migrate
gasdispatch seed --city demo
gasdispatch seed --city shanghai
log "API:      http://127.0.0.1:8000/v1"
log "docs:     http://127.0.0.1:8000/docs"
log "health:   http://127.0.0.1:8000/v1/health"
log "metrics:  http://127.0.0.1:8000/metrics (Authorization: Bearer \$GASDISPATCH_METRICS_TOKEN from var/secrets.env)"
log "IoT platforms push to http://127.0.0.1:8000/v1/telemetry/<platform>, signed with that platform's"
log "          secret in GASDISPATCH_METERS_WEBHOOK_SECRETS (var/secrets.env); see the README, Meters"
gasdispatch serve --host 127.0.0.1 --port 8000
