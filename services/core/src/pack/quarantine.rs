//! Quarantine: a suspect pack, case or lot held back until someone entitled releases it.
//!
//! # Representation (CBV 2.0)
//!
//! CBV has no quarantine step. We write a quarantine as an ObjectEvent OBSERVE with bizStep
//! `holding` ("objects held at a location, not available") and disposition
//! `non_sellable_other` ("cannot be sold for a reason not covered by another disposition"),
//! naming the pack or case in `epcList` or the lot as an `lgtin` class in `quantityList`, so
//! it reaches every pack inside the case at that time, or every pack of the lot, exactly as a
//! recall does. A release is an ObjectEvent OBSERVE with bizStep `inspecting` (the suspicion
//! was examined) and disposition `active` (the NMVS state of a pack that may be supplied).
//!
//! The bizStep and disposition say what happened to a trading partner reading the events; what
//! makes them a quarantine for rxledger is a business transaction, covered by the CBV event
//! hash like the undo's (see the `pack` module docs): type [`QUARANTINE_TRANSACTION_TYPE`] with
//! value [`QUARANTINE_REASON_PREFIX`]`<reason>`, and on a release type
//! [`RELEASE_TRANSACTION_TYPE`] with value `urn:rxledger:ledger-entry:<index>` for each
//! quarantine it lifts. A release therefore lifts named quarantines, never "whatever holds the
//! pack": a regulator's lot quarantine survives the release of a pharmacy's own.
//!
//! Only the API writes these transactions (the ingest refuses them from devices,
//! [`check_ingest`](super::check_ingest)), after [`authorize_quarantine`] allowed the caller,
//! because the replay cannot know roles: it only checks that a release names a quarantine
//! that holds the pack.

use crate::epcis::{BizStep, Disposition, Event};
use crate::spelling::spelled;

use super::LEDGER_ENTRY_PREFIX;
use super::rules::{RuleCode, RuleViolation};
use super::state::{StatusMark, Via};

/// bizTransaction type marking a quarantine.
pub const QUARANTINE_TRANSACTION_TYPE: &str = "urn:rxledger:bt:quarantine";
/// bizTransaction type marking a release; its value names the quarantine's entry.
pub const RELEASE_TRANSACTION_TYPE: &str = "urn:rxledger:bt:quarantine-release";
/// Value prefix of a quarantine transaction, followed by the [`QuarantineReason`] in lower case.
pub const QUARANTINE_REASON_PREFIX: &str = "urn:rxledger:quarantine:";
/// bizStep and disposition of a quarantine.
pub const QUARANTINE_STEP: (BizStep, Disposition) =
    (BizStep::Holding, Disposition::NonSellableOther);
/// bizStep and disposition of a release.
pub const RELEASE_STEP: (BizStep, Disposition) = (BizStep::Inspecting, Disposition::Active);

/// Why a pack is held (the DSCSA terms, and the EU's alert investigation).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuarantineReason {
    /// DSCSA "suspect product": reason to believe it may be illegitimate.
    Suspect,
    /// DSCSA "illegitimate product": credible evidence that it is.
    Illegitimate,
    /// An alert (e.g. an EU Hub alert) under investigation.
    Investigation,
}

spelled!(QuarantineReason {
    Suspect => "SUSPECT",
    Illegitimate => "ILLEGITIMATE",
    Investigation => "INVESTIGATION",
});

impl QuarantineReason {
    /// The value of the quarantine's business transaction.
    pub fn transaction_value(self) -> String {
        format!(
            "{QUARANTINE_REASON_PREFIX}{}",
            self.as_str().to_ascii_lowercase()
        )
    }
}

/// A quarantine holding a pack: the event that set it, how it reached the pack, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub mark: StatusMark,
    pub reason: QuarantineReason,
    /// Directly on the pack, through its case, or through its lot.
    pub via: Via,
}

/// The reason of a quarantine event, if `e` is one.
pub fn quarantine_reason(e: &Event) -> Option<QuarantineReason> {
    e.biz_transactions
        .iter()
        .filter(|t| t.kind.as_deref() == Some(QUARANTINE_TRANSACTION_TYPE))
        .find_map(|t| {
            let word = t.id.strip_prefix(QUARANTINE_REASON_PREFIX)?;
            word.to_ascii_uppercase().parse().ok()
        })
}

