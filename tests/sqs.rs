//! Discovery from S3 event notifications on an SQS queue (moto's server from the local stack),
//! beside listing: objects announced on the queue are delivered without another listing, a
//! message that is not a notification, or that names a key no pipeline watches, stays on the
//! queue for its redrive policy, and test events are acknowledged and dropped. Several
//! pipelines can share one queue: each gets the notifications for its own prefix, an object
//! under overlapping prefixes lands in both, and a SIGHUP reload re-routes the queue.

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
    created_at(bucket, encoded_key, size, etag, "2026-11-28T04:05:06.000Z")
}

/// [`created`] with its `eventTime`.
fn created_at(bucket: &str, encoded_key: &str, size: i64, etag: &str, time: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": time, "eventName": "ObjectCreated:Put",
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

/// A queue whose messages come back one second after they are received and not deleted.
async fn create_queue(sqs: &aws_sdk_sqs::Client) -> String {
    sqs.create_queue()
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
        .to_string()
}

/// A file pipeline reading `prefix` of `bucket` from `queue`, listing only at startup.
fn queued_pipeline(
    name: &str,
    bucket: &str,
    prefix: &str,
    dir: &std::path::Path,
    queue: &str,
) -> String {
    file_pipeline(name, bucket, dir, 30)
        .replace(
            &format!("prefix = \"in/{name}/\""),
            &format!("prefix = \"{prefix}\""),
        )
        .replace(
            "poll_interval_s = 1",
            &format!("poll_interval_s = 3600\nsqs_queue_url = \"{queue}\""),
        )
}

/// The bodies of the messages left on the queue, each with how many times it was received
/// (by the daemon, then by this look). Run after the daemon stopped.
async fn left_on_queue(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<(String, u32)> {
    let mut left = Vec::new();
    for _ in 0..3 {
        let got = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        left.extend(got.messages().iter().map(|m| {
            let count = m
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                })
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (m.body().unwrap_or("").to_string(), count)
        }));
        if !left.is_empty() {
            break;
        }
    }
    left.sort();
    left
}

/// Puts an object and sends the notification S3 would, with the time it was written.
async fn put_notified_now(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bucket: &str,
    key: &str,
    lines: usize,
) {
    put(s3, bucket, key, json_lines(key, lines, 60)).await;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (size, etag) = head(s3, bucket, key).await;
    send(sqs, queue, created_at(bucket, key, size, &etag, &now)).await;
}

/// Puts an object and sends the notification S3 would.
async fn put_notified(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bucket: &str,
    key: &str,
    lines: usize,
) {
    put(s3, bucket, key, json_lines(key, lines, 60)).await;
    let (size, etag) = head(s3, bucket, key).await;
    send(sqs, queue, created(bucket, key, size, &etag)).await;
}

/// Each pipeline's keys in the ledger, as `pipeline key`.
async fn ledger(db: &str) -> Vec<String> {
    query_strings(
        db,
        "SELECT pipeline || ' ' || key FROM staged_objects ORDER BY pipeline, key",
    )
    .await
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
    let queue = create_queue(&sqs).await;
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

    // Left: the message that is not a notification, and the one for a key no pipeline
    // watches.
    let left: Vec<String> = left_on_queue(&sqs, &queue)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    let mut expected = vec![
        created(&bucket, "elsewhere/x.json", 10, "e"),
        "this is not an event".to_string(),
    ];
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test]
async fn pipelines_sharing_a_queue_each_get_their_own_objects() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("sqsshare").await,
        stack.bucket("sqsshare").await,
    );
    let (s3, sqs) = (stack.s3().await, sqs().await);
    let queue = create_queue(&sqs).await;
    let (out_a, out_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = stack.base_config(&db)
        + &queued_pipeline("a", &bucket, "in/a/", out_a.path(), &queue)
        + &queued_pipeline("b", &bucket, "in/b/", out_b.path(), &queue);
    let mut daemon = Daemon::start(&config);
    wait_log(|| daemon.log_text(), &["queue receiver started", "a,b"]).await;

    put_notified(&s3, &sqs, &queue, &bucket, "in/a/1.json", 2).await;
    put_notified(&s3, &sqs, &queue, &bucket, "in/b/1.json", 3).await;
    put_notified(&s3, &sqs, &queue, &bucket, "in/a/2.json", 4).await;
    // A key neither pipeline watches: not acknowledged, so it comes back until the redrive
    // policy takes it.
    let stray = created(&bucket, "in/c/stray.json", 10, "e");
    send(&sqs, &queue, stray.clone()).await;

    wait_for("each pipeline's objects delivered", LONG, || async {
        (delivered_lines(out_a.path()).len() == 6 && delivered_lines(out_b.path()).len() == 3)
            .then_some(())
    })
    .await;
    wait_for("the stray notification received twice", LONG, || async {
        let log = daemon.log_text();
        let warned = log
            .lines()
            .filter(|l| l.contains("no pipeline watches") && l.contains("in/c/stray.json"))
            .count();
        (warned >= 2).then_some(())
    })
    .await;
    assert_eq!(
        ledger(&db).await,
        vec!["a in/a/1.json", "a in/a/2.json", "b in/b/1.json"]
    );
    assert_eq!(daemon.terminate(), Some(0));
    // Delivered once each, nothing more after the stop.
    assert_eq!(delivered_lines(out_a.path()).len(), 6);
    assert_eq!(delivered_lines(out_b.path()).len(), 3);
    let left = left_on_queue(&sqs, &queue).await;
    assert_eq!(
        left.len(),
        1,
        "only the stray notification is left: {left:?}"
    );
    assert_eq!(left[0].0, stray);
    assert!(left[0].1 >= 3, "received again and again: {left:?}");
}

