//! The process's queue receivers ([`Queues`]): one [`QueueReceiver`] per distinct queue URL
//! among the running pipelines, re-routed when the configuration is reloaded.

use super::{QueueReceiver, Route};
use crate::control::Control;
use crate::source::s3::S3;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

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
            // Pipelines sharing a queue share an identity (checked at startup): the first's.
            let s3 = routes
                .first()
                .and_then(|r| r.s3.clone())
                .unwrap_or_else(|| self.s3.clone());
            match QueueReceiver::new(&url, &s3, self.control.clone(), routes) {
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
