//! What is left of records HEC did not take: a `load_errors` row and a failed-event record in
//! Firehose's `splunk-failed/` format
//! (<https://docs.aws.amazon.com/firehose/latest/dev/retry.html>) for each.
//!
//! Firehose's `EventId` is a Kinesis sequence number and subsequence; here it is
//! `<ledger object id>.<record ordinal>`, which names the record just as uniquely.

use crate::destination::failed::{Extra, FailedRecord};
use crate::model::{LoadError, StagedObject};

/// One record that was not delivered.
#[derive(Debug, Clone, Copy)]
pub struct Lost<'a> {
    /// Its object.
    pub object: &'a StagedObject,
    /// Line in the object.
    pub line: u64,
    /// Ordinal in the object.
    pub ordinal: u64,
    /// The record as it was in the object.
    pub raw: &'a [u8],
}

/// Why it was not delivered.
#[derive(Debug, Clone, Copy)]
pub struct Why<'a> {
    /// `err_code`: a HEC code, an HTTP status, or the loader's 91xx.
    pub err_code: i32,
    /// `err_reason`.
    pub reason: &'a str,
    /// Firehose's `errorCode`.
    pub firehose_code: &'a str,
    /// Attempts made on the batch so far.
    pub attempts: u32,
}

fn failed_record<'a>(lost: &Lost<'a>, why: &Why<'a>) -> FailedRecord<'a> {
    FailedRecord {
        object: lost.object,
        line: lost.line,
        ordinal: lost.ordinal,
        raw: lost.raw,
        err_code: why.err_code,
        reason: why.reason,
        error_code: why.firehose_code.to_string(),
        attempts: why.attempts,
        target: "",
        extra: Extra::Splunk {
            event_id: format!("{}.{}", lost.object.id, lost.ordinal),
        },
    }
}

/// The `load_errors` row.
pub fn row(lost: &Lost<'_>, why: &Why<'_>) -> LoadError {
    failed_record(lost, why).row()
}

/// The failed-event record.
pub fn record(lost: &Lost<'_>, why: &Why<'_>) -> serde_json::Value {
    failed_record(lost, why).record()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_record_has_firehose_keys() {
        let object = StagedObject {
            id: 4,
            bucket: "b".into(),
            key: "k".into(),
            etag: "e".into(),
            size: 1,
            arrival_time: chrono::Utc::now(),
        };
        let lost = Lost {
            object: &object,
            line: 3,
            ordinal: 2,
            raw: b"null",
        };
        let why = Why {
            err_code: 6,
            reason: "Invalid data format",
            firehose_code: "Splunk.InvalidDataFormat",
            attempts: 1,
        };
        let r = record(&lost, &why);
        for key in [
            "attemptsMade",
            "arrivalTimestamp",
            "errorCode",
            "errorMessage",
            "attemptEndingTimestamp",
            "rawData",
            "EventId",
        ] {
            assert!(r.get(key).is_some(), "{key}");
        }
        assert_eq!(r["rawData"], "bnVsbA==");
        assert_eq!(r["EventId"], "4.2");
        let row = row(&lost, &why);
        assert_eq!((row.line_number, row.err_code), (3, 6));
        assert_eq!(row.filename, "s3://b/k");
    }
}
