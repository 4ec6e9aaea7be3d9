//! Pack queries and state changes: `verify`, `provenance`, `lot`, and dispense, undo, stolen,
//! destroy, recall. Thin: parsing and rules live in the core, history in the store.

use std::collections::BTreeMap;

use async_graphql::{Context, Object, Result, SimpleObject};

use crate::hashes::Hashes;
use rxledger_core::gs1::{self, Gln, Gtin, Lot, ScannedCode, Sgtin};
use rxledger_core::pack::{self, DeriveOptions, PackState};
use rxledger_core::pack::{RuleCode, RuleViolation};
use rxledger_core::verdict::{self, ChangeRequest, CustodyPolicy, StatusChange, Viewer};
use rxledger_store::StoreError;
use rxledger_store::packs::append_state_change;

use crate::admin::services;
use crate::auth::{Caller, KEYED, Role, caller, require};
use crate::visibility::Sight;
use crate::{ApiError, Code, Services};

/// How long a pharmacy may undo its own dispense (EU FMD: 10 days).
pub const UNDO_WINDOW_MS: i64 = 10 * 86_400_000;

#[derive(SimpleObject)]
pub struct Verification {
    /// AUTHENTIC, UNKNOWN_PRODUCT, UNKNOWN_SERIAL, BATCH_MISMATCH, EXPIRY_MISMATCH, EXPIRED,
    /// ALREADY_DISPENSED, RECALLED, STOLEN, DESTROYED, DECOMMISSIONED, NOT_IN_YOUR_CUSTODY or NO_SERIAL.
    pub verdict: String,
    /// Whether the pack may be handed to a patient.
    pub dispensable: bool,
    pub reasons: Vec<ReasonOut>,
    pub product: Option<Product>,
    /// ACTIVE, IN_TRANSIT, DISPENSED, ... or UNKNOWN.
    pub status: Option<String>,
    /// The ledger entries the verdict rests on, each with an inclusion proof.
    pub evidence: Vec<Evidence>,
    /// The checkpoint the proofs verify against.
    pub checkpoint_size: i64,
    pub checkpoint_note: String,
    /// What happened to the pack, oldest first, without any party's identity or location: fit
    /// for an anonymous caller. `provenance` gives entitled callers the full history.
    pub timeline: Vec<TimelineStep>,
}

/// One step of a pack's public timeline.
#[derive(SimpleObject)]
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

#[derive(SimpleObject)]
pub struct ReasonOut {
    pub code: String,
    /// BLOCKING or WARNING.
    pub severity: String,
    pub message: String,
    pub evidence: Vec<i64>,
}

#[derive(SimpleObject)]
pub struct Product {
    pub gtin: String,
    pub serial: Option<String>,
    pub lot: Option<String>,
    /// ISO date of the last day the pack may be used.
    pub expiry: Option<String>,
}

/// A ledger entry with its RFC 9162 inclusion proof.
#[derive(SimpleObject)]
pub struct Evidence {
    pub index: i64,
    pub leaf_hash: String,
    pub tree_size: i64,
    pub proof: Hashes,
}

#[derive(SimpleObject)]
pub struct Provenance {
    pub gtin: String,
    pub serial: String,
    pub status: String,
    pub lot: Option<String>,
    pub expiry: Option<String>,
    /// Current owner and location (regulators, and the owner itself).
    pub custodian: Option<String>,
    pub location: Option<String>,
    /// The case or pallet the pack is in now.
    pub parent: Option<String>,
    pub history: Vec<HistoryEntry>,
}

#[derive(SimpleObject)]
pub struct HistoryEntry {
    pub index: i64,
    pub event_time: String,
    pub event_type: String,
    pub action: String,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    /// The submitting organization (hidden from other trading partners).
    pub organization: Option<String>,
    pub location: Option<String>,
    /// DIRECT, or the container / class the event reached the pack through.
    pub via: String,
    pub evidence: Evidence,
}

#[derive(SimpleObject)]
pub struct LotStatus {
    pub gtin: String,
    pub lot: String,
    pub packs: i64,
    pub by_status: Vec<Count>,
    pub by_custodian: Vec<Count>,
}

