//! The `[pipeline.destination]` table: `type` selects one destination's config struct.
//!
//! Each destination's struct, defaults and startup checks live in `config.rs` in that
//! destination's directory (`src/destination/<type>/config.rs`), where someone adding an option
//! finds them beside the code that reads it. They are compiled here, as
//! `config::destination::<type>`, so the config layer still imports nothing from
//! `destination`: the `#[path]` attributes below are the only link.

#[path = "../destination/elasticsearch/config.rs"]
pub mod elasticsearch;
#[path = "../destination/file/config.rs"]
pub mod file;
#[path = "../destination/redshift/config.rs"]
pub mod redshift;
#[path = "../destination/splunk/config.rs"]
pub mod splunk;

pub use elasticsearch::{DocumentId, ElasticsearchConfig, EsAuth, IndexRotation, OpType};
pub use file::FileConfig;
pub use redshift::{statement_terminator, ErrorTable, RedshiftAuth, RedshiftConfig};
pub use splunk::{HecEndpoint, SplunkConfig};

use serde::Deserialize;

/// Where a pipeline delivers; `type` selects the variant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
// Read once at startup and kept one per pipeline: the variants' sizes do not matter, and boxing
// one would change every match on it.
#[allow(clippy::large_enum_variant)]
pub enum DestinationConfig {
    /// Amazon Redshift through a manifest and `COPY ... MANIFEST`.
    Redshift(RedshiftConfig),
    /// Elasticsearch or OpenSearch through `_bulk`.
    Elasticsearch(ElasticsearchConfig),
    /// Splunk's HTTP Event Collector.
    Splunk(SplunkConfig),
    /// NDJSON files in a local directory, one per batch: for local runs, dry runs and tests.
    File(FileConfig),
}

impl DestinationConfig {
    /// Prefixes of the source bucket where this destination writes its own objects (Redshift's
    /// manifests), which discovery must never take for staged objects.
    pub fn own_prefixes(&self) -> Vec<String> {
        match self {
            DestinationConfig::Redshift(r) => vec![r.manifest_prefix.clone()],
            _ => Vec::new(),
        }
    }

    /// The destination's `type` as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            DestinationConfig::Redshift(_) => "redshift",
            DestinationConfig::Elasticsearch(_) => "elasticsearch",
            DestinationConfig::Splunk(_) => "splunk",
            DestinationConfig::File(_) => "file",
        }
    }

    /// The default retry duration in seconds (Firehose's defaults: Redshift 3600, others 300).
    pub fn default_retry_duration_s(&self) -> u64 {
        match self {
            DestinationConfig::Redshift(_) => 3600,
            _ => 300,
        }
    }

    /// Whether the destination reads records itself (Redshift's COPY reads the objects instead).
    pub fn reads_records(&self) -> bool {
        !matches!(self, DestinationConfig::Redshift(_))
    }
}

/// Request body compression for HTTP destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HttpCompression {
    /// Plain bodies.
    #[default]
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

fn default_concurrency() -> usize {
    2
}
fn default_request_timeout_s() -> u64 {
    60
}

/// Checks a destination's fields; returns the field (relative to `destination`) and the problem.
pub(super) fn validate(d: &DestinationConfig) -> Result<(), (String, String)> {
    match d {
        DestinationConfig::File(f) => f.validate(),
        DestinationConfig::Redshift(r) => r.validate(),
        DestinationConfig::Elasticsearch(e) => e.validate(),
        DestinationConfig::Splunk(s) => s.validate(),
    }
}
