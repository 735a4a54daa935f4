//! In-memory state: the stored events, per-channel ackIds and their status, request and event
//! counters, and the fault switches. One mutex guards the data; requests hold it briefly.
//! [`Store::restart`] is an indexer restart: what was not yet indexed is lost, the ack state is
//! forgotten and ackIds start from 0 again.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::faults::{AckReady, Faults};
use crate::protocol::Code;

/// One stored event, as `GET /_receiver/events` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    /// The 1-based number of the HTTP request that carried it (all collector requests count).
    pub request: u64,
    /// `event` or `raw`.
    pub endpoint: &'static str,
    pub event: Value,
    /// Epoch seconds: the envelope's (or `?time=`) value, else the receipt time.
    pub time: f64,
    /// Whether the sender gave the time.
    pub time_given: bool,
    pub host: String,
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Map<String, Value>>,
    pub channel: Option<String>,
    /// The token's name (never its value).
    pub token: String,
    /// Seen before with identical event, source and sender-given time.
    pub duplicate: bool,
}

/// Receiver-wide counters (`GET /_receiver/stats`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Every request to a collector endpoint except health.
    pub requests: u64,
    /// Requests answered 200 code 0.
    pub accepted: u64,
    /// Requests answered with anything else, faults included.
    pub rejected: u64,
    /// Requests answered by a fault switch (busy, 429, 500, dropped).
    pub faulted: u64,
    /// Connections closed without a response by the drop switches.
    pub dropped: u64,
    /// Events stored (or counted, in blackhole mode).
    pub events: u64,
    pub duplicates: u64,
    /// `fields`-only objects accepted without an event.
    pub skipped: u64,
    /// Batches cut short by an unknown envelope key.
    pub truncated: u64,
    /// Request body bytes as received, and after gzip decoding.
    pub bytes: u64,
    pub decoded_bytes: u64,
    pub ack_queries: u64,
    /// Replies by HEC code (or HTTP status for replies outside the table).
    pub codes: BTreeMap<u16, u64>,
    /// Indexer restarts (`POST /_receiver/restart`).
    pub restarts: u64,
    /// Events of requests not yet indexed when a restart came, gone with it.
    pub lost_in_restarts: u64,
}

/// Per-channel counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelStats {
    pub requests: u64,
    pub events: u64,
    pub acks_issued: u64,
    /// ackIds reported `true` (and therefore forgotten).
    pub acks_true: u64,
    /// ackIds issued and not yet reported `true`.
    pub acks_pending: u64,
    pub ack_queries: u64,
    pub next_ack_id: u64,
}

/// An issued ackId not yet reported `true`: when it becomes true (its events are indexed then),
/// and the request and event count it stands for, which a restart before that time loses.
#[derive(Debug, Clone, Copy)]
struct Pending {
    ready: AckReady,
    request: u64,
    events: u64,
}

impl Pending {
    fn indexed(&self, now: Instant) -> bool {
        matches!(self.ready, AckReady::At(t) if t <= now)
    }
}

#[derive(Default)]
struct Channel {
    pending: BTreeMap<u64, Pending>,
    stats: ChannelStats,
}

/// Where a request came from: its number and the indexer lifetime it arrived in. A request
/// that arrived before a restart is not stored after it (it died with the old indexer).
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    pub request: u64,
    pub epoch: u64,
}

/// What a restart threw away (`POST /_receiver/restart` answers with it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestartView {
    pub restarted: bool,
    /// Requests accepted but not yet indexed: their events are gone.
    pub lost_requests: u64,
    pub lost_events: u64,
    /// ackIds issued and not yet reported `true`, indexed or not: now unknown (`false`).
    pub forgotten_acks: u64,
}

/// The full stats document.
#[derive(Debug, Serialize)]
pub struct StatsView {
    pub blackhole: bool,
    #[serde(flatten)]
    pub counters: Counters,
    pub stored_events: usize,
    pub channels: BTreeMap<String, ChannelStats>,
}

/// Limits that turn into 503 code 9 (reference 6.9: Vector maps "an over-limit on
/// channels/pending acks to 503 code 9"; Splunk's limits.conf defaults are 1,000,000 each).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_channels: usize,
    pub max_pending_acks_per_channel: usize,
}

