//! `type = "redshift"`: each batch becomes a manifest in S3 and one transaction on the cluster,
//! `BEGIN; COPY ... MANIFEST; INSERT INTO stageload_commits ...; COMMIT`, so the rows and the
//! batch's marker commit together or not at all (DESIGN.md, "Delivery guarantees").
//!
//! Before loading, and for a batch taken over from a dead worker, the marker is looked up: a
//! batch whose marker exists is delivered and is never loaded again. The marker table is locked
//! just before the marker is checked and written, so two workers that both believe they own a
//! batch cannot both commit it. A COPY refused for bad data is rolled back; the files that
//! `stl_load_errors` names are skipped on their own and the rest of the batch is loaded again at
//! once, inside the same attempt. Rows a COPY skipped under `MAXERROR` are read back from
//! `stl_load_errors` before the commit and reported as rejected.
//!
//! Objects deleted or overwritten since they were listed are skipped on their own before the
//! COPY (`preflight`). With `merge_keys`, the COPY loads a staging table whose rows then replace
//! the target's rows with the same keys, in the same transaction (`merge`).
//!
//! Layout: `copy` (SQL rendering and quoting), `connect` (URL, password, TLS), `errors`
//! (classification and `stl_load_errors` rows), `preflight` (HEAD of each object), `merge`
//! (staging-table upsert SQL), `hooks` (test-only pauses).

mod connect;
pub mod copy;
mod errors;
mod hooks;
mod merge;
mod preflight;

use self::connect::{Connector, Session};
use self::copy::{CopySpec, Marker};
use self::errors::{Class, RedshiftError};
use self::hooks::{Hooks, Point};
use self::merge::MergeSpec;
use super::{Attempt, Destination, FailureKind, Outcome, Resume};
use crate::config::{ErrorTable, PipelineConfig, RedshiftConfig};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use crate::pipeline::artifacts;
use crate::source::s3::S3;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_postgres::SimpleQueryMessage;
use tracing::{debug, info, warn};

/// Idle sessions kept for the next batch.
const IDLE_SESSIONS: usize = 4;

/// The objects of a batch left out of later attempts (named as bad by `stl_load_errors`).
#[derive(Debug, Default, Clone)]
struct Excluded(HashSet<i64>);

impl Excluded {
    /// The batch's objects that are still to be loaded.
    fn remaining(&self, batch: &ClaimedBatch) -> Vec<StagedObject> {
        batch
            .objects
            .iter()
            .filter(|o| !self.0.contains(&o.id))
            .cloned()
            .collect()
    }
}

/// Loads batches into one Redshift table.
pub struct RedshiftDestination {
    pipeline: String,
    table: String,
    spec: CopySpec,
    merge: Option<MergeSpec>,
    marker: String,
    connector: Connector,
    s3: S3,
    bucket: String,
    manifest_prefix: String,
    idle: Mutex<Vec<Session>>,
    marker_ready: AtomicBool,
    error_table: ErrorTable,
    hooks: Hooks,
}

/// How one load transaction ended, short of success.
enum LoadFailure {
    /// The batch's marker was already there: an earlier attempt committed it.
    AlreadyCommitted,
    /// COPY refused the data; these are its `stl_load_errors` rows.
    BadData {
        rows: Vec<LoadError>,
        error: RedshiftError,
    },
    /// Anything else.
    Failed(RedshiftError),
}

/// What a committed load reports.
struct Loaded {
    rows: i64,
    rejected: Vec<LoadError>,
}

impl RedshiftDestination {
    /// Builds the destination from its configuration.
    // The signature `destination::build` calls for every destination type.
    #[allow(clippy::new_ret_no_self)]
    pub async fn new(
        pipeline: &PipelineConfig,
        config: &RedshiftConfig,
        s3: S3,
    ) -> Result<Arc<dyn Destination>, String> {
        Ok(Arc::new(RedshiftDestination {
            pipeline: pipeline.name.clone(),
            table: config.table.clone(),
            spec: CopySpec::from_config(config)?,
            merge: MergeSpec::from_config(config)?,
            marker: copy::marker_table(&config.commit_schema)?,
            connector: Connector::new(config)?,
            s3,
            bucket: pipeline.source.bucket.clone(),
            manifest_prefix: config.manifest_prefix.clone(),
            idle: Mutex::new(Vec::new()),
            marker_ready: AtomicBool::new(false),
            error_table: config.error_table,
            hooks: Hooks::from_env(),
        }))
    }

