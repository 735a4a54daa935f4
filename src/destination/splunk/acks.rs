//! The requests of one attempt that wait for their indexer acknowledgement, by ack id, and
//! what an ack id seen twice means.
//!
//! HEC numbers ack ids per channel from 0 and starts again when the indexer restarts, or when a
//! load balancer moves the channel to another indexer. So:
//!
//! - a reply that hands out an id a request still waits on means that request's ack is gone
//!   (its events may or may not be indexed): it is sent again ([`AckBook::accepted`]);
//! - a `true` from a poll is taken only for the request the poll asked about, not for one that
//!   got the same id since; that one may have had its `true` used up by the poll (Splunk
//!   forgets an id once it reported it), so it is sent again ([`AckBook::acked`]);
//! - a `true` for an id that a request still in flight may turn out to hold is held back until
//!   that request answers, and a `true` that a request whose answer was lost may have taken is
//!   not trusted at all ([`super::state::Progress::ack_ambiguous`]). In both cases the
//!   request is sent again rather than settled on someone else's ack.

use super::state::{Chunk, Progress};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// What became of a request that waited for its ack.
#[derive(Debug)]
pub(super) enum Fate {
    /// Acknowledged: indexed.
    Delivered(Chunk),
    /// Its fate is unknowable: send it again.
    SendAgain(Chunk, Reason),
}

/// Why a request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// HEC gave its ack id to another request.
    IdReissued,
    /// Its `true` may have been another request's.
    AmbiguousAck,
}

/// How a request that was in flight ended, as far as its ack id goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// Accepted with this ack id.
    Id(u64),
    /// Answered without an ack id: refused, or never reached HEC.
    NoId,
    /// The answer was lost after the request went out: HEC may have given it an id.
    Lost,
}

/// A request reported `true` while others whose ack ids are not known yet were in flight.
#[derive(Debug)]
struct Unconfirmed {
    chunk: Chunk,
    /// The in-flight requests (task ids) that may hold the same ack id.
    suspects: HashSet<u64>,
}

/// The requests waiting for acks, keyed by ack id.
#[derive(Debug, Default)]
pub(super) struct AckBook {
    awaiting: HashMap<u64, Chunk>,
    unconfirmed: HashMap<u64, Unconfirmed>,
}

impl AckBook {
    /// Requests held: waiting for their ack, or acked and not yet confirmed.
    pub fn len(&self) -> usize {
        self.awaiting.len() + self.unconfirmed.len()
    }

    /// True while some request still needs an ack poll.
    pub fn polling_needed(&self) -> bool {
        !self.awaiting.is_empty()
    }

    /// Whether `id` is still waited on.
    pub fn waits_on(&self, id: u64) -> bool {
        self.awaiting.contains_key(&id)
    }

    /// What a poll asks for: each id waited on, with the send it belongs to.
    pub fn asked(&self) -> Vec<(u64, u64)> {
        self.awaiting.iter().map(|(id, c)| (*id, c.sent)).collect()
    }

    /// `chunk` was accepted with ack id `id` (also used for requests carried over from the
    /// last attempt). A request that held the same id can no longer be tracked: its fate is
    /// returned as [`Reason::IdReissued`].
    pub fn accepted(&mut self, id: u64, chunk: Chunk) -> Option<Fate> {
        let old = self.awaiting.insert(id, chunk);
        old.map(|c| Fate::SendAgain(c, Reason::IdReissued))
    }

    /// A request that was in flight (task `task`) answered: settles what waited on it. The
    /// flag is true when it got an id that a poll reported `true` for another request: the
    /// `true` may have been its own, spent, so it must be sent again rather than wait.
    pub fn answered(&mut self, task: u64, answer: Answer) -> (Vec<Fate>, bool) {
        let mut out = Vec::new();
        let mut spent = false;
        let ids: Vec<u64> = self.unconfirmed.keys().copied().collect();
        for id in ids {
            let u = self.unconfirmed.get_mut(&id).expect("key listed above");
            if !u.suspects.remove(&task) {
                continue;
            }
            let clash = match answer {
                Answer::Id(got) => got == id,
                Answer::NoId => false,
                Answer::Lost => true,
            };
            if clash {
                spent |= answer != Answer::Lost;
                let u = self.unconfirmed.remove(&id).expect("key listed above");
                out.push(Fate::SendAgain(u.chunk, Reason::AmbiguousAck));
            } else if u.suspects.is_empty() {
                let u = self.unconfirmed.remove(&id).expect("key listed above");
                out.push(Fate::Delivered(u.chunk));
            }
        }
        (out, spent)
    }

    /// A poll that asked about send `sent` under `id` got `true`. `in_flight` are the tasks
    /// whose ack ids are not known yet.
    pub fn acked(
        &mut self,
        id: u64,
        sent: u64,
        p: &Progress,
        concurrency: usize,
        in_flight: impl Iterator<Item = u64>,
    ) -> Option<Fate> {
        let newcomer = self.awaiting.get(&id)?.sent != sent;
        let chunk = self.awaiting.remove(&id).expect("checked above");
        // Another request got the id after the poll went out (the one asked about was sent
        // again then). The `true` may be the newcomer's, and HEC reports an id `true` once:
        // it would wait out its ack timeout for nothing.
        if newcomer {
            return Some(Fate::SendAgain(chunk, Reason::AmbiguousAck));
        }
        if !p.reissue_possible(&chunk, id, concurrency) {
            return Some(Fate::Delivered(chunk));
        }
        if p.ack_ambiguous(&chunk, id, concurrency) {
            return Some(Fate::SendAgain(chunk, Reason::AmbiguousAck));
        }
        let suspects: HashSet<u64> = in_flight.collect();
        if suspects.is_empty() {
            return Some(Fate::Delivered(chunk));
        }
        self.unconfirmed.insert(id, Unconfirmed { chunk, suspects });
        None
    }

