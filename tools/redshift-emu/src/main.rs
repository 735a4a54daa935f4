//! `redshift-emu`: a dev-only Redshift emulator. A PostgreSQL wire-protocol proxy in front of a
//! real PostgreSQL that runs Redshift's `COPY ... FROM 's3://...'` itself and keeps
//! `stl_load_errors`, `pg_last_copy_id()` and friends, with Redshift's snapshot or serializable
//! isolation, an optional Redshift Serverless mode and an injectable 1023 error. See README.md.
//!
//! Layout: `main` (CLI, startup), `proxy` (per-connection relay), `wire` (message framing),
//! `sqltok`/`copy_parse`/`copy_options`/`copy_args` (COPY grammar), `copy_run` (running one COPY), `ddl` (ALTER TABLE forms Redshift refuses), `load` (its files and rows), `s3`
//! (objects, manifests, decompression), `formats`/`csv`/`jsonpath` (records and fields),
//! `convert`/`numbers`/`timefmt` (typed conversion and load error codes), `catalog` (side connection).

mod catalog;
mod columnar;
mod convert;
mod copy_args;
mod copy_options;
mod copy_parse;
mod copy_run;
mod csv;
mod ddl;
mod formats;
mod jsonpath;
mod load;
mod numbers;
mod proxy;
mod s3;
mod sqltok;
mod timefmt;
mod wire;

use std::io::{IsTerminal, Write};
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "redshift-emu",
    about = "Redshift COPY emulator in front of PostgreSQL"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, default_value = "127.0.0.1:5439")]
    listen: String,
    /// Backend PostgreSQL address, host:port.
    #[arg(long)]
    backend: String,
    /// URL of the side connection to the same database (creates stl_load_errors, writes errors).
    #[arg(long, env = "REDSHIFT_EMU_ADMIN_URL")]
    admin_url: String,
    /// S3 endpoint (path-style); AWS when omitted.
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, default_value = "us-east-1")]
    s3_region: String,
    /// Isolation of every client session: `snapshot` (REPEATABLE READ, the default of new
    /// Redshift clusters) or `serializable`.
    #[arg(long, value_enum, default_value = "snapshot")]
    isolation: proxy::Isolation,
    /// Behave like Redshift Serverless: STL views refused, COPY failures point at
    /// sys_load_error_detail, whose query ids are not pg_last_copy_id()'s.
    #[arg(long)]
    serverless: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "redshift_emu=info".into()),
        )
        .init();
    let cli = Cli::parse();
    let catalog = catalog::Catalog::open(&cli.admin_url).await?;
    let s3 = s3::S3::new(cli.s3_endpoint.as_deref(), &cli.s3_region).await;
    let shared = Arc::new(proxy::Shared {
        backend: cli.backend.clone(),
        isolation: cli.isolation,
        serverless: cli.serverless,
        catalog,
        s3,
    });
    let listener = TcpListener::bind(&cli.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = %cli.backend, isolation = ?cli.isolation, serverless = cli.serverless, "listening");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    loop {
        let (sock, peer) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = proxy::serve(sock, shared).await {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}
