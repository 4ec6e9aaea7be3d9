//! EPCIS 2.0 JSON-LD documents of logged events: what the REST query answers
//! (`EPCISQueryDocument`) and what an export downloads (`EPCISDocument`).
//!
//! Each event is shown exactly as it was logged, plus the two fields the repository owns:
//! `recordTime` (when the log received its entry) and, when the sender gave none, `eventID`
//! (its CBV 2.0 hash ID). Neither is part of the CBV hash, so an exported event captured again
//! is recognised as the same event. Who signed each entry is not written into the events
//! (that would change their hash); it travels beside them in the document's
//! `rxl:provenance` list, one item per event, in the same order: `signedBy` is `device`,
//! `log-key` or `partner-key` (then with the partner's `attestation`).

use rxledger_store::documents::LoggedJson;
use serde_json::{Map, Value, json};

/// The EPCIS 2.0 JSON-LD context.
pub const EPCIS_CONTEXT: &str = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld";
/// The namespace of rxledger's document-level extension (`rxl:provenance`).
pub const RXL_NAMESPACE: &str = "https://rxledger.org/ns/epcis#";

/// How a logged entry was signed, as provenance shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignedBy {
    /// A scanner's envelope, signed by its enrolled device key.
    Device,
    /// The API acting for an organization (`org:<id>`): signed by the log key.
    LogKey,
    /// The API acting for an organization whose trading partner signed the captured document
    /// with an enrolled device key (`RxLedger-Signature`): the entry is signed by the log key
    /// and carries the partner's signature over the document (its `attestation`).
    PartnerKey,
}

impl SignedBy {
    /// How the entry of `signer`, carrying `attestation` or not, was signed.
    pub fn of(
        signer: &str,
        attestation: Option<&rxledger_core::envelope::Attestation>,
    ) -> SignedBy {
        match (signer.starts_with("org:"), attestation) {
            (true, Some(_)) => SignedBy::PartnerKey,
            (true, None) => SignedBy::LogKey,
            // The core refuses an attestation on any other entry.
            (false, _) => SignedBy::Device,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignedBy::Device => "device",
            SignedBy::LogKey => "log-key",
            SignedBy::PartnerKey => "partner-key",
        }
    }
}

/// An attestation as provenance shows it: the four fields exactly as the entry holds them.
pub fn attestation_json(a: &rxledger_core::envelope::Attestation) -> Value {
    json!({
        "keyid": a.keyid,
        "sig": a.sig,
        "sha256": a.sha256,
        "mediaType": a.media_type,
    })
}

/// The event as a document shows it: as logged, with `recordTime` and an `eventID`.
pub fn shown_event(e: &LoggedJson) -> Value {
    let mut out = match &e.json {
        Value::Object(o) => o.clone(),
        other => {
            let mut m = Map::new();
            m.insert("value".into(), other.clone());
            m
        }
    };
    if !out.contains_key("eventID") {
        out.insert(
            "eventID".into(),
            Value::String(rxledger_core::epcis::id_of_hash(&e.hash)),
        );
    }
    out.insert(
        "recordTime".into(),
        Value::String(rxledger_core::epcis::format_time(e.received_ms)),
    );
    Value::Object(out)
}

/// Where each event is in the log and how its entry was signed.
fn provenance(events: &[LoggedJson]) -> Value {
    events
        .iter()
        .map(|e| {
            let mut item = json!({
                "eventHashID": rxledger_core::epcis::id_of_hash(&e.hash),
                "ledgerEntry": e.entry,
                "position": e.position,
                "signer": e.signer,
                "signedBy": SignedBy::of(&e.signer, e.attestation.as_ref()).as_str(),
            });
            if let (Some(a), Some(o)) = (&e.attestation, item.as_object_mut()) {
                o.insert("attestation".into(), attestation_json(a));
            }
            item
        })
        .collect()
}

fn context() -> Value {
    json!([EPCIS_CONTEXT, { "rxl": RXL_NAMESPACE }])
}

/// An `EPCISDocument` of these events, created at `now_ms`.
pub fn epcis_document(events: &[LoggedJson], now_ms: i64) -> Value {
    json!({
        "@context": context(),
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": rxledger_core::epcis::format_time(now_ms),
        "epcisBody": {
            "eventList": events.iter().map(shown_event).collect::<Vec<_>>(),
        },
        "rxl:provenance": provenance(events),
    })
}

/// An `EPCISQueryDocument` answering the simple event query with these events.
pub fn query_document(events: &[LoggedJson], now_ms: i64) -> Value {
    json!({
        "@context": context(),
        "type": "EPCISQueryDocument",
        "schemaVersion": "2.0",
        "creationDate": rxledger_core::epcis::format_time(now_ms),
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {
                    "eventList": events.iter().map(shown_event).collect::<Vec<_>>(),
                },
            },
        },
        "rxl:provenance": provenance(events),
    })
}
