//! What `copy_options` may say for the pipeline's input, checked at startup: the few COPY
//! parameters Redshift takes with columnar input (`source.format = "parquet"` or `"orc"`), a
//! format keyword that agrees with `source.format`, and `JSON 'noshred'` (each JSON document
//! whole into one SUPER column) only over JSON records.
//!
//! Columnar rules, from "COPY from columnar data formats"
//! (https://docs.aws.amazon.com/redshift/latest/dg/copy-usage_notes-copy-from-columnar.html):
//! "Only the following COPY parameters are supported" (ACCEPTINVCHARS, FILLRECORD, FROM,
//! IAM_ROLE, CREDENTIALS, STATUPDATE, MANIFEST, ACCESS_KEY_ID, SECRET_ACCESS_KEY,
//! SESSION_TOKEN, EXPLICIT_IDS); "ACCEPTANYDATE and MAXERROR aren't supported for columnar data
//! types"; "The Amazon S3 bucket must be in the same AWS Region as the Amazon Redshift
//! database", so there is no REGION either.

use crate::config::{Framing, RedshiftConfig};
use crate::sql::quote_literal;

/// COPY parameters Redshift accepts with `FORMAT AS PARQUET` / `ORC` besides the format itself
/// (MANIFEST and the authorization are written by the loader).
const COLUMNAR_ALLOWED: [&str; 10] = [
    "ACCEPTINVCHARS",
    "FILLRECORD",
    "STATUPDATE",
    "EXPLICIT_IDS",
    "IAM_ROLE",
    "CREDENTIALS",
    "ACCESS_KEY_ID",
    "SECRET_ACCESS_KEY",
    "SESSION_TOKEN",
    "WITH",
];

/// Format keywords of COPY's data format parameters.
const FORMATS: [&str; 7] = [
    "JSON",
    "CSV",
    "AVRO",
    "PARQUET",
    "ORC",
    "FIXEDWIDTH",
    "SHAPEFILE",
];

/// Options COPY refuses with JSON input ("not supported for JSON based COPY").
const NOT_WITH_JSON: [&str; 9] = [
    "CSV",
    "DELIMITER",
    "ESCAPE",
    "FILLRECORD",
    "FIXEDWIDTH",
    "IGNOREBLANKLINES",
    "NULL",
    "READRATIO",
    "REMOVEQUOTES",
];

/// Words that are values of the option before them, never options themselves.
const VALUE_WORDS: [&str; 7] = ["AS", "ON", "OFF", "TRUE", "FALSE", "PRESET", "DEFAULT"];

/// One token of `copy_options`.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word, upper-cased.
    Word(String),
    /// A quoted literal's contents.
    Lit(String),
}

fn tokens(options: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = options.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut lit = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                        lit.push('\'');
                        continue;
                    }
                    break;
                }
                lit.push(c);
            }
            out.push(Tok::Lit(lit));
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '\'' {
                    break;
                }
                word.push(c.to_ascii_uppercase());
                chars.next();
            }
            out.push(Tok::Word(word));
        }
    }
    out
}

/// The option keywords of `copy_options`, in order (values and `AS` left out).
fn keywords(options: &str) -> Vec<String> {
    tokens(options)
        .into_iter()
        .filter_map(|t| match t {
            Tok::Word(w)
                if !VALUE_WORDS.contains(&w.as_str())
                    && !w.chars().all(|c| c.is_ascii_digit() || c == '.') =>
            {
                Some(w)
            }
            _ => None,
        })
        .collect()
}

/// True when the options say `JSON [AS] 'noshred'` (with or without `FORMAT [AS]`).
pub fn is_noshred(options: &str) -> bool {
    let toks = tokens(options);
    toks.iter().enumerate().any(|(i, t)| {
        t == &Tok::Word("JSON".into())
            && toks[i + 1..]
                .iter()
                .find(|t| t != &&Tok::Word("AS".into()))
                .is_some_and(
                    |t| matches!(t, Tok::Lit(l) if l.trim().eq_ignore_ascii_case("noshred")),
                )
    })
}

