//! Partner signatures on EPCIS capture, end to end: a real server, real HTTP. A trading partner
//! signs the exact body with an enrolled device's k256 key and sends the signature detached
//! (`RxLedger-Signature`); the entries carry its attestation, provenance says `partner-key`,
//! the document's bytes are served to whoever may see the events, and anyone holding them
//! checks each event with the core's verifier. Every bad signature is refused with nothing
//! appended, and a device may never smuggle an attestation in over MQTT.

mod common;

use common::{Answer, TestApp, call, get, now_rfc3339, partner, spawn_app};
use firmware_sim::events::{self as ev, Where};
use rxledger_core::envelope::{self, Attestation, Body};
use rxledger_core::epcis::attestation::{self, AttestationError};
use rxledger_core::keys::SigningKey;
use serde_json::{Value, json};

const GTIN_PREFIX: &str = "0614141";
const ACME_GLN: &str = "0614141000005";
const ACME_SGLN: &str = "urn:epc:id:sgln:0614141.00000.0";
const RIVAL_GLN: &str = "0614141000043";
const NCA_GLN: &str = "0614141000050";

/// `POST /epcis/capture` of `body` as `content_type`, with these signature headers.
async fn capture(
    app: &TestApp,
    token: &str,
    content_type: &str,
    body: &[u8],
    signatures: &[&str],
) -> Answer {
    let mut extra = vec![("Content-Type", content_type)];
    for s in signatures {
        extra.push(("RxLedger-Signature", s));
    }
    call(app, "POST", "/epcis/capture", Some(token), &extra, body).await
}

/// The header a partner sends for `body`, signed by `key` as device `keyid`.
fn signature(key: &SigningKey, keyid: &str, body: &[u8]) -> String {
    attestation::header_value(keyid, &attestation::sign_document(key, body))
}

/// A device enrolled to `org` at `gln`: the key its ERP signs documents with.
async fn device(app: &TestApp, id: &str, org: &str, gln: &str) -> SigningKey {
    let key = SigningKey::generate();
    app.app()
        .registry
        .enroll_device(id, &key.public_key(), org, gln)
        .await
        .unwrap();
    key
}

fn sgtin(serial: &str) -> String {
    format!("urn:epc:id:sgtin:{GTIN_PREFIX}.107346.{serial}")
}

fn commissioning(serial: &str) -> Value {
    ev::commissioning(
        &now_rfc3339(),
        &[sgtin(serial)],
        Where::Site(ACME_SGLN),
        "L1",
        "2031-06-30",
    )
}

fn document(events: Vec<Value>) -> Vec<u8> {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": now_rfc3339(),
        "epcisBody": { "eventList": events },
    })
    .to_string()
    .into_bytes()
}

