//! `type = "splunk"`: the Splunk HTTP Event Collector destination's `[pipeline.destination]`
//! table, its defaults and its startup checks.
//!
//! Compiled as `crate::config::destination::splunk` (the config layer, which imports no
//! destination), and kept beside the destination it configures.

use super::HttpCompression;
use crate::config::secret::Secret;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which HEC endpoint receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HecEndpoint {
    /// `/services/collector/event`: each record in the JSON envelope.
    #[default]
    Event,
    /// `/services/collector/raw`: records joined by newlines, metadata in the query string.
    Raw,
}

/// `type = "splunk"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// HEC base URL (`https://hec.example.com:8088`); or `urls`.
    #[serde(default)]
    pub url: String,
    /// Several HEC base URLs (the indexers or heavy forwarders of a cluster, without a load
    /// balancer in front): each channel is bound to one, new channels go round robin over the
    /// healthy ones, and one failing its health check or refusing connections is left out
    /// until it passes again.
    #[serde(default)]
    pub urls: Vec<String>,
    /// With `urls`: seconds between health checks of each URL
    /// (`GET /services/collector/health`), 1 to 300.
    #[serde(default = "default_health_check_interval_s")]
    pub health_check_interval_s: u64,
    /// HEC token, sent as `Authorization: Splunk <token>`.
    pub token: Secret,
    /// `event` or `raw`.
    #[serde(default)]
    pub endpoint: HecEndpoint,
    /// Target index; the token's default when absent.
    #[serde(default)]
    pub index: Option<String>,
    /// Sourcetype for every event.
    #[serde(default)]
    pub sourcetype: Option<String>,
    /// Source for every event; the object's `s3://` URL when absent.
    #[serde(default)]
    pub source: Option<String>,
    /// Host for every event.
    #[serde(default)]
    pub host: Option<String>,
    /// JSON pointer of the event time (seconds, milliseconds or RFC 3339); arrival time otherwise.
    #[serde(default)]
    pub time_field: Option<String>,
    /// JSON pointer of each event's index (`/team`); `index` for events without it.
    #[serde(default)]
    pub index_field: Option<String>,
    /// JSON pointer of each event's sourcetype; `sourcetype` for events without it.
    #[serde(default)]
    pub sourcetype_field: Option<String>,
    /// JSON pointer of each event's source; `source` (or the object's URL) without it.
    #[serde(default)]
    pub source_field: Option<String>,
    /// JSON pointer of each event's host; `host` for events without it.
    #[serde(default)]
    pub host_field: Option<String>,
    /// Indexed fields added to every event (`fields` in the envelope).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Wait for indexer acknowledgement of every request.
    #[serde(default = "default_true")]
    pub ack: bool,
    /// Seconds to wait for an ack before sending the request again.
    #[serde(default = "default_ack_timeout_s")]
    pub ack_timeout_s: u64,
    /// Longest time between ack polls, in seconds. Polls come faster while acks come back
    /// fast: the pace follows the observed ack latency, down to one poll per 20 ms, and polls
    /// that find nothing acknowledged slow it back down to this.
    #[serde(default = "default_ack_poll_interval_s")]
    pub ack_poll_interval_s: f64,
    /// Largest request body in bytes.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Requests in flight at once.
    #[serde(default = "super::default_concurrency")]
    pub concurrency: usize,
    /// Requests sent but not yet acknowledged that a batch keeps in memory (to send again if
    /// their ack never comes); sending pauses at this many until acks arrive.
    #[serde(default = "default_max_unacked_requests")]
    pub max_unacked_requests: usize,
    /// Request body compression.
    #[serde(default)]
    pub compression: HttpCompression,
    /// PEM file of CA certificates to trust in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate verification (never in production).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// Seconds before a request times out.
    #[serde(default = "super::default_request_timeout_s")]
    pub request_timeout_s: u64,
}

fn default_max_unacked_requests() -> usize {
    // With 1 MiB requests this keeps peak memory near 70 MB (measured: 64 gave 123 MB).
    32
}
fn default_health_check_interval_s() -> u64 {
    10
}
fn default_true() -> bool {
    true
}
fn default_ack_timeout_s() -> u64 {
    180
}
fn default_ack_poll_interval_s() -> f64 {
    1.0
}
fn default_max_request_bytes() -> usize {
    1024 * 1024
}

impl SplunkConfig {
    /// The HEC base URLs: `urls`, or `url` alone.
    pub fn hec_urls(&self) -> Vec<String> {
        if self.urls.is_empty() {
            vec![self.url.clone()]
        } else {
            self.urls.clone()
        }
    }

    /// Checks the fields; returns the field (relative to `destination`) and the problem.
    /// The fields that hold JSON pointers into each record, time first.
    fn pointer_fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("time_field", self.time_field.as_deref()),
            ("index_field", self.index_field.as_deref()),
            ("sourcetype_field", self.sourcetype_field.as_deref()),
            ("source_field", self.source_field.as_deref()),
            ("host_field", self.host_field.as_deref()),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let s = self;
        match (s.url.is_empty(), s.urls.is_empty()) {
            (true, true) => return err("url", "is required (or urls)".into()),
            (false, false) => return err("urls", "set either url or urls, not both".into()),
            _ => {}
        }
        let field = if s.urls.is_empty() { "url" } else { "urls" };
        if s.hec_urls()
            .iter()
            .any(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return err(field, "must be an http(s) URL".into());
        }
        if !(1..=300).contains(&s.health_check_interval_s) {
            return err("health_check_interval_s", "must be 1 to 300".into());
        }
        if s.token.expose().is_empty() {
            return err("token", "must not be empty".into());
        }
        if !(1..=3600).contains(&s.ack_timeout_s) {
            return err("ack_timeout_s", "must be 1 to 3600".into());
        }
        if !(0.01..=60.0).contains(&s.ack_poll_interval_s) {
            return err("ack_poll_interval_s", "must be 0.01 to 60".into());
        }
        if !(1024..=100 << 20).contains(&s.max_request_bytes) {
            return err("max_request_bytes", "must be 1024 to 104857600".into());
        }
        if !(1..=64).contains(&s.concurrency) {
            return err("concurrency", "must be 1 to 64".into());
        }
        if !(s.concurrency..=100_000).contains(&s.max_unacked_requests) {
            return err(
                "max_unacked_requests",
                "must be at least concurrency and at most 100000".into(),
            );
        }
        if !(1..=3600).contains(&s.request_timeout_s) {
            return err("request_timeout_s", "must be 1 to 3600".into());
        }
        for (field, value) in s.pointer_fields() {
            if let Some(p) = value.filter(|p| !p.starts_with('/')) {
                return err(
                    field,
                    format!("{p:?} is not a JSON pointer (write \"/ts\" for a top-level ts)"),
                );
            }
        }
        if s.endpoint == HecEndpoint::Raw {
            if let Some((field, _)) = s
                .pointer_fields()
                .into_iter()
                .skip(1)
                .find(|(_, v)| v.is_some())
            {
                return err(
                    field,
                    "applies to endpoint = \"event\" only; a raw request carries one index, \
                     sourcetype, source and host for all its events, in its query string"
                        .into(),
                );
            }
            if s.time_field.is_some() {
                return err(
                    "time_field",
                    "applies to endpoint = \"event\" only; Splunk extracts timestamps from raw data".into(),
                );
            }
            if !s.fields.is_empty() {
                return err(
                    "fields",
                    "applies to endpoint = \"event\" only; HEC's raw endpoint has no indexed fields".into(),
                );
            }
        }
        Ok(())
    }
}
