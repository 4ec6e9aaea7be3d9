//! How rxledger's codes map to the EU Hub alerts and NMVS return codes (EU FMD, Delegated
//! Regulation 2016/161) and to GS1 Lightweight Verification Messaging (the DSCSA VRS answer).
//!
//! One table per code enum, [`VERDICTS`] and [`REFUSALS`], read by the verdict's API answer
//! (`euAlert`, `nmvsCode`) and quoted row by row in docs/CODES.md, which a test keeps equal.
//!
//! # What the EU columns mean
//!
//! The EMVS raises a Hub alert when a verification or a status change (a dispense, in our
//! words) fails in a way that may mean falsification; the NMVS answers with a return code.
//! A verdict reason says which alert its pack would raise in the EMVS if the pharmacy went on
//! to decommission it: `UNKNOWN_SERIAL` raises A3 on the verification already, an inactive
//! pack raises A24 only when someone tries to change its status, and a pack recalled or
//! expired answers NMVS_NC_PCK_22 without an alert (the NMVOs list these as the exception).
//! Sources: SecurMed (UK NMVS) "FMD NMVS Alert Codes"; the Czech NMVO (CZMVO) alert guide for
//! A2, A3, A7, A24, A52, A68; the Estonian NMVO (REKS) for NMVS_NC_PCK_22/_06 → A24 and the
//! recalled/expired exception.
//!
//! # Lightweight Verification Messaging
//!
//! LVM 1.1 answers `verified` true or false; a false carries a `verificationFailureReason`, a
//! true may carry `additionalInfo`. An unknown GTIN is an HTTP 404, not a message. Two
//! mismatches at once (batch and expiry) combine into `No_match_GTIN_Serial_Lot_Expiry`.

use crate::pack::RuleCode;
use crate::verdict::VerdictCode;

/// How a reason reads in a Lightweight Verification Messaging answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lvm {
    /// HTTP 404: the GTIN is unknown to the responder.
    NotFound,
    /// `verified: false` with this `verificationFailureReason`.
    Failure(&'static str),
    /// `verified: true`, with this `additionalInfo` when given.
    Verified(Option<&'static str>),
    /// No LVM request can carry it (a code without a serial).
    NotApplicable,
}

/// One verdict code's counterparts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictMap {
    pub code: VerdictCode,
    /// The EU Hub alert the pack would raise in the EMVS, if any.
    pub eu_alert: Option<&'static str>,
    /// The NMVS return code behind it, if any.
    pub nmvs: Option<&'static str>,
    pub lvm: Lvm,
}

/// One state-change refusal's counterparts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusalMap {
    pub code: RuleCode,
    pub eu_alert: Option<&'static str>,
    pub nmvs: Option<&'static str>,
}

/// LVM `verificationFailureReason` values.
pub const NO_MATCH_GTIN_SERIAL: &str = "No_match_GTIN_Serial";
pub const NO_MATCH_LOT: &str = "No_match_GTIN_Serial_Lot";
pub const NO_MATCH_EXPIRY: &str = "No_match_GTIN_Serial_Expiry";
pub const NO_MATCH_LOT_EXPIRY: &str = "No_match_GTIN_Serial_Lot_Expiry";
pub const NOT_FOR_REDISTRIBUTION: &str = "Not_for_re-distribution";

const fn row(
    code: VerdictCode,
    eu_alert: Option<&'static str>,
    nmvs: Option<&'static str>,
    lvm: Lvm,
) -> VerdictMap {
    VerdictMap {
        code,
        eu_alert,
        nmvs,
        lvm,
    }
}

/// Every verdict code, in [`VerdictCode::ALL`] order.
pub const VERDICTS: &[VerdictMap] = &[
    row(VerdictCode::UnknownProduct, None, None, Lvm::NotFound),
    row(
        VerdictCode::UnknownSerial,
        Some("A3"),
        Some("NMVS_NC_PC_02"),
        Lvm::Failure(NO_MATCH_GTIN_SERIAL),
    ),
    row(
        VerdictCode::BatchMismatch,
        Some("A68"),
        Some("NMVS_FE_LOT_13"),
        Lvm::Failure(NO_MATCH_LOT),
    ),
    row(
        VerdictCode::ExpiryMismatch,
        Some("A52"),
        Some("NMVS_FE_LOT_12"),
        Lvm::Failure(NO_MATCH_EXPIRY),
    ),
    row(
        VerdictCode::Stolen,
        Some("A24"),
        Some("NMVS_NC_PCK_22"),
        Lvm::Verified(Some("Illegitimate")),
    ),
    row(
        VerdictCode::AlreadyDispensed,
        Some("A24"),
        Some("NMVS_NC_PCK_22"),
        Lvm::Failure(NOT_FOR_REDISTRIBUTION),
    ),
    row(
        VerdictCode::Destroyed,
        Some("A24"),
        Some("NMVS_NC_PCK_22"),
        Lvm::Failure(NOT_FOR_REDISTRIBUTION),
    ),
    row(
        VerdictCode::Recalled,
        None,
        Some("NMVS_NC_PCK_22"),
        Lvm::Verified(Some("Recalled")),
    ),
    row(
        VerdictCode::Quarantined,
        None,
        None,
        Lvm::Verified(Some("Suspect")),
    ),
    row(
        VerdictCode::Decommissioned,
        Some("A24"),
        Some("NMVS_NC_PCK_22"),
        Lvm::Failure(NOT_FOR_REDISTRIBUTION),
    ),
    row(
        VerdictCode::Expired,
        None,
        Some("NMVS_NC_PCK_22"),
        Lvm::Verified(Some("Expired")),
    ),
    row(VerdictCode::NoSerial, None, None, Lvm::NotApplicable),
    row(
        VerdictCode::NotInYourCustody,
        None,
        None,
        Lvm::Verified(None),
    ),
    row(VerdictCode::Authentic, None, None, Lvm::Verified(None)),
];

