#!/usr/bin/env bash
# The local stack for tests and the demo: PostgreSQL 15 (control database and the Redshift
# emulator's storage), the s3s-fs S3 server, the osmem OpenSearch-compatible server and moto's
# server for SQS, each on a free loopback port. `up` installs what is missing, starts everything and writes .stack/env
# (shell-sourceable); `down` stops it all. Idempotent: `up` on a running stack only re-checks.
# `restart pg|s3|osmem [SECONDS]` stops one component and starts it again on the same port
# after SECONDS (default 0) of downtime, keeping its data (PostgreSQL's and the S3 directory;
# osmem keeps documents in memory, so they are gone): the chaos suite's component restarts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# The env file lives in the work tree; the data lives under /tmp, which the postgres user can reach.
ENV_DIR=$ROOT/.stack
ENV_FILE=$ENV_DIR/env
# A stack already up names its directory in the env file.
if [ -z "${STAGELOAD_STACK_DIR:-}" ] && [ -f "$ENV_FILE" ]; then
  STAGELOAD_STACK_DIR=$(sed -n 's/^export STAGELOAD_STACK_DIR=//p' "$ENV_FILE")
fi
STACK=${STAGELOAD_STACK_DIR:-/tmp/stageload-stack-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)}
# The work tree that started the stack in $STACK: another tree's `up` or `down` never removes it.
OWNER_FILE=owner
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
S3_KEY=stageloadtest
S3_SECRET=stageloadtestsecret

# osmem-server ships its Go binary inside the Python package.
osmem_bin() {
  python3 -c 'import osmem_server; print(osmem_server.resolve_binary())' 2>/dev/null || true
}

log() { printf 'stack: %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() { # host port what
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$3 did not open $1:$2"; return 1
}

install_deps() {
  if [ ! -x "$PG_BIN/postgres" ]; then
    log "installing postgresql-15"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  fi
  if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
    log "installing s3s-fs 0.14.1 (about 4 minutes)"
    cargo install s3s-fs@0.14.1 --locked --features binary
  fi
  if [ -z "$(osmem_bin)" ]; then
    log "installing osmem-server 0.1.6"
    pip install -q osmem-server==0.1.6 || log "osmem-server could not be installed; Elasticsearch tests will fail"
  fi
  if ! command -v moto_server >/dev/null 2>&1; then
    log "installing moto[server] 5.0.28 (SQS for the notification tests)"
    pip install -q "moto[server]==5.0.28" || log "moto could not be installed; the SQS test will fail"
  fi
  # promtool checks and unit-tests the shipped alert rules in tests/packaging.rs.
  if ! command -v promtool >/dev/null 2>&1; then
    log "installing prometheus (for promtool)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
      || log "prometheus could not be installed; the alert-rule test will fail"
  fi
  # Headless Chromium renders the admin status page in tests/admin.rs.
  if ! command -v chromium >/dev/null 2>&1; then
    log "installing chromium"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || log "chromium could not be installed; the status-page test will fail"
  fi
}

up() {
  install_deps
  if [ -f "$ENV_FILE" ] && status >/dev/null 2>&1; then
    log "already running ($ENV_FILE)"; return 0
  fi
  if ! down >/dev/null 2>&1; then
    log "$STACK is the stack of $(cat "$STACK/$OWNER_FILE"): set STAGELOAD_STACK_DIR to start another"
    exit 1
  fi
  mkdir -p "$STACK" "$ENV_DIR"
  printf '%s\n' "$ROOT" >"$STACK/$OWNER_FILE"
  chmod 755 "$STACK"; chown postgres "$STACK"
  local pg_port s3_port os_port sqs_port
  pg_port=$(free_port); s3_port=$(free_port); os_port=$(free_port); sqs_port=$(free_port)

  # PostgreSQL refuses to run as root: the data directory belongs to the postgres user.
  local pgdata=$STACK/pgdata
  install -d -o postgres -g postgres -m 700 "$pgdata"
  echo stageload > "$STACK/pwfile"; chown postgres "$STACK/pwfile"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$pgdata" -U stageload --pwfile="$STACK/pwfile" \
    -A scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >"$STACK/initdb.log"
  cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$STACK'
max_connections = 200
fsync = off
full_page_writes = off
CONF
  # fsync off: speed, and a test never crashes the machine, only PostgreSQL. synchronous_commit
  # stays on: the chaos tests restart PostgreSQL with -m immediate, and with it off a commit the
  # daemon was told about can vanish, a loss no real control database would cause.
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/postgres.log" -w start >/dev/null
  runuser -u postgres -- "$PG_BIN/createdb" -h "$STACK" -p "$pg_port" -U stageload stageload
  runuser -u postgres -- "$PG_BIN/createdb" -h "$STACK" -p "$pg_port" -U stageload redshift

  mkdir -p "$STACK/s3"
  local s3s; s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
  nohup "$s3s" --host 127.0.0.1 --port "$s3_port" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
    "$STACK/s3" >"$STACK/s3s.log" 2>&1 &
  echo $! >"$STACK/s3s.pid"
  wait_port 127.0.0.1 "$s3_port" s3s-fs

  local os_url=""
  local osmem; osmem=$(osmem_bin)
  if [ -n "$osmem" ]; then
    nohup "$osmem" -addr "127.0.0.1:$os_port" -no-stdin-watch </dev/null >"$STACK/osmem.log" 2>&1 &
    echo $! >"$STACK/osmem.pid"
    if wait_port 127.0.0.1 "$os_port" osmem-server; then os_url="http://127.0.0.1:$os_port"; fi
  fi

  # moto's server mode answers SQS (the JSON protocol the SDK speaks) in memory.
  local sqs_url=""
  if command -v moto_server >/dev/null 2>&1; then
    nohup moto_server -H 127.0.0.1 -p "$sqs_port" </dev/null >"$STACK/moto.log" 2>&1 &
    echo $! >"$STACK/moto.pid"
    if wait_port 127.0.0.1 "$sqs_port" moto_server; then sqs_url="http://127.0.0.1:$sqs_port"; fi
  fi

  cat >"$ENV_FILE" <<ENV
export STAGELOAD_STACK_ENV=$ENV_FILE
export STAGELOAD_STACK_DIR=$STACK
export STAGELOAD_PG_HOST=127.0.0.1
export STAGELOAD_PG_PORT=$pg_port
export STAGELOAD_PG_URL=postgres://stageload:stageload@127.0.0.1:$pg_port/stageload
export STAGELOAD_REDSHIFT_BACKEND_URL=postgres://stageload:stageload@127.0.0.1:$pg_port/redshift
export STAGELOAD_S3_ENDPOINT=http://127.0.0.1:$s3_port
export STAGELOAD_OPENSEARCH_URL=$os_url
export STAGELOAD_SQS_ENDPOINT=$sqs_url
export AWS_ACCESS_KEY_ID=$S3_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET
export AWS_REGION=us-east-1
export CONTROL_PASSWORD=stageload
ENV
  log "up: postgres :$pg_port, s3s-fs :$s3_port${os_url:+, osmem $os_url}${sqs_url:+, sqs $sqs_url} ($ENV_FILE)"
}

