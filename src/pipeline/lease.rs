//! The lease check handed to destinations ([`crate::model::Lease`]): a renewal in the control
//! database, so "still mine" is answered by the database that fences every other write, not by
//! the worker's own clock.

use crate::control::Control;
use crate::model::{ClaimedBatch, Lease, LeaseCheck};
use std::sync::Arc;
use std::time::Duration;

/// Renews one claim's lease when asked.
struct ControlLease {
    control: Control,
    batch: i64,
    token: String,
    lease: Duration,
}

#[async_trait::async_trait]
impl LeaseCheck for ControlLease {
    async fn held(&self) -> Result<bool, String> {
        self.control
            .renew(self.batch, &self.token, self.lease)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The lease check of `batch`'s claim.
pub fn of(control: &Control, batch: &ClaimedBatch, lease: Duration) -> Lease {
    Lease(Arc::new(ControlLease {
        control: control.clone(),
        batch: batch.id,
        token: batch.lease_token.clone(),
        lease,
    }))
}
