//! The HEC endpoints (`/services/collector/...`): the router, the request flow shared by
//! `/event` and `/raw` (body limit, faults, token, channel, gzip, parse, store, ackId), and
//! health. The ack poll is in `ack.rs`, body reading in `body.rs`, and the `/_receiver` control
//! endpoints in `control.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::Value;
use tokio::sync::Notify;

use crate::auth::{TokenSpec, Tokens};
use crate::body::{decode, read_body, BodyError};
use crate::faults::Injected;
use crate::protocol::{self, http_reply, Code, Reply};
use crate::state::{Arrival, Store, StoredEvent};

/// Everything the handlers share.
pub struct App {
    pub store: Store,
    pub tokens: Tokens,
    /// `--ack`: every token uses indexer acknowledgement.
    pub ack_all: bool,
    pub max_body_bytes: u64,
    pub max_decoded_bytes: u64,
    /// Bumped by an indexer restart: the accept loop then drops every open connection but
    /// the one that asked for the restart.
    pub restarts: tokio::sync::watch::Sender<Restart>,
}

/// The latest indexer restart, as the accept loop sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restart {
    /// Restarts so far.
    pub count: u64,
    /// The connection that asked for it (answered, not dropped).
    pub by_connection: u64,
}

/// Per-connection context the accept loop puts in each request's extensions.
#[derive(Clone)]
pub struct ConnCtx {
    /// Notified to make the accept loop drop the connection without a response.
    pub kill: Arc<Notify>,
    pub peer: SocketAddr,
    /// Numbers the connections, so a restart can spare the one that asked for it.
    pub id: u64,
}

type Params = Query<HashMap<String, String>>;

