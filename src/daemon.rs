//! The daemon: migrate, build each pipeline's destination, run every pipeline and the admin
//! port, speak systemd's notify protocol, apply reloaded configs (SIGHUP), and stop cleanly on
//! SIGTERM or SIGINT (a second signal exits at once).

use crate::admin::{self, AdminPipeline, AdminState};
use crate::config::{Config, PipelineConfig};
use crate::control::Control;
use crate::destination::{self, Destination};
use crate::discovery::sqs::{Queues, Route};
use crate::notify::{notify, watchdog_interval};
use crate::pipeline::dispatch::DispatchTimings;
use crate::pipeline::liveness::Liveness;
use crate::pipeline::PipelineRuntime;
use crate::source::s3::S3;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Destinations supplied by the caller instead of built from the config, by pipeline name
/// (for embedding and for tests that inject faults).
pub type DestinationOverrides = HashMap<String, Arc<dyn Destination>>;

/// The name this process shows in leases: the configured one, or host name and pid. A display
/// name only: two processes may share it (one config file on two hosts, containers that are all
/// pid 1); which leases are live is decided by each process's lock (`control::workers`).
pub fn worker_id(config: &Config) -> String {
    config.daemon.worker_id.clone().unwrap_or_else(|| {
        // Test hook: `STAGELOAD_TEST_HOST_PID=<host>:<pid>` stands for both, as two containers
        // with the same host name, each pid 1, would show. Never set in production.
        if let Ok(forced) = std::env::var("STAGELOAD_TEST_HOST_PID") {
            return forced;
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        format!("{host}:{}", std::process::id())
    })
}

/// One running pipeline and the tokens that stop it.
struct Running {
    config: PipelineConfig,
    destination: Arc<dyn Destination>,
    live_workers: Arc<std::sync::atomic::AtomicUsize>,
    /// Its sealer's wake-up, for the receiver of its notification queue.
    discovered: Arc<Notify>,
    /// Its S3 identity (its role and region, else `[s3]`'s), which its queue is read with.
    s3: S3,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What every pipeline shares.
struct Shared {
    control: Control,
    installation: String,
    s3: S3,
    worker: String,
    liveness: Liveness,
    timings: DispatchTimings,
    abort: CancellationToken,
}

impl Shared {
    async fn start(
        &self,
        p: &PipelineConfig,
        overrides: &mut DestinationOverrides,
    ) -> anyhow::Result<Running> {
        // The pipeline's KMS key, if it has its own, on everything it writes.
        let s3 = self.s3.with_kms_key(p.kms_key_id.as_deref());
        let src = &p.source;
        let s3 = if src.region.is_some() || src.role_arn.is_some() {
            let session = src
                .session_name
                .clone()
                .unwrap_or_else(|| format!("stageload-{}", p.name));
            let role = src.role_arn.as_deref().map(|arn| crate::aws::Role {
                arn,
                external_id: src.external_id.as_deref(),
                session_name: &session,
            });
            s3.with_sdk_config(
                crate::aws::derive(s3.sdk_config(), src.region.as_deref(), role).await,
            )
        } else {
            s3
        };
        let dest = match overrides.remove(&p.name) {
            Some(d) => d,
            None => destination::build(p, &s3, &self.installation).await?,
        };
        if let Err(e) = dest.check().await {
            // The destination may come back; batches wait in the database meanwhile.
            error!(pipeline = %p.name, destination = dest.kind(), error = %e, "destination check failed");
        }
        let stop = CancellationToken::new();
        let live_workers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let discovered = Arc::new(Notify::new());
        let rt = PipelineRuntime {
            live_workers: live_workers.clone(),
            discovered: discovered.clone(),
            config: Arc::new(p.clone()),
            control: self.control.clone(),
            s3: s3.clone(),
            destination: dest.clone(),
            worker: self.worker.clone(),
            liveness: self.liveness.clone(),
            timings: self.timings.clone(),
        };
        info!(pipeline = %p.name, destination = p.destination.kind(), bucket = %p.source.bucket, prefix = %p.source.prefix, "pipeline started");
        let task = tokio::spawn(rt.run(stop.clone(), self.abort.clone()));
        Ok(Running {
            config: p.clone(),
            destination: dest,
            live_workers,
            discovered,
            s3,
            stop,
            task,
        })
    }
}

/// Runs until `shutdown` resolves, then drains: no new claims, in-flight deliveries get the
/// grace period, and anything unfinished is left in the database for the next start.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (_keep, reloads) = mpsc::channel(1);
    run_with(config, shutdown, reloads, DestinationOverrides::new()).await
}

/// [`run`], taking reloaded configs from `reloads` and some pipelines' destinations from
/// `overrides`.
pub async fn run_with(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
    mut reloads: mpsc::Receiver<Config>,
    mut overrides: DestinationOverrides,
) -> anyhow::Result<()> {
    // Installed before anything counts, so the first discoveries are not lost.
    if !config.admin.listen.is_empty() {
        admin::metrics::install();
    }
    notify("STATUS=applying migrations");
    let control = Control::new(&config.control)?;
    tokio::pin!(shutdown);
    // A control database that is restarting, or not up yet, is waited for: the daemon starts
    // when it answers instead of exiting (a schema from another version is still refused).
    let mut wait = Duration::from_millis(500);
    let (applied, installation) = loop {
        let ready = async {
            let applied = control.migrate().await?;
            Ok::<_, crate::control::ControlError>((applied, control.installation_id().await?))
        };
        match ready.await {
            Ok(r) => break r,
            Err(e) if e.is_schema_mismatch() => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "control database not ready, waiting for it");
                notify("STATUS=waiting for the control database");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = &mut shutdown => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_secs(15));
            }
        }
    };
    info!(applied, installation = %installation, "control database ready");
    let me = worker_id(&config);
    let liveness_stop = CancellationToken::new();
    let (liveness, liveness_task) =
        crate::pipeline::liveness::start(control.clone(), me.clone(), liveness_stop.clone());
    let shared = Shared {
        control: control.clone(),
        installation,
        s3: S3::new(&config.s3).await,
        worker: me,
        liveness,
        timings: DispatchTimings {
            lease: Duration::from_secs(config.daemon.lease_s),
            backoff_initial: Duration::from_millis(config.daemon.backoff_initial_ms),
            backoff_max: Duration::from_secs(config.daemon.backoff_max_s),
        },
        abort: CancellationToken::new(),
    };

    let mut running: Vec<Running> = Vec::new();
    for p in &config.pipelines {
        running.push(shared.start(p, &mut overrides).await?);
    }
    let mut queues = Queues::new(shared.s3.clone(), control.clone());
    queues.route(queue_routes(&running));
    let admin_pipelines = Arc::new(RwLock::new(admin_view(&running)));
    let admin_stop = CancellationToken::new();
    let retention_stop = CancellationToken::new();
    let retention = config.control.retention().map(|period| {
        tokio::spawn(crate::control::retention::run(
            control.clone(),
            period,
            Duration::from_secs(config.control.retention_interval_s),
            i64::from(config.control.retention_chunk),
            retention_stop.clone(),
        ))
    });
    if !config.admin.listen.is_empty() {
        let listen = config.admin.listen.parse()?;
        let state = AdminState {
            control: control.clone(),
            s3: shared.s3.clone(),
            pipelines: admin_pipelines.clone(),
        };
        let addr = admin::serve(listen, state, admin_stop.clone()).await?;
        info!(addr = %addr, "admin listening");
    }
    info!(worker = %shared.worker, pipelines = running.len(), "stageload running");
    notify(&format!(
        "READY=1\nSTATUS=running {} pipeline(s)",
        running.len()
    ));
    let watchdog = watchdog_interval().map(|every| {
        let control = control.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                // Only a process that can still reach its database counts as alive.
                if control.ping().await.is_ok() {
                    notify("WATCHDOG=1");
                }
            }
        })
    });

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(new) = reloads.recv() => {
                // Pipelines the reload stops or changes get no more notifications from here
                // on (theirs stay on the queue); the new set is routed once it runs.
                let staying = running.iter().filter(|r| new.pipelines.contains(&r.config));
                queues.route(queue_routes(staying));
                apply_reload(&shared, &mut running, &config, new, &mut overrides).await;
                queues.route(queue_routes(&running));
                *admin_pipelines.write().expect("admin pipelines lock") = admin_view(&running);
                notify(&format!("STATUS=running {} pipeline(s)", running.len()));
            }
        }
    }

    let grace = config.daemon.shutdown_grace_s;
    info!(grace_s = grace, "shutting down");
    notify("STOPPING=1\nSTATUS=stopping");
    if let Some(w) = watchdog {
        w.abort();
    }
    retention_stop.cancel();
    queues.stop().await;
    for r in &running {
        r.stop.cancel();
    }
    let abort = shared.abort.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(grace)).await;
        abort.cancel();
    });
    for r in running {
        if let Err(e) = r.task.await {
            warn!(pipeline = %r.config.name, error = %e, "pipeline task ended abnormally");
        }
    }
    if let Some(r) = retention {
        if let Err(e) = r.await {
            warn!(error = %e, "retention task ended abnormally");
        }
    }
    // Last: the leases of this process are released, so its worker can be retired.
    liveness_stop.cancel();
    if let Err(e) = liveness_task.await {
        warn!(error = %e, "liveness task ended abnormally");
    }
    admin_stop.cancel();
    info!("stopped");
    Ok(())
}

