//! One `_bulk` request from start to verdict: send, split in halves on 413, and sort the
//! documents into indexed, to retry, and rejected.

use super::bulk::{pending, Item, Pending};
use super::client::{Client, Sent};
use super::retry::{self, BulkAnswer, ItemVerdict, RequestVerdict};
use crate::destination::FailureKind;
use bytes::Bytes;
use std::sync::Arc;

/// What became of one request's documents.
#[derive(Debug, Default)]
pub struct Report {
    /// Documents indexed.
    pub delivered: u64,
    /// Documents to send again.
    pub retry: Vec<Pending>,
    /// Documents rejected for good, with the status and reason in each.
    pub rejected: Vec<Pending>,
    /// Why documents must be sent again, the worst kind first met.
    pub failure: Option<(FailureKind, String)>,
    /// True when the whole request failed (no answer, 429, 5xx, 401...): the cluster is not
    /// taking requests, so the attempt should stop reading more.
    pub halted: bool,
    /// The body's buffer, handed back for reuse.
    pub buffer: Option<Vec<u8>>,
}

impl Report {
    fn fail(&mut self, kind: FailureKind, message: String) {
        match &self.failure {
            Some((FailureKind::NeedsOperator, _)) if kind == FailureKind::Transient => {}
            _ => self.failure = Some((kind, message)),
        }
    }
}

/// Sends a body of `items` and reports what happened to each.
pub async fn run(client: Arc<Client>, buf: Vec<u8>, items: Vec<Item>) -> Report {
    let body = Bytes::from(buf);
    let mut report = Report::default();
    // Ranges of `items` still to send; a 413 replaces its range by its two halves.
    let mut todo = vec![(0, items.len())];
    while let Some((a, b)) = todo.pop() {
        let slice = &items[a..b];
        if slice.is_empty() {
            continue;
        }
        if report.halted {
            for item in slice {
                let why = "not sent: an earlier part of the request failed".to_string();
                report.retry.push(pending(&body, item, 0, why));
            }
            continue;
        }
        let part = body.slice(slice[0].start..slice[slice.len() - 1].end);
        let all = |report: &mut Report, status: u16, why: &str| {
            for item in slice {
                report
                    .retry
                    .push(pending(&body, item, status, why.to_string()));
            }
        };
        match client.bulk(part).await {
            Sent::Unreachable(e) => {
                let why = format!("{}: {e}", client.endpoints());
                all(&mut report, 0, &why);
                report.fail(FailureKind::Transient, why);
                report.halted = true;
            }
            Sent::Answer {
                status: 200,
                body: answer,
            } => match retry::parse_bulk(&answer, slice.len()) {
                Ok(BulkAnswer::AllDone) => report.delivered += slice.len() as u64,
                Ok(BulkAnswer::Items(verdicts)) => {
                    for (item, verdict) in slice.iter().zip(verdicts) {
                        match verdict {
                            ItemVerdict::Done => report.delivered += 1,
                            ItemVerdict::Retry(kind, status, why) => {
                                report.fail(kind, format!("bulk item {status}: {why}"));
                                report.retry.push(pending(&body, item, status, why));
                            }
                            ItemVerdict::Reject(status, why) => {
                                report.rejected.push(pending(&body, item, status, why));
                            }
                        }
                    }
                }
                Err(e) => {
                    let why = e.to_string();
                    all(&mut report, 200, &why);
                    report.fail(FailureKind::Transient, why);
                    report.halted = true;
                }
            },
            Sent::Answer {
                status,
                body: answer,
            } => {
                let why = retry::request_error_text(status, &answer);
                match retry::classify_request(status) {
                    RequestVerdict::Split if slice.len() > 1 => {
                        let mid = a + slice.len() / 2;
                        todo.push((mid, b));
                        todo.push((a, mid));
                    }
                    RequestVerdict::Split => {
                        let why = format!(
                            "{why}: the document alone exceeds the cluster's request size limit"
                        );
                        report.rejected.push(pending(&body, &slice[0], status, why));
                    }
                    RequestVerdict::Retry(kind) => {
                        all(&mut report, status, &why);
                        report.fail(kind, why);
                        report.halted = true;
                    }
                }
            }
        }
    }
    report.buffer = body.try_into_mut().ok().map(Vec::from);
    report
}
