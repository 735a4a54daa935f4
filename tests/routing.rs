//! Routing by field through the daemon: an OpenSearch index named per record from a template
//! (fields and event time), with `default_index` for records it cannot name and for records
//! past the batch's index limit; Splunk HEC index, sourcetype, source and host per event.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Documents per index under `prefix*`, as the search server counts them.
async fn per_index(prefix: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for hit in es_hits(&format!("{prefix}*")).await {
        *out.entry(hit["_index"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn records_go_to_the_index_their_fields_and_time_name() {
    let stack = Stack::get();
    let es = stack.opensearch_url.trim_end_matches('/').to_string();
    let db = stack.fresh_database("route").await;
    let bucket = stack.bucket("route").await;
    let s3 = stack.s3().await;
    let base = Stack::unique("route");
    // 2016-02-25T13:00:00Z and the next day.
    let (day1, day2) = (1_456_405_200, 1_456_405_200 + 86_400);
    let mut lines = Vec::new();
    for (i, (service, ts)) in [
        ("web", day1),
        ("web", day2),
        ("API", day1),
        ("web", day1),
        ("", day1),
        ("batch", day1),
    ]
    .iter()
    .enumerate()
    {
        lines.push(json!({"id": i, "service": service, "ts": ts}).to_string());
    }
    lines.push(json!({"id": 6, "ts": day1}).to_string());
    put(&s3, &bucket, "in/rt/a.json", lines.join("\n").into_bytes()).await;
    let config = stack.base_config(&db)
        + &pipeline_block(
            "rt",
            &bucket,
            "json_lines",
            30,
            &format!(
                "type = \"elasticsearch\"\nendpoints = [\"{es}\"]\nrequest_timeout_s = 5\n\
                 index = \"{base}-{{.service}}-%Y.%m.%d\"\ntimestamp_field = \"/ts\"\n\
                 default_index = \"{base}-other\"\nmax_indices_per_batch = 3"
            ),
        );
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    let counts = wait_for("7 documents", Duration::from_secs(20), || async {
        let c = per_index(&base).await;
        (c.values().sum::<i64>() == 7).then_some(c)
    })
    .await;
    // web/day1, web/day2 and api/day1 open the batch's three indexes; "batch" would open a
    // fourth, and an empty or missing service names none: those three go to the default.
    let want: BTreeMap<String, i64> = [
        (format!("{base}-web-2016.02.25"), 2),
        (format!("{base}-web-2016.02.26"), 1),
        (format!("{base}-api-2016.02.25"), 1),
        (format!("{base}-other"), 3),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want, "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains("records sent to default_index") && log.contains("over_limit=1"),
        "the batch says why records went to the default: {log}"
    );
    assert!(query_strings(&db, "SELECT 1 FROM load_errors")
        .await
        .is_empty());
}

#[tokio::test]
async fn hec_events_carry_the_index_sourcetype_source_and_host_of_their_fields() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecroute").await;
    let bucket = stack.bucket("hecroute").await;
    let s3 = stack.s3().await;
    let token = "00000000-0000-0000-0000-0000000000C3";
    let (mut receiver, addr) = start_hec_receiver("127.0.0.1:0", token, &["--ack"]);
    let records = [
        json!({"n": 0, "team": "payments", "kind": "pay:log", "node": "ip-10-0-0-1"}),
        json!({"n": 1, "team": "search", "node": "ip-10-0-0-2", "origin": "svc/search"}),
        json!({"n": 2}),
    ];
    let body: Vec<String> = records.iter().map(Value::to_string).collect();
    put(&s3, &bucket, "in/ev/a.json", body.join("\n").into_bytes()).await;
    let config = stack.base_config(&db)
        + &pipeline_block(
            "ev",
            &bucket,
            "json_lines",
            30,
            &format!(
                "type = \"splunk\"\nurl = \"http://{addr}\"\ntoken = \"{token}\"\n\
                 ack_poll_interval_s = 0.2\nindex = \"main\"\nsourcetype = \"app\"\n\
                 index_field = \"/team\"\nsourcetype_field = \"/kind\"\n\
                 source_field = \"/origin\"\nhost_field = \"/node\""
            ),
        );
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    let events = hec_events(&addr, 3).await;
    let mut got: Vec<(i64, [String; 4])> = events
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("-").to_string();
            (
                e["event"]["n"].as_i64().unwrap(),
                [s("index"), s("sourcetype"), s("source"), s("host")],
            )
        })
        .collect();
    got.sort();
    let url = format!("s3://{bucket}/in/ev/a.json");
    let m = |a: &str, b: &str, c: &str, d: &str| [a, b, c, d].map(str::to_string);
    assert_eq!(
        got,
        vec![
            (0, m("payments", "pay:log", &url, "ip-10-0-0-1")),
            (1, m("search", "app", "svc/search", "ip-10-0-0-2")),
            // No host field and no fixed host: the receiver stamps the sender's address, as
            // Splunk does.
            (2, m("main", "app", &url, "127.0.0.1")),
        ],
        "{}",
        daemon.log_text()
    );
    let _ = receiver.kill();
    let _ = receiver.wait();
}
