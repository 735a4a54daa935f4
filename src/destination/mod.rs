//! Destinations: the [`Destination`] trait, what an attempt reports, and the implementations.
//!
//! A destination only *classifies* what happened to one attempt; the dispatcher alone sleeps,
//! retries, writes `load_errors` and settles (DESIGN.md, "Retries"). Destinations never write
//! the control database.

pub mod elasticsearch;
pub mod file;
pub mod redshift;
pub mod splunk;

use crate::model::{ClaimedBatch, LoadError};
use async_trait::async_trait;
use std::any::Any;

/// How a failed attempt should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection refused or reset, timeouts, 429/5xx, busy: retry while budget remains.
    Transient,
    /// Bad credentials, a missing table or index, a malformed manifest: retried until the
    /// budget ends (an operator may fix it) and logged as an error every attempt.
    Permanent,
}

/// What a destination keeps between attempts of one batch so a retry sends only what failed
/// (bulk items that got 429, HEC requests never acked, the batch minus a bad file).
pub struct Resume(pub Box<dyn Any + Send + Sync>);

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resume(..)")
    }
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// Everything not rejected was delivered.
    Delivered,
    /// Some or all of the batch must be sent again.
    Failed {
        /// Transient or permanent for the batch.
        kind: FailureKind,
        /// What went wrong, for logs and `batches.last_error`.
        error: String,
        /// What is left to send, when the destination can narrow it.
        resume: Option<Resume>,
    },
}

/// The report of one attempt.
#[derive(Debug)]
pub struct Attempt {
    /// Delivered, or what failed.
    pub outcome: Outcome,
    /// Records rejected for good in this attempt (recorded at once, never retried).
    pub rejected: Vec<LoadError>,
    /// Failed-record artifacts to write under `<error prefix><kind>-failed/` (one JSON line
    /// each, in Firehose's failed-record format).
    pub failed_records: Vec<serde_json::Value>,
    /// Objects that are skipped on their own (missing, undecodable, a bad file in COPY).
    pub skipped_objects: Vec<i64>,
    /// Records delivered in this attempt.
    pub delivered: u64,
}

impl Attempt {
    /// An attempt that delivered `delivered` records and rejected nothing.
    pub fn delivered(delivered: u64) -> Attempt {
        Attempt {
            outcome: Outcome::Delivered,
            rejected: Vec::new(),
            failed_records: Vec::new(),
            skipped_objects: Vec::new(),
            delivered,
        }
    }

    /// An attempt that failed as a whole.
    pub fn failed(kind: FailureKind, error: impl Into<String>) -> Attempt {
        Attempt {
            outcome: Outcome::Failed {
                kind,
                error: error.into(),
                resume: None,
            },
            ..Attempt::delivered(0)
        }
    }
}

/// What the dispatcher records when a batch's retry budget runs out.
#[derive(Debug, Default)]
pub struct GiveUp {
    /// Rows for `load_errors`; when empty the dispatcher writes one row per object.
    pub rejected: Vec<LoadError>,
    /// Failed-record artifacts, as in [`Attempt::failed_records`].
    pub failed_records: Vec<serde_json::Value>,
    /// The destination found in the end that nothing was lost (HEC acks that arrived during
    /// the final wait): the batch is settled as loaded and no rows are written.
    pub nothing_lost: bool,
}

/// The kind of error artifact a skipped batch leaves in S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// A Redshift manifest of the skipped objects under `errors/manifests/YYYY/MM/DD/HH/`,
    /// loadable with a manual `COPY ... MANIFEST`.
    Manifest,
    /// Failed-record JSON lines under `<name>-failed/YYYY/MM/DD/HH/`.
    Records(&'static str),
}

/// A place batches are delivered to.
#[async_trait]
pub trait Destination: Send + Sync {
    /// The `type` name: `redshift`, `elasticsearch`, `splunk`, `file`.
    fn kind(&self) -> &'static str;

    /// The table, index or sourcetype, for `load_errors.target`.
    fn target(&self) -> String;

    /// The artifact a skipped batch leaves.
    fn artifact(&self) -> ArtifactKind {
        ArtifactKind::Manifest
    }

    /// A quick reachability and credentials check, for startup and `/readyz`.
    async fn check(&self) -> Result<(), String>;

    /// For a batch taken over from a dead worker: did its earlier attempt already deliver it?
    /// Destinations that can tell (Redshift's marker table) answer with the report of that
    /// delivery, rebuilt from what the destination committed (records loaded, rows rejected,
    /// objects skipped), so settling it loses nothing; others answer `None`.
    async fn recover(&self, _batch: &ClaimedBatch) -> Result<Option<Attempt>, String> {
        Ok(None)
    }

    /// One attempt at the batch, or at what `resume` says is left of it.
    async fn deliver(&self, batch: &ClaimedBatch, resume: Option<Resume>) -> Attempt;

    /// The batch's budget ran out with `resume` left undelivered: rows for what was lost.
    /// The default leaves it to the dispatcher (one row per object).
    async fn give_up(
        &self,
        _batch: &ClaimedBatch,
        _resume: Option<Resume>,
        _reason: &str,
    ) -> GiveUp {
        GiveUp::default()
    }
}

/// A destination could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline}: destination {kind}: {message}")]
pub struct BuildError {
    /// Pipeline.
    pub pipeline: String,
    /// Destination type.
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Builds a pipeline's destination; `installation` is the control database's installation id
/// (Redshift's commit markers carry it).
pub async fn build(
    pipeline: &crate::config::PipelineConfig,
    s3: &crate::source::s3::S3,
    installation: &str,
) -> Result<std::sync::Arc<dyn Destination>, BuildError> {
    use crate::config::DestinationConfig as D;
    let built = match &pipeline.destination {
        D::File(f) => {
            Ok(std::sync::Arc::new(file::FileDestination::new(pipeline, f, s3.clone())) as _)
        }
        D::Redshift(c) => {
            redshift::RedshiftDestination::new(pipeline, c, s3.clone(), installation).await
        }
        D::Elasticsearch(c) => {
            elasticsearch::ElasticsearchDestination::new(pipeline, c, s3.clone()).await
        }
        D::Splunk(c) => splunk::SplunkDestination::new(pipeline, c, s3.clone()).await,
    };
    built.map_err(|message| BuildError {
        pipeline: pipeline.name.clone(),
        kind: pipeline.destination.kind(),
        message,
    })
}