#[derive(Default)]
struct Inner {
    /// Restarts so far: the current indexer lifetime.
    epoch: u64,
    events: Vec<StoredEvent>,
    seen: HashSet<u64>,
    channels: HashMap<String, Channel>,
    counters: Counters,
}

/// The receiver's shared state.
pub struct Store {
    inner: Mutex<Inner>,
    faults: Mutex<Faults>,
    blackhole: bool,
    limits: Limits,
}

/// What makes two events the same: event, source and the sender-given time.
fn fingerprint(e: &StoredEvent) -> u64 {
    let mut h = DefaultHasher::new();
    e.event.to_string().hash(&mut h);
    e.source.hash(&mut h);
    e.time_given.then_some(e.time.to_bits()).hash(&mut h);
    h.finish()
}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Empty state with the given mode and limits.
    pub fn new(blackhole: bool, limits: Limits, faults: Faults) -> Self {
        Store {
            inner: Mutex::new(Inner::default()),
            faults: Mutex::new(faults),
            blackhole,
            limits,
        }
    }

    /// Whether events are only counted.
    pub fn blackhole(&self) -> bool {
        self.blackhole
    }

    /// The fault switches.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        relock(&self.faults)
    }

    /// The current indexer lifetime, taken when a request arrives.
    pub fn epoch(&self) -> u64 {
        relock(&self.inner).epoch
    }

    /// Counts a new collector request and its body size; returns its 1-based number.
    pub fn begin_request(&self, wire_bytes: usize) -> u64 {
        let mut g = relock(&self.inner);
        g.counters.requests += 1;
        g.counters.bytes += wire_bytes as u64;
        g.counters.requests
    }

    /// Counts a reply by code; `faulted` marks replies made by a fault switch.
    pub fn count_reply(&self, code: u16, faulted: bool) {
        let mut g = relock(&self.inner);
        if code == 0 {
            g.counters.accepted += 1;
        } else {
            g.counters.rejected += 1;
        }
        if faulted {
            g.counters.faulted += 1;
        }
        *g.counters.codes.entry(code).or_default() += 1;
    }

    /// Counts a connection closed on purpose.
    pub fn count_drop(&self) {
        let mut g = relock(&self.inner);
        g.counters.dropped += 1;
        g.counters.faulted += 1;
    }

    /// Counts parse outcomes that are not events.
    pub fn count_parse(&self, decoded_bytes: usize, skipped: usize, truncated: bool) {
        let mut g = relock(&self.inner);
        g.counters.decoded_bytes += decoded_bytes as u64;
        g.counters.skipped += skipped as u64;
        g.counters.truncated += u64::from(truncated);
    }

    /// Stores a request's events (`counted` is the number of events in blackhole mode, where
    /// `events` is empty) and, when `ack` is set, issues the next ackId on the channel.
    /// Fails with `ServerBusy` before storing anything when an ack limit is reached, or when
    /// the request arrived before a restart.
    pub fn store(
        &self,
        from: Arrival,
        channel: Option<&str>,
        events: Vec<StoredEvent>,
        counted: usize,
        ack: Option<AckReady>,
    ) -> Result<Option<u64>, Code> {
        let mut g = relock(&self.inner);
        let inner = &mut *g;
        if from.epoch != inner.epoch {
            return Err(Code::ServerBusy);
        }
        if let (Some(ch), Some(_)) = (channel, ack) {
            match inner.channels.get(ch) {
                None if inner.channels.len() >= self.limits.max_channels => {
                    return Err(Code::ServerBusy)
                }
                Some(c) if c.pending.len() >= self.limits.max_pending_acks_per_channel => {
                    return Err(Code::ServerBusy)
                }
                _ => {}
            }
        }
        let n = (counted + events.len()) as u64;
        inner.counters.events += n;
        for mut e in events {
            if !inner.seen.insert(fingerprint(&e)) {
                e.duplicate = true;
                inner.counters.duplicates += 1;
            }
            inner.events.push(e);
        }
        let Some(ch) = channel else { return Ok(None) };
        let c = inner.channels.entry(ch.to_string()).or_default();
        c.stats.requests += 1;
        c.stats.events += n;
        let Some(ready) = ack else { return Ok(None) };
        let id = c.stats.next_ack_id;
        c.stats.next_ack_id += 1;
        c.stats.acks_issued += 1;
        c.pending.insert(
            id,
            Pending {
                ready,
                request: from.request,
                events: n,
            },
        );
        c.stats.acks_pending = c.pending.len() as u64;
        Ok(Some(id))
    }

    /// Answers an ack poll. Reference 6.9: "`false` = pending, failed, unknown, expired, or
    /// belonging to another channel"; "Once an id has been reported `true`, Splunk **forgets
    /// it**: the next poll for it returns `false`".
    pub fn query_acks(&self, channel: &str, ids: &[u64], now: Instant) -> Vec<(u64, bool)> {
        let mut g = relock(&self.inner);
        g.counters.ack_queries += 1;
        let Some(c) = g.channels.get_mut(channel) else {
            return ids.iter().map(|&id| (id, false)).collect();
        };
        c.stats.ack_queries += 1;
        let answers = ids
            .iter()
            .map(|&id| {
                let ready = c.pending.get(&id).is_some_and(|p| p.indexed(now));
                if ready {
                    c.pending.remove(&id);
                    c.stats.acks_true += 1;
                }
                (id, ready)
            })
            .collect();
        c.stats.acks_pending = c.pending.len() as u64;
        answers
    }

    /// An indexer restart at `now`. Splunk keeps indexed data on disk and the ack state in
    /// memory (Splunk's "About HTTP Event Collector Indexer Acknowledgment"), so: the events of every
    /// request whose ackId is not yet true (still in the indexing pipeline: `ack_delay_s` not
    /// passed, or `never_ack`) are lost; every channel and ackId is forgotten, so the next
    /// request on a channel gets ackId 0 and polls for the old ids answer `false`; indexed
    /// events stay, even those whose ack was never polled. Requests accepted without an ackId
    /// count as indexed. Request numbers go on counting.
    pub fn restart(&self, now: Instant) -> RestartView {
        let mut g = relock(&self.inner);
        let inner = &mut *g;
        let mut lost = HashSet::new();
        let (mut lost_events, mut forgotten) = (0, 0);
        for c in inner.channels.values() {
            for p in c.pending.values() {
                forgotten += 1;
                if !p.indexed(now) {
                    lost.insert(p.request);
                    lost_events += p.events;
                }
            }
        }
        inner.channels.clear();
        inner.epoch += 1;
        inner.events.retain(|e| !lost.contains(&e.request));
        // What was a duplicate of a lost copy no longer is.
        inner.seen.clear();
        inner.counters.duplicates = 0;
        for e in &mut inner.events {
            e.duplicate = !inner.seen.insert(fingerprint(e));
            inner.counters.duplicates += u64::from(e.duplicate);
        }
        inner.counters.events -= lost_events;
        inner.counters.restarts += 1;
        inner.counters.lost_in_restarts += lost_events;
        RestartView {
            restarted: true,
            lost_requests: lost.len() as u64,
            lost_events,
            forgotten_acks: forgotten,
        }
    }

    /// All stored events, oldest first.
    pub fn events(&self) -> Vec<StoredEvent> {
        relock(&self.inner).events.clone()
    }

    /// Counters and per-channel stats.
    pub fn stats(&self) -> StatsView {
        let g = relock(&self.inner);
        StatsView {
            blackhole: self.blackhole,
            counters: g.counters.clone(),
            stored_events: g.events.len(),
            channels: g
                .channels
                .iter()
                .map(|(k, c)| (k.clone(), c.stats.clone()))
                .collect(),
        }
    }

    /// Forgets events, counters, channels and acks; the fault switches stay as they are.
    pub fn reset(&self) {
        *relock(&self.inner) = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: Arrival = Arrival {
        request: 1,
        epoch: 0,
    };

    fn store() -> Store {
        let limits = Limits {
            max_channels: 2,
            max_pending_acks_per_channel: 2,
        };
        Store::new(false, limits, Faults::default())
    }

    #[test]
    fn ack_ids_per_channel_and_forgotten_once_true() {
        let s = store();
        let now = Instant::now();
        let ready = Some(AckReady::At(now));
        assert_eq!(s.store(A, Some("a"), vec![], 1, ready), Ok(Some(0)));
        assert_eq!(s.store(A, Some("a"), vec![], 1, ready), Ok(Some(1)));
        assert_eq!(s.store(A, Some("b"), vec![], 1, ready), Ok(Some(0)));
        assert_eq!(
            s.store(A, Some("a"), vec![], 1, ready),
            Err(Code::ServerBusy)
        );
        assert_eq!(
            s.store(A, Some("c"), vec![], 1, ready),
            Err(Code::ServerBusy)
        );
        assert_eq!(s.query_acks("a", &[0, 5], now), vec![(0, true), (5, false)]);
        assert_eq!(s.query_acks("a", &[0, 1], now), vec![(0, false), (1, true)]);
        assert_eq!(s.query_acks("zz", &[0], now), vec![(0, false)]);
        let later = Some(AckReady::At(now + Duration::from_secs(60)));
        assert_eq!(s.store(A, Some("b"), vec![], 1, later), Ok(Some(1)));
        assert_eq!(s.query_acks("b", &[1], now), vec![(1, false)]);
        assert_eq!(
            s.store(A, Some("b"), vec![], 1, Some(AckReady::Never)),
            Err(Code::ServerBusy)
        );
        assert_eq!(s.stats().counters.events, 4);
    }

    fn event(request: u64, text: &str) -> StoredEvent {
        StoredEvent {
            request,
            endpoint: "event",
            event: Value::String(text.into()),
            time: 1.0,
            time_given: true,
            host: "h".into(),
            source: "s".into(),
            sourcetype: "st".into(),
            index: "main".into(),
            fields: None,
            channel: Some("a".into()),
            token: "token1".into(),
            duplicate: false,
        }
    }

    #[test]
    fn a_restart_loses_what_is_not_indexed_and_starts_ack_ids_again() {
        let s = Store::new(
            false,
            Limits {
                max_channels: 9,
                max_pending_acks_per_channel: 9,
            },
            Faults::default(),
        );
        let now = Instant::now();
        let at = |request| Arrival { request, epoch: 0 };
        let indexed = Some(AckReady::At(now));
        let slow = Some(AckReady::At(now + Duration::from_secs(60)));
        // 1: indexed and its ack polled; 2: indexed, ack not polled; 3: still being indexed;
        // 4: never acked; 5: a copy of 3's event, a duplicate until 3 is lost.
        s.store(at(1), Some("a"), vec![event(1, "one")], 0, indexed)
            .unwrap();
        assert_eq!(s.query_acks("a", &[0], now), vec![(0, true)]);
        s.store(at(2), Some("a"), vec![event(2, "two")], 0, indexed)
            .unwrap();
        s.store(
            at(3),
            Some("a"),
            vec![event(3, "three"), event(3, "x")],
            0,
            slow,
        )
        .unwrap();
        s.store(
            at(4),
            Some("b"),
            vec![event(4, "four")],
            0,
            Some(AckReady::Never),
        )
        .unwrap();
        s.store(at(5), Some("a"), vec![event(5, "three")], 0, indexed)
            .unwrap();
        assert_eq!(s.stats().counters.duplicates, 1);

        let view = s.restart(now);
        assert_eq!(
            view,
            RestartView {
                restarted: true,
                lost_requests: 2,
                lost_events: 3,
                forgotten_acks: 4
            }
        );
        let left: Vec<u64> = s.events().iter().map(|e| e.request).collect();
        assert_eq!(left, [1, 2, 5]);
        assert!(s.events().iter().all(|e| !e.duplicate));
        let stats = s.stats();
        assert_eq!((stats.counters.events, stats.counters.duplicates), (3, 0));
        assert!(stats.channels.is_empty());
        assert_eq!(
            s.query_acks("a", &[1, 2], now),
            vec![(1, false), (2, false)]
        );
        // A request that arrived before the restart is not stored after it.
        assert_eq!(
            s.store(at(6), Some("a"), vec![], 1, indexed),
            Err(Code::ServerBusy)
        );
        let new = Arrival {
            request: 7,
            epoch: s.epoch(),
        };
        assert_eq!(s.store(new, Some("a"), vec![], 1, indexed), Ok(Some(0)));
    }
}