/// The quarantine entries a release event lifts (empty if `e` is no release).
pub fn released_entries(e: &Event) -> Vec<u64> {
    e.biz_transactions
        .iter()
        .filter(|t| t.kind.as_deref() == Some(RELEASE_TRANSACTION_TYPE))
        .filter_map(|t| t.id.strip_prefix(LEDGER_ENTRY_PREFIX)?.parse().ok())
        .collect()
}

/// Whether `e` carries a quarantine or release transaction: only the API may write those.
pub fn is_quarantine_marked(e: &Event) -> bool {
    e.biz_transactions.iter().any(|t| {
        matches!(
            t.kind.as_deref(),
            Some(QUARANTINE_TRANSACTION_TYPE | RELEASE_TRANSACTION_TYPE)
        )
    })
}

/// The role of whoever asks to quarantine or release, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeskRole {
    Regulator,
    /// Any other organisation: brand owner or custodian by the facts below, or neither.
    Partner,
}

/// What is being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineAction<'a> {
    /// Quarantine the target; `already` is the entry of a quarantine placed on this very
    /// target and not released, if any.
    Hold { already: Option<u64> },
    /// Release a quarantine placed by `placed_by` (entry `entry`).
    Release {
        entry: u64,
        placed_by: &'a str,
        placed_by_regulator: bool,
    },
}

/// A quarantine or release request, with the facts the rule decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineRequest<'a> {
    pub action: QuarantineAction<'a>,
    pub org: &'a str,
    pub role: DeskRole,
    /// The organisation owning the GTIN's company prefix (for a case: of the packs inside).
    pub brand_owner: Option<&'a str>,
    /// Who holds the pack or case now (`verdict::custodian`); `None` for a lot.
    pub custodian: Option<&'a str>,
}

/// Who may quarantine and release:
///
/// | Action | Regulator | Brand owner | Custodian | Anyone else |
/// |---|---|---|---|---|
/// | quarantine a pack or case | yes | yes | yes | no (`NOT_IN_YOUR_CUSTODY`) |
/// | quarantine a lot | yes | yes | – (no custodian) | no |
/// | release its own quarantine | yes | yes | yes | – |
/// | release another's quarantine | yes | yes, unless a regulator placed it | no (`RELEASE_NOT_ALLOWED`) | no |
///
/// A target already held by a quarantine placed on it is refused with `STATUS_ALREADY_SET`
/// (NMVS_NC_PCK_19), citing it.
pub fn authorize_quarantine(req: &QuarantineRequest<'_>) -> Result<(), RuleViolation> {
    let regulator = req.role == DeskRole::Regulator;
    let brand_owner = req.brand_owner == Some(req.org);
    match req.action {
        QuarantineAction::Hold {
            already: Some(entry),
        } => Err(RuleViolation::new(
            RuleCode::StatusAlreadySet,
            format!("this is already quarantined (entry {entry})"),
            vec![entry],
        )),
        QuarantineAction::Hold { already: None } => {
            if regulator || brand_owner || req.custodian == Some(req.org) {
                Ok(())
            } else {
                Err(RuleViolation::new(
                    RuleCode::NotInYourCustody,
                    "only the custodian, the brand owner or a regulator may quarantine this",
                    vec![],
                ))
            }
        }
        QuarantineAction::Release {
            entry,
            placed_by,
            placed_by_regulator,
        } => {
            let own = placed_by == req.org;
            if regulator || own || (brand_owner && !placed_by_regulator) {
                Ok(())
            } else {
                let who = if placed_by_regulator {
                    "a regulator"
                } else {
                    "its brand owner or a regulator"
                };
                Err(RuleViolation::new(
                    RuleCode::ReleaseNotAllowed,
                    format!(
                        "the quarantine at entry {entry} was placed by {placed_by}; only they or {who} may release it"
                    ),
                    vec![entry],
                ))
            }
        }
    }
}

