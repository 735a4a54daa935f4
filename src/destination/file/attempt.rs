//! One attempt: every record of the batch, through the one record walk, into a temporary file
//! that is synced and renamed over `<origin batch id>.ndjson`.

use super::{io_kind, FileDestination};
use crate::config::Framing;
use crate::destination::{Attempt, FailureKind, Outcome};
use crate::model::ClaimedBatch;
use crate::source::records::{self, Step, Walk};
use std::io;
use std::path::Path;
use tokio::io::AsyncWriteExt;

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

async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

impl FileDestination {
    /// Writes the batch's file: every record of every object, through a temporary name.
    pub(super) async fn attempt(&self, batch: &ClaimedBatch) -> Attempt {
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
                        report.delivered += 1;
                    }
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
