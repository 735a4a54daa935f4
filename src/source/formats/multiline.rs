//! Multi-line records for `format = "lines"` (`source.multiline`): a record is a line matching
//! `start_pattern` and the lines after it that do not match (a stack trace under its log line).
//! Lines before the first matching line form a record of their own. A record ends early, and the
//! next line starts a new one, when it holds `max_lines` lines or the next line would take it
//! past `max_bytes`: nothing is dropped. Lines are joined with `\n`; empty lines inside a record
//! are kept.

use std::collections::VecDeque;

use super::{Convert, Multiline};
use crate::source::framing::RecordError;

/// The multi-line `lines` converter.
pub struct Gather {
    m: Multiline,
    /// The record being gathered.
    pending: Vec<u8>,
    /// Lines in `pending` (0: none).
    lines: usize,
    /// Number of `pending`'s last line.
    last: u64,
}

impl Gather {
    /// A converter for `m`.
    pub fn new(m: Multiline) -> Self {
        Gather {
            m,
            pending: Vec::new(),
            lines: 0,
            last: 0,
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>) -> Option<u64> {
        if self.lines == 0 {
            return None;
        }
        std::mem::swap(out, &mut self.pending);
        self.pending.clear();
        self.lines = 0;
        Some(self.last)
    }
}

impl Convert for Gather {
    fn line(
        &mut self,
        line: u64,
        gap: u64,
        bytes: &[u8],
        out: &mut Vec<u8>,
        _rows: &mut VecDeque<RecordError>,
    ) -> Option<u64> {
        let gap = gap as usize;
        let mut emitted = None;
        if self.lines > 0 {
            let fits = self.lines + gap < self.m.max_lines
                && self.pending.len() + gap + 1 + bytes.len() <= self.m.max_bytes;
            if fits && !self.m.start.is_match(bytes) {
                self.pending.resize(self.pending.len() + gap + 1, b'\n');
                self.pending.extend_from_slice(bytes);
                self.lines += gap + 1;
                self.last = line;
                return None;
            }
            emitted = self.emit(out);
        }
        self.pending.extend_from_slice(bytes);
        self.lines = 1;
        self.last = line;
        emitted
    }

    fn finish(&mut self, out: &mut Vec<u8>, _rows: &mut VecDeque<RecordError>) -> Option<u64> {
        self.emit(out)
    }
}
