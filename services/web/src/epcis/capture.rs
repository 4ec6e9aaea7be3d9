//! Capturing EPCIS events through the same pipeline as scanners and state changes.
//!
//! A capture is judged event by event with the ingest's own code: `core::index::index_event`
//! (parse, time sanity, CBV 2.0 hash, the rejection codes of `core::codes::RejectCode`), then
//! the rules that need the ledger (`store::rules`, what the MQTT sequencer runs). An event
//! whose hash is already logged is *recognised*, not appended again: a document sent twice
//! appends once.
//!
//! What is appended follows `GS1-Capture-Error-Behaviour`:
//! - `rollback` (the default, as in EPCIS 1.2): any invalid event and nothing is appended;
//! - `proceed`: every valid event is appended, the invalid ones are reported.
//!
//! The accepted events become entries of at most 100 events (and 64 KiB, what an MQTT
//! envelope may be) signed by the log key for the caller's organization (`org:<id>`), exactly
//! like an API state change, and all of a document's entries are appended in one transaction
//! (`Ledger::append_checked_batch`). Its precondition judges the events again against the
//! committed state inside that transaction, so a serial commissioned meanwhile through MQTT
//! or another capture cannot slip in twice: if anything changed, nothing is appended and the
//! capture is judged afresh.
//!
//! A partner-signed capture ([`Signed`]: the document came with an `RxLedger-Signature` that
//! the route has checked) is judged and appended the same way; each of its entries carries
//! the partner's [`envelope::Attestation`] inside its log-signed body, and the document's
//! exact bytes are kept (`rxledger_store::PartnerDocuments`) before the first entry that
//! names them is appended, so no entry ever attests a document the node does not hold.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use rxledger_core::codes::RejectCode;
use rxledger_core::envelope;
use rxledger_core::epcis::{self, Event};
use rxledger_core::index::{self, IndexedEvent};
use rxledger_core::pack::{RuleCode, RuleViolation};
use rxledger_graphql::Services;
use rxledger_store::ledger::EntryKind;
use rxledger_store::rules::{self, Submitter};
use rxledger_store::{Admission, NewEntry, documents};
use serde_json::Value;

use super::problem::EpcisProblem;

/// How far in the future an event time may be, as for API state changes.
const MAX_SKEW_MS: i64 = 60_000;
/// Largest event, as JSON text: one event always fits one entry (an MQTT envelope's 64 KiB).
pub const MAX_EVENT_BYTES: usize = 40 * 1024;
/// Largest entry a capture writes: what an MQTT envelope may be, and what a tlog-tiles
/// entry bundle can frame.
const MAX_ENTRY_BYTES: usize = 64 * 1024 - 1;
/// Times a capture is judged afresh because the ledger changed under it.
const ATTEMPTS: usize = 5;

/// `GS1-Capture-Error-Behaviour`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    Rollback,
    Proceed,
}

impl Behaviour {
    pub fn parse(v: Option<&str>) -> Result<Behaviour, EpcisProblem> {
        match v.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("rollback") => Ok(Behaviour::Rollback),
            Some("proceed") => Ok(Behaviour::Proceed),
            Some(other) => Err(EpcisProblem::validation(
                "BAD_CAPTURE_ERROR_BEHAVIOUR",
                format!("GS1-Capture-Error-Behaviour {other:?}: rollback or proceed"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Rollback => "rollback",
            Behaviour::Proceed => "proceed",
        }
    }
}

/// Why one event of a capture was not appended.
#[derive(Clone, Debug, PartialEq)]
pub struct EventError {
    /// Its position in the document's event list.
    pub index: usize,
    /// Its CBV 2.0 hash ID, when it could be computed.
    pub event_id: Option<String>,
    pub code: String,
    pub detail: String,
}

/// An event found in the log already, or appended now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub index: usize,
    pub hash: [u8; 32],
    pub entry: u64,
}

/// What a capture did: exactly which events were appended, and where.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub appended: Vec<Placed>,
    pub recognised: Vec<Placed>,
    pub errors: Vec<EventError>,
    /// The checkpoint that includes the appended entries.
    pub checkpoint_size: Option<u64>,
    /// The partner's signature, for a signed capture: every appended entry carries it.
    pub attestation: Option<envelope::Attestation>,
    /// The signed document is kept (`GET /epcis/capture/documents/{sha256}`): it is once an
    /// entry of this capture is about to attest it.
    pub document_kept: bool,
}

/// A document whose partner signature the route has verified: the attestation every entry
/// of the capture carries, and the exact bytes it attests.
pub struct Signed {
    pub attestation: envelope::Attestation,
    pub org: String,
    pub document: Vec<u8>,
}

