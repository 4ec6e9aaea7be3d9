//! What the regulator's and brand owner's desk reads beyond one pack: the events naming a
//! case or a lot itself (their quarantines and releases, their contents).

use std::collections::HashSet;
use std::sync::Arc;

use rxledger_core::gs1::EpcId;
use rxledger_core::pack::LoggedEvent;

use crate::StoreError;
use crate::packs::{Packs, epc_key};

impl Packs {
    /// Every event that names `id` in any role (epcList, parentID, childEPCs, quantity class),
    /// unordered, read from the log as a pack's are.
    pub async fn events_naming(&self, id: &EpcId) -> Result<Vec<Arc<LoggedEvent>>, StoreError> {
        let index = self.index().await?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        self.load(index, &[epc_key(id)], &mut seen, &mut out)
            .await?;
        Ok(out)
    }
}

/// Appends a tracing request as a ledger entry of its own (sealed by the log key, signed
/// `org:<requester>`), then lists who may read it. Returns the entry and the checkpoint that
/// includes it.
///
/// The `trace_parties` rows are written after the entry commits: a crash between the two
/// leaves the request in the log (its record names the parties) but unlisted, never the
/// reverse.
pub async fn append_trace_record(
    ledger: &crate::Ledger,
    record: &rxledger_core::trace::TraceRecord,
    asked_ms: i64,
) -> Result<(u64, crate::SignedHead), StoreError> {
    use rxledger_entities::trace_party;
    use sea_orm::{EntityTrait, Set};
    let entry = crate::NewEntry {
        data: rxledger_core::trace::seal_record(ledger.key(), record),
        kind: crate::ledger::EntryKind::DeskRecord,
        signer: format!("org:{}", record.requester),
        seq: None,
        events: vec![],
    };
    let batch = ledger.append(vec![entry]).await?;
    let index = match batch.admissions.into_iter().next() {
        Some(crate::Admission::Appended { index, .. }) => index,
        other => {
            return Err(StoreError::Invalid(format!(
                "the tracing request was not appended: {other:?}"
            )));
        }
    };
    let mut orgs: Vec<(&str, bool)> = vec![(record.requester.as_str(), true)];
    for p in &record.parties {
        if p != &record.requester {
            orgs.push((p.as_str(), false));
        }
    }
    for chunk in orgs.chunks(500) {
        let rows = chunk
            .iter()
            .map(|(org, requester)| trace_party::ActiveModel {
                entry_idx: Set(index as i64),
                org_id: Set((*org).to_string()),
                requester: Set(*requester),
                asked_ms: Set(asked_ms),
            });
        trace_party::Entity::insert_many(rows)
            .exec_without_returning(&ledger.database().conn)
            .await?;
    }
    Ok((index, batch.head))
}

/// The newest tracing requests `org` made or was asked (every one for `None`), newest
/// first, at most `first`, before entry `before`: (entry index, entry bytes).
pub async fn trace_requests(
    ledger: &crate::Ledger,
    org: Option<&str>,
    first: u64,
    before: Option<u64>,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    use rxledger_entities::{entry, trace_party};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    let db = &ledger.database().conn;
    let mut q = trace_party::Entity::find()
        .select_only()
        .column(trace_party::Column::EntryIdx)
        .distinct();
    if let Some(org) = org {
        q = q.filter(trace_party::Column::OrgId.eq(org));
    }
    if let Some(b) = before {
        q = q.filter(trace_party::Column::EntryIdx.lt(b as i64));
    }
    let indices: Vec<i64> = q
        .order_by_desc(trace_party::Column::EntryIdx)
        .limit(first)
        .into_tuple()
        .all(db)
        .await?;
    let mut rows: Vec<(u64, Vec<u8>)> = entry::Entity::find()
        .filter(entry::Column::Idx.is_in(indices))
        .all(db)
        .await?
        .into_iter()
        .map(|e| (e.idx as u64, e.data))
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    Ok(rows)
}

/// The exact bytes of these entries, by index (those that exist).
pub async fn entry_bytes(
    ledger: &crate::Ledger,
    indices: &[u64],
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    use rxledger_entities::entry;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let mut out = Vec::new();
    let idx: Vec<i64> = indices.iter().map(|i| *i as i64).collect();
    for chunk in idx.chunks(500) {
        for e in entry::Entity::find()
            .filter(entry::Column::Idx.is_in(chunk.to_vec()))
            .all(&ledger.database().conn)
            .await?
        {
            out.push((e.idx as u64, e.data));
        }
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out)
}
