//! The Elasticsearch / OpenSearch destination against the local stack's osmem server: rotated
//! indexes, no duplicates across kill -9, per-record rejections, injected faults, and an outage
//! longer than the retry budget.

mod common;
#[path = "proxy/mod.rs"]
mod proxy;

use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One pipeline's config section.
fn pipeline(
    name: &str,
    bucket: &str,
    format: &str,
    endpoint: &str,
    retry_s: u64,
    dest_extra: &str,
) -> String {
    pipeline_block(
        name,
        bucket,
        format,
        retry_s,
        &format!(
            "type = \"elasticsearch\"\nendpoints = [\"{endpoint}\"]\nindex = \"{name}\"\nrequest_timeout_s = 5\n{dest_extra}"
        ),
    )
}

/// A plain HTTP call to the search server: (status, JSON body).
async fn http(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut conn = TcpStream::connect(host)
        .await
        .expect("connect to search server");
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let (head, rest) = split_head(&out).expect("http response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_slice(rest).unwrap_or(Value::Null))
}

fn split_head(buf: &[u8]) -> Option<(String, &[u8])> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((
        String::from_utf8_lossy(&buf[..end]).into_owned(),
        &buf[end + 4..],
    ))
}

/// Documents in indexes matching `pattern` (0 while none exists).
async fn count(es: &str, pattern: &str) -> i64 {
    http("POST", &format!("{es}/{pattern}/_refresh"), None).await;
    let (_, v) = http("GET", &format!("{es}/{pattern}/_count"), None).await;
    v["count"].as_i64().unwrap_or(0)
}

async fn failed_documents(s3: &aws_sdk_s3::Client, bucket: &str, name: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for key in keys(s3, bucket, &format!("errors/{name}/elasticsearch-failed/")).await {
        let body = get(s3, bucket, &key).await.unwrap_or_default();
        for line in String::from_utf8_lossy(&body).lines() {
            docs.push(serde_json::from_str(line).expect("failed-document record is JSON"));
        }
    }
    docs
}

async fn wait_count(es: &str, pattern: &str, want: i64, timeout_s: u64) {
    wait_for(
        &format!("{want} documents in {pattern}"),
        Duration::from_secs(timeout_s),
        || async { (count(es, pattern).await == want).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn gzip_lines_and_concatenated_json_land_once_in_rotated_indexes() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("esrot").await;
    let bucket = stack.bucket("esrot").await;
    let s3 = stack.s3().await;
    let lines = Stack::unique("esrot-lines");
    let concat = Stack::unique("esrot-concat");
    // Arrival time from the Firehose key partition: 2016-02-25T13 → day index 2016-02-25.
    put(
        &s3,
        &bucket,
        &format!("in/{lines}/2016/02/25/13/a.gz"),
        gzip(&json_lines("a", 40, 80)),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/{lines}/2016/02/25/13/b.gz"),
        gzip(&json_lines("b", 25, 80)),
    )
    .await;
    // Concatenated JSON with the record's own time (2016-02-25 and 2016-01-01) → ISO weeks.
    let mut body = String::new();
    for i in 0..30 {
        let ts = if i % 3 == 0 {
            1_451_606_400
        } else {
            1_456_405_200_000i64
        };
        body.push_str(&format!("{{\"id\":\"c-{i}\",\n  \"ts\":{ts}}}{{\"id\":\"d-{i}\",\"ts\":\"2016-02-25T13:00:00Z\"}}"));
    }
    put(
        &s3,
        &bucket,
        &format!("in/{concat}/c.json"),
        body.into_bytes(),
    )
    .await;

    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(
        &lines,
        &bucket,
        "json_lines",
        &es,
        30,
        "index_rotation = \"day\"\nbulk_max_docs = 16\ncompression = \"gzip\"",
    ));
    cfg.push_str(&pipeline(
        &concat,
        &bucket,
        "json_concat",
        &es,
        30,
        "index_rotation = \"week\"\ntimestamp_field = \"/ts\"",
    ));
    let _d = Daemon::start(&cfg);

    wait_count(&es, &format!("{lines}-2016-02-25"), 65, 40).await;
    wait_count(&es, &format!("{concat}-2016-w08"), 50, 40).await;
    wait_count(&es, &format!("{concat}-2015-w53"), 10, 20).await;
    // Settled, and still exactly once.
    wait_all_settled(&db).await;
    assert_eq!(count(&es, &format!("{lines}*")).await, 65);
    assert_eq!(count(&es, &format!("{concat}*")).await, 60);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
    let (_, doc) = http(
        "GET",
        &format!("{es}/{concat}-2016-w08/_search?q=id:d-0"),
        None,
    )
    .await;
    assert_eq!(
        doc["hits"]["hits"][0]["_source"]["ts"], "2016-02-25T13:00:00Z",
        "{doc}"
    );
}

#[tokio::test]
async fn kill_9_mid_batch_and_restart_leave_no_duplicates() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("eskill").await;
    let bucket = stack.bucket("eskill").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("eskill");
    for i in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("in/{name}/{i}.json"),
            json_lines(&format!("o{i}"), 150, 60),
        )
        .await;
    }
    // A proxy that delays every bulk request keeps the batch in the middle long enough to kill.
    let proxy = Proxy::start(
        &es,
        Faults {
            delay_ms: 300,
            ..Faults::default()
        },
    )
    .await;
    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(
        &name,
        &bucket,
        "json_lines",
        &proxy.url,
        60,
        "bulk_max_docs = 40\nconcurrency = 1",
    ));
    let mut d = Daemon::start(&cfg);
    wait_for(
        "some documents indexed",
        Duration::from_secs(30),
        || async {
            let n = count(&es, &name).await;
            (n > 0).then_some(n)
        },
    )
    .await;
    d.kill9();
    let partial = count(&es, &name).await;
    assert!(partial < 600, "killed in the middle: {partial} of 600");
    d.spawn();
    wait_count(&es, &name, 600, 60).await;
    wait_all_settled(&db).await;
    assert_eq!(
        count(&es, &name).await,
        600,
        "no duplicates after the restart"
    );
}

