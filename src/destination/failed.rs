//! One record a destination did not take, and the two things it leaves: a `load_errors` row and
//! a failed-record JSON line in Firehose's layout for its destination
//! (<https://docs.aws.amazon.com/firehose/latest/dev/retry.html>): `attemptsMade`,
//! `arrivalTimestamp` and `attemptEndingTimestamp` (epoch milliseconds), `errorCode`,
//! `errorMessage`, `rawData` (base64), plus the destination's own keys (`esDocumentId` and
//! `esIndexName` for OpenSearch, `EventId` for Splunk). Elasticsearch and Splunk both build
//! their rows and records here, so the two never disagree on what a row or a record says.

use crate::model::{cut_raw, LoadError, StagedObject};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};

/// The keys a failed record carries for its destination.
#[derive(Debug, Clone)]
pub enum Extra {
    /// OpenSearch/Elasticsearch: the intended document id (empty when the server would have
    /// assigned one) and index.
    Elasticsearch {
        /// `esDocumentId`.
        id: String,
        /// `esIndexName`.
        index: String,
    },
    /// Splunk: `EventId`, which names the record uniquely.
    Splunk {
        /// `EventId`.
        event_id: String,
    },
}

/// A record that will not be delivered.
#[derive(Debug, Clone)]
pub struct FailedRecord<'a> {
    /// Its object.
    pub object: &'a StagedObject,
    /// Its (last) line in the object.
    pub line: u64,
    /// Its 0-based ordinal in the object.
    pub ordinal: u64,
    /// The record as read, or as much as is known of it.
    pub raw: &'a [u8],
    /// `load_errors.err_code`: an item status, a HEC code, an HTTP status or the loader's 91xx.
    pub err_code: i32,
    /// Why, for `err_reason` and `errorMessage`.
    pub reason: &'a str,
    /// Firehose's `errorCode`.
    pub error_code: String,
    /// Attempts made (`attemptsMade`).
    pub attempts: u32,
    /// `load_errors.target`: the index, or empty.
    pub target: &'a str,
    /// The destination's own keys.
    pub extra: Extra,
}

impl FailedRecord<'_> {
    /// The `load_errors` row.
    pub fn row(&self) -> LoadError {
        LoadError {
            object_id: Some(self.object.id),
            filename: self.object.url(),
            line_number: self.line as i64,
            record_ordinal: Some(self.ordinal as i64),
            raw_line: cut_raw(self.raw),
            err_code: self.err_code,
            err_reason: self.reason.to_string(),
            target: self.target.to_string(),
            ..LoadError::default()
        }
    }

    /// The failed-record JSON line.
    pub fn record(&self) -> Value {
        let mut v = json!({
            "attemptsMade": self.attempts,
            "arrivalTimestamp": self.object.arrival_time.timestamp_millis(),
            "errorCode": self.error_code,
            "errorMessage": self.reason,
            "attemptEndingTimestamp": Utc::now().timestamp_millis(),
            "rawData": STANDARD.encode(self.raw),
        });
        match &self.extra {
            Extra::Elasticsearch { id, index } => {
                v["esDocumentId"] = json!(id);
                v["esIndexName"] = json!(index);
            }
            Extra::Splunk { event_id } => v["EventId"] = json!(event_id),
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_and_record_say_the_same_thing_for_both_destinations() {
        let object = StagedObject {
            id: 7,
            bucket: "b".into(),
            key: "k/1.json".into(),
            etag: "e".into(),
            size: 1,
            arrival_time: chrono::DateTime::from_timestamp(1_456_405_200, 0).unwrap(),
        };
        for extra in [
            Extra::Elasticsearch {
                id: "x".into(),
                index: "clicks".into(),
            },
            Extra::Splunk {
                event_id: "7.2".into(),
            },
        ] {
            let f = FailedRecord {
                object: &object,
                line: 3,
                ordinal: 2,
                raw: b"{\"a\":1}",
                err_code: 400,
                reason: "bad",
                error_code: "400".into(),
                attempts: 2,
                target: "clicks",
                extra: extra.clone(),
            };
            let (row, rec) = (f.row(), f.record());
            assert_eq!(row.filename, "s3://b/k/1.json");
            assert_eq!((row.line_number, row.err_code), (3, 400));
            assert_eq!(rec["errorMessage"], row.err_reason);
            assert_eq!(rec["attemptsMade"], 2);
            assert_eq!(rec["arrivalTimestamp"], 1_456_405_200_000i64);
            assert_eq!(rec["rawData"], "eyJhIjoxfQ==");
            match extra {
                Extra::Elasticsearch { .. } => {
                    assert_eq!(
                        (&rec["esDocumentId"], &rec["esIndexName"]),
                        (&json!("x"), &json!("clicks"))
                    );
                    assert!(rec.get("EventId").is_none());
                }
                Extra::Splunk { .. } => {
                    assert_eq!(rec["EventId"], "7.2");
                    assert!(rec.get("esIndexName").is_none());
                }
            }
        }
    }
}
