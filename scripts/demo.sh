#!/usr/bin/env bash
# `make demo`: bring the local stack up, stage sample clickstream data (search and click events)
# in Firehose's key layout, a CloudTrail log file and a Parquet file of orders, run the daemon
# with config/demo.toml until every staged object is settled, and print what was delivered and
# what is in load_errors.
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
mkdir -p "$STAGELOAD_DEMO_DIR"

cargo build --workspace --bins --examples --locked
BIN=target/debug
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# start_tool NAME CMD...: runs a dev server in the background (in this shell, so the EXIT trap
# stops it) and stores the address it prints in ADDR.
start_tool() {
  local name=$1; shift
  local out="$STAGELOAD_DEMO_DIR/$name.out"
  : >"$out"   # exists before the tool opens it, so the wait below never reads a missing file
  "$@" >"$out" 2>"$STAGELOAD_DEMO_DIR/$name.log" &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    ADDR=$(sed -n 's/^listening on //p' "$out" | head -1)
    if [ -n "$ADDR" ]; then return; fi
    sleep 0.1
  done
  echo "$name did not start; see $STAGELOAD_DEMO_DIR/$name.log" >&2; exit 1
}

echo "== starting the Redshift emulator and the HEC receiver"
psql "$STAGELOAD_REDSHIFT_BACKEND_URL" -qX -c "DROP TABLE IF EXISTS public.clickstream, public.stageload_commits, public.stageload_commit_errors;
  CREATE TABLE public.clickstream (event_id varchar(64) NOT NULL, ts timestamp, user_id varchar(32),
    action varchar(16), query varchar(256), results integer, url varchar(256), position integer)"
start_tool redshift-emu $BIN/redshift-emu --listen 127.0.0.1:0 \
  --backend "127.0.0.1:$STAGELOAD_PG_PORT" --admin-url "$STAGELOAD_REDSHIFT_BACKEND_URL" \
  --s3-endpoint "$STAGELOAD_S3_ENDPOINT" --s3-region us-east-1
STAGELOAD_REDSHIFT_ADDR=$ADDR
start_tool hec-receiver $BIN/hec-receiver --listen 127.0.0.1:0 \
  --token 00000000-0000-0000-0000-000000000001 --ack
