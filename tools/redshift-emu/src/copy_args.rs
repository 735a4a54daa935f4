//! Arguments of individual COPY options: authorization strings and role ARNs, delimiter and quote
//! characters (`'\t'`, octal `'\001'`), `NULL AS`, JSON modes and DATEFORMAT/TIMEFORMAT keywords.

use crate::copy_options::err;
use crate::copy_parse::{JsonMode, ParseError, TimeSpec};

/// Message for a malformed CREDENTIALS string or an incomplete key pair (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-authorization.html).
pub const INVALID_CREDENTIALS: &str = "Invalid credentials. Must be of the format: credentials 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'";
/// Message when no authorization is given.
pub const MISSING_CREDENTIALS: &str = "Missing credentials. Must be of the format: credentials 'aws_iam_role=...' or 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'";

/// Parses the argument of `JSON [AS] '...'`.
pub fn json_mode(s: &str) -> Result<JsonMode, ParseError> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "auto" {
        Ok(JsonMode::Auto)
    } else if lower == "auto ignorecase" {
        Ok(JsonMode::AutoIgnoreCase)
    } else if lower.starts_with("s3://") {
        Ok(JsonMode::Paths(s.trim().to_string()))
    } else if lower == "noshred" {
        Ok(JsonMode::Noshred)
    } else {
        Err(err("XX000", format!("Invalid JSON option '{s}'")))
    }
}

/// Parses a DATEFORMAT (`time = false`) or TIMEFORMAT argument.
pub fn time_spec(s: &str, time: bool) -> TimeSpec {
    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html: the keywords are case-sensitive ("'auto' (case-sensitive)").
    match s {
        "auto" => TimeSpec::Auto,
        "epochsecs" if time => TimeSpec::EpochSecs,
        "epochmillisecs" if time => TimeSpec::EpochMillis,
        _ => TimeSpec::Pattern(s.to_string()),
    }
}

/// Interprets `'\t'`, `'\ddd'` (octal) and plain one-character delimiters/quotes.
pub fn single_char(s: &str, what: &str) -> Result<u8, ParseError> {
    let v = unescape(s);
    if v.len() == 1 && v[0].is_ascii() {
        Ok(v[0])
    } else {
        Err(err(
            "42601",
            format!("{what} must be a single ASCII character"),
        ))
    }
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    if b.first() != Some(&b'\\') || b.len() < 2 {
        return b.to_vec();
    }
    match b[1] {
        b't' if b.len() == 2 => vec![b'\t'],
        b'\\' if b.len() == 2 => vec![b'\\'],
        b'0'..=b'7' => u8::from_str_radix(&s[1..], 8)
            .map(|c| vec![c])
            .unwrap_or_else(|_| b.to_vec()),
        _ => b.to_vec(),
    }
}

/// Interprets a `NULL AS` argument.
pub fn unescape_null(s: &str) -> String {
    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html: "'\0'/'\000' for NUL-only fields".
    if s == "\\0" || s == "\\000" {
        "\0".to_string()
    } else {
        s.to_string()
    }
}

/// Checks the shape of an IAM role ARN.
pub fn check_role_arn(arn: &str) -> Result<(), ParseError> {
    // Role chaining passes comma-separated ARNs; each must look like arn:aws:iam::<acct>:role/<name>.
    let ok = arn.split(',').all(|a| {
        let parts: Vec<&str> = a.splitn(6, ':').collect();
        parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[4].len() == 12
            && parts[4].bytes().all(|c| c.is_ascii_digit())
            && parts[5].starts_with("role/")
            && parts[5].len() > 5
    });
    if ok {
        Ok(())
    } else {
        Err(err("XX000", format!("Invalid IAM role ARN '{arn}'")))
    }
}

/// Checks a CREDENTIALS string.
pub fn check_credentials(c: &str) -> Result<(), ParseError> {
    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-authorization.html: "string is case-sensitive, no spaces".
    let mut keys: Vec<&str> = Vec::new();
    for part in c.split(';') {
        match part.split_once('=') {
            Some((k, v)) if !v.is_empty() && !part.contains(' ') => keys.push(k),
            _ => return Err(err("XX000", INVALID_CREDENTIALS)),
        }
    }
    let has = |k: &str| keys.contains(&k);
    let role = has("aws_iam_role")
        && keys
            .iter()
            .all(|k| *k == "aws_iam_role" || *k == "master_symmetric_key");
    let pair = has("aws_access_key_id")
        && has("aws_secret_access_key")
        && keys.iter().all(|k| {
            matches!(
                *k,
                "aws_access_key_id" | "aws_secret_access_key" | "token" | "master_symmetric_key"
            )
        });
    if role || pair {
        Ok(())
    } else {
        Err(err("XX000", INVALID_CREDENTIALS))
    }
}
