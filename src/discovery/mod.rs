//! Discovery: finding staged objects and recording them in the ledger. Listing each pipeline's
//! prefix with a lookback for late writes ([`listing`]), S3 event notifications from SQS queues
//! shared by several pipelines ([`sqs`], parsing in [`events`]), and `stageload backfill`
//! ([`backfill`]).

use tokio::sync::Notify;
use tracing::info;

pub mod backfill;
pub mod events;
pub mod listing;
pub mod sqs;

/// Logs and counts newly recorded objects and wakes the sealer.
pub(crate) fn announce(pipeline: &str, objects: u64, via: &'static str, sealer: &Notify) {
    info!(pipeline, objects, via, "discovered objects");
    metrics::counter!(crate::telemetry::OBJECTS_DISCOVERED, "pipeline" => pipeline.to_string())
        .increment(objects);
    sealer.notify_one();
}
