//! The answer a pharmacist gets when scanning a pack, and the ledger events the API writes.
//!
//! A verdict must be the same wherever it is asked (resolver page, GraphQL, the offline
//! verifier), so it is a pure function of the scan, the derived [`PackState`], whether the
//! product is known, "now" and who asks. Several reasons can hold at once (a genuine pack can be
//! both recalled and expired); the primary one is the most severe, and `dispensable` is true only
//! when the pack is genuine and nothing blocks it.
//!
//! # Reason codes and their EU FMD (NMVS / EMVS) and GS1 LVM counterparts
//!
//! [`crate::eucodes`] holds the one table (docs/CODES.md quotes it): `UNKNOWN_SERIAL` is alert
//! A3 (NMVS_NC_PC_02), `BATCH_MISMATCH` A68, `EXPIRY_MISMATCH` A52, a pack already inactive
//! A24 (NMVS_NC_PCK_22) on a status change, except recalled and expired packs, which the NMVS
//! refuses without an alert. `NOT_IN_YOUR_CUSTODY` and `QUARANTINED` have no NMVS
//! counterpart (the EU repository tracks neither custody nor quarantine).
//!
//! Undo refusals ([`can_undo`]) map to NMVS_NC_PCK_06 (status mismatch), NMVS_NC_PCK_20
//! (timeframe exceeded) and NMVS_NC_PCK_21 (different user); [`can_change_status`] to
//! NMVS_NC_PCK_19 (status already set, alert A7), NMVS_NC_PCK_22 (already inactive) and, for a
//! second dispense, `ALREADY_DISPENSED` (NMVS_NC_PCK_22, alert A24) like the verdict.
//! [`authorize_change`] adds the custody rules (`NOT_IN_YOUR_CUSTODY`), and a quarantined
//! pack is refused a dispense with `QUARANTINED`.
//!
//! # Decisions
//!
//! - `NOT_IN_YOUR_CUSTODY` is a warning and does not block dispensing: not every wholesaler
//!   reports to the ledger, and blocking on incomplete custody data would recreate the false
//!   alerts that plague the EU system. It is computed for pharmacy viewers only.
//! - `ALREADY_DISPENSED` says when, but names the dispensing organisation only to that
//!   organisation itself and to regulators: a pharmacy never learns which other pharmacy
//!   dispensed a pack. Its evidence, the dispensing entry's index, is cited to everyone: an
//!   index with its leaf hash and inclusion proof names no party (the entry's bytes and signer
//!   are the visibility rule's), and without it nobody could check the refusal.
//! - Every reason cites every entry it rests on: the event that set a status and, when that
//!   event reached the pack through a case, pallet or lot, the aggregations that packed it or
//!   the commissioning that gave it its lot ([`StatusMark::entries`]).
//! - Dates are compared in UTC days; an expiry date is valid through its last day.
//!
//! # Builders
//!
//! State changes requested through the API ([`dispense_event`], [`undo_dispense_event`],
//! [`stolen_event`], [`destroy_event`], [`recall_lot_event`]) are EPCIS 2.0 JSON events that the
//! server signs and appends like any scanner event, so the ledger stays the only record. Packs
//! and sites are written as GS1 Digital Links (no company prefix length needed); the lot class
//! as an `lgtin` URN.

use serde_json::{Value, json};

use crate::epcis::format_time;
use crate::gs1::{CalendarDate, EpcId, Gln, Gs1Error, Gtin, Lot, ScannedCode, Serial, Sgtin};
use crate::pack::quarantine::{
    QUARANTINE_STEP, QUARANTINE_TRANSACTION_TYPE, QuarantineReason, RELEASE_STEP,
    RELEASE_TRANSACTION_TYPE,
};
use crate::pack::{
    Commissioning, DEFAULT_UNDO_WINDOW_MS, LEDGER_ENTRY_PREFIX, PackState, PackStatus, RuleCode,
    RuleViolation, StatusMark, UNDO_TRANSACTION_TYPE, Via,
};
use crate::spelling::spelled;

/// Why a pack may or may not be dispensed. Declared from most to least severe within a
/// severity, which orders reasons of equal severity.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VerdictCode {
    UnknownProduct,
    UnknownSerial,
    BatchMismatch,
    ExpiryMismatch,
    Stolen,
    AlreadyDispensed,
    Destroyed,
    Recalled,
    Quarantined,
    Decommissioned,
    Expired,
    NoSerial,
    NotInYourCustody,
    Authentic,
}

spelled!(VerdictCode {
    UnknownProduct => "UNKNOWN_PRODUCT",
    UnknownSerial => "UNKNOWN_SERIAL",
    BatchMismatch => "BATCH_MISMATCH",
    ExpiryMismatch => "EXPIRY_MISMATCH",
    Stolen => "STOLEN",
    AlreadyDispensed => "ALREADY_DISPENSED",
    Destroyed => "DESTROYED",
    Recalled => "RECALLED",
    Quarantined => "QUARANTINED",
    Decommissioned => "DECOMMISSIONED",
    Expired => "EXPIRED",
    NoSerial => "NO_SERIAL",
    NotInYourCustody => "NOT_IN_YOUR_CUSTODY",
    Authentic => "AUTHENTIC",
});

impl VerdictCode {
    pub fn severity(&self) -> Severity {
        match self {
            VerdictCode::UnknownProduct
            | VerdictCode::UnknownSerial
            | VerdictCode::BatchMismatch
            | VerdictCode::ExpiryMismatch
            | VerdictCode::Stolen
            | VerdictCode::AlreadyDispensed => Severity::Alert,
            VerdictCode::Destroyed
            | VerdictCode::Recalled
            | VerdictCode::Quarantined
            | VerdictCode::Decommissioned
            | VerdictCode::Expired
            | VerdictCode::NoSerial => Severity::Blocked,
            VerdictCode::NotInYourCustody => Severity::Warning,
            VerdictCode::Authentic => Severity::Ok,
        }
    }

    /// The EU Hub alert number this reason raises in the EMVS, where one is confirmed
    /// ([`crate::eucodes`], docs/CODES.md).
    pub fn emvs_alert(&self) -> Option<&'static str> {
        crate::eucodes::of(*self).eu_alert
    }
}

/// How bad a reason is; ordered, `Alert` the worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing wrong.
    Ok,
    /// Look twice, may dispense.
    Warning,
    /// Do not dispense; not a sign of falsification.
    Blocked,
    /// Do not dispense; possible falsification, quarantine and report.
    Alert,
}

spelled!(Severity {
    Ok => "OK",
    Warning => "WARNING",
    Blocked => "BLOCKED",
    Alert => "ALERT",
});

/// One reason behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: VerdictCode,
    pub severity: Severity,
    /// For a pharmacist at the counter: plain and short.
    pub message: String,
    /// Ledger indexes proving it (withheld where they would reveal another pharmacy).
    pub evidence: Vec<u64>,
}

