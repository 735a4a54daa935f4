//! The HTTP routes: `_bulk` (optionally gzip bodies), the cluster info at `/`, and counters at
//! `/_blackhole/stats`. Everything else answers 404 as Elasticsearch does.

use crate::bulk;
use crate::filter::Filter;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters, shared by every request.
#[derive(Debug, Default)]
pub struct Stats {
    /// `_bulk` requests answered (any status).
    pub requests: AtomicU64,
    /// Actions (documents) answered.
    pub docs: AtomicU64,
    /// Request body bytes as received (compressed when gzip).
    pub bytes: AtomicU64,
    /// Request body bytes after gzip decoding.
    pub decoded_bytes: AtomicU64,
    /// Requests answered 400.
    pub rejected: AtomicU64,
}

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body as received; 413 over it (Elasticsearch's `http.max_content_length`).
    pub max_body_bytes: usize,
}

struct App {
    stats: Arc<Stats>,
    settings: Settings,
}

/// Builds the router; the returned counters are the live ones the routes update.
pub fn router(settings: Settings) -> (Router, Arc<Stats>) {
    let limit = settings.max_body_bytes;
    let stats = Arc::new(Stats::default());
    let app = Arc::new(App {
        stats: stats.clone(),
        settings,
    });
    let router = Router::new()
        .route("/", get(info).head(head))
        .route("/_bulk", post(bulk_plain).put(bulk_plain))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_blackhole/stats", get(stats_route))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app);
    (router, stats)
}

const CLUSTER_INFO: &str = r#"{
  "name" : "bulk-blackhole",
  "cluster_name" : "blackhole",
  "cluster_uuid" : "AAAAAAAAAAAAAAAAAAAAAA",
  "version" : {
    "number" : "8.15.0",
    "build_flavor" : "default",
    "build_type" : "tar",
    "build_hash" : "0000000000000000000000000000000000000000",
    "build_date" : "2024-08-05T10:05:34.233336849Z",
    "build_snapshot" : false,
    "lucene_version" : "9.11.1",
    "minimum_wire_compatibility_version" : "7.17.0",
    "minimum_index_compatibility_version" : "7.0.0"
  },
  "tagline" : "You Know, for Search"
}
"#;

fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut r = (status, body.into()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    r
}

async fn info() -> Response {
    json(StatusCode::OK, CLUSTER_INFO)
}

async fn head() -> Response {
    json(StatusCode::OK, axum::body::Body::empty())
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    let reason = format!(
        "no handler found for uri [{}] and method [{method}]",
        uri.path()
    );
    let body = serde_json::json!({"error": reason, "status": 404});
    json(StatusCode::NOT_FOUND, body.to_string())
}

async fn stats_route(State(app): State<Arc<App>>) -> Response {
    let s = &app.stats;
    let body = serde_json::json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "docs": s.docs.load(Ordering::Relaxed),
        "bytes": s.bytes.load(Ordering::Relaxed),
        "decoded_bytes": s.decoded_bytes.load(Ordering::Relaxed),
        "rejected": s.rejected.load(Ordering::Relaxed),
    });
    json(StatusCode::OK, body.to_string())
}

async fn bulk_plain(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let filter = Filter::from_query(query.as_deref());
    handle_bulk(&app, None, &filter, &headers, body)
}

async fn bulk_index(
    State(app): State<Arc<App>>,
    Path(index): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let filter = Filter::from_query(query.as_deref());
    handle_bulk(&app, Some(&index), &filter, &headers, body)
}

fn handle_bulk(
    app: &App,
    index: Option<&str>,
    filter: &Filter,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let s = &app.stats;
    let request = s.requests.fetch_add(1, Ordering::Relaxed);
    s.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.to_str()) {
        None => false,
        Some(Ok(v)) if v.eq_ignore_ascii_case("gzip") => true,
        Some(Ok(v)) if v.eq_ignore_ascii_case("identity") => false,
        Some(_) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, "unsupported Content-Encoding");
        }
    };
    let decoded;
    let body: &[u8] = if gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        let limit = app.settings.max_body_bytes as u64 * 8;
        let mut reader = flate2::read::MultiGzDecoder::new(&body[..]).take(limit + 1);
        if let Err(e) = reader.read_to_end(&mut out) {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::BAD_REQUEST, &format!("bad gzip body: {e}"));
        }
        if out.len() as u64 > limit {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "decoded body too large");
        }
        decoded = out;
        &decoded
    } else {
        &body
    };
    s.decoded_bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    // Automatic ids are unique by request number; `_seq_no` counts within the request.
    let id_prefix = format!("bh{request}-");
    let mut seq = 0;
    let mut out = Vec::with_capacity(64 + body.len() / 4);
    match bulk::answer(body, index, &id_prefix, &mut seq, filter, &mut out) {
        Ok(a) => {
            s.docs.fetch_add(a.docs, Ordering::Relaxed);
            json(StatusCode::OK, out)
        }
        Err(e) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            json(StatusCode::BAD_REQUEST, e.to_json())
        }
    }
}

fn error(status: StatusCode, reason: &str) -> Response {
    let body = serde_json::json!({
        "error": {"type": "illegal_argument_exception", "reason": reason},
        "status": status.as_u16(),
    });
    json(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One raw HTTP/1.1 exchange; returns the status line and the body.
    async fn exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> (String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        let (h, b) = text.split_once("\r\n\r\n").unwrap();
        (h.lines().next().unwrap().to_string(), b.to_string())
    }

    #[tokio::test]
    async fn info_bulk_gzip_and_stats() {
        let (router, stats) = router(Settings {
            max_body_bytes: 1 << 20,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

        let (status, body) = exchange(addr, "GET / HTTP/1.1", b"").await;
        assert!(status.contains("200"), "{status}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["version"]["number"], "8.15.0");

        let ndjson = b"{\"index\":{\"_id\":\"1\"}}\n{\"a\":1}\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(ndjson).unwrap();
        let gz = gz.finish().unwrap();
        let (status, body) = exchange(
            addr,
            "POST /logs/_bulk HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Type: application/x-ndjson",
            &gz,
        )
        .await;
        assert!(status.contains("200"), "{status}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["items"][0]["index"]["_index"], "logs");
        assert_eq!(v["items"][0]["index"]["_id"], "1");

        let (status, _) = exchange(addr, "POST /_bulk HTTP/1.1", b"nope\n").await;
        assert!(status.contains("400"), "{status}");
        let (status, _) = exchange(addr, "GET /nothing HTTP/1.1", b"").await;
        assert!(status.contains("404"), "{status}");

        let (_, body) = exchange(addr, "GET /_blackhole/stats HTTP/1.1", b"").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["requests"], 2);
        assert_eq!(v["docs"], 1);
        assert_eq!(v["rejected"], 1);
        assert_eq!(v["decoded_bytes"], ndjson.len() as u64 + 5);
        assert_eq!(stats.docs.load(Ordering::Relaxed), 1);
    }
}
