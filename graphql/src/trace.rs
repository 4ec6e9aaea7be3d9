//! Tracing requests (issue 23 item 1): a regulator, or a brand owner for its own products,
//! asks who owned and held a pack or a lot; the request is itself a ledger entry.
//!
//! The answer is derived like every verdict (`Packs::events`, `pack::derive_with`), walked by
//! `core::trace::owners` and cut by the scope. It comes with an EPCIS 2.0 document of the
//! events it rests on and, for regulators, an evidence bundle (the entries, their inclusion
//! proofs and the checkpoint) that `rxledger verify-bundle` checks offline. A brand owner
//! gets no bundle: raw entries of other partners are the regulators' (`visibility`).
//!
//! The request is recorded before the answer is built from the checkpoint that includes it,
//! so the bundle proves the request too. `traceRequests` lists the requests a caller made
//! or was asked; regulators see all.

use std::collections::{BTreeSet, HashMap};

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use rxledger_core::gs1::{EpcId, Sgtin};
use rxledger_core::pack;
use rxledger_core::trace::{
    self, Bundle, BundleEntry, Trace, TraceReason, TraceRecord, TraceScope,
};
use rxledger_store::desk;
use rxledger_store::packs::owner_of;

use crate::admin::services;
use crate::auth::{KEYED, Role, require};
use crate::verify::{derive_options, parse};
use crate::{ApiError, Code, MAX_PAGE, Services};

/// Most packs one request may trace (a lot larger than this is traced in parts, by pack).
pub const MAX_TRACE_PACKS: usize = 10_000;

/// The PDG Blueprint's response types.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TraceScopeIn {
    TransactionInformation,
    AllKnownOwners,
    LastKnownOwner,
}

/// Why the request is made.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum TraceReasonIn {
    Suspect,
    Illegitimate,
    Recall,
    Audit,
    Inspection,
}

impl From<TraceScopeIn> for TraceScope {
    fn from(s: TraceScopeIn) -> Self {
        match s {
            TraceScopeIn::TransactionInformation => TraceScope::TransactionInformation,
            TraceScopeIn::AllKnownOwners => TraceScope::AllKnownOwners,
            TraceScopeIn::LastKnownOwner => TraceScope::LastKnownOwner,
        }
    }
}

impl From<TraceReasonIn> for TraceReason {
    fn from(r: TraceReasonIn) -> Self {
        match r {
            TraceReasonIn::Suspect => TraceReason::Suspect,
            TraceReasonIn::Illegitimate => TraceReason::Illegitimate,
            TraceReasonIn::Recall => TraceReason::Recall,
            TraceReasonIn::Audit => TraceReason::Audit,
            TraceReasonIn::Inspection => TraceReason::Inspection,
        }
    }
}

/// A tracing request as the ledger recorded it.
#[derive(SimpleObject)]
pub struct TraceRequestOut {
    pub entry_index: i64,
    pub requester: String,
    /// The pack or lot asked about, as a GS1 Digital Link.
    pub subject: String,
    pub scope: String,
    pub reason: String,
    pub incident_number: Option<String>,
    pub test: bool,
    /// The organisations asked: every owner and custodian the answer names.
    pub parties: Vec<String>,
    pub asked_at: String,
}

impl TraceRequestOut {
    fn of(index: u64, r: TraceRecord) -> Self {
        TraceRequestOut {
            entry_index: index as i64,
            requester: r.requester,
            subject: r.subject,
            scope: r.scope.to_string(),
            reason: r.reason.to_string(),
            incident_number: r.incident,
            test: r.test,
            parties: r.parties,
            asked_at: r.asked_at,
        }
    }
}

/// An organisation as the answer names it.
#[derive(SimpleObject)]
pub struct TraceParty {
    /// Its registry id (or the party id as logged, when unregistered).
    pub organization: String,
    pub name: Option<String>,
    /// Where (a GLN), when known.
    pub gln: Option<String>,
}

