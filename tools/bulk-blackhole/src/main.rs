//! `bulk-blackhole`: the command line and the listener. Prints `listening on ADDR` on stdout
//! once it accepts connections.

use anyhow::Context;
use clap::Parser;
use std::io::Write;
use std::net::SocketAddr;

/// An Elasticsearch/OpenSearch `_bulk` endpoint that answers correctly and stores nothing.
#[derive(Debug, Parser)]
#[command(name = "bulk-blackhole", version)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (printed as `listening on ADDR`).
    #[arg(long, default_value = "127.0.0.1:9200")]
    listen: SocketAddr,
    /// Largest request body as received (Elasticsearch's `http.max_content_length`, 100mb); 413 over.
    #[arg(long, default_value_t = 100 * 1024 * 1024)]
    max_body_bytes: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (router, _stats) = bulk_blackhole::server::router(bulk_blackhole::server::Settings {
        max_body_bytes: cli.max_body_bytes,
    });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
