//! `type = "elasticsearch"`: the Elasticsearch and OpenSearch destination's
//! `[pipeline.destination]` table, its defaults and its startup checks.
//!
//! Compiled as `crate::config::destination::elasticsearch` (the config layer, which imports no
//! destination), and kept beside the destination it configures.

use super::HttpCompression;
use crate::config::secret::Secret;
use serde::Deserialize;
use std::path::PathBuf;

/// How Elasticsearch index names rotate (Firehose's `IndexRotationPeriod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexRotation {
    /// `index` as written.
    #[default]
    None,
    /// `index-YYYY-MM-DD-HH`.
    Hour,
    /// `index-YYYY-MM-DD`.
    Day,
    /// `index-YYYY-wWW` (ISO-8601 week and week-year).
    Week,
    /// `index-YYYY-MM`.
    Month,
}

/// How documents get their `_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DocumentId {
    /// A stable hash of bucket, key, etag and record ordinal: retries overwrite, never duplicate.
    #[default]
    Deterministic,
    /// The server assigns ids (duplicates possible on retry).
    Auto,
    /// The value at `id_field` (a JSON pointer) in the record.
    Field,
}

/// The `_bulk` action each document is sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// `index`: a document with the same `_id` is replaced.
    #[default]
    Index,
    /// `create`: what data streams take; a document whose `_id` is there already answers 409,
    /// which counts as delivered. Documents without `@timestamp` get one.
    Create,
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EsAuth {
    /// `username`/`password`, `api_key`, or nothing.
    #[default]
    Static,
    /// AWS Signature Version 4 with the AWS credential chain: Amazon OpenSearch Service (`es`)
    /// and OpenSearch Serverless (`aoss`).
    AwsSigv4,
}

/// `type = "elasticsearch"` (also OpenSearch).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Cluster endpoints, round robin with failover (`https://es:9200`); empty with `cloud_id`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Elastic Cloud's Cloud ID (`<name>:<base64 of host$es-uuid$kibana-uuid>`), instead of
    /// `endpoints`: the deployment's Elasticsearch URL is taken from it.
    #[serde(default)]
    pub cloud_id: Option<String>,
    /// Index name (before rotation), or a template naming each record's index from its fields
    /// and time: `logs-{.service}-%Y.%m.%d` (`{.a.b}` is the record's field `a.b`; `%Y`, `%m`,
    /// `%d`, `%H`, `%G`, `%V` are the record's time in UTC, from `timestamp_field` or the
    /// object's arrival).
    pub index: String,
    /// Where records go whose template field is missing, not a string or number, or not a
    /// usable index name, and records past `max_indices_per_batch`; required when `index` names
    /// a record field.
    #[serde(default)]
    pub default_index: Option<String>,
    /// Distinct indexes one batch may write to through an `index` template (1 to 10000); the
    /// records that would open more go to `default_index`, and the batch logs a warning.
    #[serde(default = "default_max_indices_per_batch")]
    pub max_indices_per_batch: usize,
    /// Index rotation period, computed in UTC.
    #[serde(default)]
    pub index_rotation: IndexRotation,
    /// How documents get their `_id`.
    #[serde(default)]
    pub document_id: DocumentId,
    /// JSON pointer of the id field when `document_id = "field"` (`/event_id`).
    #[serde(default)]
    pub id_field: Option<String>,
    /// JSON pointer of a timestamp field that picks the rotated index; arrival time otherwise.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// `index` (default) or `create`, the action data streams take: a retried create of a
    /// document already there answers 409 and counts as delivered, and a document without a
    /// top-level `@timestamp` gets one (from `timestamp_field`, else the object's arrival time).
    #[serde(default)]
    pub op_type: OpType,
    /// Ingest pipeline to run on the server.
    #[serde(default)]
    pub ingest_pipeline: Option<String>,
    /// Largest `_bulk` body in bytes.
    #[serde(default = "default_bulk_max_bytes")]
    pub bulk_max_bytes: usize,
    /// Most documents in one `_bulk` request.
    #[serde(default = "default_bulk_max_docs")]
    pub bulk_max_docs: usize,
    /// Bulk requests in flight at once.
    #[serde(default = "super::default_concurrency")]
    pub concurrency: usize,
    /// Basic auth user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key (`Authorization: ApiKey ...`), the base64 form.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// `static` (the default: `username`/`password`, `api_key` or none) or `aws_sigv4`: every
    /// request signed with AWS Signature Version 4 and the AWS credential chain.
    #[serde(default)]
    pub auth: EsAuth,
    /// `aws_sigv4`: the service signed for, `es` (Amazon OpenSearch Service) or `aoss`
    /// (OpenSearch Serverless); default from the endpoint (`*.aoss.amazonaws.com` is `aoss`),
    /// else `es`.
    #[serde(default)]
    pub aws_service: Option<String>,
    /// `aws_sigv4`: the region signed for; default from the endpoint
    /// (`search-x.eu-west-1.es.amazonaws.com`), else `[s3] region`.
    #[serde(default)]
    pub aws_region: Option<String>,
    /// `aws_sigv4`: a role to sign as, assumed through STS from the pipeline's credentials
    /// (the OpenSearch domain in another account); default: the pipeline's own identity.
    #[serde(default)]
    pub aws_role_arn: Option<String>,
    /// `aws_sigv4`: the external id `aws_role_arn`'s trust policy requires.
    #[serde(default)]
    pub aws_external_id: Option<String>,
    /// PEM file of CA certificates to trust in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate verification (never in production).
    #[serde(default)]
    pub tls_insecure_skip_verify: bool,
    /// Request body compression.
    #[serde(default)]
    pub compression: HttpCompression,
    /// Seconds before a request times out.
    #[serde(default = "super::default_request_timeout_s")]
    pub request_timeout_s: u64,
}

