//! `type = "file"`: each batch's records as one NDJSON file, written to a temporary name of the
//! claim's own and renamed, so a file is either whole or absent. The file is named
//! `<origin batch id>-<digest of its objects>.ndjson`, and a companion lists the objects it
//! holds (`index`): an object the directory holds is never written again, whether the batch
//! is retried, taken over, replayed, or listed again by a recreated or restored control
//! database; and no two different sets of objects share a name, so no file is ever replaced
//! by another's records. For local runs, dry runs and tests.
//!
//! Layout: `attempt` (one attempt's walk into the file), `index` (what the directory holds);
//! `config.rs` beside this file is the `[pipeline.destination]` table, compiled in the config
//! layer as `crate::config::destination::file`.

mod attempt;
mod index;

use super::{Attempt, Destination, FailureKind};
use crate::config::Framing;
use crate::config::{FileConfig, PipelineConfig, SourceConfig};
use crate::model::ClaimedBatch;
use crate::source::reader::BlockHook;
use crate::source::s3::S3;
use async_trait::async_trait;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Writes batches as NDJSON files.
pub struct FileDestination {
    directory: PathBuf,
    source: SourceConfig,
    /// How the records this destination receives are framed (JSON lines after a transform).
    framing: Framing,
    /// The pipeline's transforms, run on the reading threads.
    transforms: Option<Arc<dyn BlockHook>>,
    s3: S3,
    /// The objects the directory holds, read from its companions.
    index: std::sync::Arc<std::sync::Mutex<index::Index>>,
}

impl FileDestination {
    /// A file destination for a pipeline.
    pub fn new(pipeline: &PipelineConfig, config: &FileConfig, s3: S3) -> Self {
        FileDestination {
            directory: config.directory.clone(),
            source: pipeline.source.clone(),
            framing: pipeline.record_framing(),
            transforms: None,
            s3,
            index: Default::default(),
        }
    }

    /// Runs the pipeline's transforms on the records before they are written.
    pub fn with_transforms(mut self, transforms: Option<Arc<dyn BlockHook>>) -> Self {
        self.transforms = transforms;
        self
    }

    /// Where a file of this stem (`<origin>-<digest>`) is published.
    fn path_of(&self, stem: &str) -> PathBuf {
        self.directory.join(format!("{stem}.ndjson"))
    }
}

/// Whether an I/O error can pass by itself or needs an operator (permissions, a file where
/// the directory should be).
fn io_kind(e: &io::Error) -> FailureKind {
    match e.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::ReadOnlyFilesystem => FailureKind::NeedsOperator,
        _ => FailureKind::Transient,
    }
}

#[async_trait]
impl Destination for FileDestination {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn target(&self) -> String {
        self.directory.display().to_string()
    }

    async fn check(&self) -> Result<(), super::DestinationError> {
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(|e| {
                super::DestinationError::new(
                    io_kind(&e),
                    format!("directory {}: {e}", self.directory.display()),
                )
                .with_source(e)
            })
    }

    async fn deliver(
        &self,
        batch: &ClaimedBatch,
        _attempt: u32,
        _resume: Option<super::Resume>,
    ) -> Attempt {
        self.attempt(batch).await
    }
}
