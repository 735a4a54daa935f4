//! Record framing: finds record boundaries in a decoded stream (`json_lines`, `json_concat`,
//! `lines`, and the elements of a JSON array for `json_array`/`cloudtrail`) without building a
//! tree, validates JSON records, and reports per-record errors and the fatal error that ends an
//! object, with Redshift-style line numbers and stable ordinals.
//!
//! Two paths: [`RawFramer`] hands out records as slices of its read buffer (zero copy: the three
//! original framings and JSON array elements); the formats that build new bytes (`csv`, the AWS
//! log layouts, multi-line `lines`) run a converter from [`crate::source::formats`] over the raw
//! framer's lines and write each record into a reusable buffer. [`Framer`] picks the path.

use std::collections::VecDeque;
use std::io::{self, Read};

pub use crate::config::Framing;
use serde::de::IgnoredAny;

use crate::codes;
use crate::source::decode::{classify, ReadErrorKind};
use crate::source::formats::{self, Convert, FormatOptions};
use crate::source::json_check;

/// Initial size of the framer's read buffer; it grows only to hold one long record.
pub const BUFFER_BYTES: usize = 256 * 1024;

/// `raw` in a [`RecordError`] is cut to this many bytes, as Redshift cuts `raw_line`.
pub const RAW_LIMIT: usize = 1024;

/// One record, borrowed from the framer's buffer until the next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// 0-based index of the record in the object, counting rejected records too.
    pub ordinal: u64,
    /// 1-based number of the record's last line.
    pub line: u64,
    /// The record without its line ending.
    pub bytes: &'a [u8],
}

/// A record the framer rejected; the object goes on after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// [`codes::INVALID_JSON`] or [`codes::RECORD_TOO_LARGE`].
    pub err_code: i32,
    /// Short, human reason, like Redshift's `err_reason`.
    pub reason: String,
    /// 1-based number of the record's last line.
    pub line: u64,
    /// 0-based index of the record in the object.
    pub ordinal: u64,
    /// The record's first [`RAW_LIMIT`] bytes.
    pub raw: Vec<u8>,
}

impl RecordError {
    /// A record longer than `limit` bytes (`source.max_record_bytes`), rejected alone.
    pub fn too_large(limit: usize, line: u64, ordinal: u64, raw: Vec<u8>) -> RecordError {
        RecordError {
            err_code: codes::RECORD_TOO_LARGE,
            reason: format!("record is larger than the limit of {limit} bytes"),
            line,
            ordinal,
            raw,
        }
    }
}

/// What [`Framer::next_frame`] yields.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A valid record.
    Record(Record<'a>),
    /// A rejected record.
    Error(RecordError),
}

/// The error that ends an object: its records after this point cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Corrupt or truncated compressed data.
    #[error("decompression failed at line {line}: {source}")]
    Decompress {
        /// 1-based line being read when the data failed.
        line: u64,
        /// The decoder's error.
        source: io::Error,
    },
    /// The object is not a readable file of its format: a Parquet file with a bad magic
    /// number or footer, or a corrupt page.
    #[error("unreadable {format} file at row {line}: {reason}")]
    Invalid {
        /// The format (`Parquet`).
        format: &'static str,
        /// 1-based row being read when the file failed.
        line: u64,
        /// What was wrong.
        reason: String,
    },
    /// The underlying stream failed.
    #[error("read failed at line {line}: {source}")]
    Io {
        /// 1-based line being read when the stream failed.
        line: u64,
        /// The stream's error.
        source: io::Error,
    },
}

impl ReadError {
    /// Builds the error for `e`, classified with [`classify`].
    pub fn from_io(e: io::Error, line: u64) -> Self {
        match classify(&e) {
            ReadErrorKind::Decompress => ReadError::Decompress { line, source: e },
            ReadErrorKind::Io => ReadError::Io { line, source: e },
        }
    }

    /// Which side failed.
    pub fn kind(&self) -> ReadErrorKind {
        match self {
            ReadError::Decompress { .. } | ReadError::Invalid { .. } => ReadErrorKind::Decompress,
            ReadError::Io { .. } => ReadErrorKind::Io,
        }
    }

    /// `codes::DECOMPRESSION_FAILED`, `codes::INVALID_FILE` or `codes::READ_FAILED`.
    pub fn err_code(&self) -> i32 {
        match self {
            ReadError::Decompress { .. } => codes::DECOMPRESSION_FAILED,
            ReadError::Invalid { .. } => codes::INVALID_FILE,
            ReadError::Io { .. } => codes::READ_FAILED,
        }
    }

    /// 1-based line being read when the object failed.
    pub fn line(&self) -> u64 {
        match self {
            ReadError::Decompress { line, .. }
            | ReadError::Invalid { line, .. }
            | ReadError::Io { line, .. } => *line,
        }
    }
}

/// Counters of one framed object so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Records yielded as valid.
    pub records: u64,
    /// Records rejected.
    pub errors: u64,
    /// Lines read (a last line without a newline counts).
    pub lines: u64,
    /// Decoded bytes read from the stream.
    pub bytes: u64,
}

/// Resumable state of the `json_concat` value scanner.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    started: bool,
    depth: u32,
    in_str: bool,
    escape: bool,
    scalar: bool,
    /// Inside an array or object: a bare scalar also ends at `,`, `]` or `}`.
    nested: bool,
}

/// Splits a decoded stream into records found in place. A lending iterator: call
/// [`RawFramer::next_frame`] until it returns `Ok(None)` (end of object) or `Err` (fatal, after
/// every record before it).
pub struct RawFramer<R> {
    src: R,
    framing: Framing,
    max_record_bytes: usize,
    buf: Vec<u8>,
    /// Start of unconsumed data in `buf`.
    pos: usize,
    /// End of valid data in `buf`.
    filled: usize,
    /// Offset from `pos` up to which the current record has been scanned.
    scanned: usize,
    scan: Scan,
    eof: bool,
    done: bool,
    /// Newlines consumed so far.
    newlines: u64,
    /// Set while skipping the rest of an oversized record: its first bytes.
    oversized: Option<Vec<u8>>,
    ordinal: u64,
    /// The record just found was validated while finding its end.
    validated: bool,
    /// Last byte read, to count a last line without a newline.
    last_byte: u8,
    stats: FramerStats,
    /// `json_array` and `cloudtrail`: where the framer is in the document around the array.
    array: Option<Box<ArrayNav>>,
    /// First line of the oversized record being skipped (array elements report their start).
    oversized_line: u64,
}

