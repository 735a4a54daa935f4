//! Discovery from S3 event notifications on an SQS queue (`source.sqs_queue_url`), beside
//! listing: objects are in the ledger seconds after they are written, without listing a large
//! prefix. A message is deleted only after the objects it names are committed to the ledger, so
//! a process that dies in between leaves the message to come back after its visibility timeout,
//! and recording it again is a no-op (the ledger is unique on pipeline, bucket, key and etag).
//! Delivery never happens while a message is held, so large objects never outlive the
//! visibility timeout (the re-delivery problem Vector and Data Prepper users report, peers.md).
//!
//! A message that is not an S3 event notification is logged and left on the queue, for its
//! redrive policy to move to a dead-letter queue. Events for other buckets or prefixes, test
//! events and removals are acknowledged and dropped: each pipeline needs its own queue.

use super::discover::{ledger_entry, DiscoverError};
use super::events::{self, CreatedObject, Notification};
use super::s3::S3;
use crate::config::PipelineConfig;
use crate::control::ledger::ListedObject;
use crate::control::Control;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::sync::Arc;
use tracing::{debug, warn};

/// Seconds one receive call waits for messages (SQS's long-poll maximum).
const WAIT_S: i32 = 20;

/// Receives one pipeline's notifications.
pub struct QueueWatcher {
    pipeline: Arc<PipelineConfig>,
    client: aws_sdk_sqs::Client,
    queue_url: String,
    control: Control,
    own_prefixes: Vec<String>,
    s3: S3,
}

/// The SQS endpoint a queue URL lives at: its scheme, host and port.
pub fn endpoint_of(queue_url: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(queue_url).map_err(|e| format!("{queue_url:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("{queue_url:?} is not an http(s) queue URL"));
    }
    Ok(url.origin().ascii_serialization())
}

/// An SQS client for the queue at `queue_url`, with `[s3]`'s region and credentials.
fn client_for(s3: &S3, queue_url: &str) -> Result<aws_sdk_sqs::Client, String> {
    let conf = aws_sdk_sqs::config::Builder::from(s3.sdk_config())
        .endpoint_url(endpoint_of(queue_url)?)
        .build();
    Ok(aws_sdk_sqs::Client::from_conf(conf))
}

/// Checks the queue answers with these credentials (for `/readyz`).
pub async fn check_queue(s3: &S3, queue_url: &str) -> Result<(), String> {
    client_for(s3, queue_url)?
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| DisplayErrorContext(&e).to_string())
}

impl QueueWatcher {
    /// A watcher for the pipeline's queue, with `[s3]`'s region and credentials; None when the
    /// pipeline has no queue.
    pub fn new(
        pipeline: Arc<PipelineConfig>,
        s3: &S3,
        control: Control,
        own_prefixes: Vec<String>,
    ) -> Option<QueueWatcher> {
        let queue_url = pipeline.source.sqs_queue_url.clone()?;
        // Configuration validation has checked the URL.
        let client = client_for(s3, &queue_url).ok()?;
        Some(QueueWatcher {
            pipeline,
            client,
            queue_url,
            control,
            own_prefixes,
            s3: s3.clone(),
        })
    }

