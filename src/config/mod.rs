//! The configuration file: raw TOML to a validated [`Config`].
//!
//! Loading goes in three steps so every refusal names its field: the text is parsed as TOML
//! (with the files of `include_dir` and every `[[pipeline_set]]` made plain `[[pipeline]]`
//! entries, see `generate.rs`), `${VAR}` and `${VAR:-default}` are expanded inside string values (never in the TOML syntax
//! itself, so a value cannot inject keys), then the tree is deserialized with its path tracked,
//! and [`Config::validate`] checks ranges and cross-field rules.

pub mod after_load;
pub mod copy_options;
pub mod destination;
mod format;
mod generate;
mod identity;
pub mod secret;
pub mod transform;

pub use format::{Compression, Framing};

pub use destination::*;
pub use secret::{ConnUrl, Secret};

use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

/// Why a configuration was refused. Each message names the file, pipeline and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config {path} is not valid TOML: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A field is missing, unknown, of the wrong type, or out of range.
    #[error("config {path}: {field}: {message}")]
    Field {
        /// The file.
        path: String,
        /// Where: `pipeline "clickstream".buffer.size_mib`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The control database.
    pub control: ControlConfig,
    /// S3 access shared by every pipeline.
    #[serde(default)]
    pub s3: S3Config,
    /// The admin HTTP port.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Process-wide tuning.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// The pipelines, each one source prefix to one destination.
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
}

/// `[control]`: the PostgreSQL control database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `postgres://user:password@host:port/database`.
    pub database_url: ConnUrl,
    /// Connections in the pool.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PEM file of CA certificates trusted for TLS in addition to the public roots (the RDS
    /// bundle, a company CA). TLS follows the URL's `sslmode`; certificates are always verified.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Days settled history is kept (0 to 3650; 0 keeps it forever; decimals allowed, so
    /// `0.5` is twelve hours): loaded batches and their objects, skipped batches whose errors
    /// are all resolved, and resolved `load_errors` rows, counted from when they settled or were
    /// resolved. Open work and unresolved errors are never removed. See docs/configuration.md, "Retention".
    #[serde(default = "default_retention_days")]
    pub retention_days: f64,
    /// Seconds between retention passes (1 to 86400).
    #[serde(default = "default_retention_interval_s")]
    pub retention_interval_s: u64,
    /// Rows retention deletes per transaction, so no lock is held long (100 to 1000000).
    #[serde(default = "default_retention_chunk")]
    pub retention_chunk: u32,
}

fn default_pool_size() -> usize {
    8
}
fn default_retention_days() -> f64 {
    30.0
}
fn default_retention_interval_s() -> u64 {
    300
}
fn default_retention_chunk() -> u32 {
    10_000
}

impl ControlConfig {
    /// How long settled history is kept; None when it is kept forever (`retention_days = 0`).
    pub fn retention(&self) -> Option<Duration> {
        (self.retention_days > 0.0).then(|| Duration::from_secs_f64(self.retention_days * 86_400.0))
    }
}

/// `[s3]`: S3 access; credentials default to the AWS chain.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// AWS region.
    #[serde(default = "default_region")]
    pub region: String,
    /// An S3-compatible endpoint (`http://127.0.0.1:8014`); AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible servers need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Access key id; the AWS credential chain when absent.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// KMS key (key id, key ARN, `alias/name` or alias ARN) that every object stageload writes
    /// (manifests, error manifests, failed records) is encrypted with, as SSE-KMS; the bucket's
    /// default encryption when absent. A pipeline's own `kms_key_id` takes precedence.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            region: default_region(),
            endpoint: None,
            force_path_style: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            kms_key_id: None,
        }
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

/// `[admin]`: `/healthz`, `/readyz`, `/metrics` and the status page.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address; an empty string turns the admin port off.
    #[serde(default = "default_admin_listen")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
        }
    }
}

fn default_admin_listen() -> String {
    "127.0.0.1:9464".into()
}

