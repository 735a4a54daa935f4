//! The admin port against the local stack: `/metrics` counts what was staged and delivered,
//! `/readyz` follows the destination and S3 and says what fails, and the status page renders in
//! headless Chromium (a screenshot is left at `target/test-artifacts/status-page.png`).
//!
//! Pipelines deliver to the file destination, so these tests need only PostgreSQL and S3.
//! To make a destination "stop", its directory is replaced by a regular file (its check then
//! fails); the same `admin_addr` / `get` / `metric` helpers work for any destination.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// A config whose admin port listens on a free loopback port.
fn config(stack: &Stack, db: &str, pipelines: &[String]) -> String {
    stack
        .base_config(db)
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"")
        + &pipelines.concat()
}

/// GET a path on the admin port: status and body.
async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The value of one sample in Prometheus text: `name{labels}` where every given label matches
/// (other labels are allowed).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let ok = labels
            .iter()
            .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        ok.then(|| value.parse().ok()).flatten()
    })
}

async fn wait_metric(addr: &str, name: &str, labels: &[(&str, &str)], want: f64) -> String {
    wait_for(&format!("{name}{labels:?} = {want}"), LONG, || async {
        let (_, text) = get(addr, "/metrics").await;
        (metric(&text, name, labels) == Some(want)).then_some(text)
    })
    .await
}

#[tokio::test]
async fn metrics_count_what_was_staged_and_delivered() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("admin").await,
        stack.bucket("admin").await,
    );
    let s3 = stack.s3().await;
    let (out_p, out_q) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let daemon = Daemon::start(&config(
        &stack,
        &db,
        &[
            file_pipeline("p", &bucket, out_p.path(), 30),
            file_pipeline("q", &bucket, out_q.path(), 30),
        ],
    ));
    let addr = admin_addr(&daemon).await;
    // Staged after the recorder is installed, so discovery's counters are all kept.
    for n in 0..3 {
        put(
            &s3,
            &bucket,
            &format!("in/p/part-{n}.json"),
            json_lines(&format!("p{n}"), 100, 80),
        )
        .await;
    }
    let mut bad = json_lines("q", 4, 80);
    bad.extend_from_slice(b"{\"id\": \"broken\", \n");
    put(&s3, &bucket, "in/q/mixed.json", bad).await;

    let p = [("pipeline", "p")];
    let q = [("pipeline", "q")];
    wait_metric(&addr, "stageload_records_delivered_total", &p, 300.0).await;
    let text = wait_metric(&addr, "stageload_records_rejected_total", &q, 1.0).await;
    assert_eq!(delivered_lines(out_p.path()).len(), 300);
    assert_eq!(
        metric(&text, "stageload_objects_discovered_total", &p),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "stageload_objects_discovered_total", &q),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "stageload_records_delivered_total", &q),
        Some(4.0)
    );
    let rejected_rows = query_i64(
        &db,
        "SELECT count(*) FROM load_errors WHERE pipeline = 'q' AND err_code = 9103",
    )
    .await;
    assert_eq!(rejected_rows, 1, "one load_errors row for the bad record");
    assert_eq!(
        metric(&text, "stageload_records_rejected_total", &p).unwrap_or(0.0),
        0.0
    );
    assert!(
        metric(
            &text,
            "stageload_delivery_attempts_total",
            &[("pipeline", "p"), ("outcome", "delivered")]
        )
        .is_some_and(|n| n >= 1.0),
        "delivered attempts counted:\n{text}"
    );

    // Gauges come from the control database at scrape time; wait for the settled state.
    let text = wait_for("pending objects drained", LONG, || async {
        let (_, text) = get(&addr, "/metrics").await;
        let loaded = query_i64(
            &db,
            "SELECT count(*) FROM batches WHERE pipeline = 'p' AND state = 'loaded'",
        )
        .await;
        let shown = metric(
            &text,
            "stageload_batches",
            &[("pipeline", "p"), ("state", "loaded")],
        );
        (metric(&text, "stageload_pending_objects", &p) == Some(0.0)
            && loaded > 0
            && shown == Some(loaded as f64))
        .then_some(text)
    })
    .await;
    let settled = metric(
        &text,
        "stageload_batches_settled_total",
        &[("pipeline", "p"), ("state", "loaded")],
    )
    .expect("batches settled counted");
    assert_eq!(
        Some(settled),
        metric(
            &text,
            "stageload_batches",
            &[("pipeline", "p"), ("state", "loaded")]
        )
    );
    assert_eq!(metric(&text, "stageload_pending_bytes", &p), Some(0.0));
    assert_eq!(metric(&text, "stageload_freshness_seconds", &p), Some(0.0));
    assert_eq!(
        metric(&text, "stageload_control_database_up", &[]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "stageload_buffer_interval_seconds", &p),
        Some(1.0)
    );
    // Every metric the daemon exported is one the shipped alerts and dashboard may name.
    for name in metric_names(&text) {
        assert!(
            stageload::telemetry::ALL.contains(&base_name(&name)),
            "{name} is exported but not in telemetry::ALL"
        );
    }
    // The latency histogram renders as a histogram with the configured buckets.
    assert!(text.contains("# TYPE stageload_delivery_duration_seconds histogram"));
    assert!(
        metric(
            &text,
            "stageload_delivery_duration_seconds_bucket",
            &[("pipeline", "p"), ("le", "3600")]
        ) == Some(settled),
        "every settled batch is in the 3600 s bucket:\n{text}"
    );
    assert!(text.contains("# HELP stageload_records_delivered_total Records delivered"));

    let (status, body) = get(&addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
}