/// What the pack is, as registered (or, failing that, as scanned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductInfo {
    pub gtin: Gtin,
    pub serial: Option<Serial>,
    pub lot: Option<Lot>,
    pub expiry: Option<CalendarDate>,
}

/// The answer to one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub primary: VerdictCode,
    /// Most severe first.
    pub reasons: Vec<Reason>,
    pub dispensable: bool,
    pub product: Option<ProductInfo>,
    pub status: Option<PackStatus>,
}

impl Verdict {
    pub fn has(&self, code: VerdictCode) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// The role of whoever asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Anonymous: a patient on the resolver page.
    Public,
    Pharmacy,
    Wholesaler,
    Manufacturer,
    Regulator,
}

/// Who asks, which decides what a verdict may reveal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer<'a> {
    pub role: Role,
    pub org: Option<&'a str>,
    /// GLN of the site scanning, when known.
    pub site: Option<&'a str>,
    /// Organization names by id, for the messages that name a party to a viewer entitled to
    /// see it (a regulator reads "by Hill Pharmacy (hill)", not a bare id).
    pub names: Option<&'a std::collections::BTreeMap<String, String>>,
}

impl<'a> Viewer<'a> {
    pub fn anonymous() -> Self {
        Viewer {
            role: Role::Public,
            org: None,
            site: None,
            names: None,
        }
    }

    pub fn org(org: &'a str, role: Role) -> Self {
        Viewer {
            role,
            org: Some(org),
            site: None,
            names: None,
        }
    }

    pub fn at_site(self, gln: &'a str) -> Self {
        Viewer {
            site: Some(gln),
            ..self
        }
    }

    /// The same viewer, with the organization names its messages may use.
    pub fn with_names(self, names: &'a std::collections::BTreeMap<String, String>) -> Self {
        Viewer {
            names: Some(names),
            ..self
        }
    }

    /// An organization as this viewer reads it: "Hill Pharmacy (hill)", or the id alone.
    fn party(&self, org: &str) -> String {
        match self.names.and_then(|n| n.get(org)) {
            Some(name) if name != org => format!("{name} ({org})"),
            _ => org.to_string(),
        }
    }
}

/// The verdict for a scanned code. `state` is `None` when the ledger holds no event for the
/// serial; `product_known` says whether the GTIN has a brand owner (or was ever seen).
pub fn verdict(
    scanned: &ScannedCode,
    state: Option<&PackState>,
    product_known: bool,
    now_ms: i64,
    viewer: Viewer<'_>,
) -> Verdict {
    let mut j = Judgement::new(scanned, state, now_ms, viewer);
    j.identification(product_known);
    let registered_as_scanned = j.registration();
    j.inactivity();
    j.expiry();
    j.custody();
    let genuine =
        j.serialised() && product_known && j.commissioning.is_some() && registered_as_scanned;
    if genuine {
        j.add(
            VerdictCode::Authentic,
            "Genuine pack: registered by its manufacturer.".into(),
            j.commissioning.map(|c| c.index).into_iter().collect(),
        );
    }
    j.finish(genuine)
}

/// One verdict being reached: the facts it rests on and the reasons found so far. Each step
/// adds the reasons of one kind; the order of the steps does not matter, [`Judgement::finish`]
/// sorts them.
struct Judgement<'a> {
    scanned: &'a ScannedCode,
    state: Option<&'a PackState>,
    commissioning: Option<&'a Commissioning>,
    now_ms: i64,
    /// Days since 1970-01-01, UTC.
    today: i64,
    /// The year an expiry's YY is read against.
    year: u16,
    viewer: Viewer<'a>,
    reasons: Vec<Reason>,
}

impl<'a> Judgement<'a> {
    fn new(
        scanned: &'a ScannedCode,
        state: Option<&'a PackState>,
        now_ms: i64,
        viewer: Viewer<'a>,
    ) -> Self {
        let today = now_ms.div_euclid(86_400_000);
        Judgement {
            scanned,
            state,
            commissioning: state.and_then(|s| s.commissioning.as_ref()),
            now_ms,
            today,
            year: year_of_day(today),
            viewer,
            reasons: Vec::new(),
        }
    }

    fn add(&mut self, code: VerdictCode, message: String, evidence: Vec<u64>) {
        self.reasons.push(Reason {
            code,
            severity: code.severity(),
            message,
            evidence,
        });
    }

    /// Whether the scan names one pack: a GTIN and a serial.
    fn serialised(&self) -> bool {
        self.scanned.gtin.is_some() && self.scanned.serial.is_some()
    }

    /// `NO_SERIAL`, `UNKNOWN_PRODUCT`, `UNKNOWN_SERIAL`: can the scan name a registered pack?
    fn identification(&mut self, product_known: bool) {
        if self.scanned.gtin.is_none() {
            self.add(
                VerdictCode::NoSerial,
                "This is not a medicine pack code. Scan the 2D DataMatrix code on the pack.".into(),
                vec![],
            );
        } else if self.scanned.serial.is_none() {
            self.add(
                VerdictCode::NoSerial,
                "This code has no serial number, so the pack cannot be verified. Scan the 2D DataMatrix code.".into(),
                vec![],
            );
        }
        if self.scanned.gtin.is_some() && !product_known {
            self.add(
                VerdictCode::UnknownProduct,
                "Unknown product: no manufacturer has registered this product code. Do not dispense; compare the scan with the printed code.".into(),
                vec![],
            );
        }
        if self.serialised() && self.commissioning.is_none() {
            self.add(
                VerdictCode::UnknownSerial,
                "Unknown serial number: the manufacturer never registered this pack. Possible falsified medicine: do not dispense. If the printed serial differs from the scan, check the scanner (e.g. Caps Lock).".into(),
                vec![],
            );
        }
    }

    /// `BATCH_MISMATCH`, `EXPIRY_MISMATCH`: does the scan carry what the manufacturer
    /// registered? Returns whether it does (true when there is nothing to compare).
    fn registration(&mut self) -> bool {
        let (true, Some(c)) = (self.serialised(), self.commissioning) else {
            return true;
        };
        let mut matches = true;
        if let (Some(scan_lot), Some(lot)) = (&self.scanned.lot, &c.lot)
            && scan_lot != lot
        {
            matches = false;
            let hint = if scan_lot.as_str().eq_ignore_ascii_case(lot.as_str()) {
                " Only the letter case differs: check the scanner's keyboard settings."
            } else {
                ""
            };
            self.add(
                VerdictCode::BatchMismatch,
                format!(
                    "Batch mismatch: the pack says {scan_lot}, the manufacturer registered {lot}. Do not dispense.{hint}"
                ),
                vec![c.index],
            );
        }
        if let (Some(scan_exp), Some(exp)) = (&self.scanned.expiry, &c.expiry) {
            let scanned_day = scan_exp.last_valid_day(self.year);
            if scanned_day != *exp {
                matches = false;
                self.add(
                    VerdictCode::ExpiryMismatch,
                    format!(
                        "Expiry mismatch: the pack says {scanned_day}, the manufacturer registered {exp}. Do not dispense."
                    ),
                    vec![c.index],
                );
            }
        }
        matches
    }

