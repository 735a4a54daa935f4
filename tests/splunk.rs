//! The Splunk HEC destination against the project's HEC test receiver (`tools/hec-receiver`,
//! one process per test): event and raw endpoints with their metadata, resending after a
//! missing ack, an indexer restart (ack ids from 0 again, what was not indexed lost), a refused
//! event in the middle of a request, and a busy receiver shorter and longer than the retry
//! budget.

mod common;
#[path = "proxy/sticky.rs"]
mod sticky;

use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::process::Child;
use std::time::Duration;

const TOKEN: &str = "00000000-0000-0000-0000-0000000000A1";

/// A running `hec-receiver`.
struct Receiver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Receiver {
    fn start(extra: &[&str]) -> Receiver {
        let (child, addr) = start_hec_receiver("127.0.0.1:0", TOKEN, extra);
        Receiver {
            url: format!("http://{addr}"),
            child,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.url);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn events(&self) -> Vec<Value> {
        self.get("/_receiver/events")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn stats(&self) -> Value {
        self.get("/_receiver/stats").await
    }

    async fn faults(&self, faults: Value) {
        let url = format!("{}/_receiver/faults", self.url);
        let resp = self.http.post(url).json(&faults).send().await.unwrap();
        assert!(resp.status().is_success(), "faults refused: {faults}");
    }

    /// An indexer restart: what is not indexed yet is lost, ack ids start from 0 again.
    async fn restart(&self) -> Value {
        let url = format!("{}/_receiver/restart", self.url);
        let resp = self.http.post(url).send().await.unwrap();
        assert!(resp.status().is_success(), "restart refused");
        resp.json().await.unwrap()
    }

    /// The distinct record ids the receiver holds, and how many events it holds.
    async fn record_ids(&self) -> (HashSet<String>, usize) {
        let events = self.events().await;
        let ids = events
            .iter()
            .filter_map(|e| e["event"]["id"].as_str().map(str::to_string))
            .collect();
        (ids, events.len())
    }

    /// Waits until the receiver has stored `n` events.
    async fn wait_events(&self, n: u64, timeout_s: u64) {
        wait_for(
            &format!("{n} events at the receiver"),
            Duration::from_secs(timeout_s),
            || async { (self.stats().await["events"].as_u64() >= Some(n)).then_some(()) },
        )
        .await;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Splunk pipeline's config section.
fn pipeline(name: &str, bucket: &str, format: &str, retry_s: u64, dest: &str) -> String {
    pipeline_block(
        name,
        bucket,
        format,
        retry_s,
        &format!(
            "type = \"splunk\"\ntoken = \"{TOKEN}\"\nack_poll_interval_s = 0.2\nrequest_timeout_s = 5\n{dest}"
        ),
    )
}

/// Batches of a pipeline in a state.
async fn batches(db: &str, state: &str) -> i64 {
    query_i64(
        db,
        &format!("SELECT count(*) FROM batches WHERE state = '{state}'"),
    )
    .await
}

async fn wait_batches(db: &str, state: &str, n: i64, timeout_s: u64) {
    wait_for(
        &format!("{n} {state} batches"),
        Duration::from_secs(timeout_s),
        || async { (batches(db, state).await >= n).then_some(()) },
    )
    .await;
}

async fn failed_events(s3: &aws_sdk_s3::Client, bucket: &str, name: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for key in keys(s3, bucket, &format!("errors/{name}/splunk-failed/")).await {
        let body = get(s3, bucket, &key).await.unwrap_or_default();
        for line in String::from_utf8_lossy(&body).lines() {
            out.push(serde_json::from_str(line).expect("failed-event record is JSON"));
        }
    }
    out
}

#[tokio::test]
async fn event_and_raw_endpoints_deliver_every_record_with_its_metadata() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecmeta").await;
    let bucket = stack.bucket("hecmeta").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    put(
        &s3,
        &bucket,
        "in/ev/a.json.gz",
        gzip(&json_lines("ev", 300, 200)),
    )
    .await;
    put(
        &s3,
        &bucket,
        "in/raw/b.log",
        b"alpha one\nbeta two\ngamma three\n".to_vec(),
    )
    .await;
    let config = format!(
        "{}{}{}",
        stack.base_config(&db),
        pipeline(
            "ev",
            &bucket,
            "json_lines",
            30,
            &format!(
                r#"url = "{}"
index = "web"
sourcetype = "clicks"
host = "loader-1"
time_field = "/ts"
fields = {{ team = "web" }}
compression = "gzip"
max_request_bytes = 8192"#,
                hec.url
            )
        ),
        pipeline(
            "raw",
            &bucket,
            "lines",
            30,
            &format!(
                r#"url = "{}"
endpoint = "raw"
index = "logs"
sourcetype = "text""#,
                hec.url
            )
        ),
    );
    let daemon = Daemon::start(&config);
    hec.wait_events(303, 30).await;
    wait_batches(&db, "loaded", 2, 20).await;

    let events = hec.events().await;
    let (ev, raw): (Vec<&Value>, Vec<&Value>) =
        events.iter().partition(|e| e["endpoint"] == "event");
    assert_eq!(ev.len(), 300, "one event per record");
    assert_eq!(raw.len(), 3);
    let source = format!("s3://{bucket}/in/ev/a.json.gz");
    let mut ids: Vec<String> = Vec::new();
    for e in &ev {
        let i: u64 = e["event"]["id"].as_str().unwrap()["ev-".len()..]
            .parse()
            .unwrap();
        assert_eq!(e["time"].as_f64(), Some((1_764_300_000 + i) as f64), "{e}");
        assert_eq!(e["time_given"], true);
        assert_eq!(e["source"], source.as_str());
        assert_eq!(e["sourcetype"], "clicks");
        assert_eq!(e["index"], "web");
        assert_eq!(e["host"], "loader-1");
        assert_eq!(e["fields"], json!({"team": "web"}));
        assert_eq!(e["event"]["action"], "click");
        ids.push(e["event"]["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "no record twice");
    // 300 records of ~200 bytes in requests of at most 8 KiB: many requests, all gzip.
    assert!(hec.stats().await["requests"].as_u64().unwrap() >= 8);

    let lines: Vec<&str> = raw.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(lines, ["alpha one", "beta two", "gamma three"]);
    for e in &raw {
        assert_eq!(e["source"], format!("s3://{bucket}/in/raw/b.log").as_str());
        assert_eq!(e["sourcetype"], "text");
        assert_eq!(e["index"], "logs");
    }
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
    drop(daemon);
}

#[tokio::test]
async fn a_request_never_acknowledged_is_sent_again_after_the_ack_timeout() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecack").await;
    let bucket = stack.bucket("hecack").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    hec.faults(json!({"never_ack": true})).await;
    put(&s3, &bucket, "in/ack/a.json", json_lines("ack", 50, 100)).await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "ack",
            &bucket,
            "json_lines",
            60,
            &format!("url = \"{}\"\nack_timeout_s = 2", hec.url)
        )
    );
    let daemon = Daemon::start(&config);
    hec.wait_events(50, 20).await;
    // Accepted but never acknowledged; acks work again for what is sent from now on.
    hec.faults(json!({"never_ack": false})).await;
    wait_batches(&db, "loaded", 1, 20).await;

    let stats = hec.stats().await;
    assert_eq!(stats["events"], 100, "sent twice: {stats}");
    assert_eq!(stats["duplicates"], 50, "{stats}");
    assert_eq!(
        stats["channels"].as_object().unwrap().len(),
        1,
        "one channel, resent on it: {stats}"
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
    let log = daemon.log_text();
    assert!(
        log.contains("not acknowledged in time"),
        "the resend is logged:\n{log}"
    );
}

/// Every record id `json_lines(tag, n, _)` writes.
fn ids(tag: &str, n: usize) -> HashSet<String> {
    (0..n).map(|i| format!("{tag}-{i}")).collect()
}

/// Issue 21: HEC numbers ack ids per channel from 0 and starts again after an indexer restart.
/// Requests are waiting for their acks (the indexer is slow, then full: 503 code 9) when the
/// indexer restarts and loses them; the batch's next requests get the same ack ids. Each
/// request that held one must be sent again, not forgotten, so every record arrives.
#[tokio::test]
async fn requests_waiting_for_acks_when_the_indexer_restarts_are_sent_again() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecrestart").await;
    let bucket = stack.bucket("hecrestart").await;
    let s3 = stack.s3().await;
    // Four requests pending per channel at most: the fifth is refused as busy.
    let hec = Receiver::start(&["--ack", "--max-pending-acks-per-channel", "4"]);
    hec.faults(json!({"never_ack": true})).await;
    put(&s3, &bucket, "in/rs/a.json", json_lines("rs", 80, 100)).await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "rs",
            &bucket,
            "json_lines",
            60,
            &format!(
                "url = \"{}\"\nack_timeout_s = 60\nmax_request_bytes = 1024",
                hec.url
            )
        )
    );
    let daemon = Daemon::start(&config);
    wait_for(
        "four requests pending and the next refused",
        Duration::from_secs(20),
        || async { (hec.stats().await["codes"]["9"].as_u64() >= Some(1)).then_some(()) },
    )
    .await;
    hec.faults(json!({"never_ack": false})).await;
    let restart = hec.restart().await;
    assert!(
        restart["lost_events"].as_u64() > Some(0),
        "the restart lost the pending requests' events: {restart}"
    );

    wait_batches(&db, "loaded", 1, 40).await;
    let (got, events) = hec.record_ids().await;
    let mut missing: Vec<String> = ids("rs", 80).difference(&got).cloned().collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "{} records never arrived (the batch settled loaded): {missing:?}",
        missing.len()
    );
    println!("{events} events for 80 records after the restart");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
    let log = daemon.log_text();
    assert!(
        log.contains("handed out again"),
        "the resend is logged:\n{log}"
    );
}

