//! Writing `load_errors` rows. A row that repeats one already recorded for the same batch
//! (same file, line, record ordinal, code and column, as after a retry or a takeover) is kept
//! once; the many records one line of `json_array` or CloudTrail holds each keep their own row. Like every
//! other write about a claimed batch, rows are fenced by the claim's lease token: a worker whose
//! batch was taken over (paused past its lease) cannot add rows to it.

use super::{q, Control, ControlError};
use crate::model::LoadError;
use chrono::{DateTime, Utc};

/// What every row of one batch's errors shares.
#[derive(Debug, Clone)]
pub struct ErrorContext<'a> {
    /// Pipeline name.
    pub pipeline: &'a str,
    /// Destination type.
    pub destination: &'a str,
    /// Table, index or sourcetype, for rows that name none.
    pub target: &'a str,
    /// Batch id.
    pub batch_id: i64,
    /// The claim's fencing token: rows go in only while it still holds the batch.
    pub lease_token: &'a str,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the batch's first attempt started.
    pub first_attempt_at: DateTime<Utc>,
}

impl Control {
    /// Inserts error rows if the claim's token still holds the batch; returns how many were new,
    /// or [`ControlError::LeaseLost`] when another worker has taken the batch over or settled it.
    pub async fn record_errors(
        &self,
        ctx: &ErrorContext<'_>,
        rows: &[LoadError],
    ) -> Result<u64, ControlError> {
        if rows.is_empty() {
            return Ok(0);
        }
        // NUL cannot be stored in text (an echo of a destination's error may carry one).
        let col = |f: fn(&LoadError) -> String| {
            rows.iter()
                .map(|r| super::clean_text(&f(r)).into_owned())
                .collect::<Vec<String>>()
        };
        let object_ids: Vec<Option<i64>> = rows.iter().map(|r| r.object_id).collect();
        let lines: Vec<i64> = rows.iter().map(|r| r.line_number).collect();
        let ordinals: Vec<Option<i64>> = rows.iter().map(|r| r.record_ordinal).collect();
        let positions: Vec<i32> = rows.iter().map(|r| r.position).collect();
        let codes: Vec<i32> = rows.iter().map(|r| r.err_code).collect();
        let queries: Vec<i64> = rows.iter().map(|r| r.query).collect();
        let partial: Vec<i32> = rows.iter().map(|r| r.is_partial).collect();
        let offsets: Vec<i64> = rows.iter().map(|r| r.start_offset).collect();
        let targets = col(|r| r.target.clone());
        let ctx_target = super::clean_text(ctx.target).into_owned();
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await.map_err(q("begin load errors"))?;
        // Held until commit: a takeover (which draws a new token) waits for these rows, and rows
        // wait for a takeover that got there first, then find its token.
        let held = tx
            .query_opt(
                "SELECT 1 FROM batches WHERE id = $1 AND lease_token::text = $2
                 AND state = 'delivering' FOR SHARE",
                &[&ctx.batch_id, &ctx.lease_token],
            )
            .await
            .map_err(q("check the lease before load errors"))?;
        if held.is_none() {
            return Err(ControlError::LeaseLost {
                batch: ctx.batch_id,
            });
        }
        let n = tx.execute(
            "INSERT INTO load_errors (pipeline, destination, target, batch_id, object_id, query, filename,
                 line_number, colname, type, col_length, position, raw_line, raw_field_value, err_code,
                 err_reason, is_partial, start_offset, attempts, first_attempt_at, record_ordinal)
             SELECT $1, $2, COALESCE(NULLIF(t.target, ''), $3), $4, t.object_id, t.query, t.filename,
                 t.line_number, t.colname, t.type, t.col_length, t.position, t.raw_line, t.raw_field_value,
                 t.err_code, t.err_reason, t.is_partial, t.start_offset, $5, $6, t.record_ordinal
             FROM unnest($7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::text[], $12::text[],
                         $13::text[], $14::int[], $15::text[], $16::text[], $17::int[], $18::text[],
                         $19::int[], $20::bigint[], $21::text[], $22::bigint[])
                  AS t(object_id, query, filename, line_number, colname, type, col_length, position,
                       raw_line, raw_field_value, err_code, err_reason, is_partial, start_offset, target,
                       record_ordinal)
             ON CONFLICT (batch_id, filename, line_number, err_code, colname, (COALESCE(record_ordinal, -1)))
             DO NOTHING",
            &[
                &ctx.pipeline,
                &ctx.destination,
                &ctx_target,
                &ctx.batch_id,
                &ctx.attempts,
                &ctx.first_attempt_at,
                &object_ids,
                &queries,
                &col(|r| r.filename.clone()),
                &lines,
                &col(|r| r.colname.clone()),
                &col(|r| r.type_.clone()),
                &col(|r| r.col_length.clone()),
                &positions,
                &col(|r| r.raw_line.clone()),
                &col(|r| r.raw_field_value.clone()),
                &codes,
                &col(|r| r.err_reason.clone()),
                &partial,
                &offsets,
                &targets,
                &ordinals,
            ],
        )
        .await
        .map_err(q("record load errors"))?;
        tx.commit().await.map_err(q("commit load errors"))?;
        Ok(n)
    }

    /// Stores rows one at a time after the database refused them together: a row it still
    /// refuses is replaced by one that keeps its file, line and code and says why the rest
    /// could not be stored; only when even that fails is the row left in the log alone. Stops
    /// at [`ControlError::LeaseLost`], which it returns.
    pub async fn record_errors_one_by_one(
        &self,
        ctx: &ErrorContext<'_>,
        rows: &[LoadError],
    ) -> Result<(), ControlError> {
        for row in rows {
            let e = match self.record_errors(ctx, std::slice::from_ref(row)).await {
                Ok(_) => continue,
                Err(e @ ControlError::LeaseLost { .. }) => return Err(e),
                Err(e) => e,
            };
            let minimal = LoadError {
                object_id: row.object_id,
                filename: row.filename.clone(),
                line_number: row.line_number,
                record_ordinal: row.record_ordinal,
                err_code: row.err_code,
                err_reason: format!("(row not storable as recorded: {e}) {}", row.err_reason)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(1024)
                    .collect(),
                ..LoadError::default()
            };
            match self.record_errors(ctx, &[minimal]).await {
                Ok(_) => {}
                Err(e @ ControlError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!(pipeline = ctx.pipeline, batch_id = ctx.batch_id, filename = %row.filename, line = row.line_number, err_code = row.err_code, error = %e, "load error row lost: the control database refused it");
                }
            }
        }
        Ok(())
    }
}