/// The full router: HEC endpoints, control endpoints, 404/405 fallbacks.
pub fn router(app: Arc<App>) -> Router {
    let event = || post(event).options(options_post);
    let raw = || post(raw).options(options_post);
    let health = || get(health).options(options_get);
    Router::new()
        .route("/services/collector", event())
        .route("/services/collector/event", event())
        .route("/services/collector/event/1.0", event())
        .route("/services/collector/raw", raw())
        .route("/services/collector/raw/1.0", raw())
        .route(
            "/services/collector/ack",
            post(crate::ack::ack).options(options_post),
        )
        .route("/services/collector/health", health())
        .route("/services/collector/health/1.0", health())
        .merge(crate::control::router())
        // 6.1 [OBS]: "unknown path → 404 `{"text":"The requested URL was not found on this
        // server.","code":404}`; wrong method (e.g. `GET /event`) → 405 with the same body".
        .method_not_allowed_fallback(|| async {
            let mut r = http_reply(StatusCode::NOT_FOUND, NOT_FOUND);
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .fallback(|| async { http_reply(StatusCode::NOT_FOUND, NOT_FOUND) })
        .layer(DefaultBodyLimit::disable())
        .with_state(app)
}

const NOT_FOUND: &str = "The requested URL was not found on this server.";

/// 6.1 [OBS]: "`OPTIONS` on every route → 200, empty body, no token, `Allow: POST,OPTIONS`
/// (`GET,HEAD,OPTIONS` on health)".
async fn options_post() -> Response {
    ([(header::ALLOW, "POST,OPTIONS")], "").into_response()
}

async fn options_get() -> Response {
    ([(header::ALLOW, "GET,HEAD,OPTIONS")], "").into_response()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Raw,
}

async fn event(
    State(app): State<Arc<App>>,
    ctx: Option<Extension<ConnCtx>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(app, Kind::Event, ctx.map(|c| c.0), q, headers, body).await
}

async fn raw(
    State(app): State<Arc<App>>,
    ctx: Option<Extension<ConnCtx>>,
    Query(q): Params,
    headers: HeaderMap,
    body: Body,
) -> Response {
    ingest(app, Kind::Raw, ctx.map(|c| c.0), q, headers, body).await
}

/// How a request ended, before it is counted and turned into a response.
enum Outcome {
    Hec(Reply),
    Http(StatusCode, &'static str),
    Drop,
}

impl From<BodyError> for Outcome {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge => {
                Outcome::Http(StatusCode::PAYLOAD_TOO_LARGE, "Content too large")
            }
            BodyError::UnsupportedEncoding => {
                Outcome::Http(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type")
            }
            BodyError::Broken => Code::InvalidDataFormat.into(),
        }
    }
}

impl From<Code> for Outcome {
    fn from(code: Code) -> Self {
        Outcome::Hec(Reply::code(code))
    }
}

async fn ingest(
    app: Arc<App>,
    kind: Kind,
    ctx: Option<ConnCtx>,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let epoch = app.store.epoch();
    let read = read_body(body, &headers, app.max_body_bytes)
        .await
        .map_err(Outcome::from);
    let request = app
        .store
        .begin_request(read.as_ref().map_or(0, |b| b.len()));
    let from = Arrival { request, epoch };
    let (outcome, faulted) = match read {
        Err(outcome) => (outcome, false),
        Ok(bytes) => {
            let now = Instant::now();
            let fault = app.store.faults().take(now);
            match fault {
                Some(Injected::Drop) => (Outcome::Drop, true),
                Some(Injected::Status500) => (Code::InternalError.into(), true),
                Some(Injected::Status429) => (
                    Outcome::Http(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                    true,
                ),
                Some(Injected::Busy) => (Code::ServerBusy.into(), true),
                None => {
                    let peer = ctx.as_ref().map(|c| c.peer);
                    let outcome = accept(&app, kind, from, &q, &headers, &bytes, peer, now);
                    let stored_ok = matches!(&outcome, Outcome::Hec(r) if r.code == Code::Success);
                    if stored_ok && app.store.faults().take_drop_after_store() {
                        (Outcome::Drop, true)
                    } else {
                        (outcome, false)
                    }
                }
            }
        }
    };
    let endpoint = if kind == Kind::Event { "event" } else { "raw" };
    match outcome {
        Outcome::Drop => {
            app.store.count_drop();
            tracing::debug!(request, endpoint, "dropping connection on purpose");
            match ctx {
                Some(ctx) => {
                    ctx.kill.notify_one();
                    // The accept loop drops this connection, and this future with it.
                    std::future::pending::<()>().await;
                    unreachable!("a dropped connection is never answered")
                }
                None => Reply::code(Code::InternalError).into_response(),
            }
        }
        Outcome::Hec(reply) => {
            app.store.count_reply(reply.code.number(), faulted);
            tracing::debug!(request, endpoint, code = reply.code.number(), "reply");
            reply.into_response()
        }
        Outcome::Http(status, text) => {
            app.store.count_reply(status.as_u16(), faulted);
            tracing::debug!(request, endpoint, status = status.as_u16(), "reply");
            http_reply(status, text)
        }
    }
}

/// Authenticates, checks the channel, decodes, parses and stores one `/event` or `/raw` request.
#[allow(clippy::too_many_arguments)]
fn accept(
    app: &App,
    kind: Kind,
    from: Arrival,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    bytes: &Bytes,
    peer: Option<SocketAddr>,
    now: Instant,
) -> Outcome {
    let token = match app
        .tokens
        .authenticate(headers, q.get("token").map(String::as_str))
    {
        Ok(t) => t,
        Err(code) => return code.into(),
    };
    let use_ack = app.ack_all || token.ack;
    let channel = match channel(headers, q, use_ack) {
        Ok(c) => c,
        Err(code) => return code.into(),
    };
    let decoded = match decode(headers, bytes, app.max_decoded_bytes) {
        Ok(d) => d,
        Err(e) => return e.into(),
    };
    let meta = Meta {
        request: from.request,
        token,
        channel: channel.clone(),
        host: peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string()),
        received: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
    };
    let parsed = match kind {
        Kind::Event => parse_event(app, &decoded, &meta),
        Kind::Raw => parse_raw(app, &decoded, q, &meta),
    };
    let (events, counted, error) = match parsed {
        Ok(p) => p,
        Err(code) => return code.into(),
    };
    if let Some((code, n)) = error {
        if !events.is_empty() {
            // 6.5 [OBS]: "objects **before** it are indexed" - stored, but no ackId is issued
            // because the reply is an error.
            let _ = app.store.store(from, channel.as_deref(), events, 0, None);
        }
        let mut reply = Reply::code(code);
        if code != Code::NoData {
            reply.invalid_event_number = Some(n);
        }
        return Outcome::Hec(reply);
    }
    let ack = use_ack.then(|| app.store.faults().ack_ready(now));
    match app
        .store
        .store(from, channel.as_deref(), events, counted, ack)
    {
        Ok(ack_id) => Outcome::Hec(Reply {
            code: Code::Success,
            invalid_event_number: None,
            ack_id,
        }),
        Err(code) => code.into(),
    }
}

/// Request-wide defaults for stored events.
struct Meta<'a> {
    request: u64,
    token: &'a TokenSpec,
    channel: Option<String>,
    host: String,
    received: f64,
}

impl Meta<'_> {
    fn event(&self, endpoint: &'static str, event: Value, time: Option<f64>) -> StoredEvent {
        StoredEvent {
            request: self.request,
            endpoint,
            event,
            time: time.unwrap_or(self.received),
            time_given: time.is_some(),
            host: self.host.clone(),
            // 6.4 [OBS]: each object without metadata "gets the token defaults (default
            // sourcetype `httpevent`, source `http:<token name>`)".
            source: format!("http:{}", self.token.name),
            sourcetype: "httpevent".to_string(),
            index: self.token.default_index().to_string(),
            fields: None,
            channel: self.channel.clone(),
            token: self.token.name.clone(),
            duplicate: false,
        }
    }
}