#[derive(SimpleObject)]
pub struct TraceOwner {
    pub party: TraceParty,
    /// COMMISSIONED, SHIPPED (named owner by a shipment) or RECEIVED.
    pub step: String,
    pub since: String,
    pub entry_index: i64,
}

#[derive(SimpleObject)]
pub struct TraceTransaction {
    pub entry_index: i64,
    pub event_time: String,
    pub biz_step: String,
    /// Who reported it, and where.
    pub party: TraceParty,
    /// Business documents, as `type id` (purchase order, despatch advice, invoice).
    pub documents: Vec<String>,
    /// The case or pallet it reached the pack through, if not directly.
    pub through_container: Option<String>,
}

#[derive(SimpleObject)]
pub struct TracePacking {
    pub entry_index: i64,
    pub event_time: String,
    pub container: String,
    /// Packed into (true) or taken out of (false) the container.
    pub packed: bool,
}

#[derive(SimpleObject)]
pub struct TracedPack {
    /// The pack, as a GS1 Digital Link.
    pub code: String,
    /// ACTIVE, DISPENSED, ... or UNKNOWN when no event names it.
    pub status: String,
    pub owners: Vec<TraceOwner>,
    pub transactions: Vec<TraceTransaction>,
    pub aggregations: Vec<TracePacking>,
}

#[derive(SimpleObject)]
pub struct TraceAnswer {
    pub request: TraceRequestOut,
    /// The checkpoint the bundle's proofs verify against; it includes the request.
    pub checkpoint_size: i64,
    pub packs: Vec<TracedPack>,
    /// An EPCIS 2.0 JSON-LD document of the events the answer rests on (the text to save).
    pub epcis_document: String,
    /// The evidence bundle (JSON: the entries, their inclusion proofs and the checkpoint)
    /// for `rxledger verify-bundle`; regulators only.
    pub evidence_bundle: Option<String>,
}

/// What the code names: one pack, or a lot's packs.
async fn subject(s: &Services, code: &str) -> Result<(String, Vec<Sgtin>, EpcId), ApiError> {
    let scanned = parse(code)?;
    if let Some(sgtin) = scanned.sgtin() {
        let id = EpcId::Sgtin(sgtin.clone());
        return Ok((trace::id_text(&id), vec![sgtin], id));
    }
    let (Some(gtin), Some(lot)) = (&scanned.gtin, &scanned.lot) else {
        return Err(ApiError::new(
            Code::InvalidCode,
            "name a pack (GTIN and serial) or a lot (GTIN and lot)",
        ));
    };
    let packs: Vec<Sgtin> = s
        .packs
        .lot_serials(gtin, lot)
        .await?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    if packs.len() > MAX_TRACE_PACKS {
        return Err(ApiError::bad_request(format!(
            "the lot has {} packs, more than the {MAX_TRACE_PACKS} one request may trace",
            packs.len()
        )));
    }
    let id = EpcId::Lgtin {
        gtin: gtin.clone(),
        lot: lot.clone(),
    };
    let text = format!("https://id.gs1.org/01/{gtin}/10/{}", lot.as_str());
    Ok((text, packs, id))
}

/// One pack's trace: its status and what the scope keeps.
struct PackTrace {
    pack: Sgtin,
    status: String,
    trace: Trace,
}

async fn trace_packs(
    s: &Services,
    packs: &[Sgtin],
    scope: TraceScope,
) -> Result<Vec<PackTrace>, ApiError> {
    let directory = s.packs.directory().await?;
    let opts = derive_options(&directory);
    let mut out = Vec::with_capacity(packs.len());
    for p in packs {
        let events = s.packs.events(p).await?;
        let (status, trace) = if events.is_empty() {
            (pack::PackStatus::Unknown.to_string(), Trace::default())
        } else {
            let state = events.derive(&opts);
            let t = trace::owners(&state, &events.events, directory.as_ref()).scoped(scope);
            (state.status.to_string(), t)
        };
        out.push(PackTrace {
            pack: p.clone(),
            status,
            trace,
        });
    }
    Ok(out)
}

