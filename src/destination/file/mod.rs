//! `type = "file"`: each batch's records as one NDJSON file, written to a temporary name and
//! renamed, so a file is either whole or absent and a retried batch replaces it rather than
//! adding to it. The file is named after the batch's origin, `<origin batch id>.ndjson`: a
//! replay of a skipped batch rewrites its original's file, so a file that landed before the
//! attempt was counted as failed (the directory lost before its sync) is not doubled by the
//! replay. For local runs, dry runs and tests.
//!
//! Layout: `attempt` (one attempt's walk into the file); `config.rs` beside this file is the
//! `[pipeline.destination]` table, compiled in the config layer as
//! `crate::config::destination::file`.

mod attempt;

use super::{Attempt, Destination, FailureKind};
use crate::config::{FileConfig, PipelineConfig, SourceConfig};
use crate::model::ClaimedBatch;
use crate::source::s3::S3;
use async_trait::async_trait;
use std::io;
use std::path::PathBuf;

/// Writes batches as NDJSON files.
pub struct FileDestination {
    directory: PathBuf,
    source: SourceConfig,
    s3: S3,
}

impl FileDestination {
    /// A file destination for a pipeline.
    pub fn new(pipeline: &PipelineConfig, config: &FileConfig, s3: S3) -> Self {
        FileDestination {
            directory: config.directory.clone(),
            source: pipeline.source.clone(),
            s3,
        }
    }

    /// Where a batch's file goes, given its origin (see the module docs).
    pub fn path_of(&self, batch: i64) -> PathBuf {
        self.directory.join(format!("{batch}.ndjson"))
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
