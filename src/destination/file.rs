//! `type = "file"`: each batch's records as one NDJSON file, written to a temporary name and
//! renamed, so a file is either whole or absent and a retried batch replaces it rather than
//! adding to it. The file is named after the batch's origin, `<origin batch id>.ndjson`: a
//! replay of a skipped batch rewrites its original's file, so a file that landed before the
//! attempt was counted as failed (the directory lost before its sync) is not doubled by the
//! replay. For local runs, dry runs and tests.

use super::{Attempt, Destination, FailureKind, Outcome};
use crate::config::{FileConfig, PipelineConfig, SourceConfig};
use crate::model::ClaimedBatch;
use crate::source::framing::Framing;
use crate::source::records::{self, Step, Walk};
use crate::source::s3::S3;
use async_trait::async_trait;
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

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

/// Appends one record as one NDJSON line: JSON records as they are, text lines as JSON strings.
/// A concatenated-JSON value that spans lines is put on one: a JSON string cannot hold a raw
/// line break, so every CR or LF byte in a valid value is whitespace between tokens and becomes
/// a space (no re-parse, which a valid value such as `1e999` or deep nesting could fail).
fn push_record(out: &mut Vec<u8>, framing: Framing, bytes: &[u8]) {
    match framing {
        Framing::Lines => {
            let text = String::from_utf8_lossy(bytes);
            // Serializing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &text);
        }
        _ if bytes.contains(&b'\n') => out.extend(bytes.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        })),
        _ => out.extend_from_slice(bytes),
    }
    out.push(b'\n');
}

/// Test hook: `STAGELOAD_TEST_FILE_PANIC=<text>` makes delivering an object whose key holds
/// `<text>` panic, so tests can prove a panicking delivery costs one attempt, not a worker.
/// Never set in production; unset, nothing panics.
const PANIC_ENV: &str = "STAGELOAD_TEST_FILE_PANIC";

fn io_kind(e: &io::Error) -> FailureKind {
    match e.kind() {
        io::ErrorKind::PermissionDenied
        | io::ErrorKind::NotADirectory
        | io::ErrorKind::ReadOnlyFilesystem => FailureKind::NeedsOperator,
        _ => FailureKind::Transient,
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
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
        let dir = &self.directory;
        let fail = |e: io::Error, what: &str| {
            Attempt::failed(io_kind(&e), format!("{what} {}: {e}", dir.display()))
        };
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            return fail(e, "create directory");
        }
        let tmp = dir.join(format!(".{}.ndjson.tmp", batch.origin));
        let mut file = match tokio::fs::File::create(&tmp).await {
            Ok(f) => f,
            Err(e) => return fail(e, "create file in"),
        };
        let mut report = Attempt::delivered(0);
        let mut out = Vec::with_capacity(records::BLOCK_BYTES + 4096);
        static PANIC_ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        let panic_on =
            PANIC_ON.get_or_init(|| std::env::var(PANIC_ENV).ok().filter(|v| !v.is_empty()));
        if let Some(text) = &panic_on {
            if let Some(object) = batch.objects.iter().find(|o| o.key.contains(text.as_str())) {
                panic!("test hook {PANIC_ENV}: delivering {}", object.key);
            }
        }
        let mut walk = Walk::all(&self.s3, &self.source, &batch.objects);
        while let Some(step) = walk.next().await {
            match step {
                Step::Block(block) => {
                    let object = &batch.objects[block.index];
                    out.clear();
                    for (_, bytes) in block.records() {
                        push_record(&mut out, self.source.format, bytes);
                    }
                    report.delivered += block.block.records.len() as u64;
                    report
                        .rejected
                        .extend(block.errors().map(|e| records::record_error_row(object, e)));
                    walk.recycle(block);
                    if let Err(e) = file.write_all(&out).await {
                        let _ = tokio::fs::remove_file(&tmp).await;
                        return fail(e, "write to");
                    }
                }
                Step::Done { .. } => {}
                Step::Skipped { index, row } => {
                    report.rejected.push(*row);
                    report.skipped_objects.push(batch.objects[index].id);
                }
                Step::Unreadable { error, .. } => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Attempt::failed(FailureKind::Transient, error);
                }
            }
        }
        let finish = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            tokio::fs::rename(&tmp, self.path_of(batch.origin)).await?;
            sync_dir(dir).await
        };
        if let Err(e) = finish.await {
            return fail(e, "finish file in");
        }
        report.outcome = Outcome::Delivered;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_one_line_each() {
        let mut out = Vec::new();
        push_record(&mut out, Framing::JsonLines, br#"{"a":1}"#);
        push_record(
            &mut out,
            Framing::JsonConcat,
            b"{\n  \"b\": [1,\r\n 1e999]\n}",
        );
        push_record(&mut out, Framing::Lines, b"plain \"text\"");
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"a\":1}\n{   \"b\": [1,   1e999] }\n\"plain \\\"text\\\"\"\n"
        );
        assert_eq!(text.lines().count(), 3);
    }
}