/// The events of `serials` as acme sees them: the query document.
async fn events_of(app: &TestApp, token: &str, serial: &str) -> Value {
    let r = get(
        app,
        &format!("/epcis/events?MATCH_epc={}", sgtin(serial)),
        Some(token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// The provenance items of a query document.
fn provenance(doc: &Value) -> Vec<Value> {
    doc["rxl:provenance"].as_array().unwrap().clone()
}

/// Every provenance item of `doc` is `partner-key` with this attestation, and the document at
/// the attested digest, fetched as `token`, verifies each event with the device's key.
async fn check_signed(
    app: &TestApp,
    token: &str,
    doc: &Value,
    sent: &[u8],
    key: &SigningKey,
    media_type: &str,
) {
    let items = provenance(doc);
    assert!(!items.is_empty(), "{doc}");
    let sha = hex::encode(attestation::digest(sent));
    let fetched = get(app, &format!("/epcis/capture/documents/{sha}"), Some(token)).await;
    assert_eq!(
        fetched.status,
        200,
        "{}",
        String::from_utf8_lossy(&fetched.body)
    );
    assert_eq!(fetched.body, sent, "the exact bytes signed");
    assert_eq!(fetched.header("content-type"), Some(media_type));
    assert_eq!(fetched.header("etag"), Some(format!("\"{sha}\"").as_str()));
    for item in &items {
        assert_eq!(item["signedBy"], "partner-key", "{item}");
        assert_eq!(item["signer"], "org:acme", "{item}");
        let a: Attestation = serde_json::from_value(item["attestation"].clone()).unwrap();
        assert_eq!(a.keyid, "acme-erp");
        assert_eq!(a.sha256, sha);
        assert_eq!(a.media_type, media_type);
        assert_eq!(
            fetched.header("rxledger-signature"),
            Some(format!("keyid=acme-erp, sig={}", a.sig).as_str())
        );
        let hash = rxledger_core::epcis::hash_of_id(item["eventHashID"].as_str().unwrap()).unwrap();
        let at = attestation::verify_event(&fetched.body, &a, &key.public_key(), &hash)
            .unwrap_or_else(|e| panic!("{e}: {item}"));
        // And the log's own bytes hold exactly that attestation, under the log key.
        let index = item["ledgerEntry"].as_u64().unwrap();
        let entry = app.app().ledger.entries(index, 1).await.unwrap().remove(0);
        let (body, logged) = envelope::read_attested(&entry.data).unwrap();
        assert_eq!(logged.as_ref(), Some(&a));
        assert_eq!(body.device_id, "org:acme");
        let position = item["position"].as_u64().unwrap() as usize;
        assert_eq!(
            rxledger_core::epcis::event_hash(&body.events[position]).unwrap(),
            hash
        );
        // Every event of these documents was appended, in document order, in one entry.
        assert_eq!(at, position, "{item}");
    }
}

#[tokio::test]
async fn signed_captures_carry_the_partners_signature_and_its_document_verifies() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let rival = partner(&app, "rival", "WHOLESALER", None, RIVAL_GLN).await;
    let nca = partner(&app, "nca", "REGULATOR", None, NCA_GLN).await;
    let key = device(&app, "acme-erp", "acme", ACME_GLN).await;

    // EPCIS 2.0 JSON-LD, signed.
    let doc = document(vec![commissioning("1"), commissioning("2")]);
    let before = app.app().ledger.head().size;
    let r = capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&key, "acme-erp", &doc)],
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let job = r.json();
    let sha = hex::encode(attestation::digest(&doc));
    assert_eq!(job["success"], true, "{job}");
    assert_eq!(job["appendedCount"], 2, "{job}");
    assert_eq!(job["signedBy"], "partner-key", "{job}");
    assert_eq!(job["attestation"]["keyid"], "acme-erp", "{job}");
    assert_eq!(job["attestation"]["sha256"], sha.as_str(), "{job}");
    assert_eq!(
        job["document"],
        format!("/epcis/capture/documents/{sha}"),
        "{job}"
    );
    assert!(app.app().ledger.head().size > before);
    let shown = events_of(&app, &acme, "1").await;
    check_signed(&app, &acme, &shown, &doc, &key, "application/ld+json").await;
    let both = get(&app, "/epcis/events", Some(&acme)).await.json();
    assert_eq!(provenance(&both).len(), 2);
    check_signed(&app, &acme, &both, &doc, &key, "application/ld+json").await;

    // The verifier is not a formality: other bytes, another key or another event fail.
    let fetched = get(
        &app,
        &format!("/epcis/capture/documents/{sha}"),
        Some(&acme),
    )
    .await;
    let a: Attestation =
        serde_json::from_value(provenance(&both)[0]["attestation"].clone()).unwrap();
    let h = rxledger_core::epcis::hash_of_id(
        both["rxl:provenance"][0]["eventHashID"].as_str().unwrap(),
    )
    .unwrap();
    let mut tampered = fetched.body.clone();
    tampered.insert(1, b' ');
    assert_eq!(
        attestation::verify_event(&tampered, &a, &key.public_key(), &h),
        Err(AttestationError::DigestMismatch)
    );
    assert_eq!(
        attestation::verify_event(&fetched.body, &a, &SigningKey::generate().public_key(), &h),
        Err(AttestationError::BadSignature)
    );
    assert_eq!(
        attestation::verify_event(
            &fetched.body,
            &a,
            &key.public_key(),
            &rxledger_core::epcis::event_hash(&commissioning("99")).unwrap()
        ),
        Err(AttestationError::NotInDocument)
    );

    // Who may read the document: the submitting organization, regulators; a rival and an
    // anonymous caller may not, and a rival's 404 reads as for a digest nobody sent.
    assert_eq!(
        get(&app, &format!("/epcis/capture/documents/{sha}"), Some(&nca))
            .await
            .body,
        doc
    );
    let hidden = get(
        &app,
        &format!("/epcis/capture/documents/{sha}"),
        Some(&rival),
    )
    .await
    .problem(404, "NoSuchResourceException", "NOT_FOUND");
    let unknown_sha = "0".repeat(64);
    let never = get(
        &app,
        &format!("/epcis/capture/documents/{unknown_sha}"),
        Some(&rival),
    )
    .await
    .problem(404, "NoSuchResourceException", "NOT_FOUND");
    assert_eq!(hidden.replace(&sha, &unknown_sha), never);
    get(&app, &format!("/epcis/capture/documents/{sha}"), None)
        .await
        .problem(401, "SecurityException", "UNAUTHENTICATED");
    get(&app, "/epcis/capture/documents/not-a-digest", Some(&acme))
        .await
        .problem(404, "NoSuchResourceException", "NOT_FOUND");

    // GraphQL says who signed, where it shows the signer: entries and pack history.
    let entry = provenance(&both)[0]["ledgerEntry"].as_i64().unwrap();
    let q = "query($i: Int!) { entries(from: $i, count: 1) { signer signedBy attestation { keyid sig sha256 mediaType } } }";
    let mine = app.graphql_as(Some(&acme), q, json!({"i": entry})).await;
    let e = &mine["data"]["entries"][0];
    assert_eq!(e["signedBy"], "partner-key", "{mine}");
    assert_eq!(e["attestation"]["keyid"], "acme-erp", "{mine}");
    assert_eq!(e["attestation"]["sha256"], sha.as_str(), "{mine}");
    assert_eq!(e["attestation"]["sig"], a.sig.as_str(), "{mine}");
    let theirs = app.graphql_as(Some(&rival), q, json!({"i": entry})).await;
    let e = &theirs["data"]["entries"][0];
    assert_eq!(e["signer"], Value::Null, "{theirs}");
    assert_eq!(e["signedBy"], Value::Null, "{theirs}");
    assert_eq!(e["attestation"], Value::Null, "{theirs}");
    let history = app
        .graphql_as(
            Some(&acme),
            "{ provenance(code: \"(01)10614141073464(21)1\") { history { organization signedBy attestation { keyid sha256 } } } }",
            json!({}),
        )
        .await;
    let h0 = &history["data"]["provenance"]["history"][0];
    assert_eq!(h0["organization"], "acme", "{history}");
    assert_eq!(h0["signedBy"], "partner-key", "{history}");
    assert_eq!(h0["attestation"]["keyid"], "acme-erp", "{history}");
    assert_eq!(h0["attestation"]["sha256"], sha.as_str(), "{history}");

    // The same signed document again: recognised, nothing appended, nothing stored twice.
    let size = app.app().ledger.head().size;
    let again = capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&key, "acme-erp", &doc)],
    )
    .await
    .json();
    assert_eq!(again["recognisedCount"], 2, "{again}");
    assert_eq!(again["appendedCount"], 0, "{again}");
    assert_eq!(app.app().ledger.head().size, size);
    assert_eq!(stored_documents(&app).await, 1);

    // EPCIS 1.2 XML, as a DSCSA partner's file: signed over the XML bytes.
    let events = vec![commissioning("3"), commissioning("4")];
    let header = rxledger_core::epcis::xml::XmlHeader {
        schema_version: "1.2".into(),
        creation_date: Some(now_rfc3339()),
        ..Default::default()
    };
    let xml = rxledger_core::epcis::xml::to_epcis12_xml(&events, &header)
        .unwrap()
        .into_bytes();
    let r = capture(
        &app,
        &acme,
        "application/xml",
        &xml,
        &[&signature(&key, "acme-erp", &xml)],
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let job = r.json();
    assert_eq!(job["appendedCount"], 2, "{job}");
    assert_eq!(job["attestation"]["mediaType"], "application/xml", "{job}");
    let shown = events_of(&app, &acme, "3").await;
    check_signed(&app, &acme, &shown, &xml, &key, "application/xml").await;
    let shown = events_of(&app, &acme, "4").await;
    check_signed(&app, &acme, &shown, &xml, &key, "application/xml").await;
    assert_eq!(stored_documents(&app).await, 2);

    // One event, POST /epcis/events, signed: its body is its own document.
    let one = commissioning("5").to_string().into_bytes();
    let r = call(
        &app,
        "POST",
        "/epcis/events",
        Some(&acme),
        &[
            ("Content-Type", "application/ld+json"),
            ("RxLedger-Signature", &signature(&key, "acme-erp", &one)),
        ],
        &one,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let shown = events_of(&app, &acme, "5").await;
    check_signed(&app, &acme, &shown, &one, &key, "application/ld+json").await;

    // Without a signature, captures are the log key's as before.
    let plain = document(vec![commissioning("6")]);
    let r = capture(&app, &acme, "application/ld+json", &plain, &[]).await;
    let job = r.json();
    assert_eq!(job["appendedCount"], 1, "{job}");
    assert_eq!(job["signedBy"], "log-key", "{job}");
    assert_eq!(job.get("attestation"), None, "{job}");
    let shown = events_of(&app, &acme, "6").await;
    let item = &provenance(&shown)[0];
    assert_eq!(item["signedBy"], "log-key", "{item}");
    assert_eq!(item.get("attestation"), None, "{item}");
    let history = app
        .graphql_as(
            Some(&acme),
            "{ provenance(code: \"(01)10614141073464(21)6\") { history { signedBy attestation { keyid } } } }",
            json!({}),
        )
        .await;
    let h0 = &history["data"]["provenance"]["history"][0];
    assert_eq!(h0["signedBy"], "log-key", "{history}");
    assert_eq!(h0["attestation"], Value::Null, "{history}");
    app.stop().await;
}

async fn stored_documents(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    rxledger_entities::partner_document::Entity::find()
        .count(&app.app().ledger.database().conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn bad_signatures_are_refused_and_nothing_is_appended() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    partner(&app, "rival", "WHOLESALER", None, RIVAL_GLN).await;
    let key = device(&app, "acme-erp", "acme", ACME_GLN).await;
    let rival_key = device(&app, "rival-erp", "rival", RIVAL_GLN).await;
    let old_key = device(&app, "acme-old", "acme", ACME_GLN).await;
    app.app().registry.revoke_device("acme-old").await.unwrap();

    let doc = document(vec![commissioning("1"), commissioning("2")]);
    let size = app.app().ledger.head().size;
    let nothing_appended = |what: &str| {
        assert_eq!(app.app().ledger.head().size, size, "{what}: appended");
    };

    // Signed over other bytes (the document with one space more), or by another key.
    let mut other = doc.clone();
    other.push(b' ');
    for (what, sig) in [
        ("other bytes", signature(&key, "acme-erp", &other)),
        (
            "another key",
            signature(&SigningKey::generate(), "acme-erp", &doc),
        ),
    ] {
        let detail = capture(&app, &acme, "application/ld+json", &doc, &[&sig])
            .await
            .problem(401, "SecurityException", "BAD_SIGNATURE");
        assert!(detail.contains("acme-erp"), "{detail}");
        nothing_appended(what);
    }

    // Another organization's device, signing correctly, and a device nobody enrolled: one
    // answer, so a signature never tells whether an id exists elsewhere.
    let foreign = capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&rival_key, "rival-erp", &doc)],
    )
    .await
    .problem(403, "SecurityException", "UNKNOWN_DEVICE");
    nothing_appended("another organization's device");
    let nobody = capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&rival_key, "nobody-erp", &doc)],
    )
    .await
    .problem(403, "SecurityException", "UNKNOWN_DEVICE");
    nothing_appended("an unknown device");
    assert_eq!(foreign.replace("rival-erp", "nobody-erp"), nobody);

    // A revoked device of the organization's own.
    capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&old_key, "acme-old", &doc)],
    )
    .await
    .problem(403, "SecurityException", "DEVICE_REVOKED");
    nothing_appended("a revoked device");

    // Malformed headers, each refused before the body is looked at.
    let sig = hex::encode(attestation::sign_document(&key, &doc));
    let good = format!("keyid=acme-erp, sig={sig}");
    let too_long = format!(
        "keyid=acme-erp,{}sig={sig}",
        " ".repeat(attestation::MAX_HEADER_LEN)
    );
    for bad in [
        "keyid=acme-erp".to_string(),
        format!("sig={sig}"),
        format!("keyid=acme-erp, sig={}", sig.to_uppercase()),
        format!("keyid=acme-erp, sig={}", &sig[..100]),
        format!("keyid=acme-erp, sig={sig}, alg=ES256K"),
        format!("keyid=acme erp, sig={sig}"),
        format!("keyid=acme-erp; sig={sig}"),
        too_long,
    ] {
        let detail = capture(&app, &acme, "application/ld+json", &doc, &[&bad])
            .await
            .problem(400, "ValidationException", "BAD_SIGNATURE_HEADER");
        assert!(detail.contains("RxLedger-Signature"), "{detail}");
        nothing_appended(&bad);
    }
    capture(&app, &acme, "application/ld+json", &doc, &[&good, &good])
        .await
        .problem(400, "ValidationException", "BAD_SIGNATURE_HEADER");
    nothing_appended("the header twice");

    // On POST /epcis/events too.
    let one = commissioning("7").to_string().into_bytes();
    call(
        &app,
        "POST",
        "/epcis/events",
        Some(&acme),
        &[
            ("Content-Type", "application/ld+json"),
            ("RxLedger-Signature", &signature(&key, "acme-erp", b"{}")),
        ],
        &one,
    )
    .await
    .problem(401, "SecurityException", "BAD_SIGNATURE");
    nothing_appended("a bad signature on one event");

    // None of them stored a document, and acme's log shows none of the events.
    assert_eq!(stored_documents(&app).await, 0);
    let all = get(&app, "/epcis/events", Some(&acme)).await.json();
    assert_eq!(provenance(&all).len(), 0, "{all}");

    // The good signature, after all that, is taken.
    let r = capture(&app, &acme, "application/ld+json", &doc, &[&good]).await;
    assert_eq!(r.json()["appendedCount"], 2);
    app.stop().await;
}

