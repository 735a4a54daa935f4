//! The ledger of staged objects, the discovery cursor, and the key layout discovery learned.

use super::{q, Control, ControlError};
use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;

/// An object seen in a listing, ready to be recorded.
#[derive(Debug, Clone)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
    /// LastModified.
    pub last_modified: Option<DateTime<Utc>>,
    /// Arrival time (time partition of the key, else LastModified).
    pub arrival_time: DateTime<Utc>,
}

/// Where a `stageload backfill` run got to: a row of `backfills`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackfillState {
    /// The last key listed, to resume after.
    pub last_key: Option<String>,
    /// Objects in range listed so far.
    pub objects: i64,
    /// Of those, newly staged.
    pub recorded: i64,
    /// Bytes of the objects in range.
    pub bytes: i64,
    /// The time `--since` named when the run began (an age names a later one on every run).
    pub since: Option<DateTime<Utc>>,
    /// The time `--until` named when the run began.
    pub until: Option<DateTime<Utc>>,
}

impl Control {
    /// Records listed objects; ones already known (same pipeline, bucket, key and etag, in the
    /// ledger, or settled and retired by retention, whose digest stays in `retired_digests`) are
    /// ignored. Returns how many were new.
    ///
    /// The shared advisory lock pairs with the exclusive one retention takes while it moves
    /// ledger rows to digests: without it, an insert whose snapshot predates a digest could slip
    /// in after the ledger row it replaced was deleted, and load the object again.
    pub async fn record_objects(
        &self,
        pipeline: &str,
        bucket: &str,
        objects: &[ListedObject],
    ) -> Result<u64, ControlError> {
        if objects.is_empty() {
            return Ok(0);
        }
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(q("begin record objects"))?;
        lock_shared(&tx, pipeline).await?;
        let n = insert_new(&tx, pipeline, bucket, objects).await?;
        tx.commit().await.map_err(q("commit record objects"))?;
        Ok(n)
    }

