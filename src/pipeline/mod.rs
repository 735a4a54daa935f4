//! One pipeline at run time: discovery on its poll interval, sealing by the buffer rules, and its
//! dispatch workers. Its notification queue, when it has one, is read by the process's receiver
//! for that queue (`discovery::sqs::Queues`, shared by every pipeline naming it), which records
//! into this pipeline's ledger and wakes its sealer. Data flows one way: discovery never waits
//! on delivery.

mod after_load;
pub mod dispatch;
mod lease;
pub mod liveness;
pub mod retry;

use crate::config::PipelineConfig;
use crate::control::Control;
use crate::destination::Destination;
use crate::discovery::announce;
use crate::discovery::listing::Discoverer;
use crate::source::s3::S3;
use dispatch::{DispatchTimings, Dispatcher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often pending objects are checked against the buffer rules.
const SEAL_TICK: Duration = Duration::from_millis(500);

/// Everything one pipeline needs to run.
pub struct PipelineRuntime {
    /// The pipeline.
    pub config: Arc<PipelineConfig>,
    /// The control database.
    pub control: Control,
    /// S3.
    pub s3: S3,
    /// Its destination.
    pub destination: Arc<dyn Destination>,
    /// This process's name in leases.
    pub worker: String,
    /// This process's identity as a lease owner.
    pub liveness: liveness::Liveness,
    /// Lease and backoff timings.
    pub timings: DispatchTimings,
    /// How many of its dispatch workers are alive (for `/readyz` and the metrics).
    pub live_workers: Arc<AtomicUsize>,
    /// Wakes its sealer when objects are recorded: by its listing, or by the receiver of its
    /// notification queue, which holds a clone.
    pub discovered: Arc<Notify>,
}

impl PipelineRuntime {
    fn own_prefixes(&self) -> Vec<String> {
        self.config.own_prefixes()
    }

    /// Runs discovery, sealing and dispatch until `stop`; in-flight deliveries get until
    /// `abort` to finish.
    pub async fn run(self, stop: CancellationToken, abort: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        let name = self.config.name.clone();

        let mut discoverer = Discoverer::new(
            (*self.config).clone(),
            self.s3.clone(),
            self.control.clone(),
            self.own_prefixes(),
        );
        let poll = Duration::from_secs(self.config.source.poll_interval_s);
        let (stop_d, name_d) = (stop.clone(), name.clone());
        let discovered = self.discovered.clone();
        let discovered_tx = discovered.clone();
        tasks.spawn(async move {
            while !stop_d.is_cancelled() {
                match discoverer.run_once().await {
                    Ok(0) => {}
                    Ok(n) => announce(&name_d, n, "listing", &discovered_tx),
                    Err(e) => warn!(pipeline = %name_d, error = %e, "discovery failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop_d.cancelled() => {}
                }
            }
        });

        let (control, config, stop_s, wake_s) = (
            self.control.clone(),
            self.config.clone(),
            stop.clone(),
            wake.clone(),
        );
        let kind = self.destination.kind();
        tasks.spawn(async move {
            while !stop_s.is_cancelled() {
                match control.seal(&config.name, kind, &config.buffer).await {
                    Ok(ids) if !ids.is_empty() => {
                        debug!(pipeline = %config.name, batches = ids.len(), "sealed batches");
                        for _ in &ids {
                            wake_s.notify_one();
                        }
                    }
                    Ok(_) => {}
                    Err(e) => warn!(pipeline = %config.name, error = %e, "sealing failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(SEAL_TICK) => {}
                    _ = discovered.notified() => {}
                    _ = stop_s.cancelled() => {}
                }
            }
        });

        let loaded = Arc::new(Notify::new());
        if self.config.source.after_load != crate::config::after_load::AfterLoad::Keep {
            tasks.spawn(after_load::run(
                self.config.clone(),
                self.control.clone(),
                self.s3.clone(),
                self.timings.lease,
                loaded.clone(),
                stop.clone(),
            ));
        }

        for n in 0..self.config.workers {
            let dispatcher = Arc::new(Dispatcher {
                pipeline: self.config.clone(),
                control: self.control.clone(),
                s3: self.s3.clone(),
                destination: self.destination.clone(),
                worker: format!("{}/{}", self.worker, n),
                liveness: self.liveness.clone(),
                timings: self.timings.clone(),
                loaded: loaded.clone(),
            });
            let (wake, stop, abort, live) = (
                wake.clone(),
                stop.clone(),
                abort.clone(),
                self.live_workers.clone(),
            );
            let name = name.clone();
            // A worker that dies (a panic the dispatcher did not catch) is started again: with
            // one worker, the pipeline would otherwise stop while everything else looks fine.
            tasks.spawn(async move {
                loop {
                    set_live(&live, 1);
                    let ended =
                        tokio::spawn(dispatcher.clone().run(wake.clone(), stop.clone(), abort.clone()))
                            .await;
                    set_live(&live, -1);
                    match ended {
                        Err(e) if e.is_panic() && !stop.is_cancelled() => {
                            let why = crate::pipeline::dispatch::panic_message(e.into_panic().as_ref());
                            tracing::error!(pipeline = %name, worker = n, error = %why, "dispatch worker died, starting it again");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        _ => return,
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        info!(pipeline = %name, "pipeline stopped");
    }
}

/// Counts a worker starting (+1) or ending (-1); `/readyz` and the metrics read the count.
fn set_live(live: &AtomicUsize, delta: isize) {
    if delta > 0 {
        live.fetch_add(1, Ordering::Relaxed);
    } else {
        live.fetch_sub(1, Ordering::Relaxed);
    }
}