/// The COPY format keyword for a columnar `source.format`.
pub fn columnar_keyword(format: Framing) -> Option<&'static str> {
    match format {
        Framing::Parquet => Some("PARQUET"),
        Framing::Orc => Some("ORC"),
        _ => None,
    }
}

/// True when `copy_options` already names the columnar format (`FORMAT AS PARQUET` written by
/// the user), so the loader does not write it twice.
pub fn names_format(options: &str, keyword: &str) -> bool {
    keywords(options).iter().any(|k| k == keyword)
}

/// The parts of a name quoted by `quote_qualified` (`"public"."t"`), unquoted.
fn unquoted_parts(quoted: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = quoted.chars().peekable();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if inside && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => inside = !inside,
            '.' if !inside => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    parts.push(cur);
    parts
}

/// The query counting the columns of the target table (`quoted` as `quote_qualified` wrote
/// it), for the startup check of `JSON 'noshred'`, which needs a table of one SUPER column.
pub fn column_count_query(quoted: &str) -> String {
    let parts = unquoted_parts(quoted);
    let table = parts.last().cloned().unwrap_or_default();
    let schema = match parts.len() {
        n if n >= 2 => quote_literal(&parts[n - 2]),
        _ => "current_schema()".to_string(),
    };
    format!(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = {schema} AND table_name = {}",
        quote_literal(&table)
    )
}

