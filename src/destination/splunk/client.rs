//! The HTTP side of HEC: the `reqwest` client (TLS verified by default, an extra CA, or no
//! verification on request), sending one body on a channel, polling `/ack`, and the health
//! and token check. The token only ever goes into a sensitive header.
//!
//! Behind a load balancer (Splunk Cloud, an AWS ALB or ELB in front of indexers) the ack ids
//! of a channel are known only to the indexer that took its events, and the balancer keeps a
//! client on one indexer with a cookie it sets (`AWSALB`, `AWSELB`, ...); Splunk's pages on
//! indexer acknowledgement ask for sticky sessions on such a balancer for that reason. Each
//! channel keeps the cookies its answers set and sends them back on its next request and ack
//! poll.
//!
//! With several `urls` and no balancer, stageload is the balancer: each channel is bound to one
//! URL (its acks are only known there), new channels go round robin over the URLs whose health
//! check (`GET /services/collector/health`, every `health_check_interval_s`) passed, and a URL
//! that refuses a connection is left out at once until its health check passes again. A channel
//! whose URL is out moves to another on its next request; what it had sent and not yet seen
//! acknowledged is sent again when its ack times out (HEC is at least once).

use super::retry::{classify, HecReply, Verdict};
use crate::config::{HecEndpoint, HttpCompression, SplunkConfig};
use crate::destination::DestinationError;
use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, COOKIE, SET_COOKIE,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Header naming the channel.
const CHANNEL: &str = "X-Splunk-Request-Channel";

/// One HEC base URL and whether it is taking requests.
struct Node {
    base: String,
    healthy: AtomicBool,
}

