#!/usr/bin/env bash
# `make bench`: the speed and memory benchmark (not a test). Stages gzip NDJSON in the local S3
# (16 objects x 64 MiB uncompressed = 1 GiB by default), then for each destination runs the
# release daemon against a fresh control database and a blackhole receiver until every object is
# loaded, reads the daemon's CPU seconds and peak RSS from /proc before stopping it, and times
# `gzip -dc` over the same objects. Prints one table row per destination. See docs/bench.md.
#
# The give-up runs ("elasticsearch-giveup", "splunk-giveup") point the destination at a port
# nobody listens on with a 5 s retry budget, so the whole staged set (one batch) is written off:
# a load_errors row and a failed-record JSON line per record. Their row reports the peak RSS of
# that write-off, the rows stored and the failed-record lines in S3.
#
# After the table, examples/scale_bench runs the per-batch work (reader and _bulk body building,
# nothing sent) over the staged files one and two objects at a time, with no server on the cores,
# and examples/transform_bench what jq transform steps cost against gzip -dc
# (BENCH_TRANSFORM_MIB, 256).
#
# Variants: a "-w2" suffix runs the pipeline with `workers = 2` (two batches delivered at once),
# a "-gzip" suffix sends with `compression = "gzip"`.
#
# The table ends with the `gzip -dc` reference row; the script exits non-zero when a destination
# received fewer records than were staged (after printing the table).
#
# Knobs (environment): BENCH_OBJECTS (16), BENCH_OBJECT_MIB (64), BENCH_DESTINATIONS
# ("elasticsearch elasticsearch-w2 elasticsearch-gzip splunk-noack splunk-noack-gzip splunk-ack";
# also "file", "elasticsearch-giveup", "splunk-giveup"), BENCH_SKIP_BUILD=1, BENCH_KEEP=1 (keep
# the staged bucket, databases and logs), BENCH_TIMEOUT_S (1800 per destination),
# BENCH_SPLUNK_MAX_UNACKED (the Splunk destination's max_unacked_requests; its default when unset),
# BENCH_BIN (directory of the stageload binary to measure; target/release by default),
# BENCH_OBJECT_KIB (unset; when set, objects of that many KiB instead of BENCH_OBJECT_MIB, and
# batches of up to 1,000 of them: many small objects, as log shippers flushing often write),
# BENCH_BATCH_OBJECTS (the buffer's max_objects: 2, so the objects make several batches and
# `workers = 2` has two to deliver at once; 1000 with BENCH_OBJECT_KIB).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

OBJECTS=${BENCH_OBJECTS:-16}
OBJECT_MIB=${BENCH_OBJECT_MIB:-64}
# Small objects: BENCH_OBJECT_KIB replaces BENCH_OBJECT_MIB when set.
OBJECT_KIB=${BENCH_OBJECT_KIB:-}
DESTINATIONS=${BENCH_DESTINATIONS:-elasticsearch elasticsearch-w2 elasticsearch-gzip splunk-noack splunk-noack-gzip splunk-ack}
TIMEOUT_S=${BENCH_TIMEOUT_S:-1800}
if [ -n "$OBJECT_KIB" ]; then BATCH_OBJECTS=${BENCH_BATCH_OBJECTS:-1000}; else BATCH_OBJECTS=${BENCH_BATCH_OBJECTS:-2}; fi
HEC_TOKEN=00000000-0000-0000-0000-0000000be7c4
PREFIX=firehose/bench/

log() { printf 'bench: %s\n' "$*" >&2; }

scripts/stack.sh up
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
# Where scripts/stack.sh keeps s3s-fs's data: objects are plain files at $STACK/s3/<bucket>/<key>.
STACK=${STAGELOAD_STACK_DIR:-/tmp/stageload-stack-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)}
# The S3 server, whose CPU each row reports beside the daemon's.
S3_PID=$(cat "$STACK/s3s.pid" 2>/dev/null || true)

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  log "building (release)"
  cargo build --release --locked -p stageload --bins --examples
  cargo build --release --locked -p bulk-blackhole -p hec-receiver
