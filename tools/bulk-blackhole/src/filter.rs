//! `filter_path` on a `_bulk` answer, as Elasticsearch and OpenSearch apply it: a
//! comma-separated list of dotted paths, `*` matching any one name, and only the matching parts
//! of the answer written; objects left empty are dropped. Clients use it to shrink the answer,
//! e.g. `filter_path=errors,items.*.status,items.*.error` keeps one small item per action
//! (Logstash's Elasticsearch output does the same). Only the shapes a successful bulk answer
//! has are understood: `took`, `errors`, `items`, `items.*`, `items.*.<field>` and `*`; other
//! paths match nothing here, as they would match nothing in such an answer.

/// The names of an item's members, in the order the answer writes them.
pub const ITEM_FIELDS: [&str; 8] = [
    "_index",
    "_id",
    "_version",
    "result",
    "_shards",
    "_seq_no",
    "_primary_term",
    "status",
];

/// Which parts of the answer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Write `took`.
    pub took: bool,
    /// Write `errors`.
    pub errors: bool,
    /// Which members of each item to write, by index into [`ITEM_FIELDS`].
    pub item_fields: [bool; ITEM_FIELDS.len()],
}

impl Default for Filter {
    /// No `filter_path`: everything.
    fn default() -> Self {
        Filter {
            took: true,
            errors: true,
            item_fields: [true; ITEM_FIELDS.len()],
        }
    }
}

impl Filter {
    /// The filter of a `filter_path` value.
    pub fn parse(value: &str) -> Filter {
        let mut f = Filter {
            took: false,
            errors: false,
            item_fields: [false; ITEM_FIELDS.len()],
        };
        for path in value.split(',').map(str::trim) {
            let parts: Vec<&str> = path.split('.').collect();
            let name = |p: &str, n: &str| p == "*" || p == n;
            match parts.as_slice() {
                [top] => {
                    f.took |= name(top, "took");
                    f.errors |= name(top, "errors");
                    if name(top, "items") {
                        f.item_fields = [true; ITEM_FIELDS.len()];
                    }
                }
                [top, _action] if name(top, "items") => {
                    f.item_fields = [true; ITEM_FIELDS.len()];
                }
                [top, _action, field] if name(top, "items") => {
                    for (i, n) in ITEM_FIELDS.iter().enumerate() {
                        f.item_fields[i] |= name(field, n);
                    }
                }
                _ => {}
            }
        }
        f
    }

    /// The filter of a request's query string (`None`: no `filter_path`).
    pub fn from_query(query: Option<&str>) -> Filter {
        query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "filter_path")
            .map(|(_, v)| Filter::parse(&percent_decode(v)))
            .unwrap_or_default()
    }

    /// True when items have at least one member to write.
    pub fn items(&self) -> bool {
        self.item_fields.contains(&true)
    }
}

/// Decodes `%XX` (clients escape `*` and `,` in query strings).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(c)) => {
                out.push(c);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_filter_keeps_everything() {
        assert_eq!(Filter::from_query(None), Filter::default());
        assert_eq!(Filter::from_query(Some("pipeline=p")), Filter::default());
    }

    #[test]
    fn status_and_error_keep_one_member_per_item() {
        let f = Filter::from_query(Some(
            "pipeline=p&filter_path=errors%2Citems.%2A.status%2Citems.%2A.error",
        ));
        assert!(f.errors && !f.took && f.items());
        let kept: Vec<&str> = ITEM_FIELDS
            .iter()
            .zip(f.item_fields)
            .filter(|(_, k)| *k)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(kept, ["status"]);
    }

    #[test]
    fn wildcards_and_unknown_paths() {
        assert_eq!(Filter::parse("*"), Filter::default());
        assert_eq!(Filter::parse("items,took,errors"), Filter::default());
        let errors_only = Filter::parse("items.*.error");
        assert!(!errors_only.items() && !errors_only.took && !errors_only.errors);
        assert!(Filter::parse("items.*._id").item_fields[1]);
    }
}
