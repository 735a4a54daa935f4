#!/usr/bin/env bash
# `make demo`: bring the local stack up, stage sample clickstream data (search and click events)
# in Firehose's key layout, run the daemon with config/demo.toml until every staged object is
# settled, and print what was delivered and what is in load_errors.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/stack.sh up
set -a
# shellcheck disable=SC1091
. .stack/env
STAGELOAD_DEMO_DIR=${STAGELOAD_DEMO_DIR:-$(pwd)/delivered}
STAGELOAD_ADMIN_PORT=${STAGELOAD_ADMIN_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
set +a
rm -rf "$STAGELOAD_DEMO_DIR"

cargo build --workspace --bins --examples --locked
BIN=target/debug

echo "== staging sample clickstream in s3://demo-stage/firehose/clickstream/"
$BIN/examples/stage_sample --bucket demo-stage --prefix firehose/clickstream/ --objects 12 --records 400

LOG=$(mktemp)
$BIN/stageload run --config config/demo.toml 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT

psql_q() { psql "$STAGELOAD_PG_URL" -qAtX -c "$1" 2>/dev/null || true; }
echo "== waiting for the daemon to settle every staged object"
for _ in $(seq 1 120); do
  open=$(psql_q "SELECT count(*) FROM staged_objects WHERE state IN ('pending','batched')")
  total=$(psql_q "SELECT count(*) FROM staged_objects")
  if [ -n "$total" ] && [ "$total" -ge 12 ] && [ "$open" = "0" ]; then break; fi
  sleep 1
done

kill -TERM $PID; wait $PID || true
trap - EXIT

echo
echo "== batches"
psql "$STAGELOAD_PG_URL" -X -c "SELECT pipeline, state, count(*) AS batches, sum(object_count) AS objects, sum(records_delivered) AS records, sum(records_rejected) AS rejected FROM batches GROUP BY 1, 2 ORDER BY 1, 2"
echo "== delivered to the file destination ($STAGELOAD_DEMO_DIR/clickstream)"
echo "files: $(ls "$STAGELOAD_DEMO_DIR/clickstream" | wc -l), records: $(cat "$STAGELOAD_DEMO_DIR"/clickstream/*.ndjson | wc -l)"
head -n 2 "$(ls -d "$STAGELOAD_DEMO_DIR"/clickstream/*.ndjson | head -1)"
echo "== load_errors"
psql "$STAGELOAD_PG_URL" -X -c "SELECT id, pipeline, batch_id, filename, line_number, err_code, err_reason, left(raw_line, 40) AS raw_line FROM load_errors ORDER BY id"
echo "daemon log: $LOG"
echo "the stack is still up (scripts/stack.sh down stops it)"
