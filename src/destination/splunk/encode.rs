//! Request bodies, built by hand into reusable buffers: for `/event` one HEC envelope per record
//! with the record spliced in as its original bytes (Splunk's "Format events for HTTP Event Collector"); for `/raw`
//! the records joined by newlines with the metadata in the query string.

use super::time::{time_at, EventTime};
use crate::config::{HecEndpoint, SplunkConfig};
use crate::model::StagedObject;
use crate::source::framing::Framing;
use crate::source::pointer::{Pointer, Scalar};
use bytes::BytesMut;
use std::ops::Range;

/// Builds bodies for one destination.
#[derive(Debug, Clone)]
pub struct Encoder {
    endpoint: HecEndpoint,
    framing: Framing,
    time_field: Option<Pointer>,
    host: Option<String>,
    source: Option<String>,
    sourcetype: Option<String>,
    index: Option<String>,
    /// Per-event host, source, sourcetype and index from the record's fields, in that order;
    /// empty when none is configured.
    routes: Vec<(&'static str, Option<Pointer>)>,
    /// `,"fields":{...}` ready to splice, or empty.
    fields: String,
}

/// The envelope parts that depend on the object: its source and arrival time.
#[derive(Debug, Clone)]
pub struct ObjectMeta {
    /// `,"host":..,"source":..,...,"event":`, everything between the time and the record.
    tail: Vec<u8>,
    /// The object's arrival time, for records without a usable time field.
    arrival: String,
    /// The object's source, for records without a source field.
    source: String,
}

fn json_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

impl Encoder {
    /// An encoder for a destination reading records framed as `framing`.
    pub fn new(config: &SplunkConfig, framing: Framing) -> Result<Encoder, String> {
        let time_field = match (&config.time_field, framing) {
            // Every format but raw lines yields JSON records (csv, json_array and the AWS log
            // formats included), so the time field can be read from any of them.
            (Some(p), f) if f.is_json() => Some(Pointer::parse(p)?),
            _ => None,
        };
        let mut fields = String::new();
        if !config.fields.is_empty() {
            fields.push_str(",\"fields\":{");
            for (i, (k, v)) in config.fields.iter().enumerate() {
                if i > 0 {
                    fields.push(',');
                }
                json_str(&mut fields, k);
                fields.push(':');
                json_str(&mut fields, v);
            }
            fields.push('}');
        }
        let mut routes = Vec::new();
        let fields_given = [
            &config.host_field,
            &config.source_field,
            &config.sourcetype_field,
            &config.index_field,
        ];
        if fields_given.iter().any(|f| f.is_some()) && framing.is_json() {
            for (key, field) in ["host", "source", "sourcetype", "index"]
                .into_iter()
                .zip(fields_given)
            {
                routes.push((key, field.as_deref().map(Pointer::parse).transpose()?));
            }
        }
        Ok(Encoder {
            routes,
            endpoint: config.endpoint,
            framing,
            time_field,
            host: config.host.clone(),
            source: config.source.clone(),
            sourcetype: config.sourcetype.clone(),
            index: config.index.clone(),
            fields,
        })
    }

    /// The endpoint bodies are built for.
    pub fn endpoint(&self) -> HecEndpoint {
        self.endpoint
    }

    /// True when `source` is each object's URL, so a raw request (whose metadata is in the
    /// query string) may only hold records of one object.
    pub fn source_per_object(&self) -> bool {
        self.source.is_none()
    }

    fn source_of(&self, object: &StagedObject) -> String {
        self.source.clone().unwrap_or_else(|| object.url())
    }

