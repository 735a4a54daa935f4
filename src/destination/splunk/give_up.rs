//! The retry budget ran out: name every record that did not make it. Requests still waiting
//! for an ack get until their ack timeout (as Firehose waits even when retry time has run
//! out); then each record of the requests left, and each record never read from its object,
//! becomes a `load_errors` row (9100) and a failed-event record, handed to the dispatcher in
//! bounded chunks ([`WriteOff`]) as the objects are read back from S3, never all at once.

use super::failed::{self, Lost, Why};
use super::state::{Chunk, Progress};
use super::SplunkDestination;
use crate::codes;
use crate::destination::{GiveUp, WriteOff};
use crate::model::{ClaimedBatch, LoadError};
use crate::source::records::{self, Step, Walk};
use std::time::Duration;
use tracing::{info, warn};

/// Firehose's code when no more specific error is known.
const MAX_RETRIES_FAILED: &str = "Splunk.MaxRetriesFailed";

/// What is left of `p` when the budget is gone.
pub(super) async fn collect(
    dest: &SplunkDestination,
    batch: &ClaimedBatch,
    attempts: u32,
    mut p: Progress,
    reason: &str,
    out: &mut WriteOff,
) -> GiveUp {
    let chunks = wait_for_acks(dest, batch, &mut p).await;
    let firehose_code = p.last_error.unwrap_or(MAX_RETRIES_FAILED);
    let why = Why {
        err_code: codes::BUDGET_EXHAUSTED,
        reason,
        firehose_code,
        attempts,
    };
    for chunk in &chunks {
        for (i, r) in chunk.records.iter().enumerate() {
            let raw = dest.encoder.original(chunk.event_bytes(i));
            let lost = Lost {
                object: &batch.objects[r.object as usize],
                line: r.line,
                ordinal: r.ordinal,
                raw: &raw,
            };
            out.record(failed::row(&lost, &why), &failed::record(&lost, &why))
                .await;
        }
    }
    drop(chunks);
    let mut walk = Walk::new(&dest.s3, &dest.source, &batch.objects, p.unread())
        .with_hook(dest.transforms.clone());
    while let Some(step) = walk.next().await {
        match step {
            Step::Block(block) => {
                let object = &batch.objects[block.index];
                for (r, bytes) in block.records() {
                    let lost = Lost {
                        object,
                        line: r.line,
                        ordinal: r.ordinal,
                        raw: bytes,
                    };
                    out.record(failed::row(&lost, &why), &failed::record(&lost, &why))
                        .await;
                }
                for e in block.errors() {
                    out.row(records::record_error_row(object, e)).await;
                }
                walk.recycle(block);
            }
            Step::Done { .. } => {}
            Step::Skipped { row, .. } => out.row(*row).await,
            Step::Unreadable { index, error } => {
                let object = &batch.objects[index];
                out.row(LoadError {
                    object_id: Some(object.id),
                    filename: object.url(),
                    err_code: codes::BUDGET_EXHAUSTED,
                    err_reason: format!(
                        "{reason}; records from ordinal {} on were not delivered and could not be read back: {error}",
                        p.objects[index].next_ordinal
                    ),
                    ..LoadError::default()
                })
                .await;
            }
        }
    }
    // Every request was acked during the final wait and every object was read to its end.
    GiveUp {
        nothing_lost: out.rows() == 0 && p.objects.iter().all(|o| o.done),
        ..GiveUp::default()
    }
}

/// Polls for requests still inside their ack timeout; returns the chunks not acknowledged.
async fn wait_for_acks(
    dest: &SplunkDestination,
    batch: &ClaimedBatch,
    p: &mut Progress,
) -> Vec<Chunk> {
    let timeout = dest.ack_timeout();
    let (mut waiting, mut left): (Vec<Chunk>, Vec<Chunk>) = std::mem::take(&mut p.chunks)
        .into_iter()
        .partition(|c| c.ack.is_some_and(|(_, at)| at.elapsed() < timeout));
    let Some(channel) = p.channel.as_ref().map(|c| c.id.clone()) else {
        left.append(&mut waiting);
        return left;
    };
    let interval = Duration::from_secs_f64(dest.config.ack_poll_interval_s);
    let mut acked = 0;
    while !waiting.is_empty() {
        tokio::time::sleep(interval).await;
        let ids: Vec<u64> = waiting
            .iter()
            .filter_map(|c| c.ack.map(|(id, _)| id))
            .collect();
        match dest.hec.poll_acks(&channel, &ids).await {
            Ok(acks) => {
                let concurrency = dest.config.concurrency;
                for c in std::mem::take(&mut waiting) {
                    match c.ack {
                        Some((id, _)) if acks.get(&id) == Some(&true) => {
                            // Maybe another request's `true` (a reissued id): not proof.
                            if p.ack_ambiguous(&c, id, concurrency) {
                                left.push(c);
                            } else {
                                acked += 1;
                            }
                        }
                        _ => waiting.push(c),
                    }
                }
            }
            Err(e) => {
                warn!(pipeline = %dest.pipeline, batch_id = batch.id, error = %e, "ack poll failed")
            }
        }
        let (still, expired): (Vec<Chunk>, Vec<Chunk>) = waiting
            .into_iter()
            .partition(|c| c.ack.is_some_and(|(_, at)| at.elapsed() < timeout));
        waiting = still;
        left.extend(expired);
    }
    if acked > 0 {
        info!(pipeline = %dest.pipeline, batch_id = batch.id, requests = acked, "requests acknowledged after the retry budget ran out, not counted as lost");
    }
    left
}
