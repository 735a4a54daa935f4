//! The batch's retry budget ran out: one `load_errors` row per object not loaded. Redshift
//! loads whole files, so the objects left out for bad data keep the rows that say why, and the
//! rest are written off with the budget's reason; the dispatcher writes the batch's manifest of
//! them for a manual `COPY ... MANIFEST`.

use super::state::Excluded;
use super::RedshiftDestination;
use crate::codes;
use crate::destination::{GiveUp, Resume, WriteOff};
use crate::model::{ClaimedBatch, LoadError};

impl RedshiftDestination {
    /// Hands `out` a row for every object of `batch` not loaded: the files left out keep their
    /// own reasons, every other object gets the budget's.
    pub(super) async fn write_off(
        &self,
        batch: &ClaimedBatch,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        let Some(excluded) = resume.and_then(|r| r.0.downcast::<Excluded>().ok()) else {
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
