//! Parquet rows into records: each row of a decoded `RecordBatch` written as one JSON object by
//! `arrow-json`'s encoder (the encoder its `LineDelimitedWriter` uses, so types map as that
//! writer maps them), appended to a [`RecordBlock`] with its 1-based row number as its line.

use std::sync::Arc;

use arrow_array::{Array, RecordBatch, StructArray};
use arrow_json::writer::{make_encoder, EncoderOptions};
use arrow_schema::{ArrowError, Field};

use crate::source::framing::{RecordError, RAW_LIMIT};
use crate::source::reader::{RecordBlock, RecordRef};

/// Turns batches into records, counting rows across the object's row groups.
#[derive(Debug)]
pub struct Rows {
    /// Rows seen so far: the next row's 0-based ordinal.
    pub rows: u64,
    /// Rows delivered as records.
    pub records: u64,
    /// Rows rejected (larger than the record limit).
    pub errors: u64,
    /// JSON bytes written.
    pub bytes: u64,
    max_record_bytes: usize,
    options: EncoderOptions,
}

impl Rows {
    /// Rows longer than `max_record_bytes` once written are rejected with `RECORD_TOO_LARGE`.
    pub fn new(max_record_bytes: usize) -> Self {
        Rows {
            rows: 0,
            records: 0,
            errors: 0,
            bytes: 0,
            max_record_bytes,
            options: EncoderOptions::default(),
        }
    }

    /// Appends the rows of `batch` to `block`, calling `full` with the block each time it holds
    /// `block_bytes` or more; `full` returns false when the consumer is gone, and so does this.
    pub fn write(
        &mut self,
        batch: &RecordBatch,
        block: &mut RecordBlock,
        block_bytes: usize,
        full: &mut dyn FnMut(&mut RecordBlock) -> bool,
    ) -> Result<bool, ArrowError> {
        let array = StructArray::from(batch.clone());
        let field = Arc::new(Field::new_struct(
            "",
            batch.schema().fields().clone(),
            false,
        ));
        let mut encoder = make_encoder(&field, &array as &dyn Array, &self.options)?;
        for i in 0..batch.num_rows() {
            let start = block.data.len();
            encoder.encode(i, &mut block.data);
            let (ordinal, line) = (self.rows, self.rows + 1);
            self.rows += 1;
            let len = block.data.len() - start;
            self.bytes += len as u64;
            if len > self.max_record_bytes {
                let raw = block.data[start..start + len.min(RAW_LIMIT)].to_vec();
                block.data.truncate(start);
                block.errors.push(RecordError::too_large(
                    self.max_record_bytes,
                    line,
                    ordinal,
                    raw,
                ));
                self.errors += 1;
            } else {
                block.records.push(RecordRef {
                    start,
                    end: block.data.len(),
                    line,
                    ordinal,
                });
                self.records += 1;
            }
            if block.data.len() + block.errors.len() * 1024 >= block_bytes && !full(block) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
