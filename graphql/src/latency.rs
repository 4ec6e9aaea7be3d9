//! How long verifications take, per channel, as a histogram `/metrics` exposes
//! (`rxledger_verify_seconds`), with the EU's 300 ms bound as a bucket edge.

pub use rxledger_core::histogram::{Histogram, Snapshot};

/// Verification latency by channel: GraphQL `verify` and the Digital Link resolver (page,
/// JSON and LVM answers), each timed from the parsed request to the built answer.
#[derive(Default, Debug)]
pub struct VerifyLatency {
    pub graphql: Histogram,
    pub resolver: Histogram,
}
