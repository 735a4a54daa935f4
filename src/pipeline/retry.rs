//! Retry timing: exponential backoff with jitter that never sleeps past the batch's budget,
//! and the budget itself as a deadline on the monotonic clock.

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// A batch's retry budget: `retry_duration_s` counted from its first attempt, which may have
/// been made by another process (a takeover inherits what is left).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    /// The budget of a batch first attempted at `first_attempt` (wall clock, from the control
    /// database). The wall clock is read once here; from then on the deadline is monotonic, so
    /// a step of the wall clock (NTP) neither ends a budget early nor stretches it. Time the
    /// machine spends suspended is not counted; the lease, which runs on the control
    /// database's clock, still hands such a batch to another worker.
    pub fn new(first_attempt: DateTime<Utc>, budget: Duration) -> Budget {
        let spent = (Utc::now() - first_attempt)
            .to_std()
            .unwrap_or(Duration::ZERO);
        Budget {
            deadline: Instant::now() + budget.saturating_sub(spent),
        }
    }

    /// What is left of the budget; zero once it has run out.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Backoff for one batch's retries.
pub struct RetryClock {
    backoff: ExponentialBackoff,
}

impl RetryClock {
    /// Starts at `initial`, doubles with ±50% jitter, caps each wait at `max`.
    pub fn new(initial: Duration, max: Duration) -> RetryClock {
        RetryClock {
            backoff: ExponentialBackoff {
                initial_interval: initial,
                current_interval: initial,
                max_interval: max,
                randomization_factor: 0.5,
                multiplier: 2.0,
                // The budget is counted from the batch's first attempt, which may have been made
                // by another process, so it is enforced by `wait`, not by the crate's clock.
                max_elapsed_time: None,
                ..ExponentialBackoff::default()
            },
        }
    }

    /// How long to wait before the next attempt, given the budget left; None when no budget is
    /// left, so the batch is given up.
    pub fn wait(&mut self, remaining: Duration) -> Option<Duration> {
        if remaining.is_zero() {
            return None;
        }
        // The crate applies its ±50% jitter after capping at `max_interval`, so a wait could
        // reach 1.5 times the cap; the cap is a promise to the operator, so it is applied last.
        let next = self
            .backoff
            .next_backoff()
            .unwrap_or(self.backoff.max_interval)
            .min(self.backoff.max_interval);
        Some(next.min(remaining))
    }

    /// The next wait whatever the budget says, for a batch that must wait past its budget
    /// (whether it was delivered is not known yet): it keeps backing off up to the cap
    /// instead of asking again at once.
    pub fn step(&mut self) -> Duration {
        self.backoff
            .next_backoff()
            .unwrap_or(self.backoff.max_interval)
            .min(self.backoff.max_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One batch's retry loop as the dispatcher runs it: attempt (each takes `attempt`), then
    /// give up if the budget is gone, else wait one backoff step. Returns the attempts made and
    /// when (since the start) the batch was given up.
    async fn run_until_given_up(
        budget: Budget,
        attempt: Duration,
        initial: Duration,
        max: Duration,
    ) -> (u32, Duration, Vec<Duration>) {
        let start = Instant::now();
        let mut clock = RetryClock::new(initial, max);
        let (mut attempts, mut waits) = (0, Vec::new());
        loop {
            attempts += 1;
            tokio::time::sleep(attempt).await;
            if budget.remaining().is_zero() {
                return (attempts, start.elapsed(), waits);
            }
            let wait = clock.wait(budget.remaining()).expect("budget left");
            waits.push(wait);
            tokio::time::sleep(wait).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_batch_is_given_up_when_its_budget_ends_not_before_and_not_long_after() {
        // Firehose's default for Elasticsearch and Splunk: 300 s; backoff 1 s doubling to 60 s.
        let budget = Budget::new(Utc::now(), Duration::from_secs(300));
        let (attempts, given_up_at, waits) = run_until_given_up(
            budget,
            Duration::from_secs(2),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .await;
        // The last wait is cut to the budget, so the final attempt starts at the deadline and
        // the give-up follows it by one attempt's duration.
        assert!(
            given_up_at >= Duration::from_secs(300) && given_up_at <= Duration::from_secs(303),
            "given up at {given_up_at:?}"
        );
        // No wait passes the cap, jitter included.
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(60)),
            "{waits:?}"
        );
        // 1, 2, 4, ... (±50%) up to 60 s each: about 9 to 14 attempts fit in 300 s.
        assert!(
            (8..=16).contains(&attempts),
            "{attempts} attempts, waits {waits:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_over_batch_keeps_only_what_is_left_of_its_budget() {
        let first = Utc::now() - chrono::Duration::seconds(250);
        let budget = Budget::new(first, Duration::from_secs(300));
        let left = budget.remaining();
        assert!(
            left > Duration::from_secs(49) && left <= Duration::from_secs(50),
            "{left:?}"
        );
        let (_, given_up_at, _) = run_until_given_up(
            budget,
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .await;
        assert!(given_up_at <= Duration::from_secs(51), "{given_up_at:?}");

        let spent = Budget::new(
            Utc::now() - chrono::Duration::hours(2),
            Duration::from_secs(300),
        );
        assert_eq!(spent.remaining(), Duration::ZERO);
        let (attempts, _, waits) = run_until_given_up(
            spent,
            Duration::from_millis(500),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(
            (attempts, waits.len()),
            (1, 0),
            "an exhausted budget gets one attempt"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_is_monotonic_once_read() {
        let budget = Budget::new(Utc::now(), Duration::from_secs(60));
        tokio::time::advance(Duration::from_secs(59)).await;
        // The wall clock and the monotonic one are read a few microseconds apart.
        let left = budget.remaining();
        assert!(
            left <= Duration::from_secs(1) && left > Duration::from_millis(990),
            "{left:?}"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(budget.remaining(), Duration::ZERO);
    }

    #[test]
    fn waits_past_the_budget_keep_backing_off_up_to_the_cap() {
        let mut c = RetryClock::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(c.wait(Duration::ZERO), None, "no budget left");
        let waits: Vec<Duration> = (0..12).map(|_| c.step()).collect();
        assert!(waits[0] >= Duration::from_millis(50));
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(2)));
        assert!(
            waits[11] >= Duration::from_secs(1),
            "grown to the cap, not 100 ms: {waits:?}"
        );
    }

    #[test]
    fn waits_grow_and_never_pass_the_budget() {
        let mut c = RetryClock::new(Duration::from_millis(100), Duration::from_secs(10));
        let first = c.wait(Duration::from_secs(100)).unwrap();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
        let mut last = first;
        for _ in 0..6 {
            last = c.wait(Duration::from_secs(100)).unwrap();
        }
        assert!(
            last > first * 4,
            "backoff should grow: {first:?} -> {last:?}"
        );
        assert!(last <= Duration::from_secs(10));
        assert_eq!(
            c.wait(Duration::from_millis(7)),
            Some(Duration::from_millis(7))
        );
        assert_eq!(c.wait(Duration::ZERO), None);
    }
}
