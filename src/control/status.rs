//! Read-side queries for operators: per-pipeline status, recent errors, batches, throughput.
//! Shared by the `stageload` operator commands and the admin status page.

use super::{q, Control, ControlError};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One pipeline's state, with the columns of the `stageload_pipeline_status` view. Read from
/// open states (partial indexes) and the per-pipeline totals, so its cost does not grow with
/// settled history.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PipelineStatus {
    /// Pipeline name.
    pub pipeline: String,
    /// Objects discovered and not yet batched.
    pub pending_objects: i64,
    /// Their bytes.
    pub pending_bytes: i64,
    /// Objects in sealed or delivering batches.
    pub batched_objects: i64,
    /// Discovery time of the oldest object not yet settled.
    pub oldest_undelivered: Option<DateTime<Utc>>,
    /// Seconds since then (freshness); None when nothing waits.
    pub freshness_s: Option<f64>,
    /// Batches waiting for a worker.
    pub batches_sealed: i64,
    /// Batches being delivered.
    pub batches_delivering: i64,
    /// Batches ever loaded (a running total: retention removing old batches does not lower it).
    pub batches_loaded: i64,
    /// Batches ever skipped (a running total, like `batches_loaded`).
    pub batches_skipped: i64,
    /// When a batch was last loaded.
    pub last_loaded_at: Option<DateTime<Utc>>,
    /// `load_errors` rows recorded in the last hour.
    pub errors_last_hour: i64,
    /// Loaded objects whose after-load action (`source.after_load`) is still to do.
    pub after_load_pending: i64,
    /// Loaded objects whose after-load action was given up (the object stays).
    pub after_load_failed: i64,
}

/// One `load_errors` row as operators read it.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    /// Row id.
    pub id: i64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Pipeline.
    pub pipeline: String,
    /// Destination type.
    pub destination: String,
    /// Table, index or sourcetype.
    pub target: String,
    /// Batch.
    pub batch_id: Option<i64>,
    /// Redshift query id, 0 when not a COPY error.
    pub query: i64,
    /// `s3://bucket/key`.
    pub filename: String,
    /// Line of the record, 0 for the whole object.
    pub line_number: i64,
    /// The record's 0-based position in its object; None for a whole object or a line.
    pub record_ordinal: Option<i64>,
    /// Column or field.
    pub colname: String,
    /// Column type.
    pub r#type: String,
    /// Column length.
    pub col_length: String,
    /// Position in the field.
    pub position: i32,
    /// The record, cut to 1024 bytes.
    pub raw_line: String,
    /// The field's value.
    pub raw_field_value: String,
    /// Code.
    pub err_code: i32,
    /// Reason.
    pub err_reason: String,
    /// Attempts made when recorded.
    pub attempts: i32,
    /// The batch's first attempt.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// `replayed`, `ignored`, or None while open.
    pub resolution: Option<String>,
    /// The batch that replayed it.
    pub replay_batch_id: Option<i64>,
}

/// Which errors to list.
#[derive(Debug, Clone, Default)]
pub struct ErrorFilter {
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only rows recorded at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this batch.
    pub batch_id: Option<i64>,
    /// Only this code.
    pub err_code: Option<i32>,
    /// At most this many rows.
    pub limit: i64,
}

/// One batch as operators read it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchRow {
    /// Batch id.
    pub id: i64,
    /// Pipeline.
    pub pipeline: String,
    /// Destination type.
    pub destination: String,
    /// sealed, delivering, loaded or skipped.
    pub state: String,
    /// size, interval, max_objects or replay.
    pub seal_reason: String,
    /// Objects.
    pub object_count: i32,
    /// Bytes.
    pub total_bytes: i64,
    /// When sealed.
    pub sealed_at: DateTime<Utc>,
    /// Worker holding the lease.
    pub lease_owner: Option<String>,
    /// Lease expiry.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Attempts made.
    pub attempts: i32,
    /// First attempt.
    pub first_attempt_at: Option<DateTime<Utc>>,
    /// Last attempt.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// Error of the last failed attempt.
    pub last_error: Option<String>,
    /// Records delivered.
    pub records_delivered: i64,
    /// Records rejected.
    pub records_rejected: i64,
    /// When settled.
    pub settled_at: Option<DateTime<Utc>>,
    /// The skipped batch this one replays.
    pub replay_of: Option<i64>,
}

const ERROR_COLUMNS: &str =
    "id, recorded_at, pipeline, destination, target, batch_id, query, filename, line_number,
    colname, type, col_length, position, raw_line, raw_field_value, err_code, err_reason, attempts,
    first_attempt_at, resolution, replay_batch_id, record_ordinal";