/// Only the log's entries for an organization carry an attestation: a device that sends one
/// over MQTT is refused with MALFORMED_ENVELOPE, and nothing is appended.
#[tokio::test]
async fn a_device_envelope_carrying_an_attestation_is_rejected() {
    let app = spawn_app().await;
    let mut line = app.acme_with_packs(&["1"]).await;
    let size = app.app().ledger.head().size;
    let events = vec![commissioning("2")];
    let doc = document(events.clone());
    let a = Attestation::new(
        &line.id,
        &attestation::sign_document(&line.key, &doc),
        &attestation::digest(&doc),
        attestation::DocumentMedia::JsonLd,
    );
    line.seq += 1;
    let body = Body {
        v: 1,
        device_id: line.id.clone(),
        seq: line.seq,
        sent_at: now_rfc3339(),
        events,
    };
    let payload = envelope::seal_attested(&line.key, &body, &a);
    let r = line.send(payload).await;
    assert_eq!(r.status, "REJECTED", "{r:?}");
    assert_eq!(r.code.as_deref(), Some("MALFORMED_ENVELOPE"), "{r:?}");
    assert!(
        r.message
            .as_deref()
            .unwrap_or_default()
            .contains("attestation"),
        "{r:?}"
    );
    assert_eq!(app.app().ledger.head().size, size);
    // The same events without it are taken.
    let r = line.send_events(vec![commissioning("2")]).await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    app.stop().await;
}