impl<R: Read> RawFramer<R> {
    /// A framer over `src`; records longer than `max_record_bytes` are rejected. `pointer` is
    /// the JSON pointer to the array for `json_array` (`/Records` for `cloudtrail`, whatever
    /// is passed), ignored by the other framings.
    pub fn new(src: R, framing: Framing, max_record_bytes: usize, pointer: &str) -> Self {
        let max_record_bytes = max_record_bytes.max(1);
        let array = framing.is_array().then(|| {
            let pointer = if framing == Framing::Cloudtrail {
                "/Records"
            } else {
                pointer
            };
            Box::new(ArrayNav::new(pointer))
        });
        RawFramer {
            src,
            framing,
            max_record_bytes,
            buf: vec![0; BUFFER_BYTES.min(max_record_bytes + 1).max(64 * 1024)],
            pos: 0,
            filled: 0,
            scanned: 0,
            scan: Scan::default(),
            eof: false,
            done: false,
            newlines: 0,
            oversized: None,
            ordinal: 0,
            validated: false,
            last_byte: b'\n',
            stats: FramerStats::default(),
            array,
            oversized_line: 0,
        }
    }

    /// Counters so far; final once `next_frame` has returned `Ok(None)` or `Err`.
    pub fn stats(&self) -> FramerStats {
        let mut s = self.stats;
        s.lines = self.newlines + u64::from(s.bytes > 0 && self.last_byte != b'\n');
        s
    }

    /// The next record or record error, `Ok(None)` at the end of the object.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        loop {
            if self.done {
                return Ok(None);
            }
            let between = !self.scan.started && self.scanned == 0 && self.oversized.is_none();
            if self.array.is_some() && between {
                match self.array_prelude() {
                    Prelude::Element => {}
                    Prelude::More => {
                        self.fill()?;
                        continue;
                    }
                    Prelude::End => {
                        self.done = true;
                        return Ok(None);
                    }
                    Prelude::Row(e) => {
                        self.stats.errors += 1;
                        return Ok(Some(Frame::Error(e)));
                    }
                }
            } else if self.framing == Framing::JsonConcat && !self.scan.started {
                self.skip_whitespace();
            }
            let mut truncated = false;
            let (end, consumed) = match self.find_end() {
                Some(found) => found,
                None if self.eof => {
                    if self.pos == self.filled && self.oversized.is_none() {
                        self.done = true;
                        return Ok(None);
                    }
                    truncated = self.array.is_some();
                    let rest = self.filled - self.pos;
                    (rest, rest)
                }
                None => {
                    if self.filled - self.pos > self.max_record_bytes && self.oversized.is_none() {
                        self.oversized = Some(Vec::with_capacity(RAW_LIMIT));
                        self.oversized_line = self.newlines + 1;
                    }
                    if let Some(raw) = &mut self.oversized {
                        // Keep memory flat: drop what was scanned of the oversized record.
                        let want = RAW_LIMIT - raw.len();
                        let take = want.min(self.filled - self.pos);
                        raw.extend_from_slice(&self.buf[self.pos..self.pos + take]);
                        self.newlines += count_newlines(&self.buf[self.pos..self.filled]);
                        self.pos = self.filled;
                        self.scanned = 0;
                    }
                    self.fill()?;
                    continue;
                }
            };
            let (start, stop) = (self.pos, self.pos + end);
            let record_newlines = if self.framing.is_values() {
                count_newlines(&self.buf[start..stop])
            } else {
                0
            };
            // Array elements report the line they start on; the others their last line.
            let line = if self.array.is_some() {
                self.newlines + 1
            } else {
                self.newlines + record_newlines + 1
            };
            self.newlines += record_newlines + u64::from(consumed > end);
            self.pos += consumed;
            self.scanned = 0;
            self.scan = Scan::default();
            if let Some(raw) = self.oversized.take() {
                let ordinal = self.ordinal;
                self.ordinal += 1;
                let line = if self.array.is_some() {
                    self.oversized_line
                } else {
                    line
                };
                return Ok(Some(Frame::Error(self.too_large(raw, line, ordinal))));
            }
            if truncated {
                let ordinal = self.ordinal;
                self.ordinal += 1;
                self.stats.errors += 1;
                let nav = self.array.as_mut().expect("array mode");
                nav.state = NavState::Failed;
                let reason = format!(
                    "truncated JSON array: the object ends inside this element, before the \
                     array at {:?} is closed; the elements before it were delivered",
                    nav.pointer
                );
                let len = (stop - start).min(RAW_LIMIT);
                return Ok(Some(Frame::Error(RecordError {
                    err_code: codes::MALFORMED_RECORD,
                    reason,
                    line,
                    ordinal,
                    raw: self.buf[start..start + len].to_vec(),
                })));
            }
            let mut stop = stop;
            if !self.framing.is_values() {
                if stop > start && self.buf[stop - 1] == b'\r' {
                    stop -= 1;
                }
                let line_bytes = &self.buf[start..stop];
                let blank = match self.framing {
                    Framing::Lines => line_bytes.is_empty(),
                    _ => line_bytes.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')),
                };
                if blank {
                    continue;
                }
            }
            let ordinal = self.ordinal;
            self.ordinal += 1;
            let len = stop - start;
            let raw = |buf: &[u8]| buf[start..start + len.min(RAW_LIMIT)].to_vec();
            if len > self.max_record_bytes {
                let raw = raw(&self.buf);
                return Ok(Some(Frame::Error(self.too_large(raw, line, ordinal))));
            }
            if self.framing != Framing::Lines {
                let checked = if std::mem::take(&mut self.validated) {
                    check_utf8(&self.buf[start..stop]).map(drop)
                } else {
                    validate_json(&self.buf[start..stop])
                };
                if let Err(reason) = checked {
                    self.stats.errors += 1;
                    return Ok(Some(Frame::Error(RecordError {
                        err_code: codes::INVALID_JSON,
                        reason,
                        line,
                        ordinal,
                        raw: raw(&self.buf),
                    })));
                }
            }
            self.stats.records += 1;
            return Ok(Some(Frame::Record(Record {
                ordinal,
                line,
                bytes: &self.buf[start..stop],
            })));
        }
    }

    fn too_large(&mut self, raw: Vec<u8>, line: u64, ordinal: u64) -> RecordError {
        self.stats.errors += 1;
        RecordError::too_large(self.max_record_bytes, line, ordinal, raw)
    }

    /// Finds the end of the record starting at `pos`: (end of the record's bytes, bytes to
    /// consume including its delimiter), relative to `pos`.
    fn find_end(&mut self) -> Option<(usize, usize)> {
        let data = &self.buf[self.pos..self.filled];
        let values = self.framing.is_values();
        self.scan.nested = self.array.is_some();
        match self.framing {
            _ if !values => match find_newline(&data[self.scanned..]) {
                Some(i) => Some((self.scanned + i, self.scanned + i + 1)),
                None => {
                    self.scanned = data.len();
                    None
                }
            },
            _ if !self.scan.started && self.oversized.is_none() => {
                // Fast path: serde_json finds the value's end and validates it in one pass; the
                // scanner below only runs to find the extent of garbage or of an oversized value.
                let mut values =
                    serde_json::Deserializer::from_slice(data).into_iter::<IgnoredAny>();
                match values.next()? {
                    Ok(_) => {
                        let end = values.byte_offset();
                        let delimited = matches!(data[0], b'{' | b'[' | b'"');
                        if end == data.len() && !delimited && !self.eof {
                            return None; // a number may go on in the next read
                        }
                        self.validated = true;
                        Some((end, end))
                    }
                    Err(e) if e.is_eof() && data.len() <= self.max_record_bytes => None,
                    // Garbage, or a value already too large: the scanner finds where it ends.
                    Err(_) => {
                        let found = scan_value(&mut self.scan, data, 0);
                        if found.is_none() {
                            self.scanned = data.len();
                        }
                        found.map(|end| (end, end))
                    }
                }
            }
            _ => match scan_value(&mut self.scan, data, self.scanned) {
                Some(end) => Some((end, end)),
                None => {
                    self.scanned = data.len();
                    None
                }
            },
        }
    }

    fn skip_whitespace(&mut self) {
        while self.pos < self.filled {
            match self.buf[self.pos] {
                b'\n' => self.newlines += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => return,
            }
            self.pos += 1;
        }
    }

    /// Makes room and reads more input; sets `eof` at the end of the stream.
    fn fill(&mut self) -> Result<(), ReadError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == self.buf.len() {
            let grown = (self.buf.len() * 2).min(self.max_record_bytes + 1);
            self.buf.resize(grown.max(self.buf.len() + 1), 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.filled += n;
                    self.last_byte = self.buf[self.filled - 1];
                    self.stats.bytes += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Err(ReadError::from_io(e, self.newlines + 1));
                }
            }
        }
    }
}

