//! What one batch's delivery keeps between attempts: the requests built but not yet known to
//! be indexed (with the records each holds and its ack id), how far each object has been read,
//! and the channel the ack ids belong to.

use crate::source::records::Start;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One record inside a request body.
#[derive(Debug, Clone, Copy)]
pub struct RecordSpan {
    /// Index of the object in the batch.
    pub object: u32,
    /// Line of the record in the object (its last line).
    pub line: u64,
    /// Ordinal of the record in the object.
    pub ordinal: u64,
    /// Start of the record's envelope (or raw line) in the body; the envelopes are contiguous.
    pub start: u32,
    /// Where the record's own bytes lie in the body.
    pub event: (u32, u32),
}

/// One request: a body and the records in it.
#[derive(Debug)]
pub struct Chunk {
    /// The uncompressed body.
    pub body: Bytes,
    /// The records, in body order.
    pub records: Vec<RecordSpan>,
    /// Ack id and when it was issued, while waiting for the acknowledgement.
    pub ack: Option<(u64, Instant)>,
    /// True once a send may have reached the index (it got an ack id, or the connection broke
    /// after the request went out): sending it again may duplicate events.
    pub maybe_indexed: bool,
    /// Its place among the batch's sends ([`Progress::sends`] when it last went out).
    pub sent: u64,
}

impl Chunk {
    /// The record's own bytes.
    pub fn event_bytes(&self, i: usize) -> &[u8] {
        let (s, e) = self.records[i].event;
        &self.body[s as usize..e as usize]
    }

    /// Splits before record `at`: the records before it and the records from it on, each a
    /// request of its own (the body is shared, not copied).
    pub fn split_at(self, at: usize) -> (Chunk, Chunk) {
        let cut = self
            .records
            .get(at)
            .map_or(self.body.len(), |r| r.start as usize);
        let mut head = self.records;
        let tail: Vec<RecordSpan> = head
            .split_off(at.min(head.len()))
            .into_iter()
            .map(|mut r| {
                let d = cut as u32;
                r.start -= d;
                r.event = (r.event.0 - d, r.event.1 - d);
                r
            })
            .collect();
        let part = |body: Bytes, records| Chunk {
            body,
            records,
            ack: None,
            maybe_indexed: self.maybe_indexed,
            sent: self.sent,
        };
        (
            part(self.body.slice(..cut), head),
            part(self.body.slice(cut..), tail),
        )
    }
}

/// How far one object has been read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectProgress {
    /// Records (and rejected records) with a lower ordinal are in a chunk, delivered or
    /// recorded; reading again skips them.
    pub next_ordinal: u64,
    /// Read to its end (or skipped).
    pub done: bool,
}

/// The state carried in [`crate::destination::Resume`] between attempts of one batch.
#[derive(Debug)]
pub struct Progress {
    /// The ledger ids of the batch's objects, to check the resume belongs to this batch.
    pub object_ids: Vec<i64>,
    /// The channel whose ack ids the chunks hold.
    pub channel: Option<Channel>,
    /// Built and not known to be indexed: unsent, or sent and waiting for an ack.
    pub chunks: Vec<Chunk>,
    /// Per object of the batch.
    pub objects: Vec<ObjectProgress>,
    /// Firehose's `errorCode` of the last failure (`Splunk.AckTimeout`, ...), for the
    /// failed-event records of a batch that runs out of budget.
    pub last_error: Option<&'static str>,
    /// Requests sent so far on the channel, every attempt counted.
    pub sends: u64,
    /// For each send whose answer was lost after it went out (so HEC may have given it an ack
    /// id nobody knows): the value of `sends` when that was seen.
    pub blind: Vec<u64>,
}

impl Progress {
    /// A batch not started yet.
    pub fn new(object_ids: Vec<i64>) -> Progress {
        Progress {
            objects: vec![ObjectProgress::default(); object_ids.len()],
            object_ids,
            channel: None,
            chunks: Vec::new(),
            last_error: None,
            sends: 0,
            blind: Vec::new(),
        }
    }

    /// Whether a restarted indexer (ids from 0 again) could have given `c`'s ack id `id` to
    /// another request of this channel: only to one processed after `c`, and those are the
    /// requests sent after it plus at most `concurrency` in flight beside it. Ids on a
    /// channel that has carried more requests than that are out of reach.
    pub fn reissue_possible(&self, c: &Chunk, id: u64, concurrency: usize) -> bool {
        id < self.sends.saturating_sub(c.sent) + concurrency as u64
    }

    /// Whether a `true` for `c`'s ack id may belong to a request whose answer was lost after
    /// `c` went out (a reissued id nobody saw): then it proves nothing about `c`.
    pub fn ack_ambiguous(&self, c: &Chunk, id: u64, concurrency: usize) -> bool {
        self.reissue_possible(c, id, concurrency) && self.blind.iter().any(|&b| b > c.sent)
    }

    /// The objects not read to their end, each from the first record not yet handed on.
    pub fn unread(&self) -> Vec<Start> {
        let left = self.objects.iter().enumerate().filter(|(_, o)| !o.done);
        left.map(|(index, o)| Start {
            index,
            from: o.next_ordinal,
        })
        .collect()
    }
}

/// Free channel ids, so each concurrent delivery has its own channel and a channel lives on
/// across batches.
#[derive(Debug, Default, Clone)]
pub struct ChannelPool(Arc<Mutex<Vec<String>>>);

impl ChannelPool {
    /// A free channel, or a new GUID.
    pub fn take(&self) -> Channel {
        let id = self
            .0
            .lock()
            .expect("channel pool lock")
            .pop()
            .unwrap_or_else(new_guid);
        Channel {
            id,
            pool: self.clone(),
        }
    }
}

/// A new channel GUID in Splunk's upper-case form.
pub fn new_guid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string().to_uppercase()
}

/// A channel in use; back to the pool when dropped.
#[derive(Debug)]
pub struct Channel {
    /// The GUID.
    pub id: String,
    pool: ChannelPool,
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.0.lock() {
            free.push(std::mem::take(&mut self.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk() -> Chunk {
        // Three "envelopes" of 4, 5 and 3 bytes; the event is the inner part.
        let body = Bytes::from_static(b"[aa][bbb][c]");
        let span = |i, start: u32, end: u32| RecordSpan {
            object: 0,
            line: i + 1,
            ordinal: i,
            start,
            event: (start + 1, end - 1),
        };
        Chunk {
            body,
            records: vec![span(0, 0, 4), span(1, 4, 9), span(2, 9, 12)],
            ack: None,
            maybe_indexed: false,
            sent: 0,
        }
    }

    #[test]
    fn split_shares_the_body_and_rebases_offsets() {
        let (head, tail) = chunk().split_at(1);
        assert_eq!(&head.body[..], b"[aa]");
        assert_eq!(head.event_bytes(0), b"aa");
        assert_eq!(&tail.body[..], b"[bbb][c]");
        assert_eq!(tail.event_bytes(0), b"bbb");
        assert_eq!(tail.event_bytes(1), b"c");
        let (rest, none) = tail.split_at(2);
        assert_eq!(rest.records.len(), 2);
        assert!(none.records.is_empty() && none.body.is_empty());
    }

    #[test]
    fn channels_are_reused_after_release() {
        let pool = ChannelPool::default();
        let a = pool.take();
        let b = pool.take();
        assert_ne!(a.id, b.id);
        assert_eq!(a.id.len(), 36);
        let id = a.id.clone();
        drop(a);
        assert_eq!(pool.take().id, id);
    }
}
