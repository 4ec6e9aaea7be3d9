//! The ingest rules that need the ledger (brand ownership, one commissioning per serial, no
//! reporting from another organization's site), applied to a whole batch before its append.

use std::collections::{HashMap, HashSet};

use rxledger_core::codes::RejectCode;
use rxledger_core::gs1::{Gtin, Sgtin};
use rxledger_core::index;
use rxledger_core::pack::{self, Commissioned, IngestContext};
use rxledger_store::packs::{self, Packs};
use rxledger_store::{Severity, StoreError};

use super::{Checked, Ready, Reject, retry};

/// What the registry and the ledger say about one batch, read once before its rules run.
struct Lookups {
    prefixes: std::sync::Arc<Vec<(String, String)>>,
    /// Registered sites: GLN to (organization, coordinates).
    directory: std::sync::Arc<packs::Directory>,
    /// Serials already in the ledger, by sgtin key: the entry that commissioned them.
    existing: HashMap<String, u64>,
    /// (signer, seq) of those entries: a resend of the very envelope is not a violation (the
    /// ledger answers it with the original receipt).
    origins: HashMap<u64, (String, i64)>,
}

/// What the ingest rules know about one event of the batch.
struct RuleContext<'a> {
    lookups: &'a Lookups,
    me: (&'a str, Option<i64>),
    /// Serials commissioned earlier in this batch, and earlier in this envelope.
    in_batch: &'a HashSet<String>,
    in_envelope: &'a HashSet<String>,
}

impl IngestContext for RuleContext<'_> {
    fn brand_owner(&self, gtin: &Gtin) -> Option<String> {
        index::owner_of(&self.lookups.prefixes, gtin)
    }

    fn already_commissioned(&self, sgtin: &Sgtin) -> Option<Commissioned> {
        let key = index::sgtin_key(sgtin);
        if let Some(index) = self.lookups.existing.get(&key) {
            let resend = self
                .lookups
                .origins
                .get(index)
                .is_some_and(|(s, q)| s == self.me.0 && Some(*q) == self.me.1);
            return (!resend).then_some(Commissioned::InEntry(*index));
        }
        (self.in_batch.contains(&key) || self.in_envelope.contains(&key))
            .then_some(Commissioned::EarlierInBatch)
    }

    fn site_owner(&self, gln: &str) -> Option<String> {
        pack::SiteDirectory::organization(&*self.lookups.directory, gln)
    }
}

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
    let lookups = retry("rule lookups", || look_up(packs, &keys)).await;
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
    let mut in_envelope: HashSet<String> = HashSet::new();
    for (ev, row) in ready.parsed.iter().zip(&ready.entry.events) {
        let ctx = RuleContext {
            lookups,
            me: (&ready.entry.signer, ready.entry.seq),
            in_batch,
            in_envelope: &in_envelope,
        };
        pack::check_ingest(ev, &ready.org, &ctx)?;
        in_envelope.extend(row.commissions.iter().map(|c| c.sgtin.clone()));
    }
    Ok(in_envelope)
}

/// Reads what the rules need for a batch that commissions the serials `keys`.
async fn look_up(packs: &Packs, keys: &[String]) -> Result<Lookups, StoreError> {
    let prefixes = packs.prefixes().await?;
    let directory = packs.directory().await?;
    let (existing, origins) = if keys.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let existing = packs.commissioned(keys).await?;
        let idx: Vec<u64> = existing.values().copied().collect();
        let origins = packs.signers_of(&idx).await?;
        (existing, origins)
    };
    Ok(Lookups {
        prefixes,
        directory,
        existing,
        origins,
    })
}
