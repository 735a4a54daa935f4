//! JSONPaths files for `JSON 's3://...'`: parsing `{"jsonpaths": ["$.a", "$['b']", "$.c[0]"]}` and
//! evaluating one path against a record without building a full JSON tree.

use std::collections::HashMap;

use serde_json::value::RawValue;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum PathSeg {
    /// Object member.
    Key(String),
    /// Zero-based array index.
    Index(usize),
}

/// Parses a JSONPaths file; the error is the COPY error message.
pub fn parse_file(text: &str) -> Result<Option<Vec<Vec<PathSeg>>>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("Invalid JSONPath file: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("Invalid JSONPath file: not a JSON object")?;
    // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html: "If the key isn't "jsonpaths" COPY silently falls back to 'auto'".
    let Some(list) = obj.get("jsonpaths") else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or("Invalid JSONPath file: jsonpaths is not an array")?;
    list.iter()
        .map(|p| {
            p.as_str()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| "Invalid JSONPath format: empty or non-string element".to_string())
                .and_then(parse_path)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Parses `$.a.b`, `$['a']["b"]`, `$.a[0]`.
pub fn parse_path(p: &str) -> Result<Vec<PathSeg>, String> {
    let bad = || format!("Invalid JSONPath format: {p}");
    let b = p.as_bytes();
    if b.first() != Some(&b'$') {
        return Err(bad());
    }
    let mut i = 1;
    let mut out = Vec::new();
    while i < b.len() {
        match b[i] {
            b'.' => {
                let s = i + 1;
                i = s;
                while i < b.len() && b[i] != b'.' && b[i] != b'[' {
                    i += 1;
                }
                if i == s {
                    return Err(bad());
                }
                out.push(PathSeg::Key(p[s..i].to_string()));
            }
            b'[' => {
                let close = p[i..].find(']').ok_or_else(bad)? + i;
                let inner = p[i + 1..close].trim();
                if let Some(q) = inner.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
                    out.push(PathSeg::Key(q.to_string()));
                } else if let Some(q) = inner.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
                    out.push(PathSeg::Key(q.to_string()));
                } else {
                    // No wildcards or filters: only plain indexes (https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html).
                    out.push(PathSeg::Index(inner.parse().map_err(|_| bad())?));
                }
                i = close + 1;
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Follows `path` from `root`; a missing object member is `None`, a missing array element an error.
pub fn eval<'a>(root: &'a RawValue, path: &[PathSeg]) -> Result<Option<&'a RawValue>, String> {
    let mut cur = root;
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                let Ok(obj) = serde_json::from_str::<HashMap<String, &RawValue>>(cur.get()) else {
                    return Ok(None);
                };
                match obj.get(k) {
                    Some(v) => cur = v,
                    None => return Ok(None),
                }
            }
            PathSeg::Index(n) => {
                let arr = serde_json::from_str::<Vec<&RawValue>>(cur.get()).ok();
                // https://docs.aws.amazon.com/redshift/latest/dg/copy-parameters-data-format.html: "missing array element → COPY fails with `Invalid JSONPath
                // format: Not an array or index out of range.`"
                match arr.and_then(|a| a.get(*n).copied()) {
                    Some(v) => cur = v,
                    None => {
                        return Err(
                            "Invalid JSONPath format: Not an array or index out of range.".into(),
                        )
                    }
                }
            }
        }
    }
    Ok(Some(cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let f = parse_file(r#"{"jsonpaths":["$.a","$['b']","$.c.d[1]"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(f[1], vec![PathSeg::Key("b".into())]);
        assert_eq!(
            f[2],
            vec![
                PathSeg::Key("c".into()),
                PathSeg::Key("d".into()),
                PathSeg::Index(1)
            ]
        );
        assert_eq!(parse_file(r#"{"other":[]}"#).unwrap(), None);
        assert!(parse_path("a.b").is_err());
        let root: &RawValue = serde_json::from_str(r#"{"a":1,"c":{"d":[5,6]}}"#).unwrap();
        assert_eq!(eval(root, &f[0]).unwrap().unwrap().get(), "1");
        assert!(eval(root, &f[1]).unwrap().is_none());
        assert_eq!(eval(root, &f[2]).unwrap().unwrap().get(), "6");
        assert!(eval(
            root,
            &[
                PathSeg::Key("c".into()),
                PathSeg::Key("d".into()),
                PathSeg::Index(9)
            ]
        )
        .is_err());
    }
}
