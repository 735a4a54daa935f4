//! `/healthz` and `/readyz`.
//!
//! Readiness runs every check at once (the control database, each pipeline's source bucket, its
//! notification queue when it has one, and its destination), each under a timeout so one hung
//! destination cannot hang the probe, and keeps the result for a second so frequent probes do
//! not hammer the destinations.

use super::{AdminState, Shared};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a readiness result is served from the cache.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// What a check looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// The control database answers a query.
    Control,
    /// S3 answers for a pipeline's source bucket.
    S3,
    /// A pipeline's notification queue answers (`source.sqs_queue_url`).
    Queue,
    /// A pipeline's destination passes its own check.
    Destination,
    /// A pipeline has at least one live dispatch worker.
    Workers,
}

impl CheckKind {
    /// The name used in the text body and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Control => "control",
            CheckKind::S3 => "s3",
            CheckKind::Queue => "queue",
            CheckKind::Destination => "destination",
            CheckKind::Workers => "workers",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    /// What was checked.
    pub check: CheckKind,
    /// The pipeline it belongs to; None for the control database.
    pub pipeline: Option<String>,
    /// What was reached: the bucket, or the destination's type and target.
    pub target: String,
    /// None when it passed; why it failed otherwise.
    pub error: Option<String>,
}

impl CheckResult {
    /// Whether it passed.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Every check's result and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Readiness {
    /// True when every check passed.
    pub ready: bool,
    /// Each check, control first, then per pipeline.
    pub checks: Vec<CheckResult>,
}

impl Readiness {
    /// Aggregates check results: ready only when there is at least one check and none failed.
    pub fn from_checks(checks: Vec<CheckResult>) -> Readiness {
        let ready = !checks.is_empty() && checks.iter().all(CheckResult::ok);
        Readiness { ready, checks }
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| !c.ok())
    }

    /// The plain-text body: a verdict line, then one line per check, failures first.
    pub fn to_text(&self) -> String {
        let failed = self.failures().count();
        let mut out = if self.ready {
            String::from("ready\n")
        } else {
            format!(
                "not ready: {failed} of {} checks failed\n",
                self.checks.len()
            )
        };
        let (bad, good): (Vec<_>, Vec<_>) = self.checks.iter().partition(|c| !c.ok());
        for c in bad.into_iter().chain(good) {
            let status = if c.ok() { "ok  " } else { "FAIL" };
            let _ = write!(out, "{status} {}", c.check.name());
            if let Some(p) = &c.pipeline {
                let _ = write!(out, " pipeline={p}");
            }
            let _ = write!(out, " ({})", c.target);
            if let Some(e) = &c.error {
                let _ = write!(out, ": {e}");
            }
            out.push('\n');
        }
        out
    }
}

/// Runs `check` under `timeout`; a check that does not finish in time fails.
pub async fn timed<F>(timeout: Duration, check: F) -> Result<(), String>
where
    F: Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(timeout, check).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}s", timeout.as_secs_f64())),
    }
}

