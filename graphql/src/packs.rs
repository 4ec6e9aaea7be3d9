//! Pack queries: `verify` (see [`crate::verify`]), `provenance` and `lot`. Thin: parsing and
//! rules live in the core, history in the store. State changes are in `changes`, the EPCIS
//! event query in `events`.

use std::collections::BTreeMap;

use async_graphql::{Context, Object, Result, SimpleObject};

use rxledger_core::gs1::{Gtin, Lot, ScannedCode, Sgtin};
use rxledger_core::pack;
use rxledger_core::verdict;

use crate::admin::services;
use crate::auth::{KEYED, Role, caller, require};
use crate::verify::{self, Evidence, Verification, Wanted, evidence, state_of};
use crate::visibility::Sight;
use crate::{ApiError, Code};

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
    /// Whose key signed the event's entry (shown as `organization` is): `device` (one of the
    /// organization's scanners), `log-key` (the log, for the organization's API key) or
    /// `partner-key` (the log, carrying the organization's own signature over the EPCIS
    /// document it captured: `attestation`).
    pub signed_by: Option<String>,
    /// For `partner-key`: the organization's signature over the captured document.
    pub attestation: Option<crate::ledger::PartnerAttestation>,
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

/// A code naming one pack: the code as read, and the pack.
pub(crate) fn serialised(code: &str) -> Result<(ScannedCode, Sgtin), ApiError> {
    let scanned = verify::parse(code)?;
    let sgtin = scanned
        .sgtin()
        .ok_or_else(|| ApiError::new(Code::InvalidCode, "the code has no serial number (AI 21)"))?;
    Ok((scanned, sgtin))
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
        Ok(verify::verification(services(ctx), caller(ctx), &code, wanted).await?)
    }

    /// A pack's full history, including what it inherits from its cases and pallets. Trading
    /// partners see the events their own organization submitted; regulators see everything.
    async fn provenance(&self, ctx: &Context<'_>, code: String) -> Result<Option<Provenance>> {
        let c = require(ctx, KEYED)?;
        let s = services(ctx);
        let (_, sgtin) = serialised(&code)?;
        let Some(state) = state_of(s, &sgtin).await? else {
            return Ok(None);
        };
        let head = s.ledger.head();
        let mut history = Vec::new();
        let sight = Sight::of(c);
        // Who signed each entry is read from its bytes: only when asked.
        let asked = ctx.look_ahead().field("history");
        let signing_wanted =
            asked.field("signedBy").exists() || asked.field("attestation").exists();
        for h in state.history.iter().filter(|h| sight.party(&h.org)) {
            let ev = evidence(s, &[h.index], head.size).await?.pop();
            let Some(ev) = ev else { continue };
            let entry = if signing_wanted {
                s.ledger
                    .entries(h.index, 1)
                    .await
                    .map_err(ApiError::from)?
                    .pop()
            } else {
                None
            };
            let (signed_by, attestation) = match &entry {
                Some(e) => {
                    let (by, a) = crate::ledger::signing(e.kind, &e.data);
                    (Some(by.to_string()), a)
                }
                None => (None, None),
            };
            history.push(HistoryEntry {
                index: h.index as i64,
                event_time: rxledger_core::epcis::format_time(h.event_time_ms),
                event_type: h.kind.as_str().to_string(),
                action: h.action.as_str().to_string(),
                biz_step: h.biz_step.map(|b| b.as_str().to_string()),
                disposition: h.disposition.map(|d| d.as_str().to_string()),
                organization: Some(h.org.clone()),
                signed_by,
                attestation,
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
            status: state.status.to_string(),
            lot: state
                .commissioning
                .as_ref()
                .and_then(|x| x.lot.as_ref())
                .map(|l| l.as_str().to_string()),
            expiry: state
                .commissioning
                .as_ref()
                .and_then(|x| x.expiry)
                .map(|d| d.to_string()),
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
                *by_status.entry(st.status.to_string()).or_default() += 1;
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
