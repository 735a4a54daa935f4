//! Fault switches: what the receiver does wrong on purpose, set by command-line flags at start
//! and by `POST /_receiver/faults` at run time. The same struct is the CLI flags and the JSON body.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A change to the fault switches. Absent fields leave a switch as it is; `clear` resets all
/// switches before the rest is applied.
#[derive(Debug, Clone, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct FaultUpdate {
    /// Reset every switch first (JSON only).
    #[arg(skip)]
    #[serde(default)]
    pub clear: bool,
    /// Answer the next N event/raw requests with 503 code 9 "Server is busy".
    #[arg(long)]
    pub busy_requests: Option<u64>,
    /// Answer event/raw requests with 503 code 9 for this many seconds from now.
    #[arg(long)]
    pub busy_for_s: Option<f64>,
    /// Report 503 code 18 on the health endpoint (busy faults do too while active).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub unhealthy: Option<bool>,
    /// Requests accepted from now on are acked only this many seconds after acceptance.
    #[arg(long)]
    pub ack_delay_s: Option<f64>,
    /// Requests accepted from now on get an ackId that never becomes true.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub never_ack: Option<bool>,
    /// Close the connection without a response for the next N event/raw requests (nothing stored).
    #[arg(long)]
    pub drop_requests: Option<u64>,
    /// Store the next N event/raw requests, then close the connection without a response.
    #[arg(long)]
    pub drop_after_store_requests: Option<u64>,
    /// Answer the next N event/raw requests with HTTP 429.
    #[arg(long)]
    pub status_429_requests: Option<u64>,
    /// Answer the next N event/raw requests with 500 code 8 "Internal server error".
    #[arg(long)]
    pub status_500_requests: Option<u64>,
}

/// What to do to one request instead of handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    Drop,
    Status500,
    Status429,
    Busy,
}

/// When an accepted request's ackId becomes true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckReady {
    At(Instant),
    Never,
}

/// The current switches.
#[derive(Debug, Default)]
pub struct Faults {
    busy_requests: u64,
    busy_until: Option<Instant>,
    unhealthy: bool,
    ack_delay: Duration,
    never_ack: bool,
    drop_requests: u64,
    drop_after_store_requests: u64,
    status_429_requests: u64,
    status_500_requests: u64,
}

/// The switches as `GET /_receiver/faults` shows them (`busy_for_s` is the time left).
#[derive(Debug, Serialize)]
pub struct FaultView {
    pub busy_requests: u64,
    pub busy_for_s: f64,
    pub unhealthy: bool,
    pub ack_delay_s: f64,
    pub never_ack: bool,
    pub drop_requests: u64,
    pub drop_after_store_requests: u64,
    pub status_429_requests: u64,
    pub status_500_requests: u64,
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

impl Faults {
    /// Applies an update at `now`.
    pub fn apply(&mut self, u: &FaultUpdate, now: Instant) {
        if u.clear {
            *self = Faults::default();
        }
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut self.busy_requests, u.busy_requests);
        set(&mut self.drop_requests, u.drop_requests);
        set(
            &mut self.drop_after_store_requests,
            u.drop_after_store_requests,
        );
        set(&mut self.status_429_requests, u.status_429_requests);
        set(&mut self.status_500_requests, u.status_500_requests);
        if let Some(s) = u.busy_for_s {
            self.busy_until = (s > 0.0).then(|| now + seconds(s));
        }
        if let Some(b) = u.unhealthy {
            self.unhealthy = b;
        }
        if let Some(s) = u.ack_delay_s {
            self.ack_delay = seconds(s);
        }
        if let Some(b) = u.never_ack {
            self.never_ack = b;
        }
    }

    /// Takes the fault (if any) for the next event/raw request. Precedence: drop, 500, 429, busy.
    pub fn take(&mut self, now: Instant) -> Option<Injected> {
        let take = |n: &mut u64| {
            let hit = *n > 0;
            *n = n.saturating_sub(1);
            hit
        };
        if take(&mut self.drop_requests) {
            Some(Injected::Drop)
        } else if take(&mut self.status_500_requests) {
            Some(Injected::Status500)
        } else if take(&mut self.status_429_requests) {
            Some(Injected::Status429)
        } else if take(&mut self.busy_requests) || self.busy_until.is_some_and(|t| now < t) {
            Some(Injected::Busy)
        } else {
            None
        }
    }

    /// Whether the request just stored should lose its response.
    pub fn take_drop_after_store(&mut self) -> bool {
        let hit = self.drop_after_store_requests > 0;
        self.drop_after_store_requests = self.drop_after_store_requests.saturating_sub(1);
        hit
    }

    /// When a request accepted at `now` gets acked.
    pub fn ack_ready(&self, now: Instant) -> AckReady {
        if self.never_ack {
            AckReady::Never
        } else {
            AckReady::At(now + self.ack_delay)
        }
    }

    /// Whether health should report unhealthy.
    pub fn unhealthy(&self, now: Instant) -> bool {
        self.unhealthy || self.busy_requests > 0 || self.busy_until.is_some_and(|t| now < t)
    }

    /// A snapshot for the control API.
    pub fn view(&self, now: Instant) -> FaultView {
        FaultView {
            busy_requests: self.busy_requests,
            busy_for_s: self
                .busy_until
                .map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64()),
            unhealthy: self.unhealthy,
            ack_delay_s: self.ack_delay.as_secs_f64(),
            never_ack: self.never_ack,
            drop_requests: self.drop_requests,
            drop_after_store_requests: self.drop_after_store_requests,
            status_429_requests: self.status_429_requests,
            status_500_requests: self.status_500_requests,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_run_out_in_precedence_order() {
        let now = Instant::now();
        let mut f = Faults::default();
        let update: FaultUpdate = serde_json::from_str(
            r#"{"busy_requests":1,"drop_requests":1,"status_500_requests":1,"status_429_requests":1}"#,
        )
        .unwrap();
        f.apply(&update, now);
        assert!(f.unhealthy(now));
        let seen: Vec<_> = (0..5).map(|_| f.take(now)).collect();
        assert_eq!(
            seen,
            vec![
                Some(Injected::Drop),
                Some(Injected::Status500),
                Some(Injected::Status429),
                Some(Injected::Busy),
                None
            ]
        );
        assert!(!f.unhealthy(now));
    }

    #[test]
    fn timed_busy_and_ack_switches() {
        let now = Instant::now();
        let mut f = Faults::default();
        let update: FaultUpdate =
            serde_json::from_str(r#"{"busy_for_s":1.5,"ack_delay_s":2,"never_ack":false}"#)
                .unwrap();
        f.apply(&update, now);
        assert_eq!(f.take(now), Some(Injected::Busy));
        assert_eq!(f.take(now + Duration::from_secs(2)), None);
        assert_eq!(f.ack_ready(now), AckReady::At(now + Duration::from_secs(2)));
        f.apply(
            &serde_json::from_str(r#"{"clear":true,"never_ack":true}"#).unwrap(),
            now,
        );
        assert_eq!(f.ack_ready(now), AckReady::Never);
        assert_eq!(f.take(now), None);
        assert!(serde_json::from_str::<FaultUpdate>(r#"{"bogus":1}"#).is_err());
    }
}