STAGELOAD_HEC_ADDR=$ADDR
STAGELOAD_OPENSEARCH_ADDR=${STAGELOAD_OPENSEARCH_URL#http://}
export STAGELOAD_REDSHIFT_ADDR STAGELOAD_HEC_ADDR STAGELOAD_OPENSEARCH_ADDR
for index in 'clickstream-*' 'cloudtrail-*' orders; do
  curl -s -X DELETE "$STAGELOAD_OPENSEARCH_URL/$index" >/dev/null || true
done
# A fresh control database for each demo run.
psql "$STAGELOAD_PG_URL" -qX -c "DROP SCHEMA public CASCADE; CREATE SCHEMA public;" 2>/dev/null || true

echo "== staging sample clickstream in s3://demo-stage/firehose/clickstream/"
$BIN/examples/stage_sample --bucket demo-stage --prefix firehose/clickstream/ --objects 12 --records 400
echo "== staging a CloudTrail log file and a Parquet file beside it"
$BIN/examples/stage_formats --bucket demo-stage --cloudtrail-prefix AWSLogs/123456789012/CloudTrail/ \
  --parquet-prefix parquet/orders/ --rows 300 --row-group 100

LOG=$STAGELOAD_DEMO_DIR/stageload.log
$BIN/stageload run --config config/demo.toml 2>"$LOG" &
PID=$!
PIDS+=($PID)

psql_q() { psql "$STAGELOAD_PG_URL" -qAtX -c "$1" 2>/dev/null || true; }
echo "== waiting for the daemon to settle every staged object"
for _ in $(seq 1 120); do
  open=$(psql_q "SELECT count(*) FROM staged_objects WHERE state IN ('pending','batched')")
  total=$(psql_q "SELECT count(*) FROM staged_objects")
  # 12 clickstream objects for 4 pipelines, the CloudTrail file for 1, the Parquet file for 2.
  if [ -n "$total" ] && [ "$total" -ge 51 ] && [ "$open" = "0" ]; then break; fi
  sleep 1
done

echo "== admin port: http://127.0.0.1:$STAGELOAD_ADMIN_PORT/ (status page), /metrics, /readyz"
curl -s "http://127.0.0.1:$STAGELOAD_ADMIN_PORT/metrics" | grep -E '^stageload_records_(delivered|rejected)_total' || true
kill -TERM $PID; wait $PID || true

echo
echo
echo "== stageload status"
$BIN/stageload status --config config/demo.toml
echo "== batches"
psql "$STAGELOAD_PG_URL" -X -c "SELECT pipeline, state, count(*) AS batches, sum(object_count) AS objects, sum(records_delivered) AS records, sum(records_rejected) AS rejected FROM batches GROUP BY 1, 2 ORDER BY 1, 2"
echo "== delivered to the file destination ($STAGELOAD_DEMO_DIR/clickstream)"
echo "files: $(ls "$STAGELOAD_DEMO_DIR/clickstream" | wc -l), records: $(cat "$STAGELOAD_DEMO_DIR"/clickstream/*.ndjson | wc -l)"
head -n 2 "$(ls -d "$STAGELOAD_DEMO_DIR"/clickstream/*.ndjson | head -1)"
echo "== Redshift (through the emulator): public.clickstream"
psql "$STAGELOAD_REDSHIFT_BACKEND_URL" -X -c "SELECT action, count(*) AS rows, count(DISTINCT event_id) AS distinct_ids, min(ts), max(ts) FROM public.clickstream GROUP BY 1 ORDER BY 1"
psql "$STAGELOAD_REDSHIFT_BACKEND_URL" -X -c "SELECT batch_id, pipeline, rows_loaded, rows_rejected FROM public.stageload_commits ORDER BY batch_id" 2>/dev/null || true
echo "== OpenSearch (osmem): clickstream-* index"
curl -s -X POST "$STAGELOAD_OPENSEARCH_URL/clickstream-*/_refresh" >/dev/null || true
curl -s "$STAGELOAD_OPENSEARCH_URL/_cat/indices/clickstream-*?v" || true
echo "count: $(curl -s "$STAGELOAD_OPENSEARCH_URL/clickstream-*/_count" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')"
echo "== CloudTrail (format = \"cloudtrail\") in OpenSearch: cloudtrail-* index"
curl -s -X POST "$STAGELOAD_OPENSEARCH_URL/cloudtrail-*/_refresh" >/dev/null || true
echo "count: $(curl -s "$STAGELOAD_OPENSEARCH_URL/cloudtrail-*/_count" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')"
curl -s "$STAGELOAD_OPENSEARCH_URL/cloudtrail-*/_search?q=eventName:AssumeRole&size=2" | python3 -c '
import json, sys
for h in json.load(sys.stdin).get("hits", {}).get("hits", []):
    s = h["_source"]
    print(h["_index"], s["eventTime"], s["eventSource"], s["eventName"], s["userIdentity"]["userName"], s["sourceIPAddress"])' || true
echo "== Parquet (format = \"parquet\") delivered to the file destination ($STAGELOAD_DEMO_DIR/orders) and OpenSearch (orders)"
echo "files: $(ls "$STAGELOAD_DEMO_DIR/orders" | wc -l), records: $(cat "$STAGELOAD_DEMO_DIR"/orders/*.ndjson | wc -l)"
head -n 2 "$(ls -d "$STAGELOAD_DEMO_DIR"/orders/*.ndjson | head -1)"
curl -s -X POST "$STAGELOAD_OPENSEARCH_URL/orders/_refresh" >/dev/null || true
echo "orders index count: $(curl -s "$STAGELOAD_OPENSEARCH_URL/orders/_count" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')"
echo "== Splunk HEC receiver"
curl -s "http://$STAGELOAD_HEC_ADDR/_receiver/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("requests:", s["requests"], "events:", s["events"], "duplicates:", s["duplicates"])'
echo "== load_errors"
psql "$STAGELOAD_PG_URL" -X -c "SELECT id, pipeline, batch_id, regexp_replace(filename, '^.*/', '') AS file, line_number AS line, colname, err_code, left(err_reason, 60) AS err_reason, left(raw_line, 50) AS raw_line FROM load_errors ORDER BY pipeline, line_number"
echo "daemon log: $LOG"
echo "the stack is still up (scripts/stack.sh down stops it); try: $BIN/stageload status --config config/demo.toml"
