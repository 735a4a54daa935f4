//! How often to poll `/ack`: as often as acks come back, within bounds. The configured
//! `ack_poll_interval_s` is the slowest pace; the fastest is [`FLOOR`] (or the configured
//! interval when that is shorter). The pace follows the latency of the acks seen (half of
//! a smoothed latency, so a request is usually settled within about 1.5 latencies) and
//! doubles while polls find nothing acknowledged.
//!
//! Polling only once per configured interval bounds the throughput to
//! `max_unacked_requests` requests per interval however fast the indexers acknowledge; a
//! pace that follows the latency keeps the number of unacked requests near what the latency
//! calls for (requests per second × latency) and memory with it.

use std::time::Duration;
use tokio::time::Instant;

/// The shortest time between two polls of one channel.
pub const FLOOR: Duration = Duration::from_millis(20);

/// The poll pace of one delivery attempt.
#[derive(Debug)]
pub struct PollPace {
    /// The slowest pace (`ack_poll_interval_s`).
    max: Duration,
    /// The fastest pace.
    pub floor: Duration,
    /// Time between polls now.
    every: Duration,
    /// Smoothed ack latency, once one was seen.
    latency: Option<Duration>,
    /// When the last poll went out.
    pub last: Instant,
}

impl PollPace {
    /// Starts at the fastest pace: the first acks tell how fast the indexers are.
    pub fn new(max: Duration) -> PollPace {
        let floor = FLOOR.min(max);
        PollPace {
            max,
            floor,
            every: floor,
            latency: None,
            last: Instant::now(),
        }
    }

    /// Time between polls now.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Takes in a poll's answer: the longest latency among the requests it found
    /// acknowledged (none when it found none), and how many it asked about are still waiting.
    pub fn observe(&mut self, acked_latency: Option<Duration>, still_waiting: usize) {
        match acked_latency {
            Some(l) => {
                let smooth = match self.latency {
                    Some(old) => (old * 3 + l) / 4,
                    None => l,
                };
                self.latency = Some(smooth);
                self.every = (smooth / 2).clamp(self.floor, self.max);
            }
            None if still_waiting > 0 => self.every = (self.every * 2).min(self.max),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn fast_acks_keep_the_fastest_pace() {
        let mut p = PollPace::new(Duration::from_secs(1));
        assert_eq!(p.every(), FLOOR);
        for _ in 0..10 {
            p.observe(Some(25 * MS), 0);
        }
        assert_eq!(p.every(), FLOOR);
    }

    #[test]
    fn slow_acks_slow_the_pace_down_to_the_configured_interval() {
        let mut p = PollPace::new(Duration::from_secs(1));
        p.observe(Some(600 * MS), 3);
        assert_eq!(p.every(), 300 * MS);
        for _ in 0..20 {
            p.observe(Some(5000 * MS), 3);
        }
        assert_eq!(p.every(), Duration::from_secs(1));
        // Faster acks bring it back, smoothed: one fast answer is not enough.
        p.observe(Some(40 * MS), 0);
        assert_eq!(p.every(), Duration::from_secs(1));
        for _ in 0..4 {
            p.observe(Some(40 * MS), 0);
        }
        assert!(p.every() < Duration::from_secs(1) && p.every() > 300 * MS);
        for _ in 0..60 {
            p.observe(Some(40 * MS), 0);
        }
        assert!(p.every() < FLOOR + MS);
    }

    #[test]
    fn polls_that_find_nothing_back_off() {
        let mut p = PollPace::new(Duration::from_millis(250));
        p.observe(None, 4);
        assert_eq!(p.every(), 40 * MS);
        for _ in 0..10 {
            p.observe(None, 4);
        }
        assert_eq!(p.every(), 250 * MS);
        // Nothing was waiting: no reason to change.
        p.observe(None, 0);
        assert_eq!(p.every(), 250 * MS);
    }

    #[test]
    fn a_configured_interval_below_the_floor_is_kept() {
        let mut p = PollPace::new(Duration::from_millis(10));
        p.observe(None, 1);
        assert_eq!((p.floor, p.every()), (10 * MS, 10 * MS));
    }
}
