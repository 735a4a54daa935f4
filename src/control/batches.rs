//! Batches: sealing pending objects, claiming under a lease, recording attempts, settling.

use super::{q, Control, ControlError};
use crate::config::BufferConfig;
use crate::model::{ClaimedBatch, StagedObject};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::Transaction;

/// Why a batch was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealReason {
    /// Pending bytes reached the buffer size.
    Size,
    /// The oldest pending object waited the buffer interval.
    Interval,
    /// The batch reached the maximum object count.
    MaxObjects,
}

impl SealReason {
    fn as_str(self) -> &'static str {
        match self {
            SealReason::Size => "size",
            SealReason::Interval => "interval",
            SealReason::MaxObjects => "max_objects",
        }
    }
}

/// Decides how many of the oldest pending objects form a batch now, if any.
/// `objects` holds (size, waited) of pending objects, oldest first, at most `max_objects` long.
pub fn seal_rule(
    objects: &[(i64, Duration)],
    buffer: &BufferConfig,
    more_pending: bool,
) -> Option<(usize, SealReason)> {
    let mut total = 0i64;
    for (i, (size, _)) in objects.iter().enumerate() {
        total += size;
        if total >= buffer.size_bytes() {
            return Some((i + 1, SealReason::Size));
        }
    }
    if objects.len() >= buffer.max_objects as usize && (more_pending || !objects.is_empty()) {
        return Some((objects.len(), SealReason::MaxObjects));
    }
    match objects.first() {
        Some((_, waited)) if *waited >= Duration::from_secs(buffer.interval_s) => {
            Some((objects.len(), SealReason::Interval))
        }
        _ => None,
    }
}

/// How a claimed batch ended.
#[derive(Debug, Clone, Default)]
pub struct Settlement {
    /// Records delivered.
    pub records_delivered: i64,
    /// Records rejected (one `load_errors` row each).
    pub records_rejected: i64,
    /// Objects skipped on their own (a bad file, a missing object); the rest are loaded.
    pub skipped_objects: Vec<i64>,
    /// The pipeline's after-load action (`delete`, `tag`, `move`), made due for each object
    /// this settlement loads, in the same transaction; `None` for `keep`.
    pub after_load: Option<&'static str>,
}

impl Control {
    /// Seals as many batches as the buffer rules allow for a pipeline; returns their ids.
    pub async fn seal(
        &self,
        pipeline: &str,
        destination: &str,
        buffer: &BufferConfig,
    ) -> Result<Vec<i64>, ControlError> {
        let mut sealed = Vec::new();
        loop {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(q("begin seal"))?;
            // One more than a batch can hold tells whether more are pending behind it.
            let rows = tx
                .query(
                    "SELECT id, size, GREATEST(extract(epoch FROM now() - discovered_at), 0)::float8
                     FROM staged_objects
                     WHERE pipeline = $1 AND state = 'pending'
                     ORDER BY arrival_time, id
                     LIMIT $2
                     FOR UPDATE SKIP LOCKED",
                    &[&pipeline, &(buffer.max_objects as i64 + 1)],
                )
                .await
                .map_err(q("select pending objects"))?;
            let more = rows.len() > buffer.max_objects as usize;
            let take = rows.len().min(buffer.max_objects as usize);
            let objects: Vec<(i64, Duration)> = rows[..take]
                .iter()
                .map(|r| (r.get(1), Duration::from_secs_f64(r.get::<_, f64>(2))))
                .collect();
            let Some((n, reason)) = seal_rule(&objects, buffer, more) else {
                return Ok(sealed);
            };
            let ids: Vec<i64> = rows[..n].iter().map(|r| r.get(0)).collect();
            let bytes: i64 = objects[..n].iter().map(|o| o.0).sum();
            let id = insert_batch(
                &tx,
                pipeline,
                destination,
                reason.as_str(),
                &ids,
                bytes,
                None,
            )
            .await?;
            tx.commit().await.map_err(q("commit seal"))?;
            sealed.push(id);
        }
    }

