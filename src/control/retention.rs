//! Retention: deletes settled history older than `[control] retention_days`, in bounded chunks
//! (one transaction per chunk, a pause between), so the control database stops growing and no
//! long lock holds discovery, sealing or delivery back.
//!
//! What goes, each pass, in this order (a later step frees what an earlier one held):
//!
//! 1. `load_errors` rows resolved (`replayed` or `ignored`) longer ago than the period.
//! 2. Batches `loaded` or `skipped` that settled longer ago than the period and that nothing
//!    kept points at: no `load_errors` row (so a skipped batch goes only once every one of its
//!    errors was resolved and aged out in step 1; a loaded batch with unresolved rejected
//!    records stays too), no batch replaying it (`replay_of`). Their `batch_objects` go with them.
//! 3. `staged_objects` rows `loaded` or `skipped`, settled longer ago than the period, that no
//!    remaining batch or error row references. Each leaves a tombstone in `retired_objects`
//!    (pipeline, bucket, key, etag), which discovery consults: an object still in S3 that is
//!    listed again (the lookback window, a prefix without time in its keys that is re-listed
//!    whole, a notification delivered twice) is then not recorded and not loaded a second time.
//! 4. Tombstones whose key discovery can no longer reach: the pipeline's keys carry time, the key
//!    sorts at or before the discovery cursor and before the start of the lookback window (with
//!    an hour to spare), and, for a pipeline fed by notifications, the tombstone is older than
//!    SQS's longest message retention (14 days). A prefix without time in its keys is re-listed
//!    whole, so its tombstones stay (one small row per object; see docs/configuration.md, "Retention").
//!
//! Nothing `pending`, `batched`, `sealed` or `delivering` is ever touched.

use super::{q, Control, ControlError};
use crate::source::layout::KeyLayout;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The advisory lock class (first key of `pg_advisory_xact_lock(int, int)`, the second is
/// `hashtext(pipeline)`) that orders recording objects against retiring them.
pub const LEDGER_LOCK_CLASS: i32 = 0x5354_4c47; // "STLG"

/// The pause between two chunks of one pass.
pub const CHUNK_PAUSE: Duration = Duration::from_millis(100);

/// Extra margin before the lookback window, for clocks and configs that differ between
/// replicas.
const LOOKBACK_SLACK_S: i64 = 3600;

/// SQS keeps a message at most 14 days, so a notification cannot name an object again later.
const NOTIFICATION_HORIZON_S: i64 = 14 * 86_400;

/// What retention needs to know about a configured pipeline to tell which tombstones discovery
/// can no longer reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineReach {
    /// Pipeline name.
    pub pipeline: String,
    /// Source bucket.
    pub bucket: String,
    /// Source prefix.
    pub prefix: String,
    /// `source.lookback_s`.
    pub lookback_s: u64,
    /// Whether S3 event notifications feed it (`source.sqs_queue_url`).
    pub notifications: bool,
}

impl PipelineReach {
    /// From a pipeline's configuration.
    pub fn of(p: &crate::config::PipelineConfig) -> PipelineReach {
        PipelineReach {
            pipeline: p.name.clone(),
            bucket: p.source.bucket.clone(),
            prefix: p.source.prefix.clone(),
            lookback_s: p.source.lookback_s,
            notifications: p.source.sqs_queue_url.is_some(),
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Resolved `load_errors` rows.
    pub errors: u64,
    /// Batches (with their `batch_objects` rows).
    pub batches: u64,
    /// `staged_objects` rows (each leaving a tombstone).
    pub objects: u64,
    /// Tombstones no longer needed.
    pub tombstones: u64,
}

impl RetentionReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == RetentionReport::default()
    }
}

/// The part of a key after the prefix and `leading` directory levels, as a PostgreSQL regular
/// expression that `regexp_replace` removes.
fn leading_levels_re(leading: usize) -> String {
    format!("^([^/]*/){{{leading}}}")
}

/// From a stored layout template: how many varying levels come before the time levels, and the
/// key suffix after them that starts the lookback window opened at `since`. None when discovery
/// re-lists everything (no layout, keys without time) or key order does not follow time.
pub fn lookback_start(template: &str, since: DateTime<Utc>) -> Option<(usize, String)> {
    let layout = KeyLayout::from_template(template)?;
    if layout.is_flat() {
        return None;
    }
    let leading = template
        .split('/')
        .take_while(|seg| seg.ends_with('*'))
        .count();
    let start = layout.time_start(since);
    (!start.is_empty()).then_some((leading, start))
}