const BATCH_COLUMNS: &str =
    "id, pipeline, destination, state, seal_reason, object_count, total_bytes, sealed_at,
    lease_owner, lease_expires_at, attempts, first_attempt_at, last_attempt_at, last_error,
    records_delivered, records_rejected, settled_at, replay_of";

fn error_row(r: &tokio_postgres::Row) -> ErrorRow {
    ErrorRow {
        id: r.get(0),
        recorded_at: r.get(1),
        pipeline: r.get(2),
        destination: r.get(3),
        target: r.get(4),
        batch_id: r.get(5),
        query: r.get(6),
        filename: r.get(7),
        line_number: r.get(8),
        colname: r.get(9),
        r#type: r.get(10),
        col_length: r.get(11),
        position: r.get(12),
        raw_line: r.get(13),
        raw_field_value: r.get(14),
        err_code: r.get(15),
        err_reason: r.get(16),
        attempts: r.get(17),
        first_attempt_at: r.get(18),
        resolution: r.get(19),
        replay_batch_id: r.get(20),
        record_ordinal: r.get(21),
    }
}

fn batch_row(r: &tokio_postgres::Row) -> BatchRow {
    BatchRow {
        id: r.get(0),
        pipeline: r.get(1),
        destination: r.get(2),
        state: r.get(3),
        seal_reason: r.get(4),
        object_count: r.get(5),
        total_bytes: r.get(6),
        sealed_at: r.get(7),
        lease_owner: r.get(8),
        lease_expires_at: r.get(9),
        attempts: r.get(10),
        first_attempt_at: r.get(11),
        last_attempt_at: r.get(12),
        last_error: r.get(13),
        records_delivered: r.get(14),
        records_rejected: r.get(15),
        settled_at: r.get(16),
        replay_of: r.get(17),
    }
}

/// The status of the pipelines named in `$1`, one lateral lookup per name through the partial
/// indexes of open objects and batches, the totals row, and the last hour of errors (V5 gives
/// `stageload_pipeline_status` the same shape for psql).
const PIPELINE_STATUS: &str = "
SELECT n.pipeline,
       COALESCE(o.pending_objects, 0), COALESCE(o.pending_bytes, 0), COALESCE(o.batched_objects, 0),
       o.oldest_undelivered, extract(epoch FROM now() - o.oldest_undelivered)::float8,
       COALESCE(b.batches_sealed, 0), COALESCE(b.batches_delivering, 0),
       COALESCE(t.batches_loaded, 0), COALESCE(t.batches_skipped, 0), t.last_loaded_at,
       COALESCE(e.errors_last_hour, 0),
       COALESCE(a.after_load_pending, 0), COALESCE(a.after_load_failed, 0)
FROM unnest($1::text[]) AS n(pipeline)
LEFT JOIN pipeline_totals t ON t.pipeline = n.pipeline
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE s.state = 'pending') AS pending_objects,
           COALESCE(sum(s.size) FILTER (WHERE s.state = 'pending'), 0)::bigint AS pending_bytes,
           count(*) FILTER (WHERE s.state = 'batched') AS batched_objects,
           min(s.discovered_at) AS oldest_undelivered
    FROM staged_objects s
    WHERE s.pipeline = n.pipeline AND s.state IN ('pending', 'batched')
) o ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE x.state = 'sealed') AS batches_sealed,
           count(*) FILTER (WHERE x.state = 'delivering') AS batches_delivering
    FROM batches x
    WHERE x.pipeline = n.pipeline AND x.state IN ('sealed', 'delivering')
) b ON true
LEFT JOIN LATERAL (
    SELECT count(*) AS errors_last_hour
    FROM load_errors y
    WHERE y.pipeline = n.pipeline AND y.recorded_at > now() - interval '1 hour'
) e ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE z.after_load_state = 'pending') AS after_load_pending,
           count(*) FILTER (WHERE z.after_load_state = 'failed') AS after_load_failed
    FROM staged_objects z
    WHERE z.pipeline = n.pipeline AND z.after_load_state IN ('pending', 'failed')
) a ON true";

