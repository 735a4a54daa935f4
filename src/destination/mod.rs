//! Destinations: the [`Destination`] trait, what an attempt reports, and the implementations.
//!
//! A destination only *classifies* what happened to one attempt; the dispatcher alone sleeps,
//! retries, writes `load_errors` and settles (docs/design.md, "Retry"). Destinations never write
//! the control database.

pub mod elasticsearch;
pub mod failed;
pub mod file;
pub mod gzip;
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
    /// Bad credentials, a missing table or index, a malformed manifest: nothing will change
    /// until an operator fixes it, so it is logged as an error on every attempt; it is still
    /// retried until the budget ends, since the fix may come in time.
    NeedsOperator,
}

/// What went wrong at a destination, and how to treat it: the one error type that crosses the
/// destination boundary (failed attempts, readiness checks, recovery after a takeover).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DestinationError {
    /// Whether waiting may help, or an operator must act (both are retried within the budget).
    pub kind: FailureKind,
    /// What happened, for logs, `batches.last_error` and `load_errors.err_reason`; it names
    /// the pipeline, object or batch where the destination knows them.
    pub message: String,
    /// The underlying error, when there is one.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl DestinationError {
    /// An error of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> DestinationError {
        DestinationError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Worth retrying as it is: the destination or the network is away or busy.
    pub fn transient(message: impl Into<String>) -> DestinationError {
        DestinationError::new(FailureKind::Transient, message)
    }

    /// Nothing changes until an operator acts (credentials, a missing table or index).
    pub fn needs_operator(message: impl Into<String>) -> DestinationError {
        DestinationError::new(FailureKind::NeedsOperator, message)
    }

    /// Keeps `source` as the cause.
    pub fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> DestinationError {
        self.source = Some(Box::new(source));
        self
    }
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
        /// What went wrong, and whether it needs an operator.
        error: DestinationError,
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
                error: DestinationError::new(kind, error),
                resume: None,
            },
            ..Attempt::delivered(0)
        }
    }
}

/// The most `load_errors` rows one chunk of a write-off carries.
pub const WRITE_OFF_MAX_ROWS: usize = 5_000;

/// About the most bytes (failed-record JSON lines plus the rows' text) one chunk of a write-off
/// carries; a chunk goes out as soon as it reaches either bound, so it ends within one record
/// of it.
pub const WRITE_OFF_MAX_BYTES: usize = 4 << 20;

/// A bounded part of what a batch lost when its retry budget ran out: the dispatcher stores its
/// rows with one batched INSERT and appends its failed records to the batch's failed-record
/// object before the destination builds the next one.
#[derive(Debug, Default)]
pub struct LostChunk {
    /// Rows for `load_errors`.
    pub rows: Vec<LoadError>,
    /// Failed records as JSON lines, in Firehose's failed-record format.
    pub failed_lines: Vec<u8>,
    /// How many JSON lines `failed_lines` holds.
    pub failed_records: u64,
    /// What the chunk holds, as counted against [`WRITE_OFF_MAX_BYTES`].
    bytes: usize,
}

impl LostChunk {
    /// True when it holds neither rows nor records.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.failed_records == 0
    }

    fn push(&mut self, row: Option<LoadError>, record: Option<&serde_json::Value>) {
        if let Some(row) = row {
            self.bytes += 128
                + row.filename.len()
                + row.raw_line.len()
                + row.raw_field_value.len()
                + row.err_reason.len()
                + row.colname.len()
                + row.target.len();
            self.rows.push(row);
        }
        if let Some(record) = record {
            let before = self.failed_lines.len();
            serde_json::to_writer(&mut self.failed_lines, record).expect("json value serializes");
            self.failed_lines.push(b'\n');
            self.failed_records += 1;
            self.bytes += self.failed_lines.len() - before;
        }
    }

    fn is_full(&self, max_rows: usize, max_bytes: usize) -> bool {
        self.rows.len() >= max_rows
            || self.failed_records as usize >= max_rows
            || self.bytes >= max_bytes
    }
}

