//! Tracing requests (US DSCSA; the PDG Blueprint's fields): who owned and held a pack, and
//! the evidence bundle a regulator checks offline.
//!
//! # The request is a ledger entry
//!
//! A tracing request is not an EPCIS event (nothing happened to the pack), so it is not
//! written as one: an EPCIS event naming the pack would put the investigation in the pack's
//! public timeline. It is a [`TraceRecord`], sealed by the log key ([`seal_record`]) and
//! appended as an entry of its own kind. The index ignores it ([`is_record`]); the auditor
//! recognises it by the same test. It names the requester, what was asked, why, and the
//! parties asked, so a party can later prove what it was asked and when.
//!
//! # The answer
//!
//! [`owners`] walks a derived pack's history and its events: every owner (commissioning, then
//! the owning party of each shipping and receiving), the transaction events, and the
//! aggregation chain. The scope then cuts it ([`TraceScope`]).
//!
//! # The evidence bundle
//!
//! [`Bundle`] holds the entries an answer rests on, each with its RFC 9162 inclusion proof,
//! and the signed checkpoint they verify against. [`verify_bundle`] checks it with nothing
//! but the log's verifier key: `rxledger verify-bundle` runs it offline.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint, NoteVerifier};
use crate::epcis::{BizStep, Event, EventKind, SourceDestType};
use crate::gs1::EpcId;
use crate::keys::{LogVerifier, SigningKey};
use crate::merkle::{self, Hash};
use crate::pack::{HistoryItem, LoggedEvent, PackState, SiteDirectory, Via, normalise_party};
use crate::spelling::spelled;

/// The PDG Blueprint's response types.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceScope {
    /// Transaction information: the transaction events with their parties.
    TransactionInformation,
    /// Every owner the pack had.
    AllKnownOwners,
    /// The last owner only.
    LastKnownOwner,
}

spelled!(TraceScope {
    TransactionInformation => "TRANSACTION_INFORMATION",
    AllKnownOwners => "ALL_KNOWN_OWNERS",
    LastKnownOwner => "LAST_KNOWN_OWNER",
});

/// Why a tracing request is made (the PDG Blueprint's reasons).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceReason {
    Suspect,
    Illegitimate,
    Recall,
    Audit,
    Inspection,
}

spelled!(TraceReason {
    Suspect => "SUSPECT",
    Illegitimate => "ILLEGITIMATE",
    Recall => "RECALL",
    Audit => "AUDIT",
    Inspection => "INSPECTION",
});

/// Longest incident number (an FDA Form 3911 number, or a national one).
pub const MAX_INCIDENT: usize = 64;
/// Most parties one record names.
pub const MAX_PARTIES: usize = 10_000;

/// Why a request, a record or a bundle was refused.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    #[error(
        "an incident number is 1 to {MAX_INCIDENT} characters of letters, digits, '-', '_', '.' and '/'"
    )]
    Incident,
    #[error("not a trace record: {0}")]
    Record(String),
    #[error("the trace record's signature does not verify with the log key")]
    RecordSignature,
    #[error("not an evidence bundle: {0}")]
    Bundle(String),
    #[error("the bundle's checkpoint does not verify: {0}")]
    Checkpoint(String),
    #[error("entry {index}: {why}")]
    Entry { index: u64, why: String },
}

/// An identifier for people: a pack or case as its GS1 Digital Link, anything else by its
/// index key (`lgtin:<gtin>.<lot>`, `sgln:<gln>.<ext>`).
pub fn id_text(id: &EpcId) -> String {
    match id {
        EpcId::Sgtin(s) => s.to_digital_link(DIGITAL_LINK_BASE, None, None),
        EpcId::Sscc(s) => format!("{DIGITAL_LINK_BASE}/00/{s}"),
        other => crate::index::epc_key(other),
    }
}

const DIGITAL_LINK_BASE: &str = "https://id.gs1.org";

/// Checks an incident number: bounded, and safe in a URI and a file name.
pub fn parse_incident(s: &str) -> Result<String, TraceError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_INCIDENT
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(TraceError::Incident)
    }
}

