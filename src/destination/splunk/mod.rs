//! `type = "splunk"`: placeholder until the Splunk destination lands; building it fails with a clear message.

use crate::config::{PipelineConfig, SplunkConfig};
use crate::source::s3::S3;

/// The Splunk destination (not built yet).
pub struct SplunkDestination;

impl SplunkDestination {
    /// Builds the destination from its configuration.
    pub async fn new(
        _pipeline: &PipelineConfig,
        _config: &SplunkConfig,
        _s3: S3,
    ) -> Result<std::sync::Arc<dyn super::Destination>, String> {
        Err("the splunk destination is not built into this version yet".into())
    }
}
