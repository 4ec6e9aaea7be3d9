//! The verdict for one scanned code, as every channel serves it.
//!
//! GraphQL `verify`, the verification a state change returns, and the web resolver (its page,
//! JSON and Lightweight Verification Messaging answers, QR codes and label sheets) all call
//! this module with typed values: [`check`] derives the pack's state and decides the verdict
//! for the caller, and [`Verification::build`] adds what the caller asked for. So a verdict,
//! and what a caller may see of it (`visibility::viewer`), are decided in one place, and no
//! channel reads another's text back.
//!
//! The costly parts of a [`Verification`], inclusion proofs and the public timeline, are built
//! only when [`Wanted`], and so is the product's master data: GraphQL asks its look-ahead,
//! the resolver page and JSON want all three, QR codes and label sheets none. The verdict, reasons and status never depend on them.
//!
//! The output types also derive `serde::Serialize`, field for field as GraphQL writes them
//! (camelCase, in declaration order), which is the resolver's JSON answer.

use std::sync::Arc;

use async_graphql::SimpleObject;
use rxledger_core::eucodes;
use rxledger_core::gs1::{self, ScannedCode, Sgtin};
use rxledger_core::pack::{self, DEFAULT_UNDO_WINDOW_MS, DeriveOptions, PackState};
use rxledger_core::verdict::{self, Verdict};
use rxledger_store::StoreError;
use rxledger_store::packs::Directory;
use serde::Serialize;

use crate::auth::{Caller, Role};
use crate::hashes::Hashes;
use crate::product::TradeItem;
use crate::visibility::viewer;
use crate::{ApiError, Code, Services};

#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// AUTHENTIC, UNKNOWN_PRODUCT, UNKNOWN_SERIAL, BATCH_MISMATCH, EXPIRY_MISMATCH, EXPIRED,
    /// ALREADY_DISPENSED, RECALLED, QUARANTINED, STOLEN, DESTROYED, DECOMMISSIONED,
    /// NOT_IN_YOUR_CUSTODY or NO_SERIAL.
    pub verdict: String,
    /// Whether the pack may be handed to a patient.
    pub dispensable: bool,
    /// The EU Hub alert of the most severe reason that has one (docs/CODES.md).
    pub eu_alert: Option<String>,
    pub reasons: Vec<ReasonOut>,
    pub product: Option<Product>,
    /// ACTIVE, IN_TRANSIT, DISPENSED, ... or UNKNOWN.
    pub status: Option<String>,
    /// The ledger entries the verdict rests on, each with an inclusion proof.
    pub evidence: Vec<Evidence>,
    /// The checkpoint the proofs verify against.
    pub checkpoint_size: i64,
    pub checkpoint_note: String,
    /// The newest checkpoint a quorum of witnesses cosigned, when there is one: check it
    /// with the witnesses' keys, then `consistencyProof(fromSize: cosigned.size, toSize:
    /// checkpointSize)` links it to `checkpointNote` (docs/VERIFY.md).
    pub cosigned_checkpoint: Option<crate::ledger::CosignedCheckpoint>,
    /// What happened to the pack, oldest first, without any party's identity or location: fit
    /// for an anonymous caller. `provenance` gives entitled callers the full history.
    pub timeline: Vec<TimelineStep>,
    /// The proof that the verdict read every entry about the pack, its containers and its
    /// lot, against the map root the cited checkpoint covers (docs/VERIFY.md §4); null when
    /// not selected, for a state change's answer, or before the log commits a map root.
    pub completeness: Option<crate::completeness::Completeness>,
}

/// One step of a pack's public timeline.
#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineStep {
    pub index: i64,
    pub event_time: String,
    pub event_type: String,
    pub action: String,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    /// Whether the step reached the pack through its case, pallet or lot.
    pub inherited: bool,
}

#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasonOut {
    pub code: String,
    /// OK (nothing wrong), WARNING (look twice, may dispense), BLOCKED (do not dispense; not a
    /// sign of falsification) or ALERT (do not dispense; possible falsification: quarantine the
    /// pack and report it).
    pub severity: String,
    pub message: String,
    pub evidence: Vec<i64>,
    /// The EU Hub alert this reason raises in the EMVS (A3, A24, A52, A68), if any
    /// (docs/CODES.md).
    pub eu_alert: Option<String>,
    /// The NMVS return code behind it, if any.
    pub nmvs_code: Option<String>,
}