/// After an indexer restart with nothing left to send, the ack ids already issued are unknown
/// to the new indexer, which answers `false` for them forever: they are sent again once
/// `ack_timeout_s` has passed, and the batch is not settled before every record is indexed.
#[tokio::test]
async fn ack_ids_an_indexer_forgot_time_out_and_are_sent_again() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecforgot").await;
    let bucket = stack.bucket("hecforgot").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    hec.faults(json!({"ack_delay_s": 30})).await;
    put(&s3, &bucket, "in/fg/a.json", json_lines("fg", 30, 100)).await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "fg",
            &bucket,
            "json_lines",
            60,
            &format!(
                "url = \"{}\"\nack_timeout_s = 4\nmax_request_bytes = 1024",
                hec.url
            )
        )
    );
    let _daemon = Daemon::start(&config);
    hec.wait_events(30, 20).await;
    hec.faults(json!({"ack_delay_s": 0})).await;
    let restart = hec.restart().await;
    // All 30, and more if a slow machine resent some before the restart.
    assert!(restart["lost_events"].as_u64() >= Some(30), "{restart}");
    assert_eq!(batches(&db, "loaded").await, 0);

    wait_batches(&db, "loaded", 1, 30).await;
    let (got, _) = hec.record_ids().await;
    assert_eq!(got, ids("fg", 30), "every record indexed");
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
}

