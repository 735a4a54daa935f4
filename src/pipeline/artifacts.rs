//! Error artifacts left in S3 for skipped loads, in Firehose's layout: a Redshift manifest of
//! skipped objects under `errors/manifests/YYYY/MM/DD/HH/`, or failed-record JSON lines under
//! `<destination>-failed/YYYY/MM/DD/HH/`.

use crate::model::StagedObject;
use chrono::{DateTime, Utc};
use serde_json::json;

/// A Redshift manifest listing objects: `entries` with `url`, `mandatory: true` and
/// `meta.content_length` (protocols.md 1.3), loadable with `COPY ... MANIFEST`.
pub fn manifest(objects: &[StagedObject]) -> Vec<u8> {
    let entries: Vec<_> = objects
        .iter()
        .map(|o| json!({"url": o.url(), "mandatory": true, "meta": {"content_length": o.size}}))
        .collect();
    let mut out = serde_json::to_vec_pretty(&json!({ "entries": entries })).expect("manifest json");
    out.push(b'\n');
    out
}

/// `YYYY/MM/DD/HH/` of a time, in UTC.
pub fn hour_path(t: DateTime<Utc>) -> String {
    t.format("%Y/%m/%d/%H/").to_string()
}

/// The key of a skipped batch's manifest.
pub fn error_manifest_key(
    error_prefix: &str,
    pipeline: &str,
    batch: i64,
    now: DateTime<Utc>,
) -> String {
    format!(
        "{error_prefix}errors/manifests/{}{pipeline}-{batch}.manifest",
        hour_path(now)
    )
}

/// The key of a file of failed records (`kind` is `elasticsearch` or `splunk`).
pub fn failed_records_key(
    error_prefix: &str,
    kind: &str,
    pipeline: &str,
    batch: i64,
    attempt: i32,
    now: DateTime<Utc>,
) -> String {
    format!(
        "{error_prefix}{kind}-failed/{}{pipeline}-{batch}-{attempt}-{}",
        hour_path(now),
        now.format("%Y-%m-%d-%H-%M-%S")
    )
}

/// Failed records as JSON lines.
pub fn json_lines(records: &[serde_json::Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("json value serializes");
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn obj(key: &str, size: i64) -> StagedObject {
        StagedObject {
            id: 1,
            bucket: "stage".into(),
            key: key.into(),
            etag: "e".into(),
            size,
            arrival_time: Utc::now(),
        }
    }

    #[test]
    fn manifest_lists_every_object_as_mandatory() {
        let m: serde_json::Value =
            serde_json::from_slice(&manifest(&[obj("a/b c.gz", 10), obj("é\"q", 3)])).unwrap();
        assert_eq!(m["entries"][0]["url"], "s3://stage/a/b c.gz");
        assert_eq!(m["entries"][0]["mandatory"], true);
        assert_eq!(m["entries"][0]["meta"]["content_length"], 10);
        assert_eq!(m["entries"][1]["url"], "s3://stage/é\"q");
    }

    #[test]
    fn keys_follow_firehose_layout() {
        let t = Utc.with_ymd_and_hms(2026, 2, 5, 7, 8, 9).unwrap();
        assert_eq!(
            error_manifest_key("errors/clicks/", "clicks", 42, t),
            "errors/clicks/errors/manifests/2026/02/05/07/clicks-42.manifest"
        );
        assert_eq!(
            failed_records_key("e/", "elasticsearch", "p", 3, 2, t),
            "e/elasticsearch-failed/2026/02/05/07/p-3-2-2026-02-05-07-08-09"
        );
    }
}