/// The state-change refusals with an EU counterpart; the others (custody, brand, quarantine,
/// ingest) have none.
pub const REFUSALS: &[RefusalMap] = &[
    RefusalMap {
        code: RuleCode::UnknownSerial,
        eu_alert: Some("A3"),
        nmvs: Some("NMVS_NC_PC_02"),
    },
    RefusalMap {
        code: RuleCode::StatusAlreadySet,
        eu_alert: Some("A7"),
        nmvs: Some("NMVS_NC_PCK_19"),
    },
    RefusalMap {
        code: RuleCode::AlreadyDispensed,
        eu_alert: Some("A24"),
        nmvs: Some("NMVS_NC_PCK_22"),
    },
    RefusalMap {
        code: RuleCode::PackInactive,
        eu_alert: Some("A24"),
        nmvs: Some("NMVS_NC_PCK_22"),
    },
    RefusalMap {
        code: RuleCode::UndoStatusMismatch,
        eu_alert: Some("A24"),
        nmvs: Some("NMVS_NC_PCK_06"),
    },
    RefusalMap {
        code: RuleCode::UndoWindowPassed,
        eu_alert: None,
        nmvs: Some("NMVS_NC_PCK_20"),
    },
    RefusalMap {
        code: RuleCode::UndoOtherParty,
        eu_alert: None,
        nmvs: Some("NMVS_NC_PCK_21"),
    },
];

/// The counterparts of a verdict code.
pub fn of(code: VerdictCode) -> &'static VerdictMap {
    // VERDICTS has a row per code in declaration order (tested), so the index is the code's
    // position; the search is the fallback that cannot go wrong.
    VERDICTS
        .iter()
        .find(|m| m.code == code)
        .unwrap_or(&VERDICTS[0])
}

/// The counterparts of a refusal, if it has any.
pub fn refusal(code: RuleCode) -> Option<&'static RefusalMap> {
    REFUSALS.iter().find(|m| m.code == code)
}

/// The LVM `data` fields for a verdict's reasons: `None` for a 404 (unknown GTIN), else
/// (`verified`, `verificationFailureReason`, `additionalInfo`). The failure is the first by
/// the order of [`VERDICTS`] (a mismatch of batch and expiry together combines), the info the
/// first given.
pub fn lvm_answer(
    codes: &[VerdictCode],
) -> Option<(bool, Option<&'static str>, Option<&'static str>)> {
    let has = |c: VerdictCode| codes.contains(&c);
    if has(VerdictCode::UnknownProduct) {
        return None;
    }
    let failure = if has(VerdictCode::BatchMismatch)
        && has(VerdictCode::ExpiryMismatch)
        && !has(VerdictCode::UnknownSerial)
    {
        Some(NO_MATCH_LOT_EXPIRY)
    } else {
        VERDICTS
            .iter()
            .filter(|m| has(m.code))
            .find_map(|m| match m.lvm {
                Lvm::Failure(f) => Some(f),
                _ => None,
            })
    };
    let info = VERDICTS
        .iter()
        .filter(|m| has(m.code))
        .find_map(|m| match m.lvm {
            Lvm::Verified(info) => info,
            _ => None,
        });
    Some((failure.is_none(), failure, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_code_in_order() {
        let codes: Vec<VerdictCode> = VERDICTS.iter().map(|m| m.code).collect();
        assert_eq!(codes, VerdictCode::ALL);
        for c in VerdictCode::ALL {
            assert_eq!(of(*c).code, *c);
        }
        // Every alert the EU brief names is mapped somewhere.
        let alerts: Vec<&str> = VERDICTS
            .iter()
            .filter_map(|m| m.eu_alert)
            .chain(REFUSALS.iter().filter_map(|m| m.eu_alert))
            .collect();
        for a in ["A3", "A7", "A24", "A52", "A68"] {
            assert!(alerts.contains(&a), "{a}");
        }
    }

    #[test]
    fn lvm_answers() {
        use VerdictCode::*;
        assert_eq!(lvm_answer(&[UnknownProduct, UnknownSerial]), None);
        assert_eq!(
            lvm_answer(&[UnknownSerial]),
            Some((false, Some(NO_MATCH_GTIN_SERIAL), None))
        );
        assert_eq!(
            lvm_answer(&[BatchMismatch, ExpiryMismatch]),
            Some((false, Some(NO_MATCH_LOT_EXPIRY), None))
        );
        assert_eq!(
            lvm_answer(&[Recalled, Expired, Authentic]),
            Some((true, None, Some("Recalled")))
        );
        assert_eq!(
            lvm_answer(&[Stolen, Authentic]),
            Some((true, None, Some("Illegitimate")))
        );
        assert_eq!(
            lvm_answer(&[AlreadyDispensed, Authentic]),
            Some((false, Some(NOT_FOR_REDISTRIBUTION), None))
        );
        assert_eq!(
            lvm_answer(&[Quarantined, Authentic]),
            Some((true, None, Some("Suspect")))
        );
        assert_eq!(lvm_answer(&[Authentic]), Some((true, None, None)));
    }
}