/// `[daemon]`: process-wide timings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Seconds a worker holds a batch before another may take it over; renewed every third of it.
    #[serde(default = "default_lease_s")]
    pub lease_s: u64,
    /// Seconds in-flight deliveries get to finish after SIGTERM.
    #[serde(default = "default_grace_s")]
    pub shutdown_grace_s: u64,
    /// A display name for this process in `status`, leases and logs; host name and pid when
    /// absent. Only a name: liveness comes from the process's session in the control database,
    /// so replicas may share it.
    #[serde(default)]
    pub worker_id: Option<String>,
    /// First wait before a retry, in milliseconds; doubles with jitter after each failure.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest wait between retries, in seconds.
    #[serde(default = "default_backoff_max_s")]
    pub backoff_max_s: u64,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            lease_s: default_lease_s(),
            shutdown_grace_s: default_grace_s(),
            worker_id: None,
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_s: default_backoff_max_s(),
        }
    }
}

fn default_lease_s() -> u64 {
    120
}
fn default_grace_s() -> u64 {
    60
}
fn default_backoff_initial_ms() -> u64 {
    1000
}
fn default_backoff_max_s() -> u64 {
    60
}

/// One `[[pipeline]]`: a source prefix delivered to one destination.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name (letters, digits, `-`, `_`); appears in logs, metrics and `load_errors`.
    pub name: String,
    /// Seconds a batch may be retried, counted from its first attempt (0 to 7200).
    #[serde(default)]
    pub retry_duration_s: Option<u64>,
    /// Error artifacts go under this prefix; `stageload-errors/<name>/` when absent.
    #[serde(default)]
    pub error_prefix: Option<String>,
    /// Bucket for error artifacts; the source bucket when absent.
    #[serde(default)]
    pub error_bucket: Option<String>,
    /// KMS key for the objects this pipeline writes (SSE-KMS); `[s3] kms_key_id` when absent.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Batches delivered at once for this pipeline.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Where objects are staged.
    pub source: SourceConfig,
    /// When pending objects become a batch.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Where batches go.
    pub destination: DestinationConfig,
    /// Steps run in order on every record between framing and the destination
    /// (`[[pipeline.transform]]`); none by default.
    #[serde(default)]
    pub transform: Vec<transform::TransformConfig>,
}

fn default_workers() -> usize {
    1
}

impl PipelineConfig {
    /// The retry budget: the configured duration or the destination's default.
    pub fn retry_duration(&self) -> Duration {
        Duration::from_secs(
            self.retry_duration_s
                .unwrap_or_else(|| self.destination.default_retry_duration_s()),
        )
    }

    /// How the records a destination receives are framed: the source's framing, or JSON lines
    /// when a transform wrote them (its outputs are compact JSON values, one per record).
    pub fn record_framing(&self) -> Framing {
        if self.transform.is_empty() {
            self.source.format
        } else {
            Framing::JsonLines
        }
    }

    /// Keys under these prefixes are the loader's own output (error artifacts, the
    /// destination's manifests), never staged objects.
    pub fn own_prefixes(&self) -> Vec<String> {
        let mut own = vec![self.error_prefix()];
        own.extend(self.destination.own_prefixes());
        if self.source.after_load == after_load::AfterLoad::Move
            && self
                .source
                .after_load_bucket
                .as_deref()
                .unwrap_or(&self.source.bucket)
                == self.source.bucket
        {
            own.extend(self.source.after_load_prefix.clone());
        }
        own.retain(|p| !p.is_empty());
        own
    }

    /// The prefix for error artifacts, always ending in `/`.
    pub fn error_prefix(&self) -> String {
        let p = self
            .error_prefix
            .clone()
            .unwrap_or_else(|| format!("stageload-errors/{}/", self.name));
        if p.is_empty() || p.ends_with('/') {
            p
        } else {
            format!("{p}/")
        }
    }

    /// The bucket for error artifacts.
    pub fn error_bucket(&self) -> &str {
        self.error_bucket.as_deref().unwrap_or(&self.source.bucket)
    }
}