impl Signed {
    /// Keeps the document (once per organization and digest).
    async fn keep(&self, s: &Services) -> Result<(), EpcisProblem> {
        let a = &self.attestation;
        rxledger_store::PartnerDocuments::new(s.ledger.database().clone())
            .keep(
                rxledger_store::NewDocument {
                    org: &self.org,
                    keyid: &a.keyid,
                    sig: &a.sig,
                    sha256: &a.sha256,
                    media_type: &a.media_type,
                    data: &self.document,
                },
                rxledger_store::now_ms(),
            )
            .await
            .map(|_| ())
            .map_err(EpcisProblem::internal)
    }
}

/// One event that passed the checks that need no ledger.
struct Candidate {
    index: usize,
    json: Value,
    row: IndexedEvent,
    event: Event,
}

/// Captures `events` for `org`, signed by the partner when `signed` is given. Errors are per
/// event (in the outcome); the `Err` is an internal failure, after which nothing of this
/// capture is in the log.
pub async fn capture(
    s: &Services,
    org: &str,
    events: Vec<Value>,
    behaviour: Behaviour,
    signed: Option<&Signed>,
) -> Result<Outcome, EpcisProblem> {
    let now = rxledger_store::now_ms();
    let (candidates, errors) = screen(events, org, now);
    let mut kept = false;
    for _ in 0..ATTEMPTS {
        let mut outcome = Outcome {
            errors: errors.clone(),
            attestation: signed.map(|d| d.attestation.clone()),
            document_kept: kept,
            ..Outcome::default()
        };
        let judged = judge(s, org, &candidates)
            .await
            .map_err(EpcisProblem::internal)?;
        outcome.recognised = judged.recognised;
        outcome.errors.extend(judged.errors);
        outcome.errors.sort_by_key(|e| e.index);
        if judged.accepted.is_empty()
            || (behaviour == Behaviour::Rollback && !outcome.errors.is_empty())
        {
            return Ok(outcome);
        }
        let attestation = signed.map(|d| &d.attestation);
        if let (Some(d), false) = (signed, kept) {
            // Before the append: the bytes are durable before any entry attests them.
            d.keep(s).await?;
            kept = true;
            outcome.document_kept = true;
        }
        if let Some(appended) =
            append(s, org, &judged.accepted, &candidates, now, attestation).await?
        {
            outcome.checkpoint_size = Some(appended.1);
            outcome.appended = appended.0;
            return Ok(outcome);
        }
        tracing::debug!("the ledger changed under a capture; judging it again");
    }
    Err(EpcisProblem::internal(
        "a capture was refused repeatedly because the ledger kept changing under it",
    ))
}

/// Parses, validates and hashes each event (no ledger needed); duplicates inside the
/// document are refused as MQTT refuses them inside an envelope.
fn screen(events: Vec<Value>, org: &str, now: i64) -> (Vec<Candidate>, Vec<EventError>) {
    let mut candidates = Vec::with_capacity(events.len());
    let mut errors = Vec::new();
    let mut seen: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, json) in events.into_iter().enumerate() {
        let size = serde_json::to_vec(&json).map(|v| v.len()).unwrap_or(0);
        if size > MAX_EVENT_BYTES {
            errors.push(EventError {
                index: i,
                event_id: None,
                code: RejectCode::Oversized.as_str().into(),
                detail: format!(
                    "eventList[{i}] is {size} bytes as JSON; an event may have {MAX_EVENT_BYTES}"
                ),
            });
            continue;
        }
        match index::index_event(&json, org, now, MAX_SKEW_MS) {
            Err(e) => errors.push(EventError {
                index: i,
                event_id: epcis::event_hash_id(&json).ok(),
                code: RejectCode::from(&e).as_str().into(),
                detail: format!("eventList[{i}]: {e}"),
            }),
            Ok((row, event)) => {
                if let Some(&j) = seen.get(&row.hash) {
                    errors.push(EventError {
                        index: i,
                        event_id: Some(epcis::id_of_hash(&row.hash)),
                        code: RejectCode::DuplicateEvent.as_str().into(),
                        detail: format!("eventList[{i}] is the same event as eventList[{j}]"),
                    });
                    continue;
                }
                seen.insert(row.hash, i);
                candidates.push(Candidate {
                    index: i,
                    json,
                    row,
                    event,
                });
            }
        }
    }
    (candidates, errors)
}

/// The capture's events judged against the ledger as it is now.
struct Judged {
    /// Positions in the candidate list, in document order.
    accepted: Vec<usize>,
    recognised: Vec<Placed>,
    errors: Vec<EventError>,
}

