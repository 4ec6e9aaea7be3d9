//! State changes through the API: dispense, undo, stolen, destroy and recall.
//!
//! Each is an EPCIS event the server signs and appends like a scanner's (`verdict`'s
//! builders, `append_state_change`). Its rule runs inside the append transaction, against the
//! committed state (`Ledger::append_checked`), so that of several concurrent changes to one
//! pack exactly one wins. The replay that rule decided on is kept, and the verification a
//! change answers with is that replay with the change's own event applied
//! ([`Derivation::extend`]): a change derives the pack's state once.

use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::{Context, Object, Result, SimpleObject};
use serde_json::Value;

use rxledger_core::epcis::{self, Event};
use rxledger_core::gs1::{self, Gln, Gtin, Lot, ScannedCode, Sgtin};
use rxledger_core::pack::{
    self, DEFAULT_UNDO_WINDOW_MS, Derivation, DeriveOptions, LoggedEvent, PackState, RuleCode,
    RuleViolation,
};
use rxledger_core::verdict::{self, ChangeDecision, ChangeRequest, CustodyPolicy, StatusChange};
use rxledger_store::SignedHead;
use rxledger_store::packs::Directory;
use rxledger_store::packs::append_state_change;

use crate::admin::services;
use crate::auth::{Caller, Role, require};
use crate::packs::serialised;
use crate::verify::{self, Verification, Wanted, derive_options, state_of};
use crate::visibility::viewer;
use crate::{ApiError, Code, Services};

/// The result of a state change: its ledger entry and the pack's verdict afterwards.
#[derive(SimpleObject)]
pub struct StateChange {
    pub entry_index: i64,
    pub checkpoint_size: i64,
    pub verification: Option<Verification>,
}

impl Wanted {
    /// What a state change's `verification` field asks for.
    pub(crate) fn in_state_change(ctx: &Context<'_>) -> Wanted {
        Wanted::of(ctx.look_ahead().field("verification"))
    }
}

/// The caller's organization and the GLN of its first site: where its state changes happen.
pub(crate) async fn actor(s: &Services, c: &Caller) -> Result<(String, Gln), ApiError> {
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

pub(crate) fn rule(v: RuleViolation) -> ApiError {
    ApiError::new(Code::Rule(v.code), v.message)
}

/// Dispense, report stolen, destroy: the event, decided by `verdict::authorize_change`.
async fn change(
    s: &Services,
    c: &Caller,
    code: &str,
    what: StatusChange,
    wanted: Wanted,
    policy: CustodyPolicy,
) -> Result<StateChange, ApiError> {
    let (scanned, sgtin) = serialised(code)?;
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
    let appended = append_decided(s, &sgtin, &org, event, |state| {
        verdict::authorize_change(state, &request)
    })
    .await?;
    if let Some(o) = &appended.outside_custody {
        let index = appended.outcome.as_ref().ok().map(|(i, _)| *i);
        alert_outside_custody(s, &sgtin, o, brand_owner.as_deref(), policy, index).await;
    }
    answer(s, c, scanned, appended, wanted).await
}

/// Undo of the caller's own dispense: the event names the dispense it reverses, so the state
/// is read once before to find it; the same rule runs again inside the append transaction, so
/// a second undo (or one racing another change) is refused.
async fn undo(
    s: &Services,
    c: &Caller,
    code: &str,
    wanted: Wanted,
) -> Result<StateChange, ApiError> {
    let (scanned, sgtin) = serialised(code)?;
    let (org, gln) = actor(s, c).await?;
    let unknown =
        || RuleViolation::new_public(RuleCode::UnknownSerial, "the pack was never commissioned");
    let state = state_of(s, &sgtin).await?.ok_or_else(|| rule(unknown()))?;
    let now = rxledger_store::now_ms();
    let dispense = verdict::can_undo(&state, &org, now, DEFAULT_UNDO_WINDOW_MS).map_err(rule)?;
    let event = verdict::undo_dispense_event(&sgtin, dispense, &gln, now);
    let appended = append_decided(s, &sgtin, &org, event, |state| ChangeDecision {
        outcome: match state {
            None => Err(unknown()),
            Some(state) => {
                verdict::can_undo(state, &org, now, DEFAULT_UNDO_WINDOW_MS).and_then(|d| {
                    if d == dispense {
                        Ok(())
                    } else {
                        Err(RuleViolation::new_public(
                            RuleCode::UndoStatusMismatch,
                            "the pack's dispense changed while undoing it",
                        ))
                    }
                })
            }
        },
        outside_custody: None,
    })
    .await?;
    answer(s, c, scanned, appended, wanted).await
}

/// What appending a state change did.
pub(crate) struct Appended {
    /// The entry and the checkpoint that includes it, or the rule that refused it.
    pub(crate) outcome: Result<(u64, SignedHead), RuleViolation>,
    /// A dispense by a pharmacy that does not hold the pack, allowed or refused.
    outside_custody: Option<verdict::OutsideCustody>,
    /// The pack's state after the change, when it was appended.
    after: Option<PackState>,
}

/// The replay a change was decided on, kept for the answer.
struct Decided<'o> {
    events: pack::PackEvents<Arc<LoggedEvent>>,
    derivation: Option<Derivation<'o>>,
    outside_custody: Option<verdict::OutsideCustody>,
}