/// The quarantines placed on `target` itself (named in epcList, or its class in quantityList)
/// and not released by an event naming it: what a case or lot quarantine's release lifts.
/// `events` are the events naming the target, any order.
pub fn open_on<E: std::borrow::Borrow<super::LoggedEvent>>(
    target: &crate::gs1::EpcId,
    events: &[E],
) -> Vec<(StatusMark, QuarantineReason)> {
    let mut order: Vec<&super::LoggedEvent> = events.iter().map(|e| e.borrow()).collect();
    order.sort_by_key(|le| (le.event.event_time_ms, le.index));
    order.dedup_by_key(|le| le.index);
    let names =
        |e: &Event| e.epcs.contains(target) || e.quantities.iter().any(|q| &q.class == target);
    let mut open: Vec<(StatusMark, QuarantineReason)> = Vec::new();
    for le in order.into_iter().filter(|le| names(&le.event)) {
        if let Some(reason) = quarantine_reason(&le.event) {
            let mark = StatusMark {
                index: le.index,
                event_time_ms: le.event.event_time_ms,
                org: le.org.clone(),
                site: le.site.clone(),
                links: Vec::new(),
            };
            open.push((mark, reason));
        }
        let lifted = released_entries(&le.event);
        open.retain(|(m, _)| !lifted.contains(&m.index));
    }
    open
}

