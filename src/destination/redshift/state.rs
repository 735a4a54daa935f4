//! What one attempt at a batch leaves the next: the objects left out (bad files, objects gone
//! or overwritten since they were listed) with the rows that say why. They are committed with
//! the marker, or written off with the batch when its budget ends.

use crate::destination::{Attempt, FailureKind, Outcome, Resume};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use std::collections::HashSet;

/// The objects of a batch left out of later attempts (bad files, objects gone since listing)
/// with the rows that say why; they are committed with the marker, or written off with the
/// batch when its budget ends.
#[derive(Debug, Default, Clone)]
pub(super) struct Excluded {
    /// The ledger ids of the objects left out.
    pub(super) ids: HashSet<i64>,
    /// Why each was left out.
    pub(super) rows: Vec<LoadError>,
    /// An attempt sent COMMIT and never saw its answer: until the marker is read, nobody knows
    /// whether the batch committed, so it must not be written off unread.
    pub(super) unsure: bool,
}

impl Excluded {
    /// The batch's objects that are still to be loaded.
    pub(super) fn remaining(&self, batch: &ClaimedBatch) -> Vec<StagedObject> {
        batch
            .objects
            .iter()
            .filter(|o| !self.ids.contains(&o.id))
            .cloned()
            .collect()
    }

    /// Leaves out the objects `rows` name.
    pub(super) fn add(&mut self, rows: Vec<LoadError>) {
        self.ids.extend(rows.iter().filter_map(|r| r.object_id));
        self.rows.extend(rows);
    }
}

/// A failed attempt that keeps what earlier rounds of this attempt found, for the next one.
pub(super) fn failed(kind: FailureKind, error: String, excluded: &Excluded) -> Attempt {
    let mut report = Attempt::failed(kind, error);
    if let Outcome::Failed { resume, .. } = &mut report.outcome {
        *resume = (!excluded.ids.is_empty() || excluded.unsure)
            .then(|| Resume(Box::new(excluded.clone())));
    }
    report
}
