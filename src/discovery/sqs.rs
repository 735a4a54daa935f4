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

use super::events::{self, CreatedObject, Notification};
use super::listing::ledger_entry;
use crate::config::PipelineConfig;
use crate::control::ledger::ListedObject;
use crate::control::Control;
use crate::source::s3::S3;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Seconds one receive call waits for messages (SQS's long-poll maximum).
const WAIT_S: i32 = 20;

/// How long to wait after a failed receive or delete.
const QUEUE_RETRY: Duration = Duration::from_secs(5);

/// An SQS client for the queue at `queue_url`, with `[s3]`'s region and credentials.
fn client_for(s3: &S3, queue_url: &str) -> Result<aws_sdk_sqs::Client, String> {
    let conf = aws_sdk_sqs::config::Builder::from(s3.sdk_config())
        .endpoint_url(crate::config::sqs_endpoint(queue_url)?)
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

/// One running pipeline a queue's notifications can go to.
#[derive(Clone)]
pub struct Route {
    /// Pipeline name.
    pub pipeline: String,
    /// Its queue (`source.sqs_queue_url`).
    pub queue_url: String,
    /// Its bucket.
    pub bucket: String,
    /// Its prefix.
    pub prefix: String,
    /// Its error and manifest prefixes, whose keys are never staged.
    pub own_prefixes: Vec<String>,
    /// Woken when objects are recorded for it, so it seals without waiting for its tick.
    pub sealer: Arc<Notify>,
}

impl Route {
    /// The route to a pipeline that has a queue; None when it has none.
    pub fn of(config: &PipelineConfig, sealer: Arc<Notify>) -> Option<Route> {
        Some(Route {
            pipeline: config.name.clone(),
            queue_url: config.source.sqs_queue_url.clone()?,
            bucket: config.source.bucket.clone(),
            prefix: config.source.prefix.clone(),
            own_prefixes: config.own_prefixes(),
            sealer,
        })
    }

    /// Whether this pipeline stages `key` of `bucket`.
    fn watches(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket && key.starts_with(self.prefix.as_str()) && !self.is_own(bucket, key)
    }

    /// Whether `key` of `bucket` is this pipeline's own output (an error artifact, a manifest).
    fn is_own(&self, bucket: &str, key: &str) -> bool {
        bucket == self.bucket
            && self
                .own_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_str()))
    }
}

/// Where one created object goes among a queue's routes.
#[derive(Debug, PartialEq)]
enum Destinations {
    /// To these routes (indexes), at least one.
    Pipelines(Vec<usize>),
    /// Nowhere: the loader's own output, acknowledged and dropped.
    Own,
    /// Nowhere: no pipeline watches it, so the message stays for the redrive policy.
    Unwatched,
}

fn destinations(routes: &[Route], bucket: &str, key: &str) -> Destinations {
    let to: Vec<usize> = routes
        .iter()
        .enumerate()
        .filter(|(_, r)| r.watches(bucket, key))
        .map(|(i, _)| i)
        .collect();
    if !to.is_empty() {
        Destinations::Pipelines(to)
    } else if routes.iter().any(|r| r.is_own(bucket, key)) {
        Destinations::Own
    } else {
        Destinations::Unwatched
    }
}

