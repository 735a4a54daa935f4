//! One attempt: the batch's objects the directory does not hold yet (see `index`), through the
//! one record walk, into a temporary file of this claim's own, synced, then published under a
//! name no other set of objects shares, only while the claim still holds its lease.

use super::{index, io_kind, FileDestination};
use crate::config::Framing;
use crate::destination::{Attempt, FailureKind, Outcome};
use crate::model::{ClaimedBatch, StagedObject};
use crate::source::records::{self, Step, Walk};
use std::io;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tracing::info;

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

/// Test hook: `STAGELOAD_TEST_FILE_HOLD=<point>:<dir>` stops this process at `point`
/// (`mid_write`, after the first block is written, or `before_publish`, after the file is
/// synced) until `<dir>/<point>.go` exists, after creating `<dir>/<point>.reached`. It blocks
/// the thread on purpose, so nothing else of the attempt (a cancellation included) runs
/// meanwhile, as in a process frozen there. Never set in production; unset, nothing waits.
const HOLD_ENV: &str = "STAGELOAD_TEST_FILE_HOLD";

fn hold(point: &str) {
    static HOLD: std::sync::OnceLock<Option<(String, std::path::PathBuf)>> =
        std::sync::OnceLock::new();
    let held = HOLD.get_or_init(|| {
        let v = std::env::var(HOLD_ENV).ok()?;
        let (p, d) = v.split_once(':')?;
        Some((p.to_string(), d.into()))
    });
    let Some((at, dir)) = held else { return };
    if at != point {
        return;
    }
    let _ = std::fs::write(dir.join(format!("{point}.reached")), b"");
    let go = dir.join(format!("{point}.go"));
    let start = std::time::Instant::now();
    while !go.exists() && start.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl FileDestination {
    /// Writes the batch's file: every record of every object the directory lacks, through a
    /// temporary name of this claim's own.
    pub(super) async fn attempt(&self, batch: &ClaimedBatch) -> Attempt {
        let dir = &self.directory;
        let fail = |e: io::Error, what: &str| {
            Attempt::failed(io_kind(&e), format!("{what} {}: {e}", dir.display()))
        };
        if let Err(e) = tokio::fs::create_dir_all(dir).await {
            return fail(e, "create directory");
        }
        let held = match self.held(&batch.objects).await {
            Ok(h) => h,
            Err(e) => return fail(e, "read the published objects of"),
        };
        let objects: Vec<StagedObject> = batch
            .objects
            .iter()
            .zip(&held)
            .filter(|(o, &h)| !h || batch.reload.contains(&o.id))
            .map(|(o, _)| o.clone())
            .collect();
        if objects.len() < batch.objects.len() {
            info!(pipeline = %batch.pipeline, batch_id = batch.id, objects = batch.objects.len() - objects.len(),
                directory = %dir.display(), "objects already published to the directory, leaving them out");
        }
        if objects.is_empty() {
            return Attempt::delivered(0);
        }
        let stem = format!("{}-{}", batch.origin, index::digest(&objects));
        let tmp = dir.join(format!(".{stem}.{}.tmp", batch.lease_token));
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
            if let Some(object) = objects.iter().find(|o| o.key.contains(text.as_str())) {
                panic!("test hook {PANIC_ENV}: delivering {}", object.key);
            }
        }
        let mut walk =
            Walk::all(&self.s3, &self.source, &objects).with_hook(self.transforms.clone());
        let mut written = 0usize;
        while let Some(step) = walk.next().await {
            match step {
                Step::Block(block) => {
                    let object = &objects[block.index];
                    out.clear();
                    for (_, bytes) in block.records() {
                        push_record(&mut out, self.framing, bytes);
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
                    written += 1;
                    if written == 1 {
                        let _ = file.flush().await;
                        hold("mid_write");
                    }
                }
                Step::Done { .. } => {}
                Step::Skipped { index, row } => {
                    report.rejected.push(*row);
                    report.skipped_objects.push(objects[index].id);
                }
                Step::Unreadable { error, .. } => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Attempt::failed(FailureKind::Transient, error);
                }
            }
        }
        let synced = async {
            file.flush().await?;
            file.sync_all().await
        };
        if let Err(e) = synced.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return fail(e, "finish file in");
        }
        drop(file);
        hold("before_publish");
        // A worker that was frozen past its lease must not publish: the batch is another's.
        if let Some(lease) = &batch.lease {
            let refused = match lease.0.held().await {
                Ok(true) => None,
                Ok(false) => Some("the lease was taken over".to_string()),
                Err(e) => Some(format!("cannot confirm the lease: {e}")),
            };
            if let Some(why) = refused {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Attempt::failed(
                    FailureKind::Transient,
                    format!("not publishing {stem}.ndjson in {}: {why}", dir.display()),
                );
            }
        }
        // An object skipped on its own (missing, corrupt) is not held: a replay may load it.
        let held: Vec<StagedObject> = objects
            .iter()
            .filter(|o| !report.skipped_objects.contains(&o.id))
            .cloned()
            .collect();
        if let Err(e) = self.publish(&stem, &tmp, &held, &batch.lease_token).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return fail(e, "publish file in");
        }
        self.forget_leftovers(batch.origin, &tmp).await;
        report.outcome = Outcome::Delivered;
        report
    }

    /// For each object, whether the directory holds it already.
    async fn held(&self, objects: &[StagedObject]) -> io::Result<Vec<bool>> {
        let (index, dir, objects) = (self.index.clone(), self.directory.clone(), objects.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
            index.refresh(&dir)?;
            Ok(objects.iter().map(|o| index.holds(o)).collect())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Puts the companion, then the data file, in place.
    async fn publish(
        &self,
        stem: &str,
        tmp: &Path,
        objects: &[StagedObject],
        token: &str,
    ) -> io::Result<()> {
        let dir = &self.directory;
        let name = index::companion_name(stem);
        let companion_tmp = dir.join(format!("{name}.{token}.tmp"));
        let mut f = tokio::fs::File::create(&companion_tmp).await?;
        f.write_all(&index::companion(objects)).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&companion_tmp, dir.join(&name)).await?;
        sync_dir(dir).await?;
        tokio::fs::rename(tmp, self.path_of(stem)).await?;
        sync_dir(dir).await?;
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(stem, objects);
        Ok(())
    }

    /// Removes temporary files an earlier owner of this batch left (killed, or fenced after a
    /// takeover): they were never published, and an owner still writing one only loses a file
    /// it may not publish.
    async fn forget_leftovers(&self, origin: i64, mine: &Path) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.directory).await else {
            return;
        };
        let prefix = format!(".{origin}-");
        while let Ok(Some(e)) = entries.next_entry().await {
            let name = e.file_name();
            let Some(text) = name.to_str() else { continue };
            if text.starts_with(&prefix) && text.ends_with(".tmp") && e.path() != mine {
                let _ = tokio::fs::remove_file(e.path()).await;
            }
        }
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