    /// `stageload backfill --reload`: stages `objects` again although they were settled before.
    /// Their retention digests go, their settled ledger rows go back to `pending` (the batches
    /// that held them keep that in `batch_objects`), and the rest are recorded as new. Objects
    /// still pending or in a batch are left as they are. Returns how many were staged.
    pub async fn reload_objects(
        &self,
        pipeline: &str,
        bucket: &str,
        objects: &[ListedObject],
    ) -> Result<u64, ControlError> {
        if objects.is_empty() {
            return Ok(0);
        }
        let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let etags: Vec<&str> = objects.iter().map(|o| o.etag.as_str()).collect();
        let mut conn = self.conn().await?;
        let tx = conn
            .transaction()
            .await
            .map_err(q("begin reload objects"))?;
        // Rows first, then the advisory lock: retention takes them in that order, so a row it
        // is retiring is waited for (and then found gone, its digest there to delete).
        let settled: Vec<i64> = tx
            .query(
                "SELECT o.id FROM staged_objects o
                 JOIN unnest($3::text[], $4::text[]) AS t(k, e) ON o.key = t.k AND o.etag = t.e
                 WHERE o.pipeline = $1 AND o.bucket = $2 AND o.state IN ('loaded', 'skipped')
                 FOR UPDATE OF o",
                &[&pipeline, &bucket, &keys, &etags],
            )
            .await
            .map_err(q("lock settled objects to reload"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        lock_shared(&tx, pipeline).await?;
        tx.execute(
            "DELETE FROM retired_digests WHERE digest IN (
                 SELECT stageload_object_digest($1, $2, k, e)
                 FROM unnest($3::text[], $4::text[]) AS t(k, e))",
            &[&pipeline, &bucket, &keys, &etags],
        )
        .await
        .map_err(q("forget retired objects to reload"))?;
        let reset = tx
            .execute(
                "UPDATE staged_objects SET state = 'pending', batch_id = NULL, settled_at = NULL,
                        discovered_at = now()
                 WHERE id = ANY($1) AND state IN ('loaded', 'skipped')",
                &[&settled],
            )
            .await
            .map_err(q("reset settled objects to pending"))?;
        let new = insert_new(&tx, pipeline, bucket, objects).await?;
        // Asked for by name: destinations that remember what they hold load these anyway.
        tx.execute(
            "UPDATE staged_objects SET reload = true
             WHERE pipeline = $1 AND bucket = $2 AND state = 'pending'
               AND (key, etag) IN (SELECT k, e FROM unnest($3::text[], $4::text[]) AS t(k, e))",
            &[&pipeline, &bucket, &keys, &etags],
        )
        .await
        .map_err(q("mark objects to reload"))?;
        tx.commit().await.map_err(q("commit reload objects"))?;
        Ok(reset + new)
    }

    /// When a pipeline first started (recorded now if this is its first start).
    pub async fn pipeline_start(
        &self,
        pipeline: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<DateTime<Utc>, ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO pipeline_starts (pipeline, bucket, prefix) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&pipeline, &bucket, &prefix],
        )
        .await
        .map_err(q("record pipeline start"))?;
        let row = conn
            .query_one(
                "SELECT started_at FROM pipeline_starts WHERE pipeline = $1 AND bucket = $2 AND prefix = $3",
                &[&pipeline, &bucket, &prefix],
            )
            .await
            .map_err(q("read pipeline start"))?;
        Ok(row.get(0))
    }

    /// Where a backfill over `range_key` got to, or None when it never ran or finished (a
    /// finished one starts again; recording is idempotent).
    pub async fn backfill_progress(
        &self,
        pipeline: &str,
        range_key: &str,
    ) -> Result<Option<BackfillState>, ControlError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                "SELECT last_key, objects, recorded, bytes, since_at, until_at FROM backfills
                 WHERE pipeline = $1 AND range_key = $2 AND finished_at IS NULL AND last_key IS NOT NULL",
                &[&pipeline, &range_key],
            )
            .await
            .map_err(q("read backfill progress"))?;
        Ok(row.map(|r| BackfillState {
            last_key: r.get(0),
            objects: r.get(1),
            recorded: r.get(2),
            bytes: r.get(3),
            since: r.get(4),
            until: r.get(5),
        }))
    }

    /// Saves a backfill's progress; `finished` marks it done.
    pub async fn save_backfill(
        &self,
        pipeline: &str,
        range_key: &str,
        state: &BackfillState,
        finished: bool,
    ) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO backfills (pipeline, range_key, last_key, objects, recorded, bytes, since_at,
                                    until_at, finished_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, CASE WHEN $9 THEN now() END)
             ON CONFLICT (pipeline, range_key) DO UPDATE SET last_key = EXCLUDED.last_key,
               objects = EXCLUDED.objects, recorded = EXCLUDED.recorded, bytes = EXCLUDED.bytes,
               since_at = EXCLUDED.since_at, until_at = EXCLUDED.until_at,
               finished_at = EXCLUDED.finished_at, updated_at = now()",
            &[
                &pipeline,
                &range_key,
                &state.last_key,
                &state.objects,
                &state.recorded,
                &state.bytes,
                &state.since,
                &state.until,
                &finished,
            ],
        )
        .await
        .map_err(q("save backfill progress"))?;
        Ok(())
    }

    /// The last key listed for a pipeline's prefix, if any.
    pub async fn cursor(
        &self,
        pipeline: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<String>, ControlError> {
        self.prefix_text(
            "read discovery cursor",
            "SELECT last_key FROM discovery_cursors WHERE pipeline = $1 AND bucket = $2 AND prefix = $3",
            [pipeline, bucket, prefix],
        )
        .await
    }

    /// One text column of a row keyed by (pipeline, bucket, prefix), if the row exists.
    async fn prefix_text(
        &self,
        what: &'static str,
        sql: &str,
        key: [&str; 3],
    ) -> Result<Option<String>, ControlError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(sql, &[&key[0], &key[1], &key[2]])
            .await
            .map_err(q(what))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Moves the cursor forward (never back).
    pub async fn advance_cursor(
        &self,
        pipeline: &str,
        bucket: &str,
        prefix: &str,
        last_key: &str,
    ) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO discovery_cursors (pipeline, bucket, prefix, last_key) VALUES ($1, $2, $3, $4)
             ON CONFLICT (pipeline, bucket, prefix) DO UPDATE
               SET last_key = GREATEST(discovery_cursors.last_key COLLATE \"C\", EXCLUDED.last_key COLLATE \"C\"), updated_at = now()",
            &[&pipeline, &bucket, &prefix, &last_key],
        )
        .await
        .map_err(q("advance discovery cursor"))?;
        Ok(())
    }

    /// The key layout discovery recorded for a pipeline's prefix (see
    /// [`crate::source::layout::KeyLayout`]), if any.
    pub async fn key_layout(
        &self,
        pipeline: &str,
        bucket: &str,
        prefix: &str,
    ) -> Result<Option<String>, ControlError> {
        self.prefix_text(
            "read key layout",
            "SELECT key_layout FROM discovery_state WHERE pipeline = $1 AND bucket = $2 AND prefix = $3",
            [pipeline, bucket, prefix],
        )
        .await
    }

    /// Records the key layout of a pipeline's prefix.
    pub async fn save_key_layout(
        &self,
        pipeline: &str,
        bucket: &str,
        prefix: &str,
        layout: &str,
    ) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        conn.execute(
            "INSERT INTO discovery_state (pipeline, bucket, prefix, key_layout) VALUES ($1, $2, $3, $4)
             ON CONFLICT (pipeline, bucket, prefix) DO UPDATE
               SET key_layout = EXCLUDED.key_layout, updated_at = now()",
            &[&pipeline, &bucket, &prefix, &layout],
        )
        .await
        .map_err(q("save key layout"))?;
        Ok(())
    }

    /// Which of `keys` the ledger holds for a pipeline and bucket (under any ETag). Retention's
    /// digests cover key and ETag together, so a retired key is not among them: listed without
    /// an ETag, it gets a HEAD, and its digest then keeps it out of the ledger.
    pub async fn known_keys(
        &self,
        pipeline: &str,
        bucket: &str,
        keys: &[&str],
    ) -> Result<std::collections::HashSet<String>, ControlError> {
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT DISTINCT key FROM staged_objects
                 WHERE pipeline = $1 AND bucket = $2 AND key = ANY($3)",
                &[&pipeline, &bucket, &keys],
            )
            .await
            .map_err(q("look up known keys"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// The shared side of the per-pipeline advisory lock retention takes exclusively while it moves
/// ledger rows to digests (see [`Control::record_objects`]).
async fn lock_shared(tx: &Transaction<'_>, pipeline: &str) -> Result<(), ControlError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
        &[&super::retention::LEDGER_LOCK_CLASS, &pipeline],
    )
    .await
    .map_err(q("lock ledger for recording"))?;
    Ok(())
}

/// Inserts the objects neither in the ledger nor retired by retention; returns how many.
async fn insert_new(
    tx: &Transaction<'_>,
    pipeline: &str,
    bucket: &str,
    objects: &[ListedObject],
) -> Result<u64, ControlError> {
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let etags: Vec<&str> = objects.iter().map(|o| o.etag.as_str()).collect();
    let sizes: Vec<i64> = objects.iter().map(|o| o.size).collect();
    let modified: Vec<Option<DateTime<Utc>>> = objects.iter().map(|o| o.last_modified).collect();
    let arrival: Vec<DateTime<Utc>> = objects.iter().map(|o| o.arrival_time).collect();
    tx.execute(
        "INSERT INTO staged_objects (pipeline, bucket, key, etag, size, last_modified, arrival_time)
         SELECT $1, $2, k, e, s, m, a
         FROM unnest($3::text[], $4::text[], $5::bigint[], $6::timestamptz[], $7::timestamptz[])
              AS t(k, e, s, m, a)
         WHERE NOT EXISTS (SELECT 1 FROM retired_digests r
                           WHERE r.digest = stageload_object_digest($1, $2, t.k, t.e))
         ON CONFLICT (pipeline, bucket, key, etag) DO NOTHING",
        &[&pipeline, &bucket, &keys, &etags, &sizes, &modified, &arrival],
    )
    .await
    .map_err(q("record objects"))
}
