//! A marker table left by an earlier stageload (no `installation_id`, `batch_digest` or
//! `objects_excluded`; its key was the batch id alone) is upgraded in place, its rows kept, so
//! a batch that version committed but never settled is settled from its marker, not copied
//! again.
//!
//! The upgrade runs under the `LOCK` of the marker table (two daemons starting together upgrade
//! it once): the columns are added with `ALTER TABLE ... ADD COLUMN`, one per statement, the
//! NOT NULL ones with a non-null default as Redshift requires, and the old primary key on
//! `batch_id` is dropped (batch ids repeat across pipelines and installations, and Redshift's
//! planner trusts declared keys). The manifest column is widened to 4096 bytes first, outside
//! any transaction block, the only place Redshift alters a column's type
//! (https://docs.aws.amazon.com/redshift/latest/dg/r_ALTER_TABLE.html).
//!
//! The old rows get an empty installation id and digest. The destination cannot read the
//! control database, so they are matched when a batch is looked up, with the batch in hand: the
//! same pipeline and batch id, the same manifest URL (which holds the hour of the batch's first
//! attempt), and a commit no earlier than a minute before that first attempt. A recreated
//! control database's batch with a repeated id was first attempted after the old commit, and
//! a control database restored from a backup holds the very batch the marker was written for.

use super::client::Session;
use super::commit::Key;
use super::copy::quote_literal;
use super::retry::RedshiftError;
use super::RedshiftDestination;
use crate::codes;
use crate::destination::Attempt;
use crate::model::{ClaimedBatch, LoadError};
use std::collections::HashSet;
use tokio::io::AsyncReadExt;
use tokio_postgres::SimpleQueryMessage;
use tracing::{info, warn};

/// Clock difference between a daemon and the control database allowed for a legacy match.
const SKEW_S: i64 = 60;

/// The clause that matches an earlier stageload's marker for the batch `key` names.
pub fn legacy_match(key: &Key) -> String {
    let since = key.first_attempt - chrono::Duration::seconds(SKEW_S);
    format!(
        "(installation_id = '' AND manifest = {} AND committed_at >= '{}')",
        quote_literal(&key.manifest),
        since.format("%Y-%m-%d %H:%M:%S")
    )
}

fn rows(msgs: &[SimpleQueryMessage]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("").trim().to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

impl RedshiftDestination {
    /// Upgrades an earlier stageload's marker table in place (see the module docs).
    pub(super) async fn upgrade_marker_table(&self, client: &Session) -> Result<(), RedshiftError> {
        let m = &self.tables.marker;
        warn!(pipeline = %self.pipeline, table = %m, "marker table of an earlier stageload, upgrading it in place");
        client
            .exec(
                "widen marker manifest column",
                &format!("ALTER TABLE {m} ALTER COLUMN manifest TYPE varchar(4096)"),
            )
            .await?;
        client.exec("begin", "BEGIN").await?;
        let done = self.add_marker_columns(client).await;
        match done {
            Ok(()) => client.exec("commit", "COMMIT").await,
            Err(e) => {
                client.rollback().await;
                Err(e)
            }
        }
    }

    async fn add_marker_columns(&self, client: &Session) -> Result<(), RedshiftError> {
        let m = &self.tables.marker;
        client
            .exec("lock marker table", &format!("LOCK {m}"))
            .await?;
        let schema = quote_literal(&self.tables.schema_name);
        let columns = rows(
            &client
                .query(
                    "read marker columns",
                    &format!(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = {schema} \
                         AND table_name = 'stageload_commits'"
                    ),
                )
                .await?,
        );
        let has = |c: &str| columns.iter().any(|r| r.first().is_some_and(|v| v == c));
        if has("installation_id") {
            // Another daemon upgraded it while this one waited for the lock.
            return Ok(());
        }
        let keys = rows(
            &client
                .query(
                    "read marker keys",
                    &format!(
                        "SELECT constraint_name FROM information_schema.table_constraints \
                         WHERE table_schema = {schema} AND table_name = 'stageload_commits' \
                         AND constraint_type = 'PRIMARY KEY'"
                    ),
                )
                .await?,
        );
        for key in keys.iter().filter_map(|r| r.first()) {
            let name = super::copy::quote_ident(&format!("\"{}\"", key.replace('"', "\"\"")))
                .map_err(|detail| RedshiftError::Answer {
                    what: "marker table upgrade",
                    detail,
                })?;
            client
                .exec(
                    "drop old marker key",
                    &format!("ALTER TABLE {m} DROP CONSTRAINT {name}"),
                )
                .await?;
        }
        for (column, ddl) in [
            ("installation_id", "varchar(64) NOT NULL DEFAULT ''"),
            ("batch_digest", "varchar(64) NOT NULL DEFAULT ''"),
            ("objects_excluded", "integer"),
        ] {
            if !has(column) {
                client
                    .exec(
                        "add marker column",
                        &format!("ALTER TABLE {m} ADD COLUMN {column} {ddl}"),
                    )
                    .await?;
            }
        }
        info!(pipeline = %self.pipeline, table = %m, rows_kept = "all", "marker table upgraded in place");
        Ok(())
    }

    /// The report of a batch an earlier stageload committed: its rows, and the objects its
    /// manifest left out (that version kept no reason for them) skipped, each with a row.
    pub(super) async fn legacy_report(
        &self,
        batch: &ClaimedBatch,
        key: &Key,
        rows_loaded: i64,
        objects: i64,
    ) -> Result<Attempt, RedshiftError> {
        info!(pipeline = %self.pipeline, batch_id = batch.id, manifest = %key.manifest, "batch committed by an earlier stageload, settling it from its marker");
        let mut report = Attempt::delivered(rows_loaded.max(0) as u64);
        if objects >= batch.objects.len() as i64 {
            return Ok(report);
        }
        let loaded = self.manifest_urls(batch).await?;
        for o in batch.objects.iter().filter(|o| !loaded.contains(&o.url())) {
            report.skipped_objects.push(o.id);
            report.rejected.push(LoadError {
                object_id: Some(o.id),
                filename: o.url(),
                err_code: codes::BATCH_REJECTED,
                err_reason: "left out of the COPY by an earlier stageload, which kept no reason"
                    .into(),
                ..LoadError::default()
            });
        }
        Ok(report)
    }

    /// The file URLs of the batch's manifest in S3.
    async fn manifest_urls(&self, batch: &ClaimedBatch) -> Result<HashSet<String>, RedshiftError> {
        let key = self.manifest_key(batch);
        let unreadable = |detail: String| RedshiftError::Manifest {
            url: format!("s3://{}/{key}", self.bucket),
            detail,
        };
        let mut opened = self
            .s3
            .open(&self.bucket, &key, None)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let mut body = Vec::new();
        opened
            .body
            .read_to_end(&mut body)
            .await
            .map_err(|e| unreadable(e.to_string()))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| unreadable(e.to_string()))?;
        Ok(doc["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["url"].as_str().map(str::to_string))
            .collect())
    }
}
