//! Alert cases (issue 23 item 2): in the EU every NMVS alert becomes a case that the
//! marketing authorisation holder must answer, with reminders, escalation to the national
//! authority and a recorded root cause.
//!
//! # Every transition is a ledger entry
//!
//! Like a tracing request (`crate::trace`), a case's transitions are no EPCIS events: nothing
//! happened to the pack, and the investigation must not show in its public timeline. Each one
//! is a [`CaseRecord`], sealed by the log key ([`seal_record`]) and appended as a desk record.
//! The opening record's ledger index is the case's id; every later record names it. The
//! index and the auditor skip these entries by `crate::trace::is_record`, which recognises
//! both kinds of desk record.
//!
//! # The state is the records, folded
//!
//! [`Case::open`] and [`Case::apply`] fold the signed records into the case's state, and
//! [`Case::next`] decides whether a party may make a transition now: the store asks it before
//! appending, and the fold of the records read back must give the same state again. Time is a
//! parameter: [`Case::due`] says which timer transition (a reminder, the escalation) is due at
//! a given "now", so the timers are tested without waiting.
//!
//! # The timers
//!
//! A case waits for the brand owner from its opening, and again from each information
//! request. Unanswered, it gets a reminder at [`Timers::first_reminder_ms`] (48 h), another
//! at [`Timers::second_reminder_ms`] (5 days) and is escalated to the regulator at
//! [`Timers::escalation_ms`] (14 days); only an escalated case may be closed `NO_RESPONSE`. A
//! case whose pack has no registered brand owner has nobody to wait for: it opens escalated.

use serde::{Deserialize, Serialize};

use crate::keys::{LogVerifier, SigningKey};
use crate::spelling::spelled;

/// Where a case stands.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseStatus {
    /// Opened, or answered: the brand owner is investigating.
    Open,
    /// The regulator asked the brand owner for information it has not given yet.
    InformationRequested,
    Closed,
}

spelled!(CaseStatus {
    Open => "OPEN",
    InformationRequested => "INFORMATION_REQUESTED",
    Closed => "CLOSED",
});

/// Why the alert arose, recorded when the case closes.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RootCause {
    /// A scanner, system or data error: the pack is genuine.
    TechnicalError,
    /// A handling error (scanned twice, wrong pack, wrong step): the pack is genuine.
    ProcessError,
    /// The pack is falsified.
    FalsificationConfirmed,
    /// The brand owner never answered; only after escalation.
    NoResponse,
}

spelled!(RootCause {
    TechnicalError => "TECHNICAL_ERROR",
    ProcessError => "PROCESS_ERROR",
    FalsificationConfirmed => "FALSIFICATION_CONFIRMED",
    NoResponse => "NO_RESPONSE",
});

/// What a record does to its case.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CaseAction {
    Opened,
    InformationRequested,
    /// The brand owner's answer: it stops the timers.
    Answered,
    /// A regulator's note: it changes nothing.
    Commented,
    Reminded,
    Escalated,
    Closed,
}

spelled!(CaseAction {
    Opened => "OPENED",
    InformationRequested => "INFORMATION_REQUESTED",
    Answered => "ANSWERED",
    Commented => "COMMENTED",
    Reminded => "REMINDED",
    Escalated => "ESCALATED",
    Closed => "CLOSED",
});

/// Who acts on a case. The adapter maps API roles onto it; nobody else may act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The organisation owning the GTIN's company prefix.
    BrandOwner,
    /// A national authority (regulators and admins).
    Regulator,
    /// The node itself: opening and the timers.
    Node,
}

/// The actor a node's own records name.
pub const NODE_ACTOR: &str = "rxledger";
/// Longest free text on a record (an answer, a request, a comment, the alert's message).
pub const MAX_TEXT: usize = 2000;
/// Most records a case holds before only its closing (and its timers) may follow: a case is
/// folded from all of them whenever it is read.
pub const MAX_RECORDS: usize = 500;

/// Why a record or a transition was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    #[error("a text is 1 to {MAX_TEXT} characters, without control characters but line breaks")]
    Text,
    #[error("the case is closed")]
    Closed,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("the timers must be positive and in order: first reminder, second, escalation")]
    Timers,
    #[error("not a case record: {0}")]
    Record(String),
    #[error("the case record's signature does not verify with the log key")]
    RecordSignature,
}

/// Checks free text: bounded, no control characters but line breaks and tabs.
pub fn parse_text(s: &str) -> Result<String, CaseError> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.chars().count() <= MAX_TEXT
        && s.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\t'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(CaseError::Text)
    }
}

