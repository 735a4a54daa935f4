//! What went wrong with a Redshift statement, and what to do about it: SQLSTATE classification
//! into transient, needs-an-operator and bad-data failures (the rows of bad data are read by
//! `failed`).

use crate::destination::FailureKind;
use tokio_postgres::error::SqlState;

/// A failed Redshift statement or connection, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum RedshiftError {
    /// Could not connect or authenticate.
    #[error("connect to {target}: {}", describe(source))]
    Connect {
        /// Host, port and database (no password).
        target: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No user name and password could be had for a new session (Secrets Manager, IAM).
    #[error("log in to {target}: {source}")]
    Login {
        /// Host, port and database.
        target: String,
        /// What failed.
        #[source]
        source: super::auth::AuthError,
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
    /// A statement had no answer within `statement_timeout_s`; its backend was terminated.
    #[error("{what}: no answer within {seconds}s (statement timeout, statement_timeout_s); the session's backend is terminated")]
    StatementTimeout {
        /// Which step.
        what: &'static str,
        /// The limit.
        seconds: u64,
    },
    /// A batch's manifest could not be read back from S3.
    #[error("read manifest {url}: {detail}")]
    Manifest {
        /// Its `s3://` URL.
        url: String,
        /// What failed.
        detail: String,
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
            Class::Permanent | Class::BadData => FailureKind::NeedsOperator,
        }
    }
}

impl RedshiftError {
    /// Classifies the failure.
    pub fn class(&self) -> Class {
        match self {
            RedshiftError::ConnectTimeout { .. }
            | RedshiftError::StatementTimeout { .. }
            | RedshiftError::Manifest { .. } => Class::Transient,
            RedshiftError::Answer { .. } => Class::Permanent,
            RedshiftError::Login { source, .. } => match source.transient() {
                true => Class::Transient,
                false => Class::Permanent,
            },
            // A refused certificate is a configuration problem (ca_file, sslmode,
            // tls_server_name), not an outage.
            RedshiftError::Connect { source, .. } if certificate_refused(source) => {
                Class::Permanent
            }
            RedshiftError::Connect { source, .. } | RedshiftError::Statement { source, .. } => {
                classify(source)
            }
        }
    }
}

/// Whether the TLS handshake failed because the server's certificate was refused.
pub fn certificate_refused(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return matches!(tls, rustls::Error::InvalidCertificate(_));
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return matches!(tls, rustls::Error::InvalidCertificate(_));
            }
        }
        cause = c.source();
    }
    false
}

/// Classifies a driver error by SQLSTATE, and Redshift's XX000 errors by their text.
pub fn classify(e: &tokio_postgres::Error) -> Class {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: refused, reset, closed, timed out.
        return Class::Transient;
    };
    classify_db(db.code(), db.message(), db.detail().unwrap_or(""))
}

/// The rule behind [`classify`], on a code, message and detail.
pub fn classify_db(code: &SqlState, message: &str, detail: &str) -> Class {
    let c = code.code();
    if c == SqlState::INTERNAL_ERROR.code() {
        let m = message.to_ascii_lowercase();
        let d = detail.to_ascii_lowercase();
        // "Load into table 'x' failed.  Check 'stl_load_errors' system table for details." on
        // provisioned clusters; Serverless names 'sys_load_error_detail' instead.
        if m.starts_with("load into table") && m.contains("failed") {
            return Class::BadData;
        }
        // Redshift's error 1023 arrives as XX000 with message "1023" and the text in DETAIL:
        // "Serializable isolation violation on table - ..." (docs: "Fixing serializable
        // isolation errors", https://docs.aws.amazon.com/redshift/latest/dg/c_serial_isolation.html).
        if m.trim() == "1023"
            || m.contains("serializable isolation violation")
            || d.contains("serializable isolation violation")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_sort_into_classes() {
        let t = |c: &str, m: &str| classify_db(&SqlState::from_code(c), m, "");
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
            classify_db(
                &SqlState::from_code("XX000"),
                "1023",
                "Serializable isolation violation on table - 100134, transactions forming the cycle are: 1, 2 (pid:3)"
            ),
            Class::Transient
        );
        assert_eq!(
            t(
                "XX000",
                "Load into table 'clicks' failed.  Check 'sys_load_error_detail' system table for details."
            ),
            Class::BadData
        );
        assert_eq!(
            t("XX000", "Problem reading manifest file - no such key"),
            Class::Permanent
        );
    }
}
