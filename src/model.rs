//! Plain types shared by the control database, the dispatcher and the destinations.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// One staged object as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedObject {
    /// Ledger id.
    pub id: i64,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag without quotes.
    pub etag: String,
    /// Size in bytes as stored (compressed).
    pub size: i64,
    /// Arrival time: from the key's time partition, else LastModified.
    pub arrival_time: DateTime<Utc>,
}

impl StagedObject {
    /// `s3://bucket/key`, the form Redshift's `filename` column uses.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// A digest of a set of objects (URL and ETag of each, order-free): the Redshift marker
/// commits to it, and the file destination names its files by it.
pub fn objects_digest(objects: &[StagedObject]) -> u128 {
    let mut lines: Vec<String> = objects
        .iter()
        .map(|o| format!("{}\t{}\n", o.url(), o.etag))
        .collect();
    lines.sort();
    xxhash_rust::xxh3::xxh3_128(lines.concat().as_bytes())
}

/// A batch claimed for delivery.
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    /// Batch id.
    pub id: i64,
    /// Pipeline name.
    pub pipeline: String,
    /// Attempts made before this claim.
    pub attempts: i32,
    /// When the first attempt started (set at the first claim and kept across takeovers).
    pub first_attempt_at: DateTime<Utc>,
    /// The claim's fencing token: renewing, recording attempts and settling present it, and
    /// fail once another worker has taken the batch over.
    pub lease_token: String,
    /// The first batch of its replay chain (its own id unless it replays a skipped batch).
    pub origin: i64,
    /// True when the batch was taken over from a worker whose lease expired: the destination
    /// must check whether the earlier attempt already committed.
    pub taken_over: bool,
    /// The objects still to deliver (state `batched`).
    pub objects: Vec<StagedObject>,
    /// Ids of the objects an operator asked by name to load again (`stageload backfill
    /// --reload`): destinations that remember what they hold load these anyway.
    pub reload: Vec<i64>,
    /// Asks the control database whether this claim still holds the lease, for a destination
    /// about to do something a second owner must never see done twice (publishing a file).
    /// Set by the dispatcher; None outside a delivery.
    pub lease: Option<Lease>,
}

/// Whether a claim still holds its lease, answered by whoever keeps leases (the control
/// database): destinations may ask but never write it.
#[async_trait::async_trait]
pub trait LeaseCheck: Send + Sync {
    /// True while the lease is this claim's (and extended by it), false once another worker
    /// took the batch over; an error when the keeper cannot be asked.
    async fn held(&self) -> Result<bool, String>;
}

/// A shared [`LeaseCheck`].
#[derive(Clone)]
pub struct Lease(pub Arc<dyn LeaseCheck>);

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease(..)")
    }
}

/// One row for `load_errors`, with the `STL_LOAD_ERRORS` columns a destination can fill.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadError {
    /// The object the error is about, when known.
    pub object_id: Option<i64>,
    /// `s3://bucket/key` of the object.
    pub filename: String,
    /// Line of the record (last line of a multi-line JSON value); 0 when about the whole object.
    pub line_number: i64,
    /// The record's 0-based position in its object, which tells apart the many records one line
    /// of `json_concat`, `json_array` or CloudTrail holds; None when the row is about a whole
    /// object or a line as the destination reported it.
    pub record_ordinal: Option<i64>,
    /// Column or field.
    pub colname: String,
    /// Data type of the column.
    pub type_: String,
    /// Column length.
    pub col_length: String,
    /// Position of the error within the field.
    pub position: i32,
    /// The record, cut to 1024 bytes.
    pub raw_line: String,
    /// The field's raw value, cut to 1024 bytes.
    pub raw_field_value: String,
    /// Redshift load code, item/HTTP status, HEC code, or the loader's own 91xx.
    pub err_code: i32,
    /// Why.
    pub err_reason: String,
    /// Redshift's query id, for COPY errors.
    pub query: i64,
    /// Redshift's is_partial.
    pub is_partial: i32,
    /// Redshift's start_offset.
    pub start_offset: i64,
    /// Table, index or sourcetype; the destination's target when empty.
    pub target: String,
}

/// Cuts bytes to at most 1024 bytes of text, as Redshift cuts `raw_line`; invalid UTF-8 and NUL
/// (which PostgreSQL text cannot hold) become U+FFFD.
pub fn cut_raw(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(1024);
    // Never split a UTF-8 sequence.
    while end < bytes.len() && end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    String::from_utf8_lossy(&bytes[..end]).replace('\0', "\u{FFFD}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_lines_are_cut_at_a_char_boundary() {
        let long = "é".repeat(1000);
        let cut = cut_raw(long.as_bytes());
        assert!(cut.len() <= 1024 && cut.chars().all(|c| c == 'é'));
        assert_eq!(cut_raw(b"a\0b\xff"), "a\u{FFFD}b\u{FFFD}");
    }
}
