//! Reading one staged object's records for the destinations that read records (file,
//! Elasticsearch, Splunk): open it in S3, stream it through decompression and framing (or, for
//! `parquet`, read its row groups by ranged GETs), and turn what goes wrong into `load_errors`
//! rows with the object's URL and line.

use super::decode::ReadErrorKind;
use super::framing::{Framing, ReadError, RecordError};
use super::parquet::{self, ParquetOptions};
use super::reader::{spawn_reader, ReadOptions, RecordStream};
use super::s3::{S3Error, S3};
use crate::codes;
use crate::config::SourceConfig;
use crate::model::{cut_raw, LoadError, StagedObject};

/// Bytes of records per block handed to a destination.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Why an object could not be opened.
#[derive(Debug)]
pub enum OpenFailure {
    /// Gone: the object is skipped on its own with this row.
    Missing(Box<LoadError>),
    /// Anything else (S3 unreachable, throttled): the attempt fails and is retried.
    Transient(S3Error),
}

/// Opens an object and starts reading its records.
pub async fn open(
    s3: &S3,
    object: &StagedObject,
    source: &SourceConfig,
) -> Result<RecordStream, OpenFailure> {
    let opened = if source.format == Framing::Parquet {
        let opts = ParquetOptions {
            max_record_bytes: source.max_record_bytes,
            block_bytes: BLOCK_BYTES,
            batch_rows: parquet::BATCH_ROWS,
        };
        parquet::open(s3, object, opts).await
    } else {
        s3.open(&object.bucket, &object.key, Some(&object.etag))
            .await
            .map(|opened| {
                spawn_reader(
                    opened.body,
                    ReadOptions {
                        compression: source.compression,
                        key: object.key.clone(),
                        content_encoding: opened.content_encoding,
                        format: source.format_options(),
                        max_record_bytes: source.max_record_bytes,
                        block_bytes: BLOCK_BYTES,
                    },
                )
            })
    };
    match opened {
        Ok(stream) => Ok(stream),
        Err(e @ S3Error::NotFound { .. }) => Err(OpenFailure::Missing(Box::new(LoadError {
            object_id: Some(object.id),
            filename: object.url(),
            err_code: codes::OBJECT_MISSING,
            err_reason: format!("object missing when read: {e}"),
            ..LoadError::default()
        }))),
        Err(e) => Err(OpenFailure::Transient(e)),
    }
}

/// The `load_errors` row for a rejected record.
pub fn record_error_row(object: &StagedObject, e: &RecordError) -> LoadError {
    LoadError {
        object_id: Some(object.id),
        filename: object.url(),
        line_number: e.line as i64,
        raw_line: cut_raw(&e.raw),
        err_code: e.err_code,
        err_reason: e.reason.clone(),
        ..LoadError::default()
    }
}

/// How an object's reading ended badly.
#[derive(Debug)]
pub enum ReadFailure {
    /// Corrupt or truncated data: the object is skipped with this row after the records
    /// before the damage were delivered.
    Corrupt(Box<LoadError>),
    /// The stream broke (S3 reset): the attempt fails and is retried.
    Transient(String),
}

/// Classifies the error that ended an object.
pub fn read_failure(object: &StagedObject, e: &ReadError) -> ReadFailure {
    match e.kind() {
        ReadErrorKind::Decompress => ReadFailure::Corrupt(Box::new(LoadError {
            object_id: Some(object.id),
            filename: object.url(),
            line_number: e.line() as i64,
            err_code: e.err_code(),
            err_reason: format!("{e}; records before line {} were delivered", e.line()),
            ..LoadError::default()
        })),
        ReadErrorKind::Io => ReadFailure::Transient(format!("{}: {e}", object.url())),
    }
}
