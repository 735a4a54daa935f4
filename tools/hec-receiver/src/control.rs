//! The `/_receiver` control endpoints tests use: stored events, stats, reset and the fault
//! switches. They take no token.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::faults::{FaultUpdate, FaultView};
use crate::routes::App;
use crate::state::{StatsView, StoredEvent};

/// Routes under `/_receiver`.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/_receiver/events", get(events))
        .route("/_receiver/stats", get(stats))
        .route("/_receiver/reset", post(reset))
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