/// The alert a case was opened for, as its opening record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRef {
    /// The alert's id on the node that recorded it.
    pub id: i64,
    pub code: String,
    /// The pack, as its index key (`sgtin:<gtin>.<serial>`).
    pub pack: String,
    /// The organisation the case is assigned to; `None` when the GTIN's prefix is unregistered.
    pub brand_owner: Option<String>,
    pub message: String,
    /// Ledger entries the alert cites.
    pub evidence: Vec<u64>,
}

/// One transition of a case, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseRecord {
    /// The case (its opening entry); `None` on the opening record itself.
    pub case: Option<u64>,
    pub action: CaseAction,
    /// An organisation id, or [`NODE_ACTOR`].
    pub actor: String,
    /// When, RFC 3339 UTC.
    pub at: String,
    /// On the opening record only.
    pub alert: Option<AlertRef>,
    /// On the closing record only.
    pub root_cause: Option<RootCause>,
    pub text: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SealedCaseRecord {
    alert_case: String,
    sig: String,
}

/// The entry bytes of a record: its JSON text and the log key's signature over it.
pub fn seal_record(key: &SigningKey, record: &CaseRecord) -> Vec<u8> {
    // Serialising strings, numbers and fieldless enums cannot fail.
    let text = serde_json::to_string(record).unwrap_or_default();
    let sig = hex::encode(key.sign(text.as_bytes()));
    serde_json::to_vec(&SealedCaseRecord {
        alert_case: text,
        sig,
    })
    .unwrap_or_default()
}

/// Whether entry bytes are a sealed case record.
pub fn is_case_record(bytes: &[u8]) -> bool {
    serde_json::from_slice::<SealedCaseRecord>(bytes).is_ok()
}

/// Reads a record and checks the log key's signature.
pub fn open_record(bytes: &[u8], log: &LogVerifier) -> Result<CaseRecord, CaseError> {
    let sealed: SealedCaseRecord =
        serde_json::from_slice(bytes).map_err(|e| CaseError::Record(e.to_string()))?;
    let sig = hex::decode(&sealed.sig).map_err(|e| CaseError::Record(e.to_string()))?;
    log.public_key()
        .verify(sealed.alert_case.as_bytes(), &sig)
        .map_err(|_| CaseError::RecordSignature)?;
    serde_json::from_str(&sealed.alert_case).map_err(|e| CaseError::Record(e.to_string()))
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// When an unanswered case is reminded and escalated, counted from when it began to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub first_reminder_ms: i64,
    pub second_reminder_ms: i64,
    pub escalation_ms: i64,
}

impl Default for Timers {
    /// 48 hours, 5 days, 14 days.
    fn default() -> Self {
        Timers {
            first_reminder_ms: 48 * HOUR_MS,
            second_reminder_ms: 5 * DAY_MS,
            escalation_ms: 14 * DAY_MS,
        }
    }
}

impl Timers {
    /// Timers that are positive and in order.
    pub fn new(first: i64, second: i64, escalation: i64) -> Result<Timers, CaseError> {
        if 0 < first && first < second && second < escalation {
            Ok(Timers {
                first_reminder_ms: first,
                second_reminder_ms: second,
                escalation_ms: escalation,
            })
        } else {
            Err(CaseError::Timers)
        }
    }
}

/// A transition someone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    RequestInformation,
    /// The brand owner's answer, or a regulator's comment.
    Answer,
    Remind,
    Escalate,
    Close(RootCause),
}

/// A case's state: its records folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The opening entry.
    pub id: u64,
    pub alert: AlertRef,
    pub opened_ms: i64,
    pub status: CaseStatus,
    pub root_cause: Option<RootCause>,
    /// Since when the case waits for the brand owner (`None`: it does not).
    pub awaiting_since_ms: Option<i64>,
    /// Reminders sent since it began to wait.
    pub reminders: u8,
    pub escalated: bool,
    pub updated_ms: i64,
    /// Every record, in ledger order: (entry index, record).
    pub records: Vec<(u64, CaseRecord)>,
}