port_of() { # URL -> port
  printf '%s' "${1##*:}" | tr -d /
}

start_s3s() { # port
  local s3s; s3s=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
  nohup "$s3s" --host 127.0.0.1 --port "$1" --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
    "$STACK/s3" >>"$STACK/s3s.log" 2>&1 &
  echo $! >"$STACK/s3s.pid"
  wait_port 127.0.0.1 "$1" s3s-fs
}

start_osmem() { # port
  nohup "$(osmem_bin)" -addr "127.0.0.1:$1" -no-stdin-watch </dev/null >>"$STACK/osmem.log" 2>&1 &
  echo $! >"$STACK/osmem.pid"
  wait_port 127.0.0.1 "$1" osmem-server
}

stop_pid() { # name: kill the process in $STACK/name.pid and wait until it is gone (5 s at most)
  local pid; pid=$(cat "$STACK/$1.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

restart() { # component [downtime seconds]
  [ -f "$ENV_FILE" ] || { log "not up"; return 1; }
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  local down_s=${2:-0}
  case "${1:-}" in
    pg)
      # An immediate stop is a crash for the clients: every connection breaks. A checkpoint
      # first keeps the crash recovery at start short (the tests create many databases, whose
      # WAL would otherwise be replayed), so the outage lasts about what was asked for.
      "$PG_BIN/psql" "$STAGELOAD_PG_URL" -qAtX -c CHECKPOINT >/dev/null 2>&1 || true
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STACK/pgdata" -m immediate stop >/dev/null
      sleep "$down_s"
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STACK/pgdata" -l "$STACK/pgdata/postgres.log" -w start >/dev/null
      ;;
    s3)
      stop_pid s3s; sleep "$down_s"; start_s3s "$(port_of "$STAGELOAD_S3_ENDPOINT")" ;;
    osmem)
      [ -n "$STAGELOAD_OPENSEARCH_URL" ] || { log "osmem is not part of this stack"; return 1; }
      stop_pid osmem; sleep "$down_s"; start_osmem "$(port_of "$STAGELOAD_OPENSEARCH_URL")" ;;
    *) echo "usage: $0 restart pg|s3|osmem [downtime seconds]" >&2; return 2 ;;
  esac
  log "restarted $1"
}

status() {
  [ -f "$ENV_FILE" ] || { echo "down"; return 1; }
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STACK/pgdata" status >/dev/null || { echo "postgres down"; return 1; }
  kill -0 "$(cat "$STACK/s3s.pid")" 2>/dev/null || { echo "s3s-fs down"; return 1; }
  echo "up"
}

down() {
  local owner=""
  [ -f "$STACK/$OWNER_FILE" ] && owner=$(cat "$STACK/$OWNER_FILE")
  if [ -n "$owner" ] && [ "$owner" != "$ROOT" ]; then
    log "$STACK belongs to the stack of $owner: left running (set STAGELOAD_STACK_DIR to use another directory)"
    rm -f "$ENV_FILE"
    return 1
  fi
  if [ -d "$STACK/pgdata" ]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$STACK/pgdata" -m immediate stop >/dev/null 2>&1 || true
  fi
  for p in s3s osmem moto; do
    if [ -f "$STACK/$p.pid" ]; then kill "$(cat "$STACK/$p.pid")" 2>/dev/null || true; fi
  done
  rm -rf "$STACK" "$ENV_FILE"
  log "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart) restart "${2:-}" "${3:-0}" ;;
  install) install_deps ;;
  *) echo "usage: $0 up|down|status|install|restart pg|s3|osmem [SECONDS]" >&2; exit 2 ;;
esac