#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub gtin: String,
    pub serial: Option<String>,
    pub lot: Option<String>,
    /// ISO date of the last day the pack may be used.
    pub expiry: Option<String>,
    /// What the GTIN is, as its brand owner registered it; null when no product data is
    /// registered for the GTIN.
    pub trade_item: Option<TradeItem>,
}

/// A ledger entry with its RFC 9162 inclusion proof.
#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub index: i64,
    pub leaf_hash: String,
    pub tree_size: i64,
    pub proof: Hashes,
}

/// Which costly parts of a [`Verification`] to build: the rest are left empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Inclusion proofs of the entries the reasons cite.
    pub evidence: bool,
    /// The pack's public timeline.
    pub timeline: bool,
    /// The GTIN's product master data.
    pub trade_item: bool,
    /// The map proofs that the verdict read everything.
    pub completeness: bool,
}

impl Wanted {
    /// Everything: the resolver's page and JSON.
    pub const ALL: Wanted = Wanted {
        evidence: true,
        timeline: true,
        trade_item: true,
        completeness: true,
    };
    /// The verdict alone: QR codes and label sheets read the product from it.
    pub const VERDICT: Wanted = Wanted {
        evidence: false,
        timeline: false,
        trade_item: false,
        completeness: false,
    };

    /// What the selection under `field` (a `Verification`) asks for.
    pub(crate) fn of(field: async_graphql::Lookahead<'_>) -> Wanted {
        Wanted {
            evidence: field.field("evidence").exists(),
            timeline: field.field("timeline").exists(),
            trade_item: field.field("product").field("tradeItem").exists(),
            completeness: field.field("completeness").exists(),
        }
    }
}

/// A scanned code judged for one caller: the typed result every channel renders.
#[derive(Debug, Clone)]
pub struct Checked {
    pub scanned: ScannedCode,
    /// `None` when the ledger holds no event for the serial (or the code has none).
    pub state: Option<PackState>,
    pub verdict: Verdict,
    /// What the derivation read, for [`Wanted::completeness`]; `None` when it is not known
    /// (a state change's answer).
    pub reads: Option<crate::completeness::Reads>,
}

/// The stages of a verification, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the scanned code.
    Parse,
    /// `Packs::events`: the pack's events, its containers' and its classes'.
    Events,
    /// The site directory the rules resolve parties with.
    Directory,
    /// `pack::derive_with`.
    Derive,
    /// Whether the product is known (a commissioned pack proves it).
    Product,
    /// `verdict::verdict`.
    Verdict,
    /// Inclusion proofs of the cited entries, when wanted.
    Evidence,
}

/// Told as each [`Stage`] of a verification ends. `()` ignores it; `verify_bench` times the
/// real path with it rather than a copy of it.
pub trait Stopwatch {
    fn lap(&mut self, stage: Stage);
    /// How many events `Packs::events` found for the pack.
    fn found(&mut self, _events: usize) {}
    /// How many history items the derived state holds.
    fn derived(&mut self, _history_items: usize) {}
}

impl Stopwatch for () {
    fn lap(&mut self, _: Stage) {}
}

/// GraphQL `verify`: the verification of `code` for caller `c`.
pub async fn verification(
    s: &Services,
    c: &Caller,
    code: &str,
    wanted: Wanted,
) -> Result<Verification, ApiError> {
    let started = std::time::Instant::now();
    let v = verification_timed(s, c, code, wanted, &mut ()).await;
    s.verify_latency.graphql.observe(started.elapsed());
    v
}

/// [`verification`], telling `watch` as each stage ends.
pub async fn verification_timed<W: Stopwatch + Send>(
    s: &Services,
    c: &Caller,
    code: &str,
    wanted: Wanted,
    watch: &mut W,
) -> Result<Verification, ApiError> {
    let scanned = parse(code)?;
    watch.lap(Stage::Parse);
    let checked = check(s, c, scanned, watch).await?;
    Verification::build(s, &checked, wanted, watch).await
}