#[derive(SimpleObject)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

/// The result of a state change: its ledger entry and the pack's verdict afterwards.
#[derive(SimpleObject)]
pub struct StateChange {
    pub entry_index: i64,
    pub checkpoint_size: i64,
    pub verification: Option<Verification>,
}

fn viewer(c: &Caller) -> Viewer<'_> {
    match c {
        Caller::Anonymous => Viewer::anonymous(),
        Caller::Key { org_id, role, .. } => Viewer::org(
            org_id,
            match role {
                Role::Pharmacy => verdict::Role::Pharmacy,
                Role::Wholesaler => verdict::Role::Wholesaler,
                Role::Manufacturer => verdict::Role::Manufacturer,
                Role::Regulator | Role::Admin => verdict::Role::Regulator,
            },
        ),
    }
}

fn parse(code: &str) -> Result<ScannedCode, ApiError> {
    gs1::parse_code(code)
        .map_err(|e| ApiError::new(Code::InvalidCode, format!("cannot read the code: {e}")))
}

fn iso(d: gs1::CalendarDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

async fn state_of(s: &Services, sgtin: &Sgtin) -> Result<Option<PackState>, ApiError> {
    Ok(derive_state(s, sgtin).await?)
}

/// The pack's state from the committed log (also run inside the append transaction, where
/// errors are the store's).
async fn derive_state(s: &Services, sgtin: &Sgtin) -> Result<Option<PackState>, StoreError> {
    let events = s.packs.events(sgtin).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let directory = s.packs.directory().await?;
    let opts = DeriveOptions {
        directory: directory.as_ref(),
        undo_window_ms: UNDO_WINDOW_MS,
        ..DeriveOptions::default()
    };
    Ok(Some(pack::derive_with(sgtin, &events, &opts)))
}

async fn evidence(s: &Services, indices: &[u64], size: u64) -> Result<Vec<Evidence>, ApiError> {
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

/// Which costly parts of a [`Verification`] the query selected: the rest are left empty.
#[derive(Clone, Copy)]
pub(crate) struct Wanted {
    evidence: bool,
    timeline: bool,
}

impl Wanted {
    /// What the selection under `field` (a `Verification`) asks for.
    fn of(field: async_graphql::Lookahead<'_>) -> Wanted {
        Wanted {
            evidence: field.field("evidence").exists(),
            timeline: field.field("timeline").exists(),
        }
    }

    /// What a state change's `verification` field asks for.
    fn in_state_change(ctx: &Context<'_>) -> Wanted {
        Wanted::of(ctx.look_ahead().field("verification"))
    }
}

pub(crate) async fn verification(
    s: &Services,
    c: &Caller,
    code: &str,
    wanted: Wanted,
) -> Result<Verification, ApiError> {
    let scanned = parse(code)?;
    let state = match scanned.sgtin() {
        Some(sgtin) => state_of(s, &sgtin).await?,
        None => None,
    };
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
    let v = verdict::verdict(
        &scanned,
        state.as_ref(),
        product_known,
        rxledger_store::now_ms(),
        viewer(c),
    );
    let head = s.ledger.head();
    let mut cited: Vec<u64> = v
        .reasons
        .iter()
        .flat_map(|r| r.evidence.iter().copied())
        .collect();
    cited.sort_unstable();
    cited.dedup();
    Ok(Verification {
        verdict: v.primary.as_str().to_string(),
        dispensable: v.dispensable,
        reasons: v
            .reasons
            .iter()
            .map(|r| ReasonOut {
                code: r.code.as_str().to_string(),
                severity: r.severity.to_string(),
                message: r.message.clone(),
                evidence: r.evidence.iter().map(|i| *i as i64).collect(),
            })
            .collect(),
        product: v.product.as_ref().map(|p| Product {
            gtin: p.gtin.to_string(),
            serial: p.serial.as_ref().map(|x| x.as_str().to_string()),
            lot: p.lot.as_ref().map(|x| x.as_str().to_string()),
            expiry: p.expiry.map(iso),
        }),
        status: v.status.map(|st| st.as_str().to_string()),
        evidence: if wanted.evidence {
            evidence(s, &cited, head.size).await?
        } else {
            Vec::new()
        },
        checkpoint_size: head.size as i64,
        checkpoint_note: head.note,
        timeline: state
            .iter()
            .filter(|_| wanted.timeline)
            .flat_map(|st| st.history.iter())
            .map(|h| TimelineStep {
                index: h.index as i64,
                event_time: rxledger_core::epcis::format_time(h.event_time_ms),
                event_type: h.kind.as_str().to_string(),
                action: h.action.as_str().to_string(),
                biz_step: h.biz_step.map(|b| b.as_str().to_string()),
                disposition: h.disposition.map(|d| d.as_str().to_string()),
                inherited: !matches!(h.via, pack::Via::Direct),
            })
            .collect(),
    })
}

#[derive(Default)]
pub struct PackQuery;

#[Object]
impl PackQuery {
    /// The verdict for a scanned code: a GS1 Digital Link URI, an EPC URN, `(01)…(21)…` text
    /// or a raw DataMatrix scan (with `]d2` and GS separators or their wedge substitutes).
    /// Open to anonymous callers, who get the public verdict.
    async fn verify(&self, ctx: &Context<'_>, code: String) -> Result<Verification> {
        let wanted = Wanted::of(ctx.look_ahead());
        Ok(verification(services(ctx), caller(ctx), &code, wanted).await?)
    }

    /// A pack's full history, including what it inherits from its cases and pallets. Trading
    /// partners see the events their own organization submitted; regulators see everything.
    async fn provenance(&self, ctx: &Context<'_>, code: String) -> Result<Option<Provenance>> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        let sgtin = parse(&code)?.sgtin().ok_or_else(|| {
            ApiError::new(Code::InvalidCode, "the code has no serial number (AI 21)")
        })?;
        let Some(state) = state_of(s, &sgtin).await? else {
            return Ok(None);
        };
        let head = s.ledger.head();
        let mut history = Vec::new();
        let sight = Sight::of(c);
        for h in state.history.iter().filter(|h| sight.party(&h.org)) {
            let ev = evidence(s, &[h.index], head.size).await?.pop();
            let Some(ev) = ev else { continue };
            history.push(HistoryEntry {
                index: h.index as i64,
                event_time: rxledger_core::epcis::format_time(h.event_time_ms),
                event_type: h.kind.as_str().to_string(),
                action: h.action.as_str().to_string(),
                biz_step: h.biz_step.map(|b| b.as_str().to_string()),
                disposition: h.disposition.map(|d| d.as_str().to_string()),
                organization: Some(h.org.clone()),
                location: h.location.clone(),
                via: match &h.via {
                    pack::Via::Direct => "DIRECT".to_string(),
                    pack::Via::Container(id) | pack::Via::Class(id) => {
                        rxledger_store::packs::epc_key(id)
                    }
                },
                evidence: ev,
            });
        }
        let custodian_visible = sight.custody(verdict::custodian(&state));
        Ok(Some(Provenance {
            gtin: sgtin.gtin.to_string(),
            serial: sgtin.serial.as_str().to_string(),
            status: state.status.as_str().to_string(),
            lot: state
                .commissioning
                .as_ref()
                .and_then(|x| x.lot.as_ref())
                .map(|l| l.as_str().to_string()),
            expiry: state.commissioning.as_ref().and_then(|x| x.expiry).map(iso),
            custodian: state.custody.owner.clone().filter(|_| custodian_visible),
            location: state.custody.location.clone().filter(|_| custodian_visible),
            parent: state
                .container
                .as_ref()
                .map(rxledger_store::packs::epc_key)
                .filter(|_| custodian_visible),
            history,
        }))
    }

    /// Where every pack of a lot is now, with counts by status and by custodian: what a recall
    /// needs. Regulators and the lot's brand owner.
    async fn lot(&self, ctx: &Context<'_>, gtin: String, lot: String) -> Result<LotStatus> {
        let c = require(ctx, &[Role::Admin, Role::Regulator, Role::Manufacturer])?;
        let s = services(ctx);
        let g = Gtin::parse(&gtin)
            .map_err(|e| ApiError::new(Code::InvalidCode, format!("gtin: {e}")))?;
        let l =
            Lot::parse(&lot).map_err(|e| ApiError::new(Code::InvalidCode, format!("lot: {e}")))?;
        let owner =
            rxledger_store::packs::owner_of(&s.packs.prefixes().await.map_err(ApiError::from)?, &g);
        if !Sight::of(c).lot(owner.as_deref()) {
            return Err(ApiError::new(
                Code::Forbidden,
                "only the brand owner or a regulator may see a lot",
            )
            .into());
        }
        let rows = s.packs.lot_serials(&g, &l).await.map_err(ApiError::from)?;
        let mut by_status: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_custodian: BTreeMap<String, i64> = BTreeMap::new();
        for (sgtin, commissioner) in &rows {
            if let Some(st) = state_of(s, sgtin).await? {
                *by_status.entry(st.status.as_str().to_string()).or_default() += 1;
                *by_custodian
                    .entry(
                        st.custody
                            .owner
                            .clone()
                            .unwrap_or_else(|| commissioner.clone()),
                    )
                    .or_default() += 1;
            }
        }
        let counts = |m: BTreeMap<String, i64>| {
            m.into_iter()
                .map(|(key, count)| Count { key, count })
                .collect()
        };
        Ok(LotStatus {
            gtin: g.to_string(),
            lot: l.as_str().to_string(),
            packs: rows.len() as i64,
            by_status: counts(by_status),
            by_custodian: counts(by_custodian),
        })
    }
}

