//! One load transaction, in the order Redshift's SNAPSHOT isolation needs:
//! `getdate()`, then `BEGIN; LOCK (the target's lock table, see `lock`); check marker;
//! [staging table;] COPY; harvest MAXERROR rows; [merge;] INSERT marker and error rows; COMMIT`.
//!
//! "Amazon Redshift ... the snapshot is taken at the first query in the transaction"
//! (https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html): the `LOCK` comes
//! first so the marker check sees every commit made before it was granted. Each COPY goes alone
//! in its own simple query: Redshift emulators and proxies recognise it only that way, and no
//! prepared statement can carry it.

use super::client::Session;
use super::commit::{self, Key, Marker};
use super::failed;
use super::hooks::Point;
use super::retry::{Class, RedshiftError};
use super::RedshiftDestination;
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use tokio_postgres::SimpleQueryMessage;
use tracing::debug;

/// What one load transaction works on.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    /// The batch.
    pub batch: &'a ClaimedBatch,
    /// Its marker key.
    pub key: &'a Key,
    /// The objects to load (the batch minus those left out).
    pub objects: &'a [StagedObject],
    /// The manifest's URL; None when every object was left out (nothing to COPY, but the
    /// marker still commits why).
    pub manifest: Option<&'a str>,
    /// Rows about the objects left out, committed with the marker.
    pub excluded: &'a [LoadError],
}

/// How one load transaction ended, short of success.
pub enum LoadFailure {
    /// The batch's marker was already there: an earlier attempt committed it.
    AlreadyCommitted,
    /// COPY refused the data; these are its error rows for this batch's files.
    BadData {
        /// The rows, `object_id` resolved.
        rows: Vec<LoadError>,
        /// The COPY's error.
        error: RedshiftError,
    },
    /// A columnar COPY failed reading a file it did not name.
    UnnamedFile(RedshiftError),
    /// COMMIT was sent and its answer lost (a cut connection, a timeout): whether the batch
    /// committed is known only from its marker.
    CommitUnknown(RedshiftError),
    /// Anything else.
    Failed(RedshiftError),
}

/// What a committed load reports.
pub struct Loaded {
    /// Rows loaded.
    pub rows: i64,
    /// Rows skipped under MAXERROR.
    pub rejected: Vec<LoadError>,
    /// Objects left out because an earlier load committed them (they settle loaded).
    pub held: Vec<i64>,
}

/// The object a row names: its filename is the object's URL, or a prefix of it when Redshift
/// cut the name at 256 characters.
pub fn named_object(objects: &[StagedObject], filename: &str) -> Option<i64> {
    objects
        .iter()
        .find(|o| o.url() == filename)
        .or_else(|| {
            (filename.chars().count() >= 255)
                .then(|| objects.iter().find(|o| o.url().starts_with(filename)))
                .flatten()
        })
        .map(|o| o.id)
}

/// The first row's columns as integers (missing or unparsable ones as 0).
fn ints(msgs: &[SimpleQueryMessage]) -> Vec<i64> {
    msgs.iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

/// The row count of the last statement that reported one.
fn command_rows(msgs: &[SimpleQueryMessage]) -> Option<i64> {
    msgs.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n as i64),
        _ => None,
    })
}