fi
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
DAEMON_BIN=${BENCH_BIN:-$BIN}/stageload
CLK_TCK=$(getconf CLK_TCK)

RUN_ID=$(date +%Y%m%d%H%M%S)-$$
BUCKET=bench-$RUN_ID
WORK=$(mktemp -d /tmp/stageload-bench.XXXXXX)
DAEMON_PID=""
RECEIVER_PID=""
DATABASES=()

psql_q() { psql "$STAGELOAD_PG_URL" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }
# Busy and total jiffies of all cores: busy is user, nice, system, irq, softirq and steal; the
# total adds idle and iowait. Their ratio over a row says whether the machine was saturated.
cpu_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }

cleanup() {
  for p in "$DAEMON_PID" "$RECEIVER_PID"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  if [ "${BENCH_KEEP:-0}" != 1 ]; then
    for db in "${DATABASES[@]}"; do psql_q "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; done
    rm -rf "${STACK:?}/s3/$BUCKET" "$WORK"
  else
    log "kept s3://$BUCKET, databases ${DATABASES[*]:-none} and $WORK"
  fi
}
trap cleanup EXIT

# --- stage -------------------------------------------------------------------------------------
if [ -n "$OBJECT_KIB" ]; then size_arg=(--object-kib "$OBJECT_KIB"); size_text="$OBJECT_KIB KiB"
else size_arg=(--object-mib "$OBJECT_MIB"); size_text="$OBJECT_MIB MiB"; fi
log "staging $OBJECTS x $size_text (uncompressed) in s3://$BUCKET/$PREFIX"
# Its line per object goes to a file (thousands with BENCH_OBJECT_KIB), shown if staging fails.
if ! "$BIN/examples/stage_bench" --bucket "$BUCKET" --prefix "$PREFIX" --objects "$OBJECTS" \
  "${size_arg[@]}" 2>"$WORK/stage.err" | tee "$WORK/stage.out"; then
  log "staging failed:"; tail -n 20 "$WORK/stage.err" >&2; exit 1
fi
summary=$(tail -n 1 "$WORK/stage.out")
RECORDS=$(sed -n 's/.*records=\([0-9]*\).*/\1/p' <<<"$summary")
UNCOMPRESSED=$(sed -n 's/.*uncompressed_bytes=\([0-9]*\).*/\1/p' <<<"$summary")
COMPRESSED=$(sed -n 's/.*compressed_bytes=\([0-9]*\).*/\1/p' <<<"$summary")
mapfile -t FILES < <(find "$STACK/s3/$BUCKET/$PREFIX" -type f -name '*.gz' | sort)
if [ "${#FILES[@]}" -ne "$OBJECTS" ]; then
  log "expected $OBJECTS object files under $STACK/s3/$BUCKET/$PREFIX, found ${#FILES[@]}"; exit 1
fi

# --- measuring helpers -------------------------------------------------------------------------
# CPU seconds (user + system, every thread) of a live process.
proc_cpu_s() {
  # Drop "pid (comm) " first: comm may hold spaces. utime and stime are then fields 12 and 13.
  local rest; rest=$(sed 's/^.*) //' "/proc/$1/stat")
  awk -v t="$CLK_TCK" '{ printf "%.2f", ($12 + $13) / t }' <<<"$rest"
}
# Peak resident set size of a live process, in MB (10^6 bytes).
proc_hwm_mb() {
  awk '/^VmHWM:/ { printf "%.1f", $2 * 1024 / 1e6 }' "/proc/$1/status"
}
now() { date +%s.%N; }
# CPU seconds of another process, 0 when there is none (no receiver for the file destination).
other_cpu_s() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then proc_cpu_s "$1"; else echo 0; fi; }