#[tokio::test]
async fn a_mapping_violation_and_a_non_json_record_are_rejected_alone() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("esbad").await;
    let bucket = stack.bucket("esbad").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("esbad");
    let (status, _) = http(
        "PUT",
        &format!("{es}/{name}"),
        Some(r#"{"mappings":{"properties":{"user_id":{"type":"integer"}}}}"#),
    )
    .await;
    assert_eq!(status, 200);
    let mut body = json_lines("ok", 8, 60);
    body.extend_from_slice(b"{\"id\":\"bad-map\",\"user_id\":\"abc\"}\nthis is not json\n");
    body.extend_from_slice(&json_lines("tail", 3, 60));
    put(&s3, &bucket, &format!("in/{name}/mixed.json"), body).await;

    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(&name, &bucket, "json_lines", &es, 30, ""));
    let _d = Daemon::start(&cfg);
    wait_count(&es, &name, 11, 40).await;
    let rows = wait_for("two load_errors rows", Duration::from_secs(20), || async {
        let rows = query_strings(&db, "SELECT err_code || '|' || line_number || '|' || target || '|' || filename || '|' || err_reason FROM load_errors ORDER BY line_number").await;
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert!(
        rows[0].starts_with(&format!(
            "400|9|{name}|s3://{bucket}/in/{name}/mixed.json|mapper_parsing_exception"
        )),
        "{rows:?}"
    );
    assert!(rows[1].starts_with("9103|10|"), "{rows:?}");
    let docs = wait_for(
        "two failed-document records",
        Duration::from_secs(20),
        || async {
            let docs = failed_documents(&s3, &bucket, &name).await;
            (docs.len() == 2).then_some(docs)
        },
    )
    .await;
    let mapping = docs
        .iter()
        .find(|d| d["errorCode"] == "400")
        .expect("mapping failure recorded");
    assert_eq!(mapping["esIndexName"], name.as_str());
    assert_eq!(mapping["esDocumentId"].as_str().map(str::len), Some(22));
    assert_eq!(
        mapping["rawData"],
        "eyJpZCI6ImJhZC1tYXAiLCJ1c2VyX2lkIjoiYWJjIn0="
    );
    for key in [
        "attemptsMade",
        "arrivalTimestamp",
        "errorMessage",
        "attemptEndingTimestamp",
    ] {
        assert!(!mapping[key].is_null(), "{key} in {mapping}");
    }
    let not_json = docs
        .iter()
        .find(|d| d["errorCode"] == "9103")
        .expect("non-JSON record recorded");
    assert_eq!(not_json["rawData"], "dGhpcyBpcyBub3QganNvbg==");
    assert_eq!(count(&es, &name).await, 11);
}

#[tokio::test]
async fn injected_429_503_and_resets_still_index_every_record_once() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("esfault").await;
    let bucket = stack.bucket("esfault").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("esfault");
    for i in 0..3 {
        put(
            &s3,
            &bucket,
            &format!("in/{name}/{i}.json.gz"),
            gzip(&json_lines(&format!("f{i}"), 60, 60)),
        )
        .await;
    }
    let proxy = Proxy::start(
        &es,
        Faults {
            cycle: true,
            ..Faults::default()
        },
    )
    .await;
    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(
        &name,
        &bucket,
        "json_lines",
        &proxy.url,
        60,
        "bulk_max_docs = 25\nconcurrency = 2",
    ));
    let _d = Daemon::start(&cfg);
    wait_count(&es, &name, 180, 60).await;
    let seen = proxy.bulk_requests.load(Ordering::SeqCst);
    assert!(seen >= 8, "faults were injected across {seen} requests");
    wait_all_settled(&db).await;
    assert_eq!(count(&es, &name).await, 180);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM load_errors").await, 0);
    wait_for("every batch loaded", Duration::from_secs(20), || async {
        (query_i64(&db, "SELECT count(*) FROM batches WHERE state <> 'loaded'").await == 0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_outage_longer_than_the_budget_leaves_every_record_accounted_for() {
    let stack = Stack::get();
    let db = stack.fresh_database("esdown").await;
    let bucket = stack.bucket("esdown").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("esdown");
    put(
        &s3,
        &bucket,
        &format!("in/{name}/a.json"),
        json_lines("a", 12, 60),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/{name}/b.json.gz"),
        gzip(&json_lines("b", 9, 60)),
    )
    .await;
    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(
        &name,
        &bucket,
        "json_lines",
        &format!("http://{closed}"),
        3,
        "",
    ));
    let _d = Daemon::start(&cfg);
    wait_for(
        "21 budget-exhausted rows",
        Duration::from_secs(40),
        || async {
            (query_i64(
                &db,
                "SELECT count(*) FROM load_errors WHERE err_code = 9100 AND line_number > 0",
            )
            .await
                == 21)
                .then_some(())
        },
    )
    .await;
    let docs = wait_for(
        "21 failed-document records",
        Duration::from_secs(20),
        || async {
            let docs = failed_documents(&s3, &bucket, &name).await;
            (docs.len() >= 21).then_some(docs)
        },
    )
    .await;
    assert_eq!(docs.len(), 21);
    assert!(docs
        .iter()
        .all(|d| d["errorCode"] == "9100" && d["esIndexName"] == name.as_str()));
    let raw: std::collections::HashSet<String> = docs
        .iter()
        .map(|d| d["rawData"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(raw.len(), 21, "every record once");
    assert_eq!(
        query_i64(
            &db,
            "SELECT count(*) FROM load_errors WHERE err_code <> 9100"
        )
        .await,
        0
    );
}

/// Faults a [`Proxy`] injects into `_bulk` requests.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Delay before forwarding each bulk request.
    delay_ms: u64,
    /// Cycle through: forward, 503, connection reset, forward with every other item turned
    /// into 429, 429.
    cycle: bool,
}

/// A small HTTP/1.1 proxy in front of the search server that injects faults.
struct Proxy {
    url: String,
    bulk_requests: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: &str, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .strip_prefix("http://")
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let bulk_requests = Arc::new(AtomicUsize::new(0));
        let counter = bulk_requests.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = serve(conn, &upstream, faults, &counter).await;
                });
            }
        });
        Proxy { url, bulk_requests }
    }
}