impl Case {
    /// The case an opening record at entry `index` opens.
    pub fn open(index: u64, record: CaseRecord) -> Result<Case, CaseError> {
        let (None, CaseAction::Opened, Some(alert)) =
            (record.case, record.action, record.alert.clone())
        else {
            return Err(CaseError::Record("not an opening record".into()));
        };
        let at = record_time(&record)?;
        let assigned = alert.brand_owner.is_some();
        Ok(Case {
            id: index,
            alert,
            opened_ms: at,
            status: CaseStatus::Open,
            root_cause: None,
            awaiting_since_ms: assigned.then_some(at),
            reminders: 0,
            escalated: !assigned,
            updated_ms: at,
            records: vec![(index, record)],
        })
    }

    /// Folds a later record (at entry `index`) into the case. The record is trusted to have
    /// been allowed ([`Case::next`] decided it before it was appended); only its shape and
    /// order are checked.
    pub fn apply(&mut self, index: u64, record: CaseRecord) -> Result<(), CaseError> {
        if record.case != Some(self.id) {
            return Err(CaseError::Record(format!(
                "not a record of case {}",
                self.id
            )));
        }
        if self.status == CaseStatus::Closed {
            return Err(CaseError::Closed);
        }
        let at = record_time(&record)?;
        match record.action {
            CaseAction::Opened => return Err(CaseError::Record("a second opening".into())),
            CaseAction::InformationRequested => {
                self.status = CaseStatus::InformationRequested;
                self.awaiting_since_ms = Some(at);
                self.reminders = 0;
            }
            CaseAction::Answered => {
                self.status = CaseStatus::Open;
                self.awaiting_since_ms = None;
            }
            CaseAction::Commented => {}
            CaseAction::Reminded => self.reminders = self.reminders.saturating_add(1),
            CaseAction::Escalated => self.escalated = true,
            CaseAction::Closed => {
                let cause = record
                    .root_cause
                    .ok_or_else(|| CaseError::Record("a closing without a root cause".into()))?;
                self.status = CaseStatus::Closed;
                self.root_cause = Some(cause);
                self.awaiting_since_ms = None;
            }
        }
        self.updated_ms = at;
        self.records.push((index, record));
        Ok(())
    }

    /// The record `party` (organisation `actor`) makes for `transition` at `now_ms`, if it
    /// may. `text` has been through [`parse_text`].
    pub fn next(
        &self,
        party: Party,
        actor: &str,
        transition: Transition,
        text: Option<String>,
        now_ms: i64,
        timers: &Timers,
    ) -> Result<CaseRecord, CaseError> {
        if self.status == CaseStatus::Closed {
            return Err(CaseError::Closed);
        }
        use self::{Party as P, Transition as T};
        let talk = matches!(transition, T::RequestInformation | T::Answer);
        if talk && self.records.len() >= MAX_RECORDS {
            return Err(CaseError::NotAllowed(
                "the case holds as many records as it may: close it",
            ));
        }
        let (action, root_cause) = match (&transition, party) {
            (T::RequestInformation, P::Regulator) => (CaseAction::InformationRequested, None),
            (T::Answer, P::BrandOwner) => (CaseAction::Answered, None),
            (T::Answer, P::Regulator) => (CaseAction::Commented, None),
            (T::Remind, P::Node) if self.due(now_ms, timers) == Some(T::Remind) => {
                (CaseAction::Reminded, None)
            }
            (T::Escalate, P::Node) if self.due(now_ms, timers) == Some(T::Escalate) => {
                (CaseAction::Escalated, None)
            }
            (T::Close(RootCause::NoResponse), P::Regulator) if self.escalated => {
                (CaseAction::Closed, Some(RootCause::NoResponse))
            }
            (T::Close(RootCause::NoResponse), _) => {
                return Err(CaseError::NotAllowed(
                    "only a regulator closes a case NO_RESPONSE, once it is escalated",
                ));
            }
            (T::Close(cause), P::BrandOwner | P::Regulator) => (CaseAction::Closed, Some(*cause)),
            (T::RequestInformation, _) => {
                return Err(CaseError::NotAllowed(
                    "only a regulator requests information",
                ));
            }
            (T::Remind | T::Escalate, P::Node) => {
                return Err(CaseError::NotAllowed("that timer is not due"));
            }
            _ => return Err(CaseError::NotAllowed("this party may not do that")),
        };
        Ok(CaseRecord {
            case: Some(self.id),
            action,
            actor: actor.to_owned(),
            at: crate::epcis::format_time(now_ms),
            alert: None,
            root_cause,
            text,
        })
    }

    /// The timer transition due at `now_ms`, if any: the first reminder, the second, then the
    /// escalation, each counted from when the case began to wait for the brand owner.
    pub fn due(&self, now_ms: i64, timers: &Timers) -> Option<Transition> {
        self.next_timer(timers)
            .filter(|(at, _)| now_ms >= *at)
            .map(|(_, t)| t)
    }