# CPU seconds and wall seconds of `gzip -dc` over the staged objects, output discarded.
gzip_cpu() {
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%U %S %e' -o "$WORK/gzip.time" gzip -dc "${FILES[@]}" >/dev/null
    awk '{ printf "%.2f %.2f", $1 + $2, $3 }' "$WORK/gzip.time"
  else
    python3 - "${FILES[@]}" <<'PY'
import resource, subprocess, sys, time
t = time.monotonic()
subprocess.run(["gzip", "-dc", *sys.argv[1:]], stdout=subprocess.DEVNULL, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.2f} {time.monotonic() - t:.2f}", end="")
PY
  fi
}

# Starts a receiver writing to $WORK/<name>.out; sets RECEIVER_PID and RECEIVER_ADDR.
start_receiver() { # name command...
  local name=$1; shift
  "$@" >"$WORK/$name.receiver.out" 2>"$WORK/$name.receiver.err" &
  RECEIVER_PID=$!
  for _ in $(seq 1 100); do
    RECEIVER_ADDR=$(sed -n 's/^listening on //p' "$WORK/$name.receiver.out")
    if [ -n "$RECEIVER_ADDR" ]; then return 0; fi
    sleep 0.1
  done
  log "$name receiver did not start: $(cat "$WORK/$name.receiver.err")"; exit 1
}

stop_receiver() {
  kill "$RECEIVER_PID" 2>/dev/null || true
  wait "$RECEIVER_PID" 2>/dev/null || true
  RECEIVER_PID=""
}

# The destination without its variant suffixes, and the compression the variant asks for.
base_name() { local n=${1%-gzip}; echo "${n%-w2}"; }
compression_of() { case "$1" in *-gzip) echo gzip ;; *) echo none ;; esac; }

destination_toml() { # name
  local compression; compression=$(compression_of "$1")
  case "$(base_name "$1")" in
    elasticsearch) cat <<TOML
type = "elasticsearch"
endpoints = ["http://$RECEIVER_ADDR"]
index = "bench"
document_id = "deterministic"
bulk_max_bytes = 5242880
concurrency = 2
compression = "$compression"
TOML
    ;;
    elasticsearch-giveup) cat <<TOML
type = "elasticsearch"
endpoints = ["http://$RECEIVER_ADDR"]
index = "bench"
document_id = "deterministic"
request_timeout_s = 5
TOML
    ;;
    splunk-giveup) cat <<TOML
type = "splunk"
url = "http://$RECEIVER_ADDR"
token = "$HEC_TOKEN"
endpoint = "event"
sourcetype = "bench:clickstream"
request_timeout_s = 5
TOML
    ;;
    splunk-ack|splunk-noack)
      local ack=true; [ "$(base_name "$1")" = splunk-noack ] && ack=false
      cat <<TOML
type = "splunk"
url = "http://$RECEIVER_ADDR"
token = "$HEC_TOKEN"
endpoint = "event"
sourcetype = "bench:clickstream"
time_field = "/ts"
ack = $ack
ack_poll_interval_s = 0.25
max_request_bytes = 1048576
concurrency = 2
compression = "$compression"
${BENCH_SPLUNK_MAX_UNACKED:+max_unacked_requests = $BENCH_SPLUNK_MAX_UNACKED}
TOML
    ;;
    file) cat <<TOML
type = "file"
directory = "$WORK/file-out"
TOML
    ;;
    *) log "unknown destination $1"; exit 2 ;;
  esac
}

# Receiver command line and the stats field that counts delivered records.
receiver_for() { # name
  case "$(base_name "$1")" in
    elasticsearch) start_receiver "$1" "$BIN/bulk-blackhole" --listen 127.0.0.1:0 ;;
    splunk-ack) start_receiver "$1" "$BIN/hec-receiver" --listen 127.0.0.1:0 --blackhole --ack --token "$HEC_TOKEN" ;;
    splunk-noack) start_receiver "$1" "$BIN/hec-receiver" --listen 127.0.0.1:0 --blackhole --token "$HEC_TOKEN" ;;
    file) RECEIVER_ADDR=none ;;
    # Nobody listens there: every request is refused until the budget runs out.
    *-giveup) RECEIVER_ADDR=127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()') ;;
  esac
}