#[tokio::test]
async fn a_refused_event_is_recorded_and_the_others_arrive() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecbad").await;
    let bucket = stack.bucket("hecbad").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    // Valid JSON, so the reader passes it on; HEC refuses `"event":null` with code 6.
    let mut body = json_lines("bad", 4, 80);
    body.extend_from_slice(b"null\n");
    body.extend(json_lines("late", 5, 80));
    put(&s3, &bucket, "in/bad/a.json", body).await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "bad",
            &bucket,
            "json_lines",
            30,
            &format!("url = \"{}\"\nack_timeout_s = 5", hec.url)
        )
    );
    let _daemon = Daemon::start(&config);
    wait_batches(&db, "loaded", 1, 30).await;

    let events = hec.events().await;
    assert_eq!(events.len(), 9, "all but the refused one");
    assert_eq!(hec.stats().await["duplicates"], 0);
    let rows = query_strings(
        &db,
        "SELECT concat_ws('|', filename, line_number, err_code, raw_line, err_reason) FROM load_errors",
    )
    .await;
    assert_eq!(
        rows,
        [format!(
            "s3://{bucket}/in/bad/a.json|5|6|null|Invalid data format"
        )]
    );
    let failed = failed_events(&s3, &bucket, "bad").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["errorCode"], "Splunk.InvalidDataFormat");
    assert_eq!(failed[0]["rawData"], "bnVsbA==");
}

