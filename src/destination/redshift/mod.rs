//! `type = "redshift"`: each batch becomes a manifest in S3 and one transaction on the cluster:
//! `BEGIN; LOCK marker; check marker; COPY ... MANIFEST; INSERT marker and error rows; COMMIT`.
//! The rows, the batch's marker and what its settlement needs commit together or not at all.
//!
//! The marker table is locked first because Redshift fixes a transaction's snapshot at its first
//! query and new clusters run at SNAPSHOT isolation: a check made after the COPY would read a
//! snapshot older than another worker's commit. Before loading, and for a batch taken over from
//! a dead worker, the marker is looked up; a batch whose marker exists is never loaded again and
//! is settled from the marker's rows (`commit`).
//!
//! A COPY refused for bad data is rolled back; its error rows are found by file and start time,
//! the files to leave out are chosen (`exclude`) and the rest is loaded again at once, inside the
//! same attempt. Rows a COPY skipped under `MAXERROR` are read before the commit and committed
//! with the marker. Objects deleted or overwritten since they were listed are skipped on their
//! own before the COPY (`preflight`). With `merge_keys`, the COPY loads a staging table whose
//! rows then replace the target's rows with the same keys, in the same transaction (`merge`).
//!
//! Layout: `copy` (COPY rendering), `commit` (marker and error-row tables), `attempt` (one load
//! transaction), `exclude` (which bad files go), `columnar` (finding a bad Parquet or ORC file),
//! `client` (URL, TLS, timeouts), `auth` (the session's login: password, Secrets Manager or IAM
//! temporary credentials), `errors` (classification and system-view rows), `preflight` (HEAD of
//! each object), `merge` (staging-table upsert SQL), `hooks` (test-only pauses); the
//! copy_options rules are `crate::config::copy_options`.

mod attempt;
mod auth;
mod client;
mod columnar;
mod commit;
pub mod copy;
mod errors;
mod exclude;
mod hooks;
mod merge;
pub use crate::config::copy_options as options;
mod preflight;

use self::attempt::LoadFailure;
use self::client::{Connector, Session};
use self::commit::{Key, Tables};
use self::copy::CopySpec;
use self::errors::{Class, RedshiftError};
use self::hooks::{Hooks, Point};
use self::merge::MergeSpec;
use super::{
    Attempt, Destination, DestinationError, FailureKind, GiveUp, Outcome, Resume, WriteOff,
};
use crate::artifacts;
use crate::codes;
use crate::config::{ErrorTable, PipelineConfig, RedshiftConfig};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use crate::source::s3::S3;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// Idle sessions kept for the next batch.
const IDLE_SESSIONS: usize = 4;

/// The objects of a batch left out of later attempts (bad files, objects gone since listing)
/// with the rows that say why; they are committed with the marker, or written off with the
/// batch when its budget ends.
#[derive(Debug, Default, Clone)]
struct Excluded {
    ids: HashSet<i64>,
    rows: Vec<LoadError>,
}

impl Excluded {
    /// The batch's objects that are still to be loaded.
    fn remaining(&self, batch: &ClaimedBatch) -> Vec<StagedObject> {
        batch
            .objects
            .iter()
            .filter(|o| !self.ids.contains(&o.id))
            .cloned()
            .collect()
    }

    fn add(&mut self, rows: Vec<LoadError>) {
        self.ids.extend(rows.iter().filter_map(|r| r.object_id));
        self.rows.extend(rows);
    }
}

/// Loads batches into one Redshift table.
pub struct RedshiftDestination {
    pipeline: String,
    installation: String,
    table: String,
    spec: CopySpec,
    merge: Option<MergeSpec>,
    tables: Tables,
    connector: Connector,
    s3: S3,
    bucket: String,
    manifest_prefix: String,
    idle: Mutex<Vec<Session>>,
    tables_ready: AtomicBool,
    error_table: ErrorTable,
    /// The view chosen for `error_table = "auto"`: 0 not yet, 1 STL, 2 SYS.
    detected_view: AtomicU8,
    hooks: Hooks,
    /// `JSON 'noshred'`: the startup check wants a table of one column.
    noshred: bool,
}

impl RedshiftDestination {
    /// Builds the destination from its configuration; `installation` is the control database's
    /// installation id, part of every marker's key.
    // The signature `destination::build` calls for every destination type.
    #[allow(clippy::new_ret_no_self)]
    pub async fn new(
        pipeline: &PipelineConfig,
        config: &RedshiftConfig,
        s3: S3,
        installation: &str,
    ) -> Result<Arc<dyn Destination>, String> {
        Ok(Arc::new(RedshiftDestination {
            pipeline: pipeline.name.clone(),
            installation: installation.to_string(),
            table: config.table.clone(),
            spec: CopySpec::from_config(config, pipeline.source.format)?,
            merge: MergeSpec::from_config(config)?,
            tables: Tables::new(&config.commit_schema)?,
            connector: Connector::new(config)?,
            s3,
            bucket: pipeline.source.bucket.clone(),
            manifest_prefix: config.manifest_prefix.clone(),
            idle: Mutex::new(Vec::new()),
            tables_ready: AtomicBool::new(false),
            error_table: config.error_table,
            detected_view: AtomicU8::new(0),
            hooks: Hooks::from_env(),
            noshred: options::is_noshred(&config.copy_options),
        }))
    }