/// Splits a decoded stream into records in any framing: in place for the framings whose
/// records are slices of the input, through a converter writing into a reusable buffer for the
/// others. A lending iterator like [`RawFramer`].
pub struct Framer<R> {
    raw: RawFramer<R>,
    conv: Option<Box<Converted>>,
}

/// The state around a converter: its output buffer, rows waiting to be handed out, counters.
struct Converted {
    conv: Box<dyn Convert>,
    out: Vec<u8>,
    rows: VecDeque<RecordError>,
    fatal: Option<ReadError>,
    ordinal: u64,
    records: u64,
    errors: u64,
    last_line: u64,
    finished: bool,
}

impl<R: Read> Framer<R> {
    /// A framer over `src` with the default options of `framing`; records longer than
    /// `max_record_bytes` are rejected.
    pub fn new(src: R, framing: Framing, max_record_bytes: usize) -> Self {
        Framer::with_options(src, &FormatOptions::from(framing), max_record_bytes)
    }

    /// A framer over `src` for `format`.
    pub fn with_options(src: R, format: &FormatOptions, max_record_bytes: usize) -> Self {
        let conv = formats::converter(format, max_record_bytes);
        let max = match &format.multiline {
            Some(m) if format.framing == Framing::Lines => max_record_bytes.min(m.max_bytes),
            _ => max_record_bytes,
        };
        let raw_framing = if conv.is_some() {
            Framing::Lines
        } else {
            format.framing
        };
        Framer {
            raw: RawFramer::new(src, raw_framing, max, &format.json_array),
            conv: conv.map(|conv| {
                Box::new(Converted {
                    conv,
                    out: Vec::new(),
                    rows: VecDeque::new(),
                    fatal: None,
                    ordinal: 0,
                    records: 0,
                    errors: 0,
                    last_line: 0,
                    finished: false,
                })
            }),
        }
    }

    /// Counters so far; final once `next_frame` has returned `Ok(None)` or `Err`.
    pub fn stats(&self) -> FramerStats {
        let mut s = self.raw.stats();
        if let Some(c) = &self.conv {
            s.records = c.records;
            s.errors = c.errors;
        }
        s
    }

    /// The next record or record error, `Ok(None)` at the end of the object.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, ReadError> {
        match &mut self.conv {
            None => self.raw.next_frame(),
            Some(c) => c.next_frame(&mut self.raw),
        }
    }
}

impl Converted {
    fn record(&mut self, line: u64) -> Result<Option<Frame<'_>>, ReadError> {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        self.records += 1;
        Ok(Some(Frame::Record(Record {
            ordinal,
            line,
            bytes: &self.out,
        })))
    }

    fn next_frame<R: Read>(
        &mut self,
        raw: &mut RawFramer<R>,
    ) -> Result<Option<Frame<'_>>, ReadError> {
        loop {
            if let Some(mut e) = self.rows.pop_front() {
                e.ordinal = self.ordinal;
                self.ordinal += 1;
                self.errors += 1;
                return Ok(Some(Frame::Error(e)));
            }
            if let Some(e) = self.fatal.take() {
                self.finished = true;
                return Err(e);
            }
            if self.finished {
                return Ok(None);
            }
            let got = match raw.next_frame() {
                Ok(Some(Frame::Record(r))) => {
                    let gap = r.line.saturating_sub(self.last_line + 1);
                    self.last_line = r.line;
                    self.conv
                        .line(r.line, gap, r.bytes, &mut self.out, &mut self.rows)
                }
                Ok(Some(Frame::Error(e))) => {
                    self.last_line = e.line;
                    self.conv.interrupt(&mut self.rows);
                    self.rows.push_back(e);
                    None
                }
                Ok(None) => {
                    self.finished = true;
                    self.conv.finish(&mut self.out, &mut self.rows)
                }
                Err(e) => {
                    // The records read whole before the damage still go out, then the error.
                    self.fatal = Some(e);
                    self.conv.finish(&mut self.out, &mut self.rows)
                }
            };
            if let Some(line) = got {
                return self.record(line);
            }
        }
    }
}