#[tokio::test]
async fn a_receiver_busy_for_less_than_the_budget_gets_everything() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecbusy").await;
    let bucket = stack.bucket("hecbusy").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    hec.faults(json!({"busy_for_s": 4})).await;
    put(&s3, &bucket, "in/busy/a.json", json_lines("busy", 40, 100)).await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "busy",
            &bucket,
            "json_lines",
            30,
            &format!("url = \"{}\"", hec.url)
        ),
    );
    let _daemon = Daemon::start(&config);
    wait_batches(&db, "loaded", 1, 30).await;
    let stats = hec.stats().await;
    assert_eq!(stats["events"], 40, "{stats}");
    assert!(
        stats["codes"]["9"].as_u64() >= Some(1),
        "it was busy: {stats}"
    );
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
}

#[tokio::test]
async fn a_receiver_busy_past_the_budget_leaves_every_record_in_load_errors() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecdown").await;
    let bucket = stack.bucket("hecdown").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack"]);
    hec.faults(json!({"busy_for_s": 120})).await;
    put(
        &s3,
        &bucket,
        "in/down/a.json",
        json_lines("down-a", 30, 100),
    )
    .await;
    put(
        &s3,
        &bucket,
        "in/down/b.json",
        json_lines("down-b", 20, 100),
    )
    .await;
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "down",
            &bucket,
            "json_lines",
            4,
            &format!("url = \"{}\"\nmax_request_bytes = 2048", hec.url)
        ),
    );
    let _daemon = Daemon::start(&config);
    let lost = "SELECT count(*) FROM load_errors WHERE err_code = 9100 AND line_number > 0";
    wait_for(
        "50 budget-exhausted rows",
        Duration::from_secs(30),
        || async { (query_i64(&db, lost).await >= 50).then_some(()) },
    )
    .await;
    wait_batches(&db, "skipped", 1, 10).await;

    assert_eq!(hec.stats().await["events"], 0);
    let by_object = query_strings(
        &db,
        "SELECT filename || ':' || count(*) FROM load_errors \
         WHERE err_code = 9100 AND line_number > 0 GROUP BY filename ORDER BY filename",
    )
    .await;
    assert_eq!(
        by_object,
        [
            format!("s3://{bucket}/in/down/a.json:30"),
            format!("s3://{bucket}/in/down/b.json:20")
        ],
        "one row per record, none silently lost"
    );
    let failed = failed_events(&s3, &bucket, "down").await;
    assert_eq!(failed.len(), 50);
    assert!(failed
        .iter()
        .all(|f| f["errorCode"] == "Splunk.ServerError"));
}

