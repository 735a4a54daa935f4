//! Which index a record goes to: the configured name rotated by time ([`IndexNamer`]), or an
//! `index` template filled from the record's fields and time (`logs-{.service}-%Y.%m.%d`),
//! with `default_index` for records the template cannot name and for records past the batch's
//! `max_indices_per_batch` distinct indexes.

use super::index::IndexNamer;
use crate::config::destination::elasticsearch::{index_template, IndexPart};
use crate::config::ElasticsearchConfig;
use crate::source::pointer::{Pointer, Scalar};
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes an index name may take (Elasticsearch refuses longer ones).
const MAX_NAME_BYTES: usize = 255;

/// One piece of a compiled template.
enum Part {
    Text(String),
    Time(String),
    Field(Pointer),
}

/// An `index` template parsed once, when the destination is built, and shared by its batches.
#[derive(Clone)]
pub struct Parts(Arc<[Part]>);

impl Parts {
    /// The config's template; `None` for a plain index name.
    pub fn compile(config: &ElasticsearchConfig) -> Result<Option<Parts>, String> {
        let Some(parts) = index_template(&config.index)? else {
            return Ok(None);
        };
        let parts = parts
            .into_iter()
            .map(|p| match p {
                IndexPart::Text(t) => Ok(Part::Text(t)),
                IndexPart::Time(t) => Ok(Part::Time(t)),
                IndexPart::Field(f) => Pointer::parse(&f).map(Part::Field),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Some(Parts(parts.into())))
    }
}

/// Index names from a template, for one batch.
struct Template {
    parts: Arc<[Part]>,
    /// `default_index` and its JSON string literal.
    default: (String, String),
    max: usize,
    /// Each name opened in this batch, with its JSON string literal.
    names: HashMap<String, String>,
    /// The seconds the time parts were last formatted for, and their text (one per part).
    time: Option<(i64, Vec<String>)>,
    scratch: String,
}

/// Names the index of each record of a batch.
pub enum Router {
    /// A fixed name, rotated by time.
    Rotated(IndexNamer),
    /// A template over the record's fields and time.
    Template(Box<TemplateRouter>),
}

/// The template router's state, boxed so a plain [`Router`] stays small.
pub struct TemplateRouter {
    template: Template,
    /// Records sent to `default_index` because the batch had opened its limit of indexes.
    pub over_limit: u64,
    /// Records sent to `default_index` because the template could not name them.
    pub defaulted: u64,
}

impl Router {
    /// A batch's router: over `template` (the config's, from [`Parts::compile`]) or, without
    /// one, the configured name rotated by time.
    pub fn new(config: &ElasticsearchConfig, template: Option<&Parts>) -> Router {
        let Some(Parts(parts)) = template else {
            return Router::Rotated(IndexNamer::new(&config.index, config.index_rotation));
        };
        let parts = Arc::clone(parts);
        let default = config.default_index.clone().unwrap_or_default();
        let quoted = serde_json::to_string(&default).expect("string serializes");
        Router::Template(Box::new(TemplateRouter {
            template: Template {
                parts,
                default: (default, quoted),
                max: config.max_indices_per_batch,
                names: HashMap::new(),
                time: None,
                scratch: String::new(),
            },
            over_limit: 0,
            defaulted: 0,
        }))
    }

    /// The JSON string literal of the index for a record (`bytes`) whose time is `secs`.
    pub fn quoted(&mut self, bytes: &[u8], secs: i64) -> &str {
        match self {
            Router::Rotated(n) => n.at(secs).1,
            Router::Template(t) => t.quoted(bytes, secs),
        }
    }