fn default_max_indices_per_batch() -> usize {
    100
}

/// One piece of an `index` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexPart {
    /// Literal text.
    Text(String),
    /// Text with strftime specifiers, formatted with the record's time.
    Time(String),
    /// A record field, as a JSON pointer (`{.a.b}` is `/a/b`).
    Field(String),
}

/// Parses an `index` template into its pieces; None for a plain index name (no `{` or `%`).
pub fn index_template(index: &str) -> Result<Option<Vec<IndexPart>>, String> {
    if !index.contains('{') && !index.contains('%') {
        return Ok(None);
    }
    let mut parts = Vec::new();
    let mut rest = index;
    let text = |t: &str, parts: &mut Vec<IndexPart>| -> Result<(), String> {
        if t.is_empty() {
            return Ok(());
        }
        if t.contains('}') {
            return Err(format!("{index:?} has a '}}' without its '{{'"));
        }
        if !t.contains('%') {
            parts.push(IndexPart::Text(t.to_string()));
            return Ok(());
        }
        use chrono::format::{Item, StrftimeItems};
        if StrftimeItems::new(t).any(|i| matches!(i, Item::Error)) {
            return Err(format!("{t:?} holds a % that is not a strftime specifier"));
        }
        parts.push(IndexPart::Time(t.to_string()));
        Ok(())
    };
    while let Some(open) = rest.find('{') {
        text(&rest[..open], &mut parts)?;
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("{index:?} has a '{{' without its '}}'"))?;
        let field = &rest[open + 1..open + close];
        let path = field.strip_prefix('.').unwrap_or("");
        let ok = !path.is_empty()
            && path.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@'))
            });
        if !ok {
            return Err(format!(
                "{{{field}}} is not a record field: write it as {{.name}} or {{.a.b}}"
            ));
        }
        parts.push(IndexPart::Field(format!("/{}", path.replace('.', "/"))));
        rest = &rest[open + close + 1..];
    }
    text(rest, &mut parts)?;
    Ok(Some(parts))
}

fn default_bulk_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_bulk_max_docs() -> usize {
    10_000
}

/// True when an `http(s)://user[:password]@host` URL names a user.
fn endpoint_has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.contains('@')
}

impl ElasticsearchConfig {
    /// The endpoints to send to: `endpoints`, or the URL `cloud_id` names (validated first).
    pub fn urls(&self) -> Vec<String> {
        match self
            .cloud_id
            .as_deref()
            .and_then(|id| elasticsearch::http::transport::CloudId::parse(id).ok())
        {
            Some(cloud) => vec![cloud.url.to_string()],
            None => self.endpoints.clone(),
        }
    }

