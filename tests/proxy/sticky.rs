//! A load balancer in front of several HEC receivers, as an AWS ALB with stickiness sets it
//! up: a request without the balancer's cookie goes to the next instance in turn and its answer
//! sets `AWSALB=<instance>`; a request with the cookie goes to that instance. An instance can
//! be taken out (its requests then go to the next one in turn, with a new cookie).
#![allow(dead_code)]

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

struct Balancer {
    upstreams: Vec<String>,
    out: Mutex<Vec<bool>>,
    next: AtomicUsize,
    http: reqwest::Client,
    /// Requests sent to each instance, and ack polls that came without a cookie.
    routed: Mutex<Vec<usize>>,
    unsticky_acks: AtomicUsize,
}

/// The running balancer.
pub struct Sticky {
    port: u16,
    b: Arc<Balancer>,
}

impl Sticky {
    /// Listens on a free loopback port in front of `upstreams` (`http://host:port`).
    pub async fn start(upstreams: &[String]) -> Sticky {
        let b = Arc::new(Balancer {
            upstreams: upstreams.to_vec(),
            out: Mutex::new(vec![false; upstreams.len()]),
            next: AtomicUsize::new(0),
            http: reqwest::Client::builder().no_gzip().build().unwrap(),
            routed: Mutex::new(vec![0; upstreams.len()]),
            unsticky_acks: AtomicUsize::new(0),
        });
        let app = axum::Router::new().fallback(handle).with_state(b.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Sticky { port, b }
    }

    /// The URL to give the daemon.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests routed to each instance so far.
    pub fn routed(&self) -> Vec<usize> {
        self.b.routed.lock().unwrap().clone()
    }

    /// Ack polls that came without the balancer's cookie.
    pub fn unsticky_acks(&self) -> usize {
        self.b.unsticky_acks.load(Ordering::SeqCst)
    }
}

fn sticky_instance(req: &Request) -> Option<usize> {
    let cookies = req.headers().get("cookie")?.to_str().ok()?;
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == "AWSALB").then(|| v.parse().ok()).flatten()
    })
}

async fn handle(State(b): State<Arc<Balancer>>, req: Request) -> Response {
    let n = b.upstreams.len();
    let stuck = sticky_instance(&req).filter(|&i| i < n && !b.out.lock().unwrap()[i]);
    if stuck.is_none() && req.uri().path().ends_with("/ack") {
        b.unsticky_acks.fetch_add(1, Ordering::SeqCst);
    }
    let i = stuck.unwrap_or_else(|| loop {
        let i = b.next.fetch_add(1, Ordering::SeqCst) % n;
        if !b.out.lock().unwrap()[i] {
            break i;
        }
    });
    b.routed.lock().unwrap()[i] += 1;
    let (parts, body) = req.into_parts();
    let body = to_bytes(body, 1 << 30).await.unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = b
        .http
        .request(parts.method.clone(), format!("{}{target}", b.upstreams[i]));
    for (k, v) in &parts.headers {
        if ![
            "host",
            "connection",
            "content-length",
            "transfer-encoding",
            "cookie",
        ]
        .contains(&k.as_str())
        {
            out = out.header(k, v);
        }
    }
    let r = out.body(body).send().await.expect("instance answers");
    let mut resp = Response::builder().status(r.status().as_u16());
    for (k, v) in r.headers() {
        if !["connection", "content-length", "transfer-encoding"].contains(&k.as_str()) {
            resp = resp.header(k, v);
        }
    }
    if stuck.is_none() {
        resp = resp.header(
            "set-cookie",
            format!("AWSALB={i}; Expires=Tue, 01 Dec 2099 00:00:00 GMT; Path=/"),
        );
    }
    resp.body(Body::from(r.bytes().await.unwrap_or_default()))
        .unwrap()
}
