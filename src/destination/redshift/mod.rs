//! `type = "redshift"`: placeholder until the Redshift destination lands; building it fails with a clear message.

use crate::config::{PipelineConfig, RedshiftConfig};
use crate::source::s3::S3;

/// The Redshift destination (not built yet).
pub struct RedshiftDestination;

impl RedshiftDestination {
    /// Builds the destination from its configuration.
    pub async fn new(
        _pipeline: &PipelineConfig,
        _config: &RedshiftConfig,
        _s3: S3,
    ) -> Result<std::sync::Arc<dyn super::Destination>, String> {
        Err("the redshift destination is not built into this version yet".into())
    }
}
