//! An HTTP proxy in front of the stack's S3 server that checks what S3 and a bucket policy
//! requiring SSE-KMS check, and refuses what they refuse:
//!
//! - a PutObject or CreateMultipartUpload without `x-amz-server-side-encryption: aws:kms`, or
//!   naming another key in `x-amz-server-side-encryption-aws-kms-key-id`, is denied (403
//!   AccessDenied), as the policy `"Condition": {"StringNotEquals":
//!   {"s3:x-amz-server-side-encryption-aws-kms-key-id": "<key>"}}` denies it;
//! - an UploadPart carrying `x-amz-server-side-encryption` is refused (400 InvalidArgument): the
//!   parts take the upload's encryption, and S3 takes that header on CreateMultipartUpload only;
//! - any `x-amz-*` header left out of the signature's `SignedHeaders` is refused (403
//!   AccessDenied, "There were headers present in the request which were not signed").
//!
//! Everything else is forwarded unchanged (Host included, so the signature still holds), and
//! every request is kept for the test to read.
#![allow(dead_code)]

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::{Arc, Mutex};

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// `PUT`, `POST`, ...
    pub method: String,
    /// Path and query.
    pub target: String,
    /// `x-amz-server-side-encryption`, if sent.
    pub sse: Option<String>,
    /// `x-amz-server-side-encryption-aws-kms-key-id`, if sent.
    pub kms_key: Option<String>,
    /// The status the proxy answered.
    pub status: u16,
}

impl Seen {
    /// A PutObject (not a part, not a copy).
    pub fn is_put_object(&self) -> bool {
        self.method == "PUT" && !self.target.contains("partNumber=") && self.key_path()
    }
    /// A CreateMultipartUpload.
    pub fn is_create_upload(&self) -> bool {
        self.method == "POST" && self.target.contains("?uploads")
    }
    /// An UploadPart.
    pub fn is_upload_part(&self) -> bool {
        self.method == "PUT" && self.target.contains("partNumber=")
    }
    fn key_path(&self) -> bool {
        // `/bucket/key...` with path-style addressing.
        let path = self.target.split('?').next().unwrap_or("");
        path.trim_start_matches('/').contains('/')
    }
}

struct Policy {
    upstream: String,
    key: String,
    http: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
}

/// The running proxy.
pub struct S3Policy {
    port: u16,
    policy: Arc<Policy>,
}

impl S3Policy {
    /// Listens on a free loopback port in front of `upstream` (`http://host:port`), requiring
    /// SSE-KMS with `key` on every object written.
    pub async fn start(upstream: &str, key: &str) -> S3Policy {
        let policy = Arc::new(Policy {
            upstream: upstream.trim_end_matches('/').to_string(),
            key: key.to_string(),
            http: reqwest::Client::builder().no_gzip().build().unwrap(),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(policy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        S3Policy { port, policy }
    }

    /// The endpoint to give the daemon as `[s3] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.policy.seen.lock().unwrap().clone()
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(Body::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>0</RequestId></Error>"
        )))
        .unwrap()
}

/// Why S3 or the policy refuses the request, if it does.
fn refusal(seen: &Seen, headers: &HeaderMap, key: &str) -> Option<Response> {
    let signed: Vec<String> = header(headers, "authorization")
        .and_then(|a| {
            a.split("SignedHeaders=")
                .nth(1)
                .map(|s| s.split(',').next().unwrap_or("").to_string())
        })
        .map(|s| s.split(';').map(str::to_string).collect())
        .unwrap_or_default();
    let unsigned = headers.keys().map(|k| k.as_str()).find(|k| {
        k.starts_with("x-amz-") && *k != "x-amz-content-sha256" && !signed.iter().any(|s| s == k)
    });
    if let Some(k) = unsigned {
        if !signed.is_empty() {
            return Some(s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!("There were headers present in the request which were not signed: {k}"),
            ));
        }
    }
    if seen.is_upload_part() && seen.sse.is_some() {
        return Some(s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "x-amz-server-side-encryption header is not supported for this operation.",
        ));
    }
    if (seen.is_put_object() || seen.is_create_upload())
        && (seen.sse.as_deref() != Some("aws:kms") || seen.kms_key.as_deref() != Some(key))
    {
        return Some(s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Access Denied",
        ));
    }
    None
}

async fn handle(State(policy): State<Arc<Policy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut seen = Seen {
        method: parts.method.to_string(),
        target: target.clone(),
        sse: header(&parts.headers, "x-amz-server-side-encryption"),
        kms_key: header(
            &parts.headers,
            "x-amz-server-side-encryption-aws-kms-key-id",
        ),
        status: 0,
    };
    let body = to_bytes(body, 1 << 30).await.unwrap_or_default();
    let response = match refusal(&seen, &parts.headers, &policy.key) {
        Some(r) => r,
        None => {
            let mut out = policy
                .http
                .request(parts.method.clone(), format!("{}{target}", policy.upstream));
            for (k, v) in &parts.headers {
                // Hop-by-hop, or set again by the client from the body.
                if !["connection", "content-length", "transfer-encoding"].contains(&k.as_str()) {
                    out = out.header(k, v);
                }
            }
            match out.body(body).send().await {
                Ok(r) => {
                    let mut b = Response::builder().status(r.status().as_u16());
                    for (k, v) in r.headers() {
                        if !["connection", "content-length", "transfer-encoding"]
                            .contains(&k.as_str())
                        {
                            b = b.header(k, v);
                        }
                    }
                    let bytes = r.bytes().await.unwrap_or_default();
                    b.body(Body::from(bytes)).unwrap()
                }
                Err(e) => s3_error(StatusCode::BAD_GATEWAY, "InternalError", &e.to_string()),
            }
        }
    };
    seen.status = response.status().as_u16();
    policy.seen.lock().unwrap().push(seen);
    response
}
