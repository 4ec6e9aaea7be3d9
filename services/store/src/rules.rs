//! The ingest rules that need the ledger (brand ownership, one commissioning per serial, no
//! reporting from another organization's site), with what they read from the store.
//!
//! Every channel that appends events judges them here: the MQTT sequencer for a batch of
//! envelopes (`ingest::pipeline::rules`), and the EPCIS REST capture for a document, inside
//! its append transaction. The rules themselves are `core::pack::check_ingest`; this module
//! only answers its questions ([`IngestContext`]) from one read of the registry and ledger.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rxledger_core::epcis::Event;
use rxledger_core::gs1::{Gtin, Sgtin};
use rxledger_core::index::{self, IndexedEvent};
use rxledger_core::pack::{self, Commissioned, IngestContext, RuleViolation};

use crate::StoreError;
use crate::packs::{self, Packs};

/// What the registry and the ledger say about one batch, read once before its rules run.
pub struct Lookups {
    prefixes: Arc<Vec<(String, String)>>,
    /// Registered sites: GLN to (organization, coordinates).
    directory: Arc<packs::Directory>,
    /// Serials already in the ledger, by sgtin key: the entry that commissioned them.
    existing: HashMap<String, u64>,
    /// (signer, seq) of those entries: a resend of the very envelope is not a violation (the
    /// ledger answers it with the original receipt).
    origins: HashMap<u64, (String, i64)>,
}

/// Reads what the rules need for a batch that commissions the serials `keys` (sgtin keys).
pub async fn look_up(packs: &Packs, keys: &[String]) -> Result<Lookups, StoreError> {
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

/// The sgtin keys a set of events commissions: what [`look_up`] needs to know about.
pub fn commission_keys<'a>(rows: impl IntoIterator<Item = &'a IndexedEvent>) -> Vec<String> {
    rows.into_iter()
        .flat_map(|r| r.commissions.iter().map(|c| c.sgtin.clone()))
        .collect()
}

/// Who submits the event being judged: its organization and the entry's (signer, seq).
#[derive(Clone, Copy, Debug)]
pub struct Submitter<'a> {
    pub org: &'a str,
    pub signer: &'a str,
    pub seq: Option<i64>,
}

/// Judges one event. `batch` holds the serials commissioned by the entries before this one in
/// the same batch, `entry` those commissioned earlier in this entry; on success the caller
/// adds the event's own commissions (`row.commissions`) to `entry`.
pub fn judge_event(
    ev: &Event,
    who: Submitter<'_>,
    lookups: &Lookups,
    (batch, entry): (&HashSet<String>, &HashSet<String>),
) -> Result<(), RuleViolation> {
    let ctx = RuleContext {
        lookups,
        me: (who.signer, who.seq),
        batch,
        entry,
    };
    pack::check_ingest(ev, who.org, &ctx)
}

/// What the ingest rules know about one event of the batch.
struct RuleContext<'a> {
    lookups: &'a Lookups,
    me: (&'a str, Option<i64>),
    /// Serials commissioned earlier in this batch, and earlier in this entry.
    batch: &'a HashSet<String>,
    entry: &'a HashSet<String>,
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
        (self.batch.contains(&key) || self.entry.contains(&key))
            .then_some(Commissioned::EarlierInBatch)
    }

    fn site_owner(&self, gln: &str) -> Option<String> {
        pack::SiteDirectory::organization(&*self.lookups.directory, gln)
    }
}