    /// An open session with the marker table in place: an idle one, or a new one.
    async fn session(&self) -> Result<Session, RedshiftError> {
        let reused = {
            let mut idle = self.idle.lock().expect("idle sessions lock");
            std::iter::from_fn(|| idle.pop()).find(|c| c.reusable())
        };
        let client = match reused {
            Some(c) => c,
            None => self.connector.connect().await?,
        };
        if !self.marker_ready.load(Ordering::Relaxed) {
            client
                .exec("create marker table", &copy::marker_ddl(&self.marker))
                .await?;
            self.marker_ready.store(true, Ordering::Relaxed);
        }
        Ok(client)
    }

    /// Keeps a session whose last statement ended cleanly.
    fn keep(&self, client: Session) {
        let mut idle = self.idle.lock().expect("idle sessions lock");
        if idle.len() < IDLE_SESSIONS && client.reusable() {
            idle.push(client);
        }
    }

    async fn committed(&self, client: &Session, batch_id: i64) -> Result<bool, RedshiftError> {
        let rows = client
            .query("marker check", &copy::marker_select(&self.marker, batch_id))
            .await?;
        Ok(rows.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))))
    }

    fn manifest_key(&self, batch: &ClaimedBatch) -> String {
        // The hour of the first attempt, so every retry of a batch rewrites one manifest.
        format!(
            "{}{}{}-{}.manifest",
            self.manifest_prefix,
            artifacts::hour_path(batch.first_attempt_at),
            self.pipeline,
            batch.id
        )
    }

    /// One transaction: COPY, harvest skipped rows, lock and check the marker, insert it, commit.
    async fn load(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        objects: &[StagedObject],
        manifest_url: &str,
    ) -> Result<Loaded, LoadFailure> {
        let merge = self.merge.as_ref().map(|m| m.render(&self.spec, batch.id));
        let copy_table = merge
            .as_ref()
            .map_or(self.spec.table.as_str(), |m| &m.stage);
        let copy_sql = self.spec.render_into(copy_table, manifest_url, false);
        debug!(pipeline = %self.pipeline, batch_id = batch.id, copy = %self.spec.render_into(copy_table, manifest_url, true), "running copy");
        client
            .exec("begin", "BEGIN")
            .await
            .map_err(LoadFailure::Failed)?;
        if let Some(m) = &merge {
            if let Err(e) = client.exec("create staging table", &m.create).await {
                client.rollback().await;
                return Err(LoadFailure::Failed(e));
            }
        }
        // The COPY goes alone in its own simple query: Redshift emulators and proxies
        // recognise it only that way, and no prepared statement can carry it.
        if let Err(error) = client.exec("copy", &copy_sql).await {
            client.rollback().await;
            if error.class() != Class::BadData {
                return Err(LoadFailure::Failed(error));
            }
            return match client
                .query(
                    "read stl_load_errors",
                    &errors::load_errors_query(self.error_table, "pg_last_copy_id()"),
                )
                .await
            {
                Ok(msgs) => Err(LoadFailure::BadData {
                    rows: errors::stl_rows(&msgs),
                    error,
                }),
                Err(e) => Err(LoadFailure::Failed(e)),
            };
        }
        let result = async {
            let ids = client
                .query("copy id", "SELECT pg_last_copy_id(), pg_last_copy_count()")
                .await?;
            let (copy_id, count) = first_two(&ids).ok_or_else(|| RedshiftError::Answer {
                what: "copy id",
                detail: "no row from pg_last_copy_id()".into(),
            })?;
            // Rows skipped under MAXERROR are read before the commit, so they cannot be lost
            // between a commit and a crash.
            let rejected = if copy_id > 0 {
                errors::stl_rows(
                    &client
                        .query(
                            "read stl_load_errors",
                            &errors::load_errors_query(self.error_table, &copy_id.to_string()),
                        )
                        .await?,
                )
            } else {
                Vec::new()
            };
            let count = match &merge {
                Some(m) => {
                    client
                        .exec("merge: delete replaced rows", &m.delete)
                        .await?;
                    let inserted = client.query("merge: insert", &m.insert).await?;
                    client.exec("drop staging table", &m.drop).await?;
                    command_rows(&inserted).unwrap_or(count)
                }
                None => count,
            };
            client
                .exec("lock marker table", &format!("LOCK TABLE {}", self.marker))
                .await?;
            if self.committed(client, batch.id).await? {
                return Ok(None);
            }
            let marker = Marker {
                batch_id: batch.id,
                pipeline: &self.pipeline,
                manifest: manifest_url,
                objects: objects.len(),
                rows_loaded: count,
                rows_rejected: rejected.len() as i64,
                copy_query: copy_id,
                committed_at: chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            };
            client
                .exec("insert marker", &copy::marker_insert(&self.marker, &marker))
                .await?;
            self.hooks
                .pause(Point::BeforeCommit, &self.pipeline, batch.id)
                .await;
            client.exec("commit", "COMMIT").await?;
            Ok(Some(Loaded {
                rows: count,
                rejected,
            }))
        }
        .await;
        match result {
            Ok(Some(loaded)) => {
                self.hooks
                    .pause(Point::AfterCommit, &self.pipeline, batch.id)
                    .await;
                Ok(loaded)
            }
            Ok(None) => {
                client.rollback().await;
                Err(LoadFailure::AlreadyCommitted)
            }
            Err(e) => {
                client.rollback().await;
                Err(LoadFailure::Failed(e))
            }
        }
    }
}

