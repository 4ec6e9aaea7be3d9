//! How long verifications take, per channel, as a histogram `/metrics` exposes
//! (`rxledger_verify_seconds`). The EU's bound is 300 ms at the 95th percentile (Delegated
//! Regulation 2016/161, Art. 35), so 0.3 s is one of the bucket edges.
//!
//! Recording is a few relaxed atomic adds: no lock on the verify path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le`); `+Inf` is the count.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5,
];

/// One histogram: cumulative-on-read bucket counts, the count and the sum.
#[derive(Default, Debug)]
pub struct Histogram {
    /// Observations that fell in each bucket (not cumulative; [`Histogram::snapshot`] sums).
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram read at one moment, as Prometheus wants it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `(le, observations ≤ le)` for each bucket, cumulative.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut running = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, n)| {
                running += n.load(Ordering::Relaxed);
                (*le, running)
            })
            .collect();
        Snapshot {
            buckets,
            // Read after the buckets: a concurrent observation may show in the count only,
            // never in a bucket above the count.
            count: self.count.load(Ordering::Relaxed).max(running),
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Verification latency by channel: GraphQL `verify` and the Digital Link resolver (page,
/// JSON and LVM answers), each timed from the parsed request to the built answer.
#[derive(Default, Debug)]
pub struct VerifyLatency {
    pub graphql: Histogram,
    pub resolver: Histogram,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_the_tail_counts() {
        let h = Histogram::default();
        for ms in [0, 3, 3, 40, 299, 301, 5_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        let le = |edge: f64| s.buckets.iter().find(|(l, _)| *l == edge).unwrap().1;
        assert_eq!(le(0.001), 1);
        assert_eq!(le(0.005), 3);
        assert_eq!(le(0.05), 4);
        assert_eq!(le(0.3), 5, "299 ms is within the EU bound");
        assert_eq!(le(0.5), 6);
        assert_eq!(le(2.5), 6, "5 s is past every bucket");
        assert_eq!(s.count, 7);
        assert!((s.sum_seconds - 5.646).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
