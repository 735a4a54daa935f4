//! One walk over a batch: first the documents a previous attempt left to retry, then the
//! records from the resume cursor on, streamed from S3 into bulk bodies with up to
//! `concurrency` requests in flight. The same walk, without sending, turns what is left into
//! `load_errors` rows and failed-document records when the retry budget is spent, handing them
//! to the dispatcher chunk by chunk ([`WriteOff`]) as it re-reads the objects.
//!
//! Documents that got an item-level 429 or 5xx are kept for the next attempt; once they hold
//! more than [`Run::retry_bound`] bytes the attempt stops reading new records, so the next one
//! sends them first and memory stays bounded however much of the batch the cluster refuses.

use super::bulk::{pending, Action, Body, DocId, Pending};
use super::failed::Failed;
use super::give_up::WRITE_OFF_BODY_BYTES;
use super::id::ObjectIds;
use super::index::timestamp_secs;
use super::route::Router;
use super::send::{self, Report};
pub use super::state::Progress;
use super::Shared;
use crate::codes;
use crate::config::DocumentId;
use crate::destination::{Attempt, DestinationError, FailureKind, Outcome, Resume, WriteOff};
use crate::model::{ClaimedBatch, LoadError, StagedObject};
use crate::source::framing::RecordError;
use crate::source::pointer::Scalar;
use crate::source::reader::RecordRef;
use crate::source::records::{Start, Step, Walk};
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::task::JoinHandle;

/// The least [`Run::retry_bound`], whatever the request size.
const RETRY_HOLD_MIN_BYTES: usize = 8 << 20;

/// Whether the walk sends documents or writes them off.
pub enum Mode {
    /// An attempt.
    Send,
    /// The budget ran out for this reason.
    GiveUp(String),
}

/// One walk over a batch.
pub struct Run<'a> {
    shared: &'a Shared,
    pub(super) batch: &'a ClaimedBatch,
    pub(super) mode: Mode,
    pub(super) attempt: i32,
    progress: Progress,
    body: Body,
    spare: Vec<Vec<u8>>,
    inflight: FuturesUnordered<JoinHandle<Report>>,
    namer: Router,
    retry: Vec<Pending>,
    retry_bytes: usize,
    pub(super) out: Option<&'a mut WriteOff>,
    pub(super) rejected: Vec<LoadError>,
    pub(super) failed_records: Vec<serde_json::Value>,
    skipped_objects: Vec<i64>,
    delivered: u64,
    failure: Option<(FailureKind, String)>,
    halted: bool,
    lost_track: bool,
    id_fallbacks: u64,
    /// The last `@timestamp` written, as (seconds, JSON string literal).
    stamp: (i64, String),
}

impl<'a> Run<'a> {
    /// A walk over `batch` from where `progress` says: attempt number `attempt`, or, giving
    /// up, after `attempt` attempts.
    pub fn new(
        shared: &'a Shared,
        batch: &'a ClaimedBatch,
        attempt: u32,
        progress: Progress,
        mode: Mode,
    ) -> Self {
        Run {
            shared,
            batch,
            attempt: attempt as i32,
            mode,
            progress,
            body: Body::default(),
            spare: Vec::new(),
            inflight: FuturesUnordered::new(),
            namer: Router::new(&shared.config, shared.template.as_ref()),
            retry: Vec::new(),
            retry_bytes: 0,
            out: None,
            rejected: Vec::new(),
            failed_records: Vec::new(),
            skipped_objects: Vec::new(),
            delivered: 0,
            failure: None,
            halted: false,
            lost_track: false,
            id_fallbacks: 0,
            stamp: (i64::MIN, String::new()),
        }
    }

    /// Runs the walk as an attempt.
    pub async fn attempt(mut self) -> Attempt {
        let cursor = self.walk().await;
        let pipeline = self.shared.pipeline.as_str();
        if self.id_fallbacks > 0 {
            tracing::warn!(
                pipeline,
                batch_id = self.batch.id,
                records = self.id_fallbacks,
                "id_field missing or not a string or number, used the deterministic id"
            );
        }
        if let Router::Template(t) = &self.namer {
            if t.over_limit > 0 || t.defaulted > 0 {
                tracing::warn!(
                    pipeline,
                    batch_id = self.batch.id,
                    index = ?self.shared.config.default_index,
                    no_name = t.defaulted,
                    over_limit = t.over_limit,
                    max_indices_per_batch = self.shared.config.max_indices_per_batch,
                    "records sent to default_index: the index template could not name them or the batch had opened its limit of indexes"
                );
            }
        }
        tracing::debug!(
            pipeline,
            batch_id = self.batch.id,
            delivered = self.delivered,
            rejected = self.rejected.len(),
            retry = self.retry.len(),
            "bulk attempt finished"
        );
        let outcome = if self.retry.is_empty() && cursor.is_none() {
            Outcome::Delivered
        } else {
            let (kind, error) = self
                .failure
                .take()
                .unwrap_or((FailureKind::Transient, "documents left to send".to_string()));
            let progress = Progress {
                retry: std::mem::take(&mut self.retry),
                cursor,
                errors_before: self.progress.errors_before,
                settled: std::mem::take(&mut self.progress.settled),
            };
            Outcome::Failed {
                error: DestinationError::new(kind, error),
                resume: Some(Resume(Box::new(progress))),
            }
        };
        Attempt {
            outcome,
            rejected: self.rejected,
            failed_records: self.failed_records,
            skipped_objects: self.skipped_objects,
            delivered: self.delivered,
        }
    }

