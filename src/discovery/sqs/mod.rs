//! Discovery from S3 event notifications on SQS queues (`source.sqs_queue_url`), beside
//! listing: objects are in the ledger seconds after they are written, without listing a large
//! prefix. Several pipelines may name the same queue: the process runs one receiver per
//! distinct queue URL ([`Queues`]), and each record of a message goes to every pipeline whose
//! bucket is the record's and whose prefix the key is under (keys under that pipeline's own
//! error and manifest prefixes excepted). A message is deleted only after every pipeline it
//! goes to has committed its objects to the ledger, so a process that dies in between, or a
//! pipeline whose recording fails, leaves the message to come back after its visibility
//! timeout, and recording it again is a no-op (the ledger is unique on pipeline, bucket, key
//! and etag). Delivery never happens while a message is held, so large objects never outlive
//! the visibility timeout (the re-delivery problem reported in Vector issue 4910 and Data
//! Prepper issue 4812).
//!
//! A message that is not an S3 event notification, or that names a key no pipeline on its
//! queue watches, is logged and left on the queue, for its redrive policy to move to a
//! dead-letter queue. Test events and removals are acknowledged and dropped, and so are
//! notifications for the loader's own output (keys under a pipeline's error or manifest
//! prefix that no pipeline watches).

mod queues;
mod routes;

pub use queues::Queues;
pub use routes::Route;

