//! The commit marker: `stageload_commits` (one row per committed batch) and
//! `stageload_commit_errors` (the rows its settlement needs), written in the batch's own COPY
//! transaction, so whatever committed the rows also committed how to settle them.
//!
//! A marker is keyed by the control database's installation id, the pipeline and the batch id,
//! and carries a digest of the batch's objects: a recreated control database (batch ids start
//! at 1 again) or one restored from a backup never takes another batch's marker for its own.
//! The error rows hold the files left out of the COPY (and why) and the rows a COPY skipped
//! under `MAXERROR`, so a takeover after a crash between COMMIT and settling rebuilds the whole
//! settlement. Redshift does not enforce primary keys; the marker check runs under `LOCK`.

use super::client::Session;
use super::copy::{quote_ident, quote_literal};
use super::retry::RedshiftError;
use super::RedshiftDestination;
use crate::destination::Attempt;
use crate::model::ClaimedBatch;
use crate::model::{LoadError, StagedObject};
use tokio_postgres::SimpleQueryMessage;

/// The two marker tables, quoted, and the names to look them up by in the catalog.
#[derive(Debug, Clone)]
pub struct Tables {
    /// `"schema"."stageload_commits"`.
    pub marker: String,
    /// `"schema"."stageload_commit_errors"`.
    pub errors: String,
    /// `"schema"."stageload_loaded_objects"`: every object a load committed (`held`).
    pub loaded: String,
    /// The schema, quoted.
    pub schema: String,
    /// The schema as the catalog spells it (folded like the quoted identifier).
    pub schema_name: String,
}

impl Tables {
    /// The tables in `schema`.
    pub fn new(schema: &str) -> Result<Tables, String> {
        let quoted = quote_ident(schema)?;
        let schema_name = quoted[1..quoted.len() - 1].replace("\"\"", "\"");
        Ok(Tables {
            marker: format!("{quoted}.\"stageload_commits\""),
            errors: format!("{quoted}.\"stageload_commit_errors\""),
            loaded: format!("{quoted}.\"stageload_loaded_objects\""),
            schema: quoted.clone(),
            schema_name,
        })
    }

    /// Lists the marker tables' columns, to tell missing tables from an older layout without
    /// issuing `CREATE` (the loader's user may lack CREATE on the schema).
    pub fn columns_query(&self) -> String {
        format!(
            "SELECT table_name, column_name FROM information_schema.columns \
             WHERE table_schema = {} AND table_name IN ('stageload_commits', 'stageload_commit_errors', \
             'stageload_loaded_objects')",
            quote_literal(&self.schema_name)
        )
    }

    /// `CREATE TABLE` of the marker table. VARCHAR lengths count bytes in Redshift: an S3 URL
    /// is up to 5 + 63 + 1 + 1024 bytes, a manifest URL longer still with its prefix.
    pub fn marker_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (installation_id varchar(64) NOT NULL, \
             pipeline varchar(256) NOT NULL, batch_id bigint NOT NULL, batch_digest varchar(64) NOT NULL, \
             manifest varchar(4096), objects integer, objects_excluded integer, rows_loaded bigint, \
             rows_rejected bigint, copy_query bigint, committed_at timestamp, \
             PRIMARY KEY (installation_id, pipeline, batch_id, batch_digest))",
            self.marker
        )
    }

    /// `CREATE TABLE` of the error rows.
    pub fn errors_ddl(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (installation_id varchar(64) NOT NULL, \
             pipeline varchar(256) NOT NULL, batch_id bigint NOT NULL, excluded boolean NOT NULL, \
             filename varchar(4096) NOT NULL, line_number bigint, colname varchar(512), \
             type varchar(64), col_length varchar(64), position integer, raw_line varchar(4096), \
             raw_field_value varchar(4096), err_code integer, err_reason varchar(4096), \
             query bigint, is_partial integer, start_offset bigint)",
            self.errors
        )
    }
}

/// Identifies one batch's marker.
#[derive(Debug, Clone)]
pub struct Key {
    /// The control database's installation id.
    pub installation: String,
    /// Pipeline.
    pub pipeline: String,
    /// Batch id.
    pub batch_id: i64,
    /// [`digest`] of the batch's objects.
    pub digest: String,
    /// The `s3://` URL of the batch's manifest (the hour of its first attempt is in it).
    pub manifest: String,
    /// The batch's first attempt: a marker an earlier stageload committed before it is another
    /// batch's.
    pub first_attempt: chrono::DateTime<chrono::Utc>,
}

impl Key {
    fn filter(&self) -> String {
        format!(
            "installation_id = {} AND pipeline = {} AND batch_id = {}",
            quote_literal(&self.installation),
            quote_literal(&self.pipeline),
            self.batch_id
        )
    }

