//! Quarantine and release of a suspect pack, case or lot (issue 23 item 3).
//!
//! Both are EPCIS events the server signs and appends like the other state changes
//! (`changes`); how they are written, and who may place or lift one, is the core's
//! (`pack::quarantine`). A pack's change is decided inside the append transaction on its
//! committed state, as a dispense is. A case's or lot's is decided on the events naming it,
//! read again inside the append transaction.
//!
//! The code names the target: a pack by GTIN and serial, a case by SSCC, a lot by GTIN and
//! lot without a serial, in any spelling `verify` reads.

use std::sync::Arc;

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use rxledger_core::gs1::{EpcId, Gtin, Lot, ScannedCode, Sgtin};
use rxledger_core::pack::quarantine::{
    self, DeskRole, QuarantineAction, QuarantineReason, QuarantineRequest,
};
use rxledger_core::pack::{LoggedEvent, PackState, RuleCode, RuleViolation, Via};
use rxledger_core::verdict::{self, ChangeDecision, HoldTarget};
use rxledger_store::packs::{append_state_change, owner_of, owning_prefix};

use crate::admin::services;
use crate::auth::{Caller, Role, require};
use crate::changes::{StateChange, actor, answer, append_decided, rule};
use crate::verify::{Verification, Wanted, state_of};
use crate::{ApiError, Code, Services};

/// Why a target is quarantined.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum QuarantineReasonIn {
    /// DSCSA suspect product: reason to believe it may be illegitimate.
    Suspect,
    /// DSCSA illegitimate product: credible evidence that it is.
    Illegitimate,
    /// An alert under investigation (e.g. an EU Hub alert).
    Investigation,
}

impl From<QuarantineReasonIn> for QuarantineReason {
    fn from(r: QuarantineReasonIn) -> Self {
        match r {
            QuarantineReasonIn::Suspect => QuarantineReason::Suspect,
            QuarantineReasonIn::Illegitimate => QuarantineReason::Illegitimate,
            QuarantineReasonIn::Investigation => QuarantineReason::Investigation,
        }
    }
}

/// The result of a quarantine or release: its ledger entry and, for a pack, its verdict after.
#[derive(SimpleObject)]
pub struct QuarantineChange {
    pub entry_index: i64,
    pub checkpoint_size: i64,
    /// PACK, CASE or LOT.
    pub target: String,
    /// The quarantine entries a release lifted; empty for a quarantine.
    pub released: Vec<i64>,
    /// The pack's verification afterwards; null for a case or a lot.
    pub verification: Option<Verification>,
}

/// Who may ask at all; the core decides on custody, brand and who placed a quarantine.
const DESK_ROLES: &[Role] = &[
    Role::Pharmacy,
    Role::Wholesaler,
    Role::Manufacturer,
    Role::Regulator,
];

/// What a code names.
enum Target {
    Pack(ScannedCode, Sgtin),
    Case(EpcId),
    Lot(Gtin, Lot),
}

impl Target {
    fn parse(code: &str) -> Result<Target, ApiError> {
        let scanned = crate::verify::parse(code)?;
        if let Some(sgtin) = scanned.sgtin() {
            return Ok(Target::Pack(scanned, sgtin));
        }
        if let Some(sscc) = &scanned.sscc {
            return Ok(Target::Case(EpcId::Sscc(sscc.clone())));
        }
        match (&scanned.gtin, &scanned.lot) {
            (Some(g), Some(l)) => Ok(Target::Lot(g.clone(), l.clone())),
            _ => Err(ApiError::new(
                Code::InvalidCode,
                "name a pack (GTIN and serial), a case (SSCC) or a lot (GTIN and lot)",
            )),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Pack(..) => "PACK",
            Target::Case(_) => "CASE",
            Target::Lot(..) => "LOT",
        }
    }
}

fn desk_role(c: &Caller) -> DeskRole {
    match c.role() {
        Some(Role::Regulator) => DeskRole::Regulator,
        _ => DeskRole::Partner,
    }
}