impl Control {
    /// Status of the given pipelines (those with no rows yet show zeros), in that order.
    pub async fn pipeline_status(
        &self,
        names: &[String],
    ) -> Result<Vec<PipelineStatus>, ControlError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(PIPELINE_STATUS, &[&names])
            .await
            .map_err(q("read pipeline status"))?;
        Ok(names
            .iter()
            .map(|name| {
                rows.iter()
                    .find(|r| r.get::<_, &str>(0) == name)
                    .map(|r| PipelineStatus {
                        pipeline: r.get(0),
                        pending_objects: r.get(1),
                        pending_bytes: r.get(2),
                        batched_objects: r.get(3),
                        oldest_undelivered: r.get(4),
                        freshness_s: r.get(5),
                        batches_sealed: r.get(6),
                        batches_delivering: r.get(7),
                        batches_loaded: r.get(8),
                        batches_skipped: r.get(9),
                        last_loaded_at: r.get(10),
                        errors_last_hour: r.get(11),
                        after_load_pending: r.get(12),
                        after_load_failed: r.get(13),
                    })
                    .unwrap_or_else(|| PipelineStatus {
                        pipeline: name.clone(),
                        ..Default::default()
                    })
            })
            .collect())
    }

    /// `load_errors` rows, newest first.
    pub async fn errors(&self, f: &ErrorFilter) -> Result<Vec<ErrorRow>, ControlError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {ERROR_COLUMNS} FROM load_errors
                     WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::timestamptz IS NULL OR recorded_at >= $2)
                       AND ($3::bigint IS NULL OR batch_id = $3) AND ($4::int IS NULL OR err_code = $4)
                     ORDER BY id DESC LIMIT $5"
                ),
                &[&f.pipeline, &f.since, &f.batch_id, &f.err_code, &f.limit],
            )
            .await
            .map_err(q("read load errors"))?;
        Ok(rows.iter().map(error_row).collect())
    }

    /// One `load_errors` row.
    pub async fn error(&self, id: i64) -> Result<Option<ErrorRow>, ControlError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {ERROR_COLUMNS} FROM load_errors WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(q("read load error"))?;
        Ok(row.as_ref().map(error_row))
    }

    /// Marks an error row ignored; false when there is no such open row.
    pub async fn ignore_error(&self, id: i64) -> Result<bool, ControlError> {
        let conn = self.conn().await?;
        let n = conn
            .execute("UPDATE load_errors SET resolution = 'ignored' WHERE id = $1 AND resolution IS NULL", &[&id])
            .await
            .map_err(q("ignore load error"))?;
        Ok(n == 1)
    }

    /// Batches, newest first.
    pub async fn batches(
        &self,
        pipeline: Option<&str>,
        state: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BatchRow>, ControlError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                &format!(
                    "SELECT {BATCH_COLUMNS} FROM batches
                     WHERE ($1::text IS NULL OR pipeline = $1) AND ($2::text IS NULL OR state = $2)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&pipeline, &state, &limit],
            )
            .await
            .map_err(q("read batches"))?;
        Ok(rows.iter().map(batch_row).collect())
    }

    /// One batch.
    pub async fn batch(&self, id: i64) -> Result<Option<BatchRow>, ControlError> {
        let conn = self.conn().await?;
        let row = conn
            .query_opt(
                &format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(q("read batch"))?;
        Ok(row.as_ref().map(batch_row))
    }

    /// Skipped batches of a pipeline settled since a time, not yet replayed.
    pub async fn skipped_batches(
        &self,
        pipeline: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<i64>, ControlError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT id FROM batches b WHERE pipeline = $1 AND state = 'skipped' AND settled_at >= $2
                   AND NOT EXISTS (SELECT 1 FROM batches r WHERE r.replay_of = b.id)
                 ORDER BY id",
                &[&pipeline, &since],
            )
            .await
            .map_err(q("find skipped batches"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Records delivered per `bucket_s`-second interval over the last `window_s` seconds, oldest
    /// first, from settled batches (for the status page's chart).
    pub async fn throughput(
        &self,
        pipeline: &str,
        window_s: i64,
        bucket_s: i64,
    ) -> Result<Vec<i64>, ControlError> {
        let conn = self.conn().await?;
        let rows = conn
            .query(
                "SELECT floor(extract(epoch FROM now() - settled_at)::float8 / $3::float8)::bigint AS age,
                        sum(records_delivered)::bigint
                 FROM batches WHERE pipeline = $1 AND settled_at > now() - make_interval(secs => $2::float8)
                 GROUP BY 1",
                &[&pipeline, &(window_s as f64), &(bucket_s as f64)],
            )
            .await
            .map_err(q("read throughput"))?;
        let n = (window_s / bucket_s).max(1) as usize;
        let mut out = vec![0i64; n];
        for r in rows {
            let age: i64 = r.get(0);
            if (0..n as i64).contains(&age) {
                out[n - 1 - age as usize] = r.get(1);
            }
        }
        Ok(out)
    }
}
