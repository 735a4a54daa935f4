//! The rows of a COPY refused for bad data: which system view holds them (`stl_load_errors`,
//! or `sys_load_error_detail` on Serverless, chosen by `error_table`), the query that finds a
//! failed COPY's rows, and those rows turned into `load_errors` rows.

use super::client::Session;
use super::retry::{Class, RedshiftError};
use super::RedshiftDestination;
use crate::config::ErrorTable;
use crate::model::LoadError;
use std::sync::atomic::Ordering;
use tokio_postgres::SimpleQueryMessage;
use tracing::info;

/// The columns read from `stl_load_errors`, in this order.
pub const STL_COLUMNS: &str = "query, filename, line_number, colname, type, col_length, \
     position, raw_line, raw_field_value, err_code, err_reason, is_partial, start_offset";

/// The same columns from `sys_load_error_detail` (https://docs.aws.amazon.com/redshift/latest/dg/SYS_LOAD_ERROR_DETAIL.html), which has no raw line,
/// raw field value or split offsets: those come back empty.
pub const SYS_COLUMNS: &str = "query_id, file_name, line_number, column_name, column_type, \
     column_length, position, '', '', error_code, error_message, 0, 0";

/// The rows of the COPY that started at or after `since` (the cluster's `getdate()` taken just
/// before it) for these files. Neither `pg_last_copy_id()` (not updated when the COPY's
/// transaction rolls back) nor `sys_load_error_detail.query_id` (not the STL query id) can find
/// a failed COPY's rows, so they are found by file and time; the caller keeps the latest COPY's.
/// Names Redshift cut at 256 characters are matched by the caller.
pub fn load_errors_query(table: ErrorTable, files: &[String], since: &str) -> String {
    let names = files
        .iter()
        .map(|f| super::copy::quote_literal(f))
        .collect::<Vec<_>>()
        .join(", ");
    let since = super::copy::quote_literal(since);
    match table {
        ErrorTable::SysLoadErrorDetail => format!(
            "SELECT {SYS_COLUMNS} FROM sys_load_error_detail WHERE start_time >= {since} \
             AND (trim(file_name) IN ({names}) OR char_length(trim(file_name)) >= 255) \
             ORDER BY query_id, file_name, line_number"
        ),
        ErrorTable::StlLoadErrors | ErrorTable::Auto => format!(
            "SELECT {STL_COLUMNS} FROM stl_load_errors WHERE starttime >= {since} \
             AND (trim(filename) IN ({names}) OR char_length(trim(filename)) >= 255) \
             ORDER BY query, filename, line_number"
        ),
    }
}

/// Keeps the rows of the latest COPY among them (the one with the largest query id): rows of an
/// earlier COPY of the same files can share the second `getdate()` reports.
pub fn latest_copy(mut rows: Vec<LoadError>) -> Vec<LoadError> {
    let Some(last) = rows.iter().map(|r| r.query).max() else {
        return rows;
    };
    rows.retain(|r| r.query == last);
    rows
}

/// Rows of [`load_errors_query`] (simple-query text) as `load_errors` rows.
pub fn stl_rows(messages: &[SimpleQueryMessage]) -> Vec<LoadError> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(row_at(r, 0)),
            _ => None,
        })
        .collect()
}

/// One row whose columns from `first` on are [`STL_COLUMNS`]; Redshift's `char(n)` padding is
/// trimmed and raw values are cut to 1024 bytes.
pub fn row_at(r: &tokio_postgres::SimpleQueryRow, first: usize) -> LoadError {
    let text = |i: usize| r.get(first + i).unwrap_or("").trim_end().to_string();
    let int = |i: usize| r.get(first + i).and_then(|v| v.trim().parse::<i64>().ok());
    LoadError {
        query: int(0).unwrap_or(0),
        filename: text(1).trim().to_string(),
        line_number: int(2).unwrap_or(-1),
        colname: text(3).trim().to_string(),
        type_: text(4).trim().to_string(),
        col_length: text(5).trim().to_string(),
        position: int(6).unwrap_or(0) as i32,
        raw_line: crate::model::cut_raw(text(7).as_bytes()),
        raw_field_value: crate::model::cut_raw(text(8).as_bytes()),
        err_code: int(9).unwrap_or(0) as i32,
        err_reason: text(10).trim().to_string(),
        is_partial: int(11).unwrap_or(0) as i32,
        start_offset: int(12).unwrap_or(0),
        ..LoadError::default()
    }
}

impl RedshiftDestination {
    /// For `error_table = "auto"`: Serverless endpoints, and clusters whose STL views the
    /// loader's user may not read (Serverless refuses them), use `sys_load_error_detail`.
    pub(super) async fn detect_view(&self, client: &Session) {
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
    pub(super) fn fall_back_to_sys(&self, e: &RedshiftError) -> bool {
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
    pub(super) fn error_view(&self) -> ErrorTable {
        match (self.error_table, self.detected_view.load(Ordering::Relaxed)) {
            (ErrorTable::Auto, 2) => ErrorTable::SysLoadErrorDetail,
            (ErrorTable::Auto, _) => ErrorTable::StlLoadErrors,
            (t, _) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_views_are_read_by_file_and_start_time() {
        let files = vec!["s3://b/a.json".to_string(), "s3://b/it's".to_string()];
        let stl = load_errors_query(ErrorTable::StlLoadErrors, &files, "2026-01-02 03:04:05");
        assert!(
            stl.contains("FROM stl_load_errors WHERE starttime >= '2026-01-02 03:04:05'"),
            "{stl}"
        );
        assert!(
            stl.contains("IN ('s3://b/a.json', 's3://b/it''s')"),
            "{stl}"
        );
        let sys = load_errors_query(ErrorTable::SysLoadErrorDetail, &files, "t");
        assert!(
            sys.contains("FROM sys_load_error_detail WHERE start_time >= 't'"),
            "{sys}"
        );
        let count = |c: &str| c.split(", ").count();
        assert_eq!(count(STL_COLUMNS), count(SYS_COLUMNS));
    }

    #[test]
    fn only_the_latest_copy_is_kept() {
        let row = |query| LoadError {
            query,
            ..LoadError::default()
        };
        let kept = latest_copy(vec![row(5), row(9), row(9), row(7)]);
        assert_eq!(kept.len(), 2);
        assert!(kept.iter().all(|r| r.query == 9));
        assert!(latest_copy(vec![]).is_empty());
    }
}