impl Control {
    /// One retention pass: every step in chunks of `chunk` rows, pausing `pause` between chunks
    /// and stopping early when `stop` is cancelled. Deletes what settled before now - `period`.
    pub async fn retention_pass(
        &self,
        period: Duration,
        chunk: i64,
        pause: Duration,
        pipelines: &[PipelineReach],
        stop: &CancellationToken,
    ) -> Result<RetentionReport, ControlError> {
        let cutoff = Utc::now()
            - ChronoDuration::from_std(period).unwrap_or_else(|_| ChronoDuration::days(3650));
        let mut report = RetentionReport::default();
        macro_rules! chunked {
            ($field:ident, $step:expr) => {
                loop {
                    if stop.is_cancelled() {
                        return Ok(report);
                    }
                    let n = $step.await?;
                    report.$field += n;
                    if n < chunk as u64 {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
            };
        }
        chunked!(errors, self.retire_errors(cutoff, chunk));
        chunked!(batches, self.retire_batches(cutoff, chunk));
        chunked!(objects, self.retire_objects(cutoff, chunk));
        for p in pipelines {
            chunked!(tombstones, self.prune_tombstones(p, chunk));
        }
        Ok(report)
    }

    /// Step 1: resolved error rows past the period.
    async fn retire_errors(&self, cutoff: DateTime<Utc>, chunk: i64) -> Result<u64, ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "DELETE FROM load_errors WHERE id IN (
                 SELECT id FROM load_errors
                 WHERE resolution IS NOT NULL AND resolved_at < $1
                 ORDER BY resolved_at LIMIT $2
                 FOR UPDATE SKIP LOCKED)",
            &[&cutoff, &chunk],
        )
        .await
        .map_err(q("retention: delete resolved load errors"))
    }

    /// Step 2: settled batches past the period that nothing kept references.
    async fn retire_batches(&self, cutoff: DateTime<Utc>, chunk: i64) -> Result<u64, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("retention: begin"))?;
        let ids: Vec<i64> = tx
            .query(
                "SELECT id FROM batches b
                 WHERE state IN ('loaded', 'skipped') AND settled_at < $1
                   AND NOT EXISTS (SELECT 1 FROM load_errors e WHERE e.batch_id = b.id)
                   AND NOT EXISTS (SELECT 1 FROM load_errors e WHERE e.replay_batch_id = b.id)
                   AND NOT EXISTS (SELECT 1 FROM batches r WHERE r.replay_of = b.id)
                 ORDER BY settled_at LIMIT $2
                 FOR UPDATE SKIP LOCKED",
                &[&cutoff, &chunk],
            )
            .await
            .map_err(q("retention: select batches"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        tx.execute(
            "DELETE FROM batch_objects WHERE batch_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(q("retention: delete batch objects"))?;
        let n = tx
            .execute(
                "DELETE FROM batches WHERE id = ANY($1) AND state IN ('loaded', 'skipped')",
                &[&ids],
            )
            .await
            .map_err(q("retention: delete batches"))?;
        tx.commit().await.map_err(q("retention: commit batches"))?;
        Ok(n)
    }

    /// Step 3: settled objects past the period that no remaining batch or error references,
    /// each replaced by a tombstone in the same transaction.
    async fn retire_objects(&self, cutoff: DateTime<Utc>, chunk: i64) -> Result<u64, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("retention: begin"))?;
        let rows = tx
            .query(
                "SELECT id, pipeline FROM staged_objects o
                 WHERE state IN ('loaded', 'skipped') AND settled_at < $1
                   AND NOT EXISTS (SELECT 1 FROM batch_objects bo WHERE bo.object_id = o.id)
                   AND NOT EXISTS (SELECT 1 FROM load_errors e WHERE e.object_id = o.id)
                 ORDER BY settled_at LIMIT $2
                 FOR UPDATE SKIP LOCKED",
                &[&cutoff, &chunk],
            )
            .await
            .map_err(q("retention: select objects"))?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let mut pipelines: Vec<&str> = rows.iter().map(|r| r.get(1)).collect();
        pipelines.sort_unstable();
        pipelines.dedup();
        // Waits for recordings in flight to commit, and holds new ones until the tombstones are
        // visible (see `record_objects`).
        for p in &pipelines {
            tx.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LEDGER_LOCK_CLASS, p],
            )
            .await
            .map_err(q("retention: lock ledger"))?;
        }
        tx.execute(
            "INSERT INTO retired_objects (pipeline, bucket, key, etag)
             SELECT pipeline, bucket, key, etag FROM staged_objects WHERE id = ANY($1)
             ON CONFLICT DO NOTHING",
            &[&ids],
        )
        .await
        .map_err(q("retention: record tombstones"))?;
        let n = tx
            .execute(
                "DELETE FROM staged_objects WHERE id = ANY($1) AND state IN ('loaded', 'skipped')",
                &[&ids],
            )
            .await
            .map_err(q("retention: delete objects"))?;
        tx.commit().await.map_err(q("retention: commit objects"))?;
        Ok(n)
    }

    /// Step 4: one pipeline's tombstones that discovery can no longer reach.
    async fn prune_tombstones(&self, p: &PipelineReach, chunk: i64) -> Result<u64, ControlError> {
        let (Some(template), Some(cursor)) = (
            self.key_layout(&p.pipeline, &p.bucket, &p.prefix).await?,
            self.cursor(&p.pipeline, &p.bucket, &p.prefix).await?,
        ) else {
            return Ok(0);
        };
        let now = Utc::now();
        let since = now - ChronoDuration::seconds(p.lookback_s as i64 + LOOKBACK_SLACK_S);
        let Some((leading, start)) = lookback_start(&template, since) else {
            return Ok(0);
        };
        let retired_before = if p.notifications {
            now - ChronoDuration::seconds(NOTIFICATION_HORIZON_S)
        } else {
            now
        };
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "DELETE FROM retired_objects WHERE (pipeline, bucket, key, etag) IN (
                     SELECT pipeline, bucket, key, etag FROM retired_objects
                     WHERE pipeline = $1 AND bucket = $2 AND retired_at < $3
                       AND left(key, length($4)) = $4
                       AND key COLLATE \"C\" <= $5 COLLATE \"C\"
                       AND regexp_replace(substr(key, length($4) + 1), $6, '') COLLATE \"C\" < $7 COLLATE \"C\"
                     LIMIT $8)",
                &[
                    &p.pipeline,
                    &p.bucket,
                    &retired_before,
                    &p.prefix,
                    &cursor,
                    &leading_levels_re(leading),
                    &start,
                    &chunk,
                ],
            )
            .await
            .map_err(q("retention: prune tombstones"))?;
        Ok(n)
    }
}