    /// Finds the batch's marker: the rows loaded, the installation id and the objects loaded,
    /// or nothing. A marker with another digest is another batch's (an earlier control
    /// database's) and does not match. A marker an earlier stageload committed (installation id
    /// empty, see `upgrade`) matches on its manifest URL and a commit after the batch's first
    /// attempt.
    pub fn select_marker(&self, tables: &Tables) -> String {
        format!(
            "SELECT rows_loaded, installation_id, objects FROM {} WHERE pipeline = {} AND batch_id = {} \
             AND ((installation_id = {} AND batch_digest = {}) OR {})",
            tables.marker,
            quote_literal(&self.pipeline),
            self.batch_id,
            quote_literal(&self.installation),
            quote_literal(&self.digest),
            super::upgrade::legacy_match(self),
        )
    }

    /// The batch's error rows, excluded files first.
    pub fn select_errors(&self, tables: &Tables) -> String {
        format!(
            "SELECT excluded, {} FROM {} WHERE {} ORDER BY excluded DESC, filename, line_number",
            super::failed::STL_COLUMNS,
            tables.errors,
            self.filter()
        )
    }
}

/// A digest of the batch's objects (URL and ETag, in order of URL): what the marker commits to.
pub fn digest(objects: &[StagedObject]) -> String {
    format!("{:032x}", crate::model::objects_digest(objects))
}

/// What a committed load writes beside its rows.
#[derive(Debug, Clone)]
pub struct Marker<'a> {
    /// The key.
    pub key: &'a Key,
    /// `s3://` URL of the manifest loaded.
    pub manifest: &'a str,
    /// Objects in the manifest.
    pub objects: usize,
    /// Objects left out (bad files, missing objects).
    pub excluded: usize,
    /// Rows loaded.
    pub rows_loaded: i64,
    /// Rows skipped under MAXERROR.
    pub rows_rejected: i64,
    /// The COPY's query id, when known (0 otherwise).
    pub copy_query: i64,
}

impl Marker<'_> {
    /// The INSERT of the marker row (`committed_at` is the cluster's clock).
    pub fn insert(&self, tables: &Tables) -> String {
        let k = self.key;
        format!(
            "INSERT INTO {} (installation_id, pipeline, batch_id, batch_digest, manifest, objects, \
             objects_excluded, rows_loaded, rows_rejected, copy_query, committed_at) VALUES \
             ({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, getdate())",
            tables.marker,
            quote_literal(&k.installation),
            quote_literal(&k.pipeline),
            k.batch_id,
            quote_literal(&k.digest),
            quote_literal(self.manifest),
            self.objects,
            self.excluded,
            self.rows_loaded,
            self.rows_rejected,
            self.copy_query,
        )
    }
}

/// Rows per INSERT statement for the error rows.
const ROWS_PER_INSERT: usize = 200;

/// The INSERTs of a batch's error rows: `excluded` ones name files left out of the COPY.
pub fn insert_errors(tables: &Tables, key: &Key, rows: &[(bool, &LoadError)]) -> Vec<String> {
    rows.chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let values: Vec<String> = chunk
                .iter()
                .map(|(excluded, r)| {
                    format!(
                        "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                        quote_literal(&key.installation),
                        quote_literal(&key.pipeline),
                        key.batch_id,
                        excluded,
                        text(&r.filename),
                        r.line_number,
                        text(&r.colname),
                        text(&r.type_),
                        text(&r.col_length),
                        r.position,
                        text(&r.raw_line),
                        text(&r.raw_field_value),
                        r.err_code,
                        text(&r.err_reason),
                        r.query,
                        r.is_partial,
                        r.start_offset,
                    )
                })
                .collect();
            format!(
                "INSERT INTO {} (installation_id, pipeline, batch_id, excluded, filename, line_number, \
                 colname, type, col_length, position, raw_line, raw_field_value, err_code, err_reason, \
                 query, is_partial, start_offset) VALUES {}",
                tables.errors,
                values.join(", ")
            )
        })
        .collect()
}

/// A literal cut to 4096 bytes (the columns' width) at a character boundary; NUL dropped.
fn text(s: &str) -> String {
    let mut end = s.len().min(4096);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    quote_literal(&s[..end].replace('\0', ""))
}

/// Error rows read back by [`Key::select_errors`]: (excluded, row).
pub fn parse_errors(messages: &[SimpleQueryMessage]) -> Vec<(bool, LoadError)> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some((
                matches!(r.get(0), Some("t" | "true" | "1")),
                super::failed::row_at(r, 1),
            )),
            _ => None,
        })
        .collect()
}

impl RedshiftDestination {
    /// Creates the marker tables only when they are missing: an operator may have created them
    /// for a user without CREATE on the schema. A marker table without `installation_id` is an
    /// earlier stageload's: it is upgraded in place, its rows kept (`upgrade`).
    pub(super) async fn ensure_tables(&self, client: &Session) -> Result<(), RedshiftError> {
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
            self.upgrade_marker_table(client).await?;
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
        if !has("stageload_loaded_objects") {
            client
                .exec("create loaded objects table", &self.tables.loaded_ddl())
                .await?;
        }
        Ok(())
    }

