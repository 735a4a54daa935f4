//! Recognising and parsing a Redshift `COPY <table> [(cols)] FROM 's3://...' <auth> [options]`
//! statement into a [`CopyStmt`]. Only the statement's shape is checked here; S3 and the table are
//! looked at later.

use crate::sqltok::{tokenize, Tok, TokKind};

/// Why a COPY statement was refused before anything ran.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    /// SQLSTATE to report.
    pub sqlstate: &'static str,
    /// Human message, in Redshift's wording where known.
    pub message: String,
    /// 1-based character position of the offending token, when there is one.
    pub position: Option<usize>,
}

/// How COPY is allowed to reach S3 (the emulator only checks the shape).
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// `IAM_ROLE default` or `IAM_ROLE 'arn:...'`.
    IamRole(String),
    /// `ACCESS_KEY_ID '..' SECRET_ACCESS_KEY '..' [SESSION_TOKEN '..']`.
    Keys,
    /// `CREDENTIALS 'aws_iam_role=...'` or `'aws_access_key_id=...;aws_secret_access_key=...'`.
    Credentials,
}

/// Input format.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Character-delimited text (default pipe).
    Text,
    /// RFC-4180 style CSV with the given quote byte.
    Csv {
        /// Quote character.
        quote: u8,
    },
    /// JSON records.
    Json(JsonMode),
    /// `FORMAT AS PARQUET`: columns by position, any error fails the COPY.
    Parquet,
    /// `FORMAT AS ORC` (parsed and checked, but not read by the emulator).
    Orc,
}

impl Format {
    /// `PARQUET` or `ORC` for the columnar formats.
    pub fn columnar(&self) -> Option<&'static str> {
        match self {
            Format::Parquet => Some("PARQUET"),
            Format::Orc => Some("ORC"),
            _ => None,
        }
    }
}

/// How JSON keys map to columns.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonMode {
    /// Keys equal lowercase column names.
    Auto,
    /// Keys match column names case-insensitively.
    AutoIgnoreCase,
    /// A JSONPaths file at this s3 URL.
    Paths(String),
    /// `'noshred'`: each document whole into the table's single SUPER column.
    Noshred,
}

/// Input compression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Compression {
    /// Plain bytes.
    None,
    /// gzip (several members allowed).
    Gzip,
    /// zstd.
    Zstd,
    /// bzip2.
    Bzip2,
}

/// A DATEFORMAT or TIMEFORMAT setting.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeSpec {
    /// The documented default (`YYYY-MM-DD` / `YYYY-MM-DD HH:MI:SS`).
    Default,
    /// `'auto'`.
    Auto,
    /// `'epochsecs'` (TIMEFORMAT only).
    EpochSecs,
    /// `'epochmillisecs'` (TIMEFORMAT only).
    EpochMillis,
    /// A Redshift datetime pattern such as `'MM/DD/YYYY HH24:MI:SS'`.
    Pattern(String),
}

/// A parsed Redshift COPY.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyStmt {
    /// Table as written, suitable for a `'...'::regclass` cast.
    pub table: String,
    /// Bare table name for messages (`Load into table 'x' failed`).
    pub table_name: String,
    /// Explicit column list, already case-folded.
    pub columns: Option<Vec<String>>,
    /// The `FROM` URL.
    pub from: String,
    /// Authorization given.
    pub auth: Auth,
    /// Input format.
    pub format: Format,
    /// Field delimiter for text/CSV.
    pub delimiter: u8,
    /// Lines skipped at the top of each file.
    pub ignore_header: u64,
    /// Input compression.
    pub compression: Compression,
    /// Bad records tolerated before the COPY fails.
    pub max_error: u64,
    /// TIMEFORMAT.
    pub time_format: TimeSpec,
    /// DATEFORMAT.
    pub date_format: TimeSpec,
    /// `NULL AS` string (text/CSV); default `\N`.
    pub null_as: String,
    /// EMPTYASNULL.
    pub empty_as_null: bool,
    /// BLANKSASNULL.
    pub blanks_as_null: bool,
    /// TRUNCATECOLUMNS.
    pub truncate_columns: bool,
    /// ACCEPTINVCHARS replacement character.
    pub accept_inv_chars: Option<char>,
    /// FILLRECORD.
    pub fill_record: bool,
    /// REGION.
    pub region: Option<String>,
    /// MANIFEST: `from` names a manifest file.
    pub manifest: bool,
    /// ESCAPE (text only): backslash escapes the next character.
    pub escape: bool,
    /// IGNOREBLANKLINES.
    pub ignore_blank_lines: bool,
    /// TRIMBLANKS.
    pub trim_blanks: bool,
}

/// True when `sql` (one statement, optional trailing `;`) is a COPY reading from S3, i.e. one the
/// emulator must run itself; everything else goes to PostgreSQL untouched.
pub fn is_redshift_copy(sql: &str) -> bool {
    let Ok(toks) = tokenize(sql) else {
        return false;
    };
    let toks = strip_trailing_semicolon(&toks);
    if toks.iter().any(|t| t.kind == TokKind::Punct(';')) {
        return false;
    }
    if !toks.first().is_some_and(|t| t.is_kw("copy")) {
        return false;
    }
    toks.windows(2).any(|w| {
        w[0].is_kw("from")
            && w[1].kind == TokKind::Str
            && w[1].text.to_ascii_lowercase().starts_with("s3://")
    })
}

fn strip_trailing_semicolon(toks: &[Tok]) -> &[Tok] {
    match toks.last() {
        Some(t) if t.kind == TokKind::Punct(';') => &toks[..toks.len() - 1],
        _ => toks,
    }
}

/// Parses a statement for which [`is_redshift_copy`] is true.
pub fn parse_copy(sql: &str) -> Result<CopyStmt, ParseError> {
    let toks = tokenize(sql).map_err(|pos| syntax_at(sql, pos, None))?;
    let toks = strip_trailing_semicolon(&toks);
    let mut p = crate::copy_options::Parser::new(sql, toks);
    p.parse()
}

/// `syntax error at or near "X"` (or `at end of input`), PostgreSQL's and Redshift's wording.
pub fn syntax_at(sql: &str, byte_pos: usize, tok: Option<&Tok>) -> ParseError {
    let position = Some(sql[..byte_pos.min(sql.len())].chars().count() + 1);
    let message = match tok {
        Some(t) => format!("syntax error at or near \"{}\"", t.raw),
        None => "syntax error at end of input".to_string(),
    };
    ParseError {
        sqlstate: "42601",
        message,
        position,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_s3_copies() {
        assert!(is_redshift_copy(
            "copy t from 's3://b/k' iam_role default json 'auto';"
        ));
        assert!(is_redshift_copy(
            "  COPY s.t (a,b) FROM 'S3://b/k' IAM_ROLE default"
        ));
        assert!(!is_redshift_copy("copy t from stdin"));
        assert!(!is_redshift_copy("copy t to 's3://b/k'"));
        assert!(!is_redshift_copy("select 'copy t from ''s3://x'''"));
        assert!(!is_redshift_copy(
            "copy t from 's3://b/k' iam_role default; select 1"
        ));
    }
}