type ParseResult = Result<(Vec<StoredEvent>, usize, Option<(Code, usize)>), Code>;

fn parse_event(app: &App, body: &[u8], meta: &Meta) -> ParseResult {
    if app.store.blackhole() {
        let n = protocol::count_envelopes(body);
        app.store.count_parse(body.len(), 0, false);
        return if n == 0 {
            Err(Code::NoData)
        } else {
            Ok((vec![], n, None))
        };
    }
    let parsed = protocol::parse_event_body(body, &|idx| meta.token.allows_index(idx));
    app.store
        .count_parse(body.len(), parsed.skipped, parsed.truncated_at.is_some());
    let events = parsed
        .events
        .into_iter()
        .map(|e| {
            let mut s = meta.event("event", e.event, e.time);
            s.host = e.host.unwrap_or(s.host);
            s.source = e.source.unwrap_or(s.source);
            s.sourcetype = e.sourcetype.unwrap_or(s.sourcetype);
            s.index = e.index.unwrap_or(s.index);
            s.fields = e.fields;
            s
        })
        .collect();
    Ok((events, 0, parsed.error))
}

/// 6.6: "metadata via query params `host`, `source`, `sourcetype`, `index` (and `channel`),
/// otherwise token defaults".
fn parse_raw(app: &App, body: &[u8], q: &HashMap<String, String>, meta: &Meta) -> ParseResult {
    let param = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(idx) = param("index") {
        if !meta.token.allows_index(&idx) {
            return Err(Code::IncorrectIndex);
        }
    }
    let time = match param("time") {
        Some(t) => Some(protocol::parse_time(&Value::String(t)).ok_or(Code::InvalidDataFormat)?),
        None => None,
    };
    app.store.count_parse(body.len(), 0, false);
    if app.store.blackhole() {
        let n = protocol::raw_lines(body).count();
        return if n == 0 {
            Err(Code::NoData)
        } else {
            Ok((vec![], n, None))
        };
    }
    let events: Vec<StoredEvent> = protocol::raw_lines(body)
        .map(|line| {
            let text = String::from_utf8_lossy(line).into_owned();
            let mut s = meta.event("raw", Value::String(text), time);
            s.host = param("host").unwrap_or(s.host);
            s.source = param("source").unwrap_or(s.source);
            s.sourcetype = param("sourcetype").unwrap_or(s.sourcetype);
            s.index = param("index").unwrap_or(s.index);
            s
        })
        .collect();
    if events.is_empty() {
        return Err(Code::NoData);
    }
    Ok((events, 0, None))
}

/// 6.3: the channel comes from `X-Splunk-Request-Channel` or `?channel=`; it is required when the
/// token uses acks ("400 code 10 \"Data channel is missing\"") and must be a GUID ("code 11").
pub fn channel(
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    required: bool,
) -> Result<Option<String>, Code> {
    let value = match headers.get("x-splunk-request-channel") {
        Some(h) => Some(h.to_str().map_err(|_| Code::InvalidChannel)?.to_string()),
        None => q.get("channel").cloned(),
    };
    match value {
        None if required => Err(Code::ChannelMissing),
        None => Ok(None),
        Some(c) if protocol::is_guid(&c) => Ok(Some(c)),
        Some(_) => Err(Code::InvalidChannel),
    }
}

/// 6.11: 200 code 17 when healthy, 503 code 18 "HEC is unhealthy, queues are full" when the
/// `unhealthy` switch is on or a busy fault is active. [OBS] "Splunk 10.4 ignores the token on
/// `/health` entirely", and so does this receiver.
async fn health(State(app): State<Arc<App>>) -> Response {
    let code = if app.store.faults().unhealthy(Instant::now()) {
        Code::UnhealthyQueuesFull
    } else {
        Code::Healthy
    };
    let mut r = Reply::code(code).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