impl RedshiftDestination {
    /// The cluster's clock, before a COPY: its error rows start at or after it.
    async fn cluster_now(&self, client: &Session) -> Result<String, RedshiftError> {
        let msgs = client
            .query("read cluster time", "SELECT getdate()")
            .await?;
        msgs.iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| RedshiftError::Answer {
                what: "read cluster time",
                detail: "no row from getdate()".into(),
            })
    }

    /// The error rows of the COPY started at `since` for these objects, `object_id` resolved;
    /// rows about other files are dropped.
    async fn harvest(
        &self,
        client: &Session,
        objects: &[StagedObject],
        since: &str,
    ) -> Result<Vec<LoadError>, RedshiftError> {
        let files: Vec<String> = objects.iter().map(|o| o.url()).collect();
        let view = self.error_view();
        let msgs = match client
            .query(
                "read load errors",
                &failed::load_errors_query(view, &files, since),
            )
            .await
        {
            Ok(msgs) => msgs,
            // The STL views refused after all (Serverless): read the SYS view from now on.
            Err(e) if self.fall_back_to_sys(&e) => {
                client
                    .query(
                        "read load errors",
                        &failed::load_errors_query(
                            crate::config::ErrorTable::SysLoadErrorDetail,
                            &files,
                            since,
                        ),
                    )
                    .await?
            }
            Err(e) => return Err(e),
        };
        let rows = failed::stl_rows(&msgs)
            .into_iter()
            .filter_map(|mut r| {
                r.object_id = Some(named_object(objects, &r.filename)?);
                Some(r)
            })
            .collect();
        Ok(failed::latest_copy(rows))
    }

    /// The `LOCK` every load transaction starts with: whoever holds it may be committing this
    /// batch's marker, so a marker check made after it sees that commit.
    pub(super) fn lock_statement(&self) -> String {
        self.lock.statement()
    }

    /// The batch's marker read under the load's lock, in a fresh transaction: a COMMIT whose
    /// answer was lost (a cut connection, a client-side timeout) is either there or will never
    /// be, since a load still committing holds the lock until it ends.
    pub(super) async fn committed_under_lock(
        &self,
        batch: &ClaimedBatch,
    ) -> Result<Option<crate::destination::Attempt>, RedshiftError> {
        let client = self.session().await?;
        client.exec("begin", "BEGIN").await?;
        let found = async {
            client
                .exec("lock before the marker check", &self.lock_statement())
                .await?;
            self.committed(&client, batch, &self.key(batch)).await
        }
        .await;
        // Read only: nothing to commit, and the rollback releases the lock.
        client.rollback().await;
        if found.is_ok() {
            self.keep(client);
        }
        found
    }

    /// Writes the batch's manifest listing `objects`; returns its `s3://` URL.
    pub(super) async fn write_manifest(
        &self,
        batch: &ClaimedBatch,
        objects: &[StagedObject],
    ) -> Result<String, RedshiftError> {
        let key = self.manifest_key(batch);
        let url = format!("s3://{}/{key}", self.bucket);
        self.s3
            .put(
                &self.bucket,
                &key,
                crate::artifacts::manifest(objects),
                "application/json",
            )
            .await
            .map_err(|e| RedshiftError::Manifest {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        Ok(url)
    }

    /// One load transaction for `job`.
    pub(super) async fn load(
        &self,
        client: &Session,
        job: &Job<'_>,
    ) -> Result<Loaded, LoadFailure> {
        let batch_id = job.batch.id;
        let since = self
            .cluster_now(client)
            .await
            .map_err(LoadFailure::Failed)?;
        client
            .exec("begin", "BEGIN")
            .await
            .map_err(LoadFailure::Failed)?;
        let result = self.in_transaction(client, job, &since).await;
        match result {
            Ok(loaded) => {
                self.hooks
                    .pause(Point::AfterCommit, &self.pipeline, batch_id)
                    .await;
                Ok(loaded)
            }
            Err(failure) => {
                client.rollback().await;
                match failure {
                    // Read after the rollback: the aborted transaction can run nothing.
                    // A columnar COPY fails whole on any error and names the file in its
                    // message, not in stl_load_errors rows.
                    Step::Copy(error) if self.spec.format_keyword().is_some() => {
                        match super::columnar::bad_file(job.objects, &error) {
                            Some(row) => Err(LoadFailure::BadData {
                                rows: vec![row],
                                error,
                            }),
                            None if super::columnar::is_scan_error(&error) => {
                                Err(LoadFailure::UnnamedFile(error))
                            }
                            None => Err(LoadFailure::Failed(error)),
                        }
                    }
                    Step::Copy(error) if error.class() == Class::BadData => {
                        match self.harvest(client, job.objects, &since).await {
                            Ok(rows) => Err(LoadFailure::BadData { rows, error }),
                            Err(e) => Err(LoadFailure::Failed(e)),
                        }
                    }
                    Step::Copy(e) | Step::Other(e) => Err(LoadFailure::Failed(e)),
                    Step::Commit(e) => Err(LoadFailure::CommitUnknown(e)),
                    Step::Committed => Err(LoadFailure::AlreadyCommitted),
                }
            }
        }
    }

    async fn in_transaction(
        &self,
        client: &Session,
        job: &Job<'_>,
        since: &str,
    ) -> Result<Loaded, Step> {
        let tables = &self.tables;
        client
            .exec("lock before the marker check", &self.lock_statement())
            .await?;
        let found = client
            .query("marker check", &job.key.select_marker(tables))
            .await?;
        if found
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::Row(_)))
        {
            return Err(Step::Committed);
        }
        // Objects an earlier load committed (a control database recreated or restored since
        // listed them again) stay out of the COPY; the manifest is rewritten without them.
        let mut held = super::held::held(client, tables, &self.pipeline, job.objects).await?;
        // Asked for by name (`backfill --reload`): loaded again all the same.
        held.retain(|id| !job.batch.reload.contains(id));
        let kept: Vec<StagedObject> = job
            .objects
            .iter()
            .filter(|o| !held.contains(&o.id))
            .cloned()
            .collect();
        let manifest = match job.manifest {
            Some(m) if held.is_empty() => Some(m.to_string()),
            Some(_) if !kept.is_empty() => Some(
                self.write_manifest(job.batch, &kept)
                    .await
                    .map_err(Step::Other)?,
            ),
            _ => None,
        };
        let job = &Job {
            objects: &kept,
            manifest: manifest.as_deref(),
            ..*job
        };
        let (count, copy_id, rejected) = match job.manifest {
            Some(manifest) => self.copy(client, job, manifest, since).await?,
            None => (0, 0, Vec::new()),
        };
        let marker = Marker {
            key: job.key,
            manifest: job.manifest.unwrap_or(""),
            objects: job.objects.len(),
            excluded: job.batch.objects.len() - job.objects.len(),
            rows_loaded: count,
            rows_rejected: rejected.len() as i64,
            copy_query: copy_id,
        };
        client.exec("insert marker", &marker.insert(tables)).await?;
        let rows: Vec<(bool, &LoadError)> = job
            .excluded
            .iter()
            .map(|r| (true, r))
            .chain(rejected.iter().map(|r| (false, r)))
            .collect();
        for sql in commit::insert_errors(tables, job.key, &rows) {
            client.exec("insert marker error rows", &sql).await?;
        }
        if job.manifest.is_some() {
            for sql in super::held::records(tables, job.key, job.objects) {
                client.exec("record loaded objects", &sql).await?;
            }
        }
        self.hooks
            .pause(Point::BeforeCommit, &self.pipeline, job.batch.id)
            .await;
        client
            .exec("commit", "COMMIT")
            .await
            .map_err(Step::Commit)?;
        Ok(Loaded {
            rows: count,
            rejected,
            held,
        })
    }

    /// The COPY (through a staging table with merge keys) and the rows it skipped under
    /// MAXERROR, read before the commit so they commit with the marker.
    async fn copy(
        &self,
        client: &Session,
        job: &Job<'_>,
        manifest: &str,
        since: &str,
    ) -> Result<(i64, i64, Vec<LoadError>), Step> {
        let merge = self
            .merge
            .as_ref()
            .map(|m| m.render(&self.spec, job.batch.id));
        let copy_table = merge
            .as_ref()
            .map_or(self.spec.table.as_str(), |m| &m.stage);
        if let Some(m) = &merge {
            client.exec("create staging table", &m.create).await?;
        }
        debug!(pipeline = %self.pipeline, batch_id = job.batch.id, copy = %self.spec.render_into(copy_table, manifest, true), "running copy");
        client
            .exec("copy", &self.spec.render_into(copy_table, manifest, false))
            .await
            .map_err(Step::Copy)?;
        let ids = ints(
            &client
                .query(
                    "copy count",
                    "SELECT pg_last_copy_count(), pg_last_copy_id()",
                )
                .await?,
        );
        let (mut count, copy_id) = (
            ids.first().copied().unwrap_or(0),
            ids.get(1).copied().unwrap_or(0),
        );
        let rejected = if self.spec.max_error() > 0 {
            self.harvest(client, job.objects, since).await?
        } else {
            Vec::new()
        };
        if let Some(m) = &merge {
            client
                .exec("merge: delete replaced rows", &m.delete)
                .await?;
            let inserted = client.query("merge: insert", &m.insert).await?;
            client.exec("drop staging table", &m.drop).await?;
            count = command_rows(&inserted).unwrap_or(count);
        }
        Ok((count, copy_id, rejected))
    }
}

/// Where a transaction stopped.
enum Step {
    /// The COPY failed.
    Copy(RedshiftError),
    /// The marker was already there.
    Committed,
    /// COMMIT was sent and its answer never came: the batch may have committed.
    Commit(RedshiftError),
    /// Another statement failed.
    Other(RedshiftError),
}

impl From<RedshiftError> for Step {
    fn from(e: RedshiftError) -> Step {
        Step::Other(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn rows_name_objects_by_url_or_its_cut_prefix() {
        let long_key = "k".repeat(300);
        let objects = vec![
            StagedObject {
                id: 1,
                bucket: "b".into(),
                key: "a.json".into(),
                etag: "e".into(),
                size: 1,
                arrival_time: Utc::now(),
            },
            StagedObject {
                id: 2,
                bucket: "b".into(),
                key: long_key.clone(),
                etag: "e".into(),
                size: 1,
                arrival_time: Utc::now(),
            },
        ];
        assert_eq!(named_object(&objects, "s3://b/a.json"), Some(1));
        let cut: String = format!("s3://b/{long_key}").chars().take(256).collect();
        assert_eq!(named_object(&objects, &cut), Some(2));
        assert_eq!(named_object(&objects, "s3://b/other"), None);
    }
}
