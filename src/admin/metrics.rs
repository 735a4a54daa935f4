//! `/metrics`: the process-wide Prometheus recorder and the scrape handler.
//!
//! Counters and the latency histogram are recorded where things happen (the dispatcher, discovery,
//! the destinations); the gauges describe the control database and are set here, at scrape time,
//! from `Control::pipeline_status`.

use super::Shared;
use crate::telemetry as m;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::OnceLock;
use std::time::Duration;
use tracing::warn;

/// Upper bounds, in seconds, of the delivery latency histogram's buckets.
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// A gauge not set for this long is dropped from `/metrics`.
pub const GAUGE_IDLE: Duration = Duration::from_secs(30);

/// How long the gauges' control-database query may take before the scrape goes on without it.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process and registers the metric descriptions;
/// later calls return the same handle. None when another recorder was installed first.
///
/// [`super::serve`] calls this; calling it earlier (before pipelines start) also keeps the
/// counters of the first discovery pass, which are dropped while no recorder is installed.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(m::DELIVERY_SECONDS.into()), DELIVERY_BUCKETS)
                .expect("bucket list is not empty")
                // Gauges are set at every scrape for the running pipelines; one not set for a
                // while belongs to a pipeline a reload removed (or its status is unknown), so it
                // leaves the output instead of showing a stale value forever.
                .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE));
            match builder.install_recorder() {
                Ok(handle) => {
                    m::describe();
                    Some(handle)
                }
                Err(e) => {
                    warn!(error = %e, "metrics recorder not installed; /metrics will answer 503");
                    None
                }
            }
        })
        .as_ref()
}

/// Sets the control-database gauges for the running pipelines.
async fn set_gauges(shared: &Shared) {
    for p in shared.state.pipelines() {
        let live = p.live_workers.load(std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!(m::LIVE_WORKERS, "pipeline" => p.config.name.clone()).set(live as f64);
        metrics::gauge!(m::BUFFER_INTERVAL_SECONDS, "pipeline" => p.config.name.clone())
            .set(p.config.buffer.interval_s as f64);
    }
    let names: Vec<String> = shared
        .state
        .pipelines()
        .iter()
        .map(|p| p.config.name.clone())
        .collect();
    let statuses =
        match tokio::time::timeout(STATUS_TIMEOUT, shared.state.control.pipeline_status(&names))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                warn!(error = %e, "metrics: pipeline status unavailable; gauges not updated");
                metrics::gauge!(m::CONTROL_DATABASE_UP).set(0.0);
                return;
            }
            Err(_) => {
                warn!(
                    error = "timed out",
                    "metrics: pipeline status unavailable; gauges not updated"
                );
                metrics::gauge!(m::CONTROL_DATABASE_UP).set(0.0);
                return;
            }
        };
    metrics::gauge!(m::CONTROL_DATABASE_UP).set(1.0);
    for s in statuses {
        let p = s.pipeline;
        for (state, n) in [
            ("sealed", s.batches_sealed),
            ("delivering", s.batches_delivering),
            ("loaded", s.batches_loaded),
            ("skipped", s.batches_skipped),
        ] {
            metrics::gauge!(m::BATCHES, "pipeline" => p.clone(), "state" => state).set(n as f64);
        }
        metrics::gauge!(m::FRESHNESS_SECONDS, "pipeline" => p.clone())
            .set(s.freshness_s.unwrap_or(0.0).max(0.0));
        metrics::gauge!(m::PENDING_OBJECTS, "pipeline" => p.clone()).set(s.pending_objects as f64);
        metrics::gauge!(m::PENDING_BYTES, "pipeline" => p).set(s.pending_bytes as f64);
    }
}

/// `GET /metrics`: every metric in Prometheus text format.
pub(super) async fn scrape(State(shared): State<Shared>) -> Response {
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response();
    };
    set_gauges(&shared).await;
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
