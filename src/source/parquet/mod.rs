//! `source.format = "parquet"`: an object read as Apache Parquet, row group by row group, for
//! the destinations that read records (file, Elasticsearch, Splunk). It owns the reading; the
//! records come out as the same [`RecordStream`] the text formats give, so the destinations do
//! not know the difference.
//!
//! The footer is read with one ranged GET of the object's last 64 KiB, then each row group's column chunks with
//! ranged GETs ([`S3Ranges`], every request pinned to the listed ETag). A row group is decoded
//! on a blocking thread in batches of [`BATCH_ROWS`] rows and each row written as one JSON
//! object by `arrow-json` ([`rows`]); the next row group is fetched only once the previous one
//! is decoded and its records handed on, so memory holds one row group's column chunks plus the
//! channel's blocks, whatever the object's size. `source.compression` does not apply: Parquet
//! compresses its pages itself.
//!
//! A record's line is its 1-based row number in the object, its ordinal the 0-based row index.
//! A file that is not Parquet (bad magic or footer) or a corrupt page ends the object with
//! [`ReadError::Invalid`] at the row reached; an S3 failure on the way ends it with
//! [`ReadError::Io`], which the destinations retry.

mod ranges;
mod rows;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
};
use ::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use ::parquet::arrow::ParquetRecordBatchStreamBuilder;
use ::parquet::errors::ParquetError;
use arrow_schema::{DataType, FieldRef, Schema};

pub use ranges::{FetchError, S3Ranges};
use rows::Rows;

use crate::model::StagedObject;
use crate::source::decode::Compression;
use crate::source::framing::ReadError;
use crate::source::reader::{
    failed_stream, record_channel, BlockHook, BlockSink, ObjectEnd, ReaderItem, RecordBlock,
    RecordStream,
};
use crate::source::s3::{S3Error, S3};

/// Rows per decoded batch.
pub const BATCH_ROWS: usize = 4096;

/// How to read one Parquet object.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    /// Rows whose JSON is longer than this are rejected with `RECORD_TOO_LARGE`.
    pub max_record_bytes: usize,
    /// Target bytes of record data per block.
    pub block_bytes: usize,
    /// Rows per decoded batch.
    pub batch_rows: usize,
    /// Run on each block on the decoding thread before it is handed over (the transforms).
    pub hook: Option<Arc<dyn BlockHook>>,
}

/// Opens `object` as Parquet and starts reading its rows. An S3 failure reading the footer is
/// returned ([`S3Error::NotFound`] for a missing or rewritten object); a file that is not
/// Parquet gives a stream that ends at once with [`ReadError::Invalid`].
pub async fn open(
    s3: &S3,
    object: &StagedObject,
    opts: ParquetOptions,
) -> Result<RecordStream, S3Error> {
    let input = S3Ranges::new(s3.clone(), object);
    let fetched = input.fetched();
    start(input, opts, fetched).await
}

/// [`open`] over any reader; `fetched` counts its bytes for [`ObjectEnd::bytes_read`].
pub async fn start<R>(
    mut input: R,
    opts: ParquetOptions,
    fetched: Arc<AtomicU64>,
) -> Result<RecordStream, S3Error>
where
    R: AsyncFileReader + Unpin + Send + 'static,
{
    let meta = match ArrowReaderMetadata::load_async(&mut input, ArrowReaderOptions::new()).await {
        Ok(m) => m,
        Err(e) => {
            return match fault(e, 1) {
                Fault::Fetch(e) => Err(e),
                Fault::Data(e) => Ok(failed_stream(e)),
            }
        }
    };
    let meta = match utc_offsets(&meta) {
        Some(Ok(m)) => m,
        Some(Err(e)) => return Ok(failed_stream(read_error(e, 1))),
        None => meta,
    };
    let stream = match ParquetRecordBatchStreamBuilder::new_with_metadata(input, meta)
        .with_batch_size(opts.batch_rows.max(1))
        .build()
    {
        Ok(s) => s,
        Err(e) => return Ok(failed_stream(read_error(e, 1))),
    };
    let (sink, records) = record_channel();
    tokio::spawn(drive(stream, sink, opts, fetched));
    Ok(records)
}

/// The metadata read with every named time zone (`"UTC"`, `"Europe/Paris"`, as pyarrow and
/// Spark write into the Arrow schema they embed) replaced by `+00:00`, or `None` when there is
/// none. `arrow-json` prints only offset time zones without the tz database; the instant is the
/// same, so such timestamps are written in UTC (`...Z`).
fn utc_offsets(meta: &ArrowReaderMetadata) -> Option<Result<ArrowReaderMetadata, ParquetError>> {
    let schema = meta.schema();
    let mut changed = false;
    let fields: Vec<FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match offset_type(f.data_type()) {
            Some(t) => {
                changed = true;
                Arc::new(f.as_ref().clone().with_data_type(t))
            }
            None => Arc::clone(f),
        })
        .collect();
    if !changed {
        return None;
    }
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    Some(ArrowReaderMetadata::try_new(
        Arc::clone(meta.metadata()),
        ArrowReaderOptions::new().with_schema(schema),
    ))
}

