//! A tiny TCP proxy in front of the stack's S3 server for tests: it counts the bytes it serves,
//! keeps each request line (to see which ListObjectsV2 calls were made), and can cut one
//! connection mid-response once.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    upstream: String,
    /// Cut the first connection whose response bytes pass this many, once.
    cut_after: Mutex<Option<u64>>,
    cuts: AtomicU64,
    served: AtomicU64,
    requests: Mutex<Vec<String>>,
    /// The accept loop and every connection's task, ended by [`Proxy::stop`].
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The proxy; runs until the test's runtime ends.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to the host and port of `upstream_url`.
    pub async fn start(upstream_url: &str) -> Proxy {
        let upstream = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let state = Arc::new(State {
            upstream,
            ..State::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let conn = tokio::spawn(serve(client, s.clone()));
                s.tasks.lock().unwrap().push(conn);
            }
        });
        state.tasks.lock().unwrap().push(accept);
        Proxy { port, state }
    }

    /// The endpoint to give the daemon as `[s3] endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops as a node that went down does: its port refuses connections and every open
    /// connection is closed.
    pub fn stop(&self) {
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Cuts the first connection whose response passes `bytes`, once.
    pub fn cut_once_after(&self, bytes: u64) {
        *self.state.cut_after.lock().unwrap() = Some(bytes);
    }

    /// How many connections were cut.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Response bytes served so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }

    /// Every request line so far (`GET /bucket?list-type=2&... HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

/// A query parameter of a request line, percent-decoded.
pub fn query_param(request_line: &str, name: &str) -> Option<String> {
    let target = request_line.split(' ').nth(1)?;
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn serve(client: TcpStream, state: Arc<State>) {
    let Ok(upstream) = TcpStream::connect(&state.upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let s = state.clone();
    let requests = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut line = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                line.push(b);
                if line.ends_with(b"\r\n") {
                    let text = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
                    if ["GET ", "PUT ", "HEAD ", "POST ", "DELETE "]
                        .iter()
                        .any(|m| text.starts_with(m))
                    {
                        s.requests.lock().unwrap().push(text);
                    }
                    line.clear();
                }
                if line.len() > 64 * 1024 {
                    line.clear();
                }
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let cut = {
            let mut armed = state.cut_after.lock().unwrap();
            match *armed {
                Some(limit) if sent + n as u64 > limit => {
                    *armed = None;
                    Some((limit - sent) as usize)
                }
                _ => None,
            }
        };
        if let Some(part) = cut {
            let _ = cw.write_all(&buf[..part]).await;
            state.served.fetch_add(part as u64, Ordering::SeqCst);
            state.cuts.fetch_add(1, Ordering::SeqCst);
            requests.abort();
            return;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
        state.served.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = cw.shutdown().await;
}