    /// The batch's marker key.
    pub(super) fn key(&self, batch: &ClaimedBatch) -> Key {
        Key {
            installation: self.installation.clone(),
            pipeline: self.pipeline.clone(),
            batch_id: batch.id,
            digest: digest(&batch.objects),
            manifest: format!("s3://{}/{}", self.bucket, self.manifest_key(batch)),
            first_attempt: batch.first_attempt_at,
        }
    }

    /// The committed batch's report, rebuilt from its marker, or None when it has none.
    pub(super) async fn committed(
        &self,
        client: &Session,
        batch: &ClaimedBatch,
        key: &Key,
    ) -> Result<Option<Attempt>, RedshiftError> {
        let marker = client
            .query("marker check", &key.select_marker(&self.tables))
            .await?;
        let int = |r: &tokio_postgres::SimpleQueryRow, i| {
            r.get(i)
                .and_then(|v: &str| v.trim().parse::<i64>().ok())
                .unwrap_or(0)
        };
        let Some((rows_loaded, legacy, objects)) = marker.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                int(r, 0),
                r.get(1).is_none_or(|v| v.trim().is_empty()),
                int(r, 2),
            )),
            _ => None,
        }) else {
            return Ok(None);
        };
        if legacy {
            return self
                .legacy_report(batch, key, rows_loaded, objects)
                .await
                .map(Some);
        }
        let errors = client
            .query("read marker error rows", &key.select_errors(&self.tables))
            .await?;
        let mut report = Attempt::delivered(rows_loaded.max(0) as u64);
        for (excluded, mut row) in parse_errors(&errors) {
            row.object_id = super::transaction::named_object(&batch.objects, &row.filename);
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn object(key: &str, etag: &str) -> StagedObject {
        StagedObject {
            id: 1,
            bucket: "b".into(),
            key: key.into(),
            etag: etag.into(),
            size: 1,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn digest_depends_on_the_objects_not_their_order() {
        let a = object("k/1", "e1");
        let b = object("k/2", "e2");
        assert_eq!(
            digest(&[a.clone(), b.clone()]),
            digest(&[b.clone(), a.clone()])
        );
        assert_ne!(digest(std::slice::from_ref(&a)), digest(&[a.clone(), b]));
        assert_ne!(digest(&[a]), digest(&[object("k/1", "e9")]));
    }

    #[test]
    fn statements_quote_every_value() {
        let t = Tables::new("Audit").unwrap();
        assert_eq!(t.marker, "\"audit\".\"stageload_commits\"");
        assert_eq!(t.schema_name, "audit");
        assert!(t.columns_query().contains("table_schema = 'audit'"));
        let key = Key {
            installation: "u-1".into(),
            pipeline: "p'q".into(),
            batch_id: 7,
            digest: "d".into(),
            manifest: "s3://b/m/p-7.manifest".into(),
            first_attempt: chrono::DateTime::from_timestamp(1_764_300_000, 0).unwrap(),
        };
        assert_eq!(
            key.select_marker(&t),
            "SELECT rows_loaded, installation_id, objects FROM \"audit\".\"stageload_commits\" \
             WHERE pipeline = 'p''q' AND batch_id = 7 AND ((installation_id = 'u-1' AND batch_digest = 'd') \
             OR (installation_id = '' AND manifest = 's3://b/m/p-7.manifest' \
             AND committed_at >= '2025-11-28 03:19:00'))"
        );
        let m = Marker {
            key: &key,
            manifest: "s3://b/m's",
            objects: 2,
            excluded: 1,
            rows_loaded: 10,
            rows_rejected: 1,
            copy_query: 99,
        };
        assert!(m
            .insert(&t)
            .contains("('u-1', 'p''q', 7, 'd', 's3://b/m''s', 2, 1, 10, 1, 99, getdate())"));
        let row = LoadError {
            filename: "s3://b/x".into(),
            line_number: 3,
            raw_line: "it's\0".into(),
            err_code: 1207,
            ..LoadError::default()
        };
        let sql = insert_errors(&t, &key, &[(true, &row)]);
        assert_eq!(sql.len(), 1);
        assert!(
            sql[0].contains("'u-1', 'p''q', 7, true, 's3://b/x', 3,"),
            "{}",
            sql[0]
        );
        assert!(sql[0].contains("'it''s'"), "{}", sql[0]);
        let many: Vec<(bool, &LoadError)> = (0..450).map(|_| (false, &row)).collect();
        assert_eq!(insert_errors(&t, &key, &many).len(), 3);
    }

    #[test]
    fn long_text_is_cut_at_a_char_boundary() {
        let long = "é".repeat(3000);
        let lit = text(&long);
        assert!(lit.len() <= 4098 && lit.ends_with("é'"));
    }
}
