//! `format = "csv"`: a header line, then one record per row, as a JSON object keyed by the
//! header's names with every value a string. Quoting follows RFC 4180 (a quoted field may hold
//! the delimiter, doubled quotes and line breaks); the parsing is `csv-core`'s, fed line by line
//! so memory stays bounded by the record size limit. A row with more or fewer fields than the
//! header, or a quoted field still open at the end of the object, is a `load_errors` row.

use std::collections::VecDeque;

use csv_core::{ReadRecordResult, Reader, ReaderBuilder, Terminator};

use super::{malformed, push_json_str, Convert};
use crate::codes;
use crate::source::framing::{RecordError, RAW_LIMIT};

/// The `csv` converter.
pub struct Csv {
    reader: Reader,
    max_record_bytes: usize,
    /// The header's names, each already a JSON string followed by `:`.
    keys: Option<Vec<Vec<u8>>>,
    /// The current record's field bytes and where each field ends.
    fields: Vec<u8>,
    ends: Vec<usize>,
    nout: usize,
    nend: usize,
    /// A record has begun and not ended (a quoted field goes on over lines).
    open: bool,
    /// The current record's text so far, cut to [`RAW_LIMIT`], for its row.
    raw: Vec<u8>,
    record_bytes: usize,
    first_line: u64,
}

impl Csv {
    /// A converter splitting fields on `delimiter`, quoting with `quote`, rejecting records
    /// longer than `max_record_bytes`.
    pub fn new(delimiter: u8, quote: u8, max_record_bytes: usize) -> Self {
        Csv {
            reader: build(delimiter, quote),
            max_record_bytes,
            keys: None,
            fields: vec![0; 4096],
            ends: vec![0; 64],
            nout: 0,
            nend: 0,
            open: false,
            raw: Vec::new(),
            record_bytes: 0,
            first_line: 0,
        }
    }

    /// Feeds bytes to the parser; true when they completed a record.
    fn feed(&mut self, mut input: &[u8]) -> bool {
        loop {
            let (res, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.fields[self.nout..],
                &mut self.ends[self.nend..],
            );
            input = &input[nin..];
            self.nout += nout;
            self.nend += nend;
            match res {
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return false,
                ReadRecordResult::OutputFull => {
                    let n = self.fields.len() * 2;
                    self.fields.resize(n, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                ReadRecordResult::Record => {
                    debug_assert!(input.is_empty(), "a record ends only at a line's end");
                    return true;
                }
            }
        }
    }

    fn clear(&mut self) {
        self.nout = 0;
        self.nend = 0;
        self.open = false;
        self.raw.clear();
        self.record_bytes = 0;
    }

    /// Drops a record in progress (its rest will be read as new rows) and starts afresh.
    fn abandon(&mut self) {
        self.reader.reset();
        self.clear();
    }

    fn write_object(&self, keys: &[Vec<u8>], out: &mut Vec<u8>) {
        out.clear();
        out.push(b'{');
        let mut start = 0;
        for (i, (key, &end)) in keys.iter().zip(&self.ends[..self.nend]).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            push_json_str(out, &self.fields[start..end]);
            start = end;
        }
        out.push(b'}');
    }
}

fn build(delimiter: u8, quote: u8) -> Reader {
    ReaderBuilder::new()
        .delimiter(delimiter)
        .quote(quote)
        .terminator(Terminator::Any(b'\n'))
        .build()
}

impl Convert for Csv {
    fn line(
        &mut self,
        line: u64,
        gap: u64,
        bytes: &[u8],
        out: &mut Vec<u8>,
        rows: &mut VecDeque<RecordError>,
    ) -> Option<u64> {
        if !self.open {
            self.first_line = line;
        } else {
            // Empty lines inside a quoted field: the raw framer skipped them.
            for _ in 0..gap {
                self.feed(b"\n");
            }
        }
        self.record_bytes += bytes.len() + 1 + gap as usize;
        if self.raw.len() < RAW_LIMIT {
            if self.open {
                self.raw.push(b'\n');
            }
            let take = bytes.len().min(RAW_LIMIT.saturating_sub(self.raw.len()));
            self.raw.extend_from_slice(&bytes[..take]);
        }
        if self.record_bytes > self.max_record_bytes {
            rows.push_back(RecordError {
                err_code: codes::RECORD_TOO_LARGE,
                reason: format!(
                    "record is larger than the limit of {} bytes (a quoted field opened on line {} \
                     is not closed?)",
                    self.max_record_bytes, self.first_line
                ),
                line,
                ordinal: 0,
                raw: std::mem::take(&mut self.raw),
            });
            self.abandon();
            return None;
        }
        self.open = true;
        let done = self.feed(bytes) || self.feed(b"\n");
        if !done {
            return None;
        }
        let Some(keys) = &self.keys else {
            let mut keys = Vec::with_capacity(self.nend);
            let mut start = 0;
            for &end in &self.ends[..self.nend] {
                let mut key = Vec::new();
                push_json_str(&mut key, &self.fields[start..end]);
                key.push(b':');
                keys.push(key);
                start = end;
            }
            self.keys = Some(keys);
            self.clear();
            return None;
        };
        let result = if self.nend == keys.len() {
            self.write_object(keys, out);
            Some(line)
        } else {
            rows.push_back(malformed(
                format!(
                    "the row has {} fields, the header has {}",
                    self.nend,
                    keys.len()
                ),
                line,
                &self.raw,
            ));
            None
        };
        self.clear();
        result
    }

    fn finish(&mut self, _out: &mut Vec<u8>, rows: &mut VecDeque<RecordError>) -> Option<u64> {
        if self.open {
            let raw = std::mem::take(&mut self.raw);
            rows.push_back(malformed(
                format!(
                    "unclosed quote: the object ends inside a quoted field opened on line {}",
                    self.first_line
                ),
                self.first_line,
                &raw,
            ));
            self.abandon();
        }
        None
    }

    fn interrupt(&mut self, rows: &mut VecDeque<RecordError>) {
        if self.open {
            let raw = std::mem::take(&mut self.raw);
            rows.push_back(malformed(
                "the row is cut by a line over the record size limit".into(),
                self.first_line,
                &raw,
            ));
            self.abandon();
        }
    }
}