/// What [`RawFramer::array_prelude`] found before the next element.
enum Prelude {
    /// `pos` is at an element's first byte.
    Element,
    /// More input is needed (never returned at the end of the stream).
    More,
    /// The object is done.
    End,
    /// A row about the document (no array where the pointer says, or the array not closed).
    Row(RecordError),
}

/// Where the `json_array` framer is in the document around the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NavState {
    /// Expecting the value at `path[..depth]`: an object, or the array when the path is whole.
    Value,
    /// In an object at `depth`: expecting a key, a `,` or the `}`.
    Key,
    /// Reading a key's bytes.
    KeyText,
    /// After a key: expecting `:`; `true` when the key is the path's next segment.
    Colon(bool),
    /// Skipping the value of a key off the path.
    Skip,
    /// Inside the array: elements, `,` and the closing `]`.
    InArray,
    /// After the array, or after a row that ends the document: the rest is read and ignored.
    Failed,
}

/// The `json_array` navigator: finds the array at a JSON pointer while streaming, skipping the
/// values of the keys off the path without holding them.
#[derive(Debug)]
struct ArrayNav {
    pointer: String,
    /// The pointer's segments, unescaped (`~1` is `/`, `~0` is `~`).
    path: Vec<String>,
    depth: usize,
    state: NavState,
    key: Vec<u8>,
    key_escape: bool,
    skip: Scan,
    /// A byte other than whitespace was seen (an empty object is no error).
    seen: bool,
}

/// Keys longer than this never match a pointer segment and are not kept.
const KEY_LIMIT: usize = 4096;

impl ArrayNav {
    fn new(pointer: &str) -> Self {
        ArrayNav {
            pointer: pointer.to_string(),
            path: pointer_segments(pointer),
            depth: 0,
            state: NavState::Value,
            key: Vec::new(),
            key_escape: false,
            skip: Scan::default(),
            seen: false,
        }
    }
}

/// The segments of a JSON pointer (`""` is the whole document).
pub fn pointer_segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

impl<R: Read> RawFramer<R> {
    /// Walks the document up to the next array element, consuming what lies before it.
    fn array_prelude(&mut self) -> Prelude {
        let mut nav = self.array.take().expect("array mode");
        let step = self.navigate(&mut nav);
        self.array = Some(nav);
        step
    }

    fn consume(&mut self, n: usize) {
        self.newlines += count_newlines(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
    }

    fn doc_row(&mut self, nav: &mut ArrayNav, reason: String) -> Prelude {
        nav.state = NavState::Failed;
        let ordinal = self.ordinal;
        self.ordinal += 1;
        // No raw text: the row is about the document, not one record.
        Prelude::Row(RecordError {
            err_code: codes::MALFORMED_RECORD,
            reason,
            line: self.newlines + 1,
            ordinal,
            raw: Vec::new(),
        })
    }

    fn navigate(&mut self, nav: &mut ArrayNav) -> Prelude {
        loop {
            if !matches!(
                nav.state,
                NavState::KeyText | NavState::Skip | NavState::Failed
            ) {
                let skip_commas = matches!(nav.state, NavState::Key | NavState::InArray);
                while self.pos < self.filled {
                    match self.buf[self.pos] {
                        b'\n' => self.newlines += 1,
                        b' ' | b'\t' | b'\r' => {}
                        b',' if skip_commas => {}
                        _ => break,
                    }
                    self.pos += 1;
                }
            }
            if self.pos == self.filled && nav.state != NavState::Failed {
                if !self.eof {
                    return Prelude::More;
                }
                return match nav.state {
                    NavState::Value if !nav.seen => Prelude::End,
                    NavState::InArray => {
                        let reason = format!(
                            "truncated JSON array: the object ends before the array at {:?} is \
                             closed; the elements before line {} were delivered",
                            nav.pointer,
                            self.newlines + 1
                        );
                        self.doc_row(nav, reason)
                    }
                    _ => {
                        let reason = format!(
                            "truncated JSON document: the object ends before the array at {:?}",
                            nav.pointer
                        );
                        self.doc_row(nav, reason)
                    }
                };
            }
            nav.seen = true;
            let b = self.buf.get(self.pos).copied().unwrap_or(0);
            match nav.state {
                NavState::Value => {
                    let want = if nav.depth == nav.path.len() {
                        b'['
                    } else {
                        b'{'
                    };
                    if b != want {
                        let at = if nav.depth == 0 {
                            "\"\"".to_string()
                        } else {
                            format!("{:?}", nav.pointer)
                        };
                        let reason = format!(
                            "no JSON array at {:?}: the value at {} is not {}",
                            nav.pointer,
                            if nav.depth == nav.path.len() {
                                at
                            } else {
                                format!("depth {}", nav.depth)
                            },
                            if want == b'[' {
                                "an array"
                            } else {
                                "an object"
                            }
                        );
                        return self.doc_row(nav, reason);
                    }
                    self.consume(1);
                    nav.state = if want == b'[' {
                        NavState::InArray
                    } else {
                        NavState::Key
                    };
                }
                NavState::Key => match b {
                    b'"' => {
                        self.consume(1);
                        nav.key.clear();
                        nav.key_escape = false;
                        nav.state = NavState::KeyText;
                    }
                    b'}' => {
                        let reason = format!(
                            "no JSON array at {:?}: the object has no key {:?}",
                            nav.pointer, nav.path[nav.depth]
                        );
                        return self.doc_row(nav, reason);
                    }
                    _ => {
                        let reason = format!(
                            "Invalid JSON: expected a key while looking for the array at {:?}",
                            nav.pointer
                        );
                        return self.doc_row(nav, reason);
                    }
                },
                NavState::KeyText => {
                    let data = &self.buf[self.pos..self.filled];
                    let mut end = None;
                    for (i, &c) in data.iter().enumerate() {
                        if nav.key_escape {
                            nav.key_escape = false;
                        } else if c == b'\\' {
                            nav.key_escape = true;
                        } else if c == b'"' {
                            end = Some(i);
                            break;
                        }
                    }
                    let upto = end.unwrap_or(data.len());
                    if nav.key.len() + upto <= KEY_LIMIT {
                        nav.key.extend_from_slice(&data[..upto]);
                    } else {
                        nav.key.clear();
                        nav.key.extend_from_slice(b"\0too long");
                    }
                    match end {
                        Some(i) => {
                            self.consume(i + 1);
                            let mut quoted = Vec::with_capacity(nav.key.len() + 2);
                            quoted.push(b'"');
                            quoted.extend_from_slice(&nav.key);
                            quoted.push(b'"');
                            let key = serde_json::from_slice::<String>(&quoted).ok();
                            let hit = key.as_deref() == Some(nav.path[nav.depth].as_str());
                            nav.state = NavState::Colon(hit);
                        }
                        None => {
                            self.consume(data.len());
                            if self.eof {
                                let reason =
                                    "truncated JSON document: the object ends inside a key".into();
                                return self.doc_row(nav, reason);
                            }
                            return Prelude::More;
                        }
                    }
                }
                NavState::Colon(hit) => {
                    if b != b':' {
                        let reason = format!(
                            "Invalid JSON: expected ':' after a key while looking for the array at {:?}",
                            nav.pointer
                        );
                        return self.doc_row(nav, reason);
                    }
                    self.consume(1);
                    if hit {
                        nav.depth += 1;
                        nav.state = NavState::Value;
                    } else {
                        nav.skip = Scan {
                            nested: true,
                            ..Scan::default()
                        };
                        // Skip the whitespace before the value; `Skip` starts on its first byte.
                        nav.state = NavState::Skip;
                        while self.pos < self.filled
                            && matches!(self.buf[self.pos], b' ' | b'\t' | b'\r' | b'\n')
                        {
                            self.consume(1);
                        }
                    }
                }
                NavState::Skip => {
                    if !nav.skip.started {
                        while self.pos < self.filled
                            && matches!(self.buf[self.pos], b' ' | b'\t' | b'\r' | b'\n')
                        {
                            self.consume(1);
                        }
                        if self.pos == self.filled {
                            if self.eof {
                                let reason =
                                    "truncated JSON document: the object ends before a value"
                                        .into();
                                return self.doc_row(nav, reason);
                            }
                            return Prelude::More;
                        }
                    }
                    let data = &self.buf[self.pos..self.filled];
                    match scan_value(&mut nav.skip, data, 0) {
                        Some(end) => {
                            self.consume(end);
                            nav.state = NavState::Key;
                        }
                        None => {
                            self.consume(data.len());
                            if self.eof {
                                let reason =
                                    "truncated JSON document: the object ends inside a value"
                                        .into();
                                return self.doc_row(nav, reason);
                            }
                            return Prelude::More;
                        }
                    }
                }
                NavState::InArray => {
                    if b == b']' {
                        self.consume(1);
                        nav.state = NavState::Failed;
                        continue;
                    }
                    return Prelude::Element;
                }
                NavState::Failed => {
                    // The rest of the document after the array (or after a row) is not records.
                    let rest = self.filled - self.pos;
                    self.consume(rest);
                    if self.eof {
                        return Prelude::End;
                    }
                    return Prelude::More;
                }
            }
        }
    }
}

/// Validates one JSON value (with optional surrounding whitespace) without building it.
fn validate_json(bytes: &[u8]) -> Result<(), String> {
    if json_check::accepts(bytes) {
        return Ok(());
    }
    // serde_json does not check UTF-8 inside strings it ignores; JSON requires it.
    let text = check_utf8(bytes)?;
    match serde_json::from_str::<IgnoredAny>(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("Invalid JSON: {e}")),
    }
}

