//! The batch's retry budget ran out: the same walk as an attempt ([`Run`] in
//! [`Mode::GiveUp`]), sending nothing. Documents kept for retry, and every record past the
//! resume cursor (read back from S3), become a `load_errors` row (9100) and a failed-document
//! record in Firehose's `elasticsearch-failed/` layout, handed to the dispatcher in bounded
//! chunks ([`WriteOff`]) as they are met, never all at once.

use super::attempt::{Mode, Run};
use super::bulk::Pending;
use super::failed::Failed;
use crate::codes;
use crate::destination::{GiveUp, WriteOff};

/// The largest body a write-off fills before naming its documents.
pub(super) const WRITE_OFF_BODY_BYTES: usize = 1 << 20;

impl<'a> Run<'a> {
    /// Runs the walk writing everything left off, handing each lost document to `out` as it
    /// is met (re-read from S3 past the resume cursor).
    pub async fn give_up(mut self, out: &'a mut WriteOff) -> GiveUp {
        self.out = Some(out);
        self.walk().await;
        self.hand_over().await;
        GiveUp::default()
    }

    /// Giving up: hands the rows and records gathered outside [`Run::write_off`] (objects
    /// that cannot be read, framing rejections) to the write-off.
    pub(super) async fn hand_over(&mut self) {
        let Some(out) = self.out.as_deref_mut() else {
            return;
        };
        for row in self.rejected.drain(..) {
            out.row(row).await;
        }
        for record in self.failed_records.drain(..) {
            out.failed_record(&record).await;
        }
    }

    /// A document the budget ran out on, handed straight to the write-off.
    pub(super) async fn write_off(&mut self, p: &Pending) {
        let Mode::GiveUp(reason) = &self.mode else {
            return;
        };
        let reason = if p.reason.is_empty() {
            reason.clone()
        } else if p.status > 0 {
            format!("{reason}; last status {}: {}", p.status, p.reason)
        } else {
            format!("{reason}; last error: {}", p.reason)
        };
        let (index, id) = p.index_and_id();
        let failed = Failed {
            object: &self.batch.objects[p.object],
            line: p.line,
            ordinal: p.ordinal,
            raw: p.source(),
            code: codes::BUDGET_EXHAUSTED,
            reason,
            index,
            id: id.unwrap_or_default(),
            attempts: self.attempt,
        };
        let (row, record) = (failed.row(), failed.record());
        if let Some(out) = self.out.as_deref_mut() {
            out.record(row, &record).await;
        }
    }
}
