//! What went wrong with a Redshift statement: SQLSTATE classification into transient,
//! permanent and bad-data failures, and `stl_load_errors` (or `sys_load_error_detail`) rows
//! turned into `load_errors` rows.

use crate::config::ErrorTable;
use crate::destination::FailureKind;
use crate::model::LoadError;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

/// A failed Redshift statement or connection, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    /// Could not connect or authenticate.
    #[error("connect to {target}: {source}")]
    Connect {
        /// Host, port and database (no password).
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Connecting took longer than `connect_timeout_s`.
    #[error("connect to {target}: no answer within {seconds}s")]
    ConnectTimeout {
        /// Host, port and database.
        target: String,
        /// The timeout.
        seconds: u64,
    },
    /// A statement failed.
    #[error("{what}: {}", describe(source))]
    Statement {
        /// Which step (`copy`, `commit`, `marker check`, ...).
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement had no answer within `statement_timeout_s`; it was cancelled.
    #[error("{what}: no answer within {seconds}s (statement_timeout_s); cancelled")]
    StatementTimeout {
        /// Which step.
        what: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// An answer did not have the expected shape.
    #[error("{what}: unexpected answer: {detail}")]
    Answer {
        /// Which step.
        what: &'static str,
        /// What was odd.
        detail: String,
    },
}

/// The server's message, detail and SQLSTATE when there is one; the driver's text otherwise.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
                s.push_str(&format!("; {d}"));
            }
            s
        }
        None => match std::error::Error::source(e) {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    }
}

/// How a Redshift failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Retry while budget remains.
    Transient,
    /// Retried until the budget ends; an operator may fix it.
    Permanent,
    /// COPY refused the data: read `stl_load_errors` for the bad files.
    BadData,
}

impl Class {
    /// The dispatcher's failure kind (bad data is handled before it gets there).
    pub fn kind(self) -> FailureKind {
        match self {
            Class::Transient => FailureKind::Transient,
            Class::Permanent | Class::BadData => FailureKind::Permanent,
        }
    }
}

impl RedshiftError {
    /// Classifies the failure.
    pub fn class(&self) -> Class {
        match self {
            RedshiftError::ConnectTimeout { .. } | RedshiftError::StatementTimeout { .. } => {
                Class::Transient
            }
            RedshiftError::Answer { .. } => Class::Permanent,
            RedshiftError::Connect { source, .. } | RedshiftError::Statement { source, .. } => {
                classify(source)
            }
        }
    }
}

/// Classifies a driver error by SQLSTATE, and Redshift's XX000 errors by their text.
pub fn classify(e: &tokio_postgres::Error) -> Class {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: refused, reset, closed, timed out.
        return Class::Transient;
    };
    classify_db(db.code(), db.message())
}

/// The rule behind [`classify`], on a code and message.
pub fn classify_db(code: &SqlState, message: &str) -> Class {
    let c = code.code();
    if c == SqlState::INTERNAL_ERROR.code() {
        let m = message.to_ascii_lowercase();
        if m.contains("stl_load_errors") && m.starts_with("load into table") {
            return Class::BadData;
        }
        // Redshift's error 1023 comes as XX000 with this text.
        if m.contains("serializable isolation violation")
            || m.contains("cluster is restarting")
            || m.contains("connection")
        {
            return Class::Transient;
        }
        return Class::Permanent;
    }
    if c.starts_with("08")
        || c == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || c == SqlState::T_R_DEADLOCK_DETECTED.code()
        || c == SqlState::ADMIN_SHUTDOWN.code()
        || c == SqlState::CRASH_SHUTDOWN.code()
        || c == SqlState::CANNOT_CONNECT_NOW.code()
        || c == SqlState::TOO_MANY_CONNECTIONS.code()
        || c.starts_with("53")
        || c == SqlState::LOCK_NOT_AVAILABLE.code()
        || c == SqlState::QUERY_CANCELED.code()
    {
        return Class::Transient;
    }
    // 42P01 missing table, 28P01/28000 credentials, 42501 permission, 42703 column,
    // 42601 syntax, 3D000 database: someone has to fix something.
    Class::Permanent
}

/// The columns read from `stl_load_errors`, in this order.
pub const STL_COLUMNS: &str = "query, filename, line_number, colname, type, col_length, \
     position, raw_line, raw_field_value, err_code, err_reason, is_partial, start_offset";

/// The same columns from `sys_load_error_detail` (protocols.md 5.14), which has no raw line,
/// raw field value or split offsets: those come back empty.
pub const SYS_COLUMNS: &str = "query_id, file_name, line_number, column_name, column_type, \
     column_length, position, '', '', error_code, error_message, 0, 0";

/// The query for one COPY's rows; `copy_query` is a query id or `pg_last_copy_id()`, which
/// AWS documents as the join key for both views.
pub fn load_errors_query(table: ErrorTable, copy_query: &str) -> String {
    match table {
        ErrorTable::StlLoadErrors => format!(
            "SELECT {STL_COLUMNS} FROM stl_load_errors WHERE query = {copy_query} \
             ORDER BY filename, line_number"
        ),
        ErrorTable::SysLoadErrorDetail => format!(
            "SELECT {SYS_COLUMNS} FROM sys_load_error_detail WHERE query_id = {copy_query} \
             ORDER BY file_name, line_number"
        ),
    }
}

/// Rows of [`load_errors_query`] (simple-query text) as `load_errors` rows; Redshift's `char(n)`
/// padding is trimmed.
pub fn stl_rows(messages: &[SimpleQueryMessage]) -> Vec<LoadError> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .map(|r| {
            let text = |i: usize| r.get(i).unwrap_or("").trim_end().to_string();
            let int = |i: usize| r.get(i).and_then(|v| v.trim().parse::<i64>().ok());
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_views_are_read_in_the_same_column_order() {
        let stl = load_errors_query(ErrorTable::StlLoadErrors, "pg_last_copy_id()");
        assert!(
            stl.contains("FROM stl_load_errors WHERE query = pg_last_copy_id()"),
            "{stl}"
        );
        let sys = load_errors_query(ErrorTable::SysLoadErrorDetail, "42");
        assert!(
            sys.contains("FROM sys_load_error_detail WHERE query_id = 42"),
            "{sys}"
        );
        let count = |c: &str| c.split(", ").count();
        assert_eq!(count(STL_COLUMNS), count(SYS_COLUMNS));
    }

    #[test]
    fn sqlstates_sort_into_classes() {
        let t = |c: &str, m: &str| classify_db(&SqlState::from_code(c), m);
        for c in [
            "40001", "57P01", "53300", "08006", "08001", "40P01", "57014",
        ] {
            assert_eq!(t(c, "x"), Class::Transient, "{c}");
        }
        for c in [
            "42P01", "28P01", "28000", "42501", "42703", "42601", "3D000",
        ] {
            assert_eq!(t(c, "x"), Class::Permanent, "{c}");
        }
        assert_eq!(
            t(
                "XX000",
                "Load into table 'clicks' failed.  Check 'stl_load_errors' system table for details."
            ),
            Class::BadData
        );
        assert_eq!(
            t("XX000", "1023 Serializable isolation violation on table"),
            Class::Transient
        );
        assert_eq!(
            t("XX000", "Problem reading manifest file - no such key"),
            Class::Permanent
        );
    }
}
