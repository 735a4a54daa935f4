//! One attempt at a batch: look for its marker first (a COMMIT whose answer was lost may have
//! landed), leave out objects gone or overwritten since listing (`preflight`), write the
//! manifest, run the load transaction (`transaction`), and when a COPY is refused for bad data
//! leave out the files to blame (`exclude`, or `columnar` for a Parquet or ORC file) and load
//! the rest again, inside the same attempt.

use super::hooks::Point;
use super::state::{failed, Excluded};
use super::transaction::{Job, LoadFailure};
use super::{exclude, preflight, RedshiftDestination};
use crate::artifacts;
use crate::destination::{Attempt, FailureKind, Resume};
use crate::model::{ClaimedBatch, LoadError};
use std::collections::HashSet;
use tracing::{info, warn};

impl RedshiftDestination {
    /// One attempt at `batch`, or at what `resume` says is left of it.
    pub(super) async fn attempt(&self, batch: &ClaimedBatch, resume: Option<Resume>) -> Attempt {
        let mut excluded = resume
            .and_then(|r| r.0.downcast::<Excluded>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        let pipeline = self.pipeline.as_str();
        let key = self.key(batch);
        let client = match self.session().await {
            Ok(c) => c,
            Err(e) => return failed(e.class().kind(), e.to_string(), &excluded),
        };
        // A COMMIT whose answer was lost may have landed: never load before looking.
        match self.committed(&client, batch, &key).await {
            Ok(Some(report)) => {
                info!(
                    pipeline,
                    batch_id = batch.id,
                    "batch already committed, not loading it again"
                );
                self.keep(client);
                return report;
            }
            Ok(None) => {}
            Err(e) => return failed(e.class().kind(), e.to_string(), &excluded),
        }
        match preflight::changed_objects(&self.s3, &excluded.remaining(batch)).await {
            Ok(rows) if !rows.is_empty() => {
                warn!(pipeline, batch_id = batch.id, objects = rows.len(), "staged objects gone or overwritten since they were listed, skipping them and loading the rest");
                excluded.add(rows);
            }
            Ok(_) => {}
            Err(e) => {
                self.keep(client);
                let msg = format!("check staged objects: {e}");
                return failed(FailureKind::Transient, msg, &excluded);
            }
        }
        loop {
            let objects = excluded.remaining(batch);
            // With every object left out there is nothing to COPY, but the marker still commits
            // the reasons, so the settlement is read back the same way after a crash.
            let manifest = if objects.is_empty() {
                None
            } else {
                Some(format!("s3://{}/{}", self.bucket, self.manifest_key(batch)))
            };
            if manifest.is_some() {
                if let Err(e) = self.write_manifest(batch, &objects).await {
                    return failed(FailureKind::Transient, e.to_string(), &excluded);
                }
                self.hooks
                    .pause(Point::BeforeCopy, pipeline, batch.id)
                    .await;
            }
            let job = Job {
                batch,
                key: &key,
                objects: &objects,
                manifest: manifest.as_deref(),
                excluded: &excluded.rows,
            };
            match self.load(&client, &job).await {
                Ok(loaded) => {
                    if !loaded.held.is_empty() {
                        info!(pipeline, batch_id = batch.id, objects = loaded.held.len(), "objects the warehouse already holds (committed by an earlier load) left out of the copy, settling them loaded");
                    }
                    info!(pipeline, batch_id = batch.id, table = %self.table, rows = loaded.rows, rejected = loaded.rejected.len(), objects = objects.len() - loaded.held.len(), held = loaded.held.len(), excluded = excluded.ids.len(), "batch committed");
                    let mut report = Attempt::delivered(loaded.rows.max(0) as u64);
                    report.skipped_objects = excluded.ids.iter().copied().collect();
                    report.rejected = excluded.rows;
                    report.rejected.extend(loaded.rejected);
                    self.keep(client);
                    return report;
                }
                Err(LoadFailure::AlreadyCommitted) => {
                    info!(
                        pipeline,
                        batch_id = batch.id,
                        "batch committed by an earlier attempt, not loading it again"
                    );
                    let found = self.committed(&client, batch, &key).await;
                    self.keep(client);
                    return match found {
                        Ok(Some(report)) => report,
                        Ok(None) => failed(
                            FailureKind::Transient,
                            "marker seen under lock but not read back".into(),
                            &excluded,
                        ),
                        Err(e) => failed(e.class().kind(), e.to_string(), &excluded),
                    };
                }
                Err(LoadFailure::BadData { rows, error }) => {
                    let out = exclude::choose(&rows, self.spec.max_error());
                    if out.is_empty() {
                        let msg = format!(
                            "{error}; {} names no file of this batch",
                            self.error_view().name()
                        );
                        self.keep(client);
                        return failed(FailureKind::NeedsOperator, msg, &excluded);
                    }
                    let bad: HashSet<i64> = out.into_iter().collect();
                    let rows: Vec<LoadError> = rows
                        .into_iter()
                        .filter(|r| r.object_id.is_some_and(|id| bad.contains(&id)))
                        .collect();
                    warn!(pipeline, batch_id = batch.id, bad_files = bad.len(), errors = rows.len(), error = %error, "copy refused bad data, leaving out the worst files and loading the rest");
                    excluded.add(rows);
                }
                Err(LoadFailure::UnnamedFile(error)) => {
                    warn!(pipeline, batch_id = batch.id, error = %error, "columnar copy failed on a file it does not name, loading the files in halves to find it");
                    match self.find_bad_file(&client, batch, &objects).await {
                        Ok(Some(row)) => {
                            warn!(pipeline, batch_id = batch.id, file = %row.filename, "bad columnar file found, leaving it out and loading the rest");
                            excluded.add(vec![row]);
                        }
                        Ok(None) => {
                            self.keep(client);
                            let msg = format!("{error}; no single file of the batch fails alone");
                            return failed(FailureKind::NeedsOperator, msg, &excluded);
                        }
                        Err((kind, msg)) => return failed(kind, msg, &excluded),
                    }
                }
                Err(LoadFailure::CommitUnknown(e)) => {
                    warn!(pipeline, batch_id = batch.id, error = %e, "the answer to COMMIT was lost, the batch may have committed");
                    excluded.unsure = true;
                    return failed(FailureKind::Transient, e.to_string(), &excluded);
                }
                Err(LoadFailure::Failed(e)) => {
                    let kind = e.class().kind();
                    self.keep(client);
                    return failed(kind, e.to_string(), &excluded);
                }
            }
        }
    }

    /// The manifest's key: the hour of the first attempt, so every retry rewrites one manifest.
    pub(super) fn manifest_key(&self, batch: &ClaimedBatch) -> String {
        // The hour of the first attempt, so every retry of a batch rewrites one manifest.
        format!(
            "{}{}{}-{}.manifest",
            self.manifest_prefix,
            artifacts::hour_path(batch.first_attempt_at),
            self.pipeline,
            batch.id
        )
    }
}
