#!/usr/bin/env bash
# The Redshift guarantees against your own cluster or Serverless workgroup (not part of
# `make test`): a load lands once, kill -9 after COMMIT loses and repeats nothing, a bad file is
# left out alone and a file with one bad row loads under MAXERROR. Needs, in the environment:
#   STAGELOAD_SMOKE_REDSHIFT_URL       postgres://user@host:5439/db?sslmode=verify-full
#   STAGELOAD_SMOKE_REDSHIFT_PASSWORD  that user's password
#   STAGELOAD_SMOKE_IAM_ROLE           a role the cluster may assume to read the bucket
#   STAGELOAD_SMOKE_BUCKET             a bucket in AWS_REGION the test may write under stageload-smoke/
#   AWS_REGION                         and AWS credentials from the default chain
# The control database is a fresh database in the local stack's PostgreSQL. The test creates
# and drops its own table (public.stageload_smoke_<pid>); its objects stay under
# s3://$STAGELOAD_SMOKE_BUCKET/stageload-smoke/<pid>/ for inspection.
set -euo pipefail
cd "$(dirname "$0")/.."
for v in STAGELOAD_SMOKE_REDSHIFT_URL STAGELOAD_SMOKE_REDSHIFT_PASSWORD STAGELOAD_SMOKE_IAM_ROLE \
         STAGELOAD_SMOKE_BUCKET AWS_REGION; do
  if [ -z "${!v:-}" ]; then echo "redshift-smoke: set $v (see the top of this script)" >&2; exit 2; fi
done
scripts/stack.sh up
set -a
# shellcheck disable=SC1091
. .stack/env
set +a
db="smoke_$(date +%s)"
psql "$STAGELOAD_PG_URL" -qX -c "CREATE DATABASE $db"
export STAGELOAD_SMOKE_CONTROL_URL="postgres://stageload:stageload@127.0.0.1:$STAGELOAD_PG_PORT/$db"
cargo build --bins --locked
cargo test --locked --test redshift_smoke -- --ignored --nocapture
