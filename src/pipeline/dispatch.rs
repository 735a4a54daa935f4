//! Dispatch: claim a sealed batch under a renewable lease, hand it to the destination, retry
//! within the batch's budget, and settle it as loaded or skipped with `load_errors` rows and an
//! error artifact. The only place that loops, sleeps, records and settles.

use super::liveness::{Identity, Liveness};
use super::retry::{Budget, RetryClock};
use crate::artifacts::{self, FailedRecords};
use crate::codes;
use crate::config::after_load::AfterLoad;
use crate::config::PipelineConfig;
use crate::control::batches::Settlement;
use crate::control::load_errors::ErrorContext;
use crate::control::{Control, ControlError};
use crate::destination::{
    ArtifactKind, Attempt, Destination, DestinationError, FailureKind, LostChunk, Outcome, WriteOff,
};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use crate::source::s3::S3;
use crate::telemetry as m;
use chrono::Utc;
use futures::FutureExt;
use metrics::{counter, histogram};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Runs a destination call, turning a panic inside it into an error carrying the panic's
/// message, so one bad record or bug fails an attempt instead of a worker.
async fn guarded<T>(fut: impl std::future::Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .await
        .map_err(|panic| panic_message(panic.as_ref()))
}

/// The text of a panic payload.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into());
    format!("panicked: {text}")
}

/// Aborts the lease renewer when the delivery that owns it ends, however it ends (a panic
/// included), so a dead delivery never keeps a batch leased.
struct RenewerGuard(JoinHandle<()>);

impl Drop for RenewerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Timings shared by every dispatcher of the process.
#[derive(Debug, Clone)]
pub struct DispatchTimings {
    /// How long a claim lasts before another worker may take the batch over.
    pub lease: Duration,
    /// First retry wait.
    pub backoff_initial: Duration,
    /// Longest retry wait.
    pub backoff_max: Duration,
}

/// Delivers one pipeline's batches.
pub struct Dispatcher {
    /// The pipeline.
    pub pipeline: Arc<PipelineConfig>,
    /// The control database.
    pub control: Control,
    /// S3, for error artifacts.
    pub s3: S3,
    /// Where batches go.
    pub destination: Arc<dyn Destination>,
    /// This worker's name in leases (for display).
    pub worker: String,
    /// This process's identity as a lease owner.
    pub liveness: Liveness,
    /// Lease and backoff timings.
    pub timings: DispatchTimings,
    /// Woken when a batch settles loaded, so its after-load actions start without waiting
    /// for the after-load task's tick.
    pub loaded: Arc<Notify>,
}

/// What a write-off stored.
#[derive(Debug, Default)]
struct WrittenOff {
    /// `load_errors` rows handed over (stored, or logged when refused).
    rows: u64,
    /// Those about one record (line number above 0).
    records_rejected: i64,
}

/// Why a delivery stopped before settling.
enum Interrupted {
    /// Shutdown arrived during a backoff wait.
    Shutdown,
    /// The lease was lost (another worker took the batch over).
    LeaseLost,
    /// This process could not confirm its lock on the control database: another process may
    /// soon take its batches over.
    LivenessLost,
}