fn unknown_pack() -> RuleViolation {
    RuleViolation::new_public(RuleCode::UnknownSerial, "the pack was never commissioned")
}

/// Quarantine (`reason` given) or release (`None`) of whatever `code` names.
async fn desk_change(
    ctx: &Context<'_>,
    code: &str,
    reason: Option<QuarantineReason>,
) -> Result<QuarantineChange, ApiError> {
    let c = require(ctx, DESK_ROLES)?;
    let s = services(ctx);
    let target = Target::parse(code)?;
    let kind = target.kind();
    let (state_change, released) = match target {
        Target::Pack(scanned, sgtin) => {
            let wanted = Wanted::in_state_change(ctx);
            pack_change(s, c, scanned, &sgtin, reason, wanted).await?
        }
        Target::Case(id) => group_change(s, c, Group::Case(id), reason).await?,
        Target::Lot(g, l) => group_change(s, c, Group::Lot(g, l), reason).await?,
    };
    Ok(QuarantineChange {
        entry_index: state_change.entry_index,
        checkpoint_size: state_change.checkpoint_size,
        target: kind.to_string(),
        released: released.into_iter().map(|i| i as i64).collect(),
        verification: state_change.verification,
    })
}

/// A pack: decided on its committed state inside the append transaction.
async fn pack_change(
    s: &Services,
    c: &Caller,
    scanned: ScannedCode,
    sgtin: &Sgtin,
    reason: Option<QuarantineReason>,
    wanted: Wanted,
) -> Result<(StateChange, Vec<u64>), ApiError> {
    let (org, gln) = actor(s, c).await?;
    let brand_owner = owner_of(&s.packs.prefixes().await?, &sgtin.gtin);
    let role = desk_role(c);
    let item = HoldTarget::Items(vec![EpcId::Sgtin(sgtin.clone())]);
    let now = rxledger_store::now_ms();
    let decide = |action: QuarantineAction<'_>, state: &PackState| {
        quarantine::authorize_quarantine(&QuarantineRequest {
            action,
            org: &org,
            role,
            brand_owner: brand_owner.as_deref(),
            custodian: verdict::custodian(state),
        })
    };
    let (event, lifted) = match reason {
        Some(reason) => (
            verdict::quarantine_event(&item, reason, &gln, now),
            Vec::new(),
        ),
        None => {
            let state = state_of(s, sgtin).await?;
            let state = state
                .filter(|st| st.commissioning.is_some())
                .ok_or_else(|| rule(unknown_pack()))?;
            let open: Vec<(u64, String)> = state
                .quarantined
                .iter()
                .map(|q| (q.mark.index, q.mark.org.clone()))
                .collect();
            let lifted = releasable(s, &open, |action| decide(action, &state)).await?;
            (verdict::release_event(&item, &lifted, &gln, now), lifted)
        }
    };
    let event = event.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let appended = append_decided(s, sgtin, &org, event, |state| ChangeDecision {
        outcome: match state.filter(|st| st.commissioning.is_some()) {
            None => Err(unknown_pack()),
            Some(st) if reason.is_some() => {
                let already = st
                    .quarantined
                    .iter()
                    .find(|q| q.via == Via::Direct)
                    .map(|q| q.mark.index);
                decide(QuarantineAction::Hold { already }, st)
            }
            Some(st) => still_open(&lifted, st.quarantined.iter().map(|q| q.mark.index)),
        },
        outside_custody: None,
    })
    .await?;
    Ok((answer(s, c, scanned, appended, wanted).await?, lifted))
}