fn check_utf8(bytes: &[u8]) -> Result<&str, String> {
    // std's ASCII fast path checks clickstream records at about 12 GB/s; simdutf8 measured no
    // faster on them, so the cost of validation is serde's pass, not this one.
    std::str::from_utf8(bytes)
        .map_err(|e| format!("Invalid JSON: invalid UTF-8 at byte {}", e.valid_up_to()))
}

fn find_newline(data: &[u8]) -> Option<usize> {
    // memchr compares 32 bytes at a time (AVX2, chosen at run time).
    memchr::memchr(b'\n', data)
}

/// Number of leading bytes of `data` for which `stop` is false.
#[inline(always)]
fn skip_until(data: &[u8], stop: impl Fn(u8) -> bool) -> usize {
    let mut chunks = data.chunks_exact(16);
    let mut n = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |acc, &b| acc | stop(b)) {
            break;
        }
        n += 16;
    }
    n + data[n..]
        .iter()
        .position(|&b| stop(b))
        .unwrap_or(data.len() - n)
}

fn count_newlines(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Scans `data[from..]` for the end of the JSON value starting at `data[0]`, resuming from `s`.
/// Returns the value's end (exclusive). Structure only: validation happens afterwards. A raw
/// newline inside a string cannot be valid JSON, so it ends the value there, which is where
/// the framer resynchronises after garbage.
fn scan_value(s: &mut Scan, data: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    if !s.started {
        let first = *data.first()?;
        s.started = true;
        match first {
            b'{' | b'[' => s.depth = 1,
            b'"' => s.in_str = true,
            _ => s.scalar = true,
        }
        i = 1;
    }
    if s.scalar {
        let nested = s.nested;
        return data[i..]
            .iter()
            .position(|&b| {
                matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'[' | b'"')
                    || (nested && matches!(b, b',' | b']' | b'}'))
            })
            .map(|p| i + p);
    }
    while i < data.len() {
        if s.escape {
            s.escape = false;
            i += 1;
            continue;
        }
        // Jump over the bytes that cannot change the state, 16 at a time.
        i += if s.in_str {
            skip_until(&data[i..], |b| b == b'"' || b == b'\\' || b == b'\n')
        } else {
            skip_until(&data[i..], |b| {
                matches!(b, b'"' | b'{' | b'}' | b'[' | b']')
            })
        };
        let Some(&b) = data.get(i) else { break };
        if s.in_str {
            match b {
                b'\\' => s.escape = true,
                b'"' => {
                    s.in_str = false;
                    if s.depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => return Some(i),
            }
        } else {
            match b {
                b'"' => s.in_str = true,
                b'{' | b'[' => s.depth += 1,
                _ => {
                    s.depth = s.depth.saturating_sub(1);
                    if s.depth == 0 {
                        return Some(i + 1);
                    }
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum F {
        R(u64, u64, String),
        E(i32, u64, u64, String),
    }

    /// Hands out at most `step` bytes per read, to split records across refills.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn frames_with(
        input: &[u8],
        framing: Framing,
        max: usize,
        step: usize,
    ) -> (Vec<F>, FramerStats) {
        frames_opts_with(input, &FormatOptions::from(framing), max, step)
    }

    fn frames_opts_with(
        input: &[u8],
        opts: &FormatOptions,
        max: usize,
        step: usize,
    ) -> (Vec<F>, FramerStats) {
        let mut f = Framer::with_options(Trickle(input, step), opts, max);
        let mut out = Vec::new();
        while let Some(frame) = f.next_frame().unwrap() {
            out.push(match frame {
                Frame::Record(r) => {
                    F::R(r.ordinal, r.line, String::from_utf8_lossy(r.bytes).into())
                }
                Frame::Error(e) => F::E(
                    e.err_code,
                    e.ordinal,
                    e.line,
                    String::from_utf8_lossy(&e.raw).into(),
                ),
            });
        }
        assert!(f.raw.buf.len() <= BUFFER_BYTES.max(max + 1));
        (out, f.stats())
    }

    /// [`frames`] with options.
    fn frames_opts(input: &[u8], opts: &FormatOptions, max: usize) -> (Vec<F>, FramerStats) {
        let whole = frames_opts_with(input, opts, max, usize::MAX);
        for step in [1, 3, 7] {
            assert_eq!(
                frames_opts_with(input, opts, max, step),
                whole,
                "step {step}"
            );
        }
        whole
    }

    fn e(code: i32, ordinal: u64, line: u64, raw: &str) -> F {
        F::E(code, ordinal, line, raw.into())
    }

    #[test]
    fn csv_header_quotes_and_bad_rows() {
        let input = "\u{feff}id,name,note\r\n1,ann,\"hi, there\"\r\n2,bob\n\n3,\"c\"\"d\",\"two\n\nlines\"\n4,x,y,z\n5,é,\n";
        let (out, stats) = frames(input.as_bytes(), Framing::Csv, 1000);
        assert_eq!(
            out,
            vec![
                r(0, 2, r#"{"id":"1","name":"ann","note":"hi, there"}"#),
                e(codes::MALFORMED_RECORD, 1, 3, "2,bob"),
                r(2, 7, r#"{"id":"3","name":"c\"d","note":"two\n\nlines"}"#),
                e(codes::MALFORMED_RECORD, 3, 8, "4,x,y,z"),
                r(4, 9, r#"{"id":"5","name":"é","note":""}"#),
            ]
        );
        assert_eq!((stats.records, stats.errors, stats.lines), (3, 2, 9));
    }

    #[test]
    fn csv_delimiter_quote_and_unclosed_quote() {
        let opts = FormatOptions {
            csv_delimiter: b';',
            csv_quote: b'\'',
            ..FormatOptions::from(Framing::Csv)
        };
        let (out, _) = frames_opts(b"a;b\n'x;y';z\n1;'open\nstill open", &opts, 1000);
        assert_eq!(out[0], r(0, 2, r#"{"a":"x;y","b":"z"}"#));
        assert_eq!(
            out[1],
            e(codes::MALFORMED_RECORD, 1, 3, "1;'open\nstill open")
        );
        assert_eq!(out.len(), 2);
        // An unclosed quote cannot swallow the object: the record limit ends it.
        let mut big = b"a,b\n1,\"never closed\n".to_vec();
        big.extend("x\n".repeat(2000).as_bytes());
        big.extend(b"2,3\n");
        let (out, _) = frames(&big, Framing::Csv, 1024);
        assert!(
            matches!(&out[0], F::E(codes::RECORD_TOO_LARGE, 0, _, _)),
            "{:?}",
            out[0]
        );
        // The rest of the runaway field is read as rows again (each a row with too few fields).
        assert!(matches!(&out[1], F::E(codes::MALFORMED_RECORD, 1, _, raw) if raw == "x"));
        assert_eq!(
            out.last(),
            Some(&r(out.len() as u64 - 1, 2003, r#"{"a":"2","b":"3"}"#))
        );
    }

    fn array(input: &str, pointer: &str) -> Vec<F> {
        let opts = FormatOptions {
            json_array: pointer.into(),
            ..FormatOptions::from(Framing::JsonArray)
        };
        frames_opts(input.as_bytes(), &opts, 1000).0
    }

    #[test]
    fn cloudtrail_records_stream_with_start_lines() {
        let doc = "{\"Records\": [\n  {\n    \"eventVersion\": \"1.08\",\n    \"eventName\": \"GetObject\"\n  },\n  {\"eventName\": \"PutObject\", \"x\": [1, {\"y\": \"]}\"}]},\n  {\"bad\": tru}\n]}\n";
        let (out, stats) = frames(doc.as_bytes(), Framing::Cloudtrail, 1000);
        assert_eq!(
            out[0],
            r(
                0,
                2,
                "{\n    \"eventVersion\": \"1.08\",\n    \"eventName\": \"GetObject\"\n  }"
            )
        );
        assert_eq!(
            out[1],
            r(1, 6, r#"{"eventName": "PutObject", "x": [1, {"y": "]}"}]}"#)
        );
        assert!(matches!(&out[2], F::E(codes::INVALID_JSON, 2, 7, raw) if raw == "{\"bad\": tru}"));
        assert_eq!(out.len(), 3);
        assert_eq!((stats.records, stats.errors, stats.lines), (2, 1, 8));
    }

    #[test]
    fn json_array_pointer_skips_other_keys() {
        let doc = r#"{"meta": {"Records": "not here", "n": [1, 2, {"a": "}"}]}, "n": -1.5e3, "t": true,
  "wrap": {"xA": {"items": [1, "two", {"three": 3}, [4], null]}}, "after": [9]}"#;
        assert_eq!(
            array(doc, "/wrap/xA/items"),
            vec![
                r(0, 2, "1"),
                r(1, 2, "\"two\""),
                r(2, 2, r#"{"three": 3}"#),
                r(3, 2, "[4]"),
                r(4, 2, "null"),
            ]
        );
        assert_eq!(array("[]", ""), vec![]);
        assert_eq!(array("  [ 1 ,2]  ", ""), vec![r(0, 1, "1"), r(1, 1, "2")]);
        assert_eq!(array("", "/Records"), vec![]);
        let missing = array(r#"{"a": 1}"#, "/Records");
        assert!(
            matches!(&missing[..], [F::E(codes::MALFORMED_RECORD, 0, 1, _)]),
            "{missing:?}"
        );
        let not_array = array(r#"{"Records": {"a": 1}}"#, "/Records");
        assert!(matches!(
            &not_array[..],
            [F::E(codes::MALFORMED_RECORD, 0, 1, _)]
        ));
    }

    #[test]
    fn truncated_array_delivers_elements_before_it() {
        // Cut inside an element.
        let out = array(
            "{\"Records\":[\n{\"a\":1},\n{\"b\":2},\n{\"c\":",
            "/Records",
        );
        assert_eq!(out[0], r(0, 2, r#"{"a":1}"#));
        assert_eq!(out[1], r(1, 3, r#"{"b":2}"#));
        assert_eq!(out[2], e(codes::MALFORMED_RECORD, 2, 4, r#"{"c":"#));
        assert_eq!(out.len(), 3);
        // Cut between elements.
        let out = array("{\"Records\":[\n{\"a\":1},\n", "/Records");
        assert_eq!(out[0], r(0, 2, r#"{"a":1}"#));
        assert!(matches!(&out[1], F::E(codes::MALFORMED_RECORD, 1, 3, _)));
        assert_eq!(out.len(), 2);
        // Cut before the array.
        let out = array("{\"other\": [1, 2", "/Records");
        assert!(
            matches!(&out[..], [F::E(codes::MALFORMED_RECORD, 0, 1, _)]),
            "{out:?}"
        );
    }

    #[test]
    fn json_array_is_streamed_with_bounded_memory() {
        // 50 MB of elements through a 64 KiB buffer; oversized ones are skipped.
        let element = format!("{{\"eventName\":\"x\",\"pad\":\"{}\"}}", "p".repeat(500));
        let big = format!("{{\"pad\":\"{}\"}}", "q".repeat(5000));
        struct Doc {
            head: Vec<u8>,
            n: usize,
            element: Vec<u8>,
            at: usize,
        }
        impl Read for Doc {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.head.is_empty() {
                    if self.n == 0 {
                        return Ok(0);
                    }
                    self.n -= 1;
                    self.head = if self.n == 0 {
                        b"]}".to_vec()
                    } else {
                        self.element.clone()
                    };
                    self.at = 0;
                }
                let n = buf.len().min(self.head.len() - self.at);
                buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
                self.at += n;
                if self.at == self.head.len() {
                    self.head.clear();
                }
                Ok(n)
            }
        }
        let mut element_nl = element.clone().into_bytes();
        element_nl.extend(b",\n");
        let doc = Doc {
            head: format!("{{\"Records\":[{big},\n").into_bytes(),
            n: 100_000,
            element: element_nl,
            at: 0,
        };
        let mut f = Framer::new(doc, Framing::Cloudtrail, 2000);
        let mut n = 0;
        let first = f.next_frame().unwrap().unwrap();
        assert!(matches!(
            first,
            Frame::Error(RecordError {
                err_code: codes::RECORD_TOO_LARGE,
                line: 1,
                ..
            })
        ));
        while let Some(frame) = f.next_frame().unwrap() {
            let Frame::Record(r) = frame else {
                panic!("{frame:?}")
            };
            assert_eq!(r.bytes, element.as_bytes());
            n += 1;
        }
        assert_eq!(n, 99_999);
        assert!(f.raw.buf.len() <= 64 * 1024);
    }

    fn multiline(pattern: &str, max_lines: usize, max_bytes: usize) -> FormatOptions {
        FormatOptions {
            multiline: Some(formats::Multiline {
                start: regex::bytes::Regex::new(pattern).unwrap(),
                max_lines,
                max_bytes,
            }),
            ..FormatOptions::from(Framing::Lines)
        }
    }

    #[test]
    fn multiline_gathers_continuation_lines() {
        let input =
            b"  orphan\n2024-01-01 a\n  at x\r\n\n  at y\n2024-01-01 b\n2024-01-02 c\n  at z";
        let (out, stats) = frames_opts(input, &multiline(r"^\d{4}-", 100, 1 << 20), 1 << 20);
        assert_eq!(
            out,
            vec![
                r(0, 1, "  orphan"),
                r(1, 5, "2024-01-01 a\n  at x\n\n  at y"),
                r(2, 6, "2024-01-01 b"),
                r(3, 8, "2024-01-02 c\n  at z"),
            ]
        );
        assert_eq!((stats.records, stats.errors, stats.lines), (4, 0, 8));
    }

    #[test]
    fn multiline_limits_split_records_without_loss() {
        let input = b"T1\na\nb\nc\nT2\nd\n";
        let (out, _) = frames_opts(input, &multiline("^T", 2, 1 << 20), 1 << 20);
        assert_eq!(
            out,
            vec![r(0, 2, "T1\na"), r(1, 4, "b\nc"), r(2, 6, "T2\nd")]
        );
        let (out, _) = frames_opts(input, &multiline("^T", 100, 5), 1 << 20);
        assert_eq!(
            out,
            vec![r(0, 2, "T1\na"), r(1, 4, "b\nc"), r(2, 6, "T2\nd")]
        );
        // A line over max_bytes is rejected on its own; the record around it goes on.
        // (The raw text of an oversized line depends on the reads, so one read here.)
        let opts = multiline("^T", 100, 8);
        let (out, _) = frames_opts_with(b"T1\nxxxxxxxxxx\na\n", &opts, 1 << 20, usize::MAX);
        assert!(matches!(&out[0], F::E(codes::RECORD_TOO_LARGE, 0, 2, _)));
        assert_eq!(out[1..], [r(1, 3, "T1\na")]);
    }

    /// Frames `input` whole and trickled a few bytes at a time; both must agree.
    fn frames(input: &[u8], framing: Framing, max: usize) -> (Vec<F>, FramerStats) {
        let whole = frames_with(input, framing, max, usize::MAX);
        for step in [1, 3, 7] {
            assert_eq!(frames_with(input, framing, max, step), whole, "step {step}");
        }
        whole
    }

    fn r(ordinal: u64, line: u64, s: &str) -> F {
        F::R(ordinal, line, s.into())
    }

    #[test]
    fn json_lines_valid_invalid_blank_crlf() {
        let input = b"{\"a\":1}\r\n\n  \t\n{\"b\":\n[1,2]\r\n{\"c\":3}";
        let (out, stats) = frames(input, Framing::JsonLines, 1000);
        assert_eq!(out[0], r(0, 1, "{\"a\":1}"));
        assert!(matches!(&out[1], F::E(codes::INVALID_JSON, 1, 4, raw) if raw == "{\"b\":"));
        assert_eq!(out[2], r(2, 5, "[1,2]"));
        assert_eq!(out[3], r(3, 6, "{\"c\":3}"));
        assert_eq!(out.len(), 4);
        assert_eq!((stats.records, stats.errors, stats.lines), (3, 1, 6));
    }

    #[test]
    fn invalid_json_reason_names_serde_error() {
        let mut f = Framer::new(&b"{\"a\":tru}\n"[..], Framing::JsonLines, 100);
        let Some(Frame::Error(e)) = f.next_frame().unwrap() else {
            panic!()
        };
        assert!(e.reason.starts_with("Invalid JSON: "), "{}", e.reason);
        assert!(e.reason.contains("column"), "{}", e.reason);
    }

    #[test]
    fn json_lines_rejects_invalid_utf8_and_trailing_garbage() {
        let (out, _) = frames(
            b"{\"a\":\"\xff\"}\n{\"a\":1} x\n[1]\n",
            Framing::JsonLines,
            100,
        );
        assert!(matches!(out[0], F::E(codes::INVALID_JSON, 0, 1, _)));
        assert!(matches!(out[1], F::E(codes::INVALID_JSON, 1, 2, _)));
        assert_eq!(out[2], r(2, 3, "[1]"));
    }

    #[test]
    fn json_concat_values_back_to_back() {
        let input = b"{\"a\":1}{\"b\":2}\n{\"c\":\"}{\"}  {\"d\":{\"e\":[1,{\"f\":\"\\\"]\"}]}}\n\n{\n \"g\": \"x\\ny\"\n}1 \"s\" [true]{\"h\":\"x\\\\\"}";
        let (out, stats) = frames(input, Framing::JsonConcat, 1000);
        assert_eq!(
            out,
            vec![
                r(0, 1, "{\"a\":1}"),
                r(1, 1, "{\"b\":2}"),
                r(2, 2, "{\"c\":\"}{\"}"),
                r(3, 2, "{\"d\":{\"e\":[1,{\"f\":\"\\\"]\"}]}}"),
                r(4, 6, "{\n \"g\": \"x\\ny\"\n}"),
                r(5, 6, "1"),
                r(6, 6, "\"s\""),
                r(7, 6, "[true]"),
                r(8, 6, "{\"h\":\"x\\\\\"}"),
            ]
        );
        assert_eq!((stats.records, stats.errors, stats.lines), (9, 0, 6));
    }

    #[test]
    fn json_concat_resynchronises_after_garbage() {
        let input =
            b"{\"a\":1}garbage{\"b\":2}\n{\"c\":\"unterminated\n{\"d\":4}}{\"e\":5}\n{\"f\":";
        let (out, _) = frames(input, Framing::JsonConcat, 1000);
        assert_eq!(out[0], r(0, 1, "{\"a\":1}"));
        assert!(matches!(&out[1], F::E(codes::INVALID_JSON, 1, 1, raw) if raw == "garbage"));
        assert_eq!(out[2], r(2, 1, "{\"b\":2}"));
        assert!(
            matches!(&out[3], F::E(codes::INVALID_JSON, 3, 2, raw) if raw == "{\"c\":\"unterminated")
        );
        assert_eq!(out[4], r(4, 3, "{\"d\":4}"));
        assert!(matches!(&out[5], F::E(codes::INVALID_JSON, 5, 3, raw) if raw == "}"));
        assert_eq!(out[6], r(6, 3, "{\"e\":5}"));
        assert!(matches!(&out[7], F::E(codes::INVALID_JSON, 7, 4, raw) if raw == "{\"f\":"));
        assert_eq!(out.len(), 8);
    }

    #[test]
    fn lines_keep_any_bytes_and_strip_cr() {
        let (out, stats) = frames(b"a b\r\n\r\n\xff\xfe\nlast", Framing::Lines, 100);
        assert_eq!(
            out,
            vec![r(0, 1, "a b"), r(1, 3, "\u{fffd}\u{fffd}"), r(2, 4, "last")]
        );
        assert_eq!(stats.lines, 4);
    }

    #[test]
    fn oversized_records_are_skipped_with_bounded_memory() {
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(5000));
        let input = format!("{{\"a\":1}}\n{big}\n{{\"b\":2}}\n{big}");
        let (out, stats) = frames(input.as_bytes(), Framing::JsonLines, 100);
        assert_eq!(out[0], r(0, 1, "{\"a\":1}"));
        assert!(
            matches!(&out[1], F::E(codes::RECORD_TOO_LARGE, 1, 2, raw) if raw.len() == RAW_LIMIT)
        );
        assert_eq!(out[2], r(2, 3, "{\"b\":2}"));
        assert!(matches!(&out[3], F::E(codes::RECORD_TOO_LARGE, 3, 4, _)));
        assert_eq!((stats.records, stats.errors, stats.lines), (2, 2, 4));

        // Larger than the buffer, so the skip runs across refills; newlines inside count.
        let huge = format!("{{\"x\":[{}1]}}", "1,\n".repeat(200_000));
        let input = format!("{{\"a\":1}}{huge}{{\"b\":2}}");
        let (out, _) = frames_with(input.as_bytes(), Framing::JsonConcat, 300_000, 4096);
        assert_eq!(out[0], r(0, 1, "{\"a\":1}"));
        assert!(matches!(
            &out[1],
            F::E(codes::RECORD_TOO_LARGE, 1, 200_001, _)
        ));
        assert_eq!(out[2], r(2, 200_001, "{\"b\":2}"));
    }

    #[test]
    fn long_record_within_limit_grows_buffer() {
        let big = format!("{{\"x\":\"{}\"}}", "y".repeat(600_000));
        let input = format!("{big}\n{{\"b\":2}}\n");
        let (out, _) = frames_with(input.as_bytes(), Framing::JsonLines, 1 << 20, 65536);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], F::R(0, 1, s) if s.len() == big.len()));
    }

    #[test]
    fn fatal_error_after_records() {
        let mut gz = crate::source::decode::tests::gzip(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        gz.truncate(gz.len() - 6);
        let dec = crate::source::decode::decoder(
            crate::source::decode::Compression::Gzip,
            Box::new(io::Cursor::new(gz)),
        )
        .unwrap();
        let mut f = Framer::new(dec, Framing::JsonLines, 100);
        let mut n = 0;
        let err = loop {
            match f.next_frame() {
                Ok(Some(Frame::Record(_))) => n += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 3);
        assert_eq!(err.err_code(), codes::DECOMPRESSION_FAILED);
        assert_eq!(err.line(), 4);
        assert!(f.next_frame().unwrap().is_none());
    }

    #[test]
    fn framing_names() {
        let f: Framing = serde_json::from_str("\"json_concat\"").unwrap();
        assert_eq!(f, Framing::JsonConcat);
        assert_eq!(Framing::default(), Framing::JsonLines);
        for f in [Framing::Parquet, Framing::Orc] {
            let named: Framing = serde_json::from_str(&format!("\"{}\"", f.name())).unwrap();
            assert_eq!(named, f);
        }
    }
}