/// The caller's organization and the GLN of its first site: where its state changes happen.
async fn actor(s: &Services, c: &Caller) -> Result<(String, Gln), ApiError> {
    let org = c
        .org()
        .ok_or_else(|| ApiError::new(Code::Unauthenticated, "an API key is needed"))?
        .to_string();
    let site = s
        .registry
        .sites()
        .await?
        .into_iter()
        .find(|x| x.org_id == org)
        .ok_or_else(|| {
            ApiError::bad_request(format!("organization {org} has no registered site (GLN)"))
        })?;
    let gln = Gln::parse(&site.gln).map_err(|e| ApiError::bad_request(format!("site GLN: {e}")))?;
    Ok((org, gln))
}

fn rule(v: pack::RuleViolation) -> ApiError {
    ApiError::new(Code::Rule(v.code), v.message)
}

async fn change(
    s: &Services,
    c: &Caller,
    code: &str,
    what: StatusChange,
    wanted: Wanted,
    policy: CustodyPolicy,
) -> Result<StateChange, ApiError> {
    let sgtin = parse(code)?
        .sgtin()
        .ok_or_else(|| ApiError::new(Code::InvalidCode, "the code has no serial number (AI 21)"))?;
    let (org, gln) = actor(s, c).await?;
    let brand_owner = rxledger_store::packs::owner_of(&s.packs.prefixes().await?, &sgtin.gtin);
    let now = rxledger_store::now_ms();
    let item = gs1::EpcId::Sgtin(sgtin.clone());
    let event = match what {
        StatusChange::Dispense => verdict::dispense_event(&sgtin, &gln, now),
        StatusChange::Stolen => verdict::stolen_event(&[item], &gln, now)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        StatusChange::Destroy => verdict::destroy_event(&[item], &gln, now)
            .map_err(|e| ApiError::bad_request(e.to_string()))?,
        _ => return Err(ApiError::bad_request("unsupported state change")),
    };
    let request = ChangeRequest {
        change: what,
        org: &org,
        role: viewer(c).role,
        brand_owner: brand_owner.as_deref(),
        policy,
    };
    // Decided inside the append transaction, against the committed state, so that of several
    // concurrent changes exactly one wins (see `Ledger::append_checked`).
    let outside = std::sync::Mutex::new(None);
    let check = Box::pin(async {
        let state = derive_state(s, &sgtin).await?;
        let d = verdict::authorize_change(state.as_ref(), &request);
        *outside.lock().unwrap_or_else(|p| p.into_inner()) = d.outside_custody;
        Ok(d.outcome)
    });
    let appended = append_state_change(&s.ledger, &org, event, Some(check)).await?;
    if let Some(o) = outside.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let index = appended.as_ref().ok().map(|(i, _)| *i);
        alert_outside_custody(s, &sgtin, &o, brand_owner.as_deref(), policy, index).await;
    }
    let (index, head) = appended.map_err(rule)?;
    Ok(StateChange {
        entry_index: index as i64,
        checkpoint_size: head.size as i64,
        verification: Some(verification(s, c, code, wanted).await?),
    })
}