/// GraphQL `traceRequest`.
async fn trace_request(
    ctx: &Context<'_>,
    code: &str,
    scope: TraceScope,
    reason: TraceReason,
    incident: Option<String>,
    test: bool,
) -> Result<TraceAnswer, ApiError> {
    let c = require(ctx, &[Role::Regulator, Role::Manufacturer])?;
    let s = services(ctx);
    let org = c
        .org()
        .ok_or_else(|| ApiError::new(Code::Unauthenticated, "an API key is needed"))?
        .to_string();
    let incident = incident
        .map(|i| trace::parse_incident(&i))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (subject, packs, subject_id) = subject(s, code).await?;
    let regulator = c.role() == Some(Role::Regulator);
    if !regulator {
        let gtin = match &subject_id {
            EpcId::Sgtin(p) => &p.gtin,
            EpcId::Lgtin { gtin, .. } => gtin,
            _ => return Err(ApiError::bad_request("name a pack or a lot")),
        };
        if owner_of(&s.packs.prefixes().await?, gtin).as_deref() != Some(org.as_str()) {
            return Err(ApiError::new(
                Code::Forbidden,
                "a brand owner may trace its own products only",
            ));
        }
    }
    let traced = trace_packs(s, &packs, scope).await?;
    let parties: BTreeSet<String> = traced.iter().flat_map(|t| t.trace.parties()).collect();
    if parties.len() > trace::MAX_PARTIES {
        return Err(ApiError::bad_request(format!(
            "the answer names more than {} parties: trace fewer packs at once",
            trace::MAX_PARTIES
        )));
    }
    let now = rxledger_store::now_ms();
    let record = TraceRecord {
        requester: org,
        subject,
        scope,
        reason,
        incident,
        test,
        parties: parties.into_iter().collect(),
        asked_at: rxledger_core::epcis::format_time(now),
    };
    let (index, head) = desk::append_trace_record(&s.ledger, &record, now).await?;
    let names = org_names(s).await?;
    let mut cited: BTreeSet<u64> = traced.iter().flat_map(|t| t.trace.entries()).collect();
    let entries = desk::entry_bytes(&s.ledger, &cited.iter().copied().collect::<Vec<_>>()).await?;
    let ids = named(&traced, subject_id);
    let document = trace::epcis_document(trace::events_naming(&entries, &ids), &record.asked_at);
    let evidence_bundle = if regulator {
        cited.insert(index);
        Some(bundle(s, &cited, head.size, &head.note).await?)
    } else {
        None
    };
    Ok(TraceAnswer {
        request: TraceRequestOut::of(index, record),
        checkpoint_size: head.size as i64,
        packs: traced.into_iter().map(|t| traced_pack(t, &names)).collect(),
        epcis_document: document.to_string(),
        evidence_bundle,
    })
}

/// The identifiers whose events the EPCIS document holds: the packs, their containers, the
/// lot.
fn named(traced: &[PackTrace], subject: EpcId) -> Vec<EpcId> {
    let mut ids: Vec<EpcId> = vec![subject];
    for t in traced {
        ids.push(EpcId::Sgtin(t.pack.clone()));
        for p in &t.trace.packings {
            if !ids.contains(&p.parent) {
                ids.push(p.parent.clone());
            }
        }
        for x in t
            .trace
            .transactions
            .iter()
            .filter_map(|x| x.through.as_ref())
        {
            if !ids.contains(x) {
                ids.push(x.clone());
            }
        }
    }
    ids
}

/// The bundle of `indices` at the checkpoint of `size`, as JSON text.
async fn bundle(
    s: &Services,
    indices: &BTreeSet<u64>,
    size: u64,
    note: &str,
) -> Result<String, ApiError> {
    let wanted: Vec<u64> = indices.iter().copied().filter(|i| *i < size).collect();
    let mut entries = Vec::with_capacity(wanted.len());
    for (index, data) in desk::entry_bytes(&s.ledger, &wanted).await? {
        let proof = s.ledger.inclusion_proof(index, size).await?;
        entries.push(BundleEntry::new(index, &data, &proof));
    }
    let b = Bundle {
        checkpoint: note.to_string(),
        entries,
    };
    serde_json::to_string(&b).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise a bundle");
        ApiError::new(Code::Internal, "internal error")
    })
}

