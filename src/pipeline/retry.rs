//! Retry timing: exponential backoff with jitter that never sleeps past the batch's budget.

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use std::time::Duration;

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
        let next = self
            .backoff
            .next_backoff()
            .unwrap_or(self.backoff.max_interval);
        Some(next.min(remaining))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