impl Dispatcher {
    /// Claims and delivers batches until `stop` is cancelled. A delivery in progress when `stop`
    /// fires runs on until it ends or `abort` fires; a backoff wait ends at once and the batch
    /// is released for the next process.
    pub async fn run(
        self: Arc<Self>,
        wake: Arc<Notify>,
        stop: CancellationToken,
        abort: CancellationToken,
    ) {
        let name = self.pipeline.name.clone();
        let mut liveness = self.liveness.clone();
        while !stop.is_cancelled() {
            let Some(me) = liveness.live(&stop).await else {
                return;
            };
            match self
                .control
                .claim(&name, &self.worker, me.worker, self.timings.lease)
                .await
            {
                Ok(Some(batch)) => {
                    let (id, token) = (batch.id, batch.lease_token.clone());
                    tokio::select! {
                        done = AssertUnwindSafe(self.deliver(batch, &me, &stop)).catch_unwind() => {
                            if let Err(panic) = done {
                                // The renewer died with the delivery; the batch is taken over
                                // after its lease, and the worker goes on.
                                error!(pipeline = %name, batch_id = id, error = %panic_message(panic.as_ref()), "delivery panicked outside the destination");
                            }
                        }
                        _ = abort.cancelled() => {
                            warn!(pipeline = %name, batch_id = id, "shutdown grace period over, releasing batch unfinished");
                            if let Err(e) = self.control.release(id, &token).await {
                                error!(pipeline = %name, batch_id = id, error = %e, "release failed");
                            }
                        }
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
                Err(e) => {
                    warn!(pipeline = %name, error = %e, "claim failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Delivers one claimed batch, renewing its lease meanwhile. When the lease cannot be
    /// renewed in time (the control database is away) or was taken over (this process was
    /// paused past it), the attempt stops: past the lease, another worker may hold the batch.
    async fn deliver(&self, mut batch: ClaimedBatch, me: &Identity, stop: &CancellationToken) {
        batch.lease = Some(super::lease::of(&self.control, &batch, self.timings.lease));
        let lost = CancellationToken::new();
        let _renewer = RenewerGuard({
            let (control, token, lease, lost, id) = (
                self.control.clone(),
                batch.lease_token.clone(),
                self.timings.lease,
                lost.clone(),
                batch.id,
            );
            let pipeline = self.pipeline.name.clone();
            tokio::spawn(async move {
                let mut renewed = Instant::now();
                loop {
                    tokio::time::sleep(lease / 3).await;
                    // A process paused (SIGSTOP) past its lease wakes up here: the batch may
                    // be someone else's already, so stop before asking.
                    if renewed.elapsed() >= lease {
                        warn!(pipeline = %pipeline, batch_id = id, "lease ran out while this worker was stalled, stopping the attempt");
                        lost.cancel();
                        return;
                    }
                    match tokio::time::timeout(lease / 6, control.renew(id, &token, lease)).await {
                        Ok(Ok(true)) => renewed = Instant::now(),
                        Ok(Ok(false)) => {
                            lost.cancel();
                            return;
                        }
                        Ok(Err(e)) => {
                            warn!(pipeline = %pipeline, batch_id = id, error = %e, "lease renewal failed")
                        }
                        Err(_) => {
                            warn!(pipeline = %pipeline, batch_id = id, "lease renewal got no answer")
                        }
                    }
                    if renewed.elapsed() + lease / 3 >= lease {
                        warn!(pipeline = %pipeline, batch_id = id, "lease could not be renewed before it ends, stopping the attempt");
                        lost.cancel();
                        return;
                    }
                }
            })
        });
        let result = tokio::select! {
            r = self.attempts(&batch, stop) => r,
            _ = lost.cancelled() => Err(Interrupted::LeaseLost),
            _ = me.lost.cancelled() => Err(Interrupted::LivenessLost),
        };
        let pipeline = &self.pipeline.name;
        match result {
            Ok(()) => {}
            Err(Interrupted::LeaseLost) => {
                warn!(pipeline = %pipeline, batch_id = batch.id, "lease lost, another worker owns the batch now");
            }
            Err(Interrupted::Shutdown) => {
                info!(pipeline = %pipeline, batch_id = batch.id, "shutting down, batch left for the next start");
                if let Err(e) = self.control.release(batch.id, &batch.lease_token).await {
                    error!(pipeline = %pipeline, batch_id = batch.id, error = %e, "release failed");
                }
            }
            Err(Interrupted::LivenessLost) => {
                warn!(pipeline = %pipeline, batch_id = batch.id, "attempt stopped: this process's lock on the control database is not confirmed");
                // The attempt has stopped: the batch may be taken over now. Until the database
                // answers, its lease ends on its own (or with this worker's session).
                let started = Instant::now();
                while let Err(e) = self.control.release(batch.id, &batch.lease_token).await {
                    if started.elapsed() >= self.timings.lease || stop.is_cancelled() {
                        warn!(pipeline = %pipeline, batch_id = batch.id, error = %e, "cannot release the batch, its lease ends on its own");
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn attempts(
        &self,
        batch: &ClaimedBatch,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let pipeline = self.pipeline.name.as_str();
        let budget = self.pipeline.retry_duration();
        let deadline = Budget::new(batch.first_attempt_at, budget);
        let mut clock = RetryClock::new(self.timings.backoff_initial, self.timings.backoff_max);
        let mut settlement = Settlement {
            after_load: match self.pipeline.source.after_load {
                AfterLoad::Keep => None,
                a => Some(a.as_str()),
            },
            ..Settlement::default()
        };
        let mut resume = None;
        let mut lean = None;

        if batch.taken_over {
            loop {
                match guarded(self.destination.recover(batch))
                    .await
                    .map_err(DestinationError::needs_operator)
                    .and_then(|r| r)
                {
                    Ok(Some(report)) => {
                        info!(
                            pipeline,
                            batch_id = batch.id,
                            records = report.delivered,
                            rejected = report.rejected.len(),
                            skipped_objects = report.skipped_objects.len(),
                            "taken-over batch was already delivered, settling it from what it committed"
                        );
                        let attempt_no = batch.attempts.max(1);
                        self.finish(batch, attempt_no, report, &mut settlement)
                            .await;
                        return Ok(());
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // Delivering without knowing could load the batch twice: wait and ask again.
                        warn!(pipeline, batch_id = batch.id, error = %e, "cannot tell whether the batch was delivered");
                        self.undecided(batch, &e.to_string()).await;
                        self.pause(&mut clock, deadline.remaining(), stop).await?;
                    }
                }
            }
        }

        loop {
            let attempt_no = match self
                .control
                .start_attempt(batch.id, &batch.lease_token)
                .await
            {
                Ok(Some(n)) => n,
                Ok(None) => return Err(Interrupted::LeaseLost),
                Err(e) => {
                    warn!(pipeline, batch_id = batch.id, error = %e, "cannot count the attempt, delivering anyway");
                    batch.attempts + 1
                }
            };
            let attempt = match guarded(self.destination.deliver(
                batch,
                attempt_no.max(1) as u32,
                resume.take(),
            ))
            .await
            {
                Ok(a) => a,
                Err(panic) => {
                    counter!(m::DELIVERY_PANICS, "pipeline" => pipeline.to_string()).increment(1);
                    Attempt::failed(FailureKind::NeedsOperator, panic)
                }
            };
            let Some((failure, left)) = self
                .absorb(batch, attempt_no, attempt, &mut settlement)
                .await
            else {
                self.settle(batch, &settlement, false).await;
                return Ok(());
            };
            let (kind, error) = (failure.kind, failure.to_string());
            // From the first failure until the batch settles, freed buffers go back to the
            // system (see `memory`).
            lean.get_or_insert_with(crate::memory::lean_heap);
            match kind {
                FailureKind::Transient => {
                    warn!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %error, "delivery failed, will retry")
                }
                FailureKind::NeedsOperator => {
                    error!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %error, "delivery refused, retrying until the budget ends")
                }
            }
            if let Err(e) = self
                .control
                .record_failure(batch.id, &batch.lease_token, &error)
                .await
            {
                warn!(pipeline, batch_id = batch.id, error = %e, "cannot keep the attempt's error");
            }
            if deadline.remaining().is_zero() {
                let mut left = left;
                // A destination that cannot tell whether the batch landed refuses to write it
                // off: wait as a takeover does, and ask again.
                while let Some(back) = self
                    .give_up(batch, attempt_no, left, &error, &mut settlement, budget)
                    .await
                {
                    left = back;
                    self.pause(&mut clock, self.timings.backoff_max, stop)
                        .await?;
                }
                return Ok(());
            }
            self.pause(&mut clock, deadline.remaining(), stop).await?;
            resume = left;
        }
    }

    /// Records what a delivered attempt (or a recovered one) reports and settles the batch
    /// loaded.
    async fn finish(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        report: Attempt,
        settlement: &mut Settlement,
    ) {
        // A recovered report is a delivered one: nothing comes back to retry.
        let _ = self.absorb(batch, attempt_no, report, settlement).await;
        self.settle(batch, settlement, false).await;
    }

    /// Counts an attempt, adds it to the settlement and records its rejected rows and failed
    /// records; returns its failure, if it failed. Rows go in before any state change and are
    /// kept once per batch, so a crash in between records them again without doubling them.
    async fn absorb(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        attempt: Attempt,
        settlement: &mut Settlement,
    ) -> Option<(DestinationError, Option<crate::destination::Resume>)> {
        let Attempt {
            outcome,
            rejected,
            failed_records,
            skipped_objects,
            delivered,
        } = attempt;
        let failure = match outcome {
            Outcome::Delivered => None,
            Outcome::Failed { error, resume } => Some((error, resume)),
        };
        let labels = [("pipeline", self.pipeline.name.clone())];
        counter!(m::RECORDS_DELIVERED, &labels).increment(delivered);
        counter!(m::RECORDS_REJECTED, &labels).increment(rejected.len() as u64);
        let outcome = match failure.as_ref().map(|f| f.0.kind) {
            None => "delivered",
            Some(FailureKind::Transient) => "transient",
            Some(FailureKind::NeedsOperator) => "permanent",
        };
        counter!(m::DELIVERY_ATTEMPTS, "pipeline" => self.pipeline.name.clone(), "outcome" => outcome).increment(1);
        settlement.records_delivered += delivered as i64;
        settlement.records_rejected += rejected.len() as i64;
        settlement.skipped_objects.extend(skipped_objects);
        self.record_errors(batch, attempt_no, &rejected).await;
        self.write_failed_records(batch, attempt_no, &failed_records)
            .await;
        failure
    }

    /// Waits out one backoff step, or returns at once on shutdown.
    /// A batch waits to learn whether it was delivered: counted on `/metrics` and kept as the
    /// batch's last error, which `status` and the status page show.
    async fn undecided(&self, batch: &ClaimedBatch, error: &str) {
        counter!(m::UNDECIDED_WAITS, "pipeline" => self.pipeline.name.clone()).increment(1);
        let text = format!("cannot tell whether the batch was delivered, waiting: {error}");
        if let Err(e) = self
            .control
            .record_failure(batch.id, &batch.lease_token, &text)
            .await
        {
            warn!(pipeline = %self.pipeline.name, batch_id = batch.id, error = %e, "cannot keep the batch's error");
        }
    }

    async fn pause(
        &self,
        clock: &mut RetryClock,
        left: Duration,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let wait = clock.wait(left).unwrap_or_else(|| clock.step());
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = stop.cancelled() => Err(Interrupted::Shutdown),
        }
    }

    /// The budget ran out: the destination hands over what was lost in bounded chunks while
    /// this stores each chunk's rows (one batched INSERT) and streams its failed records into
    /// one multipart upload, so a write-off of a large batch holds a few chunks, never the
    /// batch. Then the batch is settled skipped (or loaded, when nothing was lost after all).
    /// Returns what to hand the write-off again when the destination could not tell whether
    /// the batch was delivered (nothing is settled then).
    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        left: Option<crate::destination::Resume>,
        last_error: &str,
        settlement: &mut Settlement,
        budget: Duration,
    ) -> Option<Option<crate::destination::Resume>> {
        let pipeline = self.pipeline.name.as_str();
        let _heap = crate::memory::lean_heap();
        warn!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %last_error, "retry budget exhausted, skipping batch");
        test_pause(
            "STAGELOAD_TEST_PAUSE_BEFORE_WRITE_OFF_MS",
            pipeline,
            batch.id,
        )
        .await;
        counter!(m::BUDGET_EXHAUSTED, "pipeline" => pipeline.to_string()).increment(1);
        let reason = format!(
            "retry duration of {}s exhausted after {attempt_no} attempts; last error: {last_error}",
            budget.as_secs()
        );
        let (mut out, chunks) = WriteOff::channel();
        let produce = async {
            let given = guarded(self.destination.give_up(
                batch,
                attempt_no.max(1) as u32,
                left,
                &reason,
                &mut out,
            ))
            .await;
            // What was handed over before a panic is kept all the same.
            out.close().await;
            given
        };
        let (given, written) = tokio::join!(produce, self.write_off(batch, attempt_no, chunks));
        let panicked = given.is_err();
        let given = match given {
            Ok(g) => g,
            Err(panic) => {
                error!(pipeline, batch_id = batch.id, error = %panic, rows = written.rows, "writing off the batch panicked; one row per object besides the rows already written");
                crate::destination::GiveUp::default()
            }
        };
        if let Some(u) = given.undecided {
            warn!(pipeline, batch_id = batch.id, error = %u.error, "cannot tell whether the batch was delivered, not writing it off yet");
            self.undecided(batch, &u.error.to_string()).await;
            return Some(u.resume);
        }
        if let Some(report) = given.delivered {
            info!(
                pipeline,
                batch_id = batch.id,
                records = report.delivered,
                "the batch was delivered after all, settling it from what it committed"
            );
            self.finish(batch, attempt_no, report, settlement).await;
            return None;
        }
        if given.nothing_lost && written.rows == 0 {
            info!(
                pipeline,
                batch_id = batch.id,
                "everything was delivered in the end, settling as loaded"
            );
            self.settle(batch, settlement, false).await;
            return None;
        }
        settlement.records_rejected += written.records_rejected;
        if written.rows == 0 || panicked {
            let already: HashSet<i64> = settlement.skipped_objects.iter().copied().collect();
            let rows: Vec<LoadError> = batch
                .objects
                .iter()
                .filter(|o| !already.contains(&o.id))
                .map(|o| LoadError {
                    object_id: Some(o.id),
                    filename: o.url(),
                    err_code: codes::BUDGET_EXHAUSTED,
                    err_reason: reason.clone(),
                    ..LoadError::default()
                })
                .collect();
            self.record_errors(batch, attempt_no, &rows).await;
        }
        self.settle(batch, settlement, true).await;
        None
    }

    /// Stores the chunks of a write-off as they come: each chunk's rows in one batched INSERT,
    /// its failed records appended to one failed-record object (a multipart upload).
    async fn write_off(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        mut chunks: tokio::sync::mpsc::Receiver<LostChunk>,
    ) -> WrittenOff {
        let pipeline = self.pipeline.name.as_str();
        let mut done = WrittenOff::default();
        let mut failed: Option<FailedRecords> = None;
        let mut fenced = false;
        while let Some(chunk) = chunks.recv().await {
            // A taken-over batch is another worker's: what is still handed over is drained
            // (the destination waits on this channel) but neither stored nor uploaded.
            if fenced {
                continue;
            }
            done.rows += chunk.rows.len() as u64;
            done.records_rejected += chunk.rows.iter().filter(|r| r.line_number > 0).count() as i64;
            if let Some(first) = chunk.rows.first() {
                debug!(pipeline, batch_id = batch.id, rows = chunk.rows.len(), records = chunk.failed_records, filename = %first.filename, line = first.line_number, "recording written-off chunk");
            }
            if !self.store_errors(batch, attempt_no, &chunk.rows).await {
                fenced = true;
                continue;
            }
            if chunk.failed_records == 0 {
                continue;
            }
            let ArtifactKind::Records(kind) = self.destination.artifact() else {
                continue;
            };
            let file = failed.get_or_insert_with(|| {
                let key = artifacts::failed_records_key(
                    &self.pipeline.error_prefix(),
                    kind,
                    pipeline,
                    batch.id,
                    attempt_no,
                    Utc::now(),
                );
                FailedRecords::new(self.s3.clone(), self.pipeline.error_bucket(), &key)
            });
            file.append(&chunk.failed_lines, chunk.failed_records).await;
        }
        let artifact = match failed {
            Some(file) => {
                let w = file.finish().await;
                match &w.error {
                    None => {
                        info!(pipeline, batch_id = batch.id, failed_records = %w.url, records = w.records, parts = w.parts, "failed records written")
                    }
                    Some(e) => {
                        error!(pipeline, batch_id = batch.id, failed_records = %w.url, records = w.records, dropped = w.dropped, error = %e, "failed records not written to S3; load_errors rows keep them")
                    }
                }
                w.records
            }
            None => 0,
        };
        if done.rows > 0 {
            warn!(
                pipeline,
                batch_id = batch.id,
                rows = done.rows,
                records = done.records_rejected,
                failed_records = artifact,
                "batch written off: load_errors rows recorded for what was lost"
            );
        }
        done
    }

    async fn settle(&self, batch: &ClaimedBatch, s: &Settlement, skipped: bool) {
        let pipeline = self.pipeline.name.as_str();
        test_pause("STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS", pipeline, batch.id).await;
        test_hold_before_settle(pipeline, batch.id).await;
        // The manifest of what is skipped goes to S3 before the state changes, so a crash in
        // between writes it again rather than losing it.
        let skipped_objects: Vec<StagedObject> = batch
            .objects
            .iter()
            .filter(|o| skipped || s.skipped_objects.contains(&o.id))
            .cloned()
            .collect();
        if self.destination.artifact() == ArtifactKind::Manifest && !skipped_objects.is_empty() {
            let key = artifacts::error_manifest_key(
                &self.pipeline.error_prefix(),
                pipeline,
                batch.id,
                Utc::now(),
            );
            let bucket = self.pipeline.error_bucket();
            match self
                .s3
                .put(
                    bucket,
                    &key,
                    artifacts::manifest(&skipped_objects),
                    "application/json",
                )
                .await
            {
                Ok(()) => {
                    info!(pipeline, batch_id = batch.id, manifest = %format!("s3://{bucket}/{key}"), objects = skipped_objects.len(), "error manifest written")
                }
                Err(e) => {
                    error!(pipeline, batch_id = batch.id, error = %e, "error manifest not written; load_errors rows still list the objects")
                }
            }
        }
        // A short control-database outage right after a delivery must not leave the batch
        // for a takeover that would send it again: retry while the lease holds (the renewer
        // ends this attempt when it no longer does).
        let mut wait = Duration::from_millis(200);
        let state = if skipped { "skipped" } else { "loaded" };
        loop {
            let result = if skipped {
                self.control
                    .settle_skipped(batch.id, &batch.lease_token, s)
                    .await
            } else {
                self.control
                    .settle_loaded(batch.id, &batch.lease_token, s)
                    .await
            };
            match result {
                Ok(true) => {
                    counter!(m::BATCHES_SETTLED, "pipeline" => pipeline.to_string(), "state" => state)
                        .increment(1);
                    if !skipped {
                        self.loaded.notify_one();
                    }
                    let took = (Utc::now() - batch.first_attempt_at)
                        .to_std()
                        .unwrap_or_default();
                    histogram!(m::DELIVERY_SECONDS, "pipeline" => pipeline.to_string())
                        .record(took.as_secs_f64());
                    info!(
                        pipeline,
                        batch_id = batch.id,
                        state,
                        records = s.records_delivered,
                        rejected = s.records_rejected,
                        "batch settled"
                    );
                    return;
                }
                Ok(false) => {
                    warn!(
                        pipeline,
                        batch_id = batch.id,
                        "settlement refused: the lease was taken over, the batch is another worker's now"
                    );
                    return;
                }
                Err(e) => {
                    warn!(pipeline, batch_id = batch.id, error = %e, "settle failed, retrying while the lease holds");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn record_errors(&self, batch: &ClaimedBatch, attempt_no: i32, rows: &[LoadError]) {
        for row in rows {
            warn!(
                pipeline = %self.pipeline.name,
                batch_id = batch.id,
                filename = %row.filename,
                line = row.line_number,
                err_code = row.err_code,
                error = %row.err_reason,
                "record rejected"
            );
        }
        self.store_errors(batch, attempt_no, rows).await;
    }

    /// Stores rows in `load_errors` without logging each (a write-off logs a summary). False
    /// when the lease was taken over: the rows were refused, as every write of a stale owner is.
    async fn store_errors(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        rows: &[LoadError],
    ) -> bool {
        if rows.is_empty() {
            return true;
        }
        let target = self.destination.target();
        let ctx = ErrorContext {
            pipeline: &self.pipeline.name,
            destination: self.destination.kind(),
            target: &target,
            batch_id: batch.id,
            lease_token: &batch.lease_token,
            attempts: attempt_no,
            first_attempt_at: batch.first_attempt_at,
        };
        // The rows must not be lost: keep trying while the database is away, but a value it
        // refuses would never go in, so that is not retried (the rows are stored one by one).
        let mut wait = Duration::from_millis(200);
        let refused = loop {
            match self.control.record_errors(&ctx, rows).await {
                Ok(_) => return true,
                Err(e @ ControlError::LeaseLost { .. }) => break e,
                Err(e) if e.is_transient() => {
                    error!(pipeline = %self.pipeline.name, batch_id = batch.id, error = %e, "cannot record load errors, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
                Err(e) => {
                    error!(pipeline = %self.pipeline.name, batch_id = batch.id, error = %e, "load errors refused by the control database, storing them one by one");
                    match self.control.record_errors_one_by_one(&ctx, rows).await {
                        Ok(()) => return true,
                        Err(e) => break e,
                    }
                }
            }
        };
        warn!(pipeline = %self.pipeline.name, batch_id = batch.id, rows = rows.len(), error = %refused, "load errors refused: the lease was taken over, the batch is another worker's now");
        false
    }

    async fn write_failed_records(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        records: &[serde_json::Value],
    ) {
        let ArtifactKind::Records(kind) = self.destination.artifact() else {
            return;
        };
        if records.is_empty() {
            return;
        }
        let key = artifacts::failed_records_key(
            &self.pipeline.error_prefix(),
            kind,
            &self.pipeline.name,
            batch.id,
            attempt_no,
            Utc::now(),
        );
        if let Err(e) = self
            .s3
            .put(
                self.pipeline.error_bucket(),
                &key,
                artifacts::json_lines(records),
                "application/x-ndjson",
            )
            .await
        {
            error!(pipeline = %self.pipeline.name, batch_id = batch.id, error = %e, "failed records not written to S3; load_errors rows keep them");
        }
    }
}

/// Test hook: `STAGELOAD_TEST_HOLD_BEFORE_SETTLE=<path>` holds every settlement until the file
/// exists, so a test can release it at a moment it chose (a control database that is down, not
/// one that may be). Never set in production.
async fn test_hold_before_settle(pipeline: &str, batch: i64) {
    let Some(path) = std::env::var_os("STAGELOAD_TEST_HOLD_BEFORE_SETTLE") else {
        return;
    };
    warn!(pipeline, batch_id = batch, path = ?path, "test hook: holding before settling");
    while !std::path::Path::new(&path).exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Test hooks: `STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS=<ms>` pauses every settlement and
/// `STAGELOAD_TEST_PAUSE_BEFORE_WRITE_OFF_MS=<ms>` every write-off, so tests can hold a worker
/// between a delivery (or its last attempt) and what follows. Never set in production.
async fn test_pause(var: &'static str, pipeline: &str, batch: i64) {
    let Some(ms) = std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    let what = match var {
        "STAGELOAD_TEST_PAUSE_BEFORE_SETTLE_MS" => "settling",
        _ => "writing off",
    };
    warn!(
        pipeline,
        batch_id = batch,
        ms,
        "test hook: pausing before {what}"
    );
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