#[tokio::test]
async fn a_pipeline_removed_by_a_reload_leaves_metrics() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("gone").await,
        stack.bucket("gone").await,
    );
    let (out_p, out_q) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let p = file_pipeline("p", &bucket, out_p.path(), 30);
    let q = file_pipeline("q", &bucket, out_q.path(), 30);
    let mut daemon = Daemon::start(&config(&stack, &db, &[p.clone(), q]));
    let addr = admin_addr(&daemon).await;
    let pending = "stageload_pending_objects";
    wait_metric(&addr, pending, &[("pipeline", "q")], 0.0).await;

    std::fs::write(&daemon.config, config(&stack, &db, &[p])).unwrap();
    daemon.signal("HUP");
    // Gauges of a pipeline that is no longer set leave the output after 30 s without updates.
    let text = wait_for(
        "pipeline q's gauges gone",
        Duration::from_secs(90),
        || async {
            let (_, text) = get(&addr, "/metrics").await;
            metric(&text, pending, &[("pipeline", "q")])
                .is_none()
                .then_some(text)
        },
    )
    .await;
    assert_eq!(
        metric(&text, pending, &[("pipeline", "p")]),
        Some(0.0),
        "the remaining pipeline keeps its gauges"
    );
    assert!(daemon.running());
}

#[tokio::test]
async fn readyz_follows_the_destination() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("admin").await,
        stack.bucket("admin").await,
    );
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("out");
    let daemon = Daemon::start(&config(
        &stack,
        &db,
        &[file_pipeline("orders", &bucket, &out, 30)],
    ));
    let addr = admin_addr(&daemon).await;
    let ready = |want: u16| {
        let addr = addr.clone();
        async move {
            wait_for(&format!("/readyz {want}"), LONG, || async {
                let (status, body) = get(&addr, "/readyz").await;
                (status == want).then_some(body)
            })
            .await
        }
    };
    let body = ready(200).await;
    assert!(body.starts_with("ready\n"), "{body}");
    assert!(body.contains("ok   destination pipeline=orders (file "));
    assert!(body.contains("ok   control"));
    assert!(
        body.contains("ok   workers pipeline=orders (1 of 1 dispatch workers live)"),
        "{body}"
    );

    // Stop the destination: its directory becomes a regular file, so it cannot be created.
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, b"not a directory").unwrap();
    let body = ready(503).await;
    assert!(
        body.starts_with("not ready: 1 of 4 checks failed"),
        "{body}"
    );
    assert!(
        body.contains("FAIL destination pipeline=orders (file "),
        "{body}"
    );
    let (status, json) = get(&addr, "/readyz?format=json").await;
    assert_eq!(status, 503);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["ready"], false);
    let failed: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| !c["error"].is_null())
        .collect();
    assert_eq!(failed.len(), 1, "{json}");
    assert_eq!(failed[0]["check"], "destination");
    assert_eq!(failed[0]["pipeline"], "orders");

    // And back.
    std::fs::remove_file(&out).unwrap();
    let body = ready(200).await;
    assert!(body.starts_with("ready\n"), "{body}");
}