    /// The envelope parts for one object.
    pub fn object_meta(&self, object: &StagedObject) -> ObjectMeta {
        let mut tail = String::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                tail.push_str(",\"");
                tail.push_str(key);
                tail.push_str("\":");
                json_str(&mut tail, v);
            }
        };
        put("host", &self.host);
        put("source", &Some(self.source_of(object)));
        put("sourcetype", &self.sourcetype);
        put("index", &self.index);
        tail.push_str(&self.fields);
        tail.push_str(",\"event\":");
        let mut arrival = String::new();
        EventTime::from_datetime(object.arrival_time).write(&mut arrival);
        ObjectMeta {
            tail: tail.into_bytes(),
            arrival,
            source: self.source_of(object),
        }
    }

    /// Query parameters of a raw request carrying records of `object`.
    pub fn raw_query(&self, object: &StagedObject) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        let fixed = [
            ("host", &self.host),
            ("sourcetype", &self.sourcetype),
            ("index", &self.index),
        ];
        for (k, v) in fixed {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q.push(("source", self.source_of(object)));
        q
    }

    /// Appends one record to `out` in the endpoint's form; returns where the record's own
    /// bytes (the `event` value, or the raw line) lie in `out`.
    pub fn push(&self, meta: &ObjectMeta, record: &[u8], out: &mut BytesMut) -> Range<usize> {
        match self.endpoint {
            HecEndpoint::Event => self.push_event(meta, record, out),
            HecEndpoint::Raw => self.push_raw(record, out),
        }
    }

    fn push_event(&self, meta: &ObjectMeta, record: &[u8], out: &mut BytesMut) -> Range<usize> {
        out.extend_from_slice(b"{\"time\":");
        match self.time_field.as_ref().and_then(|p| time_at(p, record)) {
            Some(t) => t.write(out),
            None => out.extend_from_slice(meta.arrival.as_bytes()),
        }
        if self.routes.is_empty() {
            out.extend_from_slice(&meta.tail);
        } else {
            self.push_routed_tail(meta, record, out);
        }
        let start = out.len();
        match self.framing {
            Framing::Lines => {
                let text = String::from_utf8_lossy(record);
                let mut w = bytes::BufMut::writer(&mut *out);
                serde_json::to_writer(&mut w, &*text).expect("a string serializes");
            }
            _ => out.extend_from_slice(record),
        }
        let end = out.len();
        out.extend_from_slice(b"}\n");
        start..end
    }

    /// The envelope's metadata with each configured field's value from the record, else the
    /// fixed value.
    fn push_routed_tail(&self, meta: &ObjectMeta, record: &[u8], out: &mut BytesMut) {
        for (key, pointer) in &self.routes {
            let from_record = pointer.as_ref().and_then(|p| match p.lookup(record)? {
                Scalar::Str(s) if !s.is_empty() => Some(s),
                Scalar::Str(_) => None,
                Scalar::Int(n) => Some(n.to_string()),
                Scalar::Uint(n) => Some(n.to_string()),
                Scalar::Float(f) => Some(f.to_string()),
            });
            let fixed = match *key {
                "host" => self.host.as_deref(),
                "source" => Some(meta.source.as_str()),
                "sourcetype" => self.sourcetype.as_deref(),
                _ => self.index.as_deref(),
            };
            let Some(value) = from_record.as_deref().or(fixed) else {
                continue;
            };
            out.extend_from_slice(b",\"");
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            let mut w = bytes::BufMut::writer(&mut *out);
            serde_json::to_writer(&mut w, value).expect("a string serializes");
        }
        out.extend_from_slice(self.fields.as_bytes());
        out.extend_from_slice(b",\"event\":");
    }

    fn push_raw(&self, record: &[u8], out: &mut BytesMut) -> Range<usize> {
        let start = out.len();
        out.extend_from_slice(record);
        // A JSON value spread over lines would become several raw events. Raw line breaks are
        // only ever whitespace between tokens in valid JSON, so blanking them keeps the value.
        if self.framing != Framing::Lines {
            for b in &mut out[start..] {
                if *b == b'\n' || *b == b'\r' {
                    *b = b' ';
                }
            }
        }
        let end = out.len();
        out.extend_from_slice(b"\n");
        start..end
    }

    /// The record as it was in the object, from its bytes in a body (the inverse of `push`
    /// for text lines, which travel as JSON strings).
    pub fn original(&self, in_body: &[u8]) -> Vec<u8> {
        match (self.endpoint, self.framing) {
            (HecEndpoint::Event, Framing::Lines) => serde_json::from_slice::<String>(in_body)
                .map(String::into_bytes)
                .unwrap_or_else(|_| in_body.to_vec()),
            _ => in_body.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::secret::Secret;
    use chrono::TimeZone;

    fn config(endpoint: HecEndpoint) -> SplunkConfig {
        let text = r#"
            url = "http://127.0.0.1:1"
            token = "t"
            index = "idx"
            sourcetype = "st"
            host = "h\"1"
            time_field = "/ts"
            fields = { team = "web", b = "2" }
        "#;
        let mut c: SplunkConfig = toml::from_str(text).unwrap();
        c.endpoint = endpoint;
        c.token = Secret::new("t");
        c
    }

    fn object() -> StagedObject {
        StagedObject {
            id: 1,
            bucket: "b".into(),
            key: "k/1.json".into(),
            etag: "e".into(),
            size: 1,
            arrival_time: chrono::Utc.timestamp_millis_opt(1_764_300_000_250).unwrap(),
        }
    }

    #[test]
    fn event_envelopes_splice_the_record_bytes() {
        let enc = Encoder::new(&config(HecEndpoint::Event), Framing::JsonLines).unwrap();
        let meta = enc.object_meta(&object());
        let mut out = BytesMut::new();
        let r1 = enc.push(&meta, br#"{"ts":1426279439,"a": [1, 2]}"#, &mut out);
        let r2 = enc.push(&meta, br#"{"no_ts":true}"#, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"time":1426279439,"host":"h\"1","source":"s3://b/k/1.json","sourcetype":"st","index":"idx","fields":{"b":"2","team":"web"},"event":{"ts":1426279439,"a": [1, 2]}}"#,
                "\n",
                r#"{"time":1764300000.25,"host":"h\"1","source":"s3://b/k/1.json","sourcetype":"st","index":"idx","fields":{"b":"2","team":"web"},"event":{"no_ts":true}}"#,
                "\n"
            )
        );
        assert_eq!(&out[r1.clone()], br#"{"ts":1426279439,"a": [1, 2]}"#);
        assert_eq!(&out[r2], br#"{"no_ts":true}"#);
        // Every envelope is valid JSON, in a stream of concatenated values.
        let n = serde_json::Deserializer::from_slice(&out)
            .into_iter::<serde_json::Value>()
            .inspect(|v| assert!(v.is_ok(), "{v:?}"))
            .count();
        assert_eq!(n, 2);
    }

    #[test]
    fn index_sourcetype_source_and_host_come_from_each_event_when_named() {
        let mut c = config(HecEndpoint::Event);
        c.index_field = Some("/team".into());
        c.sourcetype_field = Some("/kind".into());
        c.source_field = Some("/origin".into());
        c.host_field = Some("/h".into());
        let enc = Encoder::new(&c, Framing::JsonLines).unwrap();
        let meta = enc.object_meta(&object());
        let mut out = BytesMut::new();
        enc.push(
            &meta,
            br#"{"team":"pay","kind":"app:log","origin":"svc","h":7}"#,
            &mut out,
        );
        enc.push(&meta, br#"{"team":"","other":1}"#, &mut out);
        let envelopes: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let meta_of = |v: &serde_json::Value| {
            ["host", "source", "sourcetype", "index"].map(|k| v[k].as_str().unwrap().to_string())
        };
        assert_eq!(meta_of(&envelopes[0]), ["7", "svc", "app:log", "pay"]);
        // Fields missing or empty: the fixed values, and the object's URL as source.
        assert_eq!(
            meta_of(&envelopes[1]),
            ["h\"1", "s3://b/k/1.json", "st", "idx"]
        );
        assert_eq!(envelopes[1]["fields"]["team"], "web");
        assert_eq!(envelopes[1]["event"]["other"], 1);
    }

    #[test]
    fn text_lines_become_json_strings_and_come_back() {
        let enc = Encoder::new(&config(HecEndpoint::Event), Framing::Lines).unwrap();
        let meta = enc.object_meta(&object());
        let mut out = BytesMut::new();
        let r = enc.push(&meta, b"say \"hi\"\tnow", &mut out);
        assert_eq!(&out[r.clone()], br#""say \"hi\"\tnow""#);
        assert_eq!(enc.original(&out[r]), b"say \"hi\"\tnow");
        // No time field on text lines: the arrival time.
        assert!(out.starts_with(b"{\"time\":1764300000.25,"));
    }

    #[test]
    fn raw_bodies_are_lines_with_metadata_in_the_query() {
        let enc = Encoder::new(&config(HecEndpoint::Raw), Framing::JsonConcat).unwrap();
        let meta = enc.object_meta(&object());
        let mut out = BytesMut::new();
        enc.push(&meta, b"{\"a\":\n 1}", &mut out);
        enc.push(&meta, b"{\"b\":2}", &mut out);
        assert_eq!(&out[..], b"{\"a\":  1}\n{\"b\":2}\n");
        let q = enc.raw_query(&object());
        assert!(q.contains(&("source", "s3://b/k/1.json".to_string())));
        assert!(q.contains(&("index", "idx".to_string())));
        assert!(enc.source_per_object());
    }
}
