//! `hec-receiver`: a dev-only Splunk HTTP Event Collector test receiver. This file owns the
//! command line, logging and the accept loop (plain HTTP/1.1, no TLS), which can close a
//! connection without answering when a handler asks it to.

mod ack;
mod auth;
mod body;
mod control;
mod faults;
mod protocol;
mod routes;
mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

use auth::{TokenSpec, Tokens};
use faults::{FaultUpdate, Faults};
use routes::{App, ConnCtx, Restart};
use state::{Limits, Store};

/// A Splunk HEC test receiver: stores what it gets in memory and can misbehave on request.
#[derive(Debug, Parser)]
#[command(name = "hec-receiver", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// A token, repeatable: `TOKEN[:ack][:disabled][:query][:name=NAME][:index=a,b]`.
    #[arg(long = "token", required = true)]
    tokens: Vec<TokenSpec>,
    /// Indexer acknowledgement on every token.
    #[arg(long)]
    ack: bool,
    /// Count events without storing them (benchmarks); acks are immediate.
    #[arg(long)]
    blackhole: bool,
    /// Request body limit as sent; Splunk's `max_content_length` default is 838860800 (413 over).
    #[arg(long, default_value_t = 838_860_800)]
    max_body_bytes: u64,
    /// Limit on a gzip body after decoding (413 over).
    #[arg(long, default_value_t = 4 * 838_860_800)]
    max_decoded_bytes: u64,
    /// Splunk's `max_number_of_ack_channel` default; a new channel past it gets 503 code 9.
    #[arg(long, default_value_t = 1_000_000)]
    max_channels: usize,
    /// Splunk's `max_number_of_acked_requests_pending_query_per_ack_channel` default.
    #[arg(long, default_value_t = 1_000_000)]
    max_pending_acks_per_channel: usize,
    #[command(flatten)]
    faults: FaultUpdate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "hec_receiver=info".into()),
        )
        .init();
    let cli = Cli::parse();

    let mut faults = Faults::default();
    faults.apply(&cli.faults, Instant::now());
    let limits = Limits {
        max_channels: cli.max_channels,
        max_pending_acks_per_channel: cli.max_pending_acks_per_channel,
    };
    let (restarts, _) = tokio::sync::watch::channel(Restart::default());
    let app = Arc::new(App {
        restarts: restarts.clone(),
        store: Store::new(cli.blackhole, limits, faults),
        tokens: Tokens::new(cli.tokens.clone()),
        ack_all: cli.ack,
        max_body_bytes: cli.max_body_bytes,
        max_decoded_bytes: cli.max_decoded_bytes,
    });
    let router = routes::router(app);

    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tokens = cli.tokens.len(), ack = cli.ack, blackhole = cli.blackhole, "hec receiver started");
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);

    tokio::select! {
        r = accept_loop(listener, router, restarts) => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("shutting down");
            Ok(())
        }
    }
}

/// Serves each connection with HTTP/1.1 on its own task. A handler that notifies the
/// connection's `kill` makes the task drop the connection mid-request, which closes the socket
/// without a response: the "connection closed" failure a sender must survive. An indexer
/// restart drops every connection open at that moment (but the one that asked for it).
async fn accept_loop(
    listener: TcpListener,
    router: axum::Router,
    restarts: tokio::sync::watch::Sender<Restart>,
) -> anyhow::Result<()> {
    for id in 0u64.. {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let router = router.clone();
        let mut restart = restarts.subscribe();
        tokio::spawn(async move {
            let kill = Arc::new(Notify::new());
            let ctx = ConnCtx {
                kill: kill.clone(),
                peer,
                id,
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ctx.clone());
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = kill.notified() => tracing::debug!(%peer, "connection dropped on purpose"),
                _ = cut_by_restart(&mut restart, id) => tracing::debug!(%peer, "connection cut by an indexer restart"),
            }
        });
    }
    unreachable!("connection numbers run out")
}

/// Returns at the first restart not asked for by connection `id`.
async fn cut_by_restart(restart: &mut tokio::sync::watch::Receiver<Restart>, id: u64) {
    while restart.changed().await.is_ok() {
        if restart.borrow_and_update().by_connection != id {
            return;
        }
    }
    std::future::pending().await
}
