//! `type = "elasticsearch"`: delivers batches to Elasticsearch or OpenSearch with `_bulk`.
//!
//! Records stream from S3 through decompression and framing straight into hand-built NDJSON
//! bodies ([`bulk`]), keeping their original bytes; a record is parsed only for its id or
//! timestamp field ([`crate::source::pointer`]). Ids are deterministic by default ([`id`]), so a retried or
//! replayed request overwrites instead of duplicating. Index names rotate like Firehose's
//! ([`index`]). Answers are sorted per document ([`retry`], [`send`]): 429 and 5xx items
//! are retried alone through [`Resume`], other 4xx items become `load_errors` rows and
//! failed-document records ([`failed`]); [`attempt`] walks the batch, and [`state`] is what
//! it keeps between attempts. Documents kept for a retry
//! are bounded: past [`attempt::Run::retry_bound`] bytes an attempt stops reading new records. When
//! the budget runs out, the write-off re-reads what was never sent from S3 and hands it over in
//! bounded chunks ([`give_up`]), so it never holds the batch.
//!
//! `config.rs` beside this file is the `[pipeline.destination]` table, its defaults and
//! checks, compiled in the config layer as [`crate::config::destination::elasticsearch`].

mod attempt;
mod bulk;
mod client;
mod failed;
mod give_up;
mod id;
mod index;
mod nodes;
mod retry;
mod route;
mod send;
mod sigv4;
mod state;

use crate::config::{ElasticsearchConfig, EsAuth, Framing, OpType, PipelineConfig, SourceConfig};
use crate::destination::{
    ArtifactKind, Attempt, Destination, DestinationError, FailureKind, GiveUp, Resume, WriteOff,
};
use crate::model::ClaimedBatch;
use crate::source::pointer::Pointer;
use crate::source::reader::BlockHook;
use crate::source::s3::S3;
use async_trait::async_trait;
use attempt::{Mode, Progress, Run};
use client::{Client, Sent};
use sigv4::Signer;
use std::sync::Arc;

/// What every walk over a batch shares.
pub struct Shared {
    pipeline: String,
    config: ElasticsearchConfig,
    source: SourceConfig,
    /// How the records sent are framed (JSON lines after a transform).
    framing: Framing,
    /// The pipeline's transforms, run on the reading threads.
    transforms: Option<Arc<dyn BlockHook>>,
    /// The `index` template, parsed once; `None` for a plain (rotated) index name.
    template: Option<route::Parts>,
    s3: S3,
    client: Arc<Client>,
    id_field: Option<Pointer>,
    timestamp_field: Option<Pointer>,
    /// `/@timestamp`, looked up in each record with `op_type = "create"` (which adds one when
    /// it is missing); None otherwise.
    at_timestamp: Option<Pointer>,
}

/// The Elasticsearch / OpenSearch destination.
pub struct ElasticsearchDestination {
    shared: Shared,
}

impl ElasticsearchDestination {
    /// Builds the destination from its configuration (no network I/O; see [`Destination::check`]).
    // The shape every destination slot shares, called by `destination::build`.
    #[allow(clippy::new_ret_no_self)]
    pub async fn new(
        pipeline: &PipelineConfig,
        config: &ElasticsearchConfig,
        s3: S3,
        transforms: Option<Arc<dyn BlockHook>>,
    ) -> Result<Arc<dyn Destination>, String> {
        let pointer = |field: &Option<String>, name: &str| {
            field
                .as_deref()
                .map(Pointer::parse)
                .transpose()
                .map_err(|e| format!("{name}: {e}"))
        };
        let signer = match config.auth {
            EsAuth::Static => None,
            EsAuth::AwsSigv4 => {
                let (service, region) = config.sigv4_scope();
                let role = config.aws_role_arn.as_deref().map(|arn| crate::aws::Role {
                    arn,
                    external_id: config.aws_external_id.as_deref(),
                    session_name: "stageload-opensearch",
                });
                let sdk = match role {
                    Some(role) => {
                        crate::aws::derive(s3.sdk_config(), region.as_deref(), Some(role)).await
                    }
                    None => s3.sdk_config().clone(),
                };
                let provider = sdk.credentials_provider().ok_or_else(|| {
                    "auth = \"aws_sigv4\": no AWS credential provider is configured".to_string()
                })?;
                let region = region
                    .or_else(|| sdk.region().map(|r| r.to_string()))
                    .ok_or_else(|| "auth = \"aws_sigv4\": set aws_region".to_string())?;
                Some(Signer::new(provider, service, region))
            }
        };
        // A serverless collection is checked with HEAD on an index: a template's default one.
        let template = route::Parts::compile(config).map_err(|e| format!("index: {e}"))?;
        let check_index = match (&template, &config.default_index) {
            (Some(_), Some(d)) => d.clone(),
            _ => index::rotated_name(&config.index, config.index_rotation, chrono::Utc::now()),
        };
        let client = Client::build(config, signer, check_index).map_err(|e| e.to_string())?;
        Ok(Arc::new(ElasticsearchDestination {
            shared: Shared {
                pipeline: pipeline.name.clone(),
                config: config.clone(),
                source: pipeline.source.clone(),
                framing: pipeline.record_framing(),
                transforms,
                template,
                s3,
                client: Arc::new(client),
                id_field: pointer(&config.id_field, "id_field")?,
                timestamp_field: pointer(&config.timestamp_field, "timestamp_field")?,
                at_timestamp: match config.op_type {
                    OpType::Create => {
                        Some(Pointer::parse("/@timestamp").map_err(|e| e.to_string())?)
                    }
                    OpType::Index => None,
                },
            },
        }))
    }
}

#[async_trait]
impl Destination for ElasticsearchDestination {
    fn kind(&self) -> &'static str {
        "elasticsearch"
    }

    fn target(&self) -> String {
        self.shared.config.index.clone()
    }

    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::Records("elasticsearch")
    }

    async fn check(&self) -> Result<(), crate::destination::DestinationError> {
        let shared = &self.shared;
        let at = format!(
            "pipeline {}: elasticsearch at {}",
            shared.pipeline,
            shared.client.endpoints()
        );
        match shared.client.ping().await {
            Sent::Answer { status, .. } if (200..300).contains(&status) => Ok(()),
            Sent::Answer {
                status: status @ (401 | 403),
                body,
            } => Err(DestinationError::needs_operator(format!(
                "{at}: credentials refused: {}",
                retry::request_error_text(status, &body)
            ))),
            Sent::Answer { status, body } => Err(DestinationError::new(
                match retry::classify_request(status) {
                    retry::RequestVerdict::Retry(kind) => kind,
                    retry::RequestVerdict::Split => FailureKind::Transient,
                },
                format!("{at}: {}", retry::request_error_text(status, &body)),
            )),
            Sent::Unreachable(e) => Err(DestinationError::transient(format!(
                "{at}: unreachable: {e}"
            ))),
        }
    }

    async fn deliver(&self, batch: &ClaimedBatch, attempt: u32, resume: Option<Resume>) -> Attempt {
        let progress = Progress::from_resume(resume);
        Run::new(&self.shared, batch, attempt, progress, Mode::Send)
            .attempt()
            .await
    }

    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        attempts: u32,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        let progress = Progress::from_resume(resume);
        Run::new(
            &self.shared,
            batch,
            attempts,
            progress,
            Mode::GiveUp(reason.to_string()),
        )
        .give_up(out)
        .await
    }
}