/// `rxledger audit` checks every partner-signed entry against its kept document: the bytes,
/// the device's signature and the events. Changing the kept bytes is named, entry by entry.
#[tokio::test]
async fn the_audit_checks_each_signed_entry_against_its_document() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let key = device(&app, "acme-erp", "acme", ACME_GLN).await;
    let doc = document(vec![commissioning("1"), commissioning("2")]);
    let r = capture(
        &app,
        &acme,
        "application/ld+json",
        &doc,
        &[&signature(&key, "acme-erp", &doc)],
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let entry = r.json()["ledgerEntries"][0].as_u64().unwrap();
    let audit = rxledger_store::audit::audit_ledger(&app.app().ledger)
        .await
        .unwrap();
    assert!(audit.ok(), "{:?}", audit.problems);

    // The kept document's bytes changed behind the node's back (one event dropped, signature
    // header kept): the entry no longer rests on what the partner signed.
    let sha = hex::encode(attestation::digest(&doc));
    let other = document(vec![commissioning("1")]);
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let db = &app.app().ledger.database().conn;
    db.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Sqlite,
        "UPDATE partner_documents SET data = ? WHERE sha256 = ?",
        [other.clone().into(), sha.clone().into()],
    ))
    .await
    .unwrap();
    let audit = rxledger_store::audit::audit_ledger(&app.app().ledger)
        .await
        .unwrap();
    assert!(
        audit.problems.iter().any(|p| p
            == &format!(
                "entry {entry}: the partner-signed document {sha} does not verify: the document's SHA-256 is not the attested one: these are not the signed bytes"
            )),
        "{:?}",
        audit.problems
    );
    app.stop().await;
}