/// `[pipeline.source]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The bucket.
    pub bucket: String,
    /// The key prefix watched (`firehose/clickstream/`).
    #[serde(default)]
    pub prefix: String,
    /// `auto`, `gzip`, `zstd`, `snappy`, `zip` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// How records are found: `json_lines`, `json_concat`, `lines`, `csv`, `json_array`,
    /// `cloudtrail`, `alb`, `elb`, `vpc_flow`, `cloudfront`, `s3_access`, `parquet` (one JSON
    /// object per row; `compression` does not apply) or `orc` (Redshift only).
    #[serde(default)]
    pub format: Framing,
    /// `csv`: the field delimiter, one ASCII character (default `,`).
    #[serde(default)]
    pub csv_delimiter: Option<String>,
    /// `csv`: the quote character, one ASCII character (default `"`).
    #[serde(default)]
    pub csv_quote: Option<String>,
    /// `json_array`: the JSON pointer to the array whose elements are the records (`/Records`);
    /// unset or `""`, the whole document is the array.
    #[serde(default)]
    pub json_array: Option<String>,
    /// `lines`: records of several lines, each starting at a line matching a pattern.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Seconds between listings of the prefix.
    #[serde(default = "default_poll_interval_s")]
    pub poll_interval_s: u64,
    /// Seconds of time partitions re-listed to catch late writes into older partitions.
    #[serde(default = "default_lookback_s")]
    pub lookback_s: u64,
    /// The time zone of the dates in the keys, an IANA name (`America/Los_Angeles`; default
    /// `UTC`): Firehose writes its time prefix and the time in its object names in the
    /// stream's `CustomTimeZone` when one is set. The lookback window and arrival times read
    /// the keys in it.
    #[serde(default = "default_key_time_zone", deserialize_with = "time_zone")]
    pub key_time_zone: chrono_tz::Tz,
    /// Records larger than this are rejected with code 9104.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// An SQS queue receiving the bucket's S3 event notifications (directly, through SNS, or
    /// from EventBridge), read beside listing. Pipelines may share a queue: each notification
    /// goes to every pipeline whose bucket and prefix match its key, and one that none matches
    /// stays on the queue for its redrive policy. Region and credentials come from `[s3]`, the
    /// endpoint from the URL.
    #[serde(default)]
    pub sqs_queue_url: Option<String>,
    /// Where a new pipeline starts: `beginning` (the default) loads the objects already under
    /// the prefix; `now` only those that land (LastModified, or a notification's event time)
    /// after the pipeline first started. Older objects can be loaded later with `stageload
    /// backfill`.
    #[serde(default)]
    pub start_at: StartAt,
    /// What happens to an object once its batch settled `loaded`: `keep` (the default),
    /// `delete`, `tag` or `move`. Never for a skipped object, at most once per object, recorded
    /// in the ledger.
    #[serde(default)]
    pub after_load: after_load::AfterLoad,
    /// `tag`: the tag added, as `key=value` (default `stageload=loaded`).
    #[serde(default)]
    pub after_load_tag: Option<String>,
    /// `move`: the key prefix objects are moved under (`archive/`); the rest of the key is
    /// kept.
    #[serde(default)]
    pub after_load_prefix: Option<String>,
    /// `move`: the bucket moved to (default: the object's own bucket).
    #[serde(default)]
    pub after_load_bucket: Option<String>,
    /// Seconds an action that keeps failing is retried before it is given up (the object
    /// stays, marked `failed` in the ledger); 60 to 2592000, default 86400.
    #[serde(default = "after_load::default_retry_s")]
    pub after_load_retry_s: u64,
    /// The bucket's region when it is not `[s3] region` (ALB and VPC logs in a bucket per
    /// region): this pipeline's S3 requests are signed for it.
    #[serde(default)]
    pub region: Option<String>,
    /// A role this pipeline's S3 requests (and its OpenSearch signing, unless the destination
    /// names its own) use, assumed through STS from the `[s3]` credentials
    /// (`arn:aws:iam::111122223333:role/logs-reader`, a central logging account).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// The external id the role's trust policy requires (`sts:ExternalId`).
    #[serde(default)]
    pub external_id: Option<String>,
    /// The role session's name, shown in CloudTrail (default `stageload-<pipeline>`).
    #[serde(default)]
    pub session_name: Option<String>,
}

/// `[pipeline.source.multiline]`: multi-line records for `format = "lines"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A regular expression (Rust `regex` syntax) matching a record's first line, such as a
    /// leading timestamp: `^\d{4}-\d{2}-\d{2}`. Lines that do not match join the record above.
    pub start_pattern: String,
    /// A record ends after this many lines (1 to 100000; default 500).
    #[serde(default = "default_multiline_max_lines")]
    pub max_lines: usize,
    /// A record ends before a line that would take it past this many bytes (1024 to
    /// `max_record_bytes`; default `max_record_bytes`).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

