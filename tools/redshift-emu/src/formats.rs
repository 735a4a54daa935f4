//! Record framing and field extraction for one decompressed input file: delimited text, CSV and
//! JSON (`'auto'`, `'auto ignorecase'`, JSONPaths). Each record carries its line number and raw
//! bytes so a bad one can be reported the way STL_LOAD_ERRORS shows it.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::copy_parse::{CopyStmt, Format, JsonMode};
use crate::jsonpath::{self, PathSeg};

/// Field values of one record, in target-column order; `None` is NULL.
pub type Fields = Vec<Option<Vec<u8>>>;

/// A record-level error (the record could not be split into fields).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordError {
    /// Redshift load error code.
    pub code: i32,
    /// err_reason.
    pub reason: String,
    /// Column the error is attributed to, if any.
    pub colname: String,
    /// raw_field_value.
    pub raw_field: Vec<u8>,
}

/// One input record.
#[derive(Debug)]
pub struct Record<'a> {
    /// Line number reported for errors (JSON: last line of the object, https://docs.aws.amazon.com/redshift/latest/dg/r_STL_LOAD_ERRORS.html).
    pub line: i64,
    /// The record's raw bytes.
    pub raw: &'a [u8],
    /// Fields or the framing error.
    pub fields: Result<Fields, RecordError>,
    /// Columns whose JSON key was absent: they take the column DEFAULT (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html:
    /// "missing keys → column DEFAULT, else NULL").
    pub missing: Vec<usize>,
}

fn rec_err(code: i32, reason: impl Into<String>, colname: &str, raw: &[u8]) -> RecordError {
    RecordError {
        code,
        reason: reason.into(),
        colname: colname.into(),
        raw_field: raw.to_vec(),
    }
}

/// Splits `data` into records for the target columns `cols` (names only).
pub fn records<'a>(
    data: &'a [u8],
    st: &CopyStmt,
    cols: &[String],
    paths: Option<&[Vec<PathSeg>]>,
) -> Vec<Record<'a>> {
    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-conversion.html: "IGNOREHEADER [AS] n: skip first n lines of each file" (for JSON too:
    // "IGNOREHEADER counts lines").
    let mut start = 0;
    for _ in 0..st.ignore_header {
        match data[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => start = data.len(),
        }
    }
    let first_line = st.ignore_header as i64 + 1;
    match &st.format {
        Format::Json(mode) => json_records(data, start, first_line, mode, cols, paths, st),
        Format::Csv { quote } => crate::csv::records(data, start, first_line, *quote, st, cols),
        Format::Text => text_records(data, start, first_line, st, cols),
        // Read by `columnar`, never as text.
        Format::Parquet | Format::Orc => Vec::new(),
    }
}

/// Fits positional fields to the column count: 1202 for extra fields, 1214 for missing ones
/// (Redshift reports a short delimited line as "Delimiter not found"), unless FILLRECORD.
pub fn fit(mut f: Fields, cols: &[String], fill: bool) -> Result<Fields, RecordError> {
    if f.len() > cols.len() {
        let extra = f[cols.len()].clone().unwrap_or_default();
        return Err(rec_err(1202, "Extra column(s) found", "", &extra));
    }
    if f.len() < cols.len() {
        if !fill {
            return Err(rec_err(1214, "Delimiter not found", &cols[f.len()], b""));
        }
        // FILLRECORD: "missing trailing columns → NULL (zero-length string for VARCHAR in
        // text/CSV unless EMPTYASNULL)"; an empty field becomes NULL for non-string types.
        f.resize(cols.len(), Some(Vec::new()));
    }
    Ok(f)
}

fn text_records<'a>(
    data: &'a [u8],
    mut i: usize,
    mut line: i64,
    st: &CopyStmt,
    cols: &[String],
) -> Vec<Record<'a>> {
    let mut out = Vec::new();
    while i < data.len() {
        let begin = i;
        let rec_line = line;
        let mut fields: Fields = Vec::new();
        let mut cur = Vec::new();
        let mut raw_start = i;
        while i < data.len() && data[i] != b'\n' {
            let c = data[i];
            if st.escape && c == b'\\' && i + 1 < data.len() {
                // ESCAPE: "backslash escapes next char (delimiter, quote, newline, backslash)".
                if data[i + 1] == b'\n' {
                    line += 1;
                }
                cur.push(data[i + 1]);
                i += 2;
                continue;
            }
            if c == st.delimiter {
                fields.push(text_field(&data[raw_start..i], cur, st));
                cur = Vec::new();
                raw_start = i + 1;
            } else {
                cur.push(c);
            }
            i += 1;
        }
        let end = i;
        fields.push(text_field(&data[raw_start..end], cur, st));
        i += 1;
        line += 1;
        let raw = &data[begin..end];
        if raw.is_empty() && st.ignore_blank_lines {
            continue;
        }
        out.push(Record {
            line: rec_line,
            raw,
            fields: fit(fields, cols, st.fill_record),
            missing: Vec::new(),
        });
    }
    out
}

