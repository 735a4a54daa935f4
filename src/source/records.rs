//! Reading a batch's records for the destinations that read records (file, Elasticsearch,
//! Splunk): [`Walk`] opens each object in S3, streams it through decompression and framing (or,
//! for `parquet`, reads its row groups by ranged GETs), and turns what goes wrong into
//! `load_errors` rows with the object's URL and line.

use super::decode::ReadErrorKind;
use super::framing::{Framing, ReadError, RecordError};
use super::parquet::{self, ParquetOptions};
use super::reader::{
    spawn_reader, BlockHook, ReadOptions, ReaderItem, RecordBlock, RecordRef, RecordStream,
};
use super::s3::{S3Error, S3};
use crate::codes;
use crate::config::SourceConfig;
use crate::model::{cut_raw, LoadError, StagedObject};
use std::sync::Arc;

/// Bytes of records per block handed to a destination.
pub const BLOCK_BYTES: usize = 1 << 20;

/// Objects a [`Walk`] opens ahead of the one being read, so a batch of many small objects
/// does not wait one GET round trip per object.
pub const OPEN_AHEAD: usize = 16;

/// Objects are opened ahead only while their sizes together stay within this, so big objects
/// (whose GET round trip is nothing beside their reading) are opened one at a time as before:
/// each opened object has a reader decoding up to two blocks ahead.
pub const OPEN_AHEAD_BYTES: i64 = 8 << 20;

/// Why an object could not be opened.
#[derive(Debug)]
enum OpenFailure {
    /// Gone: the object is skipped on its own with this row.
    Missing(Box<LoadError>),
    /// Anything else (S3 unreachable, throttled): the attempt fails and is retried.
    Transient(S3Error),
}

/// An object being opened ahead, on a task of its own so its GET goes on while the object
/// before it is read.
struct Opening {
    start: Start,
    size: i64,
    task: tokio::task::JoinHandle<Result<RecordStream, OpenFailure>>,
}

/// Opens an object and starts reading its records.
async fn open(
    s3: &S3,
    object: &StagedObject,
    source: &SourceConfig,
    hook: Option<Arc<dyn BlockHook>>,
) -> Result<RecordStream, OpenFailure> {
    let opened = if source.format == Framing::Parquet {
        let opts = ParquetOptions {
            max_record_bytes: source.max_record_bytes,
            block_bytes: BLOCK_BYTES,
            batch_rows: parquet::BATCH_ROWS,
            hook,
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
                        hook,
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
        record_ordinal: Some(e.ordinal as i64),
        raw_line: cut_raw(&e.raw),
        err_code: e.err_code,
        err_reason: e.reason.clone(),
        ..LoadError::default()
    }
}

/// How an object's reading ended badly.
#[derive(Debug)]
enum ReadFailure {
    /// Corrupt or truncated data: the object is skipped with this row after the records
    /// before the damage were delivered.
    Corrupt(Box<LoadError>),
    /// The stream broke (S3 reset): the attempt fails and is retried.
    Transient(String),
}

/// Classifies the error that ended an object.
fn read_failure(object: &StagedObject, e: &ReadError) -> ReadFailure {
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

/// Where a [`Walk`] reads an object from: its index in the batch, and the ordinal of the first
/// record (and record error) to hand on; earlier ones were handled by an earlier attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The object's index in the batch.
    pub index: usize,
    /// The first ordinal to hand on.
    pub from: u64,
}

/// Records of one object, from its [`Start`] on.
#[derive(Debug)]
pub struct Block {
    /// The object's index in the batch.
    pub index: usize,
    /// The first ordinal handed on for this object.
    pub from: u64,
    /// The block as read; [`Block::records`] and [`Block::errors`] leave out what is before
    /// `from`.
    pub block: RecordBlock,
}

impl Block {
    /// The records at or past `from`, with their bytes.
    pub fn records(&self) -> impl Iterator<Item = (RecordRef, &[u8])> + '_ {
        let from = self.from;
        self.block.iter().filter(move |(r, _)| r.ordinal >= from)
    }

    /// The framing rejections at or past `from`.
    pub fn errors(&self) -> impl Iterator<Item = &RecordError> + '_ {
        let from = self.from;
        self.block.errors.iter().filter(move |e| e.ordinal >= from)
    }
}

/// One step of a [`Walk`].
#[derive(Debug)]
pub enum Step {
    /// The next records of the object being read.
    Block(Block),
    /// The object was read to its end.
    Done {
        /// Its index in the batch.
        index: usize,
    },
    /// The object is skipped on its own with this row: missing when opened, or corrupt or
    /// truncated after the records before the damage were handed on.
    Skipped {
        /// Its index in the batch.
        index: usize,
        /// Its `load_errors` row.
        row: Box<LoadError>,
    },
    /// The object cannot be read now (S3 unreachable or throttled, the stream reset): what
    /// was handed on of it stands, and the walk goes on with the next object. The message
    /// names the object's URL.
    Unreadable {
        /// Its index in the batch.
        index: usize,
        /// What went wrong.
        error: String,
    },
}

