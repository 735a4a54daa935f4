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
//!    remaining batch or error row references. Each leaves its digest in `retired_digests` (16
//!    bytes: the first half of SHA-256 over pipeline, bucket, key and etag), which every path
//!    that records objects consults: an object still in S3 that is listed or named again (the
//!    lookback window, a prefix re-listed whole, a notification delivered twice, `stageload
//!    backfill`, a reload that widens the prefix or lengthens `lookback_s`) is then not recorded
//!    and not loaded a second time. Digests are kept for good; only `stageload backfill
//!    --reload`, which an operator asks for by name, takes them out.
//!
//! Nothing `pending`, `batched`, `sealed` or `delivering` is ever touched.

use super::{q, Control, ControlError};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The advisory lock class (first key of `pg_advisory_xact_lock(int, int)`, the second is
/// `hashtext(pipeline)`) that orders recording objects against retiring them.
pub const LEDGER_LOCK_CLASS: i32 = 0x5354_4c47; // "STLG"

/// The pause between two chunks of one pass.
pub const CHUNK_PAUSE: Duration = Duration::from_millis(100);

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Resolved `load_errors` rows.
    pub errors: u64,
    /// Batches (with their `batch_objects` rows).
    pub batches: u64,
    /// `staged_objects` rows (each leaving its digest).
    pub objects: u64,
}

impl RetentionReport {
    /// Whether nothing was deleted.
    pub fn is_empty(&self) -> bool {
        *self == RetentionReport::default()
    }
}

impl Control {
    /// One retention pass: every step in chunks of `chunk` rows, pausing `pause` between chunks
    /// and stopping early when `stop` is cancelled. Deletes what settled before now - `period`.
    pub async fn retention_pass(
        &self,
        period: Duration,
        chunk: i64,
        pause: Duration,
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
    /// each replaced by its digest in the same transaction.
    async fn retire_objects(&self, cutoff: DateTime<Utc>, chunk: i64) -> Result<u64, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("retention: begin"))?;
        let rows = tx
            .query(
                "SELECT id, pipeline FROM staged_objects o
                 WHERE state IN ('loaded', 'skipped') AND settled_at < $1
                   AND after_load_state IS DISTINCT FROM 'pending'
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
        // Waits for recordings in flight to commit, and holds new ones until the digests are
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
            "INSERT INTO retired_digests (digest)
             SELECT stageload_object_digest(pipeline, bucket, key, etag)
             FROM staged_objects WHERE id = ANY($1)
             ON CONFLICT DO NOTHING",
            &[&ids],
        )
        .await
        .map_err(q("retention: record digests"))?;
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
}

/// Runs retention every `interval` until `stop`. A failed pass is logged and tried again at the
/// next interval.
pub async fn run(
    control: Control,
    period: Duration,
    interval: Duration,
    chunk: i64,
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
            .retention_pass(period, chunk, CHUNK_PAUSE, &stop)
            .await
        {
            Ok(r) if r.is_empty() => debug!("retention pass: nothing to delete"),
            Ok(r) => info!(
                errors = r.errors,
                batches = r.batches,
                objects = r.objects,
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
