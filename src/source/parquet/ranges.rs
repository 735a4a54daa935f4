//! Parquet's [`AsyncFileReader`] over S3 ranged GETs of one version of one object: the footer
//! with one range at the end of the object (64 KiB, more only for a larger footer), each column
//! chunk with `Range: bytes=<first>-<last>`, every request pinned to the listed ETag with
//! `If-Match` so a rewritten object is never read in two versions.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::parquet::arrow::arrow_reader::ArrowReaderOptions;
use ::parquet::arrow::async_reader::AsyncFileReader;
use ::parquet::errors::{ParquetError, Result};
use ::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt};

use crate::model::StagedObject;
use crate::source::s3::{S3Error, S3};

/// Bytes at the end of the object fetched for the footer in one request; a larger footer
/// costs a second request.
const FOOTER_PREFETCH: usize = 64 * 1024;

/// An S3 request that failed (not the data): carried through parquet's errors as
/// [`ParquetError::External`] so the reader can tell it from corrupt data.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FetchError(pub S3Error);

/// One object version read by ranges.
pub struct S3Ranges {
    s3: S3,
    bucket: String,
    key: String,
    etag: String,
    size: u64,
    fetched: Arc<AtomicU64>,
}

impl S3Ranges {
    /// Reads `object` (its size and ETag as the ledger recorded them).
    pub fn new(s3: S3, object: &StagedObject) -> Self {
        S3Ranges {
            s3,
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            etag: object.etag.clone(),
            size: object.size.max(0) as u64,
            fetched: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts the bytes fetched so far (shared with clones of the counter).
    pub fn fetched(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.fetched)
    }

    async fn fetch(&self, range: String, want: Option<u64>) -> Result<Bytes> {
        let bytes = self
            .s3
            .get_range(&self.bucket, &self.key, &self.etag, &range)
            .await
            .map_err(|e| ParquetError::External(Box::new(FetchError(e))))?;
        if want.is_some_and(|n| n != bytes.len() as u64) {
            // With the ETag pinned this is a response cut short: worth another attempt.
            return Err(ParquetError::External(Box::new(FetchError(
                S3Error::Request {
                    op: "get",
                    bucket: self.bucket.clone(),
                    key: self.key.clone(),
                    message: format!(
                        "range {range} returned {} bytes, expected {}",
                        bytes.len(),
                        want.unwrap_or_default()
                    ),
                },
            ))));
        }
        self.fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
}

impl AsyncFileReader for S3Ranges {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        async move {
            if range.start >= range.end || range.end > self.size {
                // Offsets from a corrupt footer: the data is bad, no request can help.
                return Err(ParquetError::EOF(format!(
                    "the file asks for bytes {}..{} of an object of {} bytes",
                    range.start, range.end, self.size
                )));
            }
            let spec = format!("{}-{}", range.start, range.end - 1);
            self.fetch(spec, Some(range.end - range.start)).await
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        async move {
            let reader = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_PREFETCH))
                .with_arrow_reader_options(options);
            // A range at the end rather than a suffix range (`bytes=-<n>`): the size is known,
            // and some S3-compatible servers fail a suffix longer than the object instead of
            // returning the whole object.
            let size = self.size;
            Ok(Arc::new(reader.load_and_finish(self, size).await?))
        }
        .boxed()
    }
}