/// The row count of the last statement that reported one.
fn command_rows(msgs: &[SimpleQueryMessage]) -> Option<i64> {
    msgs.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::CommandComplete(n) => Some(*n as i64),
        _ => None,
    })
}

/// The first row's first two columns as integers.
fn first_two(msgs: &[SimpleQueryMessage]) -> Option<(i64, i64)> {
    msgs.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some((
            r.get(0)?.trim().parse().ok()?,
            r.get(1)?.trim().parse().ok()?,
        )),
        _ => None,
    })
}

/// The objects a row names: its filename is the object's URL, or a prefix of it when Redshift
/// cut the name at 256 characters.
fn named_object(objects: &[StagedObject], filename: &str) -> Option<i64> {
    objects
        .iter()
        .find(|o| o.url() == filename)
        .or_else(|| {
            (filename.chars().count() >= 256)
                .then(|| objects.iter().find(|o| o.url().starts_with(filename)))
                .flatten()
        })
        .map(|o| o.id)
}

/// A failed attempt that keeps what earlier rounds of this attempt found.
fn failed(mut report: Attempt, kind: FailureKind, error: String, excluded: &Excluded) -> Attempt {
    report.outcome = Outcome::Failed {
        kind,
        error,
        resume: (!excluded.0.is_empty()).then(|| Resume(Box::new(excluded.clone()))),
    };
    report
}

