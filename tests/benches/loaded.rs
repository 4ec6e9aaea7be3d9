//! What the benchmarks that load a large log straight through the store share: one entry
//! exactly as `append_state_change` writes it.

use anyhow::Context as _;
use rxledger_core::envelope::{self, Body};
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