#[tokio::test]
async fn overlapping_prefixes_both_record_and_a_reload_reroutes_the_queue() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("sqsoverlap").await,
        stack.bucket("sqsoverlap").await,
    );
    let (s3, sqs) = (stack.s3().await, sqs().await);
    let queue = create_queue(&sqs).await;
    let (out_a, out_all, out_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = queued_pipeline("a", &bucket, "in/a/", out_a.path(), &queue);
    let all = queued_pipeline("all", &bucket, "in/", out_all.path(), &queue);
    let mut daemon = Daemon::start(&(stack.base_config(&db) + &a + &all));
    wait_log(|| daemon.log_text(), &["queue receiver started"]).await;

    put_notified(&s3, &sqs, &queue, &bucket, "in/a/both.json", 3).await;
    put_notified(&s3, &sqs, &queue, &bucket, "in/z/only-all.json", 2).await;
    wait_for("the shared object delivered by both", LONG, || async {
        (delivered_lines(out_a.path()).len() == 3 && delivered_lines(out_all.path()).len() == 5)
            .then_some(())
    })
    .await;
    assert_eq!(
        ledger(&db).await,
        vec![
            "a in/a/both.json",
            "all in/a/both.json",
            "all in/z/only-all.json"
        ]
    );

    // Reload: "all" goes, "c" joins the same queue.
    let c = queued_pipeline("c", &bucket, "in/c/", out_c.path(), &queue);
    std::fs::write(&daemon.config, stack.base_config(&db) + &a + &c).unwrap();
    daemon.signal("HUP");
    wait_log(
        || daemon.log_text(),
        &["config reloaded", "stopped=1", "started=1"],
    )
    .await;
    put_notified(&s3, &sqs, &queue, &bucket, "in/c/new.json", 4).await;
    put_notified(&s3, &sqs, &queue, &bucket, "in/a/after.json", 1).await;
    put(
        &s3,
        &bucket,
        "in/z/orphan.json",
        json_lines("orphan", 1, 60),
    )
    .await;
    let (size, etag) = head(&s3, &bucket, "in/z/orphan.json").await;
    let orphan = created(&bucket, "in/z/orphan.json", size, &etag);
    send(&sqs, &queue, orphan.clone()).await;
    wait_for("the new pipeline's object delivered", LONG, || async {
        (delivered_lines(out_c.path()).len() == 4 && delivered_lines(out_a.path()).len() == 4)
            .then_some(())
    })
    .await;
    wait_log(
        || daemon.log_text(),
        &["no pipeline watches", "in/z/orphan.json"],
    )
    .await;
    assert_eq!(
        ledger(&db).await,
        vec![
            "a in/a/after.json",
            "a in/a/both.json",
            "all in/a/both.json",
            "all in/z/only-all.json",
            "c in/c/new.json"
        ],
        "the removed pipeline records nothing more"
    );
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(delivered_lines(out_all.path()).len(), 5);
    let left = left_on_queue(&sqs, &queue).await;
    assert_eq!(
        left.len(),
        1,
        "only the removed pipeline's notification is left: {left:?}"
    );
    assert_eq!(left[0].0, orphan);
}