#[tokio::test]
async fn readyz_names_a_missing_bucket_and_queue() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("admin").await,
        stack.bucket("admin").await,
    );
    let missing = Stack::unique("no-such-bucket");
    // A queue URL on the stack's SQS server naming a queue that was never created.
    let queue = format!(
        "{}/123456789012/{}",
        std::env::var("STAGELOAD_SQS_ENDPOINT").expect("run through `make test`"),
        Stack::unique("no-such-queue")
    );
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let daemon = Daemon::start(&config(
        &stack,
        &db,
        &[
            file_pipeline("present", &bucket, a.path(), 30).replace(
                "poll_interval_s = 1",
                &format!("poll_interval_s = 1\nsqs_queue_url = \"{queue}\""),
            ),
            file_pipeline("ghost", &missing, b.path(), 30),
        ],
    ));
    let addr = admin_addr(&daemon).await;
    let body = wait_for("/readyz 503", LONG, || async {
        let (status, body) = get(&addr, "/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(
        body.starts_with("not ready: 2 of 8 checks failed"),
        "{body}"
    );
    assert!(
        body.contains(&format!("FAIL s3 pipeline=ghost (bucket {missing})")),
        "{body}"
    );
    assert!(
        body.contains(&format!("FAIL queue pipeline=present (queue {queue})")),
        "{body}"
    );
    assert!(
        body.contains(&format!("ok   s3 pipeline=present (bucket {bucket})")),
        "{body}"
    );
}

/// Runs headless Chromium on a URL with extra arguments; returns its stdout.
async fn chromium(url: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("run chromium (installed by scripts/stack.sh up)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn status_page_renders_in_headless_chromium() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("admin").await,
        stack.bucket("admin").await,
    );
    let s3 = stack.s3().await;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let daemon = Daemon::start(&config(
        &stack,
        &db,
        &[
            file_pipeline("clickstream", &bucket, a.path(), 30),
            file_pipeline("orders", &bucket, b.path(), 30),
        ],
    ));
    let addr = admin_addr(&daemon).await;
    for n in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("in/clickstream/part-{n}.json"),
            json_lines(&format!("c{n}"), 250, 100),
        )
        .await;
    }
    // A filename with markup in it: the page must show it as text.
    let odd_key = "in/orders/late<b>&co</b>.json";
    let mut bad = json_lines("o", 40, 100);
    bad.extend_from_slice(b"{\"id\": \"o-bad\", \"total\": 12.5,,}\n");
    put(&s3, &bucket, odd_key, bad).await;
    put(&s3, &bucket, "in/orders/ok.json", json_lines("o2", 60, 100)).await;
    wait_for("all delivered and the error recorded", LONG, || async {
        let loaded = query_i64(
            &db,
            "SELECT count(*) FROM staged_objects WHERE state = 'loaded'",
        )
        .await;
        let errors = query_i64(&db, "SELECT count(*) FROM load_errors").await;
        (loaded == 6 && errors == 1).then_some(())
    })
    .await;

    let url = format!("http://{addr}/");
    let (status, html) = get(&addr, "/").await;
    assert_eq!(status, 200);
    let escaped_name = "late&lt;b&gt;&amp;co&lt;/b&gt;.json";
    assert!(html.contains(escaped_name), "{html}");
    assert!(!html.contains("<b>&co</b>"));

    let dom = chromium(&url, &["--dump-dom".to_string()]).await;
    assert!(dom.contains("clickstream"), "{dom}");
    assert!(dom.contains("orders"));
    assert!(
        dom.contains(&format!("s3://{bucket}/in/orders/{escaped_name}")),
        "the error's filename is shown as text:\n{dom}"
    );
    assert!(!dom.contains("<b>&amp;co</b>"), "no element from user data");
    assert!(dom.contains("9103"));
    assert!(dom.contains("<svg"));

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_string(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(png.len() > 10_000, "not a blank page");
}

/// Every `stageload_*` name in a text (Prometheus output, rules, a dashboard).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("stageload_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        // `stageload_lock_...` tables and the like are not metrics; metric names end in a letter.
        let name = tail[..end].trim_end_matches('_').to_string();
        if name.len() > "stageload_".len() {
            names.insert(name);
        }
        rest = &tail[end..];
    }
    names
}

/// A histogram's series name without `_bucket`, `_sum` or `_count`.
fn base_name(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if stageload::telemetry::ALL.contains(&base) {
                return base;
            }
        }
    }
    name
}

/// The alert rules and the Grafana dashboard in `packaging/` name only metrics the daemon
/// exports, and the dashboard shows every one of them.
#[test]
fn shipped_alerts_and_dashboard_name_only_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let alerts = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("grafana/stageload.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let exprs: Vec<String> = parsed["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect();
    let in_alerts = metric_names(&alerts);
    let in_dashboard = metric_names(&exprs.join("\n"));
    assert!(in_alerts.len() >= 6, "{in_alerts:?}");
    for name in in_alerts.iter().chain(&in_dashboard) {
        assert!(
            stageload::telemetry::ALL.contains(&base_name(name)),
            "{name} is not a metric the daemon exports"
        );
    }
    for name in stageload::telemetry::ALL {
        assert!(
            in_dashboard.iter().any(|n| base_name(n) == *name),
            "the dashboard does not show {name}"
        );
    }
}