#[async_trait]
impl Destination for RedshiftDestination {
    fn kind(&self) -> &'static str {
        "redshift"
    }

    fn target(&self) -> String {
        self.table.clone()
    }

    async fn check(&self) -> Result<(), String> {
        let prefix = format!(
            "pipeline {}: redshift at {}",
            self.pipeline,
            self.connector.target()
        );
        let client = self.session().await.map_err(|e| {
            let hint = match e.class() {
                Class::Transient => "cluster unreachable",
                _ => "refused",
            };
            format!("{prefix}: {hint}: {e}")
        })?;
        client
            .exec("select 1", "SELECT 1")
            .await
            .map_err(|e| format!("{prefix}: {e}"))?;
        self.keep(client);
        Ok(())
    }

    async fn already_delivered(&self, batch: &ClaimedBatch) -> Result<bool, String> {
        let client = self.session().await.map_err(|e| e.to_string())?;
        let found = self
            .committed(&client, batch.id)
            .await
            .map_err(|e| e.to_string())?;
        self.keep(client);
        Ok(found)
    }

    async fn deliver(&self, batch: &ClaimedBatch, resume: Option<Resume>) -> Attempt {
        let mut excluded = resume
            .and_then(|r| r.0.downcast::<Excluded>().ok())
            .map(|b| *b)
            .unwrap_or_default();
        let mut report = Attempt::delivered(0);
        let pipeline = self.pipeline.as_str();
        let client = match self.session().await {
            Ok(c) => c,
            Err(e) => return failed(report, e.class().kind(), e.to_string(), &excluded),
        };
        // A COMMIT whose answer was lost may have landed: never load before looking.
        match self.committed(&client, batch.id).await {
            Ok(true) => {
                info!(
                    pipeline,
                    batch_id = batch.id,
                    "batch already committed, not loading it again"
                );
                self.keep(client);
                return report;
            }
            Ok(false) => {}
            Err(e) => return failed(report, e.class().kind(), e.to_string(), &excluded),
        }
        match preflight::changed_objects(&self.s3, &excluded.remaining(batch)).await {
            Ok(rows) if !rows.is_empty() => {
                warn!(pipeline, batch_id = batch.id, objects = rows.len(), "staged objects gone or overwritten since they were listed, skipping them and loading the rest");
                for r in rows {
                    report.skipped_objects.extend(r.object_id);
                    excluded.0.extend(r.object_id);
                    report.rejected.push(r);
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.keep(client);
                let msg = format!("check staged objects: {e}");
                return failed(report, FailureKind::Transient, msg, &excluded);
            }
        }
        loop {
            let objects = excluded.remaining(batch);
            if objects.is_empty() {
                info!(
                    pipeline,
                    batch_id = batch.id,
                    "every object of the batch was skipped, nothing left to load"
                );
                self.keep(client);
                return report;
            }
            let key = self.manifest_key(batch);
            let url = format!("s3://{}/{key}", self.bucket);
            if let Err(e) = self
                .s3
                .put(
                    &self.bucket,
                    &key,
                    artifacts::manifest(&objects),
                    "application/json",
                )
                .await
            {
                let msg = format!("write manifest {url}: {e}");
                return failed(report, FailureKind::Transient, msg, &excluded);
            }
            self.hooks
                .pause(Point::BeforeCopy, pipeline, batch.id)
                .await;
            match self.load(&client, batch, &objects, &url).await {
                Ok(loaded) => {
                    info!(pipeline, batch_id = batch.id, table = %self.table, rows = loaded.rows, rejected = loaded.rejected.len(), objects = objects.len(), manifest = %url, "batch committed");
                    report.delivered = loaded.rows.max(0) as u64;
                    report
                        .rejected
                        .extend(loaded.rejected.into_iter().map(|mut r| {
                            r.object_id = named_object(&objects, &r.filename);
                            r
                        }));
                    self.keep(client);
                    return report;
                }
                Err(LoadFailure::AlreadyCommitted) => {
                    info!(
                        pipeline,
                        batch_id = batch.id,
                        "batch committed by an earlier attempt, not loading it again"
                    );
                    self.keep(client);
                    return report;
                }
                Err(LoadFailure::BadData { rows, error }) => {
                    let mut bad = HashSet::new();
                    let rows: Vec<LoadError> = rows
                        .into_iter()
                        .map(|mut r| {
                            r.object_id = named_object(&objects, &r.filename);
                            bad.extend(r.object_id);
                            r
                        })
                        .collect();
                    if bad.is_empty() {
                        let msg = format!("{error}; stl_load_errors names no file of this batch");
                        return failed(report, FailureKind::Permanent, msg, &excluded);
                    }
                    warn!(pipeline, batch_id = batch.id, bad_files = bad.len(), errors = rows.len(), error = %error, "copy refused bad data, skipping the files it names and loading the rest");
                    report.rejected.extend(rows);
                    report.skipped_objects.extend(bad.iter().copied());
                    excluded.0.extend(bad);
                }
                Err(LoadFailure::Failed(e)) => {
                    let kind = e.class().kind();
                    self.keep(client);
                    return failed(report, kind, e.to_string(), &excluded);
                }
            }
        }
    }
}
