//! Error artifacts left in S3 for skipped loads, in Firehose's layout: a Redshift manifest of
//! skipped objects under `errors/manifests/YYYY/MM/DD/HH/`, or failed-record JSON lines under
//! `<destination>-failed/YYYY/MM/DD/HH/`. A write-off's failed records stream into one object
//! part by part ([`FailedRecords`]), never held whole.

use crate::model::StagedObject;
use crate::source::s3::{S3Error, Upload, MAX_PARTS, MIN_PART_BYTES, S3};
use chrono::{DateTime, Utc};
use serde_json::json;

/// A Redshift manifest listing objects: `entries` with `url`, `mandatory: true` and
/// `meta.content_length`
/// (<https://docs.aws.amazon.com/redshift/latest/dg/loading-data-files-using-manifest.html>), loadable with `COPY ... MANIFEST`.
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

/// Bytes of failed records that go up as one part: S3's least part size ([`MIN_PART_BYTES`]),
/// which keeps a write-off's memory low. Parts are cut at this size exactly, whatever the line
/// boundaries (the object is their concatenation), so the buffer never grows past it.
pub const PART_BYTES: usize = MIN_PART_BYTES;

/// One failed-record object written as the records come: JSON lines gather up to
/// [`PART_BYTES`], then go up as one part of a multipart upload (one part at a time). An object that never reaches
/// one part is written with a plain PUT when it is finished.
///
/// When a part cannot be written the upload is aborted and the records after it are dropped:
/// each still has its `load_errors` row. [`FailedRecords::finish`] says what happened.
#[derive(Debug)]
pub struct FailedRecords {
    s3: S3,
    bucket: String,
    key: String,
    buf: Vec<u8>,
    upload: Option<Upload>,
    records: u64,
    dropped: u64,
    error: Option<S3Error>,
    part_bytes: usize,
}

/// What became of a failed-record object.
#[derive(Debug)]
pub struct Written {
    /// `s3://bucket/key`.
    pub url: String,
    /// JSON lines written.
    pub records: u64,
    /// JSON lines lost because the object could not be written.
    pub dropped: u64,
    /// Parts of its multipart upload (0 for a plain PUT or nothing written).
    pub parts: usize,
    /// Why the object, or some of it, could not be written.
    pub error: Option<S3Error>,
}

impl FailedRecords {
    /// An object to be written at `bucket`/`key`.
    pub fn new(s3: S3, bucket: &str, key: &str) -> Self {
        FailedRecords::with_part_bytes(s3, bucket, key, PART_BYTES)
    }

    /// As [`FailedRecords::new`], with parts of `part_bytes` (at least [`MIN_PART_BYTES`]).
    pub fn with_part_bytes(s3: S3, bucket: &str, key: &str, part_bytes: usize) -> Self {
        FailedRecords {
            s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
            buf: Vec::new(),
            upload: None,
            records: 0,
            dropped: 0,
            error: None,
            part_bytes: part_bytes.max(MIN_PART_BYTES),
        }
    }

    /// Appends `records` JSON lines (each ending in a newline); sends a part when enough have
    /// gathered.
    pub async fn append(&mut self, lines: &[u8], records: u64) {
        if self.error.is_some() {
            self.dropped += records;
            return;
        }
        self.records += records;
        let mut rest = lines;
        while !rest.is_empty() && self.error.is_none() {
            if self
                .upload
                .as_ref()
                .is_some_and(|u| u.parts() + 1 >= MAX_PARTS)
            {
                // One part must stay for the rest: it gathers in memory.
                self.buf.extend_from_slice(rest);
                break;
            }
            let room = self.part_bytes.saturating_sub(self.buf.len()).max(1);
            let (now, later) = rest.split_at(room.min(rest.len()));
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(self.part_bytes);
            }
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() >= self.part_bytes {
                self.send_part().await;
            }
        }
    }

    async fn send_part(&mut self) {
        if self.upload.is_none() {
            match self.s3.start_upload(&self.bucket, &self.key, NDJSON).await {
                Ok(u) => self.upload = Some(u),
                Err(e) => return self.fail(e).await,
            }
        }
        let upload = self.upload.as_mut().expect("upload started");
        let body = std::mem::take(&mut self.buf);
        if let Err(e) = upload.part(body).await {
            self.fail(e).await;
        }
    }

    /// The object cannot be written: abort the upload, count what was gathered as dropped.
    async fn fail(&mut self, e: S3Error) {
        self.dropped = self.records;
        self.records = 0;
        self.buf = Vec::new();
        if let Some(upload) = self.upload.take() {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(bucket = %self.bucket, key = %self.key, error = %abort, "multipart upload not aborted; its parts stay until a lifecycle rule removes them");
            }
        }
        self.error = Some(e);
    }

    /// Writes what is left and completes the object.
    pub async fn finish(mut self) -> Written {
        if self.error.is_none() && self.records > 0 {
            match self.upload.take() {
                None => {
                    let body = std::mem::take(&mut self.buf);
                    if let Err(e) = self.s3.put(&self.bucket, &self.key, body, NDJSON).await {
                        self.fail(e).await;
                    }
                }
                Some(mut upload) => {
                    let body = std::mem::take(&mut self.buf);
                    let done = match body.is_empty() {
                        true => Ok(()),
                        false => upload.part(body).await,
                    };
                    let parts = upload.parts();
                    match done {
                        Ok(()) => match upload.complete().await {
                            Ok(()) => {
                                return Written {
                                    url: format!("s3://{}/{}", self.bucket, self.key),
                                    records: self.records,
                                    dropped: 0,
                                    parts,
                                    error: None,
                                }
                            }
                            Err(e) => self.fail(e).await,
                        },
                        Err(e) => {
                            self.upload = Some(upload);
                            self.fail(e).await;
                        }
                    }
                }
            }
        }
        Written {
            url: format!("s3://{}/{}", self.bucket, self.key),
            records: self.records,
            dropped: self.dropped,
            parts: 0,
            error: self.error,
        }
    }
}

const NDJSON: &str = "application/x-ndjson";

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
