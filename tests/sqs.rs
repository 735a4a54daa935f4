//! Discovery from S3 event notifications on an SQS queue (moto's server from the local stack),
//! beside listing: objects announced on the queue are delivered without another listing, a
//! message that is not a notification stays on the queue for its redrive policy, and test
//! events and events for other prefixes are acknowledged and dropped.

mod common;

use common::*;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

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

/// S3's notification for one created object; `key` is written as S3 does, URL-encoded.
fn created(bucket: &str, encoded_key: &str, size: i64, etag: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-11-28T04:05:06.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket},
               "object": {"key": encoded_key, "size": size, "eTag": etag}}
    }]})
    .to_string()
}

/// The object's size and ETag, as its notification carries them.
async fn head(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (i64, String) {
    let h = s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let etag = h.e_tag().unwrap_or("").trim_matches('"').to_string();
    (h.content_length().unwrap_or(0), etag)
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, body: String) {
    sqs.send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .expect("send message");
}

#[tokio::test]
async fn notified_objects_are_delivered_without_another_listing() {
    let stack = Stack::get();
    let (db, bucket) = (stack.fresh_database("sqs").await, stack.bucket("sqs").await);
    let s3 = stack.s3().await;
    let sqs = sqs().await;
    let queue = sqs
        .create_queue()
        .queue_name(Stack::unique("stage-events"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let out = tempfile::tempdir().unwrap();
    // One listing at startup, none after: only the queue can bring later objects in.
    let config = stack.base_config(&db)
        + &file_pipeline("notified", &bucket, out.path(), 30).replace(
            "poll_interval_s = 1",
            &format!("poll_interval_s = 3600\nsqs_queue_url = \"{queue}\""),
        );
    put(
        &s3,
        &bucket,
        "in/notified/first.json",
        json_lines("first", 3, 60),
    )
    .await;
    let mut daemon = Daemon::start(&config);
    wait_for("the startup listing", LONG, || async {
        (delivered_lines(out.path()).len() == 3).then_some(())
    })
    .await;

    let odd_key = "in/notified/late arrival/café.json";
    put(&s3, &bucket, odd_key, json_lines("odd", 4, 60)).await;
    put(&s3, &bucket, "in/notified/b.json", json_lines("b", 5, 60)).await;
    let (size, etag) = head(&s3, &bucket, odd_key).await;
    let encoded = "in/notified/late+arrival/caf%C3%A9.json";
    send(&sqs, &queue, created(&bucket, encoded, size, &etag)).await;
    let (size, etag) = head(&s3, &bucket, "in/notified/b.json").await;
    // The same notification through SNS, as a fan-out topic delivers it.
    let sns = serde_json::json!({"Type": "Notification", "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:stage",
        "Message": created(&bucket, "in/notified/b.json", size, &etag)});
    send(&sqs, &queue, sns.to_string()).await;
    send(&sqs, &queue, created(&bucket, "elsewhere/x.json", 10, "e")).await;
    send(
        &sqs,
        &queue,
        r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#.into(),
    )
    .await;
    send(&sqs, &queue, "this is not an event".into()).await;

    wait_for("notified objects delivered", LONG, || async {
        (delivered_lines(out.path()).len() == 12).then_some(())
    })
    .await;
    let log = daemon.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("discovered objects") && l.contains("notifications")),
        "the queue, not a listing, found them"
    );
    assert!(log.contains("sqs message left on the queue for its redrive policy"));
    let keys = query_strings(&db, "SELECT key FROM staged_objects ORDER BY key").await;
    assert_eq!(
        keys,
        vec!["in/notified/b.json", "in/notified/first.json", odd_key]
    );
    assert_eq!(daemon.terminate(), Some(0));

    // Only the message that is not a notification is left.
    let mut left = Vec::new();
    for _ in 0..3 {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        left.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if !left.is_empty() {
            break;
        }
    }
    assert_eq!(left, vec!["this is not an event".to_string()]);
}