fn default_multiline_max_lines() -> usize {
    500
}

impl SourceConfig {
    /// Checks the format's options; returns the field (under `source.`) and the problem.
    fn validate_format(&self, redshift: bool) -> Result<(), (String, String)> {
        let only = |field: &str, format: &str| {
            Err((
                field.to_string(),
                format!("applies only to format = \"{format}\""),
            ))
        };
        for (field, value) in [
            ("csv_delimiter", &self.csv_delimiter),
            ("csv_quote", &self.csv_quote),
        ] {
            let Some(v) = value else { continue };
            if self.format != Framing::Csv {
                return only(field, "csv");
            }
            if v.len() != 1 || !v.is_ascii() || v == "\n" || v == "\r" {
                return Err((
                    field.into(),
                    format!("{v:?} must be one ASCII character other than a line break"),
                ));
            }
        }
        if self.csv_delimiter.is_some() && self.csv_delimiter == self.csv_quote {
            return Err(("csv_quote".into(), "must differ from csv_delimiter".into()));
        }
        if let Some(p) = &self.json_array {
            if self.format != Framing::JsonArray {
                return only("json_array", "json_array");
            }
            if !p.is_empty() && !p.starts_with('/') {
                return Err((
                    "json_array".into(),
                    format!("{p:?} is not a JSON pointer: write it as \"/{p}\""),
                ));
            }
        }
        if let Some(m) = &self.multiline {
            if self.format != Framing::Lines {
                return only("multiline", "lines");
            }
            if let Err(e) = regex::bytes::Regex::new(&m.start_pattern) {
                let first = e.to_string().lines().last().unwrap_or_default().to_string();
                return Err((
                    "multiline.start_pattern".into(),
                    format!("not a regular expression: {first}"),
                ));
            }
            if !(1..=100_000).contains(&m.max_lines) {
                return Err(("multiline.max_lines".into(), "must be 1 to 100000".into()));
            }
            if let Some(b) = m.max_bytes {
                if b < 1024 || b > self.max_record_bytes {
                    return Err((
                        "multiline.max_bytes".into(),
                        format!(
                            "must be 1024 to max_record_bytes ({})",
                            self.max_record_bytes
                        ),
                    ));
                }
            }
        }
        if !redshift && self.format == Framing::Orc {
            return Err((
                "format".into(),
                "ORC is read only by Redshift's COPY (FORMAT AS ORC); for this destination \
                 convert the objects to Parquet (format = \"parquet\") or JSON lines"
                    .into(),
            ));
        }
        if redshift {
            if let Some(advice) = copy_advice(self) {
                return Err((
                    "format".into(),
                    format!(
                        "Redshift's COPY reads the objects itself and cannot apply format = \"{}\"{}: {advice}",
                        self.format.name(),
                        if self.multiline.is_some() { " with multiline" } else { "" },
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// For a Redshift pipeline, what to write instead of a format COPY cannot apply (`None`: the
/// format is only a description of data COPY reads with its own options).
fn copy_advice(source: &SourceConfig) -> Option<&'static str> {
    Some(match source.format {
        // COPY reads these itself (FORMAT AS PARQUET / ORC).
        Framing::JsonLines | Framing::JsonConcat | Framing::Parquet | Framing::Orc => return None,
        Framing::Lines if source.multiline.is_none() => return None,
        Framing::Lines => {
            "COPY loads one line per row and has no option to join lines; drop multiline, or \
             send these objects to a destination that reads records"
        }
        Framing::Csv => {
            "use format = \"lines\" and copy_options = \"CSV IGNOREHEADER 1\" (with \
             DELIMITER and QUOTE AS for other characters); COPY maps columns by position, not by \
             the header's names"
        }
        Framing::JsonArray | Framing::Cloudtrail => {
            "COPY loads a whole JSON array as one row; load each object into a SUPER column with \
             copy_options = \"FORMAT JSON 'noshred'\" and unnest the array in SQL, or send \
             these objects to a destination that reads records"
        }
        Framing::Alb | Framing::Elb => {
            "use format = \"lines\" and copy_options = \"DELIMITER ' ' REMOVEQUOTES \
             FILLRECORD TIMEFORMAT 'auto' GZIP\", with the table's columns in the log's order"
        }
        Framing::VpcFlow => {
            "use format = \"lines\" and copy_options = \"DELIMITER ' ' IGNOREHEADER 1 \
             NULL AS '-' GZIP\", with the table's columns in the log's order"
        }
        Framing::Cloudfront => {
            "use format = \"lines\" and copy_options = \"DELIMITER '\\t' IGNOREHEADER 2 \
             NULL AS '-' GZIP\", with the table's columns in the #Fields order"
        }
        Framing::S3Access => {
            "use format = \"lines\" and copy_options = \"DELIMITER ' ' REMOVEQUOTES \
             FILLRECORD\" (the bracketed time splits into two columns), with the table's \
             columns in the log's order"
        }
    })
}

/// `source.start_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Load what is already under the prefix, then what lands.
    #[default]
    Beginning,
    /// Load only objects that land after the pipeline's first start.
    Now,
}

fn default_poll_interval_s() -> u64 {
    10
}
fn default_lookback_s() -> u64 {
    3600
}
fn default_max_record_bytes() -> usize {
    1024 * 1024
}
fn default_key_time_zone() -> chrono_tz::Tz {
    chrono_tz::UTC
}

/// An IANA time zone name, refused with the names it could have been.
fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "{name:?} is not an IANA time zone name such as \"UTC\" or \"America/Los_Angeles\""
        ))
    })
}