/// Appends `event` for `org` if `decide`, run inside the append transaction on the pack's
/// committed state (`None`: no event names it), allows it; then applies the event to the
/// replay `decide` saw, for the state after the change.
pub(crate) async fn append_decided(
    s: &Services,
    sgtin: &Sgtin,
    org: &str,
    event: Value,
    decide: impl FnOnce(Option<&PackState>) -> ChangeDecision + Send,
) -> Result<Appended, ApiError> {
    // The same parse the store runs before appending, which refuses what does not parse.
    let parsed = epcis::parse_event(&event).ok();
    // Filled by the check, inside the append transaction, and kept for the answer.
    let directory: OnceLock<Arc<Directory>> = OnceLock::new();
    let opts: OnceLock<DeriveOptions<'_>> = OnceLock::new();
    let decided: Mutex<Option<Decided<'_>>> = Mutex::new(None);
    let check = {
        let (directory, opts, decided) = (&directory, &opts, &decided);
        Box::pin(async move {
            let events = s.packs.events(sgtin).await?;
            let mut derivation = None;
            if !events.is_empty() {
                let _ = directory.set(s.packs.directory().await?);
                if let Some(d) = directory.get() {
                    let opts = opts.get_or_init(|| derive_options(d));
                    derivation = Some(events.derivation(opts));
                }
            }
            let d = decide(derivation.as_ref().map(Derivation::state).as_ref());
            *lock(decided) = Some(Decided {
                events,
                derivation,
                outside_custody: d.outside_custody,
            });
            Ok(d.outcome)
        })
    };
    let outcome = append_state_change(&s.ledger, org, event, Some(check)).await?;
    let decided = decided.into_inner().unwrap_or_else(|p| p.into_inner());
    let outside_custody = decided.as_ref().and_then(|d| d.outside_custody.clone());
    let after = match (&outcome, decided, parsed, opts.get()) {
        (Ok((index, _)), Some(d), Some(event), Some(opts)) => {
            Some(after_change(sgtin, org, *index, event, d, opts))
        }
        // Not decided on a derivation here, or not parsed, yet appended: read it back as
        // any verify would.
        (Ok(_), ..) => state_of(s, sgtin).await?,
        (Err(_), ..) => None,
    };
    Ok(Appended {
        outcome,
        outside_custody,
        after,
    })
}

/// The state after the change: its event applied to the replay it was decided on, or, where
/// that would not give what a fresh replay gives, a fresh replay of all of them.
fn after_change(
    sgtin: &Sgtin,
    org: &str,
    index: u64,
    event: Event,
    decided: Decided<'_>,
    opts: &pack::DeriveOptions<'_>,
) -> PackState {
    let own = LoggedEvent {
        index,
        event,
        // API state changes are signed `org:<org>`, which names no site.
        org: org.to_string(),
        site: None,
    };
    if let Some(mut d) = decided.derivation
        && d.extend(&own)
    {
        return d.into_state();
    }
    let mut events = decided.events.events;
    events.push(Arc::new(own));
    pack::derive_with(sgtin, &events, opts)
}

/// The answer to a change: its entry, and the verification of the state after it.
pub(crate) async fn answer(
    s: &Services,
    c: &Caller,
    scanned: ScannedCode,
    appended: Appended,
    wanted: Wanted,
) -> Result<StateChange, ApiError> {
    let (index, head) = appended.outcome.map_err(rule)?;
    let checked = verify::conclude(s, c, scanned, appended.after, &mut ()).await?;
    Ok(StateChange {
        entry_index: index as i64,
        checkpoint_size: head.size as i64,
        verification: Some(Verification::build(s, &checked, wanted, &mut ()).await?),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Written once, by the check; a poisoned lock still holds what it wrote.
    m.lock().unwrap_or_else(|p| p.into_inner())
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

/// Who may report a pack stolen or destroyed (custody itself is checked by the rules).
const CUSTODY_ROLES: &[Role] = &[
    Role::Pharmacy,
    Role::Wholesaler,
    Role::Manufacturer,
    Role::Regulator,
];

/// One state change by a caller of one of `roles`, under the server's custody policy.
async fn state_change(
    ctx: &Context<'_>,
    roles: &[Role],
    code: &str,
    what: StatusChange,
) -> Result<StateChange> {
    let c = require(ctx, roles)?;
    let wanted = Wanted::in_state_change(ctx);
    let policy = custody_policy(ctx);
    Ok(change(services(ctx), c, code, what, wanted, policy).await?)
}

#[Object]
impl PackMutation {
    /// Dispenses (decommissions) a pack at the pharmacy's site. Pharmacies only; a pharmacy
    /// that does not hold the pack is served per the custody policy, and an alert is raised.
    async fn dispense(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        state_change(ctx, &[Role::Pharmacy], &code, StatusChange::Dispense).await
    }

    /// Undoes the caller's own dispense within 10 days.
    async fn undo_dispense(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        let c = require(ctx, &[Role::Pharmacy])?;
        let wanted = Wanted::in_state_change(ctx);
        Ok(undo(services(ctx), c, &code, wanted).await?)
    }

    /// Reports a pack stolen: its custodian, its brand owner or a regulator.
    async fn report_stolen(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        state_change(ctx, CUSTODY_ROLES, &code, StatusChange::Stolen).await
    }

    /// Records a pack destroyed: its custodian, its brand owner or a regulator.
    async fn destroy(&self, ctx: &Context<'_>, code: String) -> Result<StateChange> {
        state_change(ctx, CUSTODY_ROLES, &code, StatusChange::Destroy).await
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
