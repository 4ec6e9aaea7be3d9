//! A token bucket per API key (anonymous callers: per client IP), so one runaway client
//! cannot starve the pharmacies that share a node. Buckets live in memory on each node.
//!
//! Requests are weighted: a GraphQL operation takes one token per [`crate::cost::Limits`]
//! `cost_per_token` points of its cost (a pharmacy's full `verify` takes one, a page of 1,000
//! raw entries about thirty), and each web route takes a fixed number ([`RouteCost`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Tokens per second and burst size of each caller's bucket.
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
        self.take(who, 1.0)
    }

    /// Takes `tokens` from `who`'s bucket, or none; `Err(seconds)` says when enough are due.
    /// A charge larger than the burst is capped at the burst, so it can always pass eventually.
    pub fn take(&self, who: &str, tokens: f64) -> Result<(), f64> {
        let now = Instant::now();
        let RateLimit { per_second, burst } = self.limit;
        let want = tokens.clamp(0.0, burst.max(1.0));
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
        if *tokens >= want {
            *tokens -= want;
            Ok(())
        } else {
            Err((want - *tokens) / per_second)
        }
    }
}

/// Tokens each web route takes from the caller's bucket, by what it costs the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteCost {
    /// The resolver (`/01/…`, `/verify/…`): one `verify`.
    Resolve,
    /// `/qr/…`: a `verify` when the lot or expiry is missing, and an image.
    Qr,
    /// `/labels/…`: a lot's serials, a `verify` and a sheet of 21 codes.
    Labels,
    /// `POST /scan`: decoding a photo of up to the pixel budget.
    Scan,
    /// Opening a GraphQL WebSocket (each operation on it is charged by its cost as well).
    WsConnect,
    /// A tlog-tiles resource: the checkpoint, a hash tile or an entry bundle (one read).
    Tile,
}

impl RouteCost {
    pub fn tokens(self) -> f64 {
        match self {
            RouteCost::Resolve | RouteCost::WsConnect | RouteCost::Tile => 1.0,
            RouteCost::Qr => 2.0,
            RouteCost::Labels => 5.0,
            RouteCost::Scan => 10.0,
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

    #[test]
    fn weighted_charges_take_all_or_nothing() {
        let l = Limiter::new(RateLimit {
            per_second: 0.001,
            burst: 10.0,
        });
        assert_eq!(l.take("a", 6.0), Ok(()));
        assert!(l.take("a", 6.0).is_err(), "4 left, 6 wanted");
        assert_eq!(l.take("a", 4.0), Ok(()), "a refusal takes nothing");
        // Larger than the burst: capped at the burst, so it passes on a full bucket.
        assert_eq!(l.take("b", 50.0), Ok(()));
        assert!(l.take("b", 1.0).is_err());
    }
}