    /// An open session with the marker tables in place: an idle one, or a new one.
    async fn session(&self) -> Result<Session, RedshiftError> {
        let reused = {
            let mut idle = self.idle.lock().expect("idle sessions lock");
            std::iter::from_fn(|| idle.pop()).find(|c| c.reusable())
        };
        let client = match reused {
            Some(c) => c,
            None => self.connector.connect().await?,
        };
        if !self.tables_ready.load(Ordering::Relaxed) {
            self.ensure_tables(&client).await?;
            self.tables_ready.store(true, Ordering::Relaxed);
        }
        if self.error_table == ErrorTable::Auto && self.detected_view.load(Ordering::Relaxed) == 0 {
            self.detect_view(&client).await;
        }
        Ok(client)
    }

    /// Creates the marker tables only when they are missing: an operator may have created them
    /// for a user without CREATE on the schema. A marker table without `installation_id` is an
    /// earlier stageload's, which this one cannot read safely.
    async fn ensure_tables(&self, client: &Session) -> Result<(), RedshiftError> {
        let rows = client
            .query("read marker tables", &self.tables.columns_query())
            .await?;
        let columns: Vec<(String, String)> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some((r.get(0)?.trim().to_string(), r.get(1)?.trim().to_string()))
                }
                _ => None,
            })
            .collect();
        let has = |t: &str| columns.iter().any(|(table, _)| table == t);
        if has("stageload_commits")
            && !columns
                .iter()
                .any(|(t, c)| t == "stageload_commits" && c == "installation_id")
        {
            return Err(RedshiftError::Answer {
                what: "marker table",
                detail: format!(
                    "{} has the layout of an earlier stageload (no installation_id column): rename it \
                     (ALTER TABLE {} RENAME TO stageload_commits_old) and stageload creates the new one",
                    self.tables.marker, self.tables.marker
                ),
            });
        }
        if !has("stageload_commits") {
            client
                .exec("create marker table", &self.tables.marker_ddl())
                .await?;
        }
        if !has("stageload_commit_errors") {
            client
                .exec("create marker error table", &self.tables.errors_ddl())
                .await?;
        }
        Ok(())
    }

    /// For `error_table = "auto"`: Serverless endpoints, and clusters whose STL views the
    /// loader's user may not read (Serverless refuses them), use `sys_load_error_detail`.
    async fn detect_view(&self, client: &Session) {
        let sys = if self.connector.is_serverless_endpoint() {
            true
        } else {
            match client
                .query(
                    "probe stl_load_errors",
                    "SELECT query FROM stl_load_errors LIMIT 1",
                )
                .await
            {
                Ok(_) => false,
                Err(e) if e.class() == Class::Permanent => {
                    info!(pipeline = %self.pipeline, error = %e, "stl_load_errors cannot be read here (Redshift Serverless?): reading sys_load_error_detail");
                    true
                }
                Err(_) => return,
            }
        };
        self.detected_view
            .store(if sys { 2 } else { 1 }, Ordering::Relaxed);
    }

    /// With `error_table = "auto"`, a refused STL view means Serverless: remember to read
    /// `sys_load_error_detail` instead. True when the caller should read it now.
    fn fall_back_to_sys(&self, e: &RedshiftError) -> bool {
        let refused = e.class() == Class::Permanent && e.to_string().contains("stl_load_errors");
        if self.error_table != ErrorTable::Auto
            || !refused
            || self.error_view() != ErrorTable::StlLoadErrors
        {
            return false;
        }
        info!(pipeline = %self.pipeline, error = %e, "stl_load_errors cannot be read here (Redshift Serverless?): reading sys_load_error_detail");
        self.detected_view.store(2, Ordering::Relaxed);
        true
    }

    /// The view load errors are read from.
    fn error_view(&self) -> ErrorTable {
        match (self.error_table, self.detected_view.load(Ordering::Relaxed)) {
            (ErrorTable::Auto, 2) => ErrorTable::SysLoadErrorDetail,
            (ErrorTable::Auto, _) => ErrorTable::StlLoadErrors,
            (t, _) => t,
        }
    }

    /// Keeps a session whose last statement ended cleanly.
    fn keep(&self, client: Session) {
        let mut idle = self.idle.lock().expect("idle sessions lock");
        if idle.len() < IDLE_SESSIONS && client.reusable() {
            idle.push(client);
        }
    }

    fn key(&self, batch: &ClaimedBatch) -> Key {
        Key {
            installation: self.installation.clone(),
            pipeline: self.pipeline.clone(),
            batch_id: batch.id,
            digest: commit::digest(&batch.objects),
        }
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

    /// The committed batch's report, rebuilt from its marker, or None when it has none.
    async fn committed(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        key: &Key,
    ) -> Result<Option<Attempt>, RedshiftError> {
        let marker = client
            .query("marker check", &key.select_marker(&self.tables))
            .await?;
        let Some(rows_loaded) = marker.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                r.get(0)
                    .and_then(|v| v.trim().parse::<i64>().ok())
                    .unwrap_or(0),
            ),
            _ => None,
        }) else {
            return Ok(None);
        };
        let errors = client
            .query("read marker error rows", &key.select_errors(&self.tables))
            .await?;
        let mut report = Attempt::delivered(rows_loaded.max(0) as u64);
        for (excluded, mut row) in commit::parse_errors(&errors) {
            row.object_id = attempt::named_object(&batch.objects, &row.filename);
            if excluded {
                report.skipped_objects.extend(row.object_id);
            }
            report.rejected.push(row);
        }
        report.skipped_objects.sort_unstable();
        report.skipped_objects.dedup();
        Ok(Some(report))
    }
}

