//! The cluster's nodes as the client sees them: requests go round robin over the configured
//! endpoints, and a node that refuses connections is taken out (for 1 s, then twice as long
//! after each further refusal, up to 60 s) while the others take its requests. Only a refused
//! connection moves a request to the next node at once: nothing was sent, so nothing can be
//! indexed twice. A timeout or a cut answer is not retried here (the request may have been
//! applied) but by the attempt's own retry, as before. When every node is out, each is tried
//! all the same, so a cluster that comes back is found at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a refusing node stays out first, and at most.
const OUT_FIRST: Duration = Duration::from_secs(1);
const OUT_MOST: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Health {
    /// Out of the rotation until then.
    out_until: Option<Instant>,
    /// Refusals in a row.
    refusals: u32,
}

/// Round robin over nodes, with the refusing ones taken out.
#[derive(Debug)]
pub struct Nodes {
    health: Vec<Mutex<Health>>,
    next: AtomicUsize,
}

impl Nodes {
    /// `n` nodes, all in.
    pub fn new(n: usize) -> Nodes {
        Nodes {
            health: (0..n).map(|_| Mutex::new(Health::default())).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The order to try the nodes in for one request: round robin over those in, then those
    /// out (soonest back first).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.health.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let mut ins = Vec::with_capacity(n);
        let mut outs = Vec::new();
        for i in (0..n).map(|k| (start + k) % n) {
            match self.health[i].lock().expect("node health").out_until {
                Some(until) if until > now => outs.push((until, i)),
                _ => ins.push(i),
            }
        }
        outs.sort();
        ins.extend(outs.into_iter().map(|(_, i)| i));
        ins
    }

    /// Node `i` refused a connection: out for longer each time; returns for how long.
    pub fn refused(&self, i: usize, now: Instant) -> Duration {
        let mut h = self.health[i].lock().expect("node health");
        let out = OUT_FIRST
            .saturating_mul(1 << h.refusals.min(16))
            .min(OUT_MOST);
        h.refusals = h.refusals.saturating_add(1);
        h.out_until = Some(now + out);
        out
    }

    /// Node `i` answered: back in. True when it was out.
    pub fn answered(&self, i: usize) -> bool {
        let mut h = self.health[i].lock().expect("node health");
        let was_out = h.refusals > 0;
        *h = Health::default();
        was_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusing_nodes_go_last_and_come_back_after_their_time() {
        let nodes = Nodes::new(3);
        let t = Instant::now();
        assert_eq!(nodes.order(t), vec![0, 1, 2]);
        assert_eq!(nodes.order(t), vec![1, 2, 0]);
        assert_eq!(nodes.refused(1, t), Duration::from_secs(1));
        assert_eq!(nodes.order(t), vec![2, 0, 1]);
        assert_eq!(nodes.order(t), vec![0, 2, 1]);
        // Longer each time, up to a minute.
        assert_eq!(nodes.refused(1, t), Duration::from_secs(2));
        for _ in 0..10 {
            nodes.refused(1, t);
        }
        assert_eq!(nodes.refused(1, t), OUT_MOST);
        assert_eq!(nodes.order(t + OUT_MOST * 2), vec![1, 2, 0]);
        assert!(nodes.answered(1));
        assert!(!nodes.answered(1));
        // All out: all tried, soonest back first.
        nodes.refused(0, t);
        nodes.refused(2, t);
        nodes.refused(2, t);
        assert_eq!(nodes.order(t)[..2], [1, 0]);
    }
}