/// A pack inside `case` now, from the events naming the case (any order): whose custodian
/// and brand owner stand for the case's when it is quarantined. `None` when the case holds no
/// pack directly (a pallet of cases, or emptied).
pub fn pack_inside<E: std::borrow::Borrow<super::LoggedEvent>>(
    case: &crate::gs1::EpcId,
    events: &[E],
) -> Option<crate::gs1::Sgtin> {
    use crate::epcis::{Action, EventKind};
    let mut order: Vec<&super::LoggedEvent> = events.iter().map(|e| e.borrow()).collect();
    order.sort_by_key(|le| (le.event.event_time_ms, le.index));
    let mut inside: Vec<crate::gs1::EpcId> = Vec::new();
    for le in order {
        let e = &le.event;
        if e.kind != EventKind::Aggregation || e.parent.as_ref() != Some(case) {
            continue;
        }
        match e.action {
            Action::Add | Action::Observe => {
                inside.extend(e.children.iter().filter(|c| *c != case).cloned())
            }
            Action::Delete if e.children.is_empty() => inside.clear(),
            Action::Delete => inside.retain(|c| !e.children.contains(c)),
        }
    }
    inside.into_iter().find_map(|c| match c {
        crate::gs1::EpcId::Sgtin(s) => Some(s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gs1::{EpcId, Lot};
    use crate::pack::fixtures::*;
    use crate::pack::{LoggedEvent, PackStatus, check_ingest, derive};
    use crate::verdict::{
        self, HoldTarget, StatusChange, VerdictCode, Viewer, quarantine_event, release_event,
    };

    fn packed() -> Vec<LoggedEvent> {
        vec![
            logged(
                1,
                &commission(&["A", "B"], at(0), "L1", "2030-12-31"),
                "mah",
            ),
            logged(
                2,
                &aggregate("ADD", &sscc_uri(1), &[pack_uri("A"), pack_uri("B")], at(10)),
                "mah",
            ),
        ]
    }

    fn hold(target: HoldTarget, index: u64, minute: i64, org: &str) -> LoggedEvent {
        let e = quarantine_event(&target, QuarantineReason::Suspect, &gln(1), at(minute)).unwrap();
        logged(index, &e, org)
    }

    fn release(target: HoldTarget, entries: &[u64], index: u64, minute: i64) -> LoggedEvent {
        logged(
            index,
            &release_event(&target, entries, &gln(1), at(minute)).unwrap(),
            "mah",
        )
    }

    fn case() -> HoldTarget {
        HoldTarget::Items(vec![EpcId::Sscc(sscc(1))])
    }

    fn lot() -> HoldTarget {
        HoldTarget::Lot {
            gtin: gtin(),
            lot: Lot::parse("L1").unwrap(),
            company_prefix_len: 7,
        }
    }

    #[test]
    fn the_events_are_cbv_and_carry_their_marker() {
        let e = hold(case(), 3, 20, "mah").event;
        assert_eq!(
            (e.biz_step, e.disposition),
            (Some(QUARANTINE_STEP.0), Some(QUARANTINE_STEP.1))
        );
        assert_eq!(quarantine_reason(&e), Some(QuarantineReason::Suspect));
        assert!(released_entries(&e).is_empty());
        let r = release(case(), &[3, 9], 4, 30).event;
        assert_eq!(
            (r.biz_step, r.disposition),
            (Some(RELEASE_STEP.0), Some(RELEASE_STEP.1))
        );
        assert_eq!(released_entries(&r), [3, 9]);
        assert_eq!(quarantine_reason(&r), None);
        for reason in QuarantineReason::ALL {
            let e = quarantine_event(&case(), *reason, &gln(1), at(1)).unwrap();
            assert_eq!(
                quarantine_reason(&crate::epcis::parse_event(&e).unwrap()),
                Some(*reason)
            );
        }
        assert!(release_event(&case(), &[], &gln(1), at(1)).is_err());
    }

    #[test]
    fn a_case_quarantine_holds_its_packs_until_released() {
        let mut ev = packed();
        ev.push(hold(case(), 3, 20, "pharmacy-a"));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Quarantined);
        assert_eq!(s.status_index, Some(3));
        let q = &s.quarantined[0];
        assert_eq!(q.via, Via::Container(EpcId::Sscc(sscc(1))));
        // The quarantine, and the aggregation that put the pack in the case.
        assert_eq!(q.mark.entries(), [3, 2]);

        let v = verdict::verdict(
            &crate::gs1::parse_code(&format!("(01){GTIN}(21)A")).unwrap(),
            Some(&s),
            true,
            at(100),
            Viewer::anonymous(),
        );
        assert_eq!(v.primary, VerdictCode::Quarantined);
        assert_eq!(v.reasons[0].evidence, [3, 2]);
        assert!(!v.dispensable && v.has(VerdictCode::Authentic));
        assert_eq!(
            verdict::can_change_status(Some(&s), StatusChange::Dispense)
                .unwrap_err()
                .code,
            RuleCode::Quarantined
        );
        // Destruction ends a confirmed falsification: allowed while held.
        assert_eq!(
            verdict::can_change_status(Some(&s), StatusChange::Destroy),
            Ok(())
        );

        ev.push(release(case(), &[3], 4, 40));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Active);
        assert!(s.quarantined.is_empty());
        assert_eq!(
            verdict::can_change_status(Some(&s), StatusChange::Dispense),
            Ok(())
        );
    }

    #[test]
    fn quarantines_stack_and_a_release_lifts_only_those_it_names() {
        let mut ev = packed();
        ev.push(hold(lot(), 3, 20, "agency"));
        ev.push(hold(
            HoldTarget::Items(vec![EpcId::Sgtin(sgtin("A"))]),
            4,
            30,
            "pharmacy-a",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.quarantined.len(), 2);
        assert!(matches!(s.quarantined[0].via, Via::Class(_)));
        // The lot's quarantine rests on the commissioning that gave the pack its lot.
        assert_eq!(s.quarantined[0].mark.entries(), [3, 1]);
        ev.push(release(
            HoldTarget::Items(vec![EpcId::Sgtin(sgtin("A"))]),
            &[4],
            5,
            40,
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Quarantined);
        assert_eq!(s.quarantined[0].mark.index, 3);
        // Another lot is not held.
        let other = vec![
            logged(1, &commission(&["C"], at(0), "L2", "2030-12-31"), "mah"),
            hold(lot(), 3, 20, "agency"),
        ];
        assert_eq!(derive(&sgtin("C"), &other).status, PackStatus::Active);
        // What the case and the lot hold on themselves, for their releases.
        assert_eq!(open_on(&EpcId::Sscc(sscc(1)), &ev), vec![]);
        let class = crate::epcis::parse_event(
            &quarantine_event(&lot(), QuarantineReason::Suspect, &gln(1), 0).unwrap(),
        )
        .unwrap()
        .quantities[0]
            .class
            .clone();
        assert_eq!(pack_inside(&EpcId::Sscc(sscc(1)), &ev), Some(sgtin("A")));
        let open = open_on(&class, &ev);
        assert_eq!(
            (open.len(), open[0].0.index, open[0].0.org.as_str()),
            (1, 3, "agency")
        );
        ev.push(release(lot(), &[3], 6, 50));
        assert!(open_on(&class, &ev).is_empty());
        assert_eq!(derive(&sgtin("A"), &ev).status, PackStatus::Active);
    }

    #[test]
    fn a_pack_packed_after_the_quarantine_is_not_held_and_inactive_beats_held() {
        let mut ev = packed();
        ev.push(hold(case(), 3, 5, "mah"));
        assert_eq!(derive(&sgtin("A"), &ev).status, PackStatus::Active);
        ev.push(hold(case(), 4, 20, "mah"));
        ev.push(logged(
            5,
            &observe(&[pack_uri("A")], at(30), "destroyed"),
            "mah",
        ));
        let s = derive(&sgtin("A"), &ev);
        assert_eq!(s.status, PackStatus::Destroyed);
        assert_eq!(s.quarantined.len(), 1);
    }

    #[test]
    fn devices_cannot_write_quarantines() {
        struct Nobody;
        impl crate::pack::IngestContext for Nobody {
            fn brand_owner(&self, _: &crate::gs1::Gtin) -> Option<String> {
                None
            }
            fn already_commissioned(
                &self,
                _: &crate::gs1::Sgtin,
            ) -> Option<crate::pack::Commissioned> {
                None
            }
        }
        for e in [hold(case(), 3, 20, "mah"), release(case(), &[3], 4, 30)] {
            assert_eq!(
                check_ingest(&e.event, "mah", &Nobody).unwrap_err().code,
                RuleCode::ApiOnlyTransaction
            );
        }
        let plain = logged(
            3,
            &observe(&[pack_uri("A")], at(1), "non_sellable_other"),
            "mah",
        );
        assert_eq!(check_ingest(&plain.event, "mah", &Nobody), Ok(()));
    }

    /// Who may quarantine and release, every cell of the table in the docs.
    #[test]
    fn who_may_quarantine_and_release() {
        use DeskRole::{Partner, Regulator};
        let req = |action, org, role| QuarantineRequest {
            action,
            org,
            role,
            brand_owner: Some("mah"),
            custodian: Some("pharmacy-a"),
        };
        let hold = QuarantineAction::Hold { already: None };
        let code = |r: Result<(), RuleViolation>| r.err().map(|v| v.code);
        for (org, role, expected) in [
            ("agency", Regulator, None),
            ("mah", Partner, None),
            ("pharmacy-a", Partner, None),
            ("pharmacy-b", Partner, Some(RuleCode::NotInYourCustody)),
            ("wholesaler", Partner, Some(RuleCode::NotInYourCustody)),
        ] {
            assert_eq!(
                code(authorize_quarantine(&req(hold, org, role))),
                expected,
                "hold by {org}"
            );
        }
        // A lot has no custodian: only the brand owner or a regulator.
        let lot = |org, role| QuarantineRequest {
            custodian: None,
            ..req(hold, org, role)
        };
        assert_eq!(
            code(authorize_quarantine(&lot("pharmacy-a", Partner))),
            Some(RuleCode::NotInYourCustody)
        );
        assert_eq!(code(authorize_quarantine(&lot("mah", Partner))), None);
        let again = QuarantineAction::Hold { already: Some(7) };
        let err = authorize_quarantine(&req(again, "agency", Regulator)).unwrap_err();
        assert_eq!(
            (err.code, err.evidence),
            (RuleCode::StatusAlreadySet, vec![7])
        );

        let release = |placed_by, placed_by_regulator| QuarantineAction::Release {
            entry: 7,
            placed_by,
            placed_by_regulator,
        };
        for (placer, by_regulator, org, role, expected) in [
            // A custodian's quarantine: itself, the brand owner, a regulator.
            ("pharmacy-a", false, "pharmacy-a", Partner, None),
            ("pharmacy-a", false, "mah", Partner, None),
            ("pharmacy-a", false, "agency", Regulator, None),
            (
                "pharmacy-a",
                false,
                "pharmacy-b",
                Partner,
                Some(RuleCode::ReleaseNotAllowed),
            ),
            // The brand owner's: not the custodian.
            (
                "mah",
                false,
                "pharmacy-a",
                Partner,
                Some(RuleCode::ReleaseNotAllowed),
            ),
            ("mah", false, "mah", Partner, None),
            ("mah", false, "other-agency", Regulator, None),
            // A regulator's: regulators only, not even the brand owner.
            (
                "agency",
                true,
                "mah",
                Partner,
                Some(RuleCode::ReleaseNotAllowed),
            ),
            (
                "agency",
                true,
                "pharmacy-a",
                Partner,
                Some(RuleCode::ReleaseNotAllowed),
            ),
            ("agency", true, "agency", Regulator, None),
            ("agency", true, "other-agency", Regulator, None),
        ] {
            assert_eq!(
                code(authorize_quarantine(&req(
                    release(placer, by_regulator),
                    org,
                    role
                ))),
                expected,
                "{org} releasing {placer}'s"
            );
        }
    }
}
