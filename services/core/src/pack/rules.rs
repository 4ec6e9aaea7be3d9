//! The rules that refuse an event at ingest, and the codes every refusal carries.
//!
//! Only what no honest partner can send is refused here: an event from another
//! organisation's registered site, a commissioning by anyone but the brand owner, of an
//! unregistered product, or of a serial that exists already, and a quarantine or release
//! that only the API may write. The API's state changes are
//! refused with the same [`RuleViolation`] type, by the rules in `verdict`.

use super::location_id;
use crate::epcis::{Action, BizStep, Event, EventKind};
use crate::gs1::{EpcId, Gtin, Sgtin};
use crate::spelling::spelled;

/// An event refused at ingest, or a state change refused by the API.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RuleViolation {
    pub code: RuleCode,
    pub message: String,
    /// Ledger indexes that justify the refusal (e.g. the original commissioning).
    pub evidence: Vec<u64>,
}

/// Which rule refused an event or a state change. Its spelling ([`RuleCode::as_str`]) is what
/// clients see, in a receipt or in GraphQL `extensions.code`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleCode {
    /// Only the brand owner of a GTIN (by GS1 company prefix) may commission it.
    NotBrandOwner,
    /// No brand owner is registered for the GTIN.
    UnknownProduct,
    /// The event's readPoint or bizLocation is a registered site of another organisation: a
    /// device may only report from its own organisation's sites.
    ForeignSite,
    /// The serial exists already (in the ledger or twice in the same event).
    SerialAlreadyCommissioned,
    /// The pack was never commissioned.
    UnknownSerial,
    /// The requested status is already set (NMVS_NC_PCK_19 "status is already set on pack").
    StatusAlreadySet,
    /// A dispense of a pack already dispensed (and not undone).
    AlreadyDispensed,
    /// The caller does not hold the pack and may not change its state (see
    /// `verdict::authorize_change`).
    NotInYourCustody,
    /// The pack is inactive for another reason (NMVS_NC_PCK_22 "pack is already inactive").
    PackInactive,
    /// Nothing to undo (NMVS_NC_PCK_06 "undo attempt doesn't match the pack status").
    UndoStatusMismatch,
    /// Another party dispensed (NMVS_NC_PCK_21 "undo attempted by different user").
    UndoOtherParty,
    /// Past the window (NMVS_NC_PCK_20 "undo timeframe was exceeded").
    UndoWindowPassed,
    /// The pack is quarantined and may not be dispensed until released.
    Quarantined,
    /// Nothing to release: no quarantine holds the pack, case or lot.
    NotQuarantined,
    /// The caller may not release this quarantine (see `quarantine::authorize_quarantine`).
    ReleaseNotAllowed,
    /// A device sent an event carrying a transaction only the API writes (quarantine,
    /// release).
    ApiOnlyTransaction,
}

spelled!(RuleCode {
    NotBrandOwner => "NOT_BRAND_OWNER",
    UnknownProduct => "UNKNOWN_PRODUCT",
    ForeignSite => "FOREIGN_SITE",
    SerialAlreadyCommissioned => "SERIAL_ALREADY_COMMISSIONED",
    UnknownSerial => "UNKNOWN_SERIAL",
    StatusAlreadySet => "STATUS_ALREADY_SET",
    AlreadyDispensed => "ALREADY_DISPENSED",
    NotInYourCustody => "NOT_IN_YOUR_CUSTODY",
    PackInactive => "PACK_INACTIVE",
    UndoStatusMismatch => "UNDO_STATUS_MISMATCH",
    UndoOtherParty => "UNDO_OTHER_PARTY",
    UndoWindowPassed => "UNDO_WINDOW_PASSED",
    Quarantined => "QUARANTINED",
    NotQuarantined => "NOT_QUARANTINED",
    ReleaseNotAllowed => "RELEASE_NOT_ALLOWED",
    ApiOnlyTransaction => "API_ONLY_TRANSACTION",
});

impl RuleViolation {
    /// A refusal that cites no evidence, for the adapters' own checks.
    pub fn new_public(code: RuleCode, message: impl Into<String>) -> Self {
        Self::new(code, message, vec![])
    }

    pub(crate) fn new(code: RuleCode, message: impl Into<String>, evidence: Vec<u64>) -> Self {
        RuleViolation {
            code,
            message: message.into(),
            evidence,
        }
    }
}

/// Where a serial was commissioned before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commissioned {
    /// In this ledger entry.
    InEntry(u64),
    /// Earlier in the batch being appended, whose entries have no index yet.
    EarlierInBatch,
}