/// With `start_at = "now"`, the queue's backlog from before the pipeline first started is
/// history, as it is for listing: acknowledged and dropped, not loaded (`stageload backfill`
/// loads it when asked). What is created after the start loads.
#[tokio::test]
async fn start_at_now_drops_the_queues_backlog_from_before_the_first_start() {
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("sqsnow").await,
        stack.bucket("sqsnow").await,
    );
    let (s3, sqs) = (stack.s3().await, sqs().await);
    let queue = create_queue(&sqs).await;
    let out = tempfile::tempdir().unwrap();
    put_notified_now(&s3, &sqs, &queue, &bucket, "in/now/backlog.json", 3).await;
    // S3 keeps LastModified to the second: the pipeline starts after the backlog.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let config = stack.base_config(&db)
        + &queued_pipeline("now", &bucket, "in/now/", out.path(), &queue).replace(
            "format = \"json_lines\"",
            "format = \"json_lines\"\nstart_at = \"now\"",
        );
    let mut daemon = Daemon::start(&config);
    wait_log(
        || daemon.log_text(),
        &["start_at = now: older objects are not staged"],
    )
    .await;
    wait_log(|| daemon.log_text(), &["queue receiver started"]).await;
    put_notified_now(&s3, &sqs, &queue, &bucket, "in/now/new.json", 4).await;
    wait_for("the new object delivered", LONG, || async {
        (delivered_lines(out.path()).len() >= 4).then_some(())
    })
    .await;
    wait_all_settled(&db).await;
    assert_eq!(
        ledger(&db).await,
        vec!["now in/now/new.json"],
        "the backlog from before the start was staged"
    );
    assert_eq!(daemon.terminate(), Some(0));
    assert_eq!(delivered_lines(out.path()).len(), 4);
    let left = left_on_queue(&sqs, &queue).await;
    assert!(left.is_empty(), "the backlog is acknowledged: {left:?}");
}

/// The receiver gathers the messages of several receives: one ledger insert for all of them,
/// deletes beyond SQS's 10 per DeleteMessageBatch call split into calls of 10, and an object
/// notified twice (S3 delivers at least once) recorded once while both messages are deleted.
#[tokio::test]
async fn messages_of_several_receives_are_recorded_once_and_all_deleted() {
    use stageload::discovery::sqs::{QueueReceiver, Route};
    let stack = Stack::get();
    let (db, bucket) = (
        stack.fresh_database("sqsmany").await,
        stack.bucket("sqsmany").await,
    );
    let (s3, sqs) = (stack.s3().await, sqs().await);
    // Visible again only after 60 s: every message below is received exactly once.
    let queue = sqs
        .create_queue()
        .queue_name(Stack::unique("stage-events-many"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "60",
        )
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let text =
        stack.base_config(&db) + &queued_pipeline("many", &bucket, "in/many/", out.path(), &queue);
    let config =
        stageload::config::Config::parse(&text, "test.toml", &|k| std::env::var(k).ok()).unwrap();
    let control = stageload::control::Control::new(&config.control).unwrap();
    control.migrate().await.unwrap();
    let loader_s3 = stageload::source::s3::S3::new(&config.s3).await;
    let route = Route::of(&config.pipelines[0], Default::default(), None).expect("a queue");
    let receiver = QueueReceiver::new(&queue, &loader_s3, control, vec![route]).unwrap();

    for i in 0..25 {
        put_notified(
            &s3,
            &sqs,
            &queue,
            &bucket,
            &format!("in/many/{i:02}.json"),
            1,
        )
        .await;
    }
    for i in 0..5 {
        let key = format!("in/many/{i:02}.json");
        let (size, etag) = head(&s3, &bucket, &key).await;
        send(&sqs, &queue, created(&bucket, &key, size, &etag)).await;
    }
    let mut messages = Vec::new();
    while messages.len() < 30 {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        messages.extend(got.messages.unwrap_or_default());
    }

    let handled = receiver.handle(&messages).await.unwrap();
    assert_eq!(handled.messages, 30);
    assert_eq!(handled.recorded, 25, "each object once");
    assert_eq!(handled.deleted, 30, "every message deleted, in calls of 10");
    let keys = ledger(&db).await;
    assert_eq!(keys.len(), 25);
    assert_eq!(keys[0], "many in/many/00.json");
    let left = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |a: aws_sdk_sqs::types::QueueAttributeName| {
        left.attributes()
            .and_then(|m| m.get(&a))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0",
        "nothing left in flight"
    );
}