    /// Bytes of documents kept for the next attempt past which reading stops: the next
    /// attempt sends them before reading on.
    pub fn retry_bound(&self) -> usize {
        (self.shared.config.bulk_max_bytes * self.shared.config.concurrency.max(2))
            .max(RETRY_HOLD_MIN_BYTES)
    }

    fn stop_reading(&self) -> bool {
        self.halted || self.retry_bytes > self.retry_bound()
    }

    /// Walks retries then records; returns the cursor where reading stopped, if it did.
    pub(super) async fn walk(&mut self) -> Option<(usize, u64)> {
        for p in std::mem::take(&mut self.progress.retry) {
            if let Mode::GiveUp(_) = self.mode {
                self.write_off(&p).await;
                continue;
            }
            if self
                .body
                .is_full_for(p.lines.len(), self.max_bytes(), self.max_docs())
            {
                self.flush().await;
            }
            if self.halted {
                self.retry.push(p);
            } else {
                self.body.push_pending(&p);
            }
        }
        let stopped = match self.progress.cursor {
            Some(cursor) => self.read_from(cursor).await,
            None => None,
        };
        self.flush().await;
        while !self.inflight.is_empty() {
            self.absorb_next().await;
        }
        if self.lost_track {
            // A request task died with its documents: send the whole batch again (ids make
            // that safe), keeping what was already reported.
            self.retry.clear();
            return Some((0, 0));
        }
        stopped
    }

    /// Reads objects from `cursor`; returns where it stopped when the cluster stopped
    /// answering or S3 failed.
    async fn read_from(&mut self, (first, skip_below): (usize, u64)) -> Option<(usize, u64)> {
        let (shared, batch) = (self.shared, self.batch);
        let plan = (first..batch.objects.len())
            .filter(|k| !self.progress.settled.contains(k))
            .map(|index| Start {
                index,
                from: if index == first { skip_below } else { 0 },
            });
        let mut walk = Walk::new(&shared.s3, &shared.source, &batch.objects, plan)
            .with_hook(shared.transforms.clone());
        let mut next = (first, skip_below);
        // The object being read, its document ids and its arrival time.
        let mut reading: Option<(usize, ObjectIds, i64)> = None;
        while let Some(step) = walk.next().await {
            match step {
                Step::Block(block) => {
                    let k = block.index;
                    let object = &batch.objects[k];
                    if next.0 < k {
                        next = (k, 0);
                    }
                    let (_, ids, arrival) = match &mut reading {
                        Some(r) if r.0 == k => r,
                        r => r.insert((k, ObjectIds::new(object), object.arrival_time.timestamp())),
                    };
                    let arrival = *arrival;
                    self.block_errors(k, object, block.errors(), ids, arrival);
                    for (r, bytes) in block.records() {
                        if self
                            .body
                            .is_full_for(bytes.len(), self.max_bytes(), self.max_docs())
                        {
                            self.flush().await;
                        }
                        if self.stop_reading() {
                            if !self.halted {
                                tracing::debug!(
                                    pipeline = %shared.pipeline,
                                    batch_id = batch.id,
                                    documents = self.retry.len(),
                                    bytes = self.retry_bytes,
                                    "documents to retry past the bound, reading stops until the next attempt"
                                );
                            }
                            return Some(next);
                        }
                        self.push(k, r, bytes, ids, arrival);
                        next = (k, r.ordinal + 1);
                    }
                    walk.recycle(block);
                }
                Step::Done { .. } => {}
                Step::Skipped { index, row } => self.settle(index, *row),
                Step::Unreadable { index, error } => {
                    if next.0 < index {
                        next = (index, 0);
                    }
                    if self.s3_failed(index, &batch.objects[index], error) {
                        return Some(next);
                    }
                }
            }
            // Giving up, what this step found goes to the write-off before the next is read.
            self.hand_over().await;
        }
        None
    }

