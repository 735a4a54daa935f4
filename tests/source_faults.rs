//! Source faults against the real stack: a connection cut in the middle of a large object is
//! resumed with a ranged GET (every record delivered once, the batch in one attempt), and a
//! notification without an ETag gets it from a HEAD, so the object is recorded (and loaded)
//! once beside the listing.

mod common;
mod proxy;

use common::*;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_cut_connection_resumes_the_object_where_it_broke() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("resume").await,
        stack.bucket("resume").await,
    );
    let s3 = stack.s3().await;
    let proxy = proxy::Proxy::start(&stack.s3_endpoint).await;
    let out = tempfile::tempdir().unwrap();
    let records = 80_000;
    let body = json_lines("big", records, 100);
    let size = body.len() as u64;
    put(&s3, &bucket, "in/resume/big.json", body).await;
    // Only the object's GET gets this far on one connection; listings are a few KB.
    proxy.cut_once_after(size / 3);
    let config = stack
        .base_config(&db)
        .replace(&stack.s3_endpoint, &proxy.endpoint())
        + &file_pipeline("resume", &bucket, out.path(), 60);
    let daemon = Daemon::start(&config);
    wait_for("the batch to be loaded", LONG, || async {
        (query_i64(&db, "SELECT count(*) FROM batches WHERE state = 'loaded'").await == 1)
            .then_some(())
    })
    .await;

    let lines = delivered_lines(out.path());
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
        .collect();
    assert_eq!(lines.len(), records, "every record exactly once");
    assert_eq!(ids.len(), records);
    assert_eq!(proxy.cuts(), 1, "the connection was cut");
    assert_eq!(
        query_i64(&db, "SELECT attempts FROM batches").await,
        1,
        "the read resumed instead of failing the attempt"
    );
    assert!(
        proxy.served() < size + size / 4,
        "the object was read again from byte 0: {} bytes served for {size}",
        proxy.served()
    );
    let log = daemon.log_text();
    assert!(
        log.contains("s3 read interrupted, resuming with a ranged get"),
        "{log}"
    );
    let ranged = proxy
        .requests()
        .iter()
        .filter(|r| r.contains("big.json?x-id=GetObject"))
        .count();
    assert_eq!(ranged, 2, "one GET, one ranged GET: {:?}", proxy.requests());
}

async fn sqs() -> aws_sdk_sqs::Client {
    let endpoint = std::env::var("STAGELOAD_SQS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .expect("STAGELOAD_SQS_ENDPOINT: run through `make test`, which starts moto's server");
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(conf)
}

async fn messages_left(sqs: &aws_sdk_sqs::Client, queue: &str) -> i64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    out.attributes()
        .map(|a| {
            a.values()
                .filter_map(|v| v.parse::<i64>().ok())
                .sum::<i64>()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_notification_without_an_etag_is_recorded_once() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("noetag").await,
        stack.bucket("noetag").await,
    );
    let s3 = stack.s3().await;
    let sqs = sqs().await;
    let queue = sqs
        .create_queue()
        .queue_name(Stack::unique("no-etag"))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let key = "in/noetag/a.json";
    put(&s3, &bucket, key, json_lines("a", 7, 80)).await;
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let etag = head.e_tag().unwrap().trim_matches('"').to_string();
    // An S3-compatible server's notification: no eTag, no size.
    let event = serde_json::json!({"Records": [{
        "eventName": "ObjectCreated:Put", "eventTime": "2026-11-28T04:05:06.000Z",
        "s3": {"bucket": {"name": bucket}, "object": {"key": key}}
    }]});
    sqs.send_message()
        .queue_url(&queue)
        .message_body(event.to_string())
        .send()
        .await
        .unwrap();
    // Listing every second as well: both paths see the object.
    let config = stack.base_config(&db)
        + &file_pipeline("noetag", &bucket, out.path(), 30).replace(
            "poll_interval_s = 1",
            &format!("poll_interval_s = 1\nsqs_queue_url = \"{queue}\""),
        );
    let daemon = Daemon::start(&config);
    wait_for(
        "the notification consumed and the object loaded",
        LONG,
        || async {
            (messages_left(&sqs, &queue).await == 0
                && query_i64(
                    &db,
                    "SELECT count(*) FROM staged_objects WHERE state <> 'loaded'",
                )
                .await
                    == 0
                && !delivered_lines(out.path()).is_empty())
            .then_some(())
        },
    )
    .await;
    wait_all_settled(&db).await;
    let rows = query_strings(
        &db,
        "SELECT etag || ' ' || size || ' ' || state FROM staged_objects",
    )
    .await;
    assert_eq!(
        rows,
        vec![format!("{etag} {} loaded", head.content_length().unwrap())],
        "one ledger row, with the object's real ETag and size"
    );
    assert_eq!(delivered_lines(out.path()).len(), 7, "loaded once");
    drop(daemon);
}