#[tokio::test]
async fn startup_check_names_the_pipeline_and_a_refused_token_without_showing_it() {
    let stack = Stack::get();
    let db = stack.fresh_database("heccheck").await;
    let bucket = stack.bucket("heccheck").await;
    let hec = Receiver::start(&["--ack"]);
    let secret = "11111111-2222-3333-4444-555555555555";
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "chk",
            &bucket,
            "json_lines",
            30,
            &format!("url = \"{}\"", hec.url)
        )
        .replace(TOKEN, secret),
    );
    let daemon = Daemon::start(&config);
    let log = wait_for("the check's verdict", Duration::from_secs(20), || async {
        let log = daemon.log_text();
        log.contains("destination check failed").then_some(log)
    })
    .await;
    assert!(
        log.contains("pipeline chk: splunk: HEC at") && log.contains("refused the token"),
        "{log}"
    );
    assert!(!log.contains(secret), "the token is never logged");
}

/// Throughput against the blackhole receiver (`cargo test --release ... -- --ignored --nocapture`
/// for meaningful numbers): 4 gzip objects of 50,000 records of ~200 bytes each, or
/// `STAGELOAD_BENCH_RECORDS_PER_OBJECT`.
#[tokio::test]
#[ignore]
async fn blackhole_throughput() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecbench").await;
    let bucket = stack.bucket("hecbench").await;
    let s3 = stack.s3().await;
    let hec = Receiver::start(&["--ack", "--blackhole"]);
    let per_object: usize = std::env::var("STAGELOAD_BENCH_RECORDS_PER_OBJECT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let objects = 4;
    for i in 0..objects {
        let body = gzip(&json_lines(&format!("b{i}"), per_object, 200));
        put(&s3, &bucket, &format!("in/bench/{i}.json.gz"), body).await;
    }
    let config = format!(
        "{}{}",
        stack.base_config(&db),
        pipeline(
            "bench",
            &bucket,
            "json_lines",
            300,
            &format!(
                "url = \"{}\"\ntime_field = \"/ts\"\nconcurrency = 4",
                hec.url
            )
        ),
    );
    let start = std::time::Instant::now();
    let _daemon = Daemon::start(&config);
    let total = (objects * per_object) as u64;
    hec.wait_events(1, 60).await;
    let first = start.elapsed();
    hec.wait_events(total, 600).await;
    let all = start.elapsed();
    let secs = (all - first).as_secs_f64();
    let stats = hec.stats().await;
    println!(
        "{total} events in {secs:.2}s after the first arrived ({:.0} events/s, {:.1} MB/s of body), {} requests",
        total as f64 / secs,
        stats["decoded_bytes"].as_f64().unwrap_or(0.0) / secs / 1e6,
        stats["requests"]
    );
}

/// Two indexers behind a load balancer that keeps a client on one indexer with a cookie: each
/// channel sends the balancer's cookie back, so its ack polls reach the indexer that took its
/// events. Without it, polls land on the other indexer, which does not know the ids, and
/// requests are sent again (and indexed twice).
#[tokio::test]
async fn acks_behind_a_sticky_load_balancer_reach_the_indexer_that_took_the_events() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecsticky").await;
    let bucket = stack.bucket("hecsticky").await;
    let s3 = stack.s3().await;
    let (one, two) = (Receiver::start(&["--ack"]), Receiver::start(&["--ack"]));
    let lb = sticky::Sticky::start(&[one.url.clone(), two.url.clone()]).await;
    for part in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("in/sticky/{part}.json"),
            json_lines(&format!("s{part}"), 500, 200),
        )
        .await;
    }
    let config = stack.base_config(&db)
        + &pipeline(
            "sticky",
            &bucket,
            "json_lines",
            60,
            &format!(
                "url = \"{}\"\nmax_request_bytes = 16384\nack_timeout_s = 5",
                lb.url()
            ),
        );
    let daemon = Daemon::start(&config);
    wait_batches(&db, "loaded", 1, 60).await;
    wait_for("every batch settled", Duration::from_secs(60), || async {
        (batches(&db, "sealed").await + batches(&db, "delivering").await == 0).then_some(())
    })
    .await;
    let (ids_one, n_one) = one.record_ids().await;
    let (ids_two, n_two) = two.record_ids().await;
    assert_eq!(
        n_one + n_two,
        2000,
        "each record once: {n_one} + {n_two} events"
    );
    assert_eq!(ids_one.union(&ids_two).count(), 2000);
    assert_eq!(lb.unsticky_acks(), 0, "every ack poll carried the cookie");
    assert!(
        !daemon.log_text().contains("sending again"),
        "no request was sent again"
    );
}