    /// The index named for a record in a failed-record artifact (which has no parsed record):
    /// the rotated name, or `default_index`.
    pub fn name_at(&mut self, secs: i64) -> String {
        match self {
            Router::Rotated(n) => n.at(secs).0.to_string(),
            Router::Template(t) => t.template.default.0.clone(),
        }
    }
}

impl TemplateRouter {
    fn quoted(&mut self, bytes: &[u8], secs: i64) -> &str {
        let t = &mut self.template;
        if !fill(t, bytes, secs) {
            self.defaulted += 1;
            return &t.default.1;
        }
        if !t.names.contains_key(&t.scratch) {
            if t.names.len() >= t.max {
                self.over_limit += 1;
                return &t.default.1;
            }
            let quoted = serde_json::to_string(&t.scratch).expect("string serializes");
            t.names.insert(t.scratch.clone(), quoted);
        }
        &t.names[&t.scratch]
    }
}

/// Writes the record's index name into `t.scratch`; false when the template cannot name it.
fn fill(t: &mut Template, bytes: &[u8], secs: i64) -> bool {
    if t.time.as_ref().is_none_or(|(s, _)| *s != secs) {
        let when = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let texts = t
            .parts
            .iter()
            .map(|p| match p {
                Part::Time(f) => when.format(f).to_string(),
                _ => String::new(),
            })
            .collect();
        t.time = Some((secs, texts));
    }
    let times = &t.time.as_ref().expect("just filled").1;
    t.scratch.clear();
    for (i, part) in t.parts.iter().enumerate() {
        match part {
            Part::Text(s) => t.scratch.push_str(s),
            Part::Time(_) => t.scratch.push_str(&times[i]),
            Part::Field(p) => {
                let value = match p.lookup(bytes) {
                    Some(Scalar::Str(s)) => s,
                    Some(Scalar::Int(n)) => n.to_string(),
                    Some(Scalar::Uint(n)) => n.to_string(),
                    Some(Scalar::Float(f)) => f.to_string(),
                    None => return false,
                };
                if !push_clean(&mut t.scratch, &value) {
                    return false;
                }
            }
        }
    }
    valid_name(&t.scratch)
}

/// Appends a field's value as index-name text: lowercase, with the characters Elasticsearch
/// refuses in a name (`\ / * ? " < > | , #`, space, `:`) as `_`. False for an empty value.
fn push_clean(out: &mut String, value: &str) -> bool {
    if value.is_empty() {
        return false;
    }
    for c in value.chars() {
        match c {
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ':' => out.push('_'),
            c if c.is_whitespace() || c.is_control() => out.push('_'),
            c => out.extend(c.to_lowercase()),
        }
    }
    true
}

/// Whether Elasticsearch takes the name: not empty, `.` or `..`, not starting with `-`, `_` or
/// `+`, at most 255 bytes.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with(['-', '_', '+'])
        && name.len() <= MAX_NAME_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(index: &str, max: usize) -> Router {
        let text = format!(
            "endpoints = [\"http://es:9200\"]\nindex = \"{index}\"\ndefault_index = \"logs-other\"\nmax_indices_per_batch = {max}"
        );
        let config: ElasticsearchConfig = toml::from_str(&text).unwrap();
        let template = Parts::compile(&config).unwrap();
        Router::new(&config, template.as_ref())
    }

    fn name(r: &mut Router, record: &str, secs: i64) -> String {
        serde_json::from_str(r.quoted(record.as_bytes(), secs)).unwrap()
    }

