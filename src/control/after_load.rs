//! The ledger side of after-load actions: claiming the actions that are due (a short hold, so
//! a replica that dies or pauses hands them on), recording each outcome once, and rescheduling
//! a failure on the action's own budget.

use super::{clean_text, q, Control, ControlError};
use std::time::Duration;

/// An after-load action that is due.
#[derive(Debug, Clone)]
pub struct DueAction {
    /// Ledger id of the object.
    pub id: i64,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag the object was loaded with.
    pub etag: String,
    /// Size in bytes.
    pub size: i64,
    /// `delete`, `tag` or `move`, as recorded when the batch settled.
    pub action: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Seconds since the object's batch settled loaded, by the control database's clock (the
    /// one that stamped `settled_at`): the budget counts from there.
    pub age_s: f64,
}

/// How an action ended, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Applied.
    Done,
    /// The key holds another object now; left alone.
    Superseded,
    /// The object was not there any more.
    Gone,
}

impl Finished {
    /// The ledger's word for it, also the metric's `outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finished::Done => "done",
            Finished::Superseded => "superseded",
            Finished::Gone => "gone",
        }
    }
}

/// Seconds before the next try of an action that failed `attempts` times: 5 s doubling, at
/// most 10 minutes.
pub fn retry_delay(attempts: i32) -> Duration {
    let exp = attempts.clamp(0, 8) as u32;
    Duration::from_secs((5u64 << exp).min(600))
}

impl Control {
    /// Claims up to `limit` of the pipeline's due actions for `hold`: another replica may
    /// take them after that (the actions are safe to repeat).
    pub async fn claim_after_load(
        &self,
        pipeline: &str,
        limit: i64,
        hold: Duration,
    ) -> Result<Vec<DueAction>, ControlError> {
        let conn = self.conn().await?;
        let hold_s = hold.as_secs_f64();
        let rows = conn
            .query(
                "UPDATE staged_objects SET after_load_next_at = now() + make_interval(secs => $3)
                 WHERE id IN (
                     SELECT id FROM staged_objects
                     WHERE pipeline = $1 AND after_load_state = 'pending' AND after_load_next_at <= now()
                     ORDER BY after_load_next_at LIMIT $2
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, bucket, key, etag, size, after_load_action, after_load_attempts,
                           extract(epoch FROM now() - coalesce(settled_at, now()))::float8",
                &[&pipeline, &limit, &hold_s],
            )
            .await
            .map_err(q("claim after-load actions"))?;
        Ok(rows
            .iter()
            .map(|r| DueAction {
                id: r.get(0),
                bucket: r.get(1),
                key: r.get(2),
                etag: r.get(3),
                size: r.get(4),
                action: r.get(5),
                attempts: r.get(6),
                age_s: r.get(7),
            })
            .collect())
    }

    /// Records an action's outcome; false when it was already recorded (another replica
    /// finished it first).
    pub async fn finish_after_load(
        &self,
        id: i64,
        how: Finished,
        moved_to: Option<&str>,
    ) -> Result<bool, ControlError> {
        let conn = self.conn().await?;
        let n = conn
            .execute(
                "UPDATE staged_objects SET after_load_state = $2, after_load_key = $3,
                        after_load_at = now(), after_load_error = NULL,
                        after_load_attempts = after_load_attempts + 1, after_load_next_at = NULL
                 WHERE id = $1 AND after_load_state = 'pending'",
                &[&id, &how.as_str(), &moved_to],
            )
            .await
            .map_err(q("record after-load action"))?;
        Ok(n == 1)
    }

    /// Records a failed try: due again after `delay`, or `failed` for good when `give_up`.
    pub async fn retry_after_load(
        &self,
        id: i64,
        error: &str,
        delay: Duration,
        give_up: bool,
    ) -> Result<(), ControlError> {
        let conn = self.conn().await?;
        let delay_s = delay.as_secs_f64();
        conn.execute(
            "UPDATE staged_objects SET after_load_attempts = after_load_attempts + 1,
                    after_load_error = $2,
                    after_load_state = CASE WHEN $4 THEN 'failed' ELSE 'pending' END,
                    after_load_next_at = CASE WHEN $4 THEN NULL
                                              ELSE now() + make_interval(secs => $3) END
             WHERE id = $1 AND after_load_state = 'pending'",
            &[&id, &clean_text(error).as_ref(), &delay_s, &give_up],
        )
        .await
        .map_err(q("reschedule after-load action"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_five_seconds_up_to_ten_minutes() {
        assert_eq!(retry_delay(0), Duration::from_secs(5));
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(6), Duration::from_secs(320));
        assert_eq!(retry_delay(7), Duration::from_secs(600));
        assert_eq!(retry_delay(1000), Duration::from_secs(600));
        assert_eq!(retry_delay(-3), Duration::from_secs(5));
    }
}