received_records() { # name
  case "$(base_name "$1")" in
    # Failed-record JSON lines written to S3 (s3s-fs keeps objects as plain files).
    *-giveup) find "$STACK/s3/$BUCKET/errors/bench" -type f -path "*/${1%-giveup}-failed/*" -exec cat {} + 2>/dev/null | wc -l ;;
    elasticsearch) curl -fsS "http://$RECEIVER_ADDR/_blackhole/stats" | jq .docs ;;
    splunk-*) curl -fsS "http://$RECEIVER_ADDR/_receiver/stats" | jq .events ;;
    file) cat "$WORK"/file-out/*.ndjson | wc -l ;;
  esac
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"

run_one() { # name
  local name=$1
  local db; db=bench_${name//-/_}_${RUN_ID//-/_}
  psql_q "CREATE DATABASE $db" >/dev/null
  DATABASES+=("$db")
  local db_url=${STAGELOAD_PG_URL%/*}/$db
  receiver_for "$name"
  # A give-up run writes off one batch of every staged object after a short budget.
  local retry_s=60 size_mib=128 interval_s=1 done_state=loaded workers=1
  case "$name" in *-w2|*-w2-*) workers=2 ;; esac
  case "$name" in *-giveup) retry_s=5 size_mib=1024 interval_s=3 done_state=skipped ;; esac
  local cfg=$WORK/$name.toml
  cat >"$cfg" <<TOML
# Generated by scripts/bench.sh for the "$name" run.
[control]
database_url = "$db_url"
pool_size = 4

[s3]
region = "us-east-1"
endpoint = "\${STAGELOAD_S3_ENDPOINT}"
force_path_style = true
access_key_id = "\${AWS_ACCESS_KEY_ID}"
secret_access_key = "\${AWS_SECRET_ACCESS_KEY}"

[admin]
listen = ""

[daemon]
lease_s = 120
shutdown_grace_s = 10

[[pipeline]]
name = "bench"
retry_duration_s = $retry_s
error_prefix = "errors/bench/"
workers = $workers

[pipeline.source]
bucket = "$BUCKET"
prefix = "$PREFIX"
compression = "auto"
format = "json_lines"
poll_interval_s = 1

[pipeline.buffer]
size_mib = $size_mib
interval_s = $interval_s
max_objects = $BATCH_OBJECTS

[pipeline.destination]
$(destination_toml "$name")
TOML

  log "$name: running the daemon ($cfg)"
  local t0 t1 loaded=0 skipped=0 j0 j1 s3_0 rx_0
  j0=$(cpu_jiffies)
  s3_0=$(other_cpu_s "$S3_PID"); rx_0=$(other_cpu_s "$RECEIVER_PID")
  t0=$(now)
  "$DAEMON_BIN" run --config "$cfg" 2>"$WORK/$name.daemon.log" &
  DAEMON_PID=$!
  local deadline=$((SECONDS + TIMEOUT_S))
  while :; do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      log "$name: the daemon exited; log:"; tail -n 20 "$WORK/$name.daemon.log" >&2; exit 1
    fi
    read -r loaded skipped settled < <(psql "$db_url" -qAtX -F ' ' -c \
      "SELECT (SELECT count(*) FILTER (WHERE state='loaded') FROM staged_objects),
              (SELECT count(*) FILTER (WHERE state='skipped') FROM staged_objects),
              (SELECT count(*) FROM batches WHERE state IN ('loaded', 'skipped'))" \
      2>/dev/null || echo "0 0 0")
    if [ "$done_state" = loaded ]; then
      if [ "${loaded:-0}" -ge "$OBJECTS" ]; then break; fi
      if [ "${skipped:-0}" -gt 0 ]; then
        log "$name: $skipped objects skipped; log:"; tail -n 20 "$WORK/$name.daemon.log" >&2; exit 1
      fi
    else
      if [ "${skipped:-0}" -ge "$OBJECTS" ] && [ "${settled:-0}" -ge 1 ]; then break; fi
      if [ "${loaded:-0}" -gt 0 ]; then
        log "$name: $loaded objects loaded while the destination was down; log:"; tail -n 20 "$WORK/$name.daemon.log" >&2; exit 1
      fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then log "$name: timed out"; exit 1; fi
    sleep 0.2
  done
  t1=$(now)
  # The end is when the last batch settled (the control database's clock is this machine's), not
  # when the 0.2 s poll above noticed it.
  local settled_end
  settled_end=$(psql "$db_url" -qAtX -c "SELECT extract(epoch FROM max(settled_at)) FROM batches" || true)
  if [ -n "$settled_end" ]; then t1=$settled_end; fi
  j1=$(cpu_jiffies)
  local busy
  busy=$(awk -v a="$j0" -v b="$j1" 'BEGIN { split(a, x, " "); split(b, y, " ");
    printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2] > 0 ? y[2] - x[2] : 1) }')
  # Read the figures before stopping: /proc/PID is gone once the process exits.
  local cpu hwm
  cpu=$(proc_cpu_s "$DAEMON_PID")
  hwm=$(proc_hwm_mb "$DAEMON_PID")
  # What the S3 server and the receiver spent during the row: the cores the daemon did not have.
  local s3_cpu rx_cpu
  s3_cpu=$(awk -v a="$s3_0" -v b="$(other_cpu_s "$S3_PID")" 'BEGIN { printf "%.2f", b - a }')
  rx_cpu=$(awk -v a="$rx_0" -v b="$(other_cpu_s "$RECEIVER_PID")" 'BEGIN { printf "%.2f", b - a }')
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID" || true
  DAEMON_PID=""
  local got; got=$(received_records "$name")
  case "$name" in file|*-giveup) ;; *) stop_receiver ;; esac
  if [ "$got" != "$RECORDS" ]; then
    log "$name: the receiver counted $got records, $RECORDS were staged"
    if [ "${got:-0}" -lt "$RECORDS" ]; then echo "$name" >>"$WORK/short"; fi
  fi
  local rejected; rejected=$(psql "$db_url" -qAtX -c "SELECT count(*) FROM load_errors")
  case "$name" in
    *-giveup)
      local rows; rows=$(psql "$db_url" -qAtX -c "SELECT count(*) FROM load_errors WHERE line_number > 0")
      if [ "$rows" != "$RECORDS" ] || [ "$got" != "$RECORDS" ]; then
        log "$name: $rows record rows and $got failed-record lines for $RECORDS records"
        if [ "${rows:-0}" -lt "$RECORDS" ]; then echo "$name" >>"$WORK/short"; fi
      fi ;;
  esac

  log "$name: gzip -dc over the same $OBJECTS objects"
  local gz gz_cpu gz_wall
  gz=$(gzip_cpu); gz_cpu=${gz% *}; gz_wall=${gz#* }

  local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$RECORDS" "$UNCOMPRESSED" \
    "$wall" "$cpu" "$hwm" "$gz_cpu" "$gz_wall" "$got" "$rejected" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$busy" "$s3_cpu" "$rx_cpu" >>"$RESULTS"
  rm -rf "$WORK/file-out"
}

for d in $DESTINATIONS; do run_one "$d"; done

# --- report ------------------------------------------------------------------------------------
echo
echo "stageload benchmark $(date -u +%Y-%m-%dT%H:%M:%SZ): $OBJECTS objects, $RECORDS records," \
  "$(awk -v u="$UNCOMPRESSED" -v c="$COMPRESSED" 'BEGIN { printf "%.1f MB uncompressed, %.1f MB gzip (%.1fx)", u/1e6, c/1e6, u/c }')"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1); MB = 10^6 bytes"
awk -F'\t' '
  BEGIN {
    printf "%-20s %10s %8s %7s %10s %7s %7s %8s %9s %10s %8s %9s %6s %6s %8s %8s\n", "destination", "records", "MB",
      "wall s", "records/s", "MB/s", "CPU s", "CPU s/GB", "RSS MB", "gzip CPU s", "CPU/gzip", "received", "load",
      "busy %", "S3 CPU", "recv CPU"
  }
  {
    mb = $3 / 1e6
    printf "%-20s %10d %8.1f %7.2f %10.0f %7.1f %7.2f %8.2f %9.1f %10.2f %8.2f %9s %6s %6s %8s %8s\n", $1, $2, mb, $4,
      $2 / $4, mb / $4, $5, $5 / (mb / 1000), $6, $7, $5 / $7, $9, $11, $12, $13, $14
    if ($10 != 0) rows = rows sprintf("  (%s: %s load_errors rows)\n", $1, $10)
    gz_n++; gz_cpu += $7; gz_wall += $8; gz_mb = mb; gz_rec = $2; wall[$1] = $4
  }
  END {
    # The reference: gzip -dc over the same objects, the mean of the runs above.
    if (gz_n > 0) {
      c = gz_cpu / gz_n; w = gz_wall / gz_n
      printf "%-20s %10d %8.1f %7.2f %10.0f %7.1f %7.2f %8.2f %9s %10.2f %8.2f %9s %6s %6s %8s %8s\n", "gzip -dc (reference)",
        gz_rec, gz_mb, w, gz_rec / w, gz_mb / w, c, c / (gz_mb / 1000), "-", c, 1, "-", "-", "-", "-", "-"
    }
    printf "%s", rows
    if (("splunk-ack" in wall) && ("splunk-noack" in wall))
      printf "splunk-ack wall / splunk-noack wall: %.2f\n", wall["splunk-ack"] / wall["splunk-noack"]
    if (("elasticsearch-w2" in wall) && ("elasticsearch" in wall))
      printf "elasticsearch-w2 throughput / elasticsearch: %.2f\n", wall["elasticsearch"] / wall["elasticsearch-w2"]
  }' "$RESULTS"
echo "aims: CPU/gzip <= 0.70 (Elasticsearch, Splunk without acks), <= 0.80 (Splunk with acks, wall"
echo "within 1.25x of splunk-noack), RSS MB < 100; -w2 records/s >= 1.8x the one-worker row. wall s runs"
echo "from daemon start (migrations, first listing, 1 s seal interval) to the last batch settled; CPU"
echo "s/GB is daemon CPU seconds per GB (10^9 bytes) of uncompressed input; load is the 1-minute load"
echo "average at the end of the run; busy % is the share of all cores busy (any process) while the"
echo "daemon ran: near 100, the machine was saturated and more workers cannot go faster. S3 CPU and"
echo "recv CPU are the CPU seconds the S3 server and the blackhole receiver spent in the same time."
echo "*-giveup rows: the destination is down, wall s runs to the batch settled skipped (5 s budget"
echo "included), received counts failed-record JSON lines in S3; aim: RSS MB < 100 for a 1 GiB batch."
# The per-batch work alone (reader, JSON check, _bulk bodies; no S3 server, receiver or database
# on the cores), one object and two at a time: what `workers` can scale to on this machine.
if [ -x "$BIN/examples/scale_bench" ] && [ -d "$STACK/s3/$BUCKET" ]; then
  echo
  echo "per-batch work alone (examples/scale_bench: the daemon's reader and _bulk body building over the"
  echo "staged files, nothing sent), objects at once as workers would deliver batches at once:"
  "$BIN/examples/scale_bench" --dir "$STACK/s3/$BUCKET" --at-once 1,2
fi
# What a transform costs on the reading thread against gzip -dc of the same records (jq steps).
if [ -x "$BIN/examples/transform_bench" ]; then
  echo
  echo "transforms (examples/transform_bench: the daemon's reader with no step, one jq step, three"
  echo "jq steps; extra = the step's CPU beyond the plain read, as a multiple of gzip -dc's):"
  "$BIN/examples/transform_bench" --mib "${BENCH_TRANSFORM_MIB:-256}"
fi
if [ -s "$WORK/short" ]; then
  log "FAILED: fewer records received than staged: $(tr '\n' ' ' <"$WORK/short")"
  exit 1
fi