/// Issue 22: several HEC URLs without a balancer. Channels are bound to one URL each and spread
/// over the healthy ones; a URL refusing connections is left out from the startup check, and
/// one failing its health check takes no new requests until it passes again.
#[tokio::test]
async fn several_urls_spread_channels_and_leave_out_one_failing_its_health_check() {
    let stack = Stack::get();
    let db = stack.fresh_database("hecurls").await;
    let bucket = stack.bucket("hecurls").await;
    let s3 = stack.s3().await;
    // Acks a second late: a batch holds its channel that long, so the two workers' batches are
    // in flight together on two channels (one channel, reused, would stay bound to one URL).
    let start = || Receiver::start(&["--ack", "--ack-delay-s", "1"]);
    let (one, two) = (start(), start());
    let closed = closed_port().await;
    let stage = |round: usize| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move {
            for part in 0..4 {
                put(
                    &s3,
                    &bucket,
                    &format!("in/urls/{round}-{part}.json"),
                    json_lines(&format!("r{round}p{part}"), 250, 200),
                )
                .await;
            }
        }
    };
    stage(0).await;
    let config = stack.base_config(&db)
        + &pipeline(
            "urls",
            &bucket,
            "json_lines",
            60,
            &format!(
                "urls = [\"{}\", \"{}\", \"http://{closed}\"]\nhealth_check_interval_s = 1\n\
                 max_request_bytes = 16384\nack_timeout_s = 5",
                one.url, two.url
            ),
        )
        .replace(
            "retry_duration_s = 60\n",
            "retry_duration_s = 60\nworkers = 2\n",
        )
        .replace("max_objects = 1000", "max_objects = 1");
    let daemon = Daemon::start(&config);
    let settled = |n: i64| {
        let db = db.clone();
        async move {
            wait_for("every batch settled", Duration::from_secs(60), || async {
                (batches(&db, "loaded").await == n
                    && batches(&db, "sealed").await + batches(&db, "delivering").await == 0)
                    .then_some(())
            })
            .await;
        }
    };
    settled(4).await;
    let (ids_one, n_one) = one.record_ids().await;
    let (ids_two, n_two) = two.record_ids().await;
    assert!(
        n_one > 0 && n_two > 0,
        "both URLs took channels: {n_one} + {n_two}"
    );
    assert_eq!(n_one + n_two, 1000, "each record once");
    assert_eq!(ids_one.union(&ids_two).count(), 1000);

    two.faults(json!({"unhealthy": true})).await;
    wait_log(
        || daemon.log_text(),
        &["HEC url failed its health check, left out"],
    )
    .await;
    let before = two.stats().await["events"].as_u64().unwrap();
    stage(1).await;
    settled(8).await;
    assert_eq!(
        two.stats().await["events"].as_u64().unwrap(),
        before,
        "nothing new went to the URL left out"
    );
    let (ids_one, _) = one.record_ids().await;
    for part in 0..4 {
        assert!(
            ids(&format!("r1p{part}"), 250).is_subset(&ids_one),
            "round 1 part {part} on the healthy URL"
        );
    }
    two.faults(json!({"unhealthy": false})).await;
    wait_log(|| daemon.log_text(), &["HEC url healthy again, back in"]).await;
}