/// `[pipeline.buffer]`: Firehose's buffering hints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Seal when pending bytes reach this many MiB (1 to 1024).
    #[serde(default = "default_size_mib")]
    pub size_mib: u64,
    /// ... or when the oldest pending object has waited this many seconds (0 to 3600).
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// Most objects in one batch (1 to 100000).
    #[serde(default = "default_max_objects")]
    pub max_objects: u32,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            size_mib: default_size_mib(),
            interval_s: default_interval_s(),
            max_objects: default_max_objects(),
        }
    }
}

impl BufferConfig {
    /// The size threshold in bytes.
    pub fn size_bytes(&self) -> i64 {
        (self.size_mib * 1024 * 1024) as i64
    }
}

fn default_size_mib() -> u64 {
    5
}
fn default_interval_s() -> u64 {
    300
}
fn default_max_objects() -> u32 {
    1000
}

impl Config {
    /// Reads, expands and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string(), &|name| {
            std::env::var(name).ok()
        })
    }

    /// Parses config text; `env` looks up variables for `${VAR}` expansion.
    pub fn parse(
        text: &str,
        path: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Value =
            toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: path.into(),
                message: syntax_message(text, &e),
            })?;
        let base = Path::new(path).parent().unwrap_or(Path::new(""));
        generate::include(&mut value, base)
            .and_then(|()| generate::expand_sets(&mut value))
            .map_err(|(field, message)| ConfigError::Field {
                path: path.into(),
                field,
                message,
            })?;
        let names = pipeline_names(&value);
        let field_err = |field: String, message: String| ConfigError::Field {
            path: path.into(),
            field: name_pipelines(&field, &names),
            message,
        };
        expand_tree(&mut value, "", env).map_err(|(f, m)| field_err(f, m))?;
        let config: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            // toml repeats the table on a second line ("in `pipeline.buffer`"); the path says it.
            let message = e.into_inner().to_string();
            let message = without_value(message.lines().next().unwrap_or_default());
            field_err(field, message)
        })?;
        config.validate().map_err(|(f, m)| field_err(f, m))?;
        Ok(config)
    }

    /// Range and cross-field checks; returns the field path and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        let mut seen = HashSet::new();
        // Per queue URL, the first pipeline naming it and its role: one pass, not one per pair.
        type Identity<'a> = (&'a Option<String>, &'a Option<String>);
        let mut queue_identity: std::collections::HashMap<&str, (&str, Identity)> =
            std::collections::HashMap::new();
        if let Some(problem) = self.s3.kms_key_id.as_deref().and_then(kms_key_problem) {
            return Err(("s3.kms_key_id".into(), problem));
        }
        if self.control.pool_size == 0 || self.control.pool_size > 256 {
            return Err(("control.pool_size".into(), "must be 1 to 256".into()));
        }
        let days = self.control.retention_days;
        if !days.is_finite() || !(0.0..=3650.0).contains(&days) {
            return Err((
                "control.retention_days".into(),
                format!("{days} is out of range 0..=3650 (0 keeps history forever)"),
            ));
        }
        if !(1..=86_400).contains(&self.control.retention_interval_s) {
            return Err((
                "control.retention_interval_s".into(),
                "must be 1 to 86400".into(),
            ));
        }
        if !(100..=1_000_000).contains(&self.control.retention_chunk) {
            return Err((
                "control.retention_chunk".into(),
                "must be 100 to 1000000".into(),
            ));
        }
        if self.daemon.lease_s < 3 || self.daemon.lease_s > 3600 {
            return Err(("daemon.lease_s".into(), "must be 3 to 3600".into()));
        }
        if !(1..=600_000).contains(&self.daemon.backoff_initial_ms) {
            return Err((
                "daemon.backoff_initial_ms".into(),
                "must be 1 to 600000".into(),
            ));
        }
        if !(1..=3600).contains(&self.daemon.backoff_max_s) {
            return Err(("daemon.backoff_max_s".into(), "must be 1 to 3600".into()));
        }
        if !self.admin.listen.is_empty()
            && self.admin.listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err((
                "admin.listen".into(),
                format!(
                    "{:?} is not an address like 127.0.0.1:9464",
                    self.admin.listen
                ),
            ));
        }
        for (i, p) in self.pipelines.iter().enumerate() {
            let at = |f: &str| format!("pipeline[{i}].{f}");
            if p.name.is_empty()
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    at("name"),
                    "must be letters, digits, '-' or '_' and not empty".into(),
                ));
            }
            if !seen.insert(p.name.clone()) {
                return Err((at("name"), format!("duplicate pipeline name {:?}", p.name)));
            }
            if let Some(problem) = p.kms_key_id.as_deref().and_then(kms_key_problem) {
                return Err((at("kms_key_id"), problem));
            }
            if let Some(r) = p.retry_duration_s {
                if r > 7200 {
                    return Err((
                        at("retry_duration_s"),
                        format!("{r} is out of range 0..=7200"),
                    ));
                }
            }
            if p.workers == 0 || p.workers > 64 {
                return Err((at("workers"), "must be 1 to 64".into()));
            }
            if p.source.bucket.is_empty() {
                return Err((at("source.bucket"), "must not be empty".into()));
            }
            if let Some(q) = &p.source.sqs_queue_url {
                if let Err(e) = sqs_endpoint(q) {
                    return Err((at("source.sqs_queue_url"), e));
                }
            }
            if p.source.poll_interval_s == 0 || p.source.poll_interval_s > 3600 {
                return Err((at("source.poll_interval_s"), "must be 1 to 3600".into()));
            }
            if p.source.max_record_bytes < 1024 || p.source.max_record_bytes > 256 << 20 {
                return Err((
                    at("source.max_record_bytes"),
                    "must be 1024 to 268435456".into(),
                ));
            }
            let redshift = matches!(p.destination, DestinationConfig::Redshift(_));
            p.source
                .validate_format(redshift)
                .map_err(|(f, m)| (at(&format!("source.{f}")), m))?;
            after_load::validate(i, &self.pipelines).map_err(|(f, m)| (at(&f), m))?;
            transform::validate(&p.transform, redshift).map_err(|(f, m)| (at(&f), m))?;
            let s = &p.source;
            if let Some(queue) = &s.sqs_queue_url {
                let identity = (&s.role_arn, &s.external_id);
                let (first, theirs) = *queue_identity
                    .entry(queue.as_str())
                    .or_insert((p.name.as_str(), identity));
                if theirs != identity {
                    return Err((
                        at("source.role_arn"),
                        format!(
                            "pipeline {first:?} reads the same sqs_queue_url as another identity: \
                             pipelines sharing a queue read it with one role"
                        ),
                    ));
                }
            }
            identity::check_region("source.region", s.region.as_deref())
                .and_then(|()| {
                    identity::check_role(
                        "source.",
                        s.role_arn.as_deref(),
                        s.external_id.as_deref(),
                        s.session_name.as_deref(),
                    )
                })
                .map_err(|(f, m)| (at(&f), m))?;
            let role = match &p.destination {
                DestinationConfig::Elasticsearch(e) => Some((&e.aws_role_arn, &e.aws_external_id)),
                DestinationConfig::Redshift(r) => Some((&r.aws_role_arn, &r.aws_external_id)),
                _ => None,
            };
            if let Some((arn, external_id)) = role {
                identity::check_role(
                    "destination.aws_",
                    arn.as_deref(),
                    external_id.as_deref(),
                    None,
                )
                .map_err(|(f, m)| (at(&f), m))?;
            }
            let b = &p.buffer;
            if !(1..=1024).contains(&b.size_mib) {
                return Err((
                    at("buffer.size_mib"),
                    format!("{} is out of range 1..=1024", b.size_mib),
                ));
            }
            if b.interval_s > 3600 {
                return Err((
                    at("buffer.interval_s"),
                    format!("{} is out of range 0..=3600", b.interval_s),
                ));
            }
            if !(1..=100_000).contains(&b.max_objects) {
                return Err((
                    at("buffer.max_objects"),
                    format!("{} is out of range 1..=100000", b.max_objects),
                ));
            }
            destination::validate(&p.destination)
                .map_err(|(f, m)| (at(&format!("destination.{f}")), m))?;
            if let DestinationConfig::Redshift(r) = &p.destination {
                copy_options::check(p.source.format, r).map_err(|(f, m)| (at(&f), m))?;
            }
        }
        Ok(())
    }
}