/// Records the alert for a dispense outside custody, allowed or refused: it names both
/// pharmacies and is seen by regulators and the brand owner (see `visibility`).
async fn alert_outside_custody(
    s: &Services,
    sgtin: &Sgtin,
    o: &verdict::OutsideCustody,
    brand_owner: Option<&str>,
    policy: CustodyPolicy,
    dispense: Option<u64>,
) {
    let holder = o.custodian.as_deref().unwrap_or("nobody on record");
    let what = match dispense {
        Some(i) => format!(
            "the dispense was recorded at entry {i} (custody policy {})",
            policy.as_str()
        ),
        None => format!(
            "the dispense was refused (custody policy {})",
            policy.as_str()
        ),
    };
    let mut subjects = vec![
        rxledger_store::packs::sgtin_key(sgtin),
        format!("org:{}", o.actor),
    ];
    subjects.extend(o.custodian.iter().map(|c| format!("org:{c}")));
    subjects.extend(brand_owner.map(|b| format!("brand:{b}")));
    let alert = rxledger_store::NewAlert {
        code: verdict::OutsideCustody::ALERT.to_string(),
        severity: rxledger_store::Severity::Warning,
        subjects,
        message: format!(
            "pharmacy {} dispensed a pack held by {holder}: {what}",
            o.actor
        ),
        evidence: o.custody_index.into_iter().chain(dispense).collect(),
        raw: None,
    };
    if let Err(e) = s.alerts.record(vec![alert]).await {
        tracing::error!(error = %e, "cannot record a dispense-outside-custody alert");
    }
}

