//! Tests of the rendered page: what it shows and that user data is escaped.

use super::*;
use crate::admin::health::{CheckKind, CheckResult, Readiness};
use crate::admin::page::LastError;
use crate::control::status::{ErrorRow, PipelineStatus};
use chrono::{TimeZone, Utc};
use std::sync::Arc;

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn view(name: &str) -> PipelineView {
    PipelineView {
        name: name.into(),
        kind: "file".into(),
        target: "/var/lib/out".into(),
        source: format!("s3://stage/in/{name}/"),
        interval_s: 60,
        status: PipelineStatus {
            pipeline: name.into(),
            pending_objects: 3,
            pending_bytes: 2048,
            freshness_s: Some(12.0),
            batches_loaded: 1234,
            last_loaded_at: Some(now() - chrono::Duration::seconds(30)),
            ..Default::default()
        },
        throughput: vec![0, 10, 20],
        last_error: None,
    }
}

fn error(filename: &str, raw: &str) -> ErrorRow {
    ErrorRow {
        id: 1,
        recorded_at: now() - chrono::Duration::seconds(5),
        pipeline: "clicks".into(),
        destination: "file".into(),
        target: "/var/lib/out".into(),
        batch_id: Some(7),
        query: 0,
        filename: filename.into(),
        line_number: 42,
        record_ordinal: Some(41),
        colname: String::new(),
        r#type: String::new(),
        col_length: String::new(),
        position: 0,
        raw_line: raw.into(),
        raw_field_value: String::new(),
        err_code: 9103,
        err_reason: "not valid JSON: expected value".into(),
        attempts: 1,
        first_attempt_at: None,
        resolution: None,
        replay_batch_id: None,
    }
}

fn data(readiness: Readiness) -> PageData {
    PageData {
        now: now(),
        readiness: Arc::new(readiness),
        pipelines: vec![view("clicks"), view("orders")],
        errors: vec![error(
            "s3://stage/in/<b>bold</b>&.json",
            r#"{"a": <script>alert(1)</script>"#,
        )],
        problems: Vec::new(),
    }
}

fn ready() -> Readiness {
    Readiness::from_checks(vec![CheckResult {
        check: CheckKind::Control,
        pipeline: None,
        target: "control database".into(),
        error: None,
    }])
}

#[test]
fn page_lists_pipelines_and_errors() {
    let html = page(&data(ready()));
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains(r#"<meta http-equiv="refresh" content="10">"#));
    assert!(html.contains("clicks") && html.contains("orders"));
    assert!(html.contains("loaded 1,234"));
    assert!(html.contains("2.0 KiB"));
    assert!(html.contains("● ready"));
    assert!(html.contains("<svg"));
    assert!(html.contains("9103"));
    assert!(!html.contains("<script"), "no scripts at all");
}

#[test]
fn user_data_is_escaped() {
    let html = page(&data(ready()));
    assert!(html.contains("s3://stage/in/&lt;b&gt;bold&lt;/b&gt;&amp;.json"));
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn not_ready_names_the_failing_checks() {
    let r = Readiness::from_checks(vec![CheckResult {
        check: CheckKind::Destination,
        pipeline: Some("orders".into()),
        target: "file /x".into(),
        error: Some("directory /x: <File exists>".into()),
    }]);
    let html = page(&data(r));
    assert!(html.contains("not ready · 1 failing"));
    assert!(html.contains("directory /x: &lt;File exists&gt;"));
    assert!(html.contains(r#"<span class="dot bad" title="bad"></span>orders"#));
    assert!(html.contains(r#"<span class="dot ok" title="ok"></span>clicks"#));
}

#[test]
fn health_follows_errors_and_freshness() {
    let mut p = view("p");
    assert_eq!(pipeline_health(&p, false), "ok");
    p.status.freshness_s = Some(500.0);
    assert_eq!(pipeline_health(&p, false), "warn");
    p.status.freshness_s = None;
    p.status.after_load_failed = 1;
    assert_eq!(pipeline_health(&p, false), "warn");
    p.status.after_load_failed = 0;
    p.status.errors_last_hour = 2;
    assert_eq!(pipeline_health(&p, false), "warn");
    p.last_error = Some(LastError {
        at: None,
        text: "connection refused".into(),
        retrying: true,
    });
    assert_eq!(pipeline_health(&p, false), "bad");
    assert_eq!(pipeline_health(&view("q"), true), "bad");
}

#[test]
fn empty_states_say_so() {
    let mut d = data(ready());
    d.pipelines.clear();
    d.errors.clear();
    d.problems
        .push("pipeline status: connection refused".into());
    let html = page(&d);
    assert!(html.contains("No pipelines are configured."));
    assert!(html.contains("No load errors recorded."));
    assert!(html.contains("Some figures are missing"));
}

#[test]
fn after_load_actions_pending_and_failed_show_beside_the_errors() {
    let mut d = data(ready());
    d.pipelines[0].status.after_load_pending = 12;
    d.pipelines[0].status.after_load_failed = 3;
    let html = page(&d);
    assert!(
        html.contains(r#"<div class="small err">3 after-load failed</div>"#),
        "{html}"
    );
    assert!(html.contains(r#"<div class="small">12 after-load pending</div>"#));
}