    /// The next timer transition and when it falls due, if the case waits for anything.
    pub fn next_timer(&self, timers: &Timers) -> Option<(i64, Transition)> {
        if self.status == CaseStatus::Closed {
            return None;
        }
        let since = self.awaiting_since_ms?;
        let after = |ms: i64| since.saturating_add(ms);
        match self.reminders {
            0 => Some((after(timers.first_reminder_ms), Transition::Remind)),
            1 => Some((after(timers.second_reminder_ms), Transition::Remind)),
            _ if !self.escalated => Some((after(timers.escalation_ms), Transition::Escalate)),
            _ => None,
        }
    }
}

fn record_time(r: &CaseRecord) -> Result<i64, CaseError> {
    crate::epcis::parse_time(&r.at).map_err(|e| CaseError::Record(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_000_000_000;

    fn opening(brand_owner: Option<&str>) -> CaseRecord {
        CaseRecord {
            case: None,
            action: CaseAction::Opened,
            actor: NODE_ACTOR.into(),
            at: crate::epcis::format_time(T0),
            alert: Some(AlertRef {
                id: 7,
                code: "DISPENSED_OUTSIDE_CUSTODY".into(),
                pack: "sgtin:10614141073464.1".into(),
                brand_owner: brand_owner.map(str::to_owned),
                message: "pharmacy b dispensed a pack held by a".into(),
                evidence: vec![3, 9],
            }),
            root_cause: None,
            text: None,
        }
    }

    fn case() -> Case {
        Case::open(12, opening(Some("acme"))).unwrap()
    }

    /// Makes the transition `party` asks for at `at` and folds it in.
    fn step(c: &mut Case, party: Party, t: Transition, at: i64) -> Result<(), CaseError> {
        let r = c.next(party, "x", t, None, at, &Timers::default())?;
        c.apply(c.records.len() as u64 + 100, r)
    }

    #[test]
    fn a_record_is_sealed_by_the_log_key_and_is_a_desk_record() {
        let key = SigningKey::generate();
        let log = LogVerifier::new("test/log", key.public_key()).unwrap();
        let bytes = seal_record(&key, &opening(Some("acme")));
        assert!(is_case_record(&bytes) && crate::trace::is_record(&bytes));
        assert_eq!(open_record(&bytes, &log), Ok(opening(Some("acme"))));
        let tampered = String::from_utf8(bytes).unwrap().replace("acme", "rival");
        assert_eq!(
            open_record(tampered.as_bytes(), &log),
            Err(CaseError::RecordSignature)
        );
        assert!(!is_case_record(br#"{"traceRequest":"{}","sig":"00"}"#));
    }

    #[test]
    fn an_unanswered_case_is_reminded_twice_then_escalated() {
        let t = Timers::default();
        let mut c = case();
        assert_eq!(c.due(T0 + t.first_reminder_ms - 1, &t), None);
        // Not due: the node may not remind early.
        assert!(step(&mut c, Party::Node, Transition::Remind, T0 + HOUR_MS).is_err());
        assert_eq!(
            c.due(T0 + t.first_reminder_ms, &t),
            Some(Transition::Remind)
        );
        step(
            &mut c,
            Party::Node,
            Transition::Remind,
            T0 + t.first_reminder_ms,
        )
        .unwrap();
        assert_eq!(c.due(T0 + t.second_reminder_ms - 1, &t), None);
        // A node that was down catches up one transition at a time.
        let late = T0 + t.escalation_ms;
        assert_eq!(c.due(late, &t), Some(Transition::Remind));
        step(&mut c, Party::Node, Transition::Remind, late).unwrap();
        assert_eq!(c.due(late, &t), Some(Transition::Escalate));
        step(&mut c, Party::Node, Transition::Escalate, late).unwrap();
        assert!(c.escalated);
        assert_eq!(c.due(late + 100 * DAY_MS, &t), None);
        assert_eq!(c.records.len(), 4);
    }

    #[test]
    fn an_answer_stops_the_timers_and_a_request_starts_them_again() {
        let t = Timers::default();
        let mut c = case();
        step(&mut c, Party::BrandOwner, Transition::Answer, T0 + HOUR_MS).unwrap();
        assert_eq!(c.due(T0 + 30 * DAY_MS, &t), None);
        let asked = T0 + 2 * DAY_MS;
        step(
            &mut c,
            Party::Regulator,
            Transition::RequestInformation,
            asked,
        )
        .unwrap();
        assert_eq!(c.status, CaseStatus::InformationRequested);
        assert_eq!(c.due(asked + t.first_reminder_ms - 1, &t), None);
        assert_eq!(
            c.due(asked + t.first_reminder_ms, &t),
            Some(Transition::Remind)
        );
        // A regulator's comment is no answer.
        step(&mut c, Party::Regulator, Transition::Answer, asked + 1).unwrap();
        assert_eq!(c.records.last().unwrap().1.action, CaseAction::Commented);
        assert_eq!(c.status, CaseStatus::InformationRequested);
        step(&mut c, Party::BrandOwner, Transition::Answer, asked + 2).unwrap();
        assert_eq!((c.status, c.awaiting_since_ms), (CaseStatus::Open, None));
    }

    #[test]
    fn who_may_close_and_how() {
        let mut c = case();
        let no_response = Transition::Close(RootCause::NoResponse);
        for party in [Party::BrandOwner, Party::Regulator, Party::Node] {
            assert!(matches!(
                step(&mut c, party, no_response.clone(), T0 + 1),
                Err(CaseError::NotAllowed(_))
            ));
        }
        assert!(
            step(
                &mut c,
                Party::BrandOwner,
                Transition::RequestInformation,
                T0
            )
            .is_err()
        );
        assert!(step(&mut c, Party::Node, Transition::Answer, T0).is_err());
        let confirmed = Transition::Close(RootCause::FalsificationConfirmed);
        assert!(step(&mut c, Party::Node, confirmed.clone(), T0 + 1).is_err());
        step(&mut c, Party::BrandOwner, confirmed, T0 + 1).unwrap();
        assert_eq!(
            (c.status, c.root_cause),
            (CaseStatus::Closed, Some(RootCause::FalsificationConfirmed))
        );
        assert_eq!(
            step(&mut c, Party::Regulator, Transition::Answer, T0 + 2),
            Err(CaseError::Closed)
        );
        assert_eq!(c.due(T0 + 30 * DAY_MS, &Timers::default()), None);
    }

    #[test]
    fn an_escalated_case_closes_no_response_and_an_unassigned_one_opens_escalated() {
        let t = Timers::default();
        let mut c = case();
        for at in [t.first_reminder_ms, t.second_reminder_ms, t.escalation_ms] {
            let due = c.due(T0 + at, &t).unwrap();
            step(&mut c, Party::Node, due, T0 + at).unwrap();
        }
        step(
            &mut c,
            Party::Regulator,
            Transition::Close(RootCause::NoResponse),
            T0 + t.escalation_ms,
        )
        .unwrap();
        assert_eq!(c.root_cause, Some(RootCause::NoResponse));

        let orphan = Case::open(3, opening(None)).unwrap();
        assert!(orphan.escalated);
        assert_eq!(orphan.due(T0 + 100 * DAY_MS, &t), None);
    }

    #[test]
    fn records_fold_only_in_shape_and_inputs_are_bounded() {
        let mut c = case();
        let mut stray = opening(Some("acme"));
        assert!(c.apply(13, stray.clone()).is_err());
        stray.case = Some(99);
        stray.action = CaseAction::Commented;
        assert!(c.apply(13, stray).is_err());
        assert!(Case::open(1, c.records[0].1.clone()).is_ok());
        // A case takes so many comments, then only its closing.
        let mut busy = case();
        while busy.records.len() < MAX_RECORDS {
            step(&mut busy, Party::Regulator, Transition::Answer, T0).unwrap();
        }
        assert!(step(&mut busy, Party::BrandOwner, Transition::Answer, T0).is_err());
        step(
            &mut busy,
            Party::BrandOwner,
            Transition::Close(RootCause::ProcessError),
            T0,
        )
        .unwrap();
        assert_eq!(
            parse_text("  answered: a scanner fault \n").as_deref(),
            Ok("answered: a scanner fault")
        );
        for bad in ["", "   ", "bell\u{7}", &"x".repeat(MAX_TEXT + 1)] {
            assert_eq!(parse_text(bad), Err(CaseError::Text), "{bad}");
        }
        assert_eq!(Timers::new(2, 1, 3), Err(CaseError::Timers));
        assert_eq!(Timers::new(0, 1, 3), Err(CaseError::Timers));
        assert!(Timers::new(1, 2, 3).is_ok());
    }
}