/// Receives one queue's notifications for every pipeline that names it.
pub struct QueueReceiver {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    control: Control,
    s3: S3,
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
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
        })
    }

    fn routes(&self) -> Arc<Vec<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One long poll: records the objects the messages name in the ledgers of the pipelines
    /// they go to, wakes those pipelines' sealers, then deletes the messages every such
    /// pipeline has recorded. A pipeline whose recording fails is logged and its messages stay.
    pub async fn run_once(&self) -> Result<Received, QueueError> {
        let queue = self.queue_url.as_str();
        let err = |what, message: String| QueueError {
            queue: queue.to_string(),
            what,
            message,
        };
        let received = self
            .client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(WAIT_S)
            .send()
            .await
            .map_err(|e| err("receive", DisplayErrorContext(&e).to_string()))?;
        let messages = received.messages();
        // Taken after the receive, so a reload during the long poll is seen.
        let routes = self.routes();
        // Per route: the objects to record and the messages (indexes) naming them.
        let mut objects: Vec<Vec<ListedObject>> = vec![Vec::new(); routes.len()];
        let mut needs: Vec<Vec<usize>> = vec![Vec::new(); messages.len()];
        let mut keep = vec![false; messages.len()];
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
                let to = match destinations(&routes, &c.bucket, &c.key) {
                    Destinations::Pipelines(to) => to,
                    Destinations::Own => {
                        debug!(queue, message_id = id, bucket = %c.bucket, key = %c.key, "notification for the loader's own output, dropped");
                        continue;
                    }
                    Destinations::Unwatched => {
                        warn!(queue, message_id = id, bucket = %c.bucket, key = %c.key, "notification for a key no pipeline watches, left on the queue for its redrive policy");
                        keep[i] = true;
                        continue;
                    }
                };
                let Some(c) = (match self.with_etag(c).await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(queue, message_id = id, error = %e, "head of a notified object failed, message left on the queue to come back");
                        keep[i] = true;
                        continue;
                    }
                }) else {
                    continue;
                };
                for r in to {
                    let route = &routes[r];
                    let entry = ledger_entry(
                        &route.prefix,
                        &route.own_prefixes,
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
        }

        let mut out = Received {
            messages: messages.len(),
            ..Received::default()
        };
        let mut failed = vec![false; routes.len()];
        for (r, route) in routes.iter().enumerate() {
            let mut recorded = 0;
            for chunk in objects[r].chunks(1000) {
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

        let mut done = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if keep[i] || needs[i].iter().any(|&r| failed[r]) {
                continue;
            }
            if let Some(handle) = m.receipt_handle() {
                let entry = DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
                    .map_err(|e| err("delete", e.to_string()))?;
                done.push(entry);
            }
        }
        if !done.is_empty() {
            let sent = done.len();
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(done))
                .send()
                .await
                .map_err(|e| err("delete", DisplayErrorContext(&e).to_string()))?;
            for f in deleted.failed() {
                // The message comes back after its visibility timeout; recording it again
                // changes nothing.
                warn!(queue, error = %f.message().unwrap_or(f.code()), "sqs message not deleted, it will be received again");
            }
            out.deleted = sent - deleted.failed().len();
        }
        Ok(out)
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

    /// Receives until `stop`, waiting a little after a failure.
    async fn run(self, stop: CancellationToken) {
        let queue = self.queue_url.clone();
        while !stop.is_cancelled() {
            // Dropping a receive in flight is safe: its messages come back later, and what
            // was recorded is not recorded twice.
            let result = tokio::select! {
                r = self.run_once() => r,
                _ = stop.cancelled() => break,
            };
            if let Err(e) = result {
                warn!(queue = %queue, error = %e, "receiving notifications failed");
                tokio::select! {
                    _ = tokio::time::sleep(QUEUE_RETRY) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
        debug!(queue = %queue, "queue receiver stopped");
    }
}

/// A receiver running for one queue.
struct RunningReceiver {
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The process's queue receivers: one per distinct queue URL among the running pipelines.
pub struct Queues {
    s3: S3,
    control: Control,
    running: HashMap<String, RunningReceiver>,
}

impl Queues {
    /// No receivers yet; [`Queues::route`] starts them.
    pub fn new(s3: S3, control: Control) -> Queues {
        Queues {
            s3,
            control,
            running: HashMap::new(),
        }
    }

    /// Makes the receivers match `routes` (the running pipelines that have a queue): a queue
    /// still named gets its new routes for its next message, a new queue gets a receiver, and
    /// the receiver of a queue no pipeline names any more is stopped.
    pub fn route(&mut self, routes: Vec<Route>) {
        let mut by_queue: HashMap<String, Vec<Route>> = HashMap::new();
        for r in routes {
            by_queue.entry(r.queue_url.clone()).or_default().push(r);
        }
        self.running.retain(|url, r| {
            let named = by_queue.contains_key(url);
            if !named {
                info!(queue = %url, "no pipeline names this queue any more, receiver stopped");
                r.stop.cancel();
            }
            named
        });
        for (url, routes) in by_queue {
            let pipelines: Vec<&str> = routes.iter().map(|r| r.pipeline.as_str()).collect();
            let pipelines = pipelines.join(",");
            if let Some(r) = self.running.get(&url) {
                *r.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
                debug!(queue = %url, pipelines = %pipelines, "queue routes updated");
                continue;
            }
            match QueueReceiver::new(&url, &self.s3, self.control.clone(), routes) {
                Ok(receiver) => {
                    info!(queue = %url, pipelines = %pipelines, "queue receiver started");
                    let stop = CancellationToken::new();
                    let routes = receiver.routes.clone();
                    let task = tokio::spawn(receiver.run(stop.clone()));
                    self.running
                        .insert(url, RunningReceiver { routes, stop, task });
                }
                // Configuration validation has checked the URL.
                Err(e) => error!(queue = %url, error = %e, "queue receiver not started"),
            }
        }
    }

    /// Stops every receiver; a receive in flight is dropped, its messages come back later.
    pub async fn stop(self) {
        for r in self.running.values() {
            r.stop.cancel();
        }
        for (url, r) in self.running {
            if let Err(e) = r.task.await {
                warn!(queue = %url, error = %e, "queue receiver ended abnormally");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_queue_urls_origin() {
        assert_eq!(
            crate::config::sqs_endpoint(
                "https://sqs.us-east-1.amazonaws.com/123456789012/stage-events"
            )
            .unwrap(),
            "https://sqs.us-east-1.amazonaws.com"
        );
        assert_eq!(
            crate::config::sqs_endpoint("http://127.0.0.1:5000/123456789012/q").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert!(crate::config::sqs_endpoint("sqs://queue").is_err());
        assert!(crate::config::sqs_endpoint("stage-events").is_err());
    }

    fn route(name: &str, bucket: &str, prefix: &str, own: &[&str]) -> Route {
        Route {
            pipeline: name.into(),
            queue_url: "http://127.0.0.1:1/1/q".into(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            own_prefixes: own.iter().map(|s| s.to_string()).collect(),
            sealer: Arc::new(Notify::new()),
        }
    }

    #[test]
    fn a_record_goes_to_every_pipeline_watching_its_key() {
        let routes = vec![
            route("a", "stage", "in/a/", &["errors/a/"]),
            route("b", "stage", "in/b/", &["errors/b/"]),
            route("all", "stage", "in/", &["in/a/errors/"]),
            route("other", "elsewhere", "in/a/", &[]),
        ];
        assert_eq!(
            destinations(&routes, "stage", "in/a/x.json"),
            Destinations::Pipelines(vec![0, 2])
        );
        assert_eq!(
            destinations(&routes, "stage", "in/b/x.json"),
            Destinations::Pipelines(vec![1, 2])
        );
        assert_eq!(
            destinations(&routes, "elsewhere", "in/a/x.json"),
            Destinations::Pipelines(vec![3])
        );
        // Under one pipeline's own prefix: the others that watch it still get it.
        assert_eq!(
            destinations(&routes, "stage", "in/a/errors/x.json"),
            Destinations::Pipelines(vec![0])
        );
        // The loader's own output that no pipeline watches is not left for the redrive policy.
        assert_eq!(
            destinations(&routes, "stage", "errors/a/x.json"),
            Destinations::Own
        );
        assert_eq!(
            destinations(&routes, "stage", "out/x.json"),
            Destinations::Unwatched
        );
        assert_eq!(
            destinations(&routes, "third", "in/a/x.json"),
            Destinations::Unwatched
        );
    }
}
