//! A token bucket per API key (anonymous callers: per client IP), so one runaway client
//! cannot starve the pharmacies that share a node. Buckets live in memory on each node.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Requests per second and burst size of each caller's bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

impl Default for RateLimit {
    /// 100 requests/s sustained with bursts of 200: far above what a pharmacy till sends,
    /// well below what one node serves (BENCHMARKS.md).
    fn default() -> Self {
        RateLimit {
            per_second: 100.0,
            burst: 200.0,
        }
    }
}

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct Limiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(limit: RateLimit) -> Limiter {
        Limiter {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `who`'s bucket; `Err(seconds)` says when the next one is due.
    pub fn check(&self, who: &str) -> Result<(), f64> {
        let now = Instant::now();
        let RateLimit { per_second, burst } = self.limit;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= SWEEP_AT {
            // A bucket refilled to the brim is the same as no bucket.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets.entry(who.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - *tokens) / per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_per_caller() {
        let l = Limiter::new(RateLimit {
            per_second: 0.001,
            burst: 3.0,
        });
        for _ in 0..3 {
            assert_eq!(l.check("a"), Ok(()));
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait > 900.0, "{wait}");
        assert_eq!(l.check("b"), Ok(()), "another caller has its own bucket");
    }
}