/// What [`check_ingest`] needs from the store.
pub trait IngestContext {
    /// Organisation owning the GS1 company prefix of the GTIN.
    fn brand_owner(&self, gtin: &Gtin) -> Option<String>;
    /// Where this serial was commissioned before, if it was.
    fn already_commissioned(&self, sgtin: &Sgtin) -> Option<Commissioned>;
    /// Organisation a registered site (13-digit GLN) belongs to; `None` when unregistered.
    fn site_owner(&self, _gln: &str) -> Option<String> {
        None
    }
}

/// Is this event a commissioning (ObjectEvent ADD, bizStep commissioning or none)?
pub fn is_commissioning(event: &Event) -> bool {
    event.kind == EventKind::Object
        && event.action == Action::Add
        && matches!(event.biz_step, None | Some(BizStep::Commissioning))
}

/// The SGTINs an event commissions, so the store knows what to look up before
/// [`check_ingest`].
pub fn commissioned_sgtins(event: &Event) -> Vec<Sgtin> {
    if !is_commissioning(event) {
        return Vec::new();
    }
    event
        .epcs
        .iter()
        .filter_map(|id| match id {
            EpcId::Sgtin(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Rejects an event reported from another organisation's registered site, and a
/// commissioning by anyone but the brand owner, of an unregistered product, or of a serial
/// that exists already. Every other event is accepted: suspicious patterns are recorded by
/// [`derive`](super::derive), not refused.
pub fn check_ingest(
    event: &Event,
    submitter_org: &str,
    ctx: &impl IngestContext,
) -> Result<(), RuleViolation> {
    check_sites(event, submitter_org, ctx)?;
    check_api_only(event)?;
    check_commissioning(event, submitter_org, ctx)
}

/// `API_ONLY_TRANSACTION`: quarantines and releases are decided by the API's role rules
/// (`quarantine::authorize_quarantine`), which a device's event would bypass.
fn check_api_only(event: &Event) -> Result<(), RuleViolation> {
    if super::quarantine::is_quarantine_marked(event) {
        return Err(RuleViolation::new(
            RuleCode::ApiOnlyTransaction,
            "quarantine and release events are written through the API (GraphQL quarantine, releaseQuarantine), not by devices",
            vec![],
        ));
    }
    Ok(())
}

/// `FOREIGN_SITE`: the readPoint or bizLocation is another organisation's registered site.
fn check_sites(
    event: &Event,
    submitter_org: &str,
    ctx: &impl IngestContext,
) -> Result<(), RuleViolation> {
    for (field, loc) in [
        ("readPoint", &event.read_point),
        ("bizLocation", &event.biz_location),
    ] {
        let Some(loc) = loc else { continue };
        let gln = location_id(loc);
        if let Some(owner) = ctx.site_owner(&gln)
            && owner != submitter_org
        {
            return Err(RuleViolation::new(
                RuleCode::ForeignSite,
                format!(
                    "{field} {gln} is a site of {owner}; a device of {submitter_org} may only report from its own organization's sites"
                ),
                vec![],
            ));
        }
    }
    Ok(())
}

/// `UNKNOWN_PRODUCT`, `NOT_BRAND_OWNER`, `SERIAL_ALREADY_COMMISSIONED`: for each serial the
/// event commissions, in order (the brand owner asked once per GTIN).
fn check_commissioning(
    event: &Event,
    submitter_org: &str,
    ctx: &impl IngestContext,
) -> Result<(), RuleViolation> {
    let sgtins = commissioned_sgtins(event);
    let mut owners: Vec<(&Gtin, Option<String>)> = Vec::new();
    for (i, s) in sgtins.iter().enumerate() {
        let owner = match owners.iter().find(|(g, _)| *g == &s.gtin) {
            Some((_, o)) => o.clone(),
            None => {
                let o = ctx.brand_owner(&s.gtin);
                owners.push((&s.gtin, o.clone()));
                o
            }
        };
        match owner {
            None => {
                return Err(RuleViolation::new(
                    RuleCode::UnknownProduct,
                    format!(
                        "GTIN {} has no registered brand owner; register its company prefix first",
                        s.gtin
                    ),
                    vec![],
                ));
            }
            Some(o) if o != submitter_org => {
                return Err(RuleViolation::new(
                    RuleCode::NotBrandOwner,
                    format!(
                        "only the brand owner {o} may commission GTIN {}, not {submitter_org}",
                        s.gtin
                    ),
                    vec![],
                ));
            }
            Some(_) => {}
        }
        if sgtins[..i].contains(s) {
            return Err(RuleViolation::new(
                RuleCode::SerialAlreadyCommissioned,
                format!("{s} appears twice in the same commissioning event"),
                vec![],
            ));
        }
        match ctx.already_commissioned(s) {
            Some(Commissioned::InEntry(index)) => {
                return Err(RuleViolation::new(
                    RuleCode::SerialAlreadyCommissioned,
                    format!("{s} was already commissioned in ledger entry {index}"),
                    vec![index],
                ));
            }
            Some(Commissioned::EarlierInBatch) => {
                return Err(RuleViolation::new(
                    RuleCode::SerialAlreadyCommissioned,
                    format!("{s} was already commissioned in ledger entry earlier in this batch"),
                    vec![],
                ));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pack::PackStatus;
    use crate::pack::fixtures::*;
    use crate::verdict::dispense_event;

    struct Registry {
        owner: Option<&'static str>,
        existing: Option<u64>,
    }

    impl IngestContext for Registry {
        fn brand_owner(&self, _: &Gtin) -> Option<String> {
            self.owner.map(str::to_owned)
        }
        fn already_commissioned(&self, s: &Sgtin) -> Option<Commissioned> {
            self.existing
                .filter(|_| s.serial.as_str() == "B")
                .map(Commissioned::InEntry)
        }
    }

    #[test]
    fn ingest_rules() {
        let ok = Registry {
            owner: Some("mah"),
            existing: None,
        };
        let c = logged(
            1,
            &commission(&["A", "B"], at(0), "L1", "2030-12-31"),
            "mah",
        )
        .event;
        assert_eq!(commissioned_sgtins(&c), [sgtin("A"), sgtin("B")]);
        assert_eq!(check_ingest(&c, "mah", &ok), Ok(()));

        let err = check_ingest(&c, "pharmacy-a", &ok).unwrap_err();
        assert_eq!(err.code, RuleCode::NotBrandOwner);
        let unknown = Registry {
            owner: None,
            existing: None,
        };
        assert_eq!(
            check_ingest(&c, "mah", &unknown).unwrap_err().code,
            RuleCode::UnknownProduct
        );
        let seen = Registry {
            owner: Some("mah"),
            existing: Some(42),
        };
        let err = check_ingest(&c, "mah", &seen).unwrap_err();
        assert_eq!(
            (err.code, err.evidence),
            (RuleCode::SerialAlreadyCommissioned, vec![42])
        );
        let twice = logged(
            1,
            &commission(&["A", "A"], at(0), "L1", "2030-12-31"),
            "mah",
        )
        .event;
        assert_eq!(
            check_ingest(&twice, "mah", &ok).unwrap_err().code,
            RuleCode::SerialAlreadyCommissioned
        );
        // Anything that is not a commissioning is accepted, even from a stranger.
        let d = logged(2, &dispense_event(&sgtin("B"), &gln(3), at(9)), "x").event;
        assert!(commissioned_sgtins(&d).is_empty());
        assert_eq!(check_ingest(&d, "x", &seen), Ok(()));
    }

    #[test]
    fn rule_codes_keep_their_spellings() {
        let spellings: Vec<&str> = RuleCode::ALL.iter().map(RuleCode::as_str).collect();
        assert_eq!(
            spellings,
            [
                "NOT_BRAND_OWNER",
                "UNKNOWN_PRODUCT",
                "FOREIGN_SITE",
                "SERIAL_ALREADY_COMMISSIONED",
                "UNKNOWN_SERIAL",
                "STATUS_ALREADY_SET",
                "ALREADY_DISPENSED",
                "NOT_IN_YOUR_CUSTODY",
                "PACK_INACTIVE",
                "UNDO_STATUS_MISMATCH",
                "UNDO_OTHER_PARTY",
                "UNDO_WINDOW_PASSED",
                "QUARANTINED",
                "NOT_QUARANTINED",
                "RELEASE_NOT_ALLOWED",
                "API_ONLY_TRANSACTION",
            ]
        );
        for c in RuleCode::ALL {
            assert_eq!(c.as_str().parse::<RuleCode>(), Ok(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
        }
        let v = RuleViolation::new_public(RuleCode::ForeignSite, "elsewhere");
        assert_eq!(v.to_string(), "FOREIGN_SITE: elsewhere");
        for s in PackStatus::ALL {
            assert_eq!(s.as_str().parse::<PackStatus>(), Ok(*s));
        }
        assert_eq!(PackStatus::InTransit.as_str(), "IN_TRANSIT");
    }
}