    #[test]
    fn fields_and_time_fill_the_template() {
        let mut r = router("logs-{.service}-{.env.name}-%Y.%m.%d", 100);
        let t = 1_456_405_200; // 2016-02-25T13:00:00Z
        assert_eq!(
            name(&mut r, r#"{"service":"Checkout","env":{"name":"prod"}}"#, t),
            "logs-checkout-prod-2016.02.25"
        );
        assert_eq!(
            name(
                &mut r,
                r#"{"service":"a b/c","env":{"name":7}}"#,
                t + 86_400
            ),
            "logs-a_b_c-7-2016.02.26"
        );
        // A missing, empty or non-scalar field, or a name Elasticsearch refuses: the default.
        for record in [
            r#"{"env":{"name":"prod"}}"#,
            r#"{"service":"","env":{"name":"prod"}}"#,
            r#"{"service":{"x":1},"env":{"name":"prod"}}"#,
        ] {
            assert_eq!(name(&mut r, record, t), "logs-other", "{record}");
        }
        let mut lead = router("{.service}", 100);
        assert_eq!(name(&mut lead, r#"{"service":"_hidden"}"#, t), "logs-other");
        assert_eq!(name(&mut lead, r#"{"service":"web"}"#, t), "web");
        let Router::Template(inner) = &r else {
            panic!("a template")
        };
        assert_eq!((inner.defaulted, inner.over_limit), (3, 0));
    }

    #[test]
    fn indexes_past_the_batch_limit_go_to_the_default() {
        let mut r = router("svc-{.s}", 2);
        let names: Vec<String> = ["a", "b", "c", "a", "d", "b"]
            .iter()
            .map(|s| name(&mut r, &format!(r#"{{"s":"{s}"}}"#), 0))
            .collect();
        assert_eq!(
            names,
            [
                "svc-a",
                "svc-b",
                "logs-other",
                "svc-a",
                "logs-other",
                "svc-b"
            ]
        );
        let Router::Template(inner) = &r else {
            panic!("a template")
        };
        assert_eq!(inner.over_limit, 2);
    }

    #[test]
    fn templates_are_parsed_or_refused() {
        assert_eq!(index_template("plain").unwrap(), None);
        assert_eq!(
            index_template("a-{.b.c}-%Y").unwrap(),
            Some(vec![
                IndexPart::Text("a-".into()),
                IndexPart::Field("/b/c".into()),
                IndexPart::Time("-%Y".into()),
            ])
        );
        for bad in ["a-{b}", "a-{.}", "a-{.b", "a-{.b}}", "a-{.b c}", "a-%Q"] {
            assert!(index_template(bad).is_err(), "{bad}");
        }
    }

    /// What routing costs per record against `gzip -dc` of the same records: ten services
    /// through `logs-{.svc}-%Y.%m.%d` with the record's own time, beside a plain day-rotated
    /// name. `cargo test --release --lib routing_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn routing_cost_against_gzip() {
        use std::io::Write;
        let ts = crate::source::pointer::Pointer::parse("/ts").unwrap();
        let records: Vec<Vec<u8>> = (0..400_000u64)
            .map(|i| {
                format!(
                    r#"{{"ts":{},"svc":"s{}","level":"info","msg":"request served in {} ms","path":"/api/v1/items/{i}","status":200,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
                    1_764_583_200 + i / 50,
                    i % 10,
                    i % 900
                )
                .into_bytes()
            })
            .collect();
        let bytes: usize = records.iter().map(|r| r.len() + 1).sum();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for r in &records {
            gz.write_all(r).unwrap();
            gz.write_all(b"\n").unwrap();
        }
        let file = std::env::temp_dir().join(format!("route-bench-{}.gz", std::process::id()));
        std::fs::write(&file, gz.finish().unwrap()).unwrap();
        let gzip = std::time::Instant::now();
        let status = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        let gzip = gzip.elapsed().as_secs_f64();
        assert!(status.success());
        let _ = std::fs::remove_file(&file);
        let gb = bytes as f64 / 1e9;
        println!("gzip -dc: {:.2} s/GB", gzip / gb);
        for (name, index) in [("rotated", "logs"), ("route-10", "logs-{.svc}-%Y.%m.%d")] {
            let text = format!(
                "endpoints = [\"http://es:9200\"]\nindex = \"{index}\"\ndefault_index = \"other\"\nindex_rotation = \"{}\"",
                if name == "rotated" { "day" } else { "none" }
            );
            let config: ElasticsearchConfig = toml::from_str(&text).unwrap();
            let template = Parts::compile(&config).unwrap();
            let mut r = Router::new(&config, template.as_ref());
            let start = std::time::Instant::now();
            let mut total = 0usize;
            for rec in &records {
                let secs = ts
                    .lookup(rec)
                    .and_then(|v| super::super::index::timestamp_secs(&v))
                    .unwrap_or(0);
                total += r.quoted(rec, secs).len();
            }
            let secs = start.elapsed().as_secs_f64();
            assert!(total > 0);
            println!(
                "{name}: {:.0} ns/record, {:.2} s/GB, {:.2}x gzip -dc",
                secs * 1e9 / records.len() as f64,
                secs / gb,
                secs / gzip
            );
        }
    }
}
