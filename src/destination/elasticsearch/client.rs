//! The HTTP side, on the `elasticsearch` crate: building the transport (endpoints, TLS,
//! credentials, body compression) and sending ready NDJSON bodies to `_bulk` as raw bytes.

use crate::config::{ElasticsearchConfig, HttpCompression};
use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use std::path::PathBuf;
use std::time::Duration;

/// The `filter_path` of every `_bulk` request: the answer keeps `errors` and, per item, its
/// `status` and `error` (the members [`super::retry::parse_bulk`] reads), so it shrinks from
/// about 150 bytes per document to about 25, as Logstash's Elasticsearch output asks.
pub const BULK_FILTER_PATH: &str = "errors,items.*.status,items.*.error";

/// The client could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An endpoint is not a URL.
    #[error("endpoint {endpoint:?} is not a valid URL: {message}")]
    Endpoint {
        /// The endpoint as configured, password redacted.
        endpoint: String,
        /// The parse error.
        message: String,
    },
    /// The CA file could not be read.
    #[error("ca_file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("ca_file {path}: not a PEM certificate bundle: {message}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The HTTP client refused its settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// How a request ended.
#[derive(Debug)]
pub enum Sent {
    /// The server answered.
    Answer {
        /// HTTP status.
        status: u16,
        /// The whole body.
        body: Bytes,
    },
    /// No answer: connection refused or reset, timeout, TLS failure.
    Unreachable(String),
}

/// A configured connection to the cluster.
pub struct Client {
    es: Elasticsearch,
    gzip: bool,
    bulk_query: Vec<(&'static str, String)>,
    endpoints: String,
}

impl Client {
    /// Builds the client; performs no I/O besides reading `ca_file`.
    pub fn build(config: &ElasticsearchConfig) -> Result<Client, ClientError> {
        let urls = config
            .endpoints
            .iter()
            .map(|e| {
                // A trailing slash keeps a path prefix (a proxy's `/es/`) when paths are joined.
                let with_slash = if e.ends_with('/') {
                    e.clone()
                } else {
                    format!("{e}/")
                };
                Url::parse(&with_slash).map_err(|err| ClientError::Endpoint {
                    endpoint: crate::config::secret::redact_url(e),
                    message: err.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pool = MultiNodeConnectionPool::round_robin(urls, None);
        let mut builder = TransportBuilder::new(pool)
            .timeout(Duration::from_secs(config.request_timeout_s))
            .enable_meta_header(false)
            // The client's own compression runs level 6 on the runtime thread; bodies are
            // compressed here instead (`destination::gzip`: level 1, on a blocking thread).
            .request_body_compression(false);
        if let Some(key) = &config.api_key {
            builder = builder.auth(Credentials::EncodedApiKey(key.expose().to_string()));
        } else if let Some(user) = &config.username {
            let password = config.password.as_ref().map(|p| p.expose()).unwrap_or("");
            builder = builder.auth(Credentials::Basic(user.clone(), password.to_string()));
        }
        if config.tls_insecure_skip_verify {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| ClientError::CaFile {
                path: path.clone(),
                source,
            })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| ClientError::Certificate {
                path: path.clone(),
                message: e.to_string(),
            })?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        // Only what the answer is read for: each item's status and error. The items stay one
        // per action (every item has a status), a fifth of their full size; answers to a failed
        // request are never filtered by Elasticsearch or OpenSearch.
        let mut bulk_query = vec![("filter_path", BULK_FILTER_PATH.to_owned())];
        if let Some(p) = &config.ingest_pipeline {
            bulk_query.push(("pipeline", p.clone()));
        }
        Ok(Client {
            es: Elasticsearch::new(transport),
            gzip: config.compression == HttpCompression::Gzip,
            bulk_query,
            endpoints: config
                .endpoints
                .iter()
                .map(|e| crate::config::secret::redact_url(e))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Sends one NDJSON body to `_bulk` (gzip-compressed at level 1 when the pipeline says
    /// `compression = "gzip"`), asking for the answer's `errors` and each item's `status` and
    /// `error` only ([`BULK_FILTER_PATH`]).
    pub async fn bulk(&self, body: Bytes) -> Sent {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        let query = (!self.bulk_query.is_empty()).then_some(&self.bulk_query);
        let body = if self.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            Bytes::from(crate::destination::gzip::gzip(body).await)
        } else {
            body
        };
        let sent = self
            .es
            .send(Method::Post, "_bulk", headers, query, Some(body), None)
            .await;
        answer(sent).await
    }

    /// `GET /`: reachability and credentials.
    pub async fn ping(&self) -> Sent {
        let sent = self
            .es
            .send::<(), ()>(Method::Get, "", HeaderMap::new(), None, None, None)
            .await;
        answer(sent).await
    }
}

async fn answer(
    sent: Result<elasticsearch::http::response::Response, elasticsearch::Error>,
) -> Sent {
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Sent::Unreachable(chain(&e)),
    };
    let status = response.status_code().as_u16();
    match response.bytes().await {
        Ok(body) => Sent::Answer { status, body },
        Err(e) => Sent::Unreachable(format!("reading the response: {}", chain(&e))),
    }
}

/// An error with its causes, which for reqwest hold the useful part ("connection refused").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
