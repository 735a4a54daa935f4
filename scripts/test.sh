#!/usr/bin/env bash
# `make test`: bring the local stack up, build the workspace once, run every test (unit and
# integration, the dev tools' included), and tear the stack down. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/stack.sh up
trap 'scripts/stack.sh down' EXIT
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
# Every integration test needs the stack: under `make test` a missing stack fails instead of skipping.
export STAGELOAD_REQUIRE_STACK=1

# One build of everything the tests start (the daemon and the dev servers), then the tests.
cargo build --workspace --bins --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads="${STAGELOAD_TEST_THREADS:-4}"
