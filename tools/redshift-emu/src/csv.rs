//! CSV framing per Redshift's `CSV [QUOTE [AS] 'c']`: RFC-4180 quoting with doubled quotes,
//! newlines allowed inside quotes, whitespace between a delimiter and a quote ignored.

use crate::copy_parse::CopyStmt;
use crate::formats::{fit, Fields, Record, RecordError};

/// Splits CSV `data` (from offset `i`, whose first line is `line`) into records.
pub fn records<'a>(
    data: &'a [u8],
    mut i: usize,
    mut line: i64,
    quote: u8,
    st: &CopyStmt,
    cols: &[String],
) -> Vec<Record<'a>> {
    let delim = st.delimiter;
    let mut out = Vec::new();
    while i < data.len() {
        let begin = i;
        let rec_line = line;
        let mut fields: Fields = Vec::new();
        let mut error: Option<RecordError> = None;
        loop {
            // Leading blanks before an opening quote are ignored.
            let mut j = i;
            while j < data.len() && (data[j] == b' ' || data[j] == b'\t') {
                j += 1;
            }
            if j < data.len() && data[j] == quote {
                let mut value = Vec::new();
                let mut k = j + 1;
                let mut closed = false;
                while k < data.len() {
                    if data[k] == quote {
                        if data.get(k + 1) == Some(&quote) {
                            value.push(quote);
                            k += 2;
                            continue;
                        }
                        closed = true;
                        k += 1;
                        break;
                    }
                    if data[k] == b'\n' {
                        line += 1;
                    }
                    value.push(data[k]);
                    k += 1;
                }
                if !closed && error.is_none() {
                    error = Some(RecordError {
                        code: 1216,
                        reason: "Missing closing quote in CSV field".into(),
                        colname: String::new(),
                        raw_field: value.clone(),
                    });
                }
                while k < data.len() && matches!(data[k], b' ' | b'\t') {
                    k += 1;
                }
                if at_crlf(data, k) {
                    k += 1;
                }
                fields.push(Some(value));
                i = k;
            } else {
                let mut k = i;
                while k < data.len() && data[k] != delim && data[k] != b'\n' {
                    k += 1;
                }
                let mut v = &data[i..k];
                if k < data.len() && data[k] == b'\n' {
                    v = v.strip_suffix(b"\r").unwrap_or(v);
                }
                // NULL AS applies to unquoted fields only; a quoted "\N" is data.
                fields.push(if v == st.null_as.as_bytes() {
                    None
                } else {
                    Some(v.to_vec())
                });
                i = k;
            }
            if i < data.len() && data[i] == delim {
                i += 1;
                continue;
            }
            if i < data.len() && data[i] != b'\n' && error.is_none() {
                error = Some(RecordError {
                    code: 1214,
                    reason: "Delimiter not found".into(),
                    colname: cols
                        .get(fields.len().saturating_sub(1))
                        .cloned()
                        .unwrap_or_default(),
                    raw_field: Vec::new(),
                });
                while i < data.len() && data[i] != b'\n' {
                    i += 1;
                }
            }
            break;
        }
        let end = i.min(data.len());
        i += 1;
        line += 1;
        let raw = &data[begin..end];
        if st.ignore_blank_lines && raw.is_empty() {
            continue;
        }
        let fields = match error {
            Some(e) => Err(e),
            None => fit(fields, cols, st.fill_record),
        };
        out.push(Record {
            line: rec_line,
            raw,
            fields,
            missing: Vec::new(),
        });
    }
    out
}

fn at_crlf(data: &[u8], k: usize) -> bool {
    data.get(k) == Some(&b'\r') && data.get(k + 1) == Some(&b'\n')
}

#[cfg(test)]
mod tests {
    use crate::copy_parse::parse_copy;
    use crate::formats::records;

    fn s(v: &str) -> Option<Vec<u8>> {
        Some(v.as_bytes().to_vec())
    }

    #[test]
    fn quoted_fields() {
        let st = parse_copy("copy t from 's3://b/k' iam_role default csv").unwrap();
        let cols = vec!["a".to_string(), "b".to_string()];
        let data = b"1, \"x,\"\"y\"\"\"\n2,\"multi\nline\"\r\n3,\\N\n4,\"open\n";
        let r = records(data, &st, &cols, None);
        assert_eq!(r[0].fields, Ok(vec![s("1"), s("x,\"y\"")]));
        assert_eq!(r[1].fields, Ok(vec![s("2"), s("multi\nline")]));
        assert_eq!(r[2].line, 4);
        assert_eq!(r[2].fields, Ok(vec![s("3"), None]));
        assert_eq!(r[3].fields.as_ref().unwrap_err().code, 1216);
        let st =
            parse_copy("copy t from 's3://b/k' iam_role default csv quote as '%' delimiter '|'")
                .unwrap();
        let r = records(b"%a|b%|c\n", &st, &cols, None);
        assert_eq!(r[0].fields, Ok(vec![s("a|b"), s("c")]));
    }
}