/// A HEC endpoint (one URL or several) with its token.
pub struct Hec {
    client: reqwest::Client,
    nodes: Arc<Vec<Node>>,
    /// The node each channel is bound to.
    bound: Mutex<HashMap<String, usize>>,
    /// Round robin over the nodes for channels not bound yet.
    next: AtomicUsize,
    /// Every URL, for messages.
    base: String,
    auth: HeaderValue,
    send_path: &'static str,
    compression: HttpCompression,
    /// Per channel, the cookies its answers set (`name=value`), in the order first set; a
    /// channel is here (perhaps with none) once its first request was answered.
    cookies: Mutex<HashMap<String, Vec<(String, String)>>>,
    /// Held by a channel's first request until it is answered: requests sent side by side
    /// before the balancer's cookie is known would be spread over indexers.
    first: tokio::sync::Mutex<()>,
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
        let nodes: Vec<Node> = config
            .hec_urls()
            .iter()
            .map(|u| Node {
                base: u.trim_end_matches('/').to_string(),
                healthy: AtomicBool::new(true),
            })
            .collect();
        let nodes = Arc::new(nodes);
        if nodes.len() > 1 {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(watch_health(
                    Arc::downgrade(&nodes),
                    client.clone(),
                    Duration::from_secs(config.health_check_interval_s),
                ));
            }
        }
        Ok(Hec {
            client,
            base: nodes
                .iter()
                .map(|n| n.base.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            nodes,
            bound: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
            auth,
            send_path: match config.endpoint {
                HecEndpoint::Event => "/services/collector/event",
                HecEndpoint::Raw => "/services/collector/raw",
            },
            compression: config.compression,
            cookies: Mutex::new(HashMap::new()),
            first: tokio::sync::Mutex::new(()),
        })
    }

    /// The node `channel` sends on: the one it is bound to while that one is healthy (or
    /// none is), else the next healthy one round robin, its cookies from the old node dropped.
    fn node_for_send(&self, channel: &str) -> usize {
        let mut bound = self.bound.lock().expect("channel binding");
        let any_healthy = self.nodes.iter().any(|n| n.healthy.load(Ordering::Relaxed));
        if let Some(&i) = bound.get(channel) {
            if !any_healthy || self.nodes[i].healthy.load(Ordering::Relaxed) {
                return i;
            }
        }
        let n = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let i = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| !any_healthy || self.nodes[i].healthy.load(Ordering::Relaxed))
            .unwrap_or(start % n);
        if bound.insert(channel.to_string(), i).is_some() {
            self.cookies.lock().expect("cookie jar").remove(channel);
            tracing::info!(channel, url = %self.nodes[i].base, "channel moved to another HEC url");
        }
        i
    }

    /// The node `channel` polls its acks on: where it sent.
    fn node_for_poll(&self, channel: &str) -> usize {
        let bound = self.bound.lock().expect("channel binding");
        bound.get(channel).copied().unwrap_or(0)
    }

    /// A connection to node `i` was refused: it takes no new requests until its health check
    /// passes.
    fn refused(&self, i: usize, e: &SendError) {
        if self.nodes.len() > 1
            && matches!(e, SendError::Connect { .. })
            && self.nodes[i].healthy.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(url = %self.nodes[i].base, error = %e, "HEC url refused the connection, left out until its health check passes");
        }
    }

    fn answered_before(&self, channel: &str) -> bool {
        self.cookies
            .lock()
            .expect("cookie jar")
            .contains_key(channel)
    }

    /// The `Cookie` header for `channel`, if its answers set any.
    fn cookie(&self, channel: &str) -> Option<HeaderValue> {
        let jar = self.cookies.lock().expect("cookie jar");
        let pairs = jar.get(channel)?;
        let text = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Keeps the cookies an answer on `channel` set (the `name=value` of each `Set-Cookie`).
    fn keep_cookies(&self, channel: &str, headers: &HeaderMap) {
        let set: Vec<(String, String)> = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| {
                let pair = v.split(';').next()?.trim();
                let (k, val) = pair.split_once('=')?;
                (!k.trim().is_empty()).then(|| (k.trim().to_string(), val.trim().to_string()))
            })
            .collect();
        let mut jar = self.cookies.lock().expect("cookie jar");
        let pairs = jar.entry(channel.to_string()).or_default();
        for (k, v) in set {
            match pairs.iter_mut().find(|(name, _)| *name == k) {
                Some(p) => p.1 = v,
                None => pairs.push((k, v)),
            }
        }
    }

    /// The base URL (every URL, with several), for messages.
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
        // A channel's first request goes alone; the rest follow its cookie.
        let _first = if self.answered_before(channel) {
            None
        } else {
            let guard = self.first.lock().await;
            (!self.answered_before(channel)).then_some(guard)
        };
        let node = self.node_for_send(channel);
        let url = format!("{}{}", self.nodes[node].base, self.send_path);
        let mut req = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL, channel)
            .query(query);
        if let Some(cookie) = self.cookie(channel) {
            req = req.header(COOKIE, cookie);
        }
        req = match self.compression {
            HttpCompression::None => req.body(body),
            HttpCompression::Gzip => {
                let gz = crate::destination::gzip::gzip(body).await;
                req.header(CONTENT_ENCODING, "gzip").body(gz)
            }
        };
        let resp = req.send().await.map_err(|e| {
            let e = SendError::new(&url, e);
            self.refused(node, &e);
            e
        })?;
        self.keep_cookies(channel, resp.headers());
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
        let url = format!(
            "{}/services/collector/ack",
            self.nodes[self.node_for_poll(channel)].base
        );
        let mut req = self
            .client
            .post(&url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(CHANNEL, channel)
            .header(CONTENT_TYPE, "application/json");
        if let Some(cookie) = self.cookie(channel) {
            req = req.header(COOKIE, cookie);
        }
        let resp = req
            .body(serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("ids"))
            .send()
            .await
            .map_err(|e| PollError::Http(SendError::new(&url, e)))?;
        self.keep_cookies(channel, resp.headers());
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

    /// [`Hec::check_node`] on every URL: ready when one passes (the others are left out until
    /// their health check passes); else the first URL's problem.
    pub async fn check(&self) -> Result<(), DestinationError> {
        let mut first = None;
        for node in self.nodes.iter() {
            let result = self.check_node(&node.base).await;
            node.healthy.store(result.is_ok(), Ordering::Relaxed);
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        match first {
            Some(e) if !self.nodes.iter().any(|n| n.healthy.load(Ordering::Relaxed)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Health, then an empty request to see whether the token is accepted (Firehose's probe:
    /// HEC answers 400 code 5 "No data" to a good token). Unreachable or unhealthy is
    /// transient; a refused token or a URL that is not HEC's needs an operator.
    async fn check_node(&self, base: &str) -> Result<(), DestinationError> {
        let operator = |m: String| Err(DestinationError::needs_operator(m));
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

/// Checks every node's health every `every` until the client is gone: 200 puts a node back,
/// anything else (503 busy, no answer) leaves it out.
async fn watch_health(nodes: std::sync::Weak<Vec<Node>>, client: reqwest::Client, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(nodes) = nodes.upgrade() else {
            return;
        };
        for node in nodes.iter() {
            let url = format!("{}/services/collector/health", node.base);
            let ok = matches!(client.get(&url).send().await, Ok(r) if r.status().as_u16() == 200);
            let was = node.healthy.swap(ok, Ordering::Relaxed);
            if ok && !was {
                tracing::info!(url = %node.base, "HEC url healthy again, back in");
            } else if !ok && was {
                tracing::warn!(url = %node.base, "HEC url failed its health check, left out");
            }
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