/// A failed attempt that keeps what earlier rounds of this attempt found, for the next one.
fn failed(kind: FailureKind, error: String, excluded: &Excluded) -> Attempt {
    let mut report = Attempt::failed(kind, error);
    if let Outcome::Failed { resume, .. } = &mut report.outcome {
        *resume = (!excluded.ids.is_empty()).then(|| Resume(Box::new(excluded.clone())));
    }
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

    async fn check(&self) -> Result<(), DestinationError> {
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
            DestinationError::new(e.class().kind(), format!("{prefix}: {hint}: {e}"))
        })?;
        client
            .exec("select 1", "SELECT 1")
            .await
            .map_err(|e| DestinationError::new(e.class().kind(), format!("{prefix}: {e}")))?;
        if self.noshred && self.spec.columns.is_empty() {
            // A table the user cannot see counts 0: the COPY says why.
            let sql = options::column_count_query(&self.spec.table);
            let n = client
                .query("count table columns", &sql)
                .await
                .map_err(|e| DestinationError::new(e.class().kind(), format!("{prefix}: {e}")))?
                .iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get(0).and_then(|v| v.trim().parse::<i64>().ok())
                    }
                    _ => None,
                })
                .unwrap_or(0);
            if n > 1 {
                return Err(DestinationError::needs_operator(format!(
                    "{prefix}: JSON 'noshred' loads each document into one SUPER column, but {} has {n} columns: name that column in columns, or load a table of one column",
                    self.table
                )));
            }
        }
        self.keep(client);
        Ok(())
    }

    async fn recover(&self, batch: &ClaimedBatch) -> Result<Option<Attempt>, DestinationError> {
        let typed = |e: RedshiftError| DestinationError::new(e.class().kind(), e.to_string());
        let client = self.session().await.map_err(typed)?;
        let found = self
            .committed(&client, batch, &self.key(batch))
            .await
            .map_err(typed)?;
        self.keep(client);
        Ok(found)
    }

    async fn deliver(
        &self,
        batch: &ClaimedBatch,
        _attempt: u32,
        resume: Option<Resume>,
    ) -> Attempt {
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
            if let Some(url) = &manifest {
                let put = self
                    .s3
                    .put(
                        &self.bucket,
                        &self.manifest_key(batch),
                        artifacts::manifest(&objects),
                        "application/json",
                    )
                    .await;
                if let Err(e) = put {
                    let msg = format!("write manifest {url}: {e}");
                    return failed(FailureKind::Transient, msg, &excluded);
                }
                self.hooks
                    .pause(Point::BeforeCopy, pipeline, batch.id)
                    .await;
            }
            let job = attempt::Job {
                batch,
                key: &key,
                objects: &objects,
                manifest: manifest.as_deref(),
                excluded: &excluded.rows,
            };
            match self.load(&client, &job).await {
                Ok(loaded) => {
                    info!(pipeline, batch_id = batch.id, table = %self.table, rows = loaded.rows, rejected = loaded.rejected.len(), objects = objects.len(), excluded = excluded.ids.len(), "batch committed");
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
                Err(LoadFailure::Failed(e)) => {
                    let kind = e.class().kind();
                    self.keep(client);
                    return failed(kind, e.to_string(), &excluded);
                }
            }
        }
    }

    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        _attempts: u32,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        let Some(excluded) = resume.and_then(|r| r.0.downcast::<Excluded>().ok()) else {
            return GiveUp::default();
        };
        // The files left out keep their own reasons; every other object gets the budget's.
        for row in excluded.rows.iter().cloned() {
            out.row(row).await;
        }
        for o in excluded.remaining(batch) {
            out.row(LoadError {
                object_id: Some(o.id),
                filename: o.url(),
                err_code: codes::BUDGET_EXHAUSTED,
                err_reason: reason.to_string(),
                ..LoadError::default()
            })
            .await;
        }
        GiveUp::default()
    }
}