async fn org_names(s: &Services) -> Result<HashMap<String, String>, ApiError> {
    Ok(s.registry
        .organizations()
        .await?
        .into_iter()
        .map(|o| (o.id, o.name))
        .collect())
}

fn party(names: &HashMap<String, String>, org: &str, gln: Option<&String>) -> TraceParty {
    TraceParty {
        organization: org.to_string(),
        name: names.get(org).cloned(),
        gln: gln.cloned(),
    }
}

fn traced_pack(t: PackTrace, names: &HashMap<String, String>) -> TracedPack {
    let time = rxledger_core::epcis::format_time;
    TracedPack {
        code: trace::id_text(&EpcId::Sgtin(t.pack)),
        status: t.status,
        owners: t
            .trace
            .owners
            .iter()
            .map(|o| TraceOwner {
                party: party(names, &o.party, o.location.as_ref()),
                step: o.step.to_string(),
                since: time(o.since_ms),
                entry_index: o.index as i64,
            })
            .collect(),
        transactions: t
            .trace
            .transactions
            .iter()
            .map(|x| TraceTransaction {
                entry_index: x.index as i64,
                event_time: time(x.time_ms),
                biz_step: x.biz_step.as_str().to_string(),
                party: party(names, &x.org, x.location.as_ref()),
                documents: x
                    .documents
                    .iter()
                    .map(|(k, id)| format!("{k} {id}").trim().to_string())
                    .collect(),
                through_container: x.through.as_ref().map(trace::id_text),
            })
            .collect(),
        aggregations: t
            .trace
            .packings
            .iter()
            .map(|p| TracePacking {
                entry_index: p.index as i64,
                event_time: time(p.time_ms),
                container: trace::id_text(&p.parent),
                packed: p.packed,
            })
            .collect(),
    }
}

#[derive(Default)]
pub struct TraceMutation;

#[Object]
impl TraceMutation {
    /// Asks who owned and held a pack or a lot (US DSCSA tracing, the PDG Blueprint's
    /// fields). Regulators, and brand owners for their own products. The request is recorded
    /// in the ledger, naming the requester and every party asked.
    async fn trace_request(
        &self,
        ctx: &Context<'_>,
        code: String,
        scope: TraceScopeIn,
        reason: TraceReasonIn,
        incident_number: Option<String>,
        #[graphql(default = false)] test: bool,
    ) -> Result<TraceAnswer> {
        Ok(trace_request(
            ctx,
            &code,
            scope.into(),
            reason.into(),
            incident_number,
            test,
        )
        .await?)
    }
}

#[derive(Default)]
pub struct TraceQuery;

#[Object]
impl TraceQuery {
    /// The tracing requests the caller made or was asked, newest first; regulators and
    /// admins see every one.
    async fn trace_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i64,
        before: Option<i64>,
    ) -> Result<Vec<TraceRequestOut>> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        let org = match c.role() {
            Some(Role::Regulator | Role::Admin) => None,
            _ => c.org(),
        };
        let first = first.clamp(0, MAX_PAGE) as u64;
        let rows = desk::trace_requests(&s.ledger, org, first, before.map(|b| b.max(0) as u64))
            .await
            .map_err(ApiError::from)?;
        let log = s.ledger.verifier();
        let mut out = Vec::with_capacity(rows.len());
        for (index, bytes) in rows {
            match trace::open_record(&bytes, log) {
                Ok(r) => out.push(TraceRequestOut::of(index, r)),
                Err(e) => tracing::error!(index, error = %e, "a listed trace record does not open"),
            }
        }
        Ok(out)
    }
}