/// Where a destination hands over what a batch lost when its retry budget ran out, one bounded
/// [`LostChunk`] at a time: a chunk goes to the dispatcher as soon as it is full and the next
/// one is built only once the dispatcher has taken it, so a write-off holds at most a few
/// chunks in memory whatever the size of the batch. Rows and records handed over are recorded
/// even when the destination fails (or panics) later in the write-off.
pub struct WriteOff {
    tx: Option<tokio::sync::mpsc::Sender<LostChunk>>,
    chunk: LostChunk,
    max_rows: usize,
    max_bytes: usize,
    rows: u64,
}

impl WriteOff {
    /// A write-off with the standard bounds ([`WRITE_OFF_MAX_ROWS`], [`WRITE_OFF_MAX_BYTES`])
    /// and the receiving end the dispatcher reads chunks from.
    pub fn channel() -> (WriteOff, tokio::sync::mpsc::Receiver<LostChunk>) {
        WriteOff::with_bounds(WRITE_OFF_MAX_ROWS, WRITE_OFF_MAX_BYTES)
    }

    /// A write-off whose chunks end at `max_rows` rows or records, or `max_bytes` bytes.
    pub fn with_bounds(
        max_rows: usize,
        max_bytes: usize,
    ) -> (WriteOff, tokio::sync::mpsc::Receiver<LostChunk>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let out = WriteOff {
            tx: Some(tx),
            chunk: LostChunk::default(),
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            rows: 0,
        };
        (out, rx)
    }

    /// One lost record: its `load_errors` row and its failed record.
    pub async fn record(&mut self, row: LoadError, record: &serde_json::Value) {
        self.add(Some(row), Some(record)).await;
    }

    /// A `load_errors` row with no failed record (a whole object, a framing rejection).
    pub async fn row(&mut self, row: LoadError) {
        self.add(Some(row), None).await;
    }

    /// A failed record whose row was handed over on its own.
    pub async fn failed_record(&mut self, record: &serde_json::Value) {
        self.add(None, Some(record)).await;
    }

    async fn add(&mut self, row: Option<LoadError>, record: Option<&serde_json::Value>) {
        self.rows += u64::from(row.is_some());
        self.chunk.push(row, record);
        if self.chunk.is_full(self.max_rows, self.max_bytes) {
            self.flush().await;
        }
    }

    /// Rows handed over so far, the chunk being filled included.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Hands the chunk being filled to the dispatcher now, waiting until it takes it.
    pub async fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.chunk);
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_err() {
                // The dispatcher stopped reading (it is going away): nothing more can be kept.
                self.tx = None;
            }
        }
    }

    /// Hands over what is left and ends the write-off.
    pub async fn close(mut self) {
        self.flush().await;
    }
}

impl std::fmt::Debug for WriteOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOff")
            .field("rows", &self.rows)
            .finish()
    }
}

/// How a write-off ended.
#[derive(Debug, Default)]
pub struct GiveUp {
    /// The destination found in the end that nothing was lost (HEC acks that arrived during
    /// the final wait): the batch is settled as loaded, and nothing was handed over.
    pub nothing_lost: bool,
    /// The batch was delivered after all (an attempt whose answer was lost had landed, as a
    /// Redshift COMMIT can): the report of that delivery, settled as loaded like a recovered
    /// one. Nothing was handed over.
    pub delivered: Option<Attempt>,
    /// Whether the batch was delivered cannot be told now (the destination is unreachable):
    /// writing it off could lose nothing and still skip rows that landed, so nothing was handed
    /// over and the batch stays unsettled; the dispatcher waits a backoff step and asks again.
    pub undecided: Option<Undecided>,
}

/// A write-off refused because the batch's outcome is unknown.
#[derive(Debug)]
pub struct Undecided {
    /// Why the outcome cannot be read.
    pub error: DestinationError,
    /// What the write-off was given, for the next time it is asked.
    pub resume: Option<Resume>,
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
    async fn check(&self) -> Result<(), DestinationError>;