    /// One long poll: records the objects the messages name, then deletes those messages.
    /// Returns how many objects were new to the ledger.
    pub async fn run_once(&self) -> Result<u64, DiscoverError> {
        let name = &self.pipeline.name;
        let sqs_err = |what: &str, e: String| DiscoverError::Sqs {
            pipeline: name.clone(),
            queue: self.queue_url.clone(),
            message: format!("{what}: {e}"),
        };
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(WAIT_S)
            .send()
            .await
            .map_err(|e| sqs_err("receive", DisplayErrorContext(&e).to_string()))?;
        let mut objects = Vec::new();
        let mut done = Vec::new();
        for (i, m) in received.messages().iter().enumerate() {
            let id = m.message_id().unwrap_or("");
            match events::parse(m.body().unwrap_or("")) {
                Ok(Notification::Created(created)) => {
                    let before = objects.len();
                    for c in created {
                        if let Some(entry) = self.ours(c) {
                            objects.push(self.with_etag(entry).await?);
                        }
                    }
                    if objects.len() == before {
                        debug!(pipeline = %name, message_id = id, "notification for another bucket or prefix, dropped");
                    }
                }
                Ok(Notification::Other(what)) => {
                    debug!(pipeline = %name, message_id = id, event = %what, "notification is not an object creation, dropped")
                }
                Err(e) => {
                    warn!(pipeline = %name, queue = %self.queue_url, message_id = id, error = %e, "sqs message left on the queue for its redrive policy");
                    continue;
                }
            }
            if let Some(handle) = m.receipt_handle() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| sqs_err("delete", e.to_string()))?;
                done.push(entry);
            }
        }
        let objects: Vec<ListedObject> = objects.into_iter().flatten().collect();
        let mut recorded = 0;
        for chunk in objects.chunks(1000) {
            recorded += self
                .control
                .record_objects(name, &self.pipeline.source.bucket, chunk)
                .await
                .map_err(|source| DiscoverError::Control {
                    pipeline: name.clone(),
                    source,
                })?;
        }
        if !done.is_empty() {
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| sqs_err("delete", DisplayErrorContext(&e).to_string()))?;
            for f in out.failed() {
                // The message comes back after its visibility timeout; recording it again
                // changes nothing.
                warn!(pipeline = %name, queue = %self.queue_url, error = %f.message().unwrap_or(f.code()), "sqs message not deleted, it will be received again");
            }
        }
        Ok(recorded)
    }

    /// An entry whose notification carried no ETag (some S3-compatible servers and EventBridge
    /// shapes omit it) gets the ETag and size from a HEAD: recorded with an empty ETag, the
    /// object would be a second ledger row beside the one listing records, and load twice.
    /// `None` when the object is gone already; a failed HEAD fails the poll, so the message is
    /// not deleted and comes back.
    async fn with_etag(
        &self,
        mut entry: ListedObject,
    ) -> Result<Option<ListedObject>, DiscoverError> {
        if !entry.etag.is_empty() {
            return Ok(Some(entry));
        }
        let bucket = &self.pipeline.source.bucket;
        let head = self
            .s3
            .head(bucket, &entry.key)
            .await
            .map_err(|source| DiscoverError::S3 {
                pipeline: self.pipeline.name.clone(),
                source,
            })?;
        match head {
            Some(h) if !h.etag.is_empty() => {
                debug!(pipeline = %self.pipeline.name, key = %entry.key, etag = %h.etag, "notification without an etag, took it from a head");
                entry.etag = h.etag;
                entry.size = h.size;
                Ok(Some(entry))
            }
            Some(_) => {
                warn!(pipeline = %self.pipeline.name, key = %entry.key, "neither the notification nor a head gives the object an etag; recorded without one");
                Ok(Some(entry))
            }
            None => {
                debug!(pipeline = %self.pipeline.name, key = %entry.key, "notified object no longer exists, dropped");
                Ok(None)
            }
        }
    }

    /// The ledger entry for a created object under this pipeline's bucket and prefix.
    fn ours(&self, c: CreatedObject) -> Option<ListedObject> {
        let source = &self.pipeline.source;
        if c.bucket != source.bucket || !c.key.starts_with(source.prefix.as_str()) {
            return None;
        }
        ledger_entry(
            &source.prefix,
            &self.own_prefixes,
            c.key,
            c.etag,
            c.size,
            c.event_time,
        )
        .map(|(entry, _)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_queue_urls_origin() {
        assert_eq!(
            endpoint_of("https://sqs.us-east-1.amazonaws.com/123456789012/stage-events").unwrap(),
            "https://sqs.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint_of("http://127.0.0.1:5000/123456789012/q").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert!(endpoint_of("sqs://queue").is_err());
        assert!(endpoint_of("stage-events").is_err());
    }
}
