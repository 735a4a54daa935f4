//! The two enums `[pipeline.source]` names that the reader acts on: how objects are compressed
//! (`compression`) and how records are delimited (`format`). They live here so configuration
//! depends on nothing above it; `source` re-exports them where it reads objects.

use serde::{Deserialize, Serialize};

/// How a staged object is compressed: the `compression` key of `[pipeline.source]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Detect per object from the bytes, the key's extension or `Content-Encoding`.
    #[default]
    Auto,
    /// gzip, possibly several members back to back (Firehose, concatenated uploads).
    Gzip,
    /// zstd, possibly several frames.
    Zstd,
    /// Snappy's framing format (stream identifier `ff 06 00 00 sNaPpY`), not raw snappy blocks.
    Snappy,
    /// A zip archive; its file entries are read in directory order, concatenated.
    Zip,
    /// Plain bytes.
    None,
}

/// How records are delimited inside an object: the `format` key of `[pipeline.source]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// One JSON value per line; blank lines are skipped.
    #[default]
    JsonLines,
    /// JSON values back to back, with or without whitespace between (Firehose's default).
    JsonConcat,
    /// One record per line, any bytes, not validated; empty lines are skipped. With
    /// `source.multiline`, a record is a first line matching `start_pattern` and the lines after
    /// it that do not.
    Lines,
    /// Comma-separated values with a header line: each record becomes a JSON object keyed by
    /// the header's names, values as strings (`csv_delimiter`, `csv_quote`).
    Csv,
    /// One JSON document holding an array (at the JSON pointer `source.json_array`, the whole
    /// document by default): one record per element, streamed.
    JsonArray,
    /// AWS CloudTrail log files: `json_array` at `/Records`.
    Cloudtrail,
    /// Application Load Balancer access logs, one JSON object per entry.
    Alb,
    /// Classic Load Balancer access logs, one JSON object per entry.
    Elb,
    /// VPC flow logs (default version 2 fields, or the fields named by the header line).
    VpcFlow,
    /// CloudFront standard logs (W3C, fields named by `#Fields:`).
    Cloudfront,
    /// S3 server access logs.
    S3Access,
    /// Apache Parquet files: read row group by row group with ranged GETs, one JSON object per
    /// row as `arrow-json` writes it; a Redshift destination's COPY reads them itself
    /// (`FORMAT AS PARQUET`).
    Parquet,
    /// Apache ORC files: read only by Redshift's COPY (`FORMAT AS ORC`); refused for the
    /// destinations that read records.
    Orc,
}

impl Framing {
    /// The name written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Framing::JsonLines => "json_lines",
            Framing::JsonConcat => "json_concat",
            Framing::Lines => "lines",
            Framing::Csv => "csv",
            Framing::JsonArray => "json_array",
            Framing::Cloudtrail => "cloudtrail",
            Framing::Alb => "alb",
            Framing::Elb => "elb",
            Framing::VpcFlow => "vpc_flow",
            Framing::Cloudfront => "cloudfront",
            Framing::S3Access => "s3_access",
            Framing::Parquet => "parquet",
            Framing::Orc => "orc",
        }
    }

    /// True when records are JSON values (every framing but `lines`, whose records are text).
    pub fn is_json(self) -> bool {
        self != Framing::Lines
    }

    /// True when records are the elements of one JSON array.
    pub(crate) fn is_array(self) -> bool {
        matches!(self, Framing::JsonArray | Framing::Cloudtrail)
    }

    /// True when records are whole JSON values found by the value scanner.
    pub(crate) fn is_values(self) -> bool {
        self == Framing::JsonConcat || self.is_array()
    }
}