/// The open quarantines (entry, placed by) the caller may lift; refused with the first reason
/// when it may lift none, or `NOT_QUARANTINED` when none is open.
async fn releasable(
    s: &Services,
    open: &[(u64, String)],
    decide: impl Fn(QuarantineAction<'_>) -> Result<(), RuleViolation>,
) -> Result<Vec<u64>, ApiError> {
    let mut lifted = Vec::new();
    let mut refusal = None;
    for (entry, placed_by) in open {
        let placed_by_regulator = s
            .registry
            .organization(placed_by)
            .await?
            .is_some_and(|o| o.role == Role::Regulator.as_str());
        match decide(QuarantineAction::Release {
            entry: *entry,
            placed_by,
            placed_by_regulator,
        }) {
            Ok(()) => lifted.push(*entry),
            Err(v) => {
                refusal.get_or_insert(v);
            }
        }
    }
    match (lifted.is_empty(), refusal) {
        (false, _) => Ok(lifted),
        (true, Some(v)) => Err(rule(v)),
        (true, None) => Err(rule(RuleViolation::new_public(
            RuleCode::NotQuarantined,
            "no quarantine holds this",
        ))),
    }
}

/// A release goes ahead only if every quarantine it lifts is still open when it is appended.
fn still_open(lifted: &[u64], open: impl Iterator<Item = u64>) -> Result<(), RuleViolation> {
    let open: Vec<u64> = open.collect();
    if lifted.iter().all(|e| open.contains(e)) {
        Ok(())
    } else {
        Err(RuleViolation::new_public(
            RuleCode::NotQuarantined,
            "the quarantine was released meanwhile",
        ))
    }
}

/// A case or a lot.
enum Group {
    Case(EpcId),
    Lot(Gtin, Lot),
}

/// What a case's or lot's decision rests on, read before and again inside the append.
struct GroupFacts {
    brand_owner: Option<String>,
    custodian: Option<String>,
    /// Quarantines placed on the group itself and not released: (entry, placed by).
    open: Vec<(u64, String)>,
}

impl Group {
    fn id(&self) -> EpcId {
        match self {
            Group::Case(id) => id.clone(),
            Group::Lot(gtin, lot) => EpcId::Lgtin {
                gtin: gtin.clone(),
                lot: lot.clone(),
            },
        }
    }

    async fn facts(&self, s: &Services) -> Result<GroupFacts, ApiError> {
        let events: Vec<Arc<LoggedEvent>> = s.packs.events_naming(&self.id()).await?;
        let open = quarantine::open_on(&self.id(), &events)
            .into_iter()
            .map(|(m, _)| (m.index, m.org))
            .collect();
        let prefixes = s.packs.prefixes().await?;
        let (brand_owner, custodian) = match self {
            Group::Lot(gtin, _) => (owner_of(&prefixes, gtin), None),
            Group::Case(id) => {
                if events.is_empty() {
                    return Err(ApiError::new(
                        Code::NotFound,
                        "no event names this case (SSCC)",
                    ));
                }
                // A pack inside stands for the case: it moves with it.
                match quarantine::pack_inside(id, &events) {
                    Some(pack) => {
                        let state = state_of(s, &pack).await?;
                        (
                            owner_of(&prefixes, &pack.gtin),
                            state
                                .as_ref()
                                .and_then(verdict::custodian)
                                .map(str::to_string),
                        )
                    }
                    None => (None, None),
                }
            }
        };
        Ok(GroupFacts {
            brand_owner,
            custodian,
            open,
        })
    }

    async fn hold_target(&self, s: &Services) -> Result<HoldTarget, ApiError> {
        {
            Ok(match self {
                Group::Case(id) => HoldTarget::Items(vec![id.clone()]),
                Group::Lot(gtin, lot) => {
                    let prefixes = s.packs.prefixes().await?;
                    let Some((prefix, _)) = owning_prefix(&prefixes, gtin) else {
                        return Err(rule(RuleViolation::new_public(
                            RuleCode::UnknownProduct,
                            "no brand owner is registered for this GTIN",
                        )));
                    };
                    HoldTarget::Lot {
                        gtin: gtin.clone(),
                        lot: lot.clone(),
                        company_prefix_len: prefix.len(),
                    }
                }
            })
        }
    }
}

/// A case or a lot: decided on the events naming it, read again inside the append.
async fn group_change(
    s: &Services,
    c: &Caller,
    group: Group,
    reason: Option<QuarantineReason>,
) -> Result<(StateChange, Vec<u64>), ApiError> {
    let (org, gln) = actor(s, c).await?;
    let role = desk_role(c);
    let facts = group.facts(s).await?;
    let target = group.hold_target(s).await?;
    let now = rxledger_store::now_ms();
    let request = |action: QuarantineAction<'_>, f: &GroupFacts| {
        quarantine::authorize_quarantine(&QuarantineRequest {
            action,
            org: &org,
            role,
            brand_owner: f.brand_owner.as_deref(),
            custodian: f.custodian.as_deref(),
        })
    };
    let (event, lifted) = match reason {
        Some(reason) => {
            let already = facts.open.first().map(|(e, _)| *e);
            request(QuarantineAction::Hold { already }, &facts).map_err(rule)?;
            (
                verdict::quarantine_event(&target, reason, &gln, now),
                Vec::new(),
            )
        }
        None => {
            let lifted = releasable(s, &facts.open, |a| request(a, &facts)).await?;
            (verdict::release_event(&target, &lifted, &gln, now), lifted)
        }
    };
    let event = event.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = group.id();
    let check = {
        let (id, lifted) = (&id, &lifted);
        Box::pin(async move {
            let events = s.packs.events_naming(id).await?;
            let open = quarantine::open_on(id, &events);
            Ok(match (reason, open.first()) {
                (Some(_), Some((m, _))) => Err(RuleViolation::new_public(
                    RuleCode::StatusAlreadySet,
                    format!("this is already quarantined (entry {})", m.index),
                )),
                (Some(_), None) => Ok(()),
                (None, _) => still_open(lifted, open.iter().map(|(m, _)| m.index)),
            })
        })
    };
    let (index, head) = append_state_change(&s.ledger, &org, event, Some(check))
        .await?
        .map_err(rule)?;
    Ok((
        StateChange {
            entry_index: index as i64,
            checkpoint_size: head.size as i64,
            verification: None,
        },
        lifted,
    ))
}

