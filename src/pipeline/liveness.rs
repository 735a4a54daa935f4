//! This process's identity as a lease owner, kept alive on the control database (see
//! `control::workers`): register, confirm the lock every second, mark other processes whose
//! session is gone, and take the lock back after a broken connection. Attempts run under an
//! [`Identity`] whose `lost` token is cancelled when the lock cannot be confirmed for
//! `OWNER_STOP_AFTER`, which is shorter than the time after which another process may mark this
//! one gone and take its batches over.

use crate::control::workers::{Resumed, Session, OWNER_STOP_AFTER};
use crate::control::Control;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often the lock is confirmed and gone workers are looked for.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// A live identity: the worker id leases name, and a token cancelled when it stops being live.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `workers` row whose lock this process holds.
    pub worker: i32,
    /// Cancelled when the lock can no longer be confirmed: attempts under this identity stop.
    pub lost: CancellationToken,
}

/// The current identity, for the dispatchers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Liveness {
    rx: watch::Receiver<Option<Identity>>,
}

impl Liveness {
    /// The identity to claim under, waiting while there is none; None once `stop` fires.
    pub async fn live(&mut self, stop: &CancellationToken) -> Option<Identity> {
        loop {
            if let Some(id) = self.rx.borrow_and_update().clone() {
                if !id.lost.is_cancelled() {
                    return Some(id);
                }
            }
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = stop.cancelled() => return None,
            }
        }
    }
}

/// Keeps this process's lock until `stop`, then retires the worker; returns the handle at once.
pub fn start(
    control: Control,
    name: String,
    stop: CancellationToken,
) -> (Liveness, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(run(control, name, tx, stop));
    (Liveness { rx }, task)
}

/// The owner's state: the session when connected, the worker id while it may be resumed, the
/// last confirmation and the current identity.
struct Owner {
    session: Option<Session>,
    worker: Option<i32>,
    confirmed: Instant,
    identity: Option<Identity>,
}

async fn run(
    control: Control,
    name: String,
    tx: watch::Sender<Option<Identity>>,
    stop: CancellationToken,
) {
    let mut me = Owner {
        session: None,
        worker: None,
        confirmed: Instant::now(),
        identity: None,
    };
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        wait = HEARTBEAT;
        // Every step ends by the time the attempts must stop, so that check is never late.
        let budget = match me.identity {
            Some(_) => OWNER_STOP_AFTER
                .saturating_sub(me.confirmed.elapsed())
                .max(Duration::from_millis(200)),
            None => Duration::from_secs(10),
        };
        let connected = me.session.as_ref().is_some_and(|s| !s.is_closed());
        let step = async {
            match me.worker {
                Some(_) if connected => confirm(&mut me).await,
                Some(worker) => resume(&control, &mut me, worker).await,
                None => register(&control, &name, &mut me).await,
            }
        };
        if tokio::time::timeout(budget, step).await.is_err() {
            warn!("the control database did not answer this worker in time");
        }
        // Past this, another process may soon mark the worker gone: stop every attempt now.
        if me.confirmed.elapsed() >= OWNER_STOP_AFTER {
            if let Some(id) = me.identity.take() {
                warn!(worker = id.worker, "cannot confirm this process's lock on the control database, stopping its attempts");
                id.lost.cancel();
            }
        }
        let live = me.identity.clone();
        tx.send_if_modified(|cur| {
            let same = match (cur.as_ref(), live.as_ref()) {
                (Some(a), Some(b)) => a.worker == b.worker && !a.lost.is_cancelled(),
                (None, None) => true,
                _ => false,
            };
            if !same {
                *cur = live;
            }
            !same
        });
        if me.session.as_ref().is_some_and(Session::is_closed) {
            // Try to take the lock back at once rather than after a heartbeat.
            wait = Duration::from_millis(200);
        }
    }
    tx.send_replace(None);
    if let Some(s) = me.session.filter(|s| !s.is_closed()) {
        if let Err(e) = s.retire().await {
            warn!(error = %e, "cannot retire this worker; its leases end when its lock is seen free");
        }
    }
}

/// One heartbeat on the live session, then a sweep for gone workers.
async fn confirm(me: &mut Owner) {
    let Some(s) = &me.session else { return };
    let sent = Instant::now();
    match s.heartbeat().await {
        Ok(true) => me.confirmed = sent,
        Ok(false) => {
            warn!(
                worker = s.worker,
                "this worker was marked gone, registering anew"
            );
            abandon(me);
            return;
        }
        Err(e) => {
            warn!(worker = s.worker, error = %e, "worker heartbeat failed");
            return;
        }
    }
    if me.identity.is_none() {
        // Confirmed again after its attempts were stopped: claims may go on.
        me.identity = Some(Identity {
            worker: s.worker,
            lost: CancellationToken::new(),
        });
    }
    match s.sweep().await {
        Ok(gone) => {
            for (worker, name) in gone {
                info!(gone_worker = worker, gone_name = %name, "a lease owner's session ended, its batches can be taken over");
            }
        }
        Err(e) => warn!(error = %e, "cannot look for gone workers"),
    }
}

/// Takes the worker's lock back on a new connection.
async fn resume(control: &Control, me: &mut Owner, worker: i32) {
    me.session = None;
    match control.resume_worker(worker).await {
        Ok(Resumed::Live(s)) => {
            info!(
                worker,
                "took this worker's lock back after its connection broke"
            );
            me.confirmed = Instant::now();
            me.session = Some(s);
            if me.identity.is_none() {
                me.identity = Some(Identity {
                    worker,
                    lost: CancellationToken::new(),
                });
            }
        }
        Ok(Resumed::Gone) => {
            warn!(
                worker,
                "this worker was marked gone while its connection was broken, registering anew"
            );
            abandon(me);
        }
        Ok(Resumed::Busy) => {}
        Err(e) => warn!(worker, error = %e, "cannot reconnect this worker"),
    }
}

/// Registers a new identity.
async fn register(control: &Control, name: &str, me: &mut Owner) {
    match control.register_worker(name).await {
        Ok(s) => {
            info!(worker = s.worker, name, "registered as a lease owner");
            me.worker = Some(s.worker);
            me.confirmed = Instant::now();
            me.identity = Some(Identity {
                worker: s.worker,
                lost: CancellationToken::new(),
            });
            me.session = Some(s);
        }
        Err(e) => warn!(error = %e, "cannot register this worker, retrying"),
    }
}

/// Drops an identity that can no longer be resumed: its attempts stop, the next round registers.
fn abandon(me: &mut Owner) {
    if let Some(id) = me.identity.take() {
        id.lost.cancel();
    }
    me.session = None;
    me.worker = None;
}