/// A tracing request as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TraceRecord {
    /// Organisation id of the requester.
    pub requester: String,
    /// The pack or lot asked about, as a GS1 Digital Link.
    pub subject: String,
    pub scope: TraceScope,
    pub reason: TraceReason,
    pub incident: Option<String>,
    /// A fire drill: the answer is real, the request says it is a test.
    pub test: bool,
    /// The organisations whose records answer it (owners and custodians), sorted.
    pub parties: Vec<String>,
    /// When it was asked, RFC 3339 UTC.
    pub asked_at: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SealedRecord {
    trace_request: String,
    sig: String,
}

/// The entry bytes of a record: its JSON text and the log key's signature over it.
pub fn seal_record(key: &SigningKey, record: &TraceRecord) -> Vec<u8> {
    // Serialising strings, booleans and fieldless enums cannot fail.
    let text = serde_json::to_string(record).unwrap_or_default();
    let sig = hex::encode(key.sign(text.as_bytes()));
    serde_json::to_vec(&SealedRecord {
        trace_request: text,
        sig,
    })
    .unwrap_or_default()
}

/// Whether entry bytes are a desk record (not an envelope): a tracing request or a
/// transition of an alert case (`crate::case`). What the index and the auditor skip.
pub fn is_record(bytes: &[u8]) -> bool {
    is_trace_record(bytes) || crate::case::is_case_record(bytes)
}

/// Whether entry bytes are a sealed tracing request.
pub fn is_trace_record(bytes: &[u8]) -> bool {
    serde_json::from_slice::<SealedRecord>(bytes).is_ok()
}

/// Reads a record and checks the log key's signature.
pub fn open_record(bytes: &[u8], log: &LogVerifier) -> Result<TraceRecord, TraceError> {
    let sealed: SealedRecord =
        serde_json::from_slice(bytes).map_err(|e| TraceError::Record(e.to_string()))?;
    let sig = hex::decode(&sealed.sig).map_err(|e| TraceError::Record(e.to_string()))?;
    log.public_key()
        .verify(sealed.trace_request.as_bytes(), &sig)
        .map_err(|_| TraceError::RecordSignature)?;
    serde_json::from_str(&sealed.trace_request).map_err(|e| TraceError::Record(e.to_string()))
}

/// How a party came to own the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerStep {
    Commissioned,
    Shipped,
    Received,
}

spelled!(OwnerStep {
    Commissioned => "COMMISSIONED",
    Shipped => "SHIPPED",
    Received => "RECEIVED",
});

/// One owner of the pack, from the event that made it one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The organisation, as the directory resolves it, else the normalised party id.
    pub party: String,
    /// Where it held the pack (a GLN), when known.
    pub location: Option<String>,
    pub since_ms: i64,
    pub index: u64,
    pub step: OwnerStep,
}

/// A transaction event of the pack: shipping, receiving, dispensing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub index: u64,
    pub time_ms: i64,
    pub biz_step: BizStep,
    /// The submitting organisation.
    pub org: String,
    pub location: Option<String>,
    /// `(type, id)` of each business transaction (purchase order, despatch advice, invoice).
    pub documents: Vec<(String, String)>,
    /// The case or pallet it reached the pack through, if not directly.
    pub through: Option<EpcId>,
}

/// One packing or unpacking of the pack (or of a container it was in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packing {
    pub index: u64,
    pub time_ms: i64,
    /// The container.
    pub parent: EpcId,
    pub packed: bool,
}

/// What a trace finds for one pack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    pub owners: Vec<Owner>,
    pub transactions: Vec<Transaction>,
    pub packings: Vec<Packing>,
}

