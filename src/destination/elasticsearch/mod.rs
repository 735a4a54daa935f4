//! `type = "elasticsearch"`: placeholder until the Elasticsearch destination lands; building it fails with a clear message.

use crate::config::{ElasticsearchConfig, PipelineConfig};
use crate::source::s3::S3;

/// The Elasticsearch destination (not built yet).
pub struct ElasticsearchDestination;

impl ElasticsearchDestination {
    /// Builds the destination from its configuration.
    pub async fn new(
        _pipeline: &PipelineConfig,
        _config: &ElasticsearchConfig,
        _s3: S3,
    ) -> Result<std::sync::Arc<dyn super::Destination>, String> {
        Err("the elasticsearch destination is not built into this version yet".into())
    }
}
