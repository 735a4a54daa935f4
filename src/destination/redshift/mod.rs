//! `type = "redshift"`: each batch becomes a manifest in S3 and one transaction on the cluster:
//! `BEGIN; LOCK; check marker; COPY ... MANIFEST; INSERT marker and error rows; COMMIT`.
//! The rows, the batch's marker and what its settlement needs commit together or not at all.
//!
//! The lock comes first because Redshift fixes a transaction's snapshot at its first query and
//! new clusters run at SNAPSHOT isolation: a check made after the COPY would read a snapshot
//! older than another worker's commit. What is locked is the target's own lock table (`lock`),
//! so pipelines loading different tables do not wait on each other. Before loading, and for a batch taken over from
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
//! Layout, in the files every destination has: `config.rs` (the `[pipeline.destination]`
//! table, compiled in the config layer as [`crate::config::destination::redshift`]),
//! `client` (URL, TLS, timeouts, idle sessions), `attempt` (one attempt: marker, preflight,
//! manifest, load, leave out bad files), `retry` (SQLSTATE classification), `state` (what an
//! attempt leaves the next), `give_up` (rows when the budget ends), `failed` (reading the
//! system view's rows of a refused COPY). Redshift's own: `transaction` (one load
//! transaction), `copy` (COPY rendering), `commit` (marker and error-row tables), `exclude`
//! (which bad files go), `columnar` (finding a bad Parquet or ORC file), `auth` (the session's
//! login: password, Secrets Manager or IAM temporary credentials), `preflight` (HEAD of each
//! object), `merge` (staging-table upsert SQL), `upgrade` (an earlier stageload's marker table), `held` (the objects
//! the warehouse holds), `lock` (what a load locks first), `hooks`
//! (test-only pauses); the copy_options
//! rules are `crate::config::copy_options`.

mod attempt;
mod auth;
mod client;
mod columnar;
mod commit;
mod copy;
mod exclude;
mod failed;
mod give_up;
mod held;
mod hooks;
mod lock;
mod merge;
use crate::config::copy_options as options;
mod preflight;
mod retry;
mod state;
mod transaction;
mod upgrade;

use self::client::{Connector, Session};
use self::commit::Tables;
use self::copy::CopySpec;
use self::hooks::Hooks;
use self::lock::LoadLock;
use self::merge::MergeSpec;
use self::retry::{Class, RedshiftError};
use super::{Attempt, Destination, DestinationError, GiveUp, Resume, WriteOff};
use crate::config::{ErrorTable, PipelineConfig, RedshiftConfig};
use crate::model::ClaimedBatch;
use crate::source::s3::S3;
use async_trait::async_trait;
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::{Arc, Mutex};

/// Loads batches into one Redshift table.
pub struct RedshiftDestination {
    pipeline: String,
    installation: String,
    table: String,
    spec: CopySpec,
    merge: Option<MergeSpec>,
    tables: Tables,
    /// What each load transaction locks first (`lock`).
    lock: LoadLock,
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
        let tables = Tables::new(&config.commit_schema)?;
        let lock = LoadLock::new(&tables, &config.table);
        Ok(Arc::new(RedshiftDestination {
            pipeline: pipeline.name.clone(),
            installation: installation.to_string(),
            table: config.table.clone(),
            spec: CopySpec::from_config(config, pipeline.source.format)?,
            merge: MergeSpec::from_config(config)?,
            tables,
            lock,
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
        self.attempt(batch, resume).await
    }

    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        _attempts: u32,
        resume: Option<Resume>,
        reason: &str,
        out: &mut WriteOff,
    ) -> GiveUp {
        self.write_off(batch, resume, reason, out).await
    }
}
