//! The batch's retry budget ran out: one `load_errors` row per object not loaded. Redshift
//! loads whole files, so the objects left out for bad data keep the rows that say why, and the
//! rest are written off with the budget's reason; the dispatcher writes the batch's manifest of
//! them for a manual `COPY ... MANIFEST`.
//!
//! An attempt may have ended without knowing its outcome (its COMMIT's answer lost to a cut
//! connection or a client-side timeout). Then, and only then (attempts that failed before
//! COMMIT left nothing committed), the marker is read first, under the load's lock: a batch
//! whose marker is there is settled from it, and one whose marker cannot be read is not
//! written off at all (the dispatcher waits and asks again).

use super::state::Excluded;
use super::RedshiftDestination;
use crate::codes;
use crate::destination::{DestinationError, GiveUp, Resume, Undecided, WriteOff};
use crate::model::{ClaimedBatch, LoadError};
use tracing::info;

impl RedshiftDestination {
    /// Hands `out` a row for every object of `batch` not loaded: the files left out keep their
    /// own reasons, every other object gets the budget's. A batch whose marker exists is
    /// reported delivered instead, and one whose marker cannot be read, undecided.
    pub(super) async fn write_off(
        &self,
        batch: &ClaimedBatch,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        let excluded = resume
            .and_then(|r| r.0.downcast::<Excluded>().ok())
            .map(|b| *b);
        if excluded.as_ref().is_some_and(|e| e.unsure) {
            match self.committed_under_lock(batch).await {
                Ok(Some(report)) => {
                    info!(
                        pipeline = %self.pipeline,
                        batch_id = batch.id,
                        "batch committed by an attempt whose answer was lost, not writing it off"
                    );
                    return GiveUp {
                        delivered: Some(report),
                        ..GiveUp::default()
                    };
                }
                Ok(None) => {}
                Err(e) => {
                    let error = DestinationError::new(
                        e.class().kind(),
                        format!("read the batch's marker before writing it off: {e}"),
                    );
                    return GiveUp {
                        undecided: Some(Undecided {
                            error,
                            resume: excluded.map(|e| Resume(Box::new(e))),
                        }),
                        ..GiveUp::default()
                    };
                }
            }
        }
        let Some(excluded) = excluded else {
            return GiveUp::default();
        };
        for row in excluded.rows.iter().cloned() {
            out.row(row).await;
        }
        for o in excluded.remaining(batch) {
            out.row(LoadError {
                object_id: Some(o.id),
                filename: o.url(),
                err_code: codes::BUDGET_EXHAUSTED,
                err_reason: reason.to_string(),
                ..LoadError::default()
            })
            .await;
        }
        GiveUp::default()
    }
}