    /// Checks the fields; returns the field (relative to `destination`) and the problem.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: String| Err((f.to_string(), m));
        let e = self;
        match (&e.cloud_id, e.endpoints.is_empty()) {
            (None, true) => {
                return err(
                    "endpoints",
                    "needs at least one URL (or set cloud_id)".into(),
                )
            }
            (Some(_), false) => {
                return err(
                    "cloud_id",
                    "set either cloud_id or endpoints, not both".into(),
                )
            }
            (Some(id), true) => {
                if let Err(problem) = elasticsearch::http::transport::CloudId::parse(id) {
                    return err("cloud_id", format!("is not an Elastic Cloud ID: {problem}"));
                }
            }
            (None, false) => {}
        }
        if let Some(bad) = e
            .endpoints
            .iter()
            .find(|u| !u.starts_with("http://") && !u.starts_with("https://"))
        {
            return err(
                "endpoints",
                format!(
                    "{:?} is not an http(s) URL",
                    crate::config::secret::redact_url(bad)
                ),
            );
        }
        let template = index_template(&e.index).map_err(|m| ("index".to_string(), m))?;
        // What must be lowercase is the text, not a strftime specifier (`%Y`) or a field name.
        let literal: String = match &template {
            None => e.index.clone(),
            Some(parts) => parts
                .iter()
                .map(|p| match p {
                    IndexPart::Text(t) => t.clone(),
                    IndexPart::Time(t) => {
                        let mut out = String::new();
                        let mut chars = t.chars();
                        while let Some(c) = chars.next() {
                            if c == '%' {
                                chars.next();
                            } else {
                                out.push(c);
                            }
                        }
                        out
                    }
                    IndexPart::Field(_) => String::new(),
                })
                .collect(),
        };
        if e.index.is_empty() || literal != literal.to_lowercase() {
            return err("index", "must be a non-empty lowercase index name".into());
        }
        if let Some(parts) = &template {
            if e.index_rotation != IndexRotation::None {
                return err(
                    "index_rotation",
                    "must be \"none\" with an index template: put %Y-%m-%d in the template".into(),
                );
            }
            let fields = parts.iter().any(|p| matches!(p, IndexPart::Field(_)));
            if fields && e.default_index.is_none() {
                return err(
                    "default_index",
                    "is required when index names a record field: records without it go there"
                        .into(),
                );
            }
        }
        if let Some(d) = &e.default_index {
            if d.is_empty() || *d != d.to_lowercase() || d.contains(['{', '%', ' ', ',', '*']) {
                return err(
                    "default_index",
                    "must be a plain lowercase index name".into(),
                );
            }
        }
        if !(1..=10_000).contains(&e.max_indices_per_batch) {
            return err("max_indices_per_batch", "must be 1 to 10000".into());
        }
        if e.document_id == DocumentId::Field && e.id_field.is_none() {
            return err(
                "id_field",
                "is required when document_id = \"field\"".into(),
            );
        }
        if !(1024..=100 << 20).contains(&e.bulk_max_bytes) {
            return err("bulk_max_bytes", "must be 1024 to 104857600".into());
        }
        if !(1..=100_000).contains(&e.bulk_max_docs) {
            return err("bulk_max_docs", "must be 1 to 100000".into());
        }
        if !(1..=64).contains(&e.concurrency) {
            return err("concurrency", "must be 1 to 64".into());
        }
        if e.password.is_some() && e.username.is_none() {
            return err("username", "is required with password".into());
        }
        if e.api_key.is_some() && e.username.is_some() {
            return err(
                "api_key",
                "set either api_key or username and password, not both".into(),
            );
        }
        if e.endpoints.iter().any(|u| endpoint_has_userinfo(u)) {
            return err(
                "endpoints",
                "must not carry credentials: use username and password, or api_key".into(),
            );
        }
        for (field, value) in [
            ("id_field", &e.id_field),
            ("timestamp_field", &e.timestamp_field),
        ] {
            if let Some(p) = value.as_deref().filter(|p| !p.starts_with('/')) {
                return err(
                    field,
                    format!("{p:?} is not a JSON pointer: write it as \"/{p}\""),
                );
            }
        }
        if !(1..=3600).contains(&e.request_timeout_s) {
            return err("request_timeout_s", "must be 1 to 3600".into());
        }
        self.validate_sigv4()
    }

    fn validate_sigv4(&self) -> Result<(), (String, String)> {
        let err = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        if self.auth != EsAuth::AwsSigv4 {
            if self.aws_service.is_some()
                || self.aws_region.is_some()
                || self.aws_role_arn.is_some()
            {
                let f = if self.aws_service.is_some() {
                    "aws_service"
                } else if self.aws_region.is_some() {
                    "aws_region"
                } else {
                    "aws_role_arn"
                };
                return err(f, "is only read with auth = \"aws_sigv4\"");
            }
            return Ok(());
        }
        if self.username.is_some() || self.api_key.is_some() {
            let f = if self.username.is_some() {
                "username"
            } else {
                "api_key"
            };
            return err(
                f,
                "auth = \"aws_sigv4\" signs with AWS credentials: remove username, password and api_key",
            );
        }
        if self.cloud_id.is_some() {
            return err("cloud_id", "Elastic Cloud does not take AWS signatures");
        }
        if let Some(s) = self.aws_service.as_deref() {
            if s != "es" && s != "aoss" {
                return err(
                    "aws_service",
                    "must be \"es\" (Amazon OpenSearch Service) or \"aoss\" (OpenSearch Serverless)",
                );
            }
        }
        if matches!(self.aws_region.as_deref(), Some("")) {
            return err("aws_region", "must not be empty");
        }
        Ok(())
    }

    /// `aws_sigv4`: the service and region to sign for, from the settings or else the first
    /// endpoint's host (`<id>.<region>.aoss.amazonaws.com`,
    /// `search-<domain>-<id>.<region>.es.amazonaws.com`); the region is `None` when neither
    /// names it (the caller falls back to `[s3] region`).
    pub fn sigv4_scope(&self) -> (String, Option<String>) {
        let host = self
            .endpoints
            .first()
            .and_then(|u| u.split_once("://").map(|(_, r)| r))
            .map(|r| &r[..r.find(['/', ':', '?']).unwrap_or(r.len())])
            .unwrap_or("")
            .to_ascii_lowercase();
        let labels: Vec<&str> = host.split('.').collect();
        let from_host = |service: &str| {
            let at = labels.iter().rposition(|l| *l == service)?;
            (labels.get(at + 1) == Some(&"amazonaws") && at >= 2)
                .then(|| labels[at - 1].to_string())
        };
        let service = self.aws_service.clone().unwrap_or_else(|| {
            if from_host("aoss").is_some() {
                "aoss".into()
            } else {
                "es".into()
            }
        });
        let region = self.aws_region.clone().or_else(|| from_host(&service));
        (service, region)
    }
}