impl Trace {
    /// Every entry the trace rests on, sorted.
    pub fn entries(&self) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .owners
            .iter()
            .map(|o| o.index)
            .chain(self.transactions.iter().map(|t| t.index))
            .chain(self.packings.iter().map(|p| p.index))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every organisation named, sorted: the parties a request asks.
    pub fn parties(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .owners
            .iter()
            .map(|o| o.party.clone())
            .chain(self.transactions.iter().map(|t| t.org.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The part of the trace a scope asks for.
    pub fn scoped(mut self, scope: TraceScope) -> Trace {
        match scope {
            TraceScope::TransactionInformation => self,
            TraceScope::AllKnownOwners => {
                self.transactions.clear();
                self
            }
            TraceScope::LastKnownOwner => {
                self.transactions.clear();
                self.packings.clear();
                let last = self.owners.pop();
                self.owners = last.into_iter().collect();
                self
            }
        }
    }
}

/// The trace of a derived pack: `events` are those it was derived from.
pub fn owners<E: std::borrow::Borrow<LoggedEvent>>(
    state: &PackState,
    events: &[E],
    directory: &dyn SiteDirectory,
) -> Trace {
    let find = |index: u64| {
        events
            .iter()
            .map(std::borrow::Borrow::<LoggedEvent>::borrow)
            .find(|le| le.index == index)
    };
    let mut trace = Trace::default();
    trace.owners.extend(first_owner(state));
    for h in &state.history {
        let Some(le) = find(h.index) else { continue };
        let e = &le.event;
        if e.kind == EventKind::Aggregation {
            if let (Via::Direct, Some(parent)) = (&h.via, &e.parent) {
                trace.packings.push(Packing {
                    index: h.index,
                    time_ms: h.event_time_ms,
                    parent: parent.clone(),
                    packed: e.action != crate::epcis::Action::Delete,
                });
            }
            continue;
        }
        let Some(step) = h.biz_step.filter(|s| {
            matches!(
                s,
                BizStep::Shipping | BizStep::Receiving | BizStep::Dispensing
            )
        }) else {
            continue;
        };
        if matches!(h.via, Via::Class(_)) {
            continue;
        }
        trace.transactions.push(transaction(h, e, step));
        let Some(owner) = new_owner(h, e, step, directory) else {
            continue;
        };
        // A receipt by the party a shipment already named keeps one owner.
        if trace.owners.last().is_some_and(|o| o.party == owner.party) {
            continue;
        }
        trace.owners.push(owner);
    }
    trace
}

/// The pack's first owner: whoever commissioned it, where.
fn first_owner(state: &PackState) -> Option<Owner> {
    let c = state.commissioning.as_ref()?;
    Some(Owner {
        party: c.org.clone(),
        location: state
            .history
            .iter()
            .find(|h| h.index == c.index)
            .and_then(|h| h.location.clone()),
        since_ms: c.event_time_ms,
        index: c.index,
        step: OwnerStep::Commissioned,
    })
}

/// A shipping, receiving or dispensing event of the pack's history as a transaction.
fn transaction(h: &HistoryItem, e: &Event, step: BizStep) -> Transaction {
    Transaction {
        index: h.index,
        time_ms: h.event_time_ms,
        biz_step: step,
        org: h.org.clone(),
        location: h.location.clone(),
        documents: e
            .biz_transactions
            .iter()
            .map(|t| (t.kind.clone().unwrap_or_default(), t.id.clone()))
            .collect(),
        through: match &h.via {
            Via::Container(c) => Some(c.clone()),
            _ => None,
        },
    }
}

/// Who owns the pack after a shipping (the destination's owning party, when named) or a
/// receiving (that party, else the receiver); `None` for other steps.
fn new_owner(
    h: &HistoryItem,
    e: &Event,
    step: BizStep,
    directory: &dyn SiteDirectory,
) -> Option<Owner> {
    let resolve = |id: &str| {
        let id = normalise_party(id);
        directory.organization(&id).unwrap_or(id)
    };
    let owner_of_dest = e
        .destinations
        .iter()
        .find(|p| p.kind == SourceDestType::OwningParty)
        .map(|p| resolve(&p.id));
    let location = e
        .destinations
        .iter()
        .find(|p| p.kind == SourceDestType::Location)
        .map(|p| normalise_party(&p.id))
        .or_else(|| h.location.clone());
    let (party, step) = match step {
        BizStep::Shipping => (owner_of_dest?, OwnerStep::Shipped),
        BizStep::Receiving => (
            owner_of_dest.unwrap_or_else(|| h.org.clone()),
            OwnerStep::Received,
        ),
        _ => return None,
    };
    Some(Owner {
        party,
        location,
        since_ms: h.event_time_ms,
        index: h.index,
        step,
    })
}

/// The events of logged envelopes (`(index, bytes)`) that name any of `ids`, as they were
/// logged, in entry order: what an EPCIS document of a trace holds. Other events of the same
/// envelopes (another partner's packs shipped alongside) are left out.
pub fn events_naming(entries: &[(u64, Vec<u8>)], ids: &[EpcId]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for (_, bytes) in entries {
        let Ok(body) = crate::envelope::read_body(bytes) else {
            continue;
        };
        for json in body.events {
            let Ok(e) = crate::epcis::parse_event(&json) else {
                continue;
            };
            if crate::pack::named_ids(&e)
                .into_iter()
                .any(|id| ids.contains(id))
            {
                out.push(json);
            }
        }
    }
    out
}

/// An EPCIS 2.0 JSON-LD document of `events`, created at `created` (RFC 3339).
pub fn epcis_document(events: Vec<serde_json::Value>, created: &str) -> serde_json::Value {
    serde_json::json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created,
        "epcisBody": { "eventList": events },
    })
}

/// The evidence of a trace: entries, their inclusion proofs, and the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    /// The signed checkpoint note every proof verifies against.
    pub checkpoint: String,
    pub entries: Vec<BundleEntry>,
}

