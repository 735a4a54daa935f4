//! The `/_receiver` control endpoints tests use: stored events, stats, reset, an indexer
//! restart and the fault switches. They take no token.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Extension;
use axum::{Json, Router};

use crate::faults::{FaultUpdate, FaultView};
use crate::routes::{App, ConnCtx, Restart};
use crate::state::{RestartView, StatsView, StoredEvent};

/// Routes under `/_receiver`.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/_receiver/events", get(events))
        .route("/_receiver/stats", get(stats))
        .route("/_receiver/reset", post(reset))
        .route("/_receiver/restart", post(restart))
        .route("/_receiver/faults", get(faults).post(set_faults))
}

async fn events(State(app): State<Arc<App>>) -> Json<Vec<StoredEvent>> {
    Json(app.store.events())
}

async fn stats(State(app): State<Arc<App>>) -> Json<StatsView> {
    Json(app.store.stats())
}

async fn reset(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    app.store.reset();
    tracing::info!("state reset");
    Json(serde_json::json!({ "reset": true }))
}

/// An indexer restart (see `Store::restart`), and every other open connection cut as a
/// stopping indexer cuts them: requests in flight get no answer and are not stored.
async fn restart(
    State(app): State<Arc<App>>,
    ctx: Option<Extension<ConnCtx>>,
) -> Json<RestartView> {
    let view = app.store.restart(Instant::now());
    let by_connection = ctx.map_or(u64::MAX, |c| c.id);
    app.restarts.send_modify(|r| {
        *r = Restart {
            count: r.count + 1,
            by_connection,
        }
    });
    tracing::info!(
        lost_requests = view.lost_requests,
        lost_events = view.lost_events,
        forgotten_acks = view.forgotten_acks,
        "indexer restart"
    );
    Json(view)
}

async fn faults(State(app): State<Arc<App>>) -> Json<FaultView> {
    Json(app.store.faults().view(Instant::now()))
}

async fn set_faults(
    State(app): State<Arc<App>>,
    Json(update): Json<FaultUpdate>,
) -> Json<FaultView> {
    let now = Instant::now();
    let mut faults = app.store.faults();
    faults.apply(&update, now);
    let view = faults.view(now);
    tracing::info!(?view, "faults set");
    Json(view)
}