async fn judge(
    s: &Services,
    org: &str,
    candidates: &[Candidate],
) -> Result<Judged, rxledger_store::StoreError> {
    let db = s.ledger.database();
    let hashes: Vec<[u8; 32]> = candidates.iter().map(|c| c.row.hash).collect();
    let logged = documents::find(db, &hashes).await?;
    let fresh: Vec<usize> = (0..candidates.len())
        .filter(|&i| !logged.contains_key(&candidates[i].row.hash))
        .collect();
    let keys = rules::commission_keys(fresh.iter().map(|&i| &candidates[i].row));
    let lookups = rules::look_up(&s.packs, &keys).await?;
    let signer = format!("org:{org}");
    let who = Submitter {
        org,
        signer: &signer,
        seq: None,
    };
    let mut judged = Judged {
        accepted: Vec::new(),
        recognised: Vec::new(),
        errors: Vec::new(),
    };
    for c in candidates {
        if let Some(&(entry, _)) = logged.get(&c.row.hash) {
            judged.recognised.push(Placed {
                index: c.index,
                hash: c.row.hash,
                entry: entry as u64,
            });
        }
    }
    let mut earlier: HashSet<String> = HashSet::new();
    let none = HashSet::new();
    for i in fresh {
        let c = &candidates[i];
        match rules::judge_event(&c.event, who, &lookups, (&earlier, &none)) {
            Ok(()) => {
                earlier.extend(c.row.commissions.iter().map(|x| x.sgtin.clone()));
                judged.accepted.push(i);
            }
            Err(v) => judged.errors.push(EventError {
                index: c.index,
                event_id: Some(epcis::id_of_hash(&c.row.hash)),
                code: v.code.as_str().into(),
                detail: format!("eventList[{}]: {}", c.index, v.message),
            }),
        }
    }
    Ok(judged)
}

/// Appends the accepted events (positions in `candidates`), if the ledger still accepts
/// exactly those: `None` when it changed (nothing was appended). The events [`judge`]
/// refused stay refused for this attempt whatever the ledger says now.
async fn append(
    s: &Services,
    org: &str,
    accepted: &[usize],
    candidates: &[Candidate],
    now: i64,
    attestation: Option<&envelope::Attestation>,
) -> Result<Option<(Vec<Placed>, u64)>, EpcisProblem> {
    let members: Vec<&Candidate> = accepted.iter().map(|&i| &candidates[i]).collect();
    let chunks = entries(s, org, &members, now, attestation);
    let batch: Vec<NewEntry> = chunks.iter().map(|(e, _)| e.clone()).collect();
    let changed = AtomicBool::new(false);
    let check = {
        let changed = &changed;
        Box::pin(async move {
            let again = judge(s, org, candidates).await?;
            if again.accepted == accepted {
                Ok(Ok(()))
            } else {
                changed.store(true, Ordering::Relaxed);
                Ok(Err(RuleViolation::new_public(
                    RuleCode::SerialAlreadyCommissioned,
                    "the ledger changed while the capture was judged",
                )))
            }
        })
    };
    let done = s
        .ledger
        .append_checked_batch(&batch, check)
        .await
        .map_err(EpcisProblem::internal)?;
    if changed.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let mut placed = Vec::with_capacity(members.len());
    for (admission, (_, members)) in done.admissions.iter().zip(&chunks) {
        let Admission::Appended { index, .. } = admission else {
            // The precondition saw the state this batch lands on; anything else means the
            // batch as a whole was not appended (it is one transaction).
            tracing::warn!(
                ?admission,
                "a capture entry was not appended; judging again"
            );
            return Ok(None);
        };
        placed.extend(members.iter().map(|c| Placed {
            index: c.index,
            hash: c.row.hash,
            entry: *index,
        }));
    }
    Ok(Some((placed, done.head.size)))
}

/// The entries of a capture: envelopes of at most [`envelope::MAX_EVENTS`] events and
/// [`MAX_ENTRY_BYTES`], signed by the log key for `org:<org>`, each carrying the partner's
/// `attestation` when there is one.
fn entries<'c>(
    s: &Services,
    org: &str,
    accepted: &[&'c Candidate],
    now: i64,
    attestation: Option<&envelope::Attestation>,
) -> Vec<(NewEntry, Vec<&'c Candidate>)> {
    let mut out = Vec::new();
    let mut pending: Vec<&[&'c Candidate]> = accepted.chunks(envelope::MAX_EVENTS).collect();
    pending.reverse();
    while let Some(group) = pending.pop() {
        let entry = seal(s, org, group, now, attestation);
        if entry.data.len() > MAX_ENTRY_BYTES && group.len() > 1 {
            // Too large as one envelope: split it, keeping the document's order.
            let (a, b) = group.split_at(group.len() / 2);
            pending.push(b);
            pending.push(a);
            continue;
        }
        out.push((entry, group.to_vec()));
    }
    out
}

fn seal(
    s: &Services,
    org: &str,
    group: &[&Candidate],
    now: i64,
    attestation: Option<&envelope::Attestation>,
) -> NewEntry {
    let body = envelope::Body {
        v: envelope::VERSION,
        device_id: format!("org:{org}"),
        seq: 0,
        sent_at: epcis::format_time(now),
        events: group.iter().map(|c| c.json.clone()).collect(),
    };
    NewEntry {
        data: match attestation {
            Some(a) => envelope::seal_attested(s.ledger.key(), &body, a),
            None => envelope::seal(s.ledger.key(), &body),
        },
        kind: EntryKind::ApiStateChange,
        signer: format!("org:{org}"),
        seq: None,
        events: group.iter().map(|c| c.row.clone()).collect(),
    }
}