    /// The request size limit; giving up, nothing is sent, so documents are written off in
    /// small bodies.
    fn max_bytes(&self) -> usize {
        match self.mode {
            Mode::Send => self.shared.config.bulk_max_bytes,
            Mode::GiveUp(_) => self.shared.config.bulk_max_bytes.min(WRITE_OFF_BODY_BYTES),
        }
    }

    fn max_docs(&self) -> usize {
        self.shared.config.bulk_max_docs
    }

    /// S3 failed while reading object `k`: an attempt stops there (true); giving up writes
    /// the object off as a whole, since its records cannot be read.
    fn s3_failed(&mut self, k: usize, object: &StagedObject, error: String) -> bool {
        match &self.mode {
            Mode::Send => {
                self.fail(FailureKind::Transient, format!("reading {error}"));
                self.halted = true;
                true
            }
            Mode::GiveUp(reason) => {
                let row = LoadError {
                    object_id: Some(object.id),
                    filename: object.url(),
                    err_code: codes::BUDGET_EXHAUSTED,
                    err_reason: format!("{reason}; its records could not be read back: {error}"),
                    ..LoadError::default()
                };
                self.settle(k, row);
                false
            }
        }
    }

    fn settle(&mut self, k: usize, row: LoadError) {
        if self.progress.settled.insert(k) {
            self.skipped_objects.push(self.batch.objects[k].id);
            self.rejected.push(row);
        }
    }

    /// Reports framing rejections not reported by an earlier attempt.
    fn block_errors<'e>(
        &mut self,
        k: usize,
        object: &StagedObject,
        errors: impl Iterator<Item = &'e RecordError>,
        ids: &mut ObjectIds,
        arrival: i64,
    ) {
        for e in errors {
            if (k, e.ordinal) < self.progress.errors_before {
                continue;
            }
            let id = match self.shared.config.document_id {
                DocumentId::Deterministic => {
                    String::from_utf8_lossy(&ids.id(e.ordinal)).into_owned()
                }
                _ => String::new(),
            };
            let failed = Failed {
                object,
                line: e.line,
                ordinal: e.ordinal,
                raw: &e.raw,
                code: e.err_code,
                reason: e.reason.clone(),
                index: self.namer.name_at(arrival),
                id,
                attempts: self.attempt,
            };
            self.rejected.push(failed.row());
            self.failed_records.push(failed.record());
            self.progress.errors_before = (k, e.ordinal + 1);
        }
    }

    /// Appends one record to the body being filled.
    fn push(&mut self, k: usize, r: RecordRef, bytes: &[u8], ids: &mut ObjectIds, arrival: i64) {
        let shared = self.shared;
        let secs = match &shared.timestamp_field {
            Some(p) => p
                .lookup(bytes)
                .and_then(|v| timestamp_secs(&v))
                .unwrap_or(arrival),
            None => arrival,
        };
        let quoted = self.namer.quoted(bytes, secs);
        let hashed;
        let text;
        let id = match (shared.config.document_id, &shared.id_field) {
            (DocumentId::Auto, _) => DocId::Auto,
            (DocumentId::Field, Some(p)) => match p.lookup(bytes) {
                Some(Scalar::Str(s)) if !s.is_empty() && s.len() <= 512 => {
                    text = s;
                    DocId::Text(&text)
                }
                Some(Scalar::Int(n)) => {
                    text = n.to_string();
                    DocId::Text(&text)
                }
                Some(Scalar::Uint(n)) => {
                    text = n.to_string();
                    DocId::Text(&text)
                }
                _ => {
                    self.id_fallbacks += 1;
                    hashed = ids.id(r.ordinal);
                    DocId::Plain(&hashed)
                }
            },
            _ => {
                hashed = ids.id(r.ordinal);
                DocId::Plain(&hashed)
            }
        };
        let stamp = match &shared.at_timestamp {
            Some(at) if at.lookup(bytes).is_none() => {
                if self.stamp.0 != secs {
                    let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
                    let text = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    self.stamp = (secs, format!("\"{text}\""));
                }
                Some(self.stamp.1.as_str())
            }
            _ => None,
        };
        let action = Action {
            quoted_index: quoted,
            id,
            create: shared.at_timestamp.is_some(),
            stamp,
        };
        self.body
            .push_record(action, bytes, shared.framing, k, r.line, r.ordinal);
    }

    /// Hands the filled body to a request (or, giving up, writes its documents off).
    async fn flush(&mut self) {
        if self.body.is_empty() {
            return;
        }
        let fresh = Body::reusing(self.spare.pop().unwrap_or_default());
        let body = std::mem::replace(&mut self.body, fresh);
        if let Mode::GiveUp(_) = self.mode {
            for item in &body.items {
                let p = pending(&body.buf, item, 0, String::new());
                self.write_off(&p).await;
            }
            self.spare.push(body.buf);
            return;
        }
        while self.inflight.len() >= self.shared.config.concurrency {
            self.absorb_next().await;
        }
        if self.halted {
            for item in &body.items {
                let why = "not sent: the cluster stopped taking requests".to_string();
                self.retry.push(pending(&body.buf, item, 0, why));
            }
            self.spare.push(body.buf);
            return;
        }
        let client = self.shared.client.clone();
        self.inflight
            .push(tokio::spawn(send::run(client, body.buf, body.items)));
    }

    async fn absorb_next(&mut self) {
        match self.inflight.next().await {
            Some(Ok(report)) => self.absorb(report),
            Some(Err(e)) => {
                self.fail(
                    FailureKind::Transient,
                    format!("bulk request task failed: {e}"),
                );
                self.halted = true;
                self.lost_track = true;
            }
            None => {}
        }
    }

    fn absorb(&mut self, report: Report) {
        self.delivered += report.delivered;
        self.retry_bytes += report
            .retry
            .iter()
            .map(|p| p.lines.len() + p.reason.len() + 96)
            .sum::<usize>();
        self.retry.extend(report.retry);
        for p in &report.rejected {
            let (index, id) = p.index_and_id();
            let failed = Failed {
                object: &self.batch.objects[p.object],
                line: p.line,
                ordinal: p.ordinal,
                raw: p.source(),
                code: p.status as i32,
                reason: p.reason.clone(),
                index,
                id: id.unwrap_or_default(),
                attempts: self.attempt,
            };
            self.rejected.push(failed.row());
            self.failed_records.push(failed.record());
        }
        if let Some((kind, error)) = report.failure {
            self.fail(kind, error);
        }
        self.halted |= report.halted;
        if let Some(buf) = report.buffer {
            if self.spare.len() <= self.shared.config.concurrency {
                self.spare.push(buf);
            }
        }
    }

    fn fail(&mut self, kind: FailureKind, error: String) {
        match &self.failure {
            Some((FailureKind::NeedsOperator, _)) if kind == FailureKind::Transient => {}
            _ => self.failure = Some((kind, error)),
        }
    }
}