use super::events::{self, CreatedObject, Notification};
use super::listing::ledger_entry;
use crate::control::ledger::ListedObject;
use crate::control::Control;
use crate::control::ControlError;
use crate::source::s3::S3;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use routes::{destinations, Destinations};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Seconds one receive call waits for messages (SQS's long-poll maximum).
const WAIT_S: i32 = 20;

/// How long to wait after a failed receive or delete.
const QUEUE_RETRY: Duration = Duration::from_secs(5);

/// Seconds a helper receive waits (see [`RECEIVES_AT_ONCE`]): short, so a helper goes back to
/// sleep soon once the backlog is gone.
const HELPER_WAIT_S: i32 = 1;

/// Receives in flight at once per queue while it has a backlog. One receive brings at most 10
/// messages and costs a round trip, so a single poller caps a queue at 10 messages per round
/// trip (a few hundred a second against SQS); SQS's answer to throughput is more concurrent
/// receivers. One long poll runs all the time; the others are helpers that start when a receive
/// comes back full (a backlog) and stop at their first receive that is not, so an idle queue
/// costs one empty receive per [`WAIT_S`], and a stopping process leaves at most one long poll
/// behind on the server (a message it takes comes back after the visibility timeout).
pub const RECEIVES_AT_ONCE: usize = 8;

/// At most this many received messages are handled together: one ledger insert per pipeline
/// for all of them, instead of one per receive of 10.
pub const GATHER_MESSAGES: usize = 200;

/// Objects per ledger insert (`Control::record_objects`).
const RECORD_AT_ONCE: usize = 1000;

/// HEADs in flight at once for notifications without an ETag.
const HEADS_AT_ONCE: usize = 32;

/// An SQS client for the queue at `queue_url`, with the pipeline's credentials, signed for
/// the queue's own region when its URL names one (`https://sqs.eu-west-1.amazonaws.com/...`).
fn client_for(s3: &S3, queue_url: &str) -> Result<aws_sdk_sqs::Client, String> {
    let mut conf = aws_sdk_sqs::config::Builder::from(s3.sdk_config())
        .endpoint_url(crate::config::sqs_endpoint(queue_url)?);
    if let Some(region) = queue_region(queue_url) {
        conf = conf.region(aws_sdk_sqs::config::Region::new(region));
    }
    Ok(aws_sdk_sqs::Client::from_conf(conf.build()))
}

/// The region an AWS queue URL names: `sqs.<region>.amazonaws.com[.cn]` or the legacy
/// `<region>.queue.amazonaws.com`; None for any other host (a local server).
fn queue_region(queue_url: &str) -> Option<String> {
    let host = reqwest::Url::parse(queue_url)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    match labels.as_slice() {
        ["sqs", region, "amazonaws", "com", ..] => Some(region.to_string()),
        [region, "queue", "amazonaws", "com", ..] => Some(region.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod region_tests {
    use super::queue_region;

    #[test]
    fn a_queue_is_signed_for_the_region_its_url_names() {
        assert_eq!(
            queue_region("https://sqs.eu-west-1.amazonaws.com/123456789012/q").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            queue_region("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            queue_region("https://us-west-2.queue.amazonaws.com/123456789012/q").as_deref(),
            Some("us-west-2")
        );
        assert_eq!(queue_region("http://127.0.0.1:4566/000000000000/q"), None);
    }
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

/// Receiving from or deleting on a queue failed.
#[derive(Debug, thiserror::Error)]
#[error("sqs queue {queue}: {what}: {message}")]
pub struct QueueError {
    /// Queue URL.
    pub queue: String,
    /// `receive` or `delete`.
    pub what: &'static str,
    /// What failed, with the SDK's causes.
    pub message: String,
}

/// Receives one queue's notifications for every pipeline that names it.
pub struct QueueReceiver {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    control: Control,
    s3: S3,
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
    /// First starts of `start_at = "now"` pipelines, by (pipeline, bucket, prefix), once read.
    starts: Mutex<HashMap<(String, String, String), DateTime<Utc>>>,
}

/// What one receive did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Messages received.
    pub messages: usize,
    /// Messages deleted (recorded by every pipeline they go to, or nothing to record).
    pub deleted: usize,
    /// Objects new to the ledger, summed over pipelines.
    pub recorded: u64,
}

impl QueueReceiver {
    /// A receiver for `queue_url`, with `[s3]`'s region and credentials, sending to `routes`.
    pub fn new(
        queue_url: &str,
        s3: &S3,
        control: Control,
        routes: Vec<Route>,
    ) -> Result<QueueReceiver, String> {
        Ok(QueueReceiver {
            client: client_for(s3, queue_url)?,
            queue_url: queue_url.to_string(),
            control,
            s3: s3.clone(),
            routes: Arc::new(RwLock::new(Arc::new(routes))),
            starts: Mutex::default(),
        })
    }

    /// When a `start_at = "now"` pipeline first started (recorded now if it never did), read
    /// once from the control database.
    async fn started(&self, route: &Route) -> Result<DateTime<Utc>, ControlError> {
        let id = (
            route.pipeline.clone(),
            route.bucket.clone(),
            route.prefix.clone(),
        );
        if let Some(t) = self
            .starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(*t);
        }
        let t = self.control.pipeline_start(&id.0, &id.1, &id.2).await?;
        self.starts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, t);
        Ok(t)
    }

    /// Per route, the time before which created objects are not staged (`start_at = "now"`),
    /// and whether it could not be read (the route's messages then stay on the queue).
    async fn not_before(&self, routes: &[Route]) -> (Vec<Option<DateTime<Utc>>>, Vec<bool>) {
        let mut not_before = vec![None; routes.len()];
        let mut failed = vec![false; routes.len()];
        for (r, route) in routes.iter().enumerate().filter(|(_, r)| r.start_at_now) {
            match self.started(route).await {
                Ok(t) => not_before[r] = Some(t),
                Err(e) => {
                    warn!(pipeline = %route.pipeline, queue = %self.queue_url, error = %e, "reading the pipeline's first start failed, its messages stay on the queue");
                    failed[r] = true;
                }
            }
        }
        (not_before, failed)
    }

    fn routes(&self) -> Arc<Vec<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn err(&self, what: &'static str, message: String) -> QueueError {
        QueueError {
            queue: self.queue_url.clone(),
            what,
            message,
        }
    }

    /// One receive of up to 10 messages, waiting up to `wait_s` for the first.
    async fn receive(&self, wait_s: i32) -> Result<Vec<Message>, QueueError> {
        let received = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_s)
            .send()
            .await
            .map_err(|e| self.err("receive", DisplayErrorContext(&e).to_string()))?;
        Ok(received.messages.unwrap_or_default())
    }

    /// One long poll, then [`QueueReceiver::handle`] of what it brought.
    pub async fn run_once(&self) -> Result<Received, QueueError> {
        let messages = self.receive(WAIT_S).await?;
        self.handle(&messages).await
    }

    /// Records the objects `messages` name in the ledgers of the pipelines they go to (one
    /// insert per pipeline, whatever the number of messages), wakes those pipelines' sealers,
    /// then deletes the messages every such pipeline has recorded, 10 per DeleteMessageBatch
    /// call, the calls at once. A pipeline whose recording fails is logged and its messages
    /// stay.
    pub async fn handle(&self, messages: &[Message]) -> Result<Received, QueueError> {
        let queue = self.queue_url.as_str();
        // Taken now, so a reload during the long poll is seen.
        let routes = self.routes();
        let mut keep = vec![false; messages.len()];
        let mut named = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let id = m.message_id().unwrap_or("");
            let created = match events::parse(m.body().unwrap_or("")) {
                Ok(Notification::Created(created)) => created,
                Ok(Notification::Other(what)) => {
                    debug!(queue, message_id = id, event = %what, "notification is not an object creation, dropped");
                    continue;
                }
                Err(e) => {
                    warn!(queue, message_id = id, error = %e, "sqs message left on the queue for its redrive policy");
                    keep[i] = true;
                    continue;
                }
            };
            for c in created {
                match destinations(&routes, &c.bucket, &c.key) {
                    Destinations::Pipelines(to) => named.push((i, to, c)),
                    Destinations::Own => {
                        debug!(queue, message_id = id, bucket = %c.bucket, key = %c.key, "notification for the loader's own output, dropped");
                    }
                    Destinations::Unwatched => {
                        warn!(queue, message_id = id, bucket = %c.bucket, key = %c.key, "notification for a key no pipeline watches, left on the queue for its redrive policy");
                        keep[i] = true;
                    }
                }
            }
        }
        // Notifications without an ETag need a HEAD each; they go out together.
        let looked_up: Vec<_> = futures::stream::iter(named)
            .map(|(i, to, c)| async move { (i, to, self.with_etag(c).await) })
            .buffered(HEADS_AT_ONCE)
            .collect()
            .await;

        // With `start_at = "now"`, an object created before the pipeline first started is
        // history (a queue's backlog from before then): acknowledged, left to `stageload
        // backfill`, as listing leaves it.
        let (not_before, mut failed) = self.not_before(&routes).await;
        // Per route: the objects to record; per message: the routes it needs.
        let mut objects: Vec<Vec<ListedObject>> = vec![Vec::new(); routes.len()];
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); messages.len()];
        for (i, to, got) in looked_up {
            let c = match got {
                Ok(Some(c)) => c,
                // Gone already: nothing to stage.
                Ok(None) => continue,
                Err(e) => {
                    let id = messages[i].message_id().unwrap_or("");
                    warn!(queue, message_id = id, error = %e, "head of a notified object failed, message left on the queue to come back");
                    keep[i] = true;
                    continue;
                }
            };
            for r in to {
                let route = &routes[r];
                if let (Some(start), Some(created)) = (not_before[r], c.event_time) {
                    if created < start {
                        debug!(pipeline = %route.pipeline, queue, key = %c.key, created = %created, started = %start, "notification from before the pipeline started (start_at = now), dropped");
                        continue;
                    }
                }
                let entry = ledger_entry(
                    &route.prefix,
                    &route.own_prefixes,
                    route.key_time_zone,
                    c.key.clone(),
                    c.etag.clone(),
                    c.size,
                    c.event_time,
                );
                // None: a folder marker, nothing to stage.
                if let Some((entry, _)) = entry {
                    objects[r].push(entry);
                    needs[i].push(r);
                }
            }
        }

        let mut out = Received {
            messages: messages.len(),
            ..Received::default()
        };
        for (r, route) in routes.iter().enumerate() {
            if failed[r] {
                continue;
            }
            let mut recorded = 0;
            for chunk in objects[r].chunks(RECORD_AT_ONCE) {
                match self
                    .control
                    .record_objects(&route.pipeline, &route.bucket, chunk)
                    .await
                {
                    Ok(n) => recorded += n,
                    Err(e) => {
                        // Its messages stay and come back; what was recorded is not recorded
                        // twice.
                        warn!(pipeline = %route.pipeline, queue, error = %e, "recording notified objects failed, their messages stay on the queue");
                        failed[r] = true;
                        break;
                    }
                }
            }
            if recorded > 0 {
                super::announce(&route.pipeline, recorded, "notifications", &route.sealer);
                out.recorded += recorded;
            }
        }

        let done: Vec<&str> = messages
            .iter()
            .enumerate()
            .filter(|(i, _)| !keep[*i] && !needs[*i].iter().any(|&r| failed[r]))
            .filter_map(|(_, m)| m.receipt_handle())
            .collect();
        out.deleted = self.delete(&done).await?;
        Ok(out)
    }

    /// Deletes the messages of `handles`, 10 per DeleteMessageBatch call (SQS's limit), the
    /// calls at once; returns how many were deleted.
    async fn delete(&self, handles: &[&str]) -> Result<usize, QueueError> {
        let queue = self.queue_url.as_str();
        let calls = handles.chunks(10).map(|chunk| async move {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| self.err("delete", e.to_string()))?;
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.err("delete", DisplayErrorContext(&e).to_string()))?;
            for f in deleted.failed() {
                // The message comes back after its visibility timeout; recording it again
                // changes nothing.
                warn!(queue, error = %f.message().unwrap_or(f.code()), "sqs message not deleted, it will be received again");
            }
            Ok::<_, QueueError>(chunk.len() - deleted.failed().len())
        });
        let mut deleted = 0;
        for r in futures::future::join_all(calls).await {
            deleted += r?;
        }
        Ok(deleted)
    }

    /// A notification without an ETag (some S3-compatible servers and EventBridge shapes omit
    /// it) gets the ETag and size from a HEAD: recorded with an empty ETag, the object would be
    /// a second ledger row beside the one listing records, and load twice. `None` when the
    /// object is gone already; a failed HEAD leaves the message on the queue to come back.
    async fn with_etag(
        &self,
        mut c: CreatedObject,
    ) -> Result<Option<CreatedObject>, crate::source::s3::S3Error> {
        if !c.etag.is_empty() {
            return Ok(Some(c));
        }
        match self.s3.head(&c.bucket, &c.key).await? {
            Some(h) if !h.etag.is_empty() => {
                debug!(bucket = %c.bucket, key = %c.key, etag = %h.etag, "notification without an etag, took it from a head");
                c.etag = h.etag;
                c.size = h.size;
                Ok(Some(c))
            }
            Some(_) => {
                warn!(bucket = %c.bucket, key = %c.key, "neither the notification nor a head gives the object an etag; recorded without one");
                Ok(Some(c))
            }
            None => {
                debug!(bucket = %c.bucket, key = %c.key, "notified object no longer exists, dropped");
                Ok(None)
            }
        }
    }

    /// Receives until `stop`: one long poll, up to [`RECEIVES_AT_ONCE`] receives in flight
    /// while there is a backlog, and what they bring handled together (up to
    /// [`GATHER_MESSAGES`] messages at once) while the next ones are received. Waits a little
    /// after a failure.
    async fn run(self, stop: CancellationToken) {
        let this = &self;
        let queue = self.queue_url.as_str();
        let (tx, mut rx) = mpsc::channel::<Vec<Message>>(RECEIVES_AT_ONCE);
        // Notified when a receive comes back full: the helpers join in.
        let backlog = Notify::new();
        let backlog = &backlog;
        let poll = |tx: mpsc::Sender<Vec<Message>>, helper: bool| async move {
            loop {
                if helper {
                    backlog.notified().await;
                }
                loop {
                    let wait_s = if helper { HELPER_WAIT_S } else { WAIT_S };
                    let full = match this.receive(wait_s).await {
                        Ok(m) => {
                            let full = m.len() >= 10;
                            if full {
                                backlog.notify_waiters();
                            }
                            if !m.is_empty() && tx.send(m).await.is_err() {
                                return;
                            }
                            full
                        }
                        Err(e) => {
                            warn!(queue, error = %e, "receiving notifications failed");
                            tokio::time::sleep(QUEUE_RETRY).await;
                            false
                        }
                    };
                    if helper && !full {
                        break;
                    }
                }
            }
        };
        let pollers =
            futures::future::join_all((0..RECEIVES_AT_ONCE).map(|i| poll(tx.clone(), i > 0)));
        drop(tx);
        let handle = async {
            while let Some(mut messages) = rx.recv().await {
                while messages.len() < GATHER_MESSAGES {
                    match rx.try_recv() {
                        Ok(more) => messages.extend(more),
                        Err(_) => break,
                    }
                }
                if let Err(e) = self.handle(&messages).await {
                    warn!(queue, error = %e, "handling notifications failed");
                    tokio::time::sleep(QUEUE_RETRY).await;
                }
            }
        };
        // Dropping a receive or a handling in flight is safe: its messages come back later,
        // and what was recorded is not recorded twice.
        tokio::select! {
            _ = pollers => {}
            _ = handle => {}
            _ = stop.cancelled() => {}
        }
        debug!(queue, "queue receiver stopped");
    }
}
