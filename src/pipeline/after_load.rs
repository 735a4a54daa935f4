//! After-load actions at run time: a task per pipeline with `after_load` set claims the actions
//! its settled batches made due (only ever for objects settled `loaded`, and for Redshift only
//! after the COPY committed, since settling follows the commit), applies them to S3 and records
//! each outcome once. A failing action is retried on its own budget (`after_load_retry_s`)
//! and then marked `failed`; the object stays where it is.

use crate::config::after_load::{parse_tag, DEFAULT_TAG};
use crate::config::PipelineConfig;
use crate::control::after_load::{retry_delay, DueAction, Finished};
use crate::control::Control;
use crate::source::s3::{Applied, S3Error, MAX_COPY_BYTES, S3};
use crate::telemetry as m;
use futures::StreamExt;
use metrics::counter;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Actions claimed per round.
const CLAIM: i64 = 64;
/// Actions in flight at once.
const PARALLEL: usize = 8;
/// How often due actions are looked for when the last round found none and no batch settled
/// loaded meanwhile (a settle wakes the task at once): what brings retries due, and actions a
/// settle of another replica made due.
const IDLE: Duration = Duration::from_secs(5);

/// Runs the pipeline's after-load actions until `stop`. A claim holds for `hold` (the batch
/// lease): after that another replica, or this one restarted, may take the action again, which
/// is safe since every action is.
pub async fn run(
    config: Arc<PipelineConfig>,
    control: Control,
    s3: S3,
    hold: Duration,
    loaded: Arc<Notify>,
    stop: CancellationToken,
) {
    let pipeline = config.name.as_str();
    while !stop.is_cancelled() {
        let due = match control.claim_after_load(pipeline, CLAIM, hold).await {
            Ok(due) => due,
            Err(e) => {
                warn!(pipeline, error = %e, "after-load actions not claimed");
                Vec::new()
            }
        };
        let full = due.len() as i64 == CLAIM;
        futures::stream::iter(due)
            .for_each_concurrent(PARALLEL, |a| apply(&config, &control, &s3, a))
            .await;
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(IDLE) => {}
                _ = loaded.notified() => {}
                _ = stop.cancelled() => {}
            }
        }
    }
}

async fn apply(config: &PipelineConfig, control: &Control, s3: &S3, a: DueAction) {
    let pipeline = config.name.as_str();
    test_pause("before", pipeline, &a.key).await;
    let result = act(config, s3, &a).await;
    test_pause("after", pipeline, &a.key).await;
    let outcome = match result {
        Ok(applied) => {
            let (how, moved) = match applied {
                Applied::Done(moved) => (Finished::Done, moved),
                Applied::Superseded => (Finished::Superseded, None),
                Applied::Gone => (Finished::Gone, None),
            };
            match control.finish_after_load(a.id, how, moved.as_deref()).await {
                Ok(true) => {
                    info!(pipeline, object = %format!("s3://{}/{}", a.bucket, a.key), action = %a.action, outcome = how.as_str(), moved_to = moved.as_deref().unwrap_or(""), "after-load action applied");
                    how.as_str()
                }
                Ok(false) => return,
                Err(e) => {
                    // The action is done and safe to repeat: the claim runs out and it is
                    // applied and recorded again.
                    warn!(pipeline, object = %format!("s3://{}/{}", a.bucket, a.key), error = %e, "after-load action applied but not recorded");
                    return;
                }
            }
        }
        Err(e) => {
            let give_up = a.age_s >= config.source.after_load_retry_s as f64;
            let delay = retry_delay(a.attempts);
            if give_up {
                warn!(pipeline, object = %format!("s3://{}/{}", a.bucket, a.key), action = %a.action, attempts = a.attempts + 1, error = %e, "after-load action given up; the object stays");
            } else {
                warn!(pipeline, object = %format!("s3://{}/{}", a.bucket, a.key), action = %a.action, attempts = a.attempts + 1, retry_in_s = delay.as_secs(), error = %e, "after-load action failed");
            }
            let error = e.to_string();
            if let Err(e) = control.retry_after_load(a.id, &error, delay, give_up).await {
                warn!(pipeline, error = %e, "after-load failure not recorded");
                return;
            }
            if give_up {
                "failed"
            } else {
                "retried"
            }
        }
    };
    counter!(m::AFTER_LOAD_ACTIONS, "pipeline" => pipeline.to_string(), "outcome" => outcome)
        .increment(1);
}

async fn act(config: &PipelineConfig, s3: &S3, a: &DueAction) -> Result<Applied, S3Error> {
    let src = &config.source;
    match a.action.as_str() {
        "delete" => s3.delete_if_unchanged(&a.bucket, &a.key, &a.etag).await,
        "tag" => {
            let tag = src.after_load_tag.as_deref().unwrap_or(DEFAULT_TAG);
            // Checked at startup; an action recorded under an older config falls back.
            let (k, v) = parse_tag(tag).unwrap_or_else(|_| parse_tag(DEFAULT_TAG).unwrap());
            s3.tag_if_unchanged(&a.bucket, &a.key, &a.etag, (&k, &v))
                .await
        }
        "move" => {
            if a.size > MAX_COPY_BYTES {
                return Err(S3Error::Request {
                    op: "copy",
                    bucket: a.bucket.clone(),
                    key: a.key.clone(),
                    message: "objects over 5 GiB cannot be moved with CopyObject".into(),
                });
            }
            let prefix = src.after_load_prefix.as_deref().unwrap_or("archive/");
            let to_bucket = src.after_load_bucket.as_deref().unwrap_or(&a.bucket);
            let to_key = format!("{prefix}{}", a.key);
            s3.move_if_unchanged(&a.bucket, &a.key, &a.etag, to_bucket, &to_key)
                .await
        }
        other => Err(S3Error::Request {
            op: "after-load action",
            bucket: a.bucket.clone(),
            key: a.key.clone(),
            message: format!("unknown action {other:?} in the ledger"),
        }),
    }
}

/// Test hook: `STAGELOAD_TEST_AFTER_LOAD_PAUSE=<before|after>:<ms>` holds every action just
/// before it is applied, or between applying it and recording it, so tests can kill the
/// daemon there. Never set in production.
async fn test_pause(point: &str, pipeline: &str, key: &str) {
    let Ok(spec) = std::env::var("STAGELOAD_TEST_AFTER_LOAD_PAUSE") else {
        return;
    };
    let Some((at, ms)) = spec.split_once(':') else {
        return;
    };
    let Ok(ms) = ms.parse::<u64>() else {
        return;
    };
    if at == point {
        warn!(
            pipeline,
            key, ms, "test hook: pausing after-load action {point}"
        );
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}
