//! The HTTP side of HEC: the `reqwest` client (TLS verified by default, an extra CA, or no
//! verification on request), sending one body on a channel, polling `/ack`, and the health
//! and token check. The token only ever goes into a sensitive header.

use super::retry::{classify, HecReply, Verdict};
use crate::config::{HecEndpoint, HttpCompression, SplunkConfig};
use crate::destination::DestinationError;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use std::collections::HashMap;
use std::time::Duration;

/// Header naming the channel.
const CHANNEL: &str = "X-Splunk-Request-Channel";

/// A HEC endpoint with its token.
pub struct Hec {
    client: reqwest::Client,
    base: String,
    auth: HeaderValue,
    send_path: &'static str,
    compression: HttpCompression,
}

impl std::fmt::Debug for Hec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hec").field("base", &self.base).finish()
    }
}

/// Why a request got no HEC answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Connecting failed: the request never left.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// Timed out, reset, or closed after the request went out: it may have been indexed.
    #[error("request to {url} failed: {source}")]
    Broken {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
}

impl SendError {
    fn new(url: &str, e: reqwest::Error) -> SendError {
        let url = url.to_string();
        if e.is_connect() {
            SendError::Connect { url, source: e }
        } else {
            SendError::Broken { url, source: e }
        }
    }

    /// True when the request timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendError::Broken { source, .. } if source.is_timeout())
    }
}

impl Hec {
    /// A client for the configured endpoint.
    pub fn new(config: &SplunkConfig) -> Result<Hec, String> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(config.request_timeout_s))
            .connect_timeout(Duration::from_secs(config.request_timeout_s.min(10)))
            .pool_max_idle_per_host(config.concurrency + 1);
        if let Some(path) = &config.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.tls_insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| format!("http client: {e}"))?;
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", config.token.expose()))
            .map_err(|_| "token holds characters not allowed in a header".to_string())?;
        auth.set_sensitive(true);
        Ok(Hec {
            client,
            base: config.url.trim_end_matches('/').to_string(),
            auth,
            send_path: match config.endpoint {
                HecEndpoint::Event => "/services/collector/event",
                HecEndpoint::Raw => "/services/collector/raw",
            },
            compression: config.compression,
        })
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one body on `channel`; gzip runs on a blocking thread.
    pub async fn send(
        &self,
        channel: &str,
        body: Bytes,
        query: &[(&'static str, String)],
    ) -> Result<Verdict, SendError> {
        let url = format!("{}{}", self.base, self.send_path);
        let mut req = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL, channel)
            .query(query);
        req = match self.compression {
            HttpCompression::None => req.body(body),
            HttpCompression::Gzip => {
                let gz = crate::destination::gzip::gzip(body).await;
                req.header(CONTENT_ENCODING, "gzip").body(gz)
            }
        };
        let resp = req.send().await.map_err(|e| SendError::new(&url, e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| SendError::new(&url, e))?;
        Ok(classify(status, HecReply::parse(&bytes).as_ref()))
    }

    /// Asks which of `ids` are indexed. `Err` carries a verdict when HEC refused the query.
    pub async fn poll_acks(
        &self,
        channel: &str,
        ids: &[u64],
    ) -> Result<HashMap<u64, bool>, PollError> {
        let url = format!("{}/services/collector/ack", self.base);
        let resp = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL, channel)
            .header(CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("ids"))
            .send()
            .await
            .map_err(|e| PollError::Http(SendError::new(&url, e)))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PollError::Http(SendError::new(&url, e)))?;
        #[derive(serde::Deserialize)]
        struct Acks {
            acks: HashMap<u64, bool>,
        }
        match serde_json::from_slice::<Acks>(&bytes) {
            Ok(a) if status == 200 => Ok(a.acks),
            _ => Err(PollError::Refused(classify(
                status,
                HecReply::parse(&bytes).as_ref(),
            ))),
        }
    }

    /// Health, then an empty request to see whether the token is accepted (Firehose's probe:
    /// HEC answers 400 code 5 "No data" to a good token). Unreachable or unhealthy is
    /// transient; a refused token or a URL that is not HEC's needs an operator.
    pub async fn check(&self) -> Result<(), DestinationError> {
        let operator = |m: String| Err(DestinationError::needs_operator(m));
        let base = &self.base;
        let url = format!("{base}/services/collector/health");
        let resp = self
            .client
            .get(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .map_err(|e| {
                let e = SendError::new(&url, e);
                DestinationError::transient(format!("HEC at {base} is unreachable: {e}"))
            })?;
        let status = resp.status().as_u16();
        let reply = HecReply::parse(&resp.bytes().await.unwrap_or_default());
        let text = reply.as_ref().map(|r| r.text.clone()).unwrap_or_default();
        match (status, reply.as_ref().and_then(|r| r.code)) {
            (200, _) => {}
            (_, Some(21 | 22)) => {
                return operator(format!("HEC at {base} refused the token: {text}"))
            }
            (404 | 405, _) => {
                return operator(format!(
                    "{url} answered {status}: is url the HEC base URL (https://host:8088)?"
                ))
            }
            _ => {
                return Err(DestinationError::transient(format!(
                    "HEC at {base} is unhealthy: HTTP {status} {text}"
                )))
            }
        }
        let url = format!("{base}{}", self.send_path);
        let resp = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL, super::state::new_guid())
            .send()
            .await
            .map_err(|e| {
                let e = SendError::new(&url, e);
                DestinationError::transient(format!("HEC at {base}: {e}"))
            })?;
        let status = resp.status().as_u16();
        let reply = HecReply::parse(&resp.bytes().await.unwrap_or_default());
        match (status, reply.as_ref().and_then(|r| r.code)) {
            (401 | 403, code) => operator(format!(
                "HEC at {base} refused the token: HTTP {status} code {} {}",
                code.unwrap_or(0),
                reply.map(|r| r.text).unwrap_or_default()
            )),
            (404 | 405, _) => operator(format!(
                "{url} answered {status}: is url the HEC base URL (https://host:8088)?"
            )),
            _ => Ok(()),
        }
    }
}

/// An ack poll that got no answer, or a refusal.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// No answer.
    #[error("ack poll: {0}")]
    Http(SendError),
    /// HEC refused the query (code 14: the token has acknowledgement off).
    #[error("ack poll refused: {0:?}")]
    Refused(Verdict),
}