/// One entry of a [`Bundle`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleEntry {
    pub index: u64,
    /// The entry's exact bytes, base64.
    pub data: String,
    /// The inclusion proof at the checkpoint's size, hex hashes.
    pub proof: Vec<String>,
}

impl BundleEntry {
    pub fn new(index: u64, data: &[u8], proof: &[Hash]) -> Self {
        BundleEntry {
            index,
            data: B64.encode(data),
            proof: proof.iter().map(hex::encode).collect(),
        }
    }

    /// The entry's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, TraceError> {
        B64.decode(&self.data).map_err(|e| TraceError::Entry {
            index: self.index,
            why: format!("data is not base64: {e}"),
        })
    }
}

/// Most entries a bundle may hold (a 1,000-pack lot's history fits many times over).
pub const MAX_BUNDLE_ENTRIES: usize = 100_000;

/// Checks a bundle offline: the checkpoint is signed by the log, and every entry is in the
/// tree it commits to. Returns the checkpoint.
pub fn verify_bundle(
    bundle: &Bundle,
    log: &(impl NoteVerifier + ?Sized),
) -> Result<Checkpoint, TraceError> {
    if bundle.entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(TraceError::Bundle(format!(
            "more than {MAX_BUNDLE_ENTRIES} entries"
        )));
    }
    let cp = checkpoint::open_checkpoint(&bundle.checkpoint, log)
        .map_err(|e| TraceError::Checkpoint(e.to_string()))?;
    for e in &bundle.entries {
        let wrong = |why: String| TraceError::Entry {
            index: e.index,
            why,
        };
        let proof: Vec<Hash> = e
            .proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .map_err(|err| err.to_string())
                    .and_then(|b| merkle::hash_from_slice(&b).map_err(|err| err.to_string()))
            })
            .collect::<Result<_, _>>()
            .map_err(|why| wrong(format!("bad proof hash: {why}")))?;
        let leaf = merkle::leaf_hash(&e.bytes()?);
        merkle::verify_inclusion(&leaf, e.index, cp.size, &proof, &cp.root)
            .map_err(|err| wrong(format!("not in the checkpoint's tree: {err}")))?;
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::fixtures::*;
    use crate::pack::{DeriveOptions, derive_with};

    fn record() -> TraceRecord {
        TraceRecord {
            requester: "agency".into(),
            subject: pack_uri("A"),
            scope: TraceScope::AllKnownOwners,
            reason: TraceReason::Suspect,
            incident: Some("FDA-3911/2026-17".into()),
            test: false,
            parties: vec!["mah".into(), "pharmacy-a".into()],
            asked_at: "2026-12-06T22:00:00.000Z".into(),
        }
    }

    #[test]
    fn a_record_is_sealed_by_the_log_key_and_tamper_evident() {
        let key = SigningKey::generate();
        let log = LogVerifier::new("test/log", key.public_key()).unwrap();
        let bytes = seal_record(&key, &record());
        assert!(is_record(&bytes));
        assert_eq!(open_record(&bytes, &log), Ok(record()));
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("SUSPECT", "AUDIT");
        assert_eq!(
            open_record(tampered.as_bytes(), &log),
            Err(TraceError::RecordSignature)
        );
        assert!(!is_record(br#"{"payload":"{}","sig":"00"}"#));
        assert_eq!(
            parse_incident("FDA-3911/2026-17").as_deref(),
            Ok("FDA-3911/2026-17")
        );
        for bad in ["", "a b", "<script>", &"9".repeat(65)] {
            assert_eq!(parse_incident(bad), Err(TraceError::Incident), "{bad}");
        }
    }

    #[test]
    fn owners_transactions_and_packing_by_scope() {
        let dir = directory();
        let events = vec![
            logged(1, &commission(&["A"], at(0), "L1", "2030-12-31"), "mah"),
            logged(
                2,
                &aggregate("ADD", &sscc_uri(1), &[pack_uri("A")], at(5)),
                "mah",
            ),
            logged(3, &ship(&[sscc_uri(1)], at(60), 1, 2), "mah"),
            logged(4, &receive(&[sscc_uri(1)], at(120), 2), "wholesaler"),
            logged(5, &ship(&[pack_uri("A")], at(180), 2, 3), "wholesaler"),
            logged(6, &receive(&[pack_uri("A")], at(240), 3), "pharmacy-a"),
        ];
        let opts = DeriveOptions {
            directory: &dir,
            ..DeriveOptions::default()
        };
        let state = derive_with(&sgtin("A"), &events, &opts);
        let t = owners(&state, &events, &dir);
        let chain: Vec<(&str, OwnerStep, u64)> = t
            .owners
            .iter()
            .map(|o| (o.party.as_str(), o.step, o.index))
            .collect();
        assert_eq!(
            chain,
            [
                ("mah", OwnerStep::Commissioned, 1),
                ("wholesaler", OwnerStep::Shipped, 3),
                ("pharmacy-a", OwnerStep::Shipped, 5),
            ]
        );
        assert_eq!(t.transactions.len(), 4);
        // The first two moves reached the pack in its case.
        assert!(t.transactions[0].through.is_some() && t.transactions[2].through.is_none());
        assert_eq!(t.packings.len(), 1);
        assert_eq!(t.entries(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(t.parties(), ["mah", "pharmacy-a", "wholesaler"]);
        let last = t.clone().scoped(TraceScope::LastKnownOwner);
        assert_eq!(last.owners.len(), 1);
        assert_eq!(last.owners[0].party, "pharmacy-a");
        assert!(last.transactions.is_empty() && last.packings.is_empty());
        let all = t.scoped(TraceScope::AllKnownOwners);
        assert_eq!((all.owners.len(), all.transactions.len()), (3, 0));
    }

    /// A tree of whole subtrees computed level by level, for the proofs.
    struct Tree(Vec<Vec<Hash>>);

    impl Tree {
        fn of(leaves: &[Hash]) -> Tree {
            let mut levels = vec![leaves.to_vec()];
            while levels.last().unwrap().len() > 1 {
                let up = levels
                    .last()
                    .unwrap()
                    .chunks(2)
                    .filter(|c| c.len() == 2)
                    .map(|c| merkle::node_hash(&c[0], &c[1]))
                    .collect::<Vec<_>>();
                if up.is_empty() {
                    break;
                }
                levels.push(up);
            }
            Tree(levels)
        }
    }

    impl merkle::NodeSource for Tree {
        fn node(&self, id: merkle::NodeId) -> Option<Hash> {
            self.0
                .get(id.level as usize)?
                .get(id.index as usize)
                .copied()
        }
    }

    #[test]
    fn a_bundle_verifies_offline_and_a_tampered_one_does_not() {
        let key = SigningKey::generate();
        let log = LogVerifier::new("test/log", key.public_key()).unwrap();
        let leaves: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10]).collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| merkle::leaf_hash(l)).collect();
        let src = Tree::of(&hashes);
        let root = merkle::root(5, &src).unwrap();
        let note = checkpoint::sign_checkpoint(
            &Checkpoint {
                origin: "test/log".into(),
                size: 5,
                root,
            },
            &key,
        )
        .unwrap();
        let entry = |i: u64| {
            let proof = merkle::inclusion_proof(i, 5, &src).unwrap();
            BundleEntry::new(i, &leaves[i as usize], &proof)
        };
        let bundle = Bundle {
            checkpoint: note,
            entries: vec![entry(1), entry(4)],
        };
        assert_eq!(verify_bundle(&bundle, &log).unwrap().size, 5);
        let mut tampered = bundle.clone();
        tampered.entries[1].data = B64.encode(b"forged bytes");
        assert!(matches!(
            verify_bundle(&tampered, &log),
            Err(TraceError::Entry { index: 4, .. })
        ));
        let other = LogVerifier::new("test/log", SigningKey::generate().public_key()).unwrap();
        assert!(matches!(
            verify_bundle(&bundle, &other),
            Err(TraceError::Checkpoint(_))
        ));
    }
}
