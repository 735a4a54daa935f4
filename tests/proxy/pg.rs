//! A PostgreSQL wire-protocol proxy for tests, put between the daemon and the Redshift
//! emulator: it relays every message unchanged, and when armed it lets one simple-query
//! `COMMIT` through, waits for the server's answer (so the commit has landed), and closes the
//! client's connection without passing that answer on: the client sees its COMMIT end with a
//! closed connection, as when a network path drops between the two.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    upstream: String,
    /// Cut the next connection that sends `COMMIT`, once.
    armed: AtomicBool,
    cuts: AtomicU64,
}

/// The proxy; runs until the test's runtime ends.
pub struct PgProxy {
    /// `127.0.0.1:port` it listens on.
    pub addr: String,
    state: Arc<State>,
}

impl PgProxy {
    /// Listens on a free loopback port, forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> PgProxy {
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            ..State::default()
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let s = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, s.clone()));
            }
        });
        PgProxy { addr, state }
    }

    /// Swallows the answer to the next `COMMIT` and closes that client's connection.
    pub fn cut_after_next_commit(&self) {
        self.state.armed.store(true, Ordering::SeqCst);
    }

    /// How many connections were cut.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

/// Reads one length-prefixed frame: the startup packet (`tagged` false) or a message.
async fn frame(r: &mut (impl AsyncReadExt + Unpin), tagged: bool) -> Option<Vec<u8>> {
    let head = if tagged { 5 } else { 4 };
    let mut buf = vec![0u8; head];
    r.read_exact(&mut buf).await.ok()?;
    let len = u32::from_be_bytes(buf[head - 4..head].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len.checked_sub(4)?];
    r.read_exact(&mut body).await.ok()?;
    buf.extend(body);
    Some(buf)
}

fn is_commit(msg: &[u8]) -> bool {
    if msg.first() != Some(&b'Q') {
        return false;
    }
    let text = String::from_utf8_lossy(&msg[5..]);
    let sql = text.trim_end_matches('\0').trim().trim_end_matches(';');
    sql.eq_ignore_ascii_case("commit") || sql.eq_ignore_ascii_case("end")
}

async fn serve(client: TcpStream, state: Arc<State>) {
    let Ok(upstream) = TcpStream::connect(&state.upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let (s, c) = (state.clone(), cut.clone());
    let up = tokio::spawn(async move {
        let Some(startup) = frame(&mut cr, false).await else {
            return;
        };
        if uw.write_all(&startup).await.is_err() {
            return;
        }
        while let Some(msg) = frame(&mut cr, true).await {
            if is_commit(&msg) && s.armed.swap(false, Ordering::SeqCst) {
                c.store(true, Ordering::SeqCst);
            }
            if uw.write_all(&msg).await.is_err() {
                return;
            }
        }
        let _ = uw.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            // The COMMIT went through and this is its answer: drop it and both connections.
            state.cuts.fetch_add(1, Ordering::SeqCst);
            up.abort();
            return;
        }
        if cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = cw.shutdown().await;
}