/// Reads a scanned code, or says why it cannot be read.
pub fn parse(code: &str) -> Result<ScannedCode, ApiError> {
    gs1::parse_code(code)
        .map_err(|e| ApiError::new(Code::InvalidCode, format!("cannot read the code: {e}")))
}

/// Derives the pack's state from the ledger and decides the verdict for caller `c`.
pub async fn check<W: Stopwatch + Send>(
    s: &Services,
    c: &Caller,
    scanned: ScannedCode,
    watch: &mut W,
) -> Result<Checked, ApiError> {
    let (state, reads) = match scanned.sgtin() {
        Some(sgtin) => derive_state_read(s, &sgtin, watch).await?,
        None => (None, None),
    };
    let mut checked = conclude(s, c, scanned, state, watch).await?;
    checked.reads = reads;
    Ok(checked)
}

/// The verdict on a state already derived (a state change's, after its own event).
pub(crate) async fn conclude<W: Stopwatch + Send>(
    s: &Services,
    c: &Caller,
    scanned: ScannedCode,
    state: Option<PackState>,
    watch: &mut W,
) -> Result<Checked, ApiError> {
    // A commissioned pack proves its product known; ask the database only otherwise.
    let commissioned = state.as_ref().is_some_and(|st| st.commissioning.is_some());
    let product_known = match &scanned.gtin {
        Some(_) if commissioned => true,
        Some(g) => {
            rxledger_store::packs::owner_of(&s.packs.prefixes().await?, g).is_some()
                || s.packs.product_known(g).await?
        }
        None => false,
    };
    watch.lap(Stage::Product);
    // Regulators and admins read parties by name: one registry read for them alone.
    let names = match (c.role(), &state) {
        (Some(Role::Regulator | Role::Admin), Some(st)) if st.dispensed.is_some() => Some(
            s.registry
                .organizations()
                .await?
                .into_iter()
                .map(|o| (o.id, o.name))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
        _ => None,
    };
    let viewer = match &names {
        Some(n) => viewer(c).with_names(n),
        None => viewer(c),
    };
    let verdict = verdict::verdict(
        &scanned,
        state.as_ref(),
        product_known,
        rxledger_store::now_ms(),
        viewer,
    );
    watch.lap(Stage::Verdict);
    Ok(Checked {
        scanned,
        state,
        verdict,
        reads: None,
    })
}

/// The pack's state from the committed log, `None` when no event names it.
async fn derive_state<W: Stopwatch + Send>(
    s: &Services,
    sgtin: &Sgtin,
    watch: &mut W,
) -> Result<Option<PackState>, StoreError> {
    Ok(derive_state_read(s, sgtin, watch).await?.0)
}

/// [`derive_state`], with what it read (`rxledger_core::map::completeness::read_set_of`).
async fn derive_state_read<W: Stopwatch + Send>(
    s: &Services,
    sgtin: &Sgtin,
    watch: &mut W,
) -> Result<(Option<PackState>, Option<crate::completeness::Reads>), StoreError> {
    let events = s.packs.events(sgtin).await?;
    watch.found(events.len());
    watch.lap(Stage::Events);
    let reads = crate::completeness::Reads(rxledger_core::map::completeness::read_set_of(&events));
    Ok((derive_from(s, &events, watch).await?, Some(reads)))
}

/// The state derived from a pack's events, `None` when there are none.
async fn derive_from<W: Stopwatch + Send>(
    s: &Services,
    events: &pack::PackEvents<Arc<pack::LoggedEvent>>,
    watch: &mut W,
) -> Result<Option<PackState>, StoreError> {
    if events.is_empty() {
        return Ok(None);
    }
    let directory = s.packs.directory().await?;
    watch.lap(Stage::Directory);
    let state = events.derive(&derive_options(&directory));
    watch.lap(Stage::Derive);
    watch.derived(state.history.len());
    Ok(Some(state))
}

/// The pack's state from the committed log, for the queries that need no verdict.
pub(crate) async fn state_of(s: &Services, sgtin: &Sgtin) -> Result<Option<PackState>, ApiError> {
    Ok(derive_state(s, sgtin, &mut ()).await?)
}

/// How every state is derived on this server: with the registry's sites, and the one undo
/// window.
pub(crate) fn derive_options(directory: &Arc<Directory>) -> DeriveOptions<'_> {
    DeriveOptions {
        directory: directory.as_ref(),
        undo_window_ms: DEFAULT_UNDO_WINDOW_MS,
        ..DeriveOptions::default()
    }
}