/// Runs retention every `interval` until `stop`; `pipelines` gives the running pipelines at each
/// pass (they change on reload). A failed pass is logged and tried again at the next interval.
pub async fn run(
    control: Control,
    period: Duration,
    interval: Duration,
    chunk: i64,
    pipelines: impl Fn() -> Vec<PipelineReach>,
    stop: CancellationToken,
) {
    info!(
        retention_days = period.as_secs_f64() / 86_400.0,
        interval_s = interval.as_secs_f64(),
        chunk,
        "retention running"
    );
    loop {
        let started = std::time::Instant::now();
        match control
            .retention_pass(period, chunk, CHUNK_PAUSE, &pipelines(), &stop)
            .await
        {
            Ok(r) if r.is_empty() => debug!("retention pass: nothing to delete"),
            Ok(r) => info!(
                errors = r.errors,
                batches = r.batches,
                objects = r.objects,
                tombstones = r.tombstones,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "retention pass deleted settled history"
            ),
            Err(e) => warn!(error = %e, "retention pass failed; trying again at the next interval"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn lookback_start_follows_the_layout() {
        let since = Utc.with_ymd_and_hms(2026, 11, 28, 3, 12, 0).unwrap();
        assert_eq!(
            lookback_start("{YYYY}/{MM}/{DD}/{HH}", since),
            Some((0, "2026/11/28/03/".to_string()))
        );
        assert_eq!(
            lookback_start("region=*/year={YYYY}/month={MM}/day={DD}", since),
            Some((1, "year=2026/month=11/day=28/".to_string()))
        );
        // Keys without time, or whose order does not follow time, are re-listed: no start.
        assert_eq!(lookback_start("none", since), None);
        assert_eq!(lookback_start("month={MM}/year={YYYY}", since), None);
        assert_eq!(lookback_start("garbage{", since), None);
    }

    #[test]
    fn leading_levels_pattern() {
        assert_eq!(leading_levels_re(0), "^([^/]*/){0}");
        assert_eq!(leading_levels_re(2), "^([^/]*/){2}");
    }
}