    /// Takes out the requests whose ack is `timeout` overdue.
    pub fn expired(&mut self, timeout: Duration) -> Vec<Chunk> {
        let ids: Vec<u64> = self
            .awaiting
            .iter()
            .filter(|(_, c)| c.ack.is_some_and(|(_, at)| at.elapsed() >= timeout))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.awaiting.remove(&id))
            .collect()
    }

    /// At the end of the attempt: the requests still waiting (carried to the next attempt
    /// with their ids), and the unconfirmed ones, whose ack can no longer be trusted once the
    /// requests they waited on are gone: those are sent again.
    pub fn finish(self) -> (Vec<Chunk>, Vec<Chunk>) {
        let waiting = self.awaiting.into_values().collect();
        let again = self
            .unconfirmed
            .into_values()
            .map(|u| {
                let mut c = u.chunk;
                c.ack = None;
                c
            })
            .collect();
        (waiting, again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Instant;

    fn chunk(id: u64, sent: u64) -> Chunk {
        Chunk {
            body: Bytes::from_static(b"{}"),
            records: Vec::new(),
            ack: Some((id, Instant::now())),
            maybe_indexed: true,
            sent,
        }
    }

    fn progress(sends: u64) -> Progress {
        let mut p = Progress::new(vec![1]);
        p.sends = sends;
        p
    }

    fn sent_of(f: &Fate) -> (u64, Option<Reason>) {
        match f {
            Fate::Delivered(c) => (c.sent, None),
            Fate::SendAgain(c, r) => (c.sent, Some(*r)),
        }
    }

    #[test]
    fn a_reissued_id_sends_the_old_request_again() {
        let mut book = AckBook::default();
        assert!(book.accepted(0, chunk(0, 0)).is_none());
        assert!(book.accepted(1, chunk(1, 1)).is_none());
        // After a restart the next request gets 0 again.
        let fate = book.accepted(0, chunk(0, 5)).expect("the old holder of 0");
        assert_eq!(sent_of(&fate), (0, Some(Reason::IdReissued)));
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn a_true_settles_only_the_request_asked_about() {
        let mut book = AckBook::default();
        book.accepted(0, chunk(0, 0));
        let asked = book.asked();
        // A newcomer takes id 0 before the answer comes.
        book.accepted(0, chunk(0, 3));
        let p = progress(4);
        let fate = book.acked(0, asked[0].1, &p, 2, std::iter::empty());
        assert_eq!(
            sent_of(&fate.unwrap()),
            (3, Some(Reason::AmbiguousAck)),
            "not delivered on a true that may not be its own, and not left waiting for a \
             true HEC may have reported already"
        );
        assert_eq!(book.len(), 0);
    }

    #[test]
    fn a_true_waits_for_requests_in_flight_that_may_hold_the_same_id() {
        let p = progress(3);
        let mut book = AckBook::default();
        book.accepted(0, chunk(0, 0));
        assert!(book.acked(0, 0, &p, 2, [7, 8].into_iter()).is_none());
        assert_eq!(book.len(), 1, "held back");
        assert_eq!(book.answered(7, Answer::Id(1)).0.len(), 0);
        let (fates, spent) = book.answered(8, Answer::NoId);
        assert!(!spent);
        assert_eq!(sent_of(&fates[0]), (0, None), "delivered");

        // The same, but the request in flight comes back with id 0: whose true was it?
        book.accepted(0, chunk(0, 1));
        assert!(book.acked(0, 1, &p, 2, [9].into_iter()).is_none());
        let (fates, spent) = book.answered(9, Answer::Id(0));
        assert_eq!(sent_of(&fates[0]), (1, Some(Reason::AmbiguousAck)));
        assert!(spent, "and the newcomer's own true may be spent");

        // Or its answer is lost.
        book.accepted(0, chunk(0, 2));
        book.acked(0, 2, &p, 2, [10].into_iter());
        let (fates, _) = book.answered(10, Answer::Lost);
        assert_eq!(sent_of(&fates[0]), (2, Some(Reason::AmbiguousAck)));
    }

    #[test]
    fn ids_out_of_a_restarted_indexers_reach_are_trusted_at_once() {
        // Sent 10 requests ago; only 10 + 2 requests can have been numbered since.
        let mut p = progress(100);
        p.blind.push(95);
        let mut book = AckBook::default();
        book.accepted(5_000, chunk(5_000, 90));
        let fate = book.acked(5_000, 90, &p, 2, [1].into_iter());
        assert_eq!(sent_of(&fate.unwrap()), (90, None));
        // A small id, and an answer lost after it went out: not trusted.
        book.accepted(3, chunk(3, 90));
        let fate = book.acked(3, 90, &p, 2, std::iter::empty());
        assert_eq!(sent_of(&fate.unwrap()), (90, Some(Reason::AmbiguousAck)));
        // The loss came before it was sent: trusted.
        book.accepted(3, chunk(3, 96));
        let fate = book.acked(3, 96, &p, 2, std::iter::empty());
        assert_eq!(sent_of(&fate.unwrap()), (96, None));
    }
}