    /// Claims the oldest sealed batch of a pipeline for `worker` (display name) of the live
    /// process `owner` (its `workers` id), or takes over one whose lease ended or whose owner's
    /// session is gone (see [`super::workers`]). A live owner's lease is never taken before it ends.
    pub async fn claim(
        &self,
        pipeline: &str,
        worker: &str,
        owner: i32,
        lease: Duration,
    ) -> Result<Option<ClaimedBatch>, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("begin claim"))?;
        let Some(row) = tx
            .query_opt(
                "SELECT b.id, b.state, b.lease_owner, w.gone_at IS NOT NULL AND b.lease_expires_at >= now()
                 FROM batches b LEFT JOIN workers w ON w.id = b.lease_worker
                 WHERE b.pipeline = $1
                   AND (b.state = 'sealed'
                        OR (b.state = 'delivering'
                            AND (b.lease_expires_at < now() OR w.gone_at IS NOT NULL)))
                   AND EXISTS (SELECT 1 FROM workers me WHERE me.id = $2 AND me.gone_at IS NULL)
                 ORDER BY b.id LIMIT 1
                 FOR UPDATE OF b SKIP LOCKED",
                &[&pipeline, &owner],
            )
            .await
            .map_err(q("find claimable batch"))?
        else {
            return Ok(None);
        };
        if row.get::<_, Option<bool>>(3) == Some(true) {
            tracing::info!(
                pipeline,
                batch_id = row.get::<_, i64>(0),
                previous_owner = row.get::<_, Option<&str>>(2).unwrap_or(""),
                "taking over a batch before its lease ends: its owner's session is gone"
            );
        }
        let id: i64 = row.get(0);
        let taken_over = row.get::<_, &str>(1) == "delivering";
        let row = tx
            .query_one(
                "UPDATE batches SET state = 'delivering', lease_owner = $2, lease_worker = $4,
                        lease_expires_at = now() + make_interval(secs => $3),
                        lease_token = gen_random_uuid(),
                        first_attempt_at = COALESCE(first_attempt_at, now())
                 WHERE id = $1
                 RETURNING attempts, first_attempt_at, lease_token::text",
                &[&id, &worker, &lease.as_secs_f64(), &owner],
            )
            .await
            .map_err(q("claim batch"))?;
        let objects = batch_objects(&tx, id, true).await?;
        let ids: Vec<i64> = objects.iter().map(|o| o.id).collect();
        let reload: Vec<i64> = tx
            .query(
                "SELECT id FROM staged_objects WHERE id = ANY($1) AND reload",
                &[&ids],
            )
            .await
            .map_err(q("read objects to reload"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // The first batch of a replay chain: a replay delivers under its original's identity
        // where a destination names its output after the batch (the file destination).
        let origin: i64 = tx
            .query_one(
                "WITH RECURSIVE chain(id, replay_of) AS (
                     SELECT id, replay_of FROM batches WHERE id = $1
                     UNION ALL
                     SELECT b.id, b.replay_of FROM batches b JOIN chain c ON b.id = c.replay_of)
                 SELECT min(id) FROM chain",
                &[&id],
            )
            .await
            .map_err(q("find the batch's origin"))?
            .get(0);
        tx.commit().await.map_err(q("commit claim"))?;
        Ok(Some(ClaimedBatch {
            id,
            pipeline: pipeline.to_string(),
            attempts: row.get(0),
            first_attempt_at: row.get(1),
            lease_token: row.get(2),
            origin,
            taken_over,
            objects,
            reload,
            lease: None,
        }))
    }

    /// Extends a lease; false when the claim `token` no longer holds the batch (it was taken
    /// over, or settled).
    pub async fn renew(
        &self,
        batch: i64,
        token: &str,
        lease: Duration,
    ) -> Result<bool, ControlError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE batches SET lease_expires_at = now() + make_interval(secs => $3)
                 WHERE id = $1 AND lease_token::text = $2 AND state = 'delivering'",
                &[&batch, &token, &lease.as_secs_f64()],
            )
            .await
            .map_err(q("renew lease"))?;
        Ok(n == 1)
    }

    /// Gives a lease up at once (shutdown), leaving the batch `delivering` so the next claim
    /// checks whether the unfinished attempt had committed.
    pub async fn release(&self, batch: i64, token: &str) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE batches SET lease_expires_at = now() WHERE id = $1 AND lease_token::text = $2 AND state = 'delivering'",
            &[&batch, &token],
        )
        .await
        .map_err(q("release lease"))?;
        Ok(())
    }

    /// Counts an attempt as it starts; returns the attempt number (1 for the first), or None
    /// when the claim `token` no longer holds the batch.
    pub async fn start_attempt(
        &self,
        batch: i64,
        token: &str,
    ) -> Result<Option<i32>, ControlError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "UPDATE batches SET attempts = attempts + 1, last_attempt_at = now()
                 WHERE id = $1 AND lease_token::text = $2 AND state = 'delivering' RETURNING attempts",
                &[&batch, &token],
            )
            .await
            .map_err(q("start attempt"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Keeps the error of the last failed attempt (only while `token` holds the batch).
    pub async fn record_failure(
        &self,
        batch: i64,
        token: &str,
        error: &str,
    ) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "UPDATE batches SET last_error = $3 WHERE id = $1 AND lease_token::text = $2",
            &[
                &batch,
                &token,
                &crate::control::clean_text(error).into_owned(),
            ],
        )
        .await
        .map_err(q("record failure"))?;
        Ok(())
    }

    /// Settles a batch as loaded (objects in `skipped_objects` as skipped), if the claim
    /// `token` still holds it. Returns false when the lease was lost (another worker owns it).
    pub async fn settle_loaded(
        &self,
        batch: i64,
        token: &str,
        s: &Settlement,
    ) -> Result<bool, ControlError> {
        self.settle(batch, token, "loaded", s).await
    }

    /// Settles a batch as skipped: every object not yet loaded becomes skipped.
    pub async fn settle_skipped(
        &self,
        batch: i64,
        token: &str,
        s: &Settlement,
    ) -> Result<bool, ControlError> {
        self.settle(batch, token, "skipped", s).await
    }

    async fn settle(
        &self,
        batch: i64,
        token: &str,
        state: &str,
        s: &Settlement,
    ) -> Result<bool, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("begin settle"))?;
        let n = tx
            .execute(
                "UPDATE batches SET state = $3, settled_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                        lease_token = NULL, lease_worker = NULL,
                        records_delivered = records_delivered + $4, records_rejected = records_rejected + $5
                 WHERE id = $1 AND lease_token::text = $2 AND state = 'delivering'",
                &[&batch, &token, &state, &s.records_delivered, &s.records_rejected],
            )
            .await
            .map_err(q("settle batch"))?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute(
            "UPDATE staged_objects SET state = 'skipped', settled_at = now()
             WHERE batch_id = $1 AND state = 'batched' AND id = ANY($2)",
            &[&batch, &s.skipped_objects],
        )
        .await
        .map_err(q("skip objects"))?;
        // An object loaded again (a `backfill --reload`) keeps the action it already had:
        // at most one per object.
        tx.execute(
            "UPDATE staged_objects SET state = $2, settled_at = now(),
                    after_load_state = CASE WHEN $2 = 'loaded' AND $3::text IS NOT NULL
                        AND after_load_state IS NULL THEN 'pending' ELSE after_load_state END,
                    after_load_action = CASE WHEN $2 = 'loaded' AND $3::text IS NOT NULL
                        AND after_load_state IS NULL THEN $3 ELSE after_load_action END,
                    after_load_next_at = CASE WHEN $2 = 'loaded' AND $3::text IS NOT NULL
                        AND after_load_state IS NULL THEN now() ELSE after_load_next_at END
             WHERE batch_id = $1 AND state = 'batched'",
            &[&batch, &state, &s.after_load],
        )
        .await
        .map_err(q("settle objects"))?;
        tx.commit().await.map_err(q("commit settle"))?;
        Ok(true)
    }

    /// Puts the objects of skipped batches back into delivery as new batches (one per old
    /// batch); returns (old batch, new batch) pairs. A batch already replayed is not replayed
    /// again, so replaying twice loads once.
    pub async fn replay(&self, batch_ids: &[i64]) -> Result<Vec<(i64, i64)>, ControlError> {
        let mut out = Vec::new();
        for &old in batch_ids {
            let mut conn = self.conn().await?;
            let tx = conn.transaction().await.map_err(q("begin replay"))?;
            let Some(row) = tx
                .query_opt(
                    "SELECT pipeline, destination FROM batches b
                     WHERE id = $1 AND state = 'skipped'
                       AND NOT EXISTS (SELECT 1 FROM batches r WHERE r.replay_of = b.id)
                     FOR UPDATE",
                    &[&old],
                )
                .await
                .map_err(q("find replayable batch"))?
            else {
                continue;
            };
            let (pipeline, destination): (String, String) = (row.get(0), row.get(1));
            let objs = tx
                .query(
                    "SELECT o.id, o.size FROM staged_objects o JOIN batch_objects bo ON bo.object_id = o.id
                     WHERE bo.batch_id = $1 AND o.state = 'skipped' AND o.batch_id = $1
                     ORDER BY o.id FOR UPDATE OF o",
                    &[&old],
                )
                .await
                .map_err(q("select skipped objects"))?;
            if objs.is_empty() {
                continue;
            }
            let ids: Vec<i64> = objs.iter().map(|r| r.get(0)).collect();
            let bytes: i64 = objs.iter().map(|r| r.get::<_, i64>(1)).sum();
            let new = insert_batch(
                &tx,
                &pipeline,
                &destination,
                "replay",
                &ids,
                bytes,
                Some(old),
            )
            .await?;
            tx.execute(
                "UPDATE load_errors SET resolution = 'replayed', replay_batch_id = $2
                 WHERE batch_id = $1 AND resolution IS NULL",
                &[&old, &new],
            )
            .await
            .map_err(q("mark errors replayed"))?;
            tx.commit().await.map_err(q("commit replay"))?;
            out.push((old, new));
        }
        Ok(out)
    }

    /// Objects of a batch; `open_only` keeps the ones still to deliver.
    pub async fn objects_of(&self, batch: i64) -> Result<Vec<StagedObject>, ControlError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("begin read"))?;
        let objs = batch_objects(&tx, batch, false).await?;
        tx.commit().await.map_err(q("commit read"))?;
        Ok(objs)
    }
}

