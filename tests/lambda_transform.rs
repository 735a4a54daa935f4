//! `[[pipeline.transform]] type = "lambda"` through the daemon, against
//! `tests/proxy/lambda_standin.py` (Lambda's Invoke API with SigV4 checked by botocore, and
//! scripted Firehose transformation functions): Ok, Dropped and ProcessingFailed answers, a
//! wrong or missing `recordId`, a function error retried and one that never recovers, a
//! timeout, many records from one, invocations kept within the buffer and payload limits, and a
//! wrong key refused.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

/// Records 0..n: every third at level debug, every fourth `bad`, some with `items`.
fn staged(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            let mut r = json!({"id": i, "level": if i % 3 == 1 { "debug" } else { "info" }});
            if i % 4 == 2 {
                r["bad"] = json!(true);
            }
            if i % 5 == 0 {
                r["items"] = json!(["a", "b"]);
            }
            r.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

/// A file pipeline `name` whose one step calls `function` on the stand-in at `url`.
fn pipeline(
    name: &str,
    bucket: &str,
    dir: &Path,
    url: &str,
    function: &str,
    extra: &str,
) -> String {
    pipeline_block(
        name,
        bucket,
        "json_lines",
        60,
        &format!(
            "type = \"file\"\ndirectory = \"{}\"",
            dir.join(name).display()
        ),
    ) + &format!(
        "[[pipeline.transform]]\ntype = \"lambda\"\nfunction_name = \"{function}\"\n\
         endpoint_url = \"{url}\"\nregion = \"us-east-1\"\n{extra}\n"
    )
}

fn delivered(dir: &Path, name: &str) -> Vec<Value> {
    let mut v: Vec<Value> = delivered_lines(&dir.join(name))
        .iter()
        .map(|l| serde_json::from_str(l).expect("a delivered line is JSON"))
        .collect();
    v.sort_by_key(|r| (r["id"].as_i64(), r["item"].as_str().map(str::to_string)));
    v
}

/// The Lambda stand-in for us-east-1, taking `key`; `slow` sleeps 3 s.
fn standin(key: String) -> PyServer {
    PyServer::start(
        "lambda_standin.py",
        &[
            "--region".into(),
            "us-east-1".into(),
            "--key".into(),
            key,
            "--slow-s".into(),
            "3".into(),
        ],
    )
}

fn ids(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// `line reason` of each `load_errors` row of a pipeline, by line.
async fn rows(db: &str, pipeline: &str) -> Vec<(i64, String)> {
    query_strings(
        db,
        &format!(
            "SELECT line_number || ' ' || err_code || ' ' || err_reason FROM load_errors \
             WHERE pipeline = '{pipeline}' ORDER BY line_number"
        ),
    )
    .await
    .iter()
    .map(|r| {
        let (line, rest) = r.split_once(' ').unwrap();
        (line.parse().unwrap(), rest.to_string())
    })
    .collect()
}

#[tokio::test]
async fn firehose_transform_functions_work_unchanged() {
    let stack = Stack::get();
    let db = stack.fresh_database("lambda").await;
    let bucket = stack.bucket("lambda").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let standin = standin(stack_key());
    let url = standin.url.clone();
    let names = [
        ("enrich", "enrich", ""),
        ("drop", "drop-debug", ""),
        ("fail", "fail-bad", ""),
        ("wrongid", "wrong-id", ""),
        ("omit", "omit-last", ""),
        ("split", "split", ""),
        ("flaky", "flaky", ""),
        ("broken", "unhandled", "retries = 1"),
        ("slow", "slow", "retries = 0\ntimeout_s = 1"),
        (
            "arn",
            "arn:aws:lambda:us-east-1:123456789012:function:enrich",
            "delivery_stream_arn = \"arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks\"",
        ),
    ];
    let mut config = stack
        .base_config(&db)
        .replace("listen = \"\"", "listen = \"127.0.0.1:0\"");
    for (name, function, extra) in names {
        put(&s3, &bucket, &format!("in/{name}/a.json"), staged(12)).await;
        config += &pipeline(name, &bucket, dir.path(), &url, function, extra);
    }
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    let log = daemon.log_text();
    assert_eq!(
        query_strings(&db, "SELECT DISTINCT state FROM batches").await,
        vec!["loaded"],
        "{log}"
    );
    let all: Vec<i64> = (0..12).collect();

    // Ok: every record, as the function made it.
    let enriched = delivered(dir.path(), "enrich");
    assert_eq!(ids(&enriched), all);
    assert!(
        enriched.iter().all(|r| r["enriched"] == true),
        "{enriched:?}"
    );
    assert_eq!(ids(&delivered(dir.path(), "arn")), all);

    // Dropped: gone without a row.
    let kept: Vec<i64> = all.iter().copied().filter(|i| i % 3 != 1).collect();
    assert_eq!(ids(&delivered(dir.path(), "drop")), kept);
    assert!(rows(&db, "drop").await.is_empty());

    // ProcessingFailed: a row per record, naming the step and the line.
    let bad: Vec<i64> = all.iter().copied().filter(|i| i % 4 == 2).collect();
    let good: Vec<i64> = all.iter().copied().filter(|i| i % 4 != 2).collect();
    assert_eq!(ids(&delivered(dir.path(), "fail")), good);
    let failed = rows(&db, "fail").await;
    assert_eq!(
        failed.iter().map(|(l, _)| l - 1).collect::<Vec<_>>(),
        bad,
        "{failed:?}"
    );
    assert!(failed.iter().all(|(_, r)| r
        .starts_with("9112 transform[0] (lambda): the function answered ProcessingFailed")));

    // A wrong recordId, a missing record: those records fail, the others arrive.
    let wrong = rows(&db, "wrongid").await;
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(
        wrong[0].0 == 1 && wrong[0].1.contains("no record with recordId \"0\""),
        "{wrong:?}"
    );
    assert_eq!(ids(&delivered(dir.path(), "wrongid")), all[1..].to_vec());
    let omitted = rows(&db, "omit").await;
    assert_eq!(omitted.len(), 1, "{omitted:?}");
    assert_eq!(omitted[0].0, 12);
    assert_eq!(ids(&delivered(dir.path(), "omit")), all[..11].to_vec());

    // Several lines in one answer record: several records.
    let split = delivered(dir.path(), "split");
    let with_items: Vec<i64> = all.iter().copied().filter(|i| i % 5 == 0).collect();
    assert_eq!(split.len(), 12 - with_items.len() + 2 * with_items.len());
    assert_eq!(
        split.iter().filter(|r| r["item"] == "b").count(),
        with_items.len()
    );

    // A function error once, then an answer: retried, everything arrives.
    assert_eq!(ids(&delivered(dir.path(), "flaky")), all);

    // A function that always fails, and one too slow: every record a row, the batch loaded.
    for (name, words) in [
        ("broken", "failed 2 time(s): function error (Unhandled)"),
        ("slow", "no answer within 1 s"),
    ] {
        let r = rows(&db, name).await;
        assert_eq!(r.len(), 12, "{name}: {r:?}");
        assert!(
            r.iter().all(|(_, reason)| reason.contains(words)),
            "{name}: {r:?}"
        );
        assert!(delivered(dir.path(), name).is_empty());
    }

    let stats = standin.stats().await;
    assert_eq!(stats["by_function"]["flaky"], 2, "{stats}");
    assert_eq!(stats["by_function"]["unhandled"], 2, "{stats}");
    assert_eq!(
        stats["arns"],
        json!([
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/broken",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/drop",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/enrich",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/fail",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/flaky",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/omit",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/slow",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/split",
            "arn:aws:firehose:us-east-1:000000000000:deliverystream/wrongid",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/clicks",
        ])
    );
    assert_eq!(stats["refused"], 0, "{stats}");

    // What /metrics says of the steps: records in and out, and the invocations.
    let addr = admin_addr(&daemon).await;
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |needle: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with("stageload_") && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in /metrics:\n{metrics}"))
    };
    let step = "pipeline=\"fail\",step=\"transform[0] (lambda)\"";
    for (outcome, n) in [("in", 12.0), ("out", 9.0), ("failed", 3.0)] {
        let needle = format!("transform_records_total{{{step},outcome=\"{outcome}\"}}");
        assert_eq!(value(&needle), n, "{needle}");
    }
    for (pipeline, outcome) in [("flaky", "retried"), ("broken", "failed")] {
        let needle = format!(
            "lambda_invocations_total{{pipeline=\"{pipeline}\",step=\"transform[0] (lambda)\",outcome=\"{outcome}\"}}"
        );
        assert_eq!(value(&needle), 1.0, "{needle}");
    }
}

#[tokio::test]
async fn invocations_stay_within_the_buffer_and_payload_limits_and_a_wrong_key_is_refused() {
    let stack = Stack::get();
    let db = stack.fresh_database("lambdalim").await;
    let bucket = stack.bucket("lambdalim").await;
    let s3 = stack.s3().await;
    let dir = tempfile::tempdir().unwrap();
    let other = standin("AKIDNOTTHEDAEMONS:secret".into());
    let standin = standin(stack_key());
    // 40 records of about 40 KiB, then one of 5 MiB whose base64 is past the 6 MB payload.
    let pad = "x".repeat(40 << 10);
    let mut lines: Vec<String> = (0..40)
        .map(|i| json!({"id": i, "pad": pad}).to_string())
        .collect();
    lines.push(json!({"id": 40, "pad": "y".repeat(5 << 20)}).to_string());
    put(&s3, &bucket, "in/big/a.json", lines.join("\n").into_bytes()).await;
    put(&s3, &bucket, "in/key/a.json", staged(3)).await;
    let config = stack.base_config(&db)
        + &pipeline(
            "big",
            &bucket,
            dir.path(),
            &standin.url,
            "enrich",
            "buffer_size_mib = 0.2",
        )
        .replace(
            "format = \"json_lines\"",
            "format = \"json_lines\"\nmax_record_bytes = 8388608",
        )
        + &pipeline(
            "key",
            &bucket,
            dir.path(),
            &other.url,
            "enrich",
            "retries = 0",
        );
    let daemon = Daemon::start(&config);
    wait_all_settled(&db).await;
    assert_eq!(
        ids(&delivered(dir.path(), "big")),
        (0..40).collect::<Vec<_>>(),
        "{}",
        daemon.log_text()
    );
    let big = rows(&db, "big").await;
    assert_eq!(big.len(), 1, "{big:?}");
    assert!(
        big[0].0 == 41
            && big[0]
                .1
                .contains("past Lambda's 6291456-byte payload limit"),
        "{big:?}"
    );
    let stats = standin.stats().await;
    // 0.2 MiB holds five 40 KiB records: at least eight invocations, none over the limit.
    assert!(stats["invocations"].as_u64().unwrap() >= 8, "{stats}");
    assert!(stats["max_records"].as_u64().unwrap() <= 5, "{stats}");
    assert!(stats["max_bytes"].as_u64().unwrap() <= 6_291_456, "{stats}");
    assert_eq!(stats["refused"], 0, "{stats}");

    let refused = rows(&db, "key").await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|(_, r)| r.contains("UnrecognizedClientException")),
        "{refused:?}"
    );
    assert_eq!(other.stats().await["invocations"], 0);
}
