//! CBV 2.0 event hash ID of one commissioning event, the shape `ingest_bench` sends: the
//! cost every ingested event pays on a verification worker besides its signature check.
//!
//! `cargo run --release -p rxledger-core --example hash_micro` prints seven rounds of 100,000
//! hashes; quote the fastest (the machine is noisy) and compare builds in the same minute.
use std::time::Instant;

fn main() {
    let ev: serde_json::Value = serde_json::json!({
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T10:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.B123456"],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2030-01-31"}
    });
    let n = 100_000;
    let mut best = f64::MAX;
    for round in 0..7 {
        let t = Instant::now();
        let mut len = 0usize;
        for _ in 0..n {
            len += rxledger_core::epcis::event_hash_id(&ev).unwrap().len();
        }
        let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        best = best.min(us);
        println!("round {round}: {us:.2} us per hash ({len} bytes of IDs)");
    }
    println!("fastest round: {best:.2} us per hash");
}