    /// For a batch taken over from a dead worker: did its earlier attempt already deliver it?
    /// Destinations that can tell (Redshift's marker table) answer with the report of that
    /// delivery, rebuilt from what the destination committed (records loaded, rows rejected,
    /// objects skipped), so settling it loses nothing; others answer `None`.
    async fn recover(&self, _batch: &ClaimedBatch) -> Result<Option<Attempt>, DestinationError> {
        Ok(None)
    }

    /// Attempt number `attempt` (1-based, counted across processes by the control database)
    /// at the batch, or at what `resume` says is left of it.
    async fn deliver(&self, batch: &ClaimedBatch, attempt: u32, resume: Option<Resume>) -> Attempt;

    /// The batch's budget ran out with `resume` left undelivered: hands a row (and, for
    /// destinations with [`ArtifactKind::Records`], a failed record) for each record lost to
    /// `out`, chunk by chunk as it finds them, re-reading from S3 what it does not hold. When
    /// it hands over nothing, the dispatcher writes one row per object (the default).
    /// `attempts` is how many attempts were made (Firehose's `attemptsMade`).
    async fn give_up(
        &self,
        _batch: &ClaimedBatch,
        _attempts: u32,
        _resume: Option<Resume>,
        _reason: &str,
        _out: &mut WriteOff,
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
    let chain =
        crate::transform::Chain::for_pipeline(pipeline, Some(s3.sdk_config())).map_err(|e| {
            BuildError {
                pipeline: pipeline.name.clone(),
                kind: pipeline.destination.kind(),
                message: e.to_string(),
            }
        })?;
    let hook = crate::transform::Chain::hook(&chain);
    let built = match &pipeline.destination {
        D::File(f) => Ok(std::sync::Arc::new(
            file::FileDestination::new(pipeline, f, s3.clone()).with_transforms(hook),
        ) as _),
        D::Redshift(c) => {
            redshift::RedshiftDestination::new(pipeline, c, s3.clone(), installation).await
        }
        D::Elasticsearch(c) => {
            elasticsearch::ElasticsearchDestination::new(pipeline, c, s3.clone(), hook).await
        }
        D::Splunk(c) => splunk::SplunkDestination::new(pipeline, c, s3.clone(), hook).await,
    };
    built.map_err(|message| BuildError {
        pipeline: pipeline.name.clone(),
        kind: pipeline.destination.kind(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(line: i64, raw: usize) -> LoadError {
        LoadError {
            filename: "s3://b/k".into(),
            line_number: line,
            raw_line: "x".repeat(raw),
            ..LoadError::default()
        }
    }

    #[tokio::test]
    async fn a_write_off_arrives_whole_in_bounded_chunks() {
        let (mut out, mut rx) = WriteOff::with_bounds(100, 64 << 10);
        let producer = async move {
            for line in 1..=1000 {
                let record = serde_json::json!({"rawData": "x".repeat(200), "line": line});
                out.record(row(line, 300), &record).await;
            }
            out.row(row(0, 0)).await;
            assert_eq!(out.rows(), 1001);
            out.close().await;
        };
        let consumer = async {
            let mut chunks = Vec::new();
            while let Some(c) = rx.recv().await {
                chunks.push(c);
            }
            chunks
        };
        let ((), chunks) = tokio::join!(producer, consumer);
        assert!(chunks.len() >= 10, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(c.rows.len() <= 100);
            // A chunk ends at the first record past the byte bound.
            assert!(c.failed_lines.len() < (64 << 10) + 1024);
            let lines = c
                .failed_lines
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty());
            assert_eq!(lines.count() as u64, c.failed_records);
        }
        let lines: Vec<i64> = chunks
            .iter()
            .flat_map(|c| c.rows.iter().map(|r| r.line_number))
            .collect();
        let mut want: Vec<i64> = (1..=1000).collect();
        want.push(0);
        assert_eq!(lines, want, "every row once, in order");
        let records: u64 = chunks.iter().map(|c| c.failed_records).sum();
        assert_eq!(records, 1000);
    }
}
