//! The ingest rules that need the ledger (brand ownership, one commissioning per serial, no
//! reporting from another organization's site), applied to a whole batch before its append.
//! What they read and how they answer `core::pack::check_ingest` is `store::rules`, shared
//! with the EPCIS REST capture.

use std::collections::HashSet;

use rxledger_core::codes::RejectCode;
use rxledger_core::pack;
use rxledger_store::Severity;
use rxledger_store::packs::Packs;
use rxledger_store::rules::{self, Lookups, Submitter};

use super::{Checked, Ready, Reject, retry};

/// Applies the rules, turning violating messages into rejections before the batch is
/// appended. Lookups that fail (the database is down) are retried: nothing is acked meanwhile.
pub(super) async fn apply(batch: &mut [Checked<Ready>], packs: &Packs) {
    if !batch.iter().any(|c| c.outcome.is_ok()) {
        return;
    }
    let keys: Vec<String> = batch
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok())
        .flat_map(|r| {
            r.entry
                .events
                .iter()
                .flat_map(|e| e.commissions.iter().map(|c| c.sgtin.clone()))
        })
        .collect();
    let lookups = retry("rule lookups", || rules::look_up(packs, &keys)).await;
    let mut in_batch: HashSet<String> = HashSet::new();
    let mut envelopes: HashSet<(String, Option<i64>)> = HashSet::new();
    for c in batch.iter_mut() {
        let Ok(ready) = &c.outcome else { continue };
        // A second copy of an envelope in the same batch is a redelivery: the ledger answers
        // it with the first copy's receipt, so the rules must not judge it again.
        if !envelopes.insert((ready.entry.signer.clone(), ready.entry.seq)) {
            continue;
        }
        match judge(ready, &lookups, &in_batch) {
            Ok(commissioned) => in_batch.extend(commissioned),
            Err(v) => {
                c.outcome = Err(Reject {
                    code: RejectCode::Rule(v.code),
                    message: v.message,
                    severity: Severity::Critical,
                    evidence: v.evidence,
                });
            }
        }
    }
}

/// Runs the rules over one envelope's events, in order; returns the serials it commissions.
fn judge(
    ready: &Ready,
    lookups: &Lookups,
    in_batch: &HashSet<String>,
) -> Result<HashSet<String>, pack::RuleViolation> {
    let who = Submitter {
        org: &ready.org,
        signer: &ready.entry.signer,
        seq: ready.entry.seq,
    };
    let mut in_envelope: HashSet<String> = HashSet::new();
    for (ev, row) in ready.parsed.iter().zip(&ready.entry.events) {
        rules::judge_event(ev, who, lookups, (in_batch, &in_envelope))?;
        in_envelope.extend(row.commissions.iter().map(|c| c.sgtin.clone()));
    }
    Ok(in_envelope)
}
