//! Record framing: finds record boundaries in a decoded stream (`json_lines`, `json_concat`,
//! `lines`) without building a tree, validates JSON records, and reports per-record errors and
//! the fatal error that ends an object, with Redshift-style line numbers and stable ordinals.

use std::io::{self, Read};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::codes;
use crate::source::decode::{classify, ReadErrorKind};

/// How records are delimited inside an object: the `format` key of `[pipeline.source]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// One JSON value per line; blank lines are skipped.
    #[default]
    JsonLines,
    /// JSON values back to back, with or without whitespace between (Firehose's default).
    JsonConcat,
    /// One record per line, any bytes, not validated; empty lines are skipped.
    Lines,
}

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
            ReadError::Decompress { .. } => ReadErrorKind::Decompress,
            ReadError::Io { .. } => ReadErrorKind::Io,
        }
    }

    /// `codes::DECOMPRESSION_FAILED` or `codes::READ_FAILED`.
    pub fn err_code(&self) -> i32 {
        match self {
            ReadError::Decompress { .. } => codes::DECOMPRESSION_FAILED,
            ReadError::Io { .. } => codes::READ_FAILED,
        }
    }

    /// 1-based line being read when the object failed.
    pub fn line(&self) -> u64 {
        match self {
            ReadError::Decompress { line, .. } | ReadError::Io { line, .. } => *line,
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
}

/// Splits a decoded stream into records. A lending iterator: call [`Framer::next_frame`] until it
/// returns `Ok(None)` (end of object) or `Err` (fatal, after every record before it).
pub struct Framer<R> {
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
}

impl<R: Read> Framer<R> {
    /// A framer over `src`; records longer than `max_record_bytes` are rejected.
    pub fn new(src: R, framing: Framing, max_record_bytes: usize) -> Self {
        let max_record_bytes = max_record_bytes.max(1);
        Framer {
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
            if self.framing == Framing::JsonConcat && !self.scan.started {
                self.skip_whitespace();
            }
            let (end, consumed) = match self.find_end() {
                Some(found) => found,
                None if self.eof => {
                    if self.pos == self.filled && self.oversized.is_none() {
                        self.done = true;
                        return Ok(None);
                    }
                    let rest = self.filled - self.pos;
                    (rest, rest)
                }
                None => {
                    if self.filled - self.pos > self.max_record_bytes && self.oversized.is_none() {
                        self.oversized = Some(Vec::with_capacity(RAW_LIMIT));
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
            let record_newlines = match self.framing {
                Framing::JsonConcat => count_newlines(&self.buf[start..stop]),
                _ => 0,
            };
            let line = self.newlines + record_newlines + 1;
            self.newlines += record_newlines + u64::from(consumed > end);
            self.pos += consumed;
            self.scanned = 0;
            self.scan = Scan::default();
            if let Some(raw) = self.oversized.take() {
                let ordinal = self.ordinal;
                self.ordinal += 1;
                return Ok(Some(Frame::Error(self.too_large(raw, line, ordinal))));
            }
            let mut stop = stop;
            if self.framing != Framing::JsonConcat {
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
        RecordError {
            err_code: codes::RECORD_TOO_LARGE,
            reason: format!(
                "record is larger than the limit of {} bytes",
                self.max_record_bytes
            ),
            line,
            ordinal,
            raw,
        }
    }

    /// Finds the end of the record starting at `pos`: (end of the record's bytes, bytes to
    /// consume including its delimiter), relative to `pos`.
    fn find_end(&mut self) -> Option<(usize, usize)> {
        let data = &self.buf[self.pos..self.filled];
        match self.framing {
            Framing::JsonLines | Framing::Lines => match find_newline(&data[self.scanned..]) {
                Some(i) => Some((self.scanned + i, self.scanned + i + 1)),
                None => {
                    self.scanned = data.len();
                    None
                }
            },
            Framing::JsonConcat if !self.scan.started && self.oversized.is_none() => {
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
            Framing::JsonConcat => match scan_value(&mut self.scan, data, self.scanned) {
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

/// Validates one JSON value (with optional surrounding whitespace) without building it.
fn validate_json(bytes: &[u8]) -> Result<(), String> {
    // serde_json does not check UTF-8 inside strings it ignores; JSON requires it.
    let text = check_utf8(bytes)?;
    match serde_json::from_str::<IgnoredAny>(text) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("Invalid JSON: {e}")),
    }
}

fn check_utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes)
        .map_err(|e| format!("Invalid JSON: invalid UTF-8 at byte {}", e.valid_up_to()))
}

fn find_newline(data: &[u8]) -> Option<usize> {
    // Chunked so the compiler can compare 16 bytes at once; a plain `position` goes byte by byte.
    let mut chunks = data.chunks_exact(16);
    let mut base = 0;
    for chunk in &mut chunks {
        if chunk.iter().fold(false, |acc, &b| acc | (b == b'\n')) {
            return chunk.iter().position(|&b| b == b'\n').map(|i| base + i);
        }
        base += 16;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| base + i)
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
        return data[i..]
            .iter()
            .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'{' | b'[' | b'"'))
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
        let mut f = Framer::new(Trickle(input, step), framing, max);
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
        assert!(f.buf.len() <= BUFFER_BYTES.max(max + 1));
        (out, f.stats())
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
    }
}