/// Pipeline names by position, read from the raw tree so even a pipeline that fails to
/// deserialize is named in the error.
fn pipeline_names(value: &toml::Value) -> Vec<Option<String>> {
    value
        .get("pipeline")
        .and_then(|p| p.as_array())
        .map(|a| {
            a.iter()
                .map(|p| p.get("name").and_then(|n| n.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What is wrong with a KMS key name, if anything: S3 takes a key id, a key ARN, `alias/name`
/// or an alias ARN in `x-amz-server-side-encryption-aws-kms-key-id`.
fn kms_key_problem(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key.len() <= 2048
        && !key.chars().any(|c| c.is_whitespace() || c.is_control())
        && (key.starts_with("arn:aws")
            || key.starts_with("alias/")
            || key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    (!ok).then(|| format!("{key:?} is not a KMS key id, key ARN, alias/name or alias ARN"))
}

/// Rewrites `pipeline[1].buffer` as `pipeline "clicks".buffer`.
fn name_pipelines(field: &str, names: &[Option<String>]) -> String {
    let Some(rest) = field.strip_prefix("pipeline[") else {
        return field.to_string();
    };
    let Some(close) = rest.find(']') else {
        return field.to_string();
    };
    match rest[..close]
        .parse::<usize>()
        .ok()
        .and_then(|i| names.get(i))
    {
        Some(Some(name)) => format!("pipeline {:?}{}", name, &rest[close + 1..]),
        _ => field.to_string(),
    }
}

/// The parser's complaint with its line and column, but never the offending line itself: toml
/// quotes the source line, which may hold a password.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

/// A deserializer's message without the value it quotes: serde says `invalid type: string
/// "hunter2", expected u32`, and the value may be a secret put in the wrong field.
fn without_value(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(lead) {
            if let Some((_, expected)) = rest.rsplit_once(", expected ") {
                let kind = rest.split([' ', ',']).next().unwrap_or_default();
                return format!("{lead}{kind}, expected {expected}");
            }
        }
    }
    message.to_string()
}

fn expand_tree(
    value: &mut toml::Value,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(s) => {
            *s = expand(s, env).map_err(|m| (at.to_string(), m))?;
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_tree(v, &format!("{at}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                expand_tree(v, &path, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. An unset variable with no
/// default is an error naming it (an empty password is rarely what anyone meant). Errors never
/// quote the string: it may be a password; the caller names the field.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unclosed ${ (no matching })".to_string())?;
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                // The text is not a variable name, so it may be part of the value: not echoed.
                return Err("bad variable name in ${...}: letters, digits and _ only (write $$ for a literal $)".to_string());
            }
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;

/// The SQS endpoint a queue URL lives at: its scheme, host and port.
pub fn sqs_endpoint(queue_url: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(queue_url).map_err(|e| format!("{queue_url:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{queue_url:?} is not an http(s) queue URL"));
    }
    Ok(url.origin().ascii_serialization())
}