/// Checks a Redshift pipeline's `copy_options` (and `region`, `columns`) against its
/// `source.format`; returns the field, relative to the pipeline, and the problem.
pub fn check(format: Framing, r: &RedshiftConfig) -> Result<(), (String, String)> {
    let words = keywords(&r.copy_options);
    let opts = || "destination.copy_options".to_string();
    if let Some(keyword) = columnar_keyword(format) {
        if let Some(other) = words
            .iter()
            .find(|w| FORMATS.contains(&w.as_str()) && *w != keyword)
        {
            return Err((
                opts(),
                format!(
                    "{other} contradicts source.format = \"{}\": the loader writes FORMAT AS {keyword} itself",
                    format.name()
                ),
            ));
        }
        if let Some(bad) = words.iter().find(|w| {
            !COLUMNAR_ALLOWED.contains(&w.as_str()) && w.as_str() != "FORMAT" && *w != keyword
        }) {
            let hint = if bad == "MANIFEST" {
                " (the loader writes MANIFEST itself)"
            } else {
                ""
            };
            return Err((
                opts(),
                format!(
                    "{bad} is not supported with {keyword} input{hint}: COPY from columnar files takes only \
                     ACCEPTINVCHARS, FILLRECORD, STATUPDATE and EXPLICIT_IDS, and any error fails the whole COPY"
                ),
            ));
        }
        if r.region.is_some() {
            return Err((
                "destination.region".into(),
                format!(
                    "COPY from {keyword} files takes no REGION: the bucket must be in the cluster's region"
                ),
            ));
        }
        return Ok(());
    }
    if let Some(k) = words.iter().find(|w| *w == "PARQUET" || *w == "ORC") {
        return Err((
            opts(),
            format!(
                "{k} contradicts source.format = \"{}\": set source.format = \"{}\" to load {k} files",
                format.name(),
                k.to_ascii_lowercase()
            ),
        ));
    }
    if is_noshred(&r.copy_options) {
        if !matches!(format, Framing::JsonLines | Framing::JsonConcat) {
            return Err((
                "source.format".into(),
                format!(
                    "JSON 'noshred' in destination.copy_options loads JSON documents: use json_lines or json_concat, not \"{}\"",
                    format.name()
                ),
            ));
        }
        if r.columns.len() > 1 {
            return Err((
                "destination.columns".into(),
                "JSON 'noshred' loads each document into one SUPER column: name at most one".into(),
            ));
        }
        if let Some(bad) = words.iter().find(|w| NOT_WITH_JSON.contains(&w.as_str())) {
            return Err((opts(), format!("{bad} is not supported with JSON input")));
        }
        if !r.merge_keys.is_empty() {
            return Err((
                "destination.merge_keys".into(),
                "JSON 'noshred' loads one SUPER column, which cannot be a merge key".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(options: &str) -> RedshiftConfig {
        let toml = format!(
            "url = \"postgres://u@h:5439/d\"\ntable = \"t\"\niam_role = \"default\"\ncopy_options = {options:?}\n"
        );
        toml::from_str(&toml).unwrap()
    }

    fn field(format: Framing, options: &str) -> Option<String> {
        check(format, &cfg(options)).err().map(|(f, _)| f)
    }

    #[test]
    fn columnar_takes_only_its_options() {
        for ok in [
            "",
            "ACCEPTINVCHARS AS '^' FILLRECORD STATUPDATE OFF EXPLICIT_IDS",
            "FORMAT AS PARQUET",
            "format parquet statupdate on",
        ] {
            assert_eq!(field(Framing::Parquet, ok), None, "{ok}");
        }
        for bad in [
            "MAXERROR 10",
            "IGNOREHEADER 1",
            "GZIP",
            "DELIMITER ','",
            "TIMEFORMAT 'auto'",
            "ACCEPTANYDATE",
            "MANIFEST",
            "COMPUPDATE OFF",
        ] {
            let (f, m) = check(Framing::Parquet, &cfg(bad)).unwrap_err();
            assert_eq!(f, "destination.copy_options", "{bad}");
            let first = bad.split_whitespace().next().unwrap();
            assert!(m.starts_with(first), "{bad}: {m}");
        }
        assert_eq!(
            field(Framing::Orc, "MAXERROR AS 3").as_deref(),
            Some("destination.copy_options")
        );
    }

    #[test]
    fn a_format_keyword_must_agree_with_source_format() {
        let (f, m) = check(Framing::Parquet, &cfg("JSON 'auto'")).unwrap_err();
        assert_eq!(f, "destination.copy_options");
        assert!(m.contains("JSON contradicts"), "{m}");
        assert!(check(Framing::Orc, &cfg("FORMAT AS PARQUET")).is_err());
        let (_, m) = check(Framing::JsonLines, &cfg("FORMAT AS PARQUET")).unwrap_err();
        assert!(m.contains("source.format = \"parquet\""), "{m}");
        assert_eq!(field(Framing::JsonLines, "JSON 'auto' MAXERROR 5"), None);
        assert!(names_format("format as parquet", "PARQUET"));
        assert!(!names_format("FILLRECORD", "PARQUET"));
    }

    #[test]
    fn columnar_refuses_region() {
        let mut c = cfg("");
        c.region = Some("us-west-2".into());
        assert_eq!(
            check(Framing::Parquet, &c).unwrap_err().0,
            "destination.region"
        );
        assert!(check(Framing::JsonLines, &c).is_ok());
    }

    #[test]
    fn the_column_count_query_names_schema_and_table() {
        assert_eq!(
            column_count_query("\"public\".\"Raw\"\"x.y\""),
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name = 'Raw\"x.y'"
        );
        assert!(column_count_query("\"docs\"")
            .contains("table_schema = current_schema() AND table_name = 'docs'"));
    }

    #[test]
    fn noshred_is_recognised_and_checked() {
        assert!(is_noshred("JSON 'noshred'"));
        assert!(is_noshred("FORMAT AS JSON AS 'NoShred' MAXERROR 3"));
        assert!(!is_noshred("JSON 'auto'"));
        assert!(!is_noshred("noshred"));
        assert_eq!(
            field(Framing::JsonConcat, "JSON 'noshred' MAXERROR 5"),
            None
        );
        assert_eq!(
            field(Framing::Lines, "JSON 'noshred'").as_deref(),
            Some("source.format")
        );
        assert_eq!(
            field(Framing::JsonLines, "JSON 'noshred' DELIMITER ','").as_deref(),
            Some("destination.copy_options")
        );
        let mut c = cfg("FORMAT JSON 'noshred'");
        c.columns = vec!["a".into(), "b".into()];
        assert_eq!(
            check(Framing::JsonLines, &c).unwrap_err().0,
            "destination.columns"
        );
    }
}
