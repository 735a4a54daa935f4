//! One delivery attempt: read the batch's objects (decompression and framing run on the
//! reader thread), pack records into requests, keep up to `concurrency` requests in flight,
//! poll acks, and sort every reply into delivered, rejected, or left for the next attempt.
//!
//! The attempt ends when everything is acknowledged, or when nothing more can be done now: a
//! transient or permanent failure stops new sends (requests in flight still finish), and
//! requests whose ack did not come within `ack_timeout_s` are left to be sent again by the
//! next attempt, after the dispatcher's backoff and only while the retry budget lasts.
//! Requests whose ack id HEC hands out again are sent again at once ([`super::acks`]).

use super::acks::{AckBook, Answer, Fate, Reason};
use super::builder::Builder;
use super::client::{PollError, SendError};
use super::encode::ObjectMeta;
use super::failed::{self, Lost, Why};
use super::pace::PollPace;
use super::retry::{self, Verdict};
use super::state::{Chunk, Progress};
use super::{SplunkDestination, HEC_RESENDS_TOTAL};
use crate::config::HecEndpoint;
use crate::destination::{Attempt, DestinationError, FailureKind, Outcome, Resume};
use crate::model::ClaimedBatch;
use crate::source::records::{self, Step, Walk};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tracing::{debug, warn};

enum Event {
    Response(Result<(u64, Result<Verdict, SendError>), tokio::task::JoinError>),
    Step(Option<Step>),
    Poll,
    Polled(Result<PollResult, tokio::task::JoinError>),
    Idle,
}

/// An ack poll's ids (each with the send it was asked for) and HEC's answer.
type PollResult = (Vec<(u64, u64)>, Result<HashMap<u64, bool>, PollError>);

struct Run<'a> {
    dest: &'a SplunkDestination,
    batch: &'a ClaimedBatch,
    /// The objects left to read, from where the last attempt stopped in each.
    walk: Walk<'a>,
    /// The event fields of the object being read, by its index.
    meta: Option<(usize, ObjectMeta)>,
    /// This attempt's number, for failed-event records' `attemptsMade`.
    attempt: u32,
    p: Progress,
    channel: String,
    report: Attempt,
    builder: Builder,
    queue: VecDeque<Chunk>,
    inflight: HashMap<u64, Chunk>,
    tasks: JoinSet<(u64, Result<Verdict, SendError>)>,
    acks: AckBook,
    timed_out: Vec<Chunk>,
    /// Requests sent again because their ack id was handed out again, or their `true` may
    /// have been another request's.
    reissued: usize,
    ambiguous: usize,
    stop: Option<(FailureKind, String)>,
    next_task: u64,
    warned_no_ack_id: bool,
    pace: PollPace,
    polling: Option<tokio::task::JoinHandle<PollResult>>,
}

/// Attempt number `attempt` at `batch` from `p`.
pub(super) async fn deliver(
    dest: &SplunkDestination,
    batch: &ClaimedBatch,
    attempt: u32,
    p: Progress,
) -> Attempt {
    let mut p = p;
    let channel = p
        .channel
        .get_or_insert_with(|| dest.channels.take())
        .id
        .clone();
    let walk = Walk::new(&dest.s3, &dest.source, &batch.objects, p.unread())
        .with_hook(dest.transforms.clone());
    let mut run = Run {
        dest,
        batch,
        walk,
        meta: None,
        attempt,
        channel,
        report: Attempt::delivered(0),
        builder: Builder::new(dest.config.max_request_bytes),
        queue: VecDeque::new(),
        inflight: HashMap::new(),
        tasks: JoinSet::new(),
        acks: AckBook::default(),
        timed_out: Vec::new(),
        reissued: 0,
        ambiguous: 0,
        stop: None,
        next_task: 0,
        warned_no_ack_id: false,
        pace: PollPace::new(Duration::from_secs_f64(dest.config.ack_poll_interval_s)),
        polling: None,
        p,
    };
    let timeout = dest.ack_timeout();
    let mut resends = 0;
    for mut c in std::mem::take(&mut run.p.chunks) {
        match c.ack {
            Some((id, at)) if at.elapsed() < timeout => {
                if let Some(f) = run.acks.accepted(id, c) {
                    run.fate(f);
                }
            }
            _ => {
                c.ack = None;
                resends += usize::from(c.maybe_indexed);
                run.queue.push_back(c);
            }
        }
    }
    if resends > 0 {
        warn!(pipeline = %dest.pipeline, batch_id = batch.id, requests = resends, channel = %run.channel,
            "sending again requests that were not acknowledged in time; their events may be indexed twice");
    }
    run.main_loop().await;
    run.finish()
}