#[cfg(test)]
mod speed {
    use super::super::bulk::{Action, Body, DocId};
    use super::super::id::ObjectIds;
    use super::super::index::{timestamp_secs, IndexNamer};
    use crate::config::IndexRotation;
    use crate::model::StagedObject;
    use crate::source::framing::Framing;
    use crate::source::pointer::Pointer;

    /// Body building alone (deterministic id, day rotation, with and without a timestamp
    /// field): `cargo test --release --lib destination::elasticsearch::attempt::speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn body_building_throughput() {
        let records: Vec<Vec<u8>> = (0..200_000)
            .map(|i| {
                format!(
                    r#"{{"id":"r-{i}","user_id":{},"action":"click","ts":{},"page":"/products/{}","ua":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#,
                    i % 97,
                    1_764_300_000 + i,
                    i % 1000
                )
                .into_bytes()
            })
            .collect();
        let bytes: usize = records.iter().map(Vec::len).sum();
        let object = StagedObject {
            id: 1,
            bucket: "stage".into(),
            key: "firehose/2026/11/28/04/clicks-1.gz".into(),
            etag: "0123456789abcdef".into(),
            size: 0,
            arrival_time: chrono::Utc::now(),
        };
        let ts = Pointer::parse("/ts").unwrap();
        for with_timestamp in [false, true] {
            let mut ids = ObjectIds::new(&object);
            let mut namer = IndexNamer::new("clicks", IndexRotation::Day);
            let mut body = Body::default();
            let arrival = object.arrival_time.timestamp();
            let start = std::time::Instant::now();
            let mut out = 0usize;
            for round in 0..5 {
                for (i, r) in records.iter().enumerate() {
                    if body.is_full_for(r.len(), 5 << 20, 10_000) {
                        out += body.buf.len();
                        body = Body::reusing(std::mem::take(&mut body.buf));
                    }
                    let secs = if with_timestamp {
                        ts.lookup(r)
                            .and_then(|v| timestamp_secs(&v))
                            .unwrap_or(arrival)
                    } else {
                        arrival
                    };
                    let (_, quoted) = namer.at(secs);
                    let id = ids.id((round * records.len() + i) as u64);
                    body.push_record(
                        Action::index(quoted, DocId::Plain(&id)),
                        r,
                        Framing::JsonLines,
                        0,
                        1,
                        0,
                    );
                }
            }
            out += body.buf.len();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "timestamp_field={with_timestamp}: {:.0} MB/s of records in, {:.0} MB/s of bulk body out, {:.2} M records/s",
                (bytes * 5) as f64 / secs / 1e6,
                out as f64 / secs / 1e6,
                (records.len() * 5) as f64 / secs / 1e6
            );
        }
    }
}