    /// `ALREADY_DISPENSED`, `STOLEN`, `DESTROYED`, `RECALLED`, `DECOMMISSIONED`: has the pack
    /// left the supply chain?
    fn inactivity(&mut self) {
        let (true, Some(s)) = (self.serialised(), self.state) else {
            return;
        };
        if let Some(d) = &s.dispensed {
            // Cited to everyone: an index, leaf hash and proof name no party (the entry's
            // bytes and signer stay behind the visibility rule); the message names the
            // dispensing organisation only to itself and to regulators.
            self.add(
                VerdictCode::AlreadyDispensed,
                dispensed_message(d, self.now_ms, self.viewer),
                d.entries(),
            );
        }
        let marks = [
            (
                VerdictCode::Stolen,
                &s.stolen,
                "Reported stolen on {}. Do not dispense: quarantine the pack and report it.",
            ),
            (
                VerdictCode::Destroyed,
                &s.destroyed,
                "Recorded as destroyed on {}. Do not dispense: this pack should not exist.",
            ),
            (
                VerdictCode::Recalled,
                &s.recalled,
                "Batch recalled on {}. Do not dispense: quarantine the pack for return.",
            ),
            (
                VerdictCode::Decommissioned,
                &s.decommissioned,
                "Taken out of the supply chain on {}. Do not dispense.",
            ),
        ];
        for (code, mark, text) in marks {
            if let Some(m) = mark {
                self.add(
                    code,
                    text.replace("{}", &day_of(m.event_time_ms)),
                    m.entries(),
                );
            }
        }
        self.quarantine(s);
    }

    /// `QUARANTINED`: held by a quarantine on the pack, its case or its lot, not released.
    /// Cites every quarantine holding it, with the entries linking each to the pack.
    fn quarantine(&mut self, s: &PackState) {
        let Some(first) = s.quarantined.first() else {
            return;
        };
        let evidence: Vec<u64> = s
            .quarantined
            .iter()
            .flat_map(|q| q.mark.entries())
            .collect();
        let through = match &first.via {
            Via::Direct => "",
            Via::Container(_) => " with its case",
            Via::Class(_) => " with its batch",
        };
        self.add(
            VerdictCode::Quarantined,
            format!(
                "Quarantined{through} on {} ({}). Do not dispense: keep the pack apart until it is released.",
                day_of(first.mark.event_time_ms),
                first.reason.as_str().to_ascii_lowercase()
            ),
            evidence,
        );
    }

    /// The expiry that counts: the registered one, else the scanned one.
    fn expiry_date(&self) -> Option<CalendarDate> {
        self.commissioning.and_then(|c| c.expiry).or_else(|| {
            self.scanned
                .expiry
                .as_ref()
                .map(|e| e.last_valid_day(self.year))
        })
    }

    /// `EXPIRED`: by date (valid through its last day), or by an `expired` disposition.
    fn expiry(&mut self) {
        if self.scanned.gtin.is_none() {
            return;
        }
        let marked = self.state.and_then(|s| s.expired.as_ref());
        let passed = self
            .expiry_date()
            .filter(|d| self.today > d.days_since_epoch());
        if passed.is_some() || marked.is_some() {
            let message = match passed {
                Some(d) => format!("Expired on {d}. Do not dispense."),
                None => "Recorded as expired. Do not dispense.".to_owned(),
            };
            self.add(
                VerdictCode::Expired,
                message,
                marked.map(StatusMark::entries).unwrap_or_default(),
            );
        }
    }

    /// `NOT_IN_YOUR_CUSTODY`: for a pharmacy, a registered pack never shipped to it.
    fn custody(&mut self) {
        if let (Role::Pharmacy, Some(org), Some(s), true) = (
            self.viewer.role,
            self.viewer.org,
            self.state,
            self.commissioning.is_some(),
        ) && !s.was_sent_to(org, self.viewer.site)
        {
            self.add(
                VerdictCode::NotInYourCustody,
                "This pack was never shipped to your pharmacy. You may dispense it, but check where it came from.".into(),
                vec![],
            );
        }
    }

    /// The reasons, most severe first, and what they add up to.
    fn finish(mut self, genuine: bool) -> Verdict {
        self.reasons
            .sort_by_key(|r| (std::cmp::Reverse(r.severity), r.code));
        // Never empty: a scan without GTIN or serial gets NO_SERIAL, a serialised one either
        // UNKNOWN_SERIAL, a mismatch or AUTHENTIC. The fallback is the safe answer regardless.
        let primary = self
            .reasons
            .first()
            .map_or(VerdictCode::UnknownSerial, |r| r.code);
        let dispensable = genuine && self.reasons.iter().all(|r| r.severity <= Severity::Warning);
        let commissioning = self.commissioning;
        let product = self.scanned.gtin.as_ref().map(|gtin| ProductInfo {
            gtin: gtin.clone(),
            serial: self.scanned.serial.clone(),
            lot: commissioning
                .and_then(|c| c.lot.clone())
                .or_else(|| self.scanned.lot.clone()),
            expiry: self.expiry_date(),
        });
        Verdict {
            primary,
            reasons: self.reasons,
            dispensable,
            product,
            status: self.state.map(|s| s.status),
        }
    }
}

fn dispensed_message(d: &StatusMark, now_ms: i64, viewer: Viewer<'_>) -> String {
    let when = moment(d.event_time_ms);
    if viewer.org == Some(d.org.as_str()) {
        let until = d.event_time_ms + DEFAULT_UNDO_WINDOW_MS;
        if now_ms <= until {
            return format!(
                "Already dispensed by your pharmacy on {when}. You can undo it until {}.",
                moment(until)
            );
        }
        return format!("Already dispensed by your pharmacy on {when}.");
    }
    if viewer.role == Role::Regulator {
        return format!("Already dispensed on {when} by {}.", viewer.party(&d.org));
    }
    let by = if viewer.role == Role::Pharmacy {
        " by another pharmacy"
    } else {
        ""
    };
    format!(
        "Already dispensed on {when}{by}. Possible falsified or diverted pack: do not dispense."
    )
}

// ---------------------------------------------------------------------------------------------
// Status changes through the API
// ---------------------------------------------------------------------------------------------

