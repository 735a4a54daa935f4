//! The HTTP side, on the `elasticsearch` crate: building one transport per endpoint (TLS,
//! credentials, body compression) and sending ready NDJSON bodies to `_bulk` as raw bytes, on
//! the node [`Nodes`] picks (round robin, refusing nodes taken out).

use super::nodes::Nodes;
use super::sigv4::{empty_sha256, sha256_hex, Signer};
use crate::config::{ElasticsearchConfig, HttpCompression};
use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// One client per endpoint, with the endpoint as messages show it.
    es: Vec<(Elasticsearch, String)>,
    /// Each endpoint's base URL (with a trailing slash), which signed requests are signed for.
    bases: Vec<Url>,
    /// Signs every request when `auth = "aws_sigv4"`.
    signer: Option<Signer>,
    /// The path `check` asks for: `` (`GET /`), or for OpenSearch Serverless, which has no
    /// `GET /`, the index (`HEAD <index>`).
    check_index: Option<String>,
    nodes: Nodes,
    gzip: bool,
    bulk_query: Vec<(&'static str, String)>,
    endpoints: String,
}

impl Client {
    /// Builds the client; performs no I/O besides reading `ca_file`. With a `signer`, every
    /// request is signed (`auth = "aws_sigv4"`); `check_index` is the index name the startup
    /// check asks about on OpenSearch Serverless.
    pub fn build(
        config: &ElasticsearchConfig,
        signer: Option<Signer>,
        check_index: String,
    ) -> Result<Client, ClientError> {
        let endpoints = config.urls();
        let urls = endpoints
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
        let pem = match (&config.ca_file, config.tls_insecure_skip_verify) {
            (Some(path), false) => {
                Some(std::fs::read(path).map_err(|source| ClientError::CaFile {
                    path: path.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        let mut es = Vec::with_capacity(urls.len());
        let bases = urls.clone();
        for (url, shown) in urls.into_iter().zip(&endpoints) {
            let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
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
            } else if let (Some(pem), Some(path)) = (&pem, &config.ca_file) {
                let cert = Certificate::from_pem(pem).map_err(|e| ClientError::Certificate {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                builder = builder.cert_validation(CertificateValidation::Full(cert));
            }
            let transport = builder
                .build()
                .map_err(|e| ClientError::Build(e.to_string()))?;
            es.push((
                Elasticsearch::new(transport),
                crate::config::secret::redact_url(shown),
            ));
        }
        // Only what the answer is read for: each item's status and error. The items stay one
        // per action (every item has a status), a fifth of their full size; answers to a failed
        // request are never filtered by Elasticsearch or OpenSearch.
        let mut bulk_query = vec![("filter_path", BULK_FILTER_PATH.to_owned())];
        if let Some(p) = &config.ingest_pipeline {
            bulk_query.push(("pipeline", p.clone()));
        }
        let check_index = signer
            .as_ref()
            .is_some_and(|s| s.service() == "aoss")
            .then_some(check_index);
        Ok(Client {
            nodes: Nodes::new(es.len()),
            es,
            bases,
            signer,
            check_index,
            gzip: config.compression == HttpCompression::Gzip,
            bulk_query,
            endpoints: endpoints
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
        let signing = match self.signing(&body).await {
            Ok(s) => s,
            Err(e) => return Sent::Unreachable(e),
        };
        let query_pairs = query.cloned().unwrap_or_default();
        self.on_a_node(|es, base| {
            let headers = self.signed(&signing, "POST", base, "_bulk", &query_pairs, &headers)?;
            Ok(es.send(
                Method::Post,
                "_bulk",
                headers,
                query,
                Some(body.clone()),
                None,
            ))
        })
        .await
    }

    /// The credentials and body hash a signed request needs, once per request whatever the
    /// node; `None` when requests are not signed.
    async fn signing(
        &self,
        body: &Bytes,
    ) -> Result<Option<(super::sigv4::Identified, String)>, String> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let who = signer.identity().await?;
        let hash = if body.is_empty() {
            empty_sha256()
        } else {
            sha256_hex(body.clone()).await
        };
        Ok(Some((who, hash)))
    }

    /// `headers` plus, when signing, the signature for `method` on `base` + `path` + `query`.
    fn signed(
        &self,
        signing: &Option<(super::sigv4::Identified, String)>,
        method: &str,
        base: &Url,
        path: &str,
        query: &[(&'static str, String)],
        headers: &HeaderMap,
    ) -> Result<HeaderMap, String> {
        let (Some(signer), Some((who, hash))) = (&self.signer, signing) else {
            return Ok(headers.clone());
        };
        let mut url = base.join(path).map_err(|e| e.to_string())?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut out = headers.clone();
        out.extend(signer.sign(who, method, &url, headers, hash)?);
        Ok(out)
    }

    /// Sends with `send` on the nodes in [`Nodes::order`], moving on only when a node refused
    /// the connection. `send` gets the node's client and base URL; an `Err` from it is a
    /// request that could not be made (signing failed).
    async fn on_a_node<'a, F, Fut>(&'a self, send: F) -> Sent
    where
        F: Fn(&'a Elasticsearch, &'a Url) -> Result<Fut, String>,
        Fut: std::future::Future<
            Output = Result<elasticsearch::http::response::Response, elasticsearch::Error>,
        >,
    {
        let mut last = Sent::Unreachable("no endpoint".into());
        for i in self.nodes.order(Instant::now()) {
            let (es, shown) = &self.es[i];
            let result = match send(es, &self.bases[i]) {
                Ok(sending) => sending.await,
                Err(e) => return Sent::Unreachable(e),
            };
            let refused = matches!(&result, Err(e) if never_connected(e));
            let sent = answer(result).await;
            match &sent {
                Sent::Unreachable(e) if self.es.len() > 1 && refused => {
                    let out = self.nodes.refused(i, Instant::now());
                    tracing::warn!(endpoint = %shown, out_s = out.as_secs(), error = %e, "node refused the connection, taken out; sending to the next");
                    last = sent;
                }
                Sent::Unreachable(_) => return sent,
                Sent::Answer { .. } => {
                    if self.nodes.answered(i) {
                        tracing::info!(endpoint = %shown, "node answers again, back in");
                    }
                    return sent;
                }
            }
        }
        last
    }

    /// `GET /`: reachability and credentials. OpenSearch Serverless has no `GET /`; there it is
    /// `HEAD <index>`, whose 404 (no such index yet) also says the signature was accepted.
    pub async fn ping(&self) -> Sent {
        let signing = match self.signing(&Bytes::new()).await {
            Ok(s) => s,
            Err(e) => return Sent::Unreachable(e),
        };
        let (method, verb, path) = match &self.check_index {
            Some(index) => (Method::Head, "HEAD", index.as_str()),
            None => (Method::Get, "GET", ""),
        };
        let sent = self
            .on_a_node(|es, base| {
                let headers = self.signed(&signing, verb, base, path, &[], &HeaderMap::new())?;
                Ok(es.send::<(), ()>(method, path, headers, None, None, None))
            })
            .await;
        match sent {
            Sent::Answer { status: 404, body } if self.check_index.is_some() => {
                Sent::Answer { status: 200, body }
            }
            other => other,
        }
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

/// Whether the request never reached the node (the connection was not made), as reqwest
/// knows it: nothing was sent, so another node may take the request.
fn never_connected(e: &elasticsearch::Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<reqwest::Error>())
        .is_some_and(reqwest::Error::is_connect)
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
