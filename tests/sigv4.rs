//! `auth = "aws_sigv4"` through the daemon, against a verifier that recomputes every
//! signature with botocore's signer (`tests/proxy/sigv4_verifier.py`), refuses what Amazon
//! OpenSearch Service and OpenSearch Serverless refuse, and forwards the rest to osmem:
//! the startup check and `_bulk` (gzip bodies included) are signed for `es`, a wrong secret
//! is refused with AWS's message and loads nothing, and for `aoss` the check is `HEAD <index>`
//! and a time-series collection refusing document ids is named with what to change; a
//! destination role in another account (`aws_role_arn`) signs every request.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// The verifier for `service` in `region`, accepting `key`, forwarding to osmem.
fn verifier(service: &str, region: &str, key: &str, extra: &[&str]) -> PyServer {
    let upstream = Stack::get().opensearch_url;
    assert!(!upstream.is_empty(), "osmem is part of the local stack");
    let mut args: Vec<String> = [
        "--upstream",
        &upstream,
        "--service",
        service,
        "--region",
        region,
        "--key",
        key,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    PyServer::start("sigv4_verifier.py", &args)
}

/// A control database, a bucket and an index named after `tag`, with `n` records staged for
/// the pipeline of that index.
async fn staged(stack: &Stack, tag: &str, n: usize) -> (String, String, String) {
    let db = stack.fresh_database(tag).await;
    let bucket = stack.bucket(tag).await;
    let index = Stack::unique(tag);
    let s3 = stack.s3().await;
    put(
        &s3,
        &bucket,
        &format!("in/{index}/a.json"),
        json_lines("a", n, 80),
    )
    .await;
    (db, bucket, index)
}

/// `METHOD /path` of every request the verifier accepted.
fn requests(stats: &Value) -> Vec<String> {
    stats["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// The daemon's own key, as `[s3]` gives it (the signer uses the same AWS credentials).
fn daemon_key(secret: Option<&str>) -> String {
    match secret {
        None => stack_key(),
        Some(other) => format!("{}:{other}", std::env::var("AWS_ACCESS_KEY_ID").unwrap()),
    }
}

fn es_pipeline(name: &str, bucket: &str, endpoint: &str, retry_s: u64, extra: &str) -> String {
    pipeline_block(
        name,
        bucket,
        "json_lines",
        retry_s,
        &format!(
            "type = \"elasticsearch\"\nendpoints = [\"{endpoint}\"]\nindex = \"{name}\"\n\
             request_timeout_s = 5\nauth = \"aws_sigv4\"\n{extra}"
        ),
    )
}

async fn count(index: &str) -> i64 {
    let es = Stack::get().opensearch_url;
    let http = reqwest::Client::new();
    let _ = http.post(format!("{es}/{index}/_refresh")).send().await;
    let v: Value = match http.get(format!("{es}/{index}/_count")).send().await {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    v["count"].as_i64().unwrap_or(0)
}

async fn wait_count(index: &str, n: i64) {
    wait_for(
        &format!("{n} documents in {index}"),
        Duration::from_secs(40),
        || async { (count(index).await == n).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn signed_checks_and_gzip_bulks_reach_opensearch_service() {
    let stack = Stack::get();
    let verifier = verifier("es", "eu-west-1", &daemon_key(None), &[]);
    let (db, bucket, index) = staged(&stack, "sigv4", 25).await;
    put(
        &stack.s3().await,
        &bucket,
        &format!("in/{index}/b.json"),
        json_lines("b", 25, 80),
    )
    .await;
    let config = stack.base_config(&db)
        + &es_pipeline(
            &index,
            &bucket,
            &verifier.url,
            60,
            "aws_region = \"eu-west-1\"\ncompression = \"gzip\"",
        );
    let _daemon = Daemon::start(&config);
    wait_count(&index, 50).await;
    wait_all_settled(&db).await;
    let stats = verifier.stats().await;
    assert_eq!(stats["refused"], 0, "{stats}");
    let seen = requests(&stats);
    assert!(
        seen.iter().any(|r| r == "GET /"),
        "the startup check was signed: {seen:?}"
    );
    assert!(seen.iter().any(|r| r == "POST /_bulk"), "{seen:?}");
}

#[tokio::test]
async fn a_wrong_secret_is_refused_and_nothing_is_indexed() {
    let stack = Stack::get();
    let verifier = verifier("es", "eu-west-1", &daemon_key(Some("not-the-secret")), &[]);
    let (db, bucket, index) = staged(&stack, "sigv4bad", 5).await;
    let config = stack.base_config(&db)
        + &es_pipeline(
            &index,
            &bucket,
            &verifier.url,
            3,
            "aws_region = \"eu-west-1\"",
        );
    let daemon = Daemon::start(&config);
    wait_log(
        || daemon.log_text(),
        &["The request signature we calculated does not match"],
    )
    .await;
    wait_all_settled(&db).await;
    assert_eq!(
        query_strings(&db, "SELECT state FROM batches").await,
        vec!["skipped"],
        "written off when the budget ended, never loaded"
    );
    let reasons = query_strings(&db, "SELECT err_reason FROM load_errors LIMIT 1").await;
    assert!(
        reasons[0].contains("signature we calculated does not match"),
        "{reasons:?}"
    );
    assert_eq!(count(&index).await, 0);
    assert_eq!(verifier.stats().await["accepted"], 0);
}

#[tokio::test]
async fn serverless_is_signed_for_aoss_and_a_collection_refusing_ids_is_named() {
    let stack = Stack::get();
    let verifier = verifier("aoss", "us-east-1", &daemon_key(None), &["--no-ids"]);
    let db = stack.fresh_database("sigv4aoss").await;
    let s3 = stack.s3().await;
    let bucket = stack.bucket("sigv4aoss").await;
    let with_ids = Stack::unique("aossids");
    let auto = Stack::unique("aossauto");
    put(
        &s3,
        &bucket,
        &format!("in/{with_ids}/a.json"),
        json_lines("a", 10, 80),
    )
    .await;
    put(
        &s3,
        &bucket,
        &format!("in/{auto}/a.json"),
        json_lines("a", 20, 80),
    )
    .await;
    let scope = "aws_service = \"aoss\"\naws_region = \"us-east-1\"";
    let config = stack.base_config(&db)
        + &es_pipeline(&with_ids, &bucket, &verifier.url, 60, scope)
        + &es_pipeline(
            &auto,
            &bucket,
            &verifier.url,
            60,
            &format!("{scope}\ndocument_id = \"auto\""),
        );
    let daemon = Daemon::start(&config);
    wait_count(&auto, 20).await;
    wait_log(
        || daemon.log_text(),
        &["takes no document ids", "document_id = \"auto\""],
    )
    .await;
    assert_eq!(count(&with_ids).await, 0, "nothing half-loaded");
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM load_errors").await,
        0,
        "a configuration problem, retried within the budget, not 10 rejected records"
    );
    let stats = verifier.stats().await;
    assert_eq!(stats["refused"], 0, "{stats}");
    let seen = requests(&stats);
    assert!(seen.contains(&format!("HEAD /{auto}")), "{seen:?}");
    assert!(
        !seen.iter().any(|r| r == "GET /"),
        "Serverless has no GET /: {seen:?}"
    );
}

#[tokio::test]
async fn a_destination_role_in_another_account_signs_every_request() {
    let stack = Stack::get();
    let role = "arn:aws:iam::444455556666:role/os-writer";
    let verifier = verifier(
        "es",
        "eu-west-1",
        &daemon_key(None),
        &["--role", &format!("{role}=os-ext-1"), "--role-only"],
    );
    let (db, bucket, index) = staged(&stack, "sigv4role", 20).await;
    let config = stack.base_config(&db)
        + &es_pipeline(
            &index,
            &bucket,
            &verifier.url,
            60,
            &format!(
                "aws_region = \"eu-west-1\"\naws_role_arn = \"{role}\"\naws_external_id = \"os-ext-1\""
            ),
        );
    let _daemon = Daemon::start_with_env(&config, &[("AWS_ENDPOINT_URL_STS", &verifier.url)]);
    wait_count(&index, 20).await;
    let stats = verifier.stats().await;
    assert_eq!(
        stats["refused"], 0,
        "only the role's credentials signed: {stats}"
    );
    let assumed = stats["assumed"].as_array().unwrap();
    assert!(
        assumed.iter().any(|a| a["role"] == role
            && a["external_id"] == "os-ext-1"
            && a["session"] == "stageload-opensearch"),
        "{stats}"
    );
    assert!(requests(&stats).iter().any(|r| r == "POST /_bulk"));
}
