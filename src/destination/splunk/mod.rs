//! `type = "splunk"`: batches to Splunk's HTTP Event Collector, `/event` or `/raw`, with
//! indexer acknowledgement.
//!
//! - [`encode`]: request bodies built by hand, records spliced in as their original bytes;
//!   [`time`] reads the one field the envelope's `time` needs.
//! - [`attempt`]: one attempt: read, pack ([`builder`]), send with bounded concurrency, poll
//!   acks at a pace that follows the ack latency ([`pace`]), sort replies; [`acks`]: the
//!   requests waiting for acks, and ack ids HEC hands out again after an indexer restart.
//!   [`give_up`]: what is left when the budget runs out.
//! - [`client`]: HTTP and TLS; [`retry`]: what a reply means; [`state`]: what is carried
//!   between attempts; [`failed`]: `load_errors` rows and `splunk-failed/` records.
//! - `config.rs` beside this file: the `[pipeline.destination]` table, its defaults and
//!   checks, compiled in the config layer as [`crate::config::destination::splunk`].
//!
//! Delivery is at least once: a request whose ack does not come within `ack_timeout_s` is
//! sent again and may be indexed twice (HEC cannot deduplicate). Such sends are counted in
//! [`HEC_RESENDS_TOTAL`].

mod acks;
mod attempt;
mod builder;
mod client;
mod encode;
mod failed;
mod give_up;
mod pace;
mod retry;
mod state;
mod time;

use super::{ArtifactKind, Attempt, Destination, DestinationError, GiveUp, Resume, WriteOff};
use crate::config::{PipelineConfig, SourceConfig, SplunkConfig};
use crate::model::ClaimedBatch;
use crate::source::reader::BlockHook;
use crate::source::s3::S3;
use async_trait::async_trait;
use client::Hec;
use encode::Encoder;
use state::{ChannelPool, Progress};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// `stageload_hec_resends_total`: requests sent again after they may already have been
/// indexed (no ack within the ack timeout, or a connection lost after sending), process-wide.
/// Each one may have duplicated its events.
pub static HEC_RESENDS_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Delivers batches to HEC.
pub struct SplunkDestination {
    pipeline: String,
    config: SplunkConfig,
    source: SourceConfig,
    s3: S3,
    hec: Arc<Hec>,
    encoder: Encoder,
    /// The pipeline's transforms, run on the reading threads.
    transforms: Option<Arc<dyn BlockHook>>,
    channels: ChannelPool,
}

impl SplunkDestination {
    /// Builds the destination from its configuration.
    // The shape `destination::build` calls for every destination.
    #[allow(clippy::new_ret_no_self)]
    pub async fn new(
        pipeline: &PipelineConfig,
        config: &SplunkConfig,
        s3: S3,
        transforms: Option<Arc<dyn BlockHook>>,
    ) -> Result<Arc<dyn Destination>, String> {
        let hec = Hec::new(config)?;
        if config.tls_insecure_skip_verify {
            warn!(pipeline = %pipeline.name, url = %config.hec_urls().join(", "),
                "tls_insecure_skip_verify is on: the HEC certificate is not verified");
        }
        Ok(Arc::new(SplunkDestination {
            pipeline: pipeline.name.clone(),
            encoder: Encoder::new(config, pipeline.record_framing())?,
            transforms,
            config: config.clone(),
            source: pipeline.source.clone(),
            s3,
            hec: Arc::new(hec),
            channels: ChannelPool::default(),
        }))
    }

    fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.config.ack_timeout_s)
    }

    /// The carried state if it belongs to this batch, else a fresh start.
    fn progress(&self, batch: &ClaimedBatch, resume: Option<Resume>) -> Progress {
        let ids: Vec<i64> = batch.objects.iter().map(|o| o.id).collect();
        match resume.map(|r| r.0.downcast::<Progress>()) {
            Some(Ok(p)) if p.object_ids == ids => *p,
            _ => Progress::new(ids),
        }
    }
}

#[async_trait]
impl Destination for SplunkDestination {
    fn kind(&self) -> &'static str {
        "splunk"
    }

    fn target(&self) -> String {
        self.config
            .sourcetype
            .clone()
            .or_else(|| self.config.index.clone())
            .unwrap_or_default()
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::Records("splunk")
    }

    async fn check(&self) -> Result<(), DestinationError> {
        self.hec.check().await.map_err(|e| DestinationError {
            message: format!("pipeline {}: splunk: {}", self.pipeline, e.message),
            ..e
        })
    }

    async fn deliver(&self, batch: &ClaimedBatch, attempt: u32, resume: Option<Resume>) -> Attempt {
        let p = self.progress(batch, resume);
        attempt::deliver(self, batch, attempt, p).await
    }

    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        attempts: u32,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        let p = self.progress(batch, resume);
        give_up::collect(self, batch, attempts, p, reason, out).await
    }
}
