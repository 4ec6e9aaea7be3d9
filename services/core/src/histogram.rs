//! A latency histogram that `/metrics` exposes in the Prometheus text format: fixed buckets,
//! recorded with a few relaxed atomic adds, so no lock sits on the path it times. The clock
//! is the caller's: [`Histogram::observe`] takes a duration.
//!
//! The EU's bound on a verification is 300 ms at the 95th percentile (Delegated Regulation
//! 2016/161, Art. 35), so 0.3 s is one of the bucket edges.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets of verification times, in seconds (Prometheus `le`); `+Inf`
/// is the count. 0.3 s is the EU's bound.
pub const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5,
];

/// Upper bounds of the buckets of ingest times (a batch's append, an envelope's time in the
/// node): finer between 10 ms and 300 ms, where a scanner's wait for its receipt lies and
/// where 0.1 s, issue 25's bound on its 99th percentile at half load, has to be told apart.
pub const INGEST_BUCKETS: [f64; 14] = [
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5,
];

/// The most buckets a histogram has.
const MAX_BUCKETS: usize = 16;

/// One histogram: cumulative-on-read bucket counts, the count and the sum.
#[derive(Debug)]
pub struct Histogram {
    edges: &'static [f64],
    /// Observations that fell in each bucket (not cumulative; [`Histogram::snapshot`] sums).
    buckets: [AtomicU64; MAX_BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram of verification times ([`BUCKETS`]).
impl Default for Histogram {
    fn default() -> Self {
        Histogram::with_edges(&BUCKETS)
    }
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
    /// A histogram with these bucket edges: increasing, at most 16 of them (more are ignored).
    pub fn with_edges(edges: &'static [f64]) -> Histogram {
        Histogram {
            edges: &edges[..edges.len().min(MAX_BUCKETS)],
            buckets: Default::default(),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.edges.iter().position(|le| secs <= *le) {
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
        let buckets = self
            .edges
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

    #[test]
    fn ingest_buckets_tell_apart_the_times_around_a_tenth_of_a_second() {
        let h = Histogram::with_edges(&INGEST_BUCKETS);
        for ms in [1, 80, 99, 101, 140, 5_000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        assert_eq!(s.buckets.len(), INGEST_BUCKETS.len());
        let le = |edge: f64| s.buckets.iter().find(|(l, _)| *l == edge).unwrap().1;
        assert_eq!(le(0.002), 1);
        assert_eq!(le(0.075), 1);
        assert_eq!(le(0.1), 3);
        assert_eq!(le(0.15), 5);
        assert_eq!(le(2.5), 5);
        assert_eq!(s.count, 6);
    }
}
