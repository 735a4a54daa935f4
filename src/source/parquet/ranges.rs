//! Parquet's [`AsyncFileReader`] over S3 ranged GETs of one version of one object: the footer
//! with one range at the end of the object (64 KiB, more only for a larger footer), then the
//! column chunks a row group needs, coalesced: chunks less than [`MAX_GAP`] apart go in one
//! `Range: bytes=<first>-<last>` request, so a row group (whose chunks are contiguous) is one
//! GET however many columns it has, where one GET per chunk made a 300-column file of 12 row
//! groups 3,614 sequential requests. Every request is pinned to the listed ETag with `If-Match`
//! so a rewritten object is never read in two versions.

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

/// Column chunks at most this far apart are fetched in one request; the bytes between them are
/// read and dropped (the same bound as the `object_store` crate's range coalescing).
const MAX_GAP: u64 = 1024 * 1024;

/// The requests that fetch `ranges`: sorted, each merging the ranges less than `max_gap` apart.
fn coalesce(ranges: &[Range<u64>], max_gap: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(max_gap) => {
                last.end = last.end.max(r.end);
            }
            _ => out.push(r),
        }
    }
    out
}

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

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            let mut fetched: Vec<(Range<u64>, Bytes)> = Vec::new();
            for r in coalesce(&ranges, MAX_GAP) {
                let bytes = self.get_bytes(r.clone()).await?;
                fetched.push((r, bytes));
            }
            Ok(ranges
                .iter()
                .map(|r| {
                    let (within, bytes) = fetched
                        .iter()
                        .find(|(m, _)| m.start <= r.start && r.end <= m.end)
                        .expect("every range is inside one request");
                    bytes.slice((r.start - within.start) as usize..(r.end - within.start) as usize)
                })
                .collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_and_near_chunks_go_in_one_request() {
        // 300 contiguous column chunks: one request.
        let chunks: Vec<Range<u64>> = (0..300).map(|i| 4 + i * 100..4 + (i + 1) * 100).collect();
        assert_eq!(coalesce(&chunks, MAX_GAP), vec![4..30_004]);
        // Out of order, one small gap, one large gap, an overlap.
        let asked = vec![
            5_000_000..5_000_010,
            0..10,
            20..30,
            25..40,
            3_000_000..3_000_001,
        ];
        assert_eq!(
            coalesce(&asked, MAX_GAP),
            vec![0..40, 3_000_000..3_000_001, 5_000_000..5_000_010]
        );
        assert_eq!(coalesce(&[], MAX_GAP), Vec::<Range<u64>>::new());
    }
}