fn custody_policy(ctx: &Context<'_>) -> CustodyPolicy {
    ctx.data_opt::<CustodyPolicy>().copied().unwrap_or_default()
}

#[derive(Default)]
pub struct PackMutation;

#[Object]
impl PackMutation {
    /// Dispenses (decommissions) a pack at the pharmacy's site. Pharmacies only; a pharmacy
    /// that does not hold the pack is served per the custody policy, and an alert is raised.
    async fn dispense(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        let c = require(ctx, &[Role::Pharmacy])?;
        let wanted = Wanted::in_state_change(ctx);
        let policy = custody_policy(ctx);
        Ok(change(
            services(ctx),
            c,
            &code,
            StatusChange::Dispense,
            wanted,
            policy,
        )
        .await?)
    }

    /// Undoes the caller's own dispense within 10 days.
    async fn undo_dispense(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        let c = require(ctx, &[Role::Pharmacy])?;
        let s = services(ctx);
        let sgtin = parse(&code)?.sgtin().ok_or_else(|| {
            ApiError::new(Code::InvalidCode, "the code has no serial number (AI 21)")
        })?;
        let (org, gln) = actor(s, c).await?;
        let unknown = || {
            RuleViolation::new_public(RuleCode::UnknownSerial, "the pack was never commissioned")
        };
        // The undo event names the dispense it reverses; the same rule runs again inside the
        // append transaction, so a second undo (or one racing another change) is refused.
        let state = state_of(s, &sgtin).await?.ok_or_else(|| rule(unknown()))?;
        let now = rxledger_store::now_ms();
        let dispense = verdict::can_undo(&state, &org, now, UNDO_WINDOW_MS).map_err(rule)?;
        let event = verdict::undo_dispense_event(&sgtin, dispense, &gln, now);
        let check = Box::pin(async {
            let Some(state) = derive_state(s, &sgtin).await? else {
                return Ok(Err(unknown()));
            };
            Ok(
                verdict::can_undo(&state, &org, now, UNDO_WINDOW_MS).and_then(|d| {
                    if d == dispense {
                        Ok(())
                    } else {
                        Err(RuleViolation::new_public(
                            RuleCode::UndoStatusMismatch,
                            "the pack's dispense changed while undoing it",
                        ))
                    }
                }),
            )
        });
        let (index, head) = append_state_change(&s.ledger, &org, event, Some(check))
            .await
            .map_err(ApiError::from)?
            .map_err(rule)?;
        Ok(StateChange {
            entry_index: index as i64,
            checkpoint_size: head.size as i64,
            verification: Some(verification(s, c, &code, Wanted::in_state_change(ctx)).await?),
        })
    }