fn text_field(raw: &[u8], value: Vec<u8>, st: &CopyStmt) -> Option<Vec<u8>> {
    // NULL AS compares against the field as written (default '\N').
    if raw == st.null_as.as_bytes() {
        None
    } else {
        Some(value)
    }
}

fn json_records<'a>(
    data: &'a [u8],
    mut i: usize,
    mut line: i64,
    mode: &JsonMode,
    cols: &[String],
    paths: Option<&[Vec<PathSeg>]>,
    st: &CopyStmt,
) -> Vec<Record<'a>> {
    let mut out = Vec::new();
    loop {
        while i < data.len() && data[i].is_ascii_whitespace() {
            if data[i] == b'\n' {
                line += 1;
            }
            i += 1;
        }
        if i >= data.len() {
            break;
        }
        let begin = i;
        if data[i] == b'{' || data[i] == b'[' {
            let (end, nl, complete) = value_end(data, i);
            line += nl;
            i = end;
            let raw = &data[begin..end];
            let (fields, missing) = if complete {
                match json_fields(raw, mode, cols, paths, st) {
                    Ok((f, m)) => (Ok(f), m),
                    Err(e) => (Err(e), Vec::new()),
                }
            } else {
                let e = rec_err(1216, "Invalid JSON object: unexpected end of data", "", raw);
                (Err(e), Vec::new())
            };
            out.push(Record {
                line,
                raw,
                fields,
                missing,
            });
        } else {
            // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html: "Non-whitespace garbage before/between objects → one error per
            // instance".
            while i < data.len()
                && !data[i].is_ascii_whitespace()
                && data[i] != b'{'
                && data[i] != b'['
            {
                i += 1;
            }
            let raw = &data[begin..i];
            out.push(Record {
                line,
                raw,
                fields: Err(rec_err(
                    1216,
                    "Invalid JSON: garbage between JSON values",
                    "",
                    raw,
                )),
                missing: Vec::new(),
            });
        }
    }
    out
}

/// Finds the end of the JSON object/array starting at `i`: (end offset, newlines inside, complete).
fn value_end(data: &[u8], mut i: usize) -> (usize, i64, bool) {
    let mut depth = 0usize;
    let mut nl = 0;
    let mut in_str = false;
    while i < data.len() {
        let c = data[i];
        if c == b'\n' {
            nl += 1;
        }
        if in_str {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return (i + 1, nl, true);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    (data.len(), nl, false)
}

fn json_fields(
    raw: &[u8],
    mode: &JsonMode,
    cols: &[String],
    paths: Option<&[Vec<PathSeg>]>,
    st: &CopyStmt,
) -> Result<(Fields, Vec<usize>), RecordError> {
    let fixed;
    let text = match std::str::from_utf8(raw) {
        Ok(t) => t,
        Err(e) => match st.accept_inv_chars {
            Some(c) => {
                fixed = replace_invalid(raw, c);
                fixed.as_str()
            }
            None => {
                let bad = raw[e.valid_up_to()];
                return Err(rec_err(
                    1220,
                    format!("String contains invalid or unsupported UTF-8 codepoints. Bad UTF-8 hex sequence: {bad:02x} (error 3)"),
                    "",
                    raw,
                ));
            }
        },
    };
    let invalid = |e: serde_json::Error| rec_err(1216, format!("Invalid JSON: {e}"), "", raw);
    if mode == &JsonMode::Noshred {
        // The whole document into the one SUPER column; 1224 is the load error code Redshift
        // documents for JSON that SUPER cannot take.
        return match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => Ok((vec![Some(text.as_bytes().to_vec())], Vec::new())),
            Err(e) => Err(rec_err(
                1224,
                format!("Invalid JSON for the SUPER data type: {e}"),
                cols.first().map_or("", String::as_str),
                raw,
            )),
        };
    }
    if let (JsonMode::Paths(_), Some(paths)) = (mode, paths) {
        let root: &RawValue = serde_json::from_str(text).map_err(invalid)?;
        return paths
            .iter()
            .map(|p| jsonpath::eval(root, p).map(|v| v.and_then(scalar)))
            .collect::<Result<Fields, String>>()
            .map(|f| (f, Vec::new()))
            .map_err(|e| rec_err(1216, e, "", raw));
    }
    if text.starts_with('[') {
        // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html: "Arrays require a JSONPaths file".
        return Err(rec_err(
            1216,
            "Invalid JSONPath format: arrays require a JSONPaths file",
            "",
            raw,
        ));
    }
    let obj: HashMap<String, &RawValue> = serde_json::from_str(text).map_err(invalid)?;
    let ignore_case = *mode == JsonMode::AutoIgnoreCase;
    let mut missing = Vec::new();
    let fields = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let v = if ignore_case {
                obj.iter()
                    .find(|(k, _)| k.to_lowercase() == c.to_lowercase())
                    .map(|(_, v)| *v)
            } else {
                obj.get(c).copied()
            };
            if v.is_none() {
                missing.push(i);
            }
            v.and_then(scalar)
        })
        .collect();
    Ok((fields, missing))
}

