//! Shared by the Redshift path benchmarks (`path_bench`, `latency_bench`): S3 event
//! notifications sent to the local stack's SQS server (moto, `STAGELOAD_SQS_ENDPOINT`) as S3
//! would send them, and a plain client's receive-and-delete rate over the same queue.

#![allow(dead_code)]

use futures::StreamExt;
use std::time::Instant;

/// The local stack's SQS endpoint (moto's server).
pub fn stack_endpoint() -> anyhow::Result<String> {
    std::env::var("STAGELOAD_SQS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| anyhow::anyhow!("STAGELOAD_SQS_ENDPOINT is not set: source .stack/env"))
}

/// An SQS client for the server at `endpoint`.
pub fn client(endpoint: &str) -> anyhow::Result<aws_sdk_sqs::Client> {
    let conf = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            std::env::var("AWS_ACCESS_KEY_ID")?,
            std::env::var("AWS_SECRET_ACCESS_KEY")?,
            None,
            None,
            "env",
        ))
        .build();
    Ok(aws_sdk_sqs::Client::from_conf(conf))
}

/// Creates queue `name` (a message not deleted comes back after 300 s) and returns its URL.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> anyhow::Result<String> {
    let out = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "300",
        )
        .send()
        .await?;
    out.queue_url()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no queue url for {name}"))
}

/// One created object, as its notification names it.
pub struct Created {
    /// Key as written (encoded in the notification as S3 does).
    pub key: String,
    /// Size in bytes.
    pub size: i64,
    /// ETag without quotes.
    pub etag: String,
}

/// S3's notification body for one created object (`ObjectCreated:Put`, key form-encoded).
pub fn body(bucket: &str, o: &Created) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'.')
        .remove(b'-')
        .remove(b'_');
    let key = percent_encoding::utf8_percent_encode(&o.key, KEEP).to_string();
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": o.size, "eTag": o.etag, "sequencer": "0A1B2C3D4E5F678901"}}
    }]})
    .to_string()
}

/// Sends one message per body with SendMessageBatch, 10 per call, `at_once` calls in flight.
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bodies: Vec<String>,
    at_once: usize,
) -> anyhow::Result<()> {
    let calls: Vec<Vec<String>> = bodies.chunks(10).map(<[String]>::to_vec).collect();
    let sent = futures::stream::iter(calls)
        .map(|chunk| send_batch(sqs, queue, chunk))
        .buffer_unordered(at_once)
        .collect::<Vec<_>>()
        .await;
    sent.into_iter().collect()
}

/// One SendMessageBatch call of at most 10 bodies.
pub async fn send_batch(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    chunk: Vec<String>,
) -> anyhow::Result<()> {
    let entries = chunk
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(b)
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = sqs
        .send_message_batch()
        .queue_url(queue)
        .set_entries(Some(entries))
        .send()
        .await?;
    anyhow::ensure!(
        out.failed().is_empty(),
        "{} messages not sent",
        out.failed().len()
    );
    Ok(())
}

/// Receives (10 at a time, `at_once` receivers) and batch-deletes `n` messages with nothing in
/// between: the queue server's own rate. Returns the seconds it took.
pub async fn raw_drain(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    n: usize,
    at_once: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // When the last message was deleted (the other receivers may still be in a long poll).
    let finished = std::sync::Mutex::new(None);
    let receiver = || async {
        while done.load(std::sync::atomic::Ordering::Relaxed) < n {
            let got = sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await?;
            let entries = got
                .messages()
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let handle = m.receipt_handle()?;
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>();
            if entries.is_empty() {
                continue;
            }
            let k = entries.len();
            sqs.delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await?;
            if done.fetch_add(k, std::sync::atomic::Ordering::Relaxed) + k >= n {
                *finished.lock().unwrap() = Some(t.elapsed().as_secs_f64());
            }
        }
        anyhow::Ok(())
    };
    let all = futures::future::join_all((0..at_once).map(|_| receiver())).await;
    for r in all {
        r?;
    }
    let at = *finished.lock().unwrap();
    Ok(at.unwrap_or_else(|| t.elapsed().as_secs_f64()))
}
