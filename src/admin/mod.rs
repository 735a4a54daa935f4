//! The admin HTTP port (axum): `/healthz` (the process is alive), `/readyz` (the control
//! database, each pipeline's source bucket and destination answer), `/metrics` (Prometheus text)
//! and `/`, a server-rendered status page for people.
//!
//! - [`health`]: liveness, readiness checks with a timeout and a short cache.
//! - [`metrics`]: the process-wide Prometheus recorder and the gauges set at scrape time.
//! - [`page`]: the status page's data; [`render`] turns it into HTML, with [`html`] and
//!   [`chart`] as pure building blocks.

pub mod chart;
pub mod health;
pub mod html;
pub mod metrics;
pub mod page;
pub mod render;

use crate::config::PipelineConfig;
use crate::control::Control;
use crate::destination::Destination;
use crate::source::s3::S3;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One pipeline as the admin port sees it.
#[derive(Clone)]
pub struct AdminPipeline {
    /// Its configuration.
    pub config: Arc<PipelineConfig>,
    /// Its destination, for readiness checks.
    pub destination: Arc<dyn Destination>,
    /// Its dispatch workers alive now.
    pub live_workers: Arc<std::sync::atomic::AtomicUsize>,
}

/// What the admin port reads.
#[derive(Clone)]
pub struct AdminState {
    /// The control database.
    pub control: Control,
    /// S3.
    pub s3: S3,
    /// The pipelines running now (replaced on reload).
    pub pipelines: Arc<std::sync::RwLock<Vec<AdminPipeline>>>,
}

impl AdminState {
    /// A snapshot of the pipelines running now; the lock is never held across an await.
    pub fn pipelines(&self) -> Vec<AdminPipeline> {
        self.pipelines
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }
}

/// What every handler shares: the daemon's state plus the readiness cache.
#[derive(Clone)]
struct Shared {
    state: AdminState,
    readiness: Arc<health::ReadinessCache>,
}

/// The routes, for [`serve`] and for tests that drive the router directly.
fn router(state: AdminState) -> Router {
    let shared = Shared {
        state,
        readiness: Arc::new(health::ReadinessCache::new(
            health::CHECK_TIMEOUT,
            health::CACHE_FOR,
        )),
    };
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/", get(page::status_page))
        .with_state(shared)
}

/// Binds `listen` and serves until `stop`; returns the bound address (for port 0).
pub async fn serve(
    listen: SocketAddr,
    state: AdminState,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    metrics::install();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = router(state);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            warn!(addr = %addr, error = %e, "admin server ended");
        }
    });
    Ok(addr)
}