/// `t` with named time zones replaced by `+00:00`, or `None` when it has none.
fn offset_type(t: &DataType) -> Option<DataType> {
    let field = |f: &FieldRef| {
        offset_type(f.data_type()).map(|t| Arc::new(f.as_ref().clone().with_data_type(t)))
    };
    match t {
        DataType::Timestamp(unit, Some(tz)) if !tz.starts_with(['+', '-']) => {
            Some(DataType::Timestamp(*unit, Some("+00:00".into())))
        }
        DataType::List(f) => field(f).map(DataType::List),
        DataType::LargeList(f) => field(f).map(DataType::LargeList),
        DataType::FixedSizeList(f, n) => field(f).map(|f| DataType::FixedSizeList(f, *n)),
        DataType::Map(f, sorted) => field(f).map(|f| DataType::Map(f, *sorted)),
        DataType::Struct(fields) => {
            let mapped: Vec<Option<FieldRef>> = fields.iter().map(field).collect();
            mapped.iter().any(Option::is_some).then(|| {
                DataType::Struct(
                    fields
                        .iter()
                        .zip(mapped)
                        .map(|(f, m)| m.unwrap_or_else(|| Arc::clone(f)))
                        .collect(),
                )
            })
        }
        _ => None,
    }
}

/// What a parquet error is about.
enum Fault {
    /// An S3 request failed.
    Fetch(S3Error),
    /// The data is not readable Parquet.
    Data(ReadError),
}

fn fault(e: ParquetError, line: u64) -> Fault {
    let invalid = |reason: String| {
        Fault::Data(ReadError::Invalid {
            format: "Parquet",
            line,
            reason,
        })
    };
    match e {
        ParquetError::External(inner) => match inner.downcast::<FetchError>() {
            Ok(f) => Fault::Fetch(f.0),
            Err(other) => invalid(other.to_string()),
        },
        e => invalid(e.to_string()),
    }
}

/// The error that ends an object at row `line`: an S3 failure mid-object is a stream failure
/// (retried; a rewritten object is then found missing when opened again).
fn read_error(e: ParquetError, line: u64) -> ReadError {
    match fault(e, line) {
        Fault::Fetch(e) => ReadError::Io {
            line,
            source: io::Error::other(e.to_string()),
        },
        Fault::Data(e) => e,
    }
}

/// Fetches row groups one at a time and decodes each on a blocking thread.
async fn drive<R>(
    mut stream: ParquetRecordBatchStream<R>,
    sink: BlockSink,
    opts: ParquetOptions,
    fetched: Arc<AtomicU64>,
) where
    R: AsyncFileReader + Unpin + Send + 'static,
{
    let mut state = (
        Rows::new(opts.max_record_bytes),
        sink.block(opts.block_bytes),
        sink,
    );
    let end = loop {
        if state.2.tx.is_closed() {
            // The consumer is gone: fetch nothing more.
            return;
        }
        let next = stream.next_row_group().await;
        let (rows, _, _) = &state;
        let line = rows.rows + 1;
        match next {
            Ok(Some(group)) => {
                let (mut rows, mut block, sink) = state;
                let (block_bytes, hook) = (opts.block_bytes, opts.hook.clone());
                let decoded = tokio::task::spawn_blocking(move || {
                    let r = decode_group(group, &mut rows, &mut block, &sink, block_bytes, hook);
                    (r, (rows, block, sink))
                })
                .await;
                // A panic drops the sink: the stream then reports a reader that ended early.
                let Ok((result, back)) = decoded else { return };
                state = back;
                match result {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => break Err(e),
                }
            }
            Ok(None) => {
                let (rows, _, _) = &state;
                break Ok(ObjectEnd {
                    compression: Compression::None,
                    records: rows.records,
                    errors: rows.errors,
                    bytes_read: fetched.load(Ordering::Relaxed),
                    bytes_decompressed: rows.bytes,
                    lines: rows.rows,
                });
            }
            Err(e) => break Err(read_error(e, line)),
        }
    };
    let (_, mut block, sink) = state;
    if let Some(hook) = opts.hook.clone() {
        let transformed = tokio::task::spawn_blocking(move || {
            hook.apply(&mut block, &mut RecordBlock::default());
            block
        })
        .await;
        let Ok(transformed) = transformed else { return };
        block = transformed;
    }
    if !block.is_empty() && sink.tx.send(ReaderItem::Block(block)).await.is_err() {
        return;
    }
    let _ = sink.tx.send(ReaderItem::End(end)).await;
}

/// Decodes one row group into blocks; false when the consumer is gone.
fn decode_group(
    group: ParquetRecordBatchReader,
    rows: &mut Rows,
    block: &mut RecordBlock,
    sink: &BlockSink,
    block_bytes: usize,
    hook: Option<Arc<dyn BlockHook>>,
) -> Result<bool, ReadError> {
    let mut spare = RecordBlock::default();
    let mut full = |b: &mut RecordBlock| {
        let mut done = std::mem::replace(b, sink.block(block_bytes));
        if let Some(hook) = &hook {
            hook.apply(&mut done, &mut spare);
        }
        sink.tx.blocking_send(ReaderItem::Block(done)).is_ok()
    };
    for batch in group {
        let invalid = |reason: String, line: u64| ReadError::Invalid {
            format: "Parquet",
            line,
            reason,
        };
        let batch = batch.map_err(|e| invalid(e.to_string(), rows.rows + 1))?;
        if !rows
            .write(&batch, block, block_bytes, &mut full)
            .map_err(|e| invalid(e.to_string(), rows.rows + 1))?
        {
            return Ok(false);
        }
    }
    Ok(true)
}
