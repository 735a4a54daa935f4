//! The formats whose records are new bytes rather than slices of the object: `csv` (a header
//! line and rows into JSON objects), multi-line `lines` records, and the AWS log layouts (`alb`,
//! `elb`, `vpc_flow`, `cloudfront`, `s3_access`). Each is a [`Convert`] fed the object's lines by
//! the raw `lines` framer (which enforces the record size limit and counts lines); it writes the
//! record into the framer's reusable output buffer, so nothing per record is allocated and the
//! in-place framings keep their zero-copy path.

use std::collections::VecDeque;

use crate::codes;
use crate::source::framing::{Framing, RecordError, RAW_LIMIT};

pub mod csv;
pub mod logs;
pub mod multiline;

/// How to read records: the framing and the options some framings take.
#[derive(Debug, Clone)]
pub struct FormatOptions {
    /// The framing.
    pub framing: Framing,
    /// `csv`: the field delimiter.
    pub csv_delimiter: u8,
    /// `csv`: the quote character.
    pub csv_quote: u8,
    /// `json_array`: the JSON pointer to the array (`""`: the document is the array).
    pub json_array: String,
    /// `lines`: multi-line records.
    pub multiline: Option<Multiline>,
}

impl From<Framing> for FormatOptions {
    fn from(framing: Framing) -> Self {
        FormatOptions {
            framing,
            csv_delimiter: b',',
            csv_quote: b'"',
            json_array: String::new(),
            multiline: None,
        }
    }
}

// The reader's view of `[pipeline.source]`: an inherent impl may live in any module of the
// crate, so the configuration does not depend on the reader.
impl crate::config::SourceConfig {
    /// The options the reader needs; the config must have been validated.
    pub fn format_options(&self) -> FormatOptions {
        let byte = |v: &Option<String>, default: u8| {
            v.as_deref()
                .and_then(|s| s.bytes().next())
                .unwrap_or(default)
        };
        FormatOptions {
            framing: self.format,
            csv_delimiter: byte(&self.csv_delimiter, b','),
            csv_quote: byte(&self.csv_quote, b'"'),
            json_array: self.json_array.clone().unwrap_or_default(),
            multiline: self.multiline.as_ref().map(|m| Multiline {
                start: regex::bytes::Regex::new(&m.start_pattern)
                    .expect("start_pattern is checked when the config is loaded"),
                max_lines: m.max_lines,
                max_bytes: m.max_bytes.unwrap_or(self.max_record_bytes),
            }),
        }
    }
}

/// `source.multiline`, compiled.
#[derive(Debug, Clone)]
pub struct Multiline {
    /// A line matching this starts a record; the lines after it that do not belong to it.
    pub start: regex::bytes::Regex,
    /// A record holding this many lines ends; the next line starts a new one.
    pub max_lines: usize,
    /// A line that would take a record past this many bytes starts a new one.
    pub max_bytes: usize,
}

/// Turns an object's lines into records written into `out`.
pub trait Convert: Send {
    /// One line (without its line ending) numbered `line`; `gap` empty lines were skipped right
    /// before it. Returns the last line of a record now complete in `out` (cleared and
    /// rewritten by the converter), if any; rejected records go to `rows`.
    fn line(
        &mut self,
        line: u64,
        gap: u64,
        bytes: &[u8],
        out: &mut Vec<u8>,
        rows: &mut VecDeque<RecordError>,
    ) -> Option<u64>;

    /// The end of the object: a record still being gathered, if any.
    fn finish(&mut self, out: &mut Vec<u8>, rows: &mut VecDeque<RecordError>) -> Option<u64>;

    /// A line was rejected by the raw framer (too large) and will not be seen.
    fn interrupt(&mut self, _rows: &mut VecDeque<RecordError>) {}
}

/// The converter for `format`, or `None` when its records are found in place.
pub fn converter(format: &FormatOptions, max_record_bytes: usize) -> Option<Box<dyn Convert>> {
    match format.framing {
        Framing::JsonLines | Framing::JsonConcat | Framing::JsonArray | Framing::Cloudtrail => None,
        // Binary formats: read by their own reader (`source::parquet`), never framed.
        Framing::Parquet | Framing::Orc => None,
        Framing::Lines => format
            .multiline
            .clone()
            .map(|m| Box::new(multiline::Gather::new(m)) as Box<dyn Convert>),
        Framing::Csv => Some(Box::new(csv::Csv::new(
            format.csv_delimiter,
            format.csv_quote,
            max_record_bytes,
        ))),
        Framing::Alb
        | Framing::Elb
        | Framing::VpcFlow
        | Framing::Cloudfront
        | Framing::S3Access => Some(Box::new(logs::Log::new(format.framing))),
    }
}

/// A [`codes::MALFORMED_RECORD`] row (its ordinal is set when it is handed out).
pub fn malformed(reason: String, line: u64, raw: &[u8]) -> RecordError {
    RecordError {
        err_code: codes::MALFORMED_RECORD,
        reason,
        line,
        ordinal: 0,
        raw: raw[..raw.len().min(RAW_LIMIT)].to_vec(),
    }
}

/// Appends `bytes` as a JSON string (invalid UTF-8 becomes U+FFFD).
pub fn push_json_str(out: &mut Vec<u8>, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &*text);
}