async fn insert_batch(
    tx: &Transaction<'_>,
    pipeline: &str,
    destination: &str,
    reason: &str,
    ids: &[i64],
    bytes: i64,
    replay_of: Option<i64>,
) -> Result<i64, ControlError> {
    let row = tx
        .query_one(
            "INSERT INTO batches (pipeline, destination, seal_reason, object_count, total_bytes, replay_of)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            &[&pipeline, &destination, &reason, &(ids.len() as i32), &bytes, &replay_of],
        )
        .await
        .map_err(q("insert batch"))?;
    let id: i64 = row.get(0);
    tx.execute(
        "INSERT INTO batch_objects (batch_id, object_id) SELECT $1, unnest($2::bigint[])",
        &[&id, &ids],
    )
    .await
    .map_err(q("insert batch objects"))?;
    tx.execute(
        "UPDATE staged_objects SET state = 'batched', batch_id = $1, settled_at = NULL WHERE id = ANY($2)",
        &[&id, &ids],
    )
    .await
    .map_err(q("mark objects batched"))?;
    Ok(id)
}

async fn batch_objects(
    tx: &Transaction<'_>,
    batch: i64,
    open_only: bool,
) -> Result<Vec<StagedObject>, ControlError> {
    let rows = tx
        .query(
            "SELECT o.id, o.bucket, o.key, o.etag, o.size, o.arrival_time
             FROM staged_objects o JOIN batch_objects bo ON bo.object_id = o.id
             WHERE bo.batch_id = $1 AND (NOT $2 OR (o.state = 'batched' AND o.batch_id = $1))
             ORDER BY o.arrival_time, o.id",
            &[&batch, &open_only],
        )
        .await
        .map_err(q("read batch objects"))?;
    Ok(rows
        .iter()
        .map(|r| StagedObject {
            id: r.get(0),
            bucket: r.get(1),
            key: r.get(2),
            etag: r.get(3),
            size: r.get(4),
            arrival_time: r.get::<_, DateTime<Utc>>(5),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(size_mib: u64, interval_s: u64, max_objects: u32) -> BufferConfig {
        BufferConfig {
            size_mib,
            interval_s,
            max_objects,
        }
    }

    const MIB: i64 = 1024 * 1024;

    #[test]
    fn size_threshold_seals_the_prefix_that_reaches_it() {
        let objs = vec![(MIB / 2, Duration::ZERO); 6];
        assert_eq!(
            seal_rule(&objs, &buffer(1, 300, 100), false),
            Some((2, SealReason::Size))
        );
    }

    #[test]
    fn interval_seals_a_small_old_buffer() {
        let objs = vec![(10, Duration::from_secs(301)), (10, Duration::from_secs(1))];
        assert_eq!(
            seal_rule(&objs, &buffer(1, 300, 100), false),
            Some((2, SealReason::Interval))
        );
        let young = vec![(10, Duration::from_secs(299))];
        assert_eq!(seal_rule(&young, &buffer(1, 300, 100), false), None);
        assert_eq!(seal_rule(&[], &buffer(1, 0, 100), false), None);
    }

    #[test]
    fn max_objects_caps_a_batch() {
        let objs = vec![(10, Duration::ZERO); 3];
        assert_eq!(
            seal_rule(&objs, &buffer(1, 300, 3), true),
            Some((3, SealReason::MaxObjects))
        );
    }
}
