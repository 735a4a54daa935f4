//! The daemon: migrate, build each pipeline's destination, run every pipeline, and stop
//! cleanly on SIGTERM or SIGINT (a second signal exits at once).

use crate::config::Config;
use crate::control::Control;
use crate::destination::{self, Destination};
use crate::pipeline::dispatch::DispatchTimings;
use crate::pipeline::PipelineRuntime;
use crate::source::s3::S3;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The name this process uses in leases: the configured one, or host name and pid.
pub fn worker_id(config: &Config) -> String {
    config.daemon.worker_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!("{host}:{}", std::process::id())
    })
}

/// Destinations supplied by the caller instead of built from the config, by pipeline name
/// (for embedding and for tests that inject faults).
pub type DestinationOverrides = HashMap<String, Arc<dyn Destination>>;

/// Runs until `shutdown` resolves, then drains: no new claims, in-flight deliveries get the
/// grace period, and anything unfinished is left in the database for the next start.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, shutdown, DestinationOverrides::new()).await
}

/// [`run`], with some pipelines' destinations supplied by the caller.
pub async fn run_with(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    mut overrides: DestinationOverrides,
) -> anyhow::Result<()> {
    let control = Control::new(&config.control)?;
    let applied = control.migrate().await?;
    info!(applied, "control database ready");
    let s3 = S3::new(&config.s3).await;
    let worker = worker_id(&config);
    let timings = DispatchTimings {
        lease: Duration::from_secs(config.daemon.lease_s),
        backoff_initial: Duration::from_millis(config.daemon.backoff_initial_ms),
        backoff_max: Duration::from_secs(config.daemon.backoff_max_s),
    };

    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for p in &config.pipelines {
        let dest = match overrides.remove(&p.name) {
            Some(d) => d,
            None => destination::build(p, &s3).await?,
        };
        if let Err(e) = dest.check().await {
            // The destination may come back; batches wait in the database meanwhile.
            error!(pipeline = %p.name, destination = dest.kind(), error = %e, "destination check failed");
        }
        let rt = PipelineRuntime {
            config: Arc::new(p.clone()),
            control: control.clone(),
            s3: s3.clone(),
            destination: dest,
            worker: worker.clone(),
            timings: timings.clone(),
        };
        info!(pipeline = %p.name, destination = p.destination.kind(), bucket = %p.source.bucket, prefix = %p.source.prefix, "pipeline started");
        tasks.spawn(rt.run(stop.clone(), abort.clone()));
    }
    info!(worker = %worker, pipelines = config.pipelines.len(), "stageload running");

    shutdown.await;
    info!(grace_s = config.daemon.shutdown_grace_s, "shutting down");
    stop.cancel();
    let grace = Duration::from_secs(config.daemon.shutdown_grace_s);
    let abort_later = abort.clone();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        abort_later.cancel();
    });
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            warn!(error = %e, "pipeline task ended abnormally");
        }
    }
    info!("stopped");
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits the process at once.
pub async fn signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        warn!("second signal, exiting at once");
        std::process::exit(130);
    });
}
