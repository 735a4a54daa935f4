//! Dispatch: claim a sealed batch under a renewable lease, hand it to the destination, retry
//! within the batch's budget, and settle it as loaded or skipped with `load_errors` rows and an
//! error artifact. The only place that loops, sleeps, records and settles.

use super::artifacts;
use super::retry::RetryClock;
use crate::codes;
use crate::config::PipelineConfig;
use crate::control::batches::Settlement;
use crate::control::load_errors::ErrorContext;
use crate::control::Control;
use crate::destination::{ArtifactKind, Attempt, Destination, FailureKind, Outcome};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use crate::source::s3::S3;
use crate::telemetry as m;
use chrono::Utc;
use metrics::{counter, histogram};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

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
    /// This worker's name in leases.
    pub worker: String,
    /// Lease and backoff timings.
    pub timings: DispatchTimings,
}

/// Why a delivery stopped before settling.
enum Interrupted {
    /// Shutdown arrived during a backoff wait.
    Shutdown,
    /// The lease was lost (another worker took the batch over).
    LeaseLost,
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
        while !stop.is_cancelled() {
            match self
                .control
                .claim(&name, &self.worker, self.timings.lease)
                .await
            {
                Ok(Some(batch)) => {
                    let id = batch.id;
                    tokio::select! {
                        _ = self.deliver(batch, &stop) => {}
                        _ = abort.cancelled() => {
                            warn!(pipeline = %name, batch_id = id, "shutdown grace period over, releasing batch unfinished");
                            if let Err(e) = self.control.release(id, &self.worker).await {
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

    /// Delivers one claimed batch, renewing its lease meanwhile.
    async fn deliver(&self, batch: ClaimedBatch, stop: &CancellationToken) {
        let lost = CancellationToken::new();
        let renewer = {
            let (control, worker, lease, lost, id) = (
                self.control.clone(),
                self.worker.clone(),
                self.timings.lease,
                lost.clone(),
                batch.id,
            );
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match control.renew(id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            lost.cancel();
                            return;
                        }
                        Err(e) => warn!(batch_id = id, error = %e, "lease renewal failed"),
                    }
                }
            })
        };
        let result = tokio::select! {
            r = self.attempts(&batch, stop) => r,
            _ = lost.cancelled() => Err(Interrupted::LeaseLost),
        };
        renewer.abort();
        let pipeline = &self.pipeline.name;
        match result {
            Ok(()) => {}
            Err(Interrupted::LeaseLost) => {
                warn!(pipeline = %pipeline, batch_id = batch.id, "lease lost, another worker owns the batch now");
            }
            Err(Interrupted::Shutdown) => {
                info!(pipeline = %pipeline, batch_id = batch.id, "shutting down, batch left for the next start");
                if let Err(e) = self.control.release(batch.id, &self.worker).await {
                    error!(pipeline = %pipeline, batch_id = batch.id, error = %e, "release failed");
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
        let deadline =
            batch.first_attempt_at + chrono::Duration::from_std(budget).unwrap_or_default();
        let mut clock = RetryClock::new(self.timings.backoff_initial, self.timings.backoff_max);
        let mut settlement = Settlement::default();
        let mut resume = None;

        if batch.taken_over {
            loop {
                match self.destination.already_delivered(batch).await {
                    Ok(true) => {
                        info!(
                            pipeline,
                            batch_id = batch.id,
                            "taken-over batch was already delivered, settling"
                        );
                        self.settle(batch, &settlement, false).await;
                        return Ok(());
                    }
                    Ok(false) => break,
                    Err(e) => {
                        // Delivering without knowing could load the batch twice: wait and ask again.
                        warn!(pipeline, batch_id = batch.id, error = %e, "cannot tell whether the batch was delivered");
                        self.pause(&mut clock, remaining(deadline), stop).await?;
                    }
                }
            }
        }

        loop {
            let attempt_no = self
                .control
                .start_attempt(batch.id)
                .await
                .unwrap_or(batch.attempts + 1);
            let attempt = self.destination.deliver(batch, resume.take()).await;
            let Attempt {
                outcome,
                rejected,
                failed_records,
                skipped_objects,
                delivered,
            } = attempt;
            settlement.records_delivered += delivered as i64;
            settlement.records_rejected += rejected.len() as i64;
            let labels = [("pipeline", self.pipeline.name.clone())];
            counter!(m::RECORDS_DELIVERED, &labels).increment(delivered);
            counter!(m::RECORDS_REJECTED, &labels).increment(rejected.len() as u64);
            let outcome_label = match &outcome {
                Outcome::Delivered => "delivered",
                Outcome::Failed {
                    kind: FailureKind::Transient,
                    ..
                } => "transient",
                Outcome::Failed {
                    kind: FailureKind::Permanent,
                    ..
                } => "permanent",
            };
            counter!(m::DELIVERY_ATTEMPTS, "pipeline" => self.pipeline.name.clone(), "outcome" => outcome_label).increment(1);
            settlement.skipped_objects.extend(skipped_objects);
            self.record_errors(batch, attempt_no, &rejected).await;
            self.write_failed_records(batch, attempt_no, &failed_records)
                .await;
            match outcome {
                Outcome::Delivered => {
                    self.settle(batch, &settlement, false).await;
                    return Ok(());
                }
                Outcome::Failed {
                    kind,
                    error,
                    resume: left,
                } => {
                    match kind {
                        FailureKind::Transient => {
                            warn!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %error, "delivery failed, will retry")
                        }
                        FailureKind::Permanent => {
                            error!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %error, "delivery refused, retrying until the budget ends")
                        }
                    }
                    let _ = self.control.record_failure(batch.id, &error).await;
                    if remaining(deadline).is_zero() {
                        self.give_up(batch, attempt_no, left, &error, &mut settlement, budget)
                            .await;
                        return Ok(());
                    }
                    self.pause(&mut clock, remaining(deadline), stop).await?;
                    resume = left;
                }
            }
        }
    }

    /// Waits out one backoff step, or returns at once on shutdown.
    async fn pause(
        &self,
        clock: &mut RetryClock,
        left: Duration,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let wait = clock.wait(left).unwrap_or(Duration::from_millis(100));
        tokio::select! {
            _ = tokio::time::sleep(wait) => Ok(()),
            _ = stop.cancelled() => Err(Interrupted::Shutdown),
        }
    }

    async fn give_up(
        &self,
        batch: &ClaimedBatch,
        attempt_no: i32,
        left: Option<crate::destination::Resume>,
        last_error: &str,
        settlement: &mut Settlement,
        budget: Duration,
    ) {
        let pipeline = self.pipeline.name.as_str();
        warn!(pipeline, batch_id = batch.id, attempts = attempt_no, error = %last_error, "retry budget exhausted, skipping batch");
        counter!(m::BUDGET_EXHAUSTED, "pipeline" => pipeline.to_string()).increment(1);
        let reason = format!(
            "retry duration of {}s exhausted after {attempt_no} attempts; last error: {last_error}",
            budget.as_secs()
        );
        let given = self.destination.give_up(batch, left, &reason).await;
        if given.nothing_lost {
            info!(
                pipeline,
                batch_id = batch.id,
                "everything was delivered in the end, settling as loaded"
            );
            self.settle(batch, settlement, false).await;
            return;
        }
        let already: HashSet<i64> = settlement.skipped_objects.iter().copied().collect();
        let rows = if given.rejected.is_empty() {
            batch
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
                .collect()
        } else {
            given.rejected
        };
        settlement.records_rejected += rows.iter().filter(|r| r.line_number > 0).count() as i64;
        self.record_errors(batch, attempt_no, &rows).await;
        self.write_failed_records(batch, attempt_no, &given.failed_records)
            .await;
        self.settle(batch, settlement, true).await;
    }

    async fn settle(&self, batch: &ClaimedBatch, s: &Settlement, skipped: bool) {
        let pipeline = self.pipeline.name.as_str();
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
        let result = if skipped {
            self.control.settle_skipped(batch.id, &self.worker, s).await
        } else {
            self.control.settle_loaded(batch.id, &self.worker, s).await
        };
        if let Ok(true) = result {
            let state = if skipped { "skipped" } else { "loaded" };
            counter!(m::BATCHES_SETTLED, "pipeline" => pipeline.to_string(), "state" => state)
                .increment(1);
            let took = (Utc::now() - batch.first_attempt_at)
                .to_std()
                .unwrap_or_default();
            histogram!(m::DELIVERY_SECONDS, "pipeline" => pipeline.to_string())
                .record(took.as_secs_f64());
        }
        match result {
            Ok(true) => info!(
                pipeline,
                batch_id = batch.id,
                state = if skipped { "skipped" } else { "loaded" },
                records = s.records_delivered,
                rejected = s.records_rejected,
                "batch settled"
            ),
            Ok(false) => warn!(
                pipeline,
                batch_id = batch.id,
                "batch no longer ours, not settled"
            ),
            Err(e) => {
                error!(pipeline, batch_id = batch.id, error = %e, "settle failed; the batch will be taken over after its lease")
            }
        }
    }

    async fn record_errors(&self, batch: &ClaimedBatch, attempt_no: i32, rows: &[LoadError]) {
        if rows.is_empty() {
            return;
        }
        let target = self.destination.target();
        let ctx = ErrorContext {
            pipeline: &self.pipeline.name,
            destination: self.destination.kind(),
            target: &target,
            batch_id: batch.id,
            attempts: attempt_no,
            first_attempt_at: batch.first_attempt_at,
        };
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
        // The rows must not be lost: keep trying while the database is away.
        let mut wait = Duration::from_millis(200);
        loop {
            match self.control.record_errors(&ctx, rows).await {
                Ok(_) => return,
                Err(e) => {
                    error!(pipeline = %self.pipeline.name, batch_id = batch.id, error = %e, "cannot record load errors, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        }
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

fn remaining(deadline: chrono::DateTime<Utc>) -> Duration {
    (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO)
}
