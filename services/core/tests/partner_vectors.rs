//! The partner-signature test vector of docs/EPCIS.md ("Partner signatures"), recomputed with
//! the public core API. Every literal below is quoted verbatim in docs/EPCIS.md, and
//! [`doc_quotes_every_vector`] fails if the document stops quoting one, so the guide and the
//! code cannot drift apart.

use rxledger_core::envelope::{self, Attestation, Body};
use rxledger_core::epcis::{self, attestation};
use rxledger_core::keys::{PublicKey, SigningKey};
use serde_json::Value;

/// The device key of docs/PROTOCOL.md §16.1, enrolled as `acme-erp`.
const DEVICE_SECRET: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const DEVICE_PUBLIC: &str = "0284bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0";
const KEYID: &str = "acme-erp";
/// The exact body: no trailing newline.
const DOCUMENT: &str = r#"{"@context":["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],"type":"EPCISDocument","schemaVersion":"2.0","creationDate":"2026-01-15T09:30:00.000Z","epcisBody":{"eventList":[{"type":"ObjectEvent","eventTime":"2026-01-15T09:29:30.000Z","eventTimeZoneOffset":"+01:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001","urn:epc:id:sgtin:0614141.107346.1002"],"action":"ADD","bizStep":"commissioning","disposition":"active","readPoint":{"id":"urn:epc:id:sgln:0614141.00000.0"},"bizLocation":{"id":"urn:epc:id:sgln:0614141.00000.0"},"ilmd":{"cbvmda:lotNumber":"L2026A","cbvmda:itemExpirationDate":"2028-12-31"}}]}}"#;
const DOCUMENT_LEN: usize = 627;
const DOCUMENT_SHA256: &str = "fe6570d183a7c9ce073b759b39e9edd3823632203343af477412985c37076c25";
const SIG: &str = "4c3b995efb6a11a0aa269a64ba6da6e8978effcb10a580a95d80e522a51a268457c27943fd658dcee7973df804df92e8af628170d06986171dbb5cbd2a70ebd4";
const HEADER: &str = "keyid=acme-erp, sig=4c3b995efb6a11a0aa269a64ba6da6e8978effcb10a580a95d80e522a51a268457c27943fd658dcee7973df804df92e8af628170d06986171dbb5cbd2a70ebd4";
const ATTESTATION: &str = r#"{"keyid":"acme-erp","sig":"4c3b995efb6a11a0aa269a64ba6da6e8978effcb10a580a95d80e522a51a268457c27943fd658dcee7973df804df92e8af628170d06986171dbb5cbd2a70ebd4","sha256":"fe6570d183a7c9ce073b759b39e9edd3823632203343af477412985c37076c25","mediaType":"application/ld+json"}"#;
const EVENT_ID: &str =
    "ni:///sha-256;775694c0cef27a267534e3ac0e9a44f75495ecc2c56b382bd73cab7ec08af592?ver=CBV2.0";

fn key() -> SigningKey {
    SigningKey::from_hex(DEVICE_SECRET).unwrap()
}

#[test]
fn the_signature_is_over_the_exact_bytes() {
    assert_eq!(key().public_hex(), DEVICE_PUBLIC);
    let bytes = DOCUMENT.as_bytes();
    assert_eq!(bytes.len(), DOCUMENT_LEN);
    assert_eq!(hex::encode(attestation::digest(bytes)), DOCUMENT_SHA256);
    let sig = attestation::sign_document(&key(), bytes);
    assert_eq!(hex::encode(sig), SIG);
    assert_eq!(attestation::header_value(KEYID, &sig), HEADER);
    let parsed = attestation::parse_header(HEADER.as_bytes()).unwrap();
    assert_eq!((parsed.keyid.as_str(), parsed.sig), (KEYID, sig));
    // Any verifier: ECDSA secp256k1 over SHA-256 of the bytes, with the enrolled public key.
    let public = PublicKey::from_sec1_hex(DEVICE_PUBLIC).unwrap();
    public.verify(bytes, &sig).unwrap();
}

#[test]
fn the_entry_carries_the_attestation_and_the_event_is_in_the_document() {
    let bytes = DOCUMENT.as_bytes();
    let sig = attestation::sign_document(&key(), bytes);
    let a = Attestation::new(
        KEYID,
        &sig,
        &attestation::digest(bytes),
        attestation::DocumentMedia::JsonLd,
    );
    assert_eq!(serde_json::to_string(&a).unwrap(), ATTESTATION);
    let events = epcis::json_document_events(serde_json::from_str(DOCUMENT).unwrap()).unwrap();
    assert_eq!(epcis::event_hash_id(&events[0]).unwrap(), EVENT_ID);
    let public = PublicKey::from_sec1_hex(DEVICE_PUBLIC).unwrap();
    let hash = epcis::hash_of_id(EVENT_ID).unwrap();
    assert_eq!(attestation::verify_event(bytes, &a, &public, &hash), Ok(0));

    // As the log seals it: the attestation after the events, in the log-signed body.
    let log = SigningKey::generate();
    let body = Body {
        v: 1,
        device_id: "org:acme".into(),
        seq: 0,
        sent_at: "2026-01-15T09:30:01.000Z".into(),
        events,
    };
    let sealed = envelope::seal_attested(&log, &body, &a);
    let wire: Value = serde_json::from_slice(&sealed).unwrap();
    let payload = wire["payload"].as_str().unwrap();
    assert!(
        payload.ends_with(&format!(r#","attestation":{ATTESTATION}}}"#)),
        "{payload}"
    );
    assert_eq!(envelope::read_attested(&sealed).unwrap(), (body, Some(a)));
}

#[test]
fn doc_quotes_every_vector() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/EPCIS.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let len = format!("{DOCUMENT_LEN} bytes");
    for quoted in [
        DEVICE_SECRET,
        DEVICE_PUBLIC,
        DOCUMENT,
        &len,
        DOCUMENT_SHA256,
        SIG,
        HEADER,
        ATTESTATION,
        EVENT_ID,
    ] {
        assert!(
            doc.contains(quoted),
            "docs/EPCIS.md does not quote {quoted:?}"
        );
    }
}