/// The one walk over a batch's records that every record-reading destination consumes (the
/// file writer, Elasticsearch's attempt and write-off, Splunk's attempt and write-off): opens
/// each planned object in turn, streams its records block by block, and says how each object
/// ended. Each destination decides what an unreadable object means for it (fail the attempt,
/// or write the object off).
///
/// Objects are opened ahead of the one being read, in plan order (up to [`OPEN_AHEAD`], while
/// they total at most [`OPEN_AHEAD_BYTES`]); steps still come object by object in plan order.
///
/// [`Walk::next`] is cancel-safe: dropped before it returns (in a `select!`), it loses nothing
/// and the next call carries on where it was.
pub struct Walk<'a> {
    s3: &'a S3,
    source: std::sync::Arc<SourceConfig>,
    objects: &'a [StagedObject],
    plan: std::iter::Peekable<std::vec::IntoIter<Start>>,
    current: Option<(Start, RecordStream)>,
    opening: std::collections::VecDeque<Opening>,
    hook: Option<Arc<dyn BlockHook>>,
}

impl Drop for Walk<'_> {
    fn drop(&mut self) {
        for o in &self.opening {
            o.task.abort();
        }
    }
}

impl<'a> Walk<'a> {
    /// Walks the objects named by `plan`, in its order.
    pub fn new(
        s3: &'a S3,
        source: &'a SourceConfig,
        objects: &'a [StagedObject],
        plan: impl IntoIterator<Item = Start>,
    ) -> Walk<'a> {
        Walk {
            s3,
            source: std::sync::Arc::new(source.clone()),
            objects,
            plan: plan.into_iter().collect::<Vec<_>>().into_iter().peekable(),
            current: None,
            opening: std::collections::VecDeque::new(),
            hook: None,
        }
    }

    /// Runs `hook` (the pipeline's transforms) on every block, on the reading threads.
    pub fn with_hook(mut self, hook: Option<Arc<dyn BlockHook>>) -> Walk<'a> {
        self.hook = hook;
        self
    }

    /// Starts opening the next planned objects, within [`OPEN_AHEAD`] and [`OPEN_AHEAD_BYTES`].
    fn open_ahead(&mut self) {
        let mut bytes: i64 = self.opening.iter().map(|o| o.size).sum();
        while self.opening.len() < OPEN_AHEAD {
            let Some(&start) = self.plan.peek() else {
                break;
            };
            let size = self.objects[start.index].size.max(0);
            // The object the walk is waiting for is always opened, whatever its size.
            let waited_for = self.current.is_none() && self.opening.is_empty();
            if !waited_for && bytes + size > OPEN_AHEAD_BYTES {
                break;
            }
            self.plan.next();
            bytes += size;
            let (s3, source) = (self.s3.clone(), std::sync::Arc::clone(&self.source));
            let (object, hook) = (self.objects[start.index].clone(), self.hook.clone());
            let task = tokio::spawn(async move { open(&s3, &object, &source, hook).await });
            self.opening.push_back(Opening { start, size, task });
        }
    }

    /// Walks every object of the batch from its first record.
    pub fn all(s3: &'a S3, source: &'a SourceConfig, objects: &'a [StagedObject]) -> Walk<'a> {
        let plan = (0..objects.len()).map(|index| Start { index, from: 0 });
        Walk::new(s3, source, objects, plan)
    }

    /// True while an object is open (its next step is a block or its end, not an open).
    pub fn is_reading(&self) -> bool {
        self.current.is_some()
    }

    /// The next step; `None` once every planned object has ended.
    pub async fn next(&mut self) -> Option<Step> {
        loop {
            self.open_ahead();
            if let Some((start, stream)) = &mut self.current {
                let start = *start;
                let object = &self.objects[start.index];
                let step = match stream.next().await {
                    Some(ReaderItem::Block(block)) => {
                        return Some(Step::Block(Block {
                            index: start.index,
                            from: start.from,
                            block,
                        }))
                    }
                    Some(ReaderItem::End(Ok(_))) | None => Step::Done { index: start.index },
                    Some(ReaderItem::End(Err(e))) => match read_failure(object, &e) {
                        ReadFailure::Corrupt(row) => Step::Skipped {
                            index: start.index,
                            row,
                        },
                        ReadFailure::Transient(error) => Step::Unreadable {
                            index: start.index,
                            error,
                        },
                    },
                };
                self.current = None;
                return Some(step);
            }
            // The open stays at the front until it completes, so a cancelled `next` awaits the
            // same open again rather than skipping it.
            let front = self.opening.front_mut()?;
            let joined = (&mut front.task).await;
            let start = self.opening.pop_front().expect("the front open").start;
            let opened = match joined {
                Ok(opened) => opened,
                Err(e) => {
                    return Some(Step::Unreadable {
                        index: start.index,
                        error: format!(
                            "{}: opening the object failed: {e}",
                            self.objects[start.index].url()
                        ),
                    })
                }
            };
            match opened {
                Ok(stream) => self.current = Some((start, stream)),
                Err(OpenFailure::Missing(row)) => {
                    return Some(Step::Skipped {
                        index: start.index,
                        row,
                    })
                }
                // S3's error already names the object's URL.
                Err(OpenFailure::Transient(e)) => {
                    return Some(Step::Unreadable {
                        index: start.index,
                        error: e.to_string(),
                    })
                }
            }
        }
    }

    /// Hands a consumed block back for reuse, saving the reader an allocation; optional.
    pub fn recycle(&self, block: Block) {
        if let Some((start, stream)) = &self.current {
            if start.index == block.index {
                stream.recycle(block.block);
            }
        }
    }
}