impl Verification {
    /// The API answer for a checked code, with the parts `wanted`.
    pub async fn build<W: Stopwatch + Send>(
        s: &Services,
        checked: &Checked,
        wanted: Wanted,
        watch: &mut W,
    ) -> Result<Verification, ApiError> {
        let v = &checked.verdict;
        // The map first: the checkpoint read after it covers its map-root entry.
        let snapshot = match (&checked.reads, wanted.completeness) {
            (Some(reads), true) => crate::completeness::Snapshot::take(s, reads).await,
            _ => None,
        };
        let head = s.ledger.head();
        let completeness = match (snapshot, &checked.reads) {
            (Some(snap), Some(reads)) => snap.build(s, reads, head.size).await?,
            _ => None,
        };
        let evidence = if wanted.evidence {
            let mut cited: Vec<u64> = v
                .reasons
                .iter()
                .flat_map(|r| r.evidence.iter().copied())
                .collect();
            cited.sort_unstable();
            cited.dedup();
            evidence(s, &cited, head.size).await?
        } else {
            Vec::new()
        };
        watch.lap(Stage::Evidence);
        let trade_item = match (&v.product, wanted.trade_item) {
            (Some(p), true) => s.products.get(&p.gtin).await?.map(TradeItem::from),
            _ => None,
        };
        Ok(Verification {
            verdict: v.primary.to_string(),
            dispensable: v.dispensable,
            eu_alert: v
                .reasons
                .iter()
                .find_map(|r| eucodes::of(r.code).eu_alert)
                .map(str::to_string),
            reasons: v
                .reasons
                .iter()
                .map(|r| {
                    let eu = eucodes::of(r.code);
                    ReasonOut {
                        code: r.code.to_string(),
                        severity: r.severity.to_string(),
                        message: r.message.clone(),
                        evidence: r.evidence.iter().map(|i| *i as i64).collect(),
                        eu_alert: eu.eu_alert.map(str::to_string),
                        nmvs_code: eu.nmvs.map(str::to_string),
                    }
                })
                .collect(),
            product: v.product.as_ref().map(|p| Product {
                gtin: p.gtin.to_string(),
                serial: p.serial.as_ref().map(|x| x.as_str().to_string()),
                lot: p.lot.as_ref().map(|x| x.as_str().to_string()),
                expiry: p.expiry.map(|d| d.to_string()),
                trade_item,
            }),
            status: v.status.map(|st| st.to_string()),
            evidence,
            checkpoint_size: head.size as i64,
            checkpoint_note: head.note,
            cosigned_checkpoint: crate::ledger::CosignedCheckpoint::of(&s.ledger),
            timeline: match (&checked.state, wanted.timeline) {
                (Some(st), true) => timeline(st),
                _ => Vec::new(),
            },
            completeness,
        })
    }
}

/// The public timeline: every history item, without its party or place.
fn timeline(state: &PackState) -> Vec<TimelineStep> {
    state
        .history
        .iter()
        .map(|h| TimelineStep {
            index: h.index as i64,
            event_time: rxledger_core::epcis::format_time(h.event_time_ms),
            event_type: h.kind.as_str().to_string(),
            action: h.action.as_str().to_string(),
            biz_step: h.biz_step.map(|b| b.as_str().to_string()),
            disposition: h.disposition.map(|d| d.as_str().to_string()),
            inherited: !matches!(h.via, pack::Via::Direct),
        })
        .collect()
}

/// The entries among `indices` below `size`, each with its inclusion proof at `size`.
pub(crate) async fn evidence(
    s: &Services,
    indices: &[u64],
    size: u64,
) -> Result<Vec<Evidence>, ApiError> {
    let mut out = Vec::new();
    for &index in indices {
        if index >= size {
            continue;
        }
        let proof = s.ledger.inclusion_proof(index, size).await?;
        let leaf = s.ledger.leaf_hash(index).await?;
        out.push(Evidence {
            index: index as i64,
            leaf_hash: hex::encode(leaf),
            tree_size: size as i64,
            proof: Hashes::hex(&proof),
        });
    }
    Ok(out)
}
