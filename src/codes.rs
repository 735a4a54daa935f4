//! The loader's own `err_code` values in `load_errors`: the reserved range 9100 to 9199.
//!
//! Redshift's COPY codes (1200 to 1224, 8001, ...), bulk item statuses and HEC codes are stored
//! as the destination reported them; these are the reasons that come from stageload itself.

/// The batch's retry duration ran out before it could be delivered.
pub const BUDGET_EXHAUSTED: i32 = 9100;
/// The staged object was listed but is gone (404 on GET) when it was read.
pub const OBJECT_MISSING: i32 = 9101;
/// The object could not be decompressed (truncated or corrupt gzip, zstd, snappy, zip).
pub const DECOMPRESSION_FAILED: i32 = 9102;
/// A record under a JSON framing is not valid JSON.
pub const INVALID_JSON: i32 = 9103;
/// A record is larger than the pipeline's record size limit.
pub const RECORD_TOO_LARGE: i32 = 9104;
/// Reading the object from S3 failed for a reason other than a missing object.
pub const READ_FAILED: i32 = 9105;
/// The destination refused the whole batch for a reason that is not about one record.
pub const BATCH_REJECTED: i32 = 9106;
/// A record does not fit its format: a CSV or log line with too few fields or a value that is
/// not of its documented type, an unclosed CSV quote, a truncated JSON array, a document with
/// no array where `json_array` points.
pub const MALFORMED_RECORD: i32 = 9110;
/// The object is not a readable file of its binary format: a Parquet file with a bad magic
/// number or footer, or a corrupt page.
pub const INVALID_FILE: i32 = 9111;
/// A record's transform step failed at run time (a jq error such as indexing a string): the
/// record alone is rejected; `err_reason` names the step.
pub const TRANSFORM_FAILED: i32 = 9112;