#[derive(Default)]
pub struct QuarantineMutation;

#[Object]
impl QuarantineMutation {
    /// Quarantines a suspect pack (GTIN and serial), case (SSCC) or lot (GTIN and lot without a
    /// serial): every pack it holds is QUARANTINED and not dispensable until released. The
    /// custodian, the brand owner or a regulator; a lot, the brand owner or a regulator.
    async fn quarantine(
        &self,
        ctx: &Context<'_>,
        code: String,
        reason: QuarantineReasonIn,
    ) -> Result<QuarantineChange> {
        Ok(desk_change(ctx, &code, Some(reason.into())).await?)
    }

    /// Releases the quarantines holding a pack, case or lot that the caller may lift: its own,
    /// a regulator any, a brand owner any but a regulator's. `released` lists them; a release
    /// of a pack from its case's or lot's quarantine frees that pack alone.
    async fn release_quarantine(
        &self,
        ctx: &Context<'_>,
        code: String,
    ) -> Result<QuarantineChange> {
        Ok(desk_change(ctx, &code, None).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_names_a_pack_a_case_or_a_lot() {
        let kind = |c: &str| Target::parse(c).map(|t| t.kind()).map_err(|e| e.code);
        assert_eq!(kind("(01)10614141073464(21)7"), Ok("PACK"));
        assert_eq!(kind("(00)106141411234567897"), Ok("CASE"));
        assert_eq!(kind("(01)10614141073464(10)L1"), Ok("LOT"));
        assert_eq!(kind("(01)10614141073464"), Err(Code::InvalidCode));
        assert_eq!(kind("nonsense"), Err(Code::InvalidCode));
    }
}