    /// Reports a pack stolen: its custodian, its brand owner or a regulator.
    async fn report_stolen(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        let c = require(
            ctx,
            &[
                Role::Pharmacy,
                Role::Wholesaler,
                Role::Manufacturer,
                Role::Regulator,
            ],
        )?;
        let wanted = Wanted::in_state_change(ctx);
        let policy = custody_policy(ctx);
        Ok(change(
            services(ctx),
            c,
            &code,
            StatusChange::Stolen,
            wanted,
            policy,
        )
        .await?)
    }

    /// Records a pack destroyed: its custodian, its brand owner or a regulator.
    async fn destroy(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        let c = require(
            ctx,
            &[
                Role::Pharmacy,
                Role::Wholesaler,
                Role::Manufacturer,
                Role::Regulator,
            ],
        )?;
        let wanted = Wanted::in_state_change(ctx);
        let policy = custody_policy(ctx);
        Ok(change(
            services(ctx),
            c,
            &code,
            StatusChange::Destroy,
            wanted,
            policy,
        )
        .await?)
    }

    /// Recalls every pack of a lot, including packs inside cases and pallets. The brand owner
    /// or a regulator.
    async fn recall_lot(
        &self,
        ctx: &Context<'_>,
        gtin: String,
        lot: String,
    ) -> Result<StateChange> {
        let c = require(ctx, &[Role::Manufacturer, Role::Regulator])?;
        let s = services(ctx);
        let g = Gtin::parse(&gtin)
            .map_err(|e| ApiError::new(Code::InvalidCode, format!("gtin: {e}")))?;
        let l =
            Lot::parse(&lot).map_err(|e| ApiError::new(Code::InvalidCode, format!("lot: {e}")))?;
        let prefixes = s.packs.prefixes().await.map_err(ApiError::from)?;
        let owner = rxledger_store::packs::owning_prefix(&prefixes, &g);
        let Some((prefix, owner)) = owner else {
            return Err(ApiError::new(
                Code::Rule(RuleCode::UnknownProduct),
                "no brand owner is registered for this GTIN",
            )
            .into());
        };
        if c.role() == Some(Role::Manufacturer) && c.org() != Some(owner) {
            return Err(ApiError::new(
                Code::Forbidden,
                "only the brand owner or a regulator may recall a lot",
            )
            .into());
        }
        let (org, gln) = actor(s, c).await?;
        let event = verdict::recall_lot_event(&g, &l, prefix.len(), &gln, rxledger_store::now_ms())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let (index, head) = append_state_change(&s.ledger, &org, event, None)
            .await
            .map_err(ApiError::from)?
            .map_err(rule)?;
        Ok(StateChange {
            entry_index: index as i64,
            checkpoint_size: head.size as i64,
            verification: None,
        })
    }
}

/// EPCIS query filters (MATCH_anyEPC, GE_eventTime, LT_eventTime, EQ_bizStep, ...).
#[derive(async_graphql::InputObject, Default)]
pub struct EventFilterInput {
    /// An EPC (URN or Digital Link) named by the event in any role.
    pub any_epc: Option<String>,
    /// RFC 3339; events at or after.
    pub ge_event_time: Option<String>,
    /// RFC 3339; events before.
    pub lt_event_time: Option<String>,
    /// A CBV business step, bare (`shipping`) or as a URI.
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    /// A GLN (or `GLN.extension`).
    pub biz_location: Option<String>,
    pub read_point: Option<String>,
}

#[derive(SimpleObject)]
pub struct EventOut {
    /// CBV 2.0 event hash ID.
    pub event_id: String,
    pub entry_index: i64,
    pub position: i32,
    pub event_type: String,
    pub action: Option<String>,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    pub event_time: String,
    pub read_point: Option<String>,
    pub biz_location: Option<String>,
}