impl Run<'_> {
    async fn main_loop(&mut self) {
        let mut next_poll = tokio::time::Instant::now() + self.pace.every();
        loop {
            let reading_left = self.p.objects.iter().any(|o| !o.done);
            if !reading_left {
                self.queue.extend(self.builder.finish());
            }
            while self.stop.is_none() && self.room() {
                let Some(c) = self.queue.pop_front() else {
                    break;
                };
                self.launch(c);
            }
            let want_read =
                self.stop.is_none() && reading_left && self.queue.is_empty() && self.room();
            if want_read && !self.walk.is_reading() {
                // Opening an object is awaited on its own, not raced against replies.
                let step = self.walk.next().await;
                self.on_step(step);
                continue;
            }
            let waiting_acks = self.acks.polling_needed() && self.stop.is_none();
            if self.inflight.is_empty()
                && !want_read
                && !waiting_acks
                && self.polling.is_none()
                && (self.queue.is_empty() || self.stop.is_some())
            {
                break;
            }
            // Held back by unacked requests alone: ask again as soon as the pace allows.
            if self.blocked_on_acks() {
                next_poll = next_poll.min(self.pace.last + self.pace.floor);
            }
            let has_tasks = !self.tasks.is_empty();
            let is_polling = self.polling.is_some();
            let poll_due = self.acks.polling_needed() && !is_polling;
            let event = {
                let tasks = &mut self.tasks;
                let walk = &mut self.walk;
                let polling = &mut self.polling;
                tokio::select! {
                    Some(joined) = tasks.join_next(), if has_tasks => Event::Response(joined),
                    polled = poll_reply(polling), if is_polling => Event::Polled(polled),
                    step = walk.next(), if want_read => Event::Step(step),
                    _ = tokio::time::sleep_until(next_poll), if poll_due => Event::Poll,
                    else => Event::Idle,
                }
            };
            match event {
                Event::Response(Ok((id, result))) => {
                    let was_empty = !self.acks.polling_needed();
                    self.on_reply(id, result);
                    if was_empty && self.acks.polling_needed() {
                        let at = tokio::time::Instant::now() + self.pace.every();
                        next_poll = next_poll.max(at);
                    }
                }
                Event::Response(Err(e)) => {
                    self.halt(FailureKind::Transient, format!("request task failed: {e}"));
                }
                Event::Step(step) => self.on_step(step),
                Event::Poll => self.start_poll(),
                Event::Polled(polled) => {
                    self.polling = None;
                    match polled {
                        Ok((ids, answer)) => self.on_poll(&ids, answer),
                        Err(e) => warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id,
                            error = %e, "ack poll task failed"),
                    }
                    next_poll = self.pace.last + self.pace.every();
                }
                Event::Idle => break,
            }
        }
        if let Some(task) = self.polling.take() {
            if let Ok((ids, answer)) = task.await {
                self.on_poll(&ids, answer);
            }
        }
        if self.stop.is_some() && self.acks.polling_needed() {
            let asked = self.acks.asked();
            let ids: Vec<u64> = asked.iter().map(|(id, _)| *id).collect();
            let answer = self.dest.hec.poll_acks(&self.channel, &ids).await;
            self.on_poll(&asked, answer);
        }
        // A stream dropped mid-object is read again from `next_ordinal` next time.
        self.queue.extend(self.builder.finish());
    }

    /// True when requests wait to go out, or records to be read, and only the unacked limit
    /// holds them back.
    fn blocked_on_acks(&self) -> bool {
        let cfg = &self.dest.config;
        let reading_left = self.p.objects.iter().any(|o| !o.done);
        self.stop.is_none()
            && self.acks.len() > 0
            && (reading_left || !self.queue.is_empty())
            && self.inflight.len() < cfg.concurrency
            && !self.room()
    }

    /// Sends an ack poll for every id waiting, as a task of its own so sending and reading
    /// go on while it is answered.
    fn start_poll(&mut self) {
        let asked = self.acks.asked();
        let (hec, channel) = (self.dest.hec.clone(), self.channel.clone());
        self.pace.last = tokio::time::Instant::now();
        self.polling = Some(tokio::spawn(async move {
            let ids: Vec<u64> = asked.iter().map(|(id, _)| *id).collect();
            let answer = hec.poll_acks(&channel, &ids).await;
            (asked, answer)
        }));
    }

    /// Whether another request may go out: under the concurrency limit, and under the limit
    /// of requests held in memory until acknowledged. Requests whose ack timed out are held
    /// for the next attempt and count too: when acks stop coming, reading stops instead of
    /// filling memory with the rest of the batch.
    fn room(&self) -> bool {
        let cfg = &self.dest.config;
        self.inflight.len() < cfg.concurrency
            && self.inflight.len() + self.acks.len() + self.timed_out.len()
                < cfg.max_unacked_requests
    }

    fn launch(&mut self, mut chunk: Chunk) {
        chunk.sent = self.p.sends;
        self.p.sends += 1;
        // A batch taken over from another worker may have been sent, in part, by it: every
        // send of this claim may duplicate events, so each counts as a resend.
        if chunk.maybe_indexed || self.batch.taken_over {
            HEC_RESENDS_TOTAL.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(crate::telemetry::HEC_RESENDS, "pipeline" => self.dest.pipeline.clone())
                .increment(1);
        }
        let id = self.next_task;
        self.next_task += 1;
        let query = match (self.dest.encoder.endpoint(), chunk.records.first()) {
            (HecEndpoint::Raw, Some(r)) => self
                .dest
                .encoder
                .raw_query(&self.batch.objects[r.object as usize]),
            _ => Vec::new(),
        };
        let (hec, channel, body) = (
            self.dest.hec.clone(),
            self.channel.clone(),
            chunk.body.clone(),
        );
        self.tasks
            .spawn(async move { (id, hec.send(&channel, body, &query).await) });
        self.inflight.insert(id, chunk);
    }

    fn on_step(&mut self, step: Option<Step>) {
        match step {
            Some(Step::Block(block)) => {
                let index = block.index;
                let object = &self.batch.objects[index];
                if self.meta.as_ref().is_none_or(|(i, _)| *i != index) {
                    self.meta = Some((index, self.dest.encoder.object_meta(object)));
                }
                let meta = &self.meta.as_ref().expect("set above").1;
                let progress = &mut self.p.objects[index];
                for (r, bytes) in block.records() {
                    let full = self.builder.push(self.dest, meta, index as u32, r, bytes);
                    self.queue.extend(full);
                    progress.next_ordinal = r.ordinal + 1;
                }
                for e in block.errors() {
                    self.report
                        .rejected
                        .push(records::record_error_row(object, e));
                    progress.next_ordinal = progress.next_ordinal.max(e.ordinal + 1);
                }
                self.walk.recycle(block);
            }
            Some(Step::Done { index }) => self.p.objects[index].done = true,
            Some(Step::Skipped { index, row }) => {
                self.report.rejected.push(*row);
                self.report
                    .skipped_objects
                    .push(self.batch.objects[index].id);
                self.p.objects[index].done = true;
            }
            Some(Step::Unreadable { error, .. }) => self.halt(FailureKind::Transient, error),
            None => {
                // The walk holds every object not done; it cannot end with one left unless a
                // step was lost. Stop rather than wait for it.
                self.halt(
                    FailureKind::Transient,
                    "objects left unread at the end of the walk".to_string(),
                );
            }
        }
    }

    fn on_reply(&mut self, id: u64, result: Result<Verdict, SendError>) {
        let Some(mut chunk) = self.inflight.remove(&id) else {
            return;
        };
        let answer = match &result {
            Ok(Verdict::Accepted { ack_id: Some(a) }) if self.dest.config.ack => Answer::Id(*a),
            Err(SendError::Broken { .. }) => Answer::Lost,
            _ => Answer::NoId,
        };
        if answer == Answer::Lost {
            self.p.blind.push(self.p.sends);
        }
        let (fates, spent) = self.acks.answered(id, answer);
        for f in fates {
            self.fate(f);
        }
        let n = chunk.records.len();
        match result {
            Ok(Verdict::Accepted { ack_id }) => match (self.dest.config.ack, ack_id) {
                (true, Some(ack)) => {
                    chunk.ack = Some((ack, Instant::now()));
                    chunk.maybe_indexed = true;
                    if spent {
                        self.fate(Fate::SendAgain(chunk, Reason::AmbiguousAck));
                    } else if let Some(f) = self.acks.accepted(ack, chunk) {
                        self.fate(f);
                    }
                }
                (true, None) => {
                    if !self.warned_no_ack_id {
                        self.warned_no_ack_id = true;
                        warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id,
                            "HEC accepted a request without an ackId: indexer acknowledgement looks off for this token; counting accepted requests as delivered");
                    }
                    self.delivered(chunk);
                }
                (false, _) => self.delivered(chunk),
            },
            Ok(Verdict::BadEvent { at, code, text }) => match at {
                Some(i) if i < n => {
                    let (before, rest) = chunk.split_at(i);
                    self.delivered(before);
                    let (bad, after) = rest.split_at(1);
                    self.reject(&bad, code, &text);
                    if !after.records.is_empty() {
                        self.queue.push_front(after);
                    }
                }
                // No index to go by: halve until the bad record is alone.
                _ if n > 1 => self.halve(chunk),
                _ => self.reject(&chunk, code, &text),
            },
            Ok(Verdict::TooLarge) if n > 1 => self.halve(chunk),
            Ok(Verdict::TooLarge) => {
                let text = format!(
                    "request of {} bytes is over the HEC size limit",
                    chunk.body.len()
                );
                self.reject(&chunk, 413, &text);
            }
            Ok(Verdict::Transient { code, text }) => {
                self.refused(chunk, FailureKind::Transient, code, &text)
            }
            Ok(Verdict::Permanent { code, text }) => {
                self.refused(chunk, FailureKind::NeedsOperator, code, &text)
            }
            Err(e) => {
                let code = if e.is_timeout() {
                    retry::CONNECTION_TIMEOUT
                } else {
                    retry::CONNECTION_CLOSED
                };
                chunk.maybe_indexed |= matches!(e, SendError::Broken { .. });
                self.p.last_error = Some(code);
                self.queue.push_front(chunk);
                self.halt(FailureKind::Transient, e.to_string());
            }
        }
    }

    /// The whole request was refused: keep it for the next attempt and stop sending.
    fn refused(&mut self, chunk: Chunk, kind: FailureKind, code: i32, text: &str) {
        let msg = format!(
            "HEC at {} answered code {code}: {text}",
            self.dest.hec.base()
        );
        self.p.last_error = Some(retry::firehose_error_code(code));
        self.queue.push_front(chunk);
        self.halt(kind, msg);
    }

    fn halve(&mut self, chunk: Chunk) {
        let n = chunk.records.len();
        let (a, b) = chunk.split_at(n / 2);
        self.queue.push_front(b);
        self.queue.push_front(a);
    }

    fn halt(&mut self, kind: FailureKind, error: String) {
        match &self.stop {
            Some((FailureKind::NeedsOperator, _)) => {}
            Some(_) if kind == FailureKind::Transient => {}
            _ => self.stop = Some((kind, error)),
        }
    }

    /// Settles a request that waited for its ack: delivered, or back in the queue to be sent
    /// again at once.
    fn fate(&mut self, fate: Fate) {
        let (mut chunk, reason) = match fate {
            Fate::Delivered(c) => return self.delivered(c),
            Fate::SendAgain(c, reason) => (c, reason),
        };
        let ack_id = chunk.ack.take().map(|(id, _)| id);
        chunk.maybe_indexed = true;
        let first = self.reissued + self.ambiguous == 0;
        match reason {
            Reason::IdReissued => self.reissued += 1,
            Reason::AmbiguousAck => self.ambiguous += 1,
        }
        if first {
            let why = match reason {
                Reason::IdReissued => "HEC handed out again the ack id of a request still waiting for its ack (indexer restart or load balancer move); sending that request again, its events may be indexed twice",
                Reason::AmbiguousAck => "an ack reported true may belong to another request after an indexer restart; sending the request again, its events may be indexed twice",
            };
            warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id, channel = %self.channel, ack_id, "{why}");
        }
        self.queue.push_front(chunk);
    }

    fn delivered(&mut self, chunk: Chunk) {
        self.report.delivered += chunk.records.len() as u64;
        self.builder.recycle(chunk.body);
    }

    fn reject(&mut self, chunk: &Chunk, code: i32, text: &str) {
        let why = Why {
            err_code: code,
            reason: text,
            firehose_code: retry::firehose_error_code(code),
            attempts: self.attempt,
        };
        for (i, r) in chunk.records.iter().enumerate() {
            let raw = self.dest.encoder.original(chunk.event_bytes(i));
            let lost = Lost {
                object: &self.batch.objects[r.object as usize],
                line: r.line,
                ordinal: r.ordinal,
                raw: &raw,
            };
            self.report.rejected.push(failed::row(&lost, &why));
            self.report.failed_records.push(failed::record(&lost, &why));
        }
    }

    /// Settles the acknowledged requests among `asked` (ack id, send), adapts the poll pace
    /// to the latency seen, and moves requests whose ack is overdue aside for the next attempt.
    fn on_poll(&mut self, asked: &[(u64, u64)], answer: Result<HashMap<u64, bool>, PollError>) {
        match answer {
            Ok(acks) => {
                let mut latency = None;
                for &(id, sent) in asked {
                    if acks.get(&id) != Some(&true) {
                        continue;
                    }
                    let concurrency = self.dest.config.concurrency;
                    let in_flight = self.inflight.keys().copied();
                    let fate = self.acks.acked(id, sent, &self.p, concurrency, in_flight);
                    if let Some(Fate::Delivered(c)) = &fate {
                        latency = latency.max(c.ack.map(|(_, at)| at.elapsed()));
                    }
                    if let Some(f) = fate {
                        self.fate(f);
                    }
                }
                let pending = asked.iter().filter(|(id, _)| self.acks.waits_on(*id));
                self.pace.observe(latency, pending.count());
            }
            Err(PollError::Refused(Verdict::Permanent { code: 14, text })) => {
                self.halt(
                    FailureKind::NeedsOperator,
                    format!("ack = true but the token has indexer acknowledgement off (code 14: {text})"),
                );
            }
            Err(e) => {
                warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id, error = %e, "ack poll failed")
            }
        }
        let mut expired = self.acks.expired(self.dest.ack_timeout());
        if !expired.is_empty() {
            warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id, requests = expired.len(),
                ack_timeout_s = self.dest.config.ack_timeout_s, "requests not acknowledged in time, they will be sent again");
            self.p.last_error = Some(retry::ACK_TIMEOUT);
        }
        self.timed_out.append(&mut expired);
    }

    fn finish(mut self) -> Attempt {
        for (_, c) in self.inflight.drain() {
            self.queue.push_back(c);
        }
        let (waiting, unconfirmed) = self.acks.finish();
        let mut left: Vec<Chunk> = self.queue.into_iter().collect();
        let unacked = self.timed_out.len();
        left.append(&mut self.timed_out);
        left.extend(unconfirmed);
        left.extend(waiting);
        if self.reissued + self.ambiguous > 0 {
            warn!(pipeline = %self.dest.pipeline, batch_id = self.batch.id, channel = %self.channel,
                id_reissued = self.reissued, ambiguous_ack = self.ambiguous,
                "requests sent again because HEC handed out their ack ids again");
        }
        // A lost answer matters only to requests sent before it that still hold an ack id.
        let oldest = left
            .iter()
            .filter(|c| c.ack.is_some())
            .map(|c| c.sent)
            .min();
        self.p.blind.retain(|&b| oldest.is_some_and(|o| b > o));
        let reading_left = self.p.objects.iter().any(|o| !o.done);
        let mut report = self.report;
        if self.stop.is_none() && left.is_empty() && !reading_left {
            debug!(pipeline = %self.dest.pipeline, batch_id = self.batch.id, records = report.delivered, "batch delivered");
            report.outcome = Outcome::Delivered;
            return report;
        }
        let (kind, error) = self.stop.unwrap_or_else(|| {
            (
                FailureKind::Transient,
                format!(
                    "{unacked} requests not acknowledged within ack_timeout_s = {}",
                    self.dest.config.ack_timeout_s
                ),
            )
        });
        let mut p = self.p;
        p.chunks = left;
        report.outcome = Outcome::Failed {
            error: DestinationError::new(kind, error),
            resume: Some(Resume(Box::new(p))),
        };
        report
    }
}

async fn poll_reply(
    polling: &mut Option<tokio::task::JoinHandle<PollResult>>,
) -> Result<PollResult, tokio::task::JoinError> {
    match polling {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}