/// Runs every check concurrently, each under `timeout`.
pub async fn run_checks(state: &AdminState, timeout: Duration) -> Readiness {
    let pipelines = state.pipelines();
    let control = async {
        let r = timed(timeout, async {
            state.control.ping().await.map_err(|e| e.to_string())
        })
        .await;
        CheckResult {
            check: CheckKind::Control,
            pipeline: None,
            target: "control database".into(),
            error: r.err(),
        }
    };
    let buckets = futures::future::join_all(pipelines.iter().map(|p| async move {
        let bucket = &p.config.source.bucket;
        let r = timed(timeout, async {
            state
                .s3
                .check_bucket(bucket)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        CheckResult {
            check: CheckKind::S3,
            pipeline: Some(p.config.name.clone()),
            target: format!("bucket {bucket}"),
            error: r.err(),
        }
    }));
    let queues = futures::future::join_all(pipelines.iter().map(|p| async move {
        let url = p.config.source.sqs_queue_url.as_deref()?;
        let r = timed(timeout, crate::discovery::sqs::check_queue(&state.s3, url)).await;
        Some(CheckResult {
            check: CheckKind::Queue,
            pipeline: Some(p.config.name.clone()),
            target: format!("queue {url}"),
            error: r.err(),
        })
    }));
    let destinations = futures::future::join_all(pipelines.iter().map(|p| async move {
        let r = timed(timeout, async {
            p.destination.check().await.map_err(|e| e.to_string())
        })
        .await;
        CheckResult {
            check: CheckKind::Destination,
            pipeline: Some(p.config.name.clone()),
            target: format!("{} {}", p.destination.kind(), p.destination.target()),
            error: r.err(),
        }
    }));
    let (control, buckets, queues, destinations) =
        tokio::join!(control, buckets, queues, destinations);
    let mut checks = vec![control];
    // Grouped per pipeline so the body reads pipeline by pipeline.
    for (((b, q), d), p) in buckets
        .into_iter()
        .zip(queues)
        .zip(destinations)
        .zip(&pipelines)
    {
        checks.push(b);
        checks.extend(q);
        checks.push(d);
        checks.push(workers_check(p));
    }
    Readiness::from_checks(checks)
}

/// A pipeline whose dispatch workers all died delivers nothing: not ready.
fn workers_check(p: &crate::admin::AdminPipeline) -> CheckResult {
    let live = p.live_workers.load(std::sync::atomic::Ordering::Relaxed);
    CheckResult {
        check: CheckKind::Workers,
        pipeline: Some(p.config.name.clone()),
        target: format!("{live} of {} dispatch workers live", p.config.workers),
        error: (live == 0).then(|| "no live dispatch worker".to_string()),
    }
}

/// The last readiness result and when it was taken.
pub struct ReadinessCache {
    timeout: Duration,
    ttl: Duration,
    last: tokio::sync::Mutex<Option<(Instant, Arc<Readiness>)>>,
}

impl ReadinessCache {
    /// A cache that runs checks under `timeout` and keeps a result for `ttl`.
    pub fn new(timeout: Duration, ttl: Duration) -> ReadinessCache {
        ReadinessCache {
            timeout,
            ttl,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The cached result, or a fresh one. The lock is held while checking, so probes that
    /// arrive during a check wait for it and share its result instead of starting their own.
    pub async fn get(&self, state: &AdminState) -> Arc<Readiness> {
        let mut last = self.last.lock().await;
        if let Some((at, r)) = last.as_ref() {
            if at.elapsed() < self.ttl {
                return r.clone();
            }
        }
        let r = Arc::new(run_checks(state, self.timeout).await);
        if !r.ready {
            for c in r.failures() {
                warn!(check = c.check.name(), pipeline = c.pipeline.as_deref().unwrap_or(""), target = %c.target, error = c.error.as_deref().unwrap_or(""), "readiness check failed");
            }
        }
        *last = Some((Instant::now(), r.clone()));
        r
    }
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `?format=json` on `/readyz`.
#[derive(Debug, Deserialize)]
pub struct ReadyQuery {
    format: Option<String>,
}

/// `GET /readyz`: 200 when every check passes, 503 naming each failure otherwise. Plain text,
/// or JSON with `?format=json` or `Accept: application/json`.
pub(super) async fn readyz(
    State(shared): State<Shared>,
    Query(q): Query<ReadyQuery>,
    headers: HeaderMap,
) -> Response {
    let r = shared.readiness.get(&shared.state).await;
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let wants_json = q.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        (status, axum::Json(r.as_ref().clone())).into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            r.to_text(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind, pipeline: Option<&str>, error: Option<&str>) -> CheckResult {
        CheckResult {
            check: kind,
            pipeline: pipeline.map(str::to_string),
            target: "t".into(),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn ready_only_when_every_check_passes() {
        let all_ok = Readiness::from_checks(vec![
            check(CheckKind::Control, None, None),
            check(CheckKind::S3, Some("a"), None),
            check(CheckKind::Destination, Some("a"), None),
        ]);
        assert!(all_ok.ready);
        assert_eq!(all_ok.failures().count(), 0);
        assert!(all_ok.to_text().starts_with("ready\n"));

        let one_bad = Readiness::from_checks(vec![
            check(CheckKind::Control, None, None),
            check(CheckKind::S3, Some("a"), None),
            check(CheckKind::Destination, Some("a"), Some("refused")),
        ]);
        assert!(!one_bad.ready);
        assert_eq!(one_bad.failures().count(), 1);
    }

    #[test]
    fn no_checks_is_not_ready() {
        assert!(!Readiness::from_checks(Vec::new()).ready);
    }

    #[test]
    fn text_names_each_failing_check_and_pipeline_first() {
        let r = Readiness::from_checks(vec![
            check(CheckKind::Control, None, None),
            check(CheckKind::S3, Some("clicks"), Some("no such bucket")),
            check(
                CheckKind::Destination,
                Some("orders"),
                Some("timed out after 5s"),
            ),
        ]);
        let text = r.to_text();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "not ready: 2 of 3 checks failed");
        assert_eq!(lines[1], "FAIL s3 pipeline=clicks (t): no such bucket");
        assert_eq!(
            lines[2],
            "FAIL destination pipeline=orders (t): timed out after 5s"
        );
        assert_eq!(lines[3], "ok   control (t)");
    }

    #[test]
    fn json_shape_is_stable() {
        let r = Readiness::from_checks(vec![check(CheckKind::Destination, Some("p"), Some("x"))]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["checks"][0]["check"], "destination");
        assert_eq!(v["checks"][0]["pipeline"], "p");
        assert_eq!(v["checks"][0]["error"], "x");
    }

    #[tokio::test]
    async fn a_hung_check_times_out() {
        let r = timed(Duration::from_millis(50), std::future::pending()).await;
        assert_eq!(r, Err("timed out after 0.05s".to_string()));
        let r = timed(Duration::from_millis(50), async { Ok(()) }).await;
        assert_eq!(r, Ok(()));
    }
}