#[derive(SimpleObject)]
pub struct EventPage {
    pub nodes: Vec<EventOut>,
    /// Pass as `after` for the next page; null when there is none.
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
}

#[derive(Default)]
pub struct EventQuery;

#[Object]
impl EventQuery {
    /// Events in ledger order, filtered as in the EPCIS query interface, `first` at a time (at
    /// most 1000). Regulators see every event; trading partners the events their own devices
    /// and API keys submitted.
    async fn events(
        &self,
        ctx: &Context<'_>,
        filter: Option<EventFilterInput>,
        #[graphql(default = 50)] first: i64,
        after: Option<String>,
    ) -> Result<EventPage> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        if !(1..=crate::MAX_PAGE).contains(&first) {
            return Err(
                ApiError::bad_request(format!("first must be 1 to {}", crate::MAX_PAGE)).into(),
            );
        }
        let f = filter.unwrap_or_default();
        let time = |v: &Option<String>, what: &str| -> Result<Option<i64>, ApiError> {
            v.as_deref()
                .map(|t| {
                    rxledger_core::epcis::parse_time(t)
                        .map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
                })
                .transpose()
        };
        let step = |v: &Option<String>| -> Result<Option<String>, ApiError> {
            v.as_deref()
                .map(|b| {
                    rxledger_core::epcis::BizStep::parse(b)
                        .map(|x| x.as_str().to_string())
                        .ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "bizStep {b:?} is not a CBV 2.0 business step"
                            ))
                        })
                })
                .transpose()
        };
        let disposition = f
            .disposition
            .as_deref()
            .map(|d| {
                rxledger_core::epcis::Disposition::parse(d)
                    .map(|x| x.as_str().to_string())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "disposition {d:?} is not a CBV 2.0 disposition"
                        ))
                    })
            })
            .transpose()?;
        let signers = Sight::of(c)
            .signers(s)
            .await?
            .map(|v| v.into_iter().collect());
        let filter = rxledger_store::packs::EventFilter {
            any_epc: f
                .any_epc
                .as_deref()
                .map(|e| {
                    gs1::parse_epc(e)
                        .map_err(|err| ApiError::new(Code::InvalidCode, format!("anyEpc: {err}")))
                })
                .transpose()?,
            from_ms: time(&f.ge_event_time, "geEventTime")?,
            until_ms: time(&f.lt_event_time, "ltEventTime")?,
            biz_step: step(&f.biz_step)?,
            disposition,
            biz_location: f.biz_location,
            read_point: f.read_point,
            signers,
        };
        let cursor = match after.as_deref() {
            None => None,
            Some(a) => Some(
                a.split_once(':')
                    .and_then(|(i, p)| Some((i.parse::<i64>().ok()?, p.parse::<i32>().ok()?)))
                    .ok_or_else(|| {
                        ApiError::bad_request("after: not a cursor returned by events")
                    })?,
            ),
        };
        let mut rows = s
            .packs
            .events_page(&filter, first as u64 + 1, cursor)
            .await
            .map_err(ApiError::from)?;
        let has_next_page = rows.len() as i64 > first;
        rows.truncate(first as usize);
        let end_cursor = rows
            .last()
            .filter(|_| has_next_page)
            .map(|r| format!("{}:{}", r.entry_idx, r.position));
        let nodes = rows
            .into_iter()
            .map(|r| EventOut {
                event_id: rxledger_core::merkle::hash_from_slice(&r.hash)
                    .map(|h| rxledger_core::epcis::id_of_hash(&h))
                    .unwrap_or_default(),
                entry_index: r.entry_idx,
                position: r.position,
                event_type: r.event_type,
                action: r.action,
                biz_step: r.biz_step,
                disposition: r.disposition,
                event_time: rxledger_core::epcis::format_time(r.event_time_ms),
                read_point: r.read_point,
                biz_location: r.biz_location,
            })
            .collect();
        Ok(EventPage {
            nodes,
            end_cursor,
            has_next_page,
        })
    }
}
