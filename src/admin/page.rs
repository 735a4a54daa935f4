//! `GET /`: the status page. Gathers what it shows from the control database (each query under a
//! timeout, so a slow database gives a page with a warning rather than no page) and hands it to
//! [`render`] to turn into HTML.

use super::health::Readiness;
use super::render;
use super::Shared;
use crate::control::status::{ErrorFilter, ErrorRow, PipelineStatus};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long each status query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The throughput chart's window and bar width, in seconds.
pub const THROUGHPUT_WINDOW_S: i64 = 3600;
/// One bar of the throughput chart.
pub const THROUGHPUT_BUCKET_S: i64 = 300;
/// Rows in the recent-errors table.
pub const RECENT_ERRORS: i64 = 20;

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct PageData {
    /// When it was gathered.
    pub now: DateTime<Utc>,
    /// The readiness checks (cached, as `/readyz` serves them).
    pub readiness: Arc<Readiness>,
    /// One entry per running pipeline, in configuration order.
    pub pipelines: Vec<PipelineView>,
    /// The newest `load_errors` rows of every pipeline.
    pub errors: Vec<ErrorRow>,
    /// Queries that failed while gathering, shown as a warning.
    pub problems: Vec<String>,
}

/// One pipeline's row.
#[derive(Debug, Clone)]
pub struct PipelineView {
    /// Name.
    pub name: String,
    /// Destination type.
    pub kind: String,
    /// Table, index, sourcetype or directory.
    pub target: String,
    /// `s3://bucket/prefix`.
    pub source: String,
    /// The buffer interval, to judge freshness by.
    pub interval_s: u64,
    /// Counts from the control database.
    pub status: PipelineStatus,
    /// Records delivered per [`THROUGHPUT_BUCKET_S`] over the last hour, oldest first.
    pub throughput: Vec<i64>,
    /// Its most recent problem.
    pub last_error: Option<LastError>,
}

/// A pipeline's most recent problem: a batch failing right now, or the newest error row.
#[derive(Debug, Clone)]
pub struct LastError {
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// What.
    pub text: String,
    /// True when a batch is still being retried.
    pub retrying: bool,
}

/// Runs a query under [`QUERY_TIMEOUT`], flattening its error to text.
async fn timed<T, E: std::fmt::Display>(
    query: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// The value, or None with the failure noted in `problems`.
fn noted<T>(what: &str, problems: &mut Vec<String>, r: Result<T, String>) -> Option<T> {
    r.map_err(|e| problems.push(format!("{what}: {e}"))).ok()
}

/// Reads what one pipeline row needs besides its status.
async fn pipeline_extras(
    shared: &Shared,
    name: &str,
    problems: &mut Vec<String>,
) -> (Vec<i64>, Option<LastError>) {
    let control = &shared.state.control;
    let newest_filter = ErrorFilter {
        pipeline: Some(name.to_string()),
        limit: 1,
        ..Default::default()
    };
    let (throughput, newest, delivering) = tokio::join!(
        timed(control.throughput(name, THROUGHPUT_WINDOW_S, THROUGHPUT_BUCKET_S)),
        timed(control.errors(&newest_filter)),
        timed(control.batches(Some(name), Some("delivering"), 1)),
    );
    let what = format!("pipeline {name}");
    let throughput = noted(&what, problems, throughput).unwrap_or_default();
    let failing = noted(&what, problems, delivering)
        .and_then(|b| b.into_iter().next())
        .and_then(|b| {
            b.last_error.map(|text| LastError {
                at: b.last_attempt_at,
                text: format!("batch {} attempt {}: {text}", b.id, b.attempts),
                retrying: true,
            })
        });
    let newest = noted(&what, problems, newest)
        .and_then(|e| e.into_iter().next())
        .map(|e| LastError {
            at: Some(e.recorded_at),
            text: format!("{} {}", e.err_code, e.err_reason),
            retrying: false,
        });
    (throughput, failing.or(newest))
}

/// Gathers the page's data.
pub(super) async fn gather(shared: &Shared) -> PageData {
    let pipelines = shared.state.pipelines();
    let names: Vec<String> = pipelines.iter().map(|p| p.config.name.clone()).collect();
    let mut problems = Vec::new();
    let control = &shared.state.control;
    let recent = ErrorFilter {
        limit: RECENT_ERRORS,
        ..Default::default()
    };
    let (readiness, statuses, errors) = tokio::join!(
        shared.readiness.get(&shared.state),
        timed(control.pipeline_status(&names)),
        timed(control.errors(&recent)),
    );
    let statuses = noted("pipeline status", &mut problems, statuses).unwrap_or_default();
    let errors = noted("recent errors", &mut problems, errors).unwrap_or_default();
    let mut views = Vec::with_capacity(pipelines.len());
    for p in &pipelines {
        let c = &p.config;
        let status = statuses
            .iter()
            .find(|s| s.pipeline == c.name)
            .cloned()
            .unwrap_or_else(|| PipelineStatus {
                pipeline: c.name.clone(),
                ..Default::default()
            });
        let (throughput, last_error) = pipeline_extras(shared, &c.name, &mut problems).await;
        views.push(PipelineView {
            name: c.name.clone(),
            kind: p.destination.kind().to_string(),
            target: p.destination.target(),
            source: format!("s3://{}/{}", c.source.bucket, c.source.prefix),
            interval_s: c.buffer.interval_s,
            status,
            throughput,
            last_error,
        });
    }
    // A database that is down fails every query the same way: say it once.
    problems.dedup_by(|a, b| a.split_once(": ").map(|x| x.1) == b.split_once(": ").map(|x| x.1));
    PageData {
        now: Utc::now(),
        readiness,
        pipelines: views,
        errors,
        problems,
    }
}

/// `GET /`: the status page.
pub(super) async fn status_page(State(shared): State<Shared>) -> Response {
    let data = gather(&shared).await;
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render::page(&data),
    )
        .into_response()
}
