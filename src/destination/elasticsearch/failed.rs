//! What a failed document leaves behind: a `load_errors` row and a failed-document record in
//! Firehose's format (`attemptsMade`, `arrivalTimestamp`, `errorCode`, `errorMessage`,
//! `attemptEndingTimestamp`, `esDocumentId`, `esIndexName`, `rawData`).

use crate::destination::failed::{Extra, FailedRecord};
use crate::model::{LoadError, StagedObject};
use serde_json::Value;

/// One document that will not be indexed.
pub struct Failed<'a> {
    /// Its object.
    pub object: &'a StagedObject,
    /// Line of the record.
    pub line: u64,
    /// Ordinal of the record in its object.
    pub ordinal: u64,
    /// The record's bytes as read (or as much as is known of them).
    pub raw: &'a [u8],
    /// Item status, or the loader's own code.
    pub code: i32,
    /// Why.
    pub reason: String,
    /// The intended index.
    pub index: String,
    /// The intended id; empty when the server would have assigned one.
    pub id: String,
    /// Index requests attempted for it.
    pub attempts: i32,
}

impl Failed<'_> {
    fn failed_record(&self) -> FailedRecord<'_> {
        FailedRecord {
            object: self.object,
            line: self.line,
            ordinal: self.ordinal,
            raw: self.raw,
            err_code: self.code,
            reason: &self.reason,
            error_code: self.code.to_string(),
            attempts: self.attempts.max(0) as u32,
            target: &self.index,
            extra: Extra::Elasticsearch {
                id: self.id.clone(),
                index: self.index.clone(),
            },
        }
    }

    /// The `load_errors` row.
    pub fn row(&self) -> LoadError {
        self.failed_record().row()
    }

    /// The failed-document record, in Firehose's layout for OpenSearch delivery failures
    /// (<https://docs.aws.amazon.com/firehose/latest/dev/retry.html>); timestamps in epoch milliseconds.
    pub fn record(&self) -> Value {
        self.failed_record().record()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_and_record_carry_the_same_facts() {
        let object = StagedObject {
            id: 7,
            bucket: "b".into(),
            key: "k/1.json".into(),
            etag: "e".into(),
            size: 1,
            arrival_time: chrono::DateTime::from_timestamp(1_456_405_200, 0).unwrap(),
        };
        let f = Failed {
            object: &object,
            line: 3,
            ordinal: 2,
            raw: br#"{"user_id":"abc"}"#,
            code: 400,
            reason: "mapper_parsing_exception: failed to parse".into(),
            index: "logs-2016-02-25".into(),
            id: "abc".into(),
            attempts: 2,
        };
        let row = f.row();
        assert_eq!(row.filename, "s3://b/k/1.json");
        assert_eq!((row.line_number, row.err_code), (3, 400));
        assert_eq!(row.target, "logs-2016-02-25");
        let r = f.record();
        assert_eq!(r["arrivalTimestamp"], 1_456_405_200_000i64);
        assert_eq!(r["errorCode"], "400");
        assert_eq!(r["rawData"], "eyJ1c2VyX2lkIjoiYWJjIn0=");
        assert_eq!(r["esIndexName"], "logs-2016-02-25");
        assert_eq!(r["attemptsMade"], 2);
    }
}
