//! What the benchmarks that load a large log straight through the store share: one entry
//! exactly as `append_state_change` writes it, and the identifiers of the loaded supply chain.

use anyhow::Context as _;
use rxledger_core::envelope::{self, Body};
use rxledger_core::gs1::{self, Sscc};
use rxledger_store::ledger::EntryKind;
use rxledger_store::{Ledger, NewEntry};
use serde_json::Value;

/// One entry exactly as `append_state_change` writes it: one event, sealed by the log key,
/// signer `org:<org>`, no sequence number.
pub fn entry(ledger: &Ledger, org: &str, event: Value) -> anyhow::Result<NewEntry> {
    let now = rxledger_store::now_ms();
    let (row, _) = rxledger_core::index::index_event(&event, org, now, 60_000)
        .with_context(|| format!("generated event is invalid: {event}"))?;
    let body = Body {
        v: envelope::VERSION,
        device_id: format!("org:{org}"),
        seq: 0,
        sent_at: rxledger_core::epcis::format_time(now),
        events: vec![event],
    };
    Ok(NewEntry {
        data: envelope::seal(ledger.key(), &body),
        kind: EntryKind::ApiStateChange,
        signer: format!("org:{org}"),
        seq: None,
        events: vec![row],
    })
}

/// The manufacturer's GS1 company prefix in both loaded logs.
pub const MFR_PREFIX: &str = "0614141";

/// An SSCC (extension digit, the manufacturer's prefix, serial reference, check digit) as an
/// EPC URN; extension 0 for cases, 1 for pallets.
pub fn sscc(extension: u8, n: u64) -> String {
    let body = format!("{extension}{MFR_PREFIX}{n:09}");
    // `body` is 17 digits, so a check digit exists and `Sscc::parse` accepts the result.
    let digits = format!("{body}{}", gs1::check_digit(&body).unwrap_or('0'));
    let s = Sscc::parse(&digits).expect("a generated SSCC has a valid check digit");
    s.to_epc_urn(MFR_PREFIX.len())
        .expect("a 7-digit company prefix is valid")
}

/// The GLN of location `location` under `prefix`.
pub fn gln(prefix: &str, location: u64) -> String {
    let body = format!("{prefix}{location:05}");
    format!("{body}{}", gs1::check_digit(&body).unwrap_or('0'))
}

/// That location as an SGLN EPC URN.
pub fn site(prefix: &str, location: u64) -> String {
    format!("urn:epc:id:sgln:{prefix}.{location:05}.0")
}

/// A PGLN naming the party whose site this is (normalises to the site's GLN).
pub fn party(prefix: &str, location: u64) -> String {
    format!("urn:epc:id:pgln:{prefix}.{location:05}")
}
