# Shared set-up for scripts/run.sh and scripts/test.sh: Debian packages, the venv,
# and local PostgreSQL+PostGIS / Redis processes on loopback. Sourced, not run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
VENV="$ROOT/.venv"

log() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

ensure_debian_packages() {
  local missing=()
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
  [ -f /usr/share/postgresql/15/extension/postgis.control ] || missing+=(postgresql-15-postgis-3)
  command -v redis-server >/dev/null || missing+=(redis-server)
  # Tests only: the browser tests drive Debian's Chromium (with a CJK font for the screenshots).
  if [ "${NEED_TEST_TOOLS:-0}" = 1 ]; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
    # The fault suite's short run skews one process's clock with libfaketime.
    [ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || missing+=(faketime)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
  fi
}

ensure_venv() {
  local stamp="$VENV/.installed-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
  if [ ! -f "$stamp" ]; then
    log "installing the project into $VENV"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
  export PATH="$VENV/bin:$PATH"
}

# PostgreSQL refuses to run as root and the checkout may sit under a folder the
# postgres user cannot enter; then the cluster lives in /var/tmp and var/ links to it.
pg_data_dir() {
  local name="$1" wanted="$ROOT/var/$1"
  mkdir -p "$ROOT/var"
  if [ -L "$wanted" ]; then readlink "$wanted"; return; fi
  if runuser -u postgres -- test -x "$ROOT/var" 2>/dev/null && runuser -u postgres -- test -r "$ROOT/var"; then
    echo "$wanted"
  else
    local outside="/var/tmp/gasdispatch-$(echo "$ROOT" | sha1sum | cut -c1-10)/$name"
    mkdir -p "$outside"
    ln -sfn "$outside" "$wanted"
    echo "$outside"
  fi
}

# start_postgres NAME PORT PASSWORD DBNAME: idempotent; reuses a running cluster.
start_postgres() {
  local name="$1" port="$2" password="$3" db="$4"
  local data; data="$(pg_data_dir "$name")"
  mkdir -p "$data"; chown postgres:postgres "$data"; chmod 700 "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $data"
    local pwfile; pwfile="$(mktemp)"; echo "$password" > "$pwfile"; chown postgres "$pwfile"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
      --auth-host=scram-sha-256 --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  fi
  if ! runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$port"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data -c fsync=${PG_FSYNC:-on} -c max_connections=200" start >/dev/null
  fi
  if ! runuser -u postgres -- "$PG_BIN/psql" -h "$data" -p "$port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    runuser -u postgres -- "$PG_BIN/createdb" -h "$data" -p "$port" -U postgres "$db"
  fi
}

stop_postgres() {
  local data; data="$(pg_data_dir "$1")"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# start_redis NAME PORT: idempotent; data and pidfile under var/NAME.
start_redis() {
  local name="$1" port="$2" dir="$ROOT/var/$1"
  mkdir -p "$dir"
  if ! redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$port"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && return; sleep 0.1; done
    echo "Redis did not start; see $dir/redis.log" >&2; return 1
  fi
}

stop_redis() {
  redis-cli -h 127.0.0.1 -p "$1" shutdown nosave >/dev/null 2>&1 || true
}

# start_redis_cluster NAME PORT...: three (or more) masters on loopback joined into one empty
# cluster, started afresh each time (a cluster's node files do not survive a re-create).
start_redis_cluster() {
  local name="$1"; shift
  local dir="$ROOT/var/$name" port nodes=()
  for port in "$@"; do stop_redis "$port"; done
  rm -rf "$dir"
  for port in "$@"; do
    mkdir -p "$dir/$port"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir/$port" --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 2000 \
      --pidfile "$dir/$port/redis.pid" --logfile "$dir/$port/redis.log" --save "" --appendonly no >/dev/null
    nodes+=("127.0.0.1:$port")
  done
  for port in "$@"; do
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  log "joining Redis Cluster ${nodes[*]}"
  redis-cli --cluster create "${nodes[@]}" --cluster-yes >"$dir/create.log" 2>&1 || {
    echo "Redis Cluster did not form; see $dir/create.log" >&2; return 1; }
  for _ in $(seq 100); do
    redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q "cluster_state:ok" && return
    sleep 0.1
  done
  echo "Redis Cluster is not ok; see $dir/*/redis.log" >&2; return 1
}