/// May `org` undo the current dispense now? Returns the ledger index of the dispense to name in
/// [`undo_dispense_event`].
pub fn can_undo(
    state: &PackState,
    org: &str,
    now_ms: i64,
    window_ms: i64,
) -> Result<u64, RuleViolation> {
    let Some(d) = &state.dispensed else {
        return Err(RuleViolation::new(
            RuleCode::UndoStatusMismatch,
            "the pack is not dispensed, so there is nothing to undo",
            vec![],
        ));
    };
    if d.org != org {
        return Err(RuleViolation::new(
            RuleCode::UndoOtherParty,
            "only the pharmacy that dispensed the pack can undo it",
            vec![],
        ));
    }
    if now_ms - d.event_time_ms > window_ms {
        return Err(RuleViolation::new(
            RuleCode::UndoWindowPassed,
            format!(
                "the undo window closed on {}",
                moment(d.event_time_ms + window_ms)
            ),
            vec![d.index],
        ));
    }
    Ok(d.index)
}

/// A status change the API can request.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    Dispense,
    Stolen,
    Destroy,
}

/// May this status be set now? Refuses unknown packs, a status already set, and packs already
/// inactive for another reason (the server may still record a theft or destruction report on an
/// inactive pack; this says what the NMVS would answer). Evidence is withheld for dispenses, as
/// it could identify another pharmacy.
pub fn can_change_status(
    state: Option<&PackState>,
    change: StatusChange,
) -> Result<(), RuleViolation> {
    let Some(s) = state.filter(|s| s.commissioning.is_some()) else {
        return Err(RuleViolation::new(
            RuleCode::UnknownSerial,
            "the pack was never commissioned",
            vec![],
        ));
    };
    if change == StatusChange::Dispense && s.dispensed.is_some() {
        return Err(RuleViolation::new(
            RuleCode::AlreadyDispensed,
            "the pack is already dispensed",
            vec![],
        ));
    }
    if change == StatusChange::Dispense
        && s.status.is_active_or_held()
        && let Some(q) = s.quarantined.first()
    {
        return Err(RuleViolation::new(
            RuleCode::Quarantined,
            format!(
                "the pack is quarantined (entry {}) and may not be dispensed until it is released",
                q.mark.index
            ),
            s.quarantined
                .iter()
                .flat_map(|q| q.mark.entries())
                .collect(),
        ));
    }
    let same = match change {
        StatusChange::Dispense => None,
        StatusChange::Stolen => s.stolen.as_ref().map(|m| Some(m.index)),
        StatusChange::Destroy => s.destroyed.as_ref().map(|m| Some(m.index)),
    };
    if let Some(evidence) = same {
        return Err(RuleViolation::new(
            RuleCode::StatusAlreadySet,
            "this status is already set on the pack",
            evidence.into_iter().collect(),
        ));
    }
    // A quarantined pack may still be reported stolen or destroyed: destruction is how a
    // confirmed falsification ends.
    if !s.status.is_active_or_held() {
        return Err(RuleViolation::new(
            RuleCode::PackInactive,
            format!("the pack is already inactive ({})", s.status.as_str()),
            s.status_index
                .filter(|_| s.status != PackStatus::Dispensed)
                .into_iter()
                .collect(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Custody: who may change a pack's state
// ---------------------------------------------------------------------------------------------

/// What the server does when a pharmacy dispenses a pack it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CustodyPolicy {
    /// Dispense, and raise an alert naming both parties (the default: custody data arrives
    /// late, and a patient must not be turned away because a receiving event is not logged).
    #[default]
    Warn,
    /// Refuse with `NOT_IN_YOUR_CUSTODY`, and raise the same alert.
    Refuse,
}

impl CustodyPolicy {
    pub fn parse(s: &str) -> Option<CustodyPolicy> {
        match s.to_ascii_lowercase().as_str() {
            "warn" => Some(CustodyPolicy::Warn),
            "refuse" => Some(CustodyPolicy::Refuse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CustodyPolicy::Warn => "warn",
            CustodyPolicy::Refuse => "refuse",
        }
    }
}

/// Who holds the pack now: the destination of its last shipping or receiving event (even while
/// in transit, so a shipment logged before its receipt already counts), else the organisation
/// that commissioned it.
pub fn custodian(state: &PackState) -> Option<&str> {
    state
        .custody
        .owner
        .as_deref()
        .or(state.commissioning.as_ref().map(|c| c.org.as_str()))
}

/// Who asks for a state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeRequest<'a> {
    pub change: StatusChange,
    pub org: &'a str,
    pub role: Role,
    /// The organisation owning the GTIN's company prefix, if registered.
    pub brand_owner: Option<&'a str>,
    pub policy: CustodyPolicy,
}

/// A dispense by a pharmacy that does not hold the pack: what the alert names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutsideCustody {
    pub actor: String,
    pub custodian: Option<String>,
    /// The event that set the custody, as evidence.
    pub custody_index: Option<u64>,
}

impl OutsideCustody {
    /// The alert code raised for every dispense outside custody, allowed or refused.
    pub const ALERT: &'static str = "DISPENSED_OUTSIDE_CUSTODY";
}

/// The answer to a [`ChangeRequest`]: whether it may be appended, and whether it is a dispense
/// outside custody (to be alerted on whichever way the policy decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeDecision {
    pub outcome: Result<(), RuleViolation>,
    pub outside_custody: Option<OutsideCustody>,
}

/// The custody rules for API state changes, applied after [`can_change_status`]:
///
/// | Change | Who may |
/// |---|---|
/// | dispense | a pharmacy holding the pack; another pharmacy per [`CustodyPolicy`] |
/// | undo a dispense | the pharmacy that dispensed, within the window ([`can_undo`]) |
/// | report stolen, destroy | the custodian, the brand owner, a regulator |
/// | recall a lot | the brand owner, a regulator (checked where the lot is resolved) |
///
/// Callers check the role first (only pharmacies dispense); this decides on the pack's state.
pub fn authorize_change(state: Option<&PackState>, req: &ChangeRequest<'_>) -> ChangeDecision {
    let refuse = |v: RuleViolation| ChangeDecision {
        outcome: Err(v),
        outside_custody: None,
    };
    if let Err(v) = can_change_status(state, req.change) {
        return refuse(v);
    }
    let Some(state) = state else {
        // can_change_status refuses a missing state; keep the safe answer regardless.
        return refuse(RuleViolation::new(
            RuleCode::UnknownSerial,
            "the pack was never commissioned",
            vec![],
        ));
    };
    let holder = custodian(state);
    let holds = holder == Some(req.org);
    match req.change {
        StatusChange::Dispense if holds => ChangeDecision {
            outcome: Ok(()),
            outside_custody: None,
        },
        StatusChange::Dispense => ChangeDecision {
            outcome: match req.policy {
                CustodyPolicy::Warn => Ok(()),
                CustodyPolicy::Refuse => Err(RuleViolation::new(
                    RuleCode::NotInYourCustody,
                    "this pack is not in your pharmacy's custody: it was never shipped to you",
                    vec![],
                )),
            },
            outside_custody: Some(OutsideCustody {
                actor: req.org.to_string(),
                custodian: holder.map(str::to_string),
                custody_index: state.custody.index,
            }),
        },
        StatusChange::Stolen | StatusChange::Destroy
            if holds || req.role == Role::Regulator || req.brand_owner == Some(req.org) =>
        {
            ChangeDecision {
                outcome: Ok(()),
                outside_custody: None,
            }
        }
        StatusChange::Stolen | StatusChange::Destroy => refuse(RuleViolation::new(
            RuleCode::NotInYourCustody,
            "only the pack's custodian, its brand owner or a regulator may report it stolen or destroyed",
            vec![],
        )),
    }
}

/// Why a builder could not produce an event.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("no pack or container given")]
    Empty,
    #[error("only packs (SGTIN) and containers (SSCC) can be reported, not {0:?}")]
    NotAnInstance(EpcId),
    #[error(transparent)]
    Identifier(#[from] Gs1Error),
}

const DIGITAL_LINK_BASE: &str = "https://id.gs1.org";

/// A pharmacy dispensed the pack at its site.
pub fn dispense_event(sgtin: &Sgtin, site: &Gln, now_ms: i64) -> Value {
    object_event(
        vec![pack_uri(sgtin)],
        Some("dispensing"),
        "dispensed",
        site,
        now_ms,
    )
}

/// Reverses the dispense recorded at ledger entry `dispense_index` (see `pack` module docs for
/// the representation). Check [`can_undo`] first.
pub fn undo_dispense_event(sgtin: &Sgtin, dispense_index: u64, site: &Gln, now_ms: i64) -> Value {
    let mut e = object_event(vec![pack_uri(sgtin)], None, "active", site, now_ms);
    e["bizTransactionList"] = json!([{
        "type": UNDO_TRANSACTION_TYPE,
        "bizTransaction": format!("{LEDGER_ENTRY_PREFIX}{dispense_index}"),
    }]);
    e
}

/// Packs or containers reported stolen; packs inside a reported container inherit it.
pub fn stolen_event(items: &[EpcId], site: &Gln, now_ms: i64) -> Result<Value, BuildError> {
    Ok(object_event(
        instance_uris(items)?,
        None,
        "stolen",
        site,
        now_ms,
    ))
}

/// Packs or containers destroyed.
pub fn destroy_event(items: &[EpcId], site: &Gln, now_ms: i64) -> Result<Value, BuildError> {
    Ok(object_event(
        instance_uris(items)?,
        Some("destroying"),
        "destroyed",
        site,
        now_ms,
    ))
}

/// Recalls a whole lot: a class-level event (quantityList with the `lgtin`) that applies to
/// every pack of the lot wherever it is, including packs inside cases and pallets.
pub fn recall_lot_event(
    gtin: &Gtin,
    lot: &Lot,
    company_prefix_len: usize,
    site: &Gln,
    now_ms: i64,
) -> Result<Value, BuildError> {
    let class = crate::gs1::lgtin_urn(gtin, lot, company_prefix_len)?;
    let mut e = object_event(vec![], None, "recalled", site, now_ms);
    if let Some(o) = e.as_object_mut() {
        o.remove("epcList");
    }
    e["quantityList"] = json!([{ "epcClass": class }]);
    Ok(e)
}

/// What a quarantine or release names: packs and cases, or one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldTarget {
    Items(Vec<EpcId>),
    Lot {
        gtin: Gtin,
        lot: Lot,
        company_prefix_len: usize,
    },
}

/// Quarantines packs, cases or a lot (see `pack::quarantine` for the representation). Check
/// `pack::quarantine::authorize_quarantine` first.
pub fn quarantine_event(
    target: &HoldTarget,
    reason: QuarantineReason,
    site: &Gln,
    now_ms: i64,
) -> Result<Value, BuildError> {
    let (step, disposition) = QUARANTINE_STEP;
    let mut e = held_event(target, step.as_str(), disposition.as_str(), site, now_ms)?;
    e["bizTransactionList"] = json!([{
        "type": QUARANTINE_TRANSACTION_TYPE,
        "bizTransaction": reason.transaction_value(),
    }]);
    Ok(e)
}

/// Releases the quarantines recorded at `entries` from `target`.
pub fn release_event(
    target: &HoldTarget,
    entries: &[u64],
    site: &Gln,
    now_ms: i64,
) -> Result<Value, BuildError> {
    if entries.is_empty() {
        return Err(BuildError::Empty);
    }
    let (step, disposition) = RELEASE_STEP;
    let mut e = held_event(target, step.as_str(), disposition.as_str(), site, now_ms)?;
    e["bizTransactionList"] = entries
        .iter()
        .map(|i| {
            json!({
                "type": RELEASE_TRANSACTION_TYPE,
                "bizTransaction": format!("{LEDGER_ENTRY_PREFIX}{i}"),
            })
        })
        .collect();
    Ok(e)
}

fn held_event(
    target: &HoldTarget,
    step: &str,
    disposition: &str,
    site: &Gln,
    now_ms: i64,
) -> Result<Value, BuildError> {
    match target {
        HoldTarget::Items(items) => Ok(object_event(
            instance_uris(items)?,
            Some(step),
            disposition,
            site,
            now_ms,
        )),
        HoldTarget::Lot {
            gtin,
            lot,
            company_prefix_len,
        } => {
            let class = crate::gs1::lgtin_urn(gtin, lot, *company_prefix_len)?;
            let mut e = object_event(vec![], Some(step), disposition, site, now_ms);
            if let Some(o) = e.as_object_mut() {
                o.remove("epcList");
            }
            e["quantityList"] = json!([{ "epcClass": class }]);
            Ok(e)
        }
    }
}

fn object_event(
    epcs: Vec<String>,
    biz_step: Option<&str>,
    disposition: &str,
    site: &Gln,
    now_ms: i64,
) -> Value {
    let site = format!("{DIGITAL_LINK_BASE}/414/{site}");
    let mut e = json!({
        "type": "ObjectEvent",
        "eventTime": format_time(now_ms),
        "eventTimeZoneOffset": "+00:00",
        "epcList": epcs,
        "action": "OBSERVE",
        "disposition": disposition,
        "readPoint": { "id": site },
        "bizLocation": { "id": site },
    });
    if let Some(step) = biz_step {
        e["bizStep"] = json!(step);
    }
    e
}

fn pack_uri(sgtin: &Sgtin) -> String {
    sgtin.to_digital_link(DIGITAL_LINK_BASE, None, None)
}

fn instance_uris(items: &[EpcId]) -> Result<Vec<String>, BuildError> {
    if items.is_empty() {
        return Err(BuildError::Empty);
    }
    items
        .iter()
        .map(|id| match id {
            EpcId::Sgtin(s) => Ok(pack_uri(s)),
            EpcId::Sscc(s) => Ok(format!("{DIGITAL_LINK_BASE}/00/{s}")),
            other => Err(BuildError::NotAnInstance(other.clone())),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Dates
// ---------------------------------------------------------------------------------------------

/// `2024-05-01 14:02 UTC`.
fn moment(ms: i64) -> String {
    let t = format_time(ms);
    match (t.get(..10), t.get(11..16)) {
        (Some(day), Some(hm)) => format!("{day} {hm} UTC"),
        _ => t,
    }
}

/// `2024-05-01`.
fn day_of(ms: i64) -> String {
    let t = format_time(ms);
    t.get(..10).map_or_else(|| t.clone(), str::to_owned)
}

/// Gregorian year of a day count since 1970-01-01, clamped to what a `CalendarDate` holds.
fn year_of_day(days: i64) -> u16 {
    let (year, _, _) = crate::gs1::civil_from_days(days);
    u16::try_from(year.clamp(0, 9999)).unwrap_or(2000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epcis::{event_hash_id, parse_event};
    use crate::gs1::parse_code;
    use crate::pack::fixtures::{self, *};
    use crate::pack::{LoggedEvent, derive};

    fn scan(serial: &str, lot: &str, expiry: &str) -> ScannedCode {
        parse_code(&format!("(01){GTIN}(17){expiry}(10){lot}(21){serial}")).unwrap()
    }

    fn history() -> Vec<LoggedEvent> {
        vec![
            logged(1, &commission(&["A"], at(0), "L1", "2030-12-31"), "mah"),
            logged(2, &ship(&[fixtures::pack_uri("A")], at(60), 1, 3), "mah"),
            logged(
                3,
                &receive(&[fixtures::pack_uri("A")], at(600), 3),
                "pharmacy-a",
            ),
        ]
    }

    fn with(extra: &[(u64, serde_json::Value, &str)]) -> PackState {
        let mut ev = history();
        ev.extend(extra.iter().map(|(i, j, o)| logged(*i, j, o)));
        derive(&sgtin("A"), &ev)
    }

    fn now() -> i64 {
        at(0) + 30 * DAY
    }

    fn pharmacy(org: &str) -> Viewer<'_> {
        Viewer::org(org, Role::Pharmacy)
    }

    fn codes(v: &Verdict) -> Vec<VerdictCode> {
        v.reasons.iter().map(|r| r.code).collect()
    }

    #[test]
    fn genuine_pack_in_your_custody_is_dispensable() {
        let s = with(&[]);
        let v = verdict(
            &scan("A", "L1", "301231"),
            Some(&s),
            true,
            now(),
            pharmacy("pharmacy-a"),
        );
        assert_eq!(codes(&v), [VerdictCode::Authentic]);
        assert!(v.dispensable);
        assert_eq!(v.status, Some(PackStatus::Active));
        let p = v.product.unwrap();
        assert_eq!(
            (p.lot.unwrap().as_str(), p.expiry),
            ("L1", CalendarDate::new(2030, 12, 31))
        );
        // Day 00 means the end of the month, so 301200 matches 2030-12-31.
        let v = verdict(
            &scan("A", "L1", "301200"),
            Some(&s),
            true,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(codes(&v), [VerdictCode::Authentic]);
    }

    #[test]
    fn unknown_product_and_unknown_serial() {
        let v = verdict(
            &scan("Q", "L1", "301231"),
            None,
            false,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(v.primary, VerdictCode::UnknownProduct);
        assert_eq!(
            codes(&v),
            [VerdictCode::UnknownProduct, VerdictCode::UnknownSerial]
        );
        assert!(!v.dispensable);
        let v = verdict(
            &scan("Q", "L1", "301231"),
            None,
            true,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(codes(&v), [VerdictCode::UnknownSerial]);
        assert_eq!(v.reasons[0].severity, Severity::Alert);
        assert_eq!(VerdictCode::UnknownSerial.emvs_alert(), Some("A3"));
    }

    #[test]
    fn codes_without_serial_cannot_be_verified() {
        let gtin_only = parse_code(&format!("(01){GTIN}")).unwrap();
        let v = verdict(&gtin_only, None, true, now(), Viewer::anonymous());
        assert_eq!(codes(&v), [VerdictCode::NoSerial]);
        assert!(!v.dispensable);
        // A printed expiry is still checked.
        let old = parse_code(&format!("(01){GTIN}(17)241231")).unwrap();
        let v = verdict(&old, None, true, now(), Viewer::anonymous());
        assert_eq!(codes(&v), [VerdictCode::Expired, VerdictCode::NoSerial]);
        let sscc_only = parse_code(&format!("(00){}", sscc(1))).unwrap();
        let v = verdict(&sscc_only, None, true, now(), Viewer::anonymous());
        assert_eq!(codes(&v), [VerdictCode::NoSerial]);
        assert!(v.product.is_none());
    }

    #[test]
    fn batch_and_expiry_mismatch() {
        let s = with(&[]);
        let v = verdict(
            &scan("A", "l1", "301231"),
            Some(&s),
            true,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(codes(&v), [VerdictCode::BatchMismatch]);
        assert!(v.reasons[0].message.contains("letter case"));
        assert!(!v.dispensable);
        let v = verdict(
            &scan("A", "L1", "301130"),
            Some(&s),
            true,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(codes(&v), [VerdictCode::ExpiryMismatch]);
        assert_eq!(v.reasons[0].evidence, [1]);
    }

    #[test]
    fn expired_by_date_or_by_event() {
        let s = with(&[]);
        let after = parse_time_ms("2031-01-01T00:00:00Z");
        let v = verdict(
            &scan("A", "L1", "301231"),
            Some(&s),
            true,
            after,
            Viewer::anonymous(),
        );
        assert_eq!(codes(&v), [VerdictCode::Expired, VerdictCode::Authentic]);
        assert!(v.reasons[0].message.contains("2030-12-31"));
        assert!(!v.dispensable);
        // The last valid day itself is still fine.
        let last = parse_time_ms("2030-12-31T23:59:00Z");
        let v = verdict(
            &scan("A", "L1", "301231"),
            Some(&s),
            true,
            last,
            Viewer::anonymous(),
        );
        assert!(v.dispensable);
        // Without a commissioned expiry, the scanned one counts.
        let bare = derive(
            &sgtin("A"),
            &[logged(
                1,
                &commission(&["A"], at(0), "L1", "2030-12-31"),
                "mah",
            )],
        );
        let mut no_exp = bare.clone();
        no_exp.commissioning.as_mut().unwrap().expiry = None;
        let v = verdict(
            &scan("A", "L1", "250131"),
            Some(&no_exp),
            true,
            now(),
            Viewer::anonymous(),
        );
        assert!(v.has(VerdictCode::Expired));
        // An `expired` disposition counts even before the date.
        let s = with(&[(
            4,
            observe(&[fixtures::pack_uri("A")], at(700), "expired"),
            "mah",
        )]);
        let v = verdict(
            &scan("A", "L1", "301231"),
            Some(&s),
            true,
            now(),
            Viewer::anonymous(),
        );
        assert_eq!(v.primary, VerdictCode::Expired);
        assert_eq!(v.reasons[0].evidence, [4]);
    }

    fn parse_time_ms(s: &str) -> i64 {
        crate::epcis::parse_time(s).unwrap()
    }

    #[test]
    fn already_dispensed_says_when_but_not_who() {
        let d = dispense_event(&sgtin("A"), &gln(3), at(1000));
        let s = with(&[(4, d, "pharmacy-a")]);
        let code = scan("A", "L1", "301231");
        let when = moment(at(1000));

        let other = verdict(&code, Some(&s), true, now(), pharmacy("pharmacy-b"));
        assert_eq!(other.primary, VerdictCode::AlreadyDispensed);
        let r = &other.reasons[0];
        assert!(r.message.contains(&when) && r.message.contains("another pharmacy"));
        assert!(!r.message.contains("pharmacy-a"));
        // The dispensing entry is cited to everyone; its index names nobody.
        assert_eq!(r.evidence, [4]);
        assert!(!other.dispensable);

        let public = verdict(&code, Some(&s), true, now(), Viewer::anonymous());
        assert!(!public.reasons[0].message.contains("pharmacy-a"));
        assert_eq!(public.reasons[0].evidence, [4]);

        let own = verdict(
            &code,
            Some(&s),
            true,
            at(1000) + DAY,
            pharmacy("pharmacy-a"),
        );
        assert!(own.reasons[0].message.contains("your pharmacy"));
        assert!(own.reasons[0].message.contains("undo"));
        assert_eq!(own.reasons[0].evidence, [4]);

        let regulator = verdict(
            &code,
            Some(&s),
            true,
            now(),
            Viewer::org("agency", Role::Regulator),
        );
        assert!(regulator.reasons[0].message.contains("pharmacy-a"));
        // With the registry's names, a regulator reads the pharmacy's name beside its id.
        let names = [("pharmacy-a".to_string(), "Corner Pharmacy".to_string())].into();
        let named = verdict(
            &code,
            Some(&s),
            true,
            now(),
            Viewer::org("agency", Role::Regulator).with_names(&names),
        );
        assert!(
            named.reasons[0]
                .message
                .ends_with("by Corner Pharmacy (pharmacy-a)."),
            "{}",
            named.reasons[0].message
        );
    }

    #[test]
    fn inactive_statuses_block() {
        let code = scan("A", "L1", "301231");
        for (disp, expected) in [
            ("recalled", VerdictCode::Recalled),
            ("stolen", VerdictCode::Stolen),
            ("destroyed", VerdictCode::Destroyed),
            ("inactive", VerdictCode::Decommissioned),
        ] {
            let s = with(&[(4, observe(&[fixtures::pack_uri("A")], at(700), disp), "mah")]);
            let v = verdict(&code, Some(&s), true, now(), Viewer::anonymous());
            assert_eq!(v.primary, expected, "{disp}");
            assert_eq!(v.reasons[0].evidence, [4]);
            assert!(!v.dispensable);
            assert!(v.has(VerdictCode::Authentic));
        }
    }

    #[test]
    fn most_severe_reason_first() {
        let s = with(&[
            (
                4,
                observe(&[fixtures::pack_uri("A")], at(700), "recalled"),
                "mah",
            ),
            (
                5,
                observe(&[fixtures::pack_uri("A")], at(800), "stolen"),
                "mah",
            ),
        ]);
        let after = parse_time_ms("2031-06-01T00:00:00Z");
        let v = verdict(
            &scan("A", "L1", "301231"),
            Some(&s),
            true,
            after,
            pharmacy("pharmacy-b"),
        );
        assert_eq!(
            codes(&v),
            [
                VerdictCode::Stolen,
                VerdictCode::Recalled,
                VerdictCode::Expired,
                VerdictCode::NotInYourCustody,
                VerdictCode::Authentic
            ]
        );
    }

    #[test]
    fn not_in_your_custody_is_a_warning_for_pharmacies() {
        let s = with(&[]);
        let code = scan("A", "L1", "301231");
        let v = verdict(&code, Some(&s), true, now(), pharmacy("pharmacy-b"));
        assert_eq!(v.primary, VerdictCode::NotInYourCustody);
        assert_eq!(v.reasons[0].severity, Severity::Warning);
        assert!(v.dispensable);
        let by_site = pharmacy("elsewhere").at_site("9506000000039");
        assert_eq!(gln(3).as_str(), "9506000000039");
        assert!(!verdict(&code, Some(&s), true, now(), by_site).has(VerdictCode::NotInYourCustody));
        let wholesaler = Viewer::org("pharmacy-b", Role::Wholesaler);
        assert!(
            !verdict(&code, Some(&s), true, now(), wholesaler).has(VerdictCode::NotInYourCustody)
        );
    }

    #[test]
    fn undo_rules() {
        let s = with(&[(
            4,
            dispense_event(&sgtin("A"), &gln(3), at(1000)),
            "pharmacy-a",
        )]);
        assert_eq!(
            can_undo(&s, "pharmacy-a", at(1000) + DAY, DEFAULT_UNDO_WINDOW_MS),
            Ok(4)
        );
        let code = |r: Result<u64, RuleViolation>| r.unwrap_err().code;
        assert_eq!(
            code(can_undo(&s, "pharmacy-b", at(1001), DEFAULT_UNDO_WINDOW_MS)),
            RuleCode::UndoOtherParty
        );
        assert_eq!(
            code(can_undo(
                &s,
                "pharmacy-a",
                at(1000) + 11 * DAY,
                DEFAULT_UNDO_WINDOW_MS
            )),
            RuleCode::UndoWindowPassed
        );
        assert_eq!(
            code(can_undo(
                &with(&[]),
                "pharmacy-a",
                now(),
                DEFAULT_UNDO_WINDOW_MS
            )),
            RuleCode::UndoStatusMismatch
        );
    }

    #[test]
    fn status_change_rules() {
        let active = with(&[]);
        assert_eq!(
            can_change_status(Some(&active), StatusChange::Dispense),
            Ok(())
        );
        assert_eq!(
            can_change_status(None, StatusChange::Dispense)
                .unwrap_err()
                .code,
            RuleCode::UnknownSerial
        );
        let dispensed = with(&[(
            4,
            dispense_event(&sgtin("A"), &gln(3), at(1000)),
            "pharmacy-a",
        )]);
        let err = can_change_status(Some(&dispensed), StatusChange::Dispense).unwrap_err();
        assert_eq!(
            (err.code, err.evidence),
            (RuleCode::AlreadyDispensed, vec![])
        );
        let recalled = with(&[(
            4,
            observe(&[fixtures::pack_uri("A")], at(700), "recalled"),
            "mah",
        )]);
        let err = can_change_status(Some(&recalled), StatusChange::Dispense).unwrap_err();
        assert_eq!((err.code, err.evidence), (RuleCode::PackInactive, vec![4]));
    }

    #[test]
    fn custody_matrix() {
        // History: commissioned by "mah", shipped to site 3 and received there by "pharmacy-a".
        let held = with(&[]);
        assert_eq!(custodian(&held), Some("pharmacy-a"));
        // Never shipped: the commissioning organisation holds it.
        let at_maker = derive(
            &sgtin("A"),
            &[logged(
                1,
                &commission(&["A"], at(0), "L1", "2030-12-31"),
                "mah",
            )],
        );
        assert_eq!(custodian(&at_maker), Some("mah"));
        let ask = |change, org, role, policy| {
            authorize_change(
                Some(&held),
                &ChangeRequest {
                    change,
                    org,
                    role,
                    brand_owner: Some("mah"),
                    policy,
                },
            )
        };
        use CustodyPolicy::{Refuse, Warn};
        use StatusChange::{Destroy, Dispense, Stolen};
        // (change, org, role, policy) -> allowed, alerted
        let cases = [
            (Dispense, "pharmacy-a", Role::Pharmacy, Warn, true, false),
            (Dispense, "pharmacy-a", Role::Pharmacy, Refuse, true, false),
            (Dispense, "pharmacy-b", Role::Pharmacy, Warn, true, true),
            (Dispense, "pharmacy-b", Role::Pharmacy, Refuse, false, true),
            (Stolen, "pharmacy-a", Role::Pharmacy, Refuse, true, false),
            (Stolen, "pharmacy-b", Role::Pharmacy, Warn, false, false),
            (Stolen, "wholesaler", Role::Wholesaler, Warn, false, false),
            (Stolen, "mah", Role::Manufacturer, Warn, true, false),
            (Stolen, "other-mah", Role::Manufacturer, Warn, false, false),
            (Stolen, "nca", Role::Regulator, Warn, true, false),
            (Destroy, "pharmacy-a", Role::Pharmacy, Warn, true, false),
            (Destroy, "pharmacy-b", Role::Pharmacy, Warn, false, false),
            (Destroy, "wholesaler", Role::Wholesaler, Warn, false, false),
            (Destroy, "mah", Role::Manufacturer, Warn, true, false),
            (Destroy, "other-mah", Role::Manufacturer, Warn, false, false),
            (Destroy, "nca", Role::Regulator, Warn, true, false),
        ];
        for (change, org, role, policy, allowed, alerted) in cases {
            let d = ask(change, org, role, policy);
            assert_eq!(d.outcome.is_ok(), allowed, "{change:?} by {org}: {d:?}");
            if let Err(v) = &d.outcome {
                assert_eq!(v.code, RuleCode::NotInYourCustody, "{d:?}");
            }
            assert_eq!(d.outside_custody.is_some(), alerted, "{change:?} by {org}");
            if let Some(o) = d.outside_custody {
                assert_eq!(
                    (o.actor.as_str(), o.custodian.as_deref()),
                    (org, Some("pharmacy-a"))
                );
            }
        }
        // State rules come first: no custody question for a pack already dispensed.
        let dispensed = with(&[(
            4,
            dispense_event(&sgtin("A"), &gln(3), at(1000)),
            "pharmacy-a",
        )]);
        let d = authorize_change(
            Some(&dispensed),
            &ChangeRequest {
                change: Dispense,
                org: "pharmacy-b",
                role: Role::Pharmacy,
                brand_owner: None,
                policy: Warn,
            },
        );
        assert_eq!(d.outcome.unwrap_err().code, RuleCode::AlreadyDispensed);
        assert_eq!(d.outside_custody, None);
    }

    #[test]
    fn builders_parse_and_hash() {
        let lot = Lot::parse("L1").unwrap();
        let site = gln(3);
        let events = [
            dispense_event(&sgtin("A"), &site, now()),
            undo_dispense_event(&sgtin("A"), 4, &site, now()),
            stolen_event(
                &[EpcId::Sscc(sscc(1)), EpcId::Sgtin(sgtin("A"))],
                &site,
                now(),
            )
            .unwrap(),
            destroy_event(&[EpcId::Sgtin(sgtin("A"))], &site, now()).unwrap(),
            recall_lot_event(&gtin(), &lot, 7, &site, now()).unwrap(),
        ];
        for e in &events {
            let parsed = parse_event(e).unwrap_or_else(|err| panic!("{err}: {e}"));
            assert_eq!(parsed.event_time_ms, now());
            let id = event_hash_id(e).unwrap();
            assert!(id.starts_with("ni:///sha-256;"), "{id}");
        }
        let recall = parse_event(&events[4]).unwrap();
        assert_eq!(
            recall.quantities[0].class,
            EpcId::Lgtin {
                gtin: gtin(),
                lot: lot.clone()
            }
        );
        assert_eq!(
            recall.disposition,
            Some(crate::epcis::Disposition::Recalled)
        );
        assert_eq!(
            crate::pack::undo_target(&parse_event(&events[1]).unwrap()),
            Some(4)
        );
        assert_eq!(stolen_event(&[], &site, now()), Err(BuildError::Empty));
        assert!(matches!(
            destroy_event(&[EpcId::GtinClass(gtin())], &site, now()),
            Err(BuildError::NotAnInstance(_))
        ));
        assert!(matches!(
            recall_lot_event(&gtin(), &lot, 3, &site, now()),
            Err(BuildError::Identifier(_))
        ));
    }

    #[test]
    fn codes_have_one_spelling() {
        // Severity was spelled `format!("{:?}").to_uppercase()` before it had a table.
        for s in Severity::ALL {
            assert_eq!(s.as_str(), format!("{s:?}").to_uppercase());
        }
        let spellings: Vec<&str> = Severity::ALL.iter().map(Severity::as_str).collect();
        assert_eq!(spellings, ["OK", "WARNING", "BLOCKED", "ALERT"]);
        for c in VerdictCode::ALL {
            assert_eq!(c.as_str().parse::<VerdictCode>(), Ok(*c));
            assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
            assert_eq!(c.to_string(), c.as_str());
        }
        for s in Severity::ALL {
            assert_eq!(
                serde_json::from_value::<Severity>(json!(s.as_str())).unwrap(),
                *s
            );
        }
        assert!("WARN".parse::<Severity>().is_err());
        assert_eq!(
            VerdictCode::NotInYourCustody.as_str(),
            "NOT_IN_YOUR_CUSTODY"
        );
    }

    #[test]
    fn year_of_day_matches_the_calendar() {
        for (y, m, d) in [(1970, 1, 1), (2024, 2, 29), (2025, 12, 31), (2100, 3, 1)] {
            let day = CalendarDate::new(y, m, d).unwrap().days_since_epoch();
            assert_eq!(year_of_day(day), y);
        }
    }
}