async fn read_message(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = buf[end + 4..].to_vec();
            while body.len() < len {
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Ok(Some((head, body)));
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(conn: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.shutdown().await
}

async fn forward(upstream: &str, head: &str, body: &[u8]) -> std::io::Result<(String, Vec<u8>)> {
    let mut up = TcpStream::connect(upstream).await?;
    let mut lines = head.lines();
    let mut req = format!("{}\r\n", lines.next().unwrap_or_default());
    for l in lines {
        let lower = l.to_ascii_lowercase();
        if !lower.starts_with("connection:") && !lower.starts_with("host:") {
            req.push_str(l);
            req.push_str("\r\n");
        }
    }
    req.push_str(&format!("Host: {upstream}\r\nConnection: close\r\n\r\n"));
    up.write_all(req.as_bytes()).await?;
    up.write_all(body).await?;
    let (head, body) = read_message(&mut up).await?.unwrap_or_default();
    let status = head
        .lines()
        .next()
        .unwrap_or_default()
        .split_once(' ')
        .map_or("502 Bad Gateway", |(_, status)| status)
        .to_string();
    Ok((status, body))
}

async fn serve(
    mut conn: TcpStream,
    upstream: &str,
    faults: Faults,
    counter: &AtomicUsize,
) -> std::io::Result<()> {
    let Some((head, body)) = read_message(&mut conn).await? else {
        return Ok(());
    };
    if !head.contains("_bulk") {
        let (status, answer) = forward(upstream, &head, &body).await?;
        return respond(&mut conn, &status, &answer).await;
    }
    let n = counter.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
    if faults.cycle {
        match n % 5 {
            1 => {
                let b = br#"{"error":{"type":"unavailable","reason":"injected"},"status":503}"#;
                return respond(&mut conn, "503 Service Unavailable", b).await;
            }
            2 => {
                // Reset: close without answering, after reading the request.
                let _ = conn.set_zero_linger();
                return Ok(());
            }
            3 => {
                let (status, answer) = forward(upstream, &head, &body).await?;
                let mut v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                if let Some(items) = v["items"].as_array_mut() {
                    for item in items.iter_mut().step_by(2) {
                        if let Some(inner) =
                            item.as_object_mut().and_then(|o| o.values_mut().next())
                        {
                            inner["status"] = 429.into();
                            inner["error"] = serde_json::json!({"type": "es_rejected_execution_exception", "reason": "injected"});
                        }
                    }
                    v["errors"] = true.into();
                }
                return respond(&mut conn, &status, &serde_json::to_vec(&v).unwrap()).await;
            }
            4 => {
                let b = br#"{"error":{"type":"es_rejected_execution_exception","reason":"injected"},"status":429}"#;
                return respond(&mut conn, "429 Too Many Requests", b).await;
            }
            _ => {}
        }
    }
    let (status, answer) = forward(upstream, &head, &body).await?;
    respond(&mut conn, &status, &answer).await
}

#[tokio::test]
async fn a_worker_paused_past_its_lease_cannot_settle_or_duplicate_documents() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("esfence").await;
    let bucket = stack.bucket("esfence").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("esfence");
    let config = stack.base_config(&db) + &pipeline(&name, &bucket, "json_lines", &es, 120, "");
    paused_owner_is_fenced(&config, &db, &s3, &bucket, &name).await;
    assert_eq!(count(&es, &name).await, 60, "every record indexed once");
}

/// `op_type = "create"`, as data streams take: documents gain `@timestamp` from
/// `timestamp_field` (a record that has its own keeps it), and a reload of the same objects
/// (`backfill --reload`, the same deterministic ids) answers 409 for every document, which counts
/// as delivered: the index keeps one copy, the batch settles loaded and no row is written.
/// osmem has no data streams, so a plain index stands in: a create answers the same there.
#[tokio::test]
async fn creates_stamp_a_timestamp_and_a_retried_create_counts_as_delivered() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("escre").await;
    let bucket = stack.bucket("escre").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("escre");
    let mut body = json_lines("c", 30, 80);
    body.extend_from_slice(br#"{"id":"own","ts":1764300000,"@timestamp":"2020-01-01T00:00:00Z"}"#);
    body.push(b'\n');
    put(&s3, &bucket, &format!("in/{name}/a.json"), body).await;
    let mut cfg = stack.base_config(&db);
    cfg.push_str(&pipeline(
        &name,
        &bucket,
        "json_lines",
        &es,
        30,
        "op_type = \"create\"\ntimestamp_field = \"/ts\"",
    ));
    let daemon = Daemon::start(&cfg);
    wait_count(&es, &name, 31, 60).await;
    let (_, hits) = http(
        "POST",
        &format!("{es}/{name}/_search"),
        Some(r#"{"size":100,"query":{"match_all":{}}}"#),
    )
    .await;
    let docs: Vec<&Value> = hits["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| &h["_source"])
        .collect();
    let c5 = docs.iter().find(|d| d["id"] == "c-5").expect("c-5 indexed");
    // ts 1764300005 is 2025-11-28T03:20:05Z.
    assert_eq!(c5["@timestamp"], "2025-11-28T03:20:05Z", "{c5}");
    let own = docs.iter().find(|d| d["id"] == "own").expect("own indexed");
    assert_eq!(
        own["@timestamp"], "2020-01-01T00:00:00Z",
        "its own kept: {own}"
    );

    let (code, _, err) = daemon.cli(&["backfill", "--pipeline", &name, "--reload"]);
    assert_eq!(code, 0, "{err}");
    wait_for("the reloaded batch settled", Duration::from_secs(60), || async {
        let states: Vec<String> = query_strings(
            &db,
            "SELECT state || ':' || records_delivered || ':' || records_rejected FROM batches ORDER BY id",
        )
        .await;
        (states.len() == 2 && !states[1].starts_with("sealed") && !states[1].starts_with("delivering"))
            .then_some(states)
    })
    .await
    .iter()
    .for_each(|s| assert_eq!(s, "loaded:31:0", "every create delivered, none rejected"));
    assert_eq!(count(&es, &name).await, 31, "one copy of each");
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM load_errors").await,
        0,
        "a 409 on a create is no error"
    );
}

/// Two nodes (proxies in front of one server), one stopped mid-batch: its connections are
/// refused, it is taken out, and the other node takes its requests within the same attempt;
/// every record is indexed once. Round robin alone sent every other request to the stopped
/// node, and each attempt got only half of what was left through.
#[tokio::test]
async fn a_node_stopped_mid_batch_is_taken_out_and_the_other_takes_its_requests() {
    let stack = Stack::get();
    let es = stack.opensearch_url.clone();
    let db = stack.fresh_database("esnode").await;
    let bucket = stack.bucket("esnode").await;
    let s3 = stack.s3().await;
    let name = Stack::unique("esnode");
    let (a, b) = (
        proxy::Proxy::start(&es).await,
        proxy::Proxy::start(&es).await,
    );
    for part in 0..4 {
        put(
            &s3,
            &bucket,
            &format!("in/{name}/{part}.json"),
            json_lines(&format!("n{part}"), 5_000, 120),
        )
        .await;
    }
    let mut cfg = stack.base_config(&db);
    cfg.push_str(
        &pipeline(
            &name,
            &bucket,
            "json_lines",
            &a.endpoint(),
            120,
            "bulk_max_docs = 100\nconcurrency = 1",
        )
        .replace(
            &format!("endpoints = [\"{}\"]", a.endpoint()),
            &format!("endpoints = [\"{}\", \"{}\"]", a.endpoint(), b.endpoint()),
        ),
    );
    let daemon = Daemon::start(&cfg);
    wait_for("the first documents", Duration::from_secs(60), || async {
        (count(&es, &name).await > 0).then_some(())
    })
    .await;
    a.stop();
    wait_count(&es, &name, 20_000, 120).await;
    wait_all_settled(&db).await;
    assert_eq!(
        query_strings(
            &db,
            "SELECT state || ':' || records_delivered || ':' || (attempts <= 2)::text FROM batches"
        )
        .await,
        vec!["loaded:20000:true"],
        "one batch, every record, the stopped node's requests moved within the attempt"
    );
    wait_log(
        || daemon.log_text(),
        &["node refused the connection, taken out"],
    )
    .await;
    assert_eq!(count(&es, &name).await, 20_000, "each record once");
}