/// A JSON value as column text: strings unescaped, numbers as written, nested values as JSON.
fn scalar(v: &RawValue) -> Option<Vec<u8>> {
    let t = v.get();
    match t.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => serde_json::from_str::<String>(t)
            .ok()
            .map(String::into_bytes),
        _ => Some(t.as_bytes().to_vec()),
    }
}

fn replace_invalid(raw: &[u8], c: char) -> String {
    let mut out = String::new();
    let mut rest = raw;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len() - good);
                out.extend(std::iter::repeat_n(c, bad));
                rest = &rest[good + bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copy_parse::parse_copy;

    fn stmt(opts: &str) -> CopyStmt {
        parse_copy(&format!("copy t from 's3://b/k' iam_role default {opts}")).unwrap()
    }

    fn cols(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn s(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn json_lines_and_concatenated() {
        let st = stmt("json 'auto'");
        let data = b"{\"a\":1,\"b\":\"x\"}{\"a\":2}\n\n{\"A\":3,\n\"b\":null}\nxx {\"a\": 4.5, \"b\": {\"n\":[1]}}";
        let r = records(data, &st, &cols(&["a", "b"]), None);
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].fields, Ok(vec![s("1"), s("x")]));
        assert_eq!(r[1].fields, Ok(vec![s("2"), None]));
        assert_eq!(r[2].fields, Ok(vec![None, None]));
        assert_eq!(r[2].line, 4);
        assert_eq!(r[3].fields.as_ref().unwrap_err().code, 1216);
        assert_eq!(r[3].line, 5);
        assert_eq!(r[4].fields, Ok(vec![s("4.5"), s("{\"n\":[1]}")]));
        let st = stmt("json 'auto ignorecase'");
        let r = records(b"{\"A\":3}", &st, &cols(&["a"]), None);
        assert_eq!(r[0].fields, Ok(vec![s("3")]));
    }

    #[test]
    fn json_errors_report_last_line() {
        let st = stmt("json 'auto'");
        let r = records(b"{\"a\":1}\n{\"a\":\n tru}\n", &st, &cols(&["a"]), None);
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].fields.as_ref().unwrap_err().code, 1216);
    }

    #[test]
    fn text_lines() {
        let st = stmt("ignoreheader 1");
        let data = b"h|h\n1|a\n2|\\N\n3\n4|b|c\n";
        let r = records(data, &st, &cols(&["a", "b"]), None);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].line, 2);
        assert_eq!(r[0].fields, Ok(vec![s("1"), s("a")]));
        assert_eq!(r[1].fields, Ok(vec![s("2"), None]));
        assert_eq!(r[2].fields.as_ref().unwrap_err().code, 1214);
        assert_eq!(r[2].fields.as_ref().unwrap_err().colname, "b");
        assert_eq!(r[3].fields.as_ref().unwrap_err().code, 1202);
        let st = stmt("delimiter ',' escape fillrecord");
        let r = records(b"a\\,b,c\\\nd\n1", &st, &cols(&["a", "b"]), None);
        assert_eq!(r[0].fields, Ok(vec![s("a,b"), s("c\nd")]));
        assert_eq!(r[1].line, 3);
        assert_eq!(r[1].fields, Ok(vec![s("1"), s("")]));
    }
}
