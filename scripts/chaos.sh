#!/usr/bin/env bash
# `make chaos`: the chaos suite (tests/chaos.rs) for STAGELOAD_CHAOS_SECONDS (default 300) of
# faults against the local stack, printing the per-destination table. STAGELOAD_CHAOS_SEED
# replays a run's fault choices; STAGELOAD_CHAOS_REPLICAS sets the replicas per destination.
# `make test` runs the same test with its short default (30 s).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/stack.sh up
trap 'scripts/stack.sh down' EXIT
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
export STAGELOAD_CHAOS_SECONDS=${STAGELOAD_CHAOS_SECONDS:-300}

cargo build --workspace --bins --locked
cargo test --locked --test chaos -- --nocapture