/// The running pipelines that have a notification queue, for the queue receivers.
fn queue_routes<'a>(running: impl IntoIterator<Item = &'a Running>) -> Vec<Route> {
    running
        .into_iter()
        .filter_map(|r| Route::of(&r.config, r.discovered.clone(), Some(r.s3.clone())))
        .collect()
}

fn admin_view(running: &[Running]) -> Vec<AdminPipeline> {
    running
        .iter()
        .map(|r| AdminPipeline {
            config: Arc::new(r.config.clone()),
            destination: r.destination.clone(),
            live_workers: r.live_workers.clone(),
        })
        .collect()
}

/// Stops pipelines that were removed or changed (their in-flight deliveries finish first, in the
/// background) and starts new or changed ones. `[control]`, `[s3]`, `[admin]` and `[daemon]`
/// need a restart.
async fn apply_reload(
    shared: &Shared,
    running: &mut Vec<Running>,
    current: &Config,
    new: Config,
    overrides: &mut DestinationOverrides,
) {
    if new.control.database_url != current.control.database_url
        || new.s3 != current.s3
        || new.admin.listen != current.admin.listen
        || new.daemon != current.daemon
    {
        warn!("config reload: [control], [s3], [admin] and [daemon] changes take effect at the next restart");
    }
    let (mut kept, mut stopped, mut started) = (Vec::new(), 0, 0);
    for r in running.drain(..) {
        if new.pipelines.contains(&r.config) {
            kept.push(r);
        } else {
            info!(pipeline = %r.config.name, "config reload: stopping pipeline, in-flight batches finish first");
            r.stop.cancel();
            stopped += 1;
        }
    }
    for p in &new.pipelines {
        if kept.iter().any(|r| r.config == *p) {
            continue;
        }
        match shared.start(p, overrides).await {
            Ok(r) => {
                kept.push(r);
                started += 1;
            }
            Err(e) => {
                error!(pipeline = %p.name, error = %format!("{e:#}"), "config reload: pipeline not started")
            }
        }
    }
    *running = kept;
    info!(
        stopped,
        started,
        pipelines = running.len(),
        "config reloaded"
    );
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

/// Re-reads `path` on every SIGHUP and sends the config on when it is valid; an invalid one is
/// refused with a logged error and the running config stays.
pub fn reload_on_sighup(path: PathBuf) -> mpsc::Receiver<Config> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
        while hup.recv().await.is_some() {
            // RELOADING=1 would need MONOTONIC_USEC (systemd 253); a status line is enough.
            notify("STATUS=reloading config");
            match Config::load(&path) {
                Ok(c) => {
                    info!(path = %path.display(), "config reload requested");
                    if tx.send(c).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    error!(error = %e, "config reload refused, keeping the running config");
                    notify("STATUS=config reload refused, running the previous config");
                }
            }
        }
    });
    rx
}
