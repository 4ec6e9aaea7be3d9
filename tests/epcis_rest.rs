//! The EPCIS 2.0 REST binding end to end: a real server, real HTTP, API keys issued by the
//! server's own store. Capture goes through the ledger's one append; queries see what GraphQL
//! `events` shows each caller; every refusal is problem+json with its GS1 exception type.

mod common;

use common::{Answer, TestApp, Ws, call, epcis_key, get, now_rfc3339, partner, spawn_app, ws_next};
use firmware_sim::events::{self as ev, Where};
use serde_json::{Value, json};

const GTIN_PREFIX: &str = "0614141";
/// acme's plant, and the wholesaler's and a rival's sites (valid GLNs).
const ACME_GLN: &str = "0614141000005";
const ACME_SGLN: &str = "urn:epc:id:sgln:0614141.00000.0";
const WHOLE_GLN: &str = "0614141000036";
const WHOLE_SGLN: &str = "urn:epc:id:sgln:0614141.00003.0";
const RIVAL_GLN: &str = "0614141000043";

async fn capture(app: &TestApp, token: &str, doc: &Value, behaviour: Option<&str>) -> Answer {
    let mut extra = vec![("Content-Type", "application/ld+json")];
    if let Some(b) = behaviour {
        extra.push(("GS1-Capture-Error-Behaviour", b));
    }
    call(
        app,
        "POST",
        "/epcis/capture",
        Some(token),
        &extra,
        doc.to_string().as_bytes(),
    )
    .await
}

/// The kinds of the entries appended since tree size `from`: 2 for a capture's entry, 4 for
/// the map root the log appends after each batch.
async fn kinds_since(app: &TestApp, from: u64) -> Vec<i16> {
    let ledger = &app.app().ledger;
    let entries = ledger
        .entries(from, ledger.head().size - from)
        .await
        .unwrap();
    entries.iter().map(|e| e.kind).collect()
}

fn sgtin(serial: &str) -> String {
    format!("urn:epc:id:sgtin:{GTIN_PREFIX}.107346.{serial}")
}

fn document(events: Vec<Value>) -> Value {
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": now_rfc3339(),
        "epcisBody": { "eventList": events },
    })
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

fn shipping(serials: &[&str]) -> Value {
    let epcs: Vec<String> = serials.iter().map(|s| sgtin(s)).collect();
    ev::transfer(
        &now_rfc3339(),
        "shipping",
        &epcs,
        ACME_SGLN,
        ("urn:epc:id:pgln:0614141.00000", ACME_SGLN),
        ("urn:epc:id:pgln:0614141.00003", WHOLE_SGLN),
        "urn:epcglobal:cbv:bt:0614141000005:D1",
    )
}

fn event_ids(doc: &Value) -> Vec<String> {
    doc["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
        .as_array()
        .unwrap_or_else(|| panic!("not a query document: {doc}"))
        .iter()
        .map(|e| e["eventID"].as_str().unwrap().to_string())
        .collect()
}

fn path_of(id: &str) -> String {
    let mut out = String::from("/epcis/events/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test]
async fn a_captured_document_is_logged_and_each_caller_sees_what_graphql_shows_it() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let whole = partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    partner(&app, "nca", "REGULATOR", None, RIVAL_GLN).await;
    let regulator = epcis_key(&app, "nca", "REGULATOR").await;
    let before = app.app().ledger.head().size;

    let doc = document(vec![
        commissioning("1"),
        commissioning("2"),
        commissioning("3"),
        shipping(&["1", "2"]),
    ]);
    let r = capture(&app, &acme, &doc, None).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("gs1-epcis-version"), Some("2.0.0"));
    assert_eq!(r.header("gs1-cbv-version"), Some("2.0.0"));
    let job = r.json();
    let location = r.header("location").unwrap().to_string();
    assert_eq!(
        location,
        format!("/epcis/capture/{}", job["captureID"].as_str().unwrap())
    );
    assert_eq!(job["running"], false);
    assert_eq!(job["success"], true, "{job}");
    assert_eq!(job["captureErrorBehaviour"], "rollback");
    assert_eq!(job["appendedCount"], 4);
    assert_eq!(job["errors"], json!([]));
    // Four events, one entry of the log, signed by the log key for acme.
    assert_eq!(job["ledgerEntries"], json!([before]));
    assert_eq!(
        kinds_since(&app, before).await,
        [2, 4],
        "the entry and its map root"
    );

    // The job, and the caller's list of jobs; another organization sees neither.
    let again = get(&app, &location, Some(&acme)).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), job);
    let list = get(&app, "/epcis/capture", Some(&acme)).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    get(&app, &location, Some(&whole))
        .await
        .problem(404, "NoSuchResourceException", "NOT_FOUND");
    assert_eq!(
        get(&app, "/epcis/capture", Some(&whole)).await.json(),
        json!([])
    );

    // The query, as the owner: each filter of the binding.
    let q = |path: &'static str, token: &str| {
        let token = token.to_string();
        let app = &app;
        async move {
            let r = get(app, path, Some(&token)).await;
            assert_eq!(
                r.status,
                200,
                "{path}: {}",
                String::from_utf8_lossy(&r.body)
            );
            assert_eq!(r.header("content-type"), Some("application/ld+json"));
            r.json()
        }
    };
    let all = q("/epcis/events", &acme).await;
    assert_eq!(all["type"], "EPCISQueryDocument");
    let ids = event_ids(&all);
    assert_eq!(ids.len(), 4);
    let expected: Vec<String> = doc["epcisBody"]["eventList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| rxledger_core::epcis::event_hash_id(e).unwrap())
        .collect();
    assert_eq!(ids, expected, "the CBV 2.0 hash IDs, in capture order");
    let provenance = &all["rxl:provenance"];
    assert_eq!(provenance[0]["signer"], "org:acme");
    assert_eq!(provenance[0]["signedBy"], "log-key");
    assert_eq!(provenance[0]["ledgerEntry"], before);
    let recorded = &all["epcisBody"]["queryResults"]["resultsBody"]["eventList"][0]["recordTime"];
    assert!(recorded.is_string(), "{all}");

    for (path, n) in [
        ("/epcis/events?EQ_bizStep=commissioning", 3),
        ("/epcis/events?EQ_bizStep=shipping|receiving", 1),
        ("/epcis/events?EQ_disposition=in_transit", 1),
        (
            "/epcis/events?MATCH_anyEPC=urn:epc:id:sgtin:0614141.107346.1",
            2,
        ),
        (
            "/epcis/events?MATCH_epc=urn:epc:id:sgtin:0614141.107346.3",
            1,
        ),
        (
            "/epcis/events?MATCH_parentID=urn:epc:id:sscc:0614141.0000000001",
            0,
        ),
        (
            "/epcis/events?EQ_bizLocation=urn:epc:id:sgln:0614141.00000.0",
            4,
        ),
        (
            "/epcis/events?EQ_readPoint=urn:epc:id:sgln:0614141.00003.0",
            0,
        ),
        ("/epcis/events?eventType=ObjectEvent", 4),
        ("/epcis/eventTypes/AggregationEvent/events", 0),
        (
            "/epcis/events?GE_eventTime=2000-01-01T00:00:00Z&LT_eventTime=2999-01-01T00:00:00Z",
            4,
        ),
        ("/epcis/events?GE_eventTime=2999-01-01T00:00:00Z", 0),
        ("/epcis/events?GE_recordTime=2000-01-01T00:00:00Z", 4),
        ("/epcis/events?LT_recordTime=2000-01-01T00:00:00Z", 0),
    ] {
        assert_eq!(event_ids(&q(path, &acme).await).len(), n, "{path}");
    }
    let by_id = format!(
        "/epcis/events?EQ_eventID={}",
        ids[3].replace('?', "%3F").replace(';', "%3B")
    );
    let r = get(&app, &by_id, Some(&acme)).await;
    assert_eq!(event_ids(&r.json()), [ids[3].clone()]);
    let one = get(&app, &path_of(&ids[3]), Some(&acme)).await;
    assert_eq!(one.status, 200, "{}", String::from_utf8_lossy(&one.body));
    assert_eq!(event_ids(&one.json()), [ids[3].clone()]);

    // Another organization sees none of it, the regulator all of it, anonymous callers nothing.
    assert!(event_ids(&q("/epcis/events", &whole).await).is_empty());
    get(&app, &path_of(&ids[0]), Some(&whole)).await.problem(
        404,
        "NoSuchResourceException",
        "NOT_FOUND",
    );
    assert_eq!(event_ids(&q("/epcis/events", &regulator).await), ids);
    get(&app, "/epcis/events", None)
        .await
        .problem(401, "SecurityException", "UNAUTHENTICATED");

    // One visibility rule: GraphQL `events` gives each caller the same events.
    for (token, n) in [(&acme, 4), (&whole, 0), (&regulator, 4)] {
        let g = app
            .graphql_as(
                Some(token),
                "{ events(first: 100) { nodes { eventId } } }",
                json!({}),
            )
            .await;
        let graphql: Vec<String> = g["data"]["events"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["eventId"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(graphql.len(), n);
        assert_eq!(graphql, ids[..n].to_vec());
    }

    // The same rules as MQTT: the packs exist for the verdict, shipped to the wholesaler.
    let v = app
        .graphql(
            "query($c: String!) { verify(code: $c) { verdict } }",
            json!({ "c": "(01)10614141073464(21)3" }),
        )
        .await;
    assert_eq!(v["data"]["verify"]["verdict"], "AUTHENTIC", "{v}");
    let v = app
        .graphql(
            "query($c: String!) { verify(code: $c) { verdict } }",
            json!({ "c": "(01)10614141073464(21)4" }),
        )
        .await;
    assert_eq!(v["data"]["verify"]["verdict"], "UNKNOWN_SERIAL", "{v}");
}

#[tokio::test]
async fn a_mixed_document_follows_the_capture_error_behaviour_and_a_resend_appends_nothing() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    let mut bad_gtin = commissioning("11");
    bad_gtin["epcList"] = json!(["https://id.gs1.org/01/10614141073465/21/11"]);
    let foreign = ev::object_event(
        &now_rfc3339(),
        "OBSERVE",
        "receiving",
        "in_progress",
        &[sgtin("10")],
        WHOLE_SGLN,
    );
    let doc = document(vec![
        commissioning("10"),
        bad_gtin,
        commissioning("12"),
        foreign,
    ]);
    let before = app.app().ledger.head().size;

    // rollback, the default: nothing is appended, every error is named.
    let r = capture(&app, &acme, &doc, None).await;
    assert_eq!(r.status, 202);
    let job = r.json();
    assert_eq!(job["success"], false, "{job}");
    assert_eq!(job["appendedCount"], 0);
    assert_eq!(job["ledgerEntries"], json!([]));
    let errors = job["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{job}");
    assert_eq!(errors[0]["eventIndex"], 1);
    assert_eq!(errors[0]["code"], "INVALID_IDENTIFIER");
    assert_eq!(errors[0]["type"], "epcisException:ValidationException");
    assert_eq!(errors[1]["eventIndex"], 3);
    assert_eq!(errors[1]["code"], "FOREIGN_SITE");
    assert_eq!(app.app().ledger.head().size, before);

    // proceed: the two valid events are appended, the two others reported.
    let r = capture(&app, &acme, &doc, Some("proceed")).await;
    let job = r.json();
    assert_eq!(job["captureErrorBehaviour"], "proceed");
    assert_eq!(job["success"], false);
    assert_eq!(job["appendedCount"], 2, "{job}");
    assert_eq!(job["errorCount"], 2);
    assert_eq!(job["ledgerEntries"], json!([before]));
    assert_eq!(
        kinds_since(&app, before).await,
        [2, 4],
        "the entry and its map root"
    );

    // The same document again: the two are recognised by their CBV hash, nothing appended.
    let job = capture(&app, &acme, &doc, Some("proceed")).await.json();
    assert_eq!(job["appendedCount"], 0, "{job}");
    assert_eq!(job["recognisedCount"], 2);
    assert_eq!(job["recognised"][0]["ledgerEntry"], before);
    assert_eq!(app.app().ledger.head().size, before + 2);

    // One event: 201 with its Location, then 409 when it is sent again.
    let one = commissioning("13");
    let post = |body: Vec<u8>| {
        let app = &app;
        let acme = acme.clone();
        async move {
            call(
                app,
                "POST",
                "/epcis/events",
                Some(&acme),
                &[("Content-Type", "application/json")],
                &body,
            )
            .await
        }
    };
    let r = post(one.to_string().into_bytes()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let id = rxledger_core::epcis::event_hash_id(&one).unwrap();
    assert_eq!(r.header("location"), Some(path_of(&id).as_str()));
    assert_eq!(r.json()["eventID"], id);
    let got = get(&app, &path_of(&id), Some(&acme)).await;
    assert_eq!(event_ids(&got.json()), std::slice::from_ref(&id));
    let r = post(one.to_string().into_bytes()).await;
    r.problem(409, "ResourceAlreadyExistsException", "DUPLICATE_EVENT");
    assert_eq!(r.header("location"), Some(path_of(&id).as_str()));
    // Commissioning a serial already commissioned is the ingest's rule, as over MQTT.
    let mut twice = commissioning("13");
    twice["eventTime"] = json!("2026-01-01T00:00:00.000Z");
    post(twice.to_string().into_bytes()).await.problem(
        400,
        "ValidationException",
        "SERIAL_ALREADY_COMMISSIONED",
    );
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_appends_nothing() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    partner(&app, "nca", "REGULATOR", None, RIVAL_GLN).await;
    let regulator = epcis_key(&app, "nca", "REGULATOR").await;
    let before = app.app().ledger.head().size;
    let post = |body: Vec<u8>, extra: Vec<(&'static str, &'static str)>, token: Option<String>| {
        let app = &app;
        async move {
            call(
                app,
                "POST",
                "/epcis/capture",
                token.as_deref(),
                &extra,
                &body,
            )
            .await
        }
    };
    let json_ct = vec![("Content-Type", "application/ld+json")];
    let me = Some(acme.clone());

    post(
        b"{\"type\": \"EPCISDocument\",".to_vec(),
        json_ct.clone(),
        me.clone(),
    )
    .await
    .problem(400, "ValidationException", "MALFORMED_JSON");
    let mut no_body = document(vec![commissioning("1")]);
    no_body.as_object_mut().unwrap().remove("epcisBody");
    post(
        no_body.to_string().into_bytes(),
        json_ct.clone(),
        me.clone(),
    )
    .await
    .problem(400, "ValidationException", "INVALID_DOCUMENT");
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    post(deep.into_bytes(), json_ct.clone(), me.clone())
        .await
        .problem(400, "ValidationException", "MALFORMED_JSON");

    // 100 MB: refused from its Content-Length, before it is read.
    let huge = vec![b' '; 100 << 20];
    let r = post(huge, json_ct.clone(), me.clone()).await;
    r.problem(413, "CaptureLimitExceededException", "TOO_LARGE");
    assert_eq!(
        r.header("gs1-epcis-capture-file-size-limit"),
        Some((32 << 20).to_string().as_str())
    );
    // More events than the capture limit.
    let many: Vec<Value> = (0..10_001)
        .map(|i| json!({ "type": "ObjectEvent", "i": i }))
        .collect();
    let r = post(
        document(many).to_string().into_bytes(),
        json_ct.clone(),
        me.clone(),
    )
    .await;
    r.problem(413, "CaptureLimitExceededException", "TOO_MANY_EVENTS");
    assert_eq!(r.header("gs1-epcis-capture-limit"), Some("10000"));

    // Media types and versions.
    let ok_doc = document(vec![commissioning("1")]).to_string().into_bytes();
    post(
        ok_doc.clone(),
        vec![("Content-Type", "text/csv")],
        me.clone(),
    )
    .await
    .problem(
        415,
        "UnsupportedMediaTypeException",
        "UNSUPPORTED_MEDIA_TYPE",
    );
    // JSON sent as XML: the XML reader refuses it with its code, nothing appended.
    post(
        ok_doc.clone(),
        vec![("Content-Type", "application/xml")],
        me.clone(),
    )
    .await
    .problem(400, "ValidationException", "XML_MALFORMED");
    // An XML bomb: the DOCTYPE is refused before any entity could be expanded.
    let bomb = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><epcis:EPCISDocument xmlns:epcis="urn:epcglobal:epcis:xsd:1">&lol2;</epcis:EPCISDocument>"#;
    post(
        bomb.to_vec(),
        vec![("Content-Type", "application/xml")],
        me.clone(),
    )
    .await
    .problem(400, "ValidationException", "XML_DOCTYPE");
    post(
        ok_doc.clone(),
        vec![
            ("Content-Type", "application/json"),
            ("GS1-EPCIS-Version", "1.2.0"),
        ],
        me.clone(),
    )
    .await
    .problem(406, "NotAcceptableException", "VERSION_NOT_SUPPORTED");

    // Who may capture.
    post(ok_doc.clone(), json_ct.clone(), None).await.problem(
        401,
        "SecurityException",
        "UNAUTHENTICATED",
    );
    post(ok_doc.clone(), json_ct.clone(), Some("not-a-key".into()))
        .await
        .problem(401, "SecurityException", "UNAUTHENTICATED");
    post(ok_doc.clone(), json_ct.clone(), Some(regulator.clone()))
        .await
        .problem(403, "SecurityException", "FORBIDDEN");

    // Queries the server does not support are refused, not answered wider.
    for path in [
        "/epcis/events?EQ_quantity=3",
        "/epcis/events?perPage=5000",
        "/epcis/events?EQ_bizStep=teleporting",
        "/epcis/events?EQ_eventID=urn:uuid:0",
        "/epcis/events?MATCH_epc=nonsense",
    ] {
        get(&app, path, Some(&acme)).await.problem(
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        );
    }
    get(&app, "/epcis/nowhere", Some(&acme)).await.problem(
        404,
        "NoSuchResourceException",
        "NOT_FOUND",
    );
    assert_eq!(app.app().ledger.head().size, before, "nothing was appended");

    // Discovery.
    let r = call(&app, "OPTIONS", "/epcis/capture", None, &[], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("gs1-capture-error-behaviour"), Some("rollback"));
    assert_eq!(r.header("allow"), Some("OPTIONS, GET, POST"));
    let types = get(&app, "/epcis/eventTypes", None).await.json();
    assert_eq!(
        types["member"],
        json!(["ObjectEvent", "AggregationEvent", "TransactionEvent"])
    );
}

#[tokio::test]
async fn pages_follow_their_tokens_and_tampered_tokens_are_refused() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let events: Vec<Value> = (0..25).map(|i| commissioning(&format!("p{i}"))).collect();
    let expected: Vec<String> = events
        .iter()
        .map(|e| rxledger_core::epcis::event_hash_id(e).unwrap())
        .collect();
    let job = capture(&app, &acme, &document(events), None).await.json();
    assert_eq!(job["appendedCount"], 25, "{job}");

    let mut seen = Vec::new();
    let mut path = "/epcis/events?EQ_bizStep=commissioning&perPage=10".to_string();
    let mut pages = 0;
    let mut last_next = None;
    loop {
        let r = get(&app, &path, Some(&acme)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        seen.extend(event_ids(&r.json()));
        pages += 1;
        let Some(link) = r.header("link") else { break };
        let url = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(u, _)| u.to_string())
            .unwrap_or_else(|| panic!("Link: {link}"));
        last_next = Some(url.clone());
        path = url;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected, "every event once, in log order");

    // The last token, tampered with in its digest, or used with another query: refused.
    let next = last_next.unwrap();
    let token = next.split("nextPageToken=").nth(1).unwrap().to_string();
    let mut edited = token.clone().into_bytes();
    edited[30] = if edited[30] == b'a' { b'b' } else { b'a' };
    let edited = String::from_utf8(edited).unwrap();
    for path in [
        format!("/epcis/events?EQ_bizStep=commissioning&perPage=10&nextPageToken={edited}"),
        format!("/epcis/events?EQ_bizStep=shipping&perPage=10&nextPageToken={token}"),
        "/epcis/events?nextPageToken=zz".to_string(),
    ] {
        get(&app, &path, Some(&acme)).await.problem(
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        );
    }
}

/// The official EPCIS 2.0 JSON Schema (vendored, inlined into one file by GS1).
fn epcis_schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/services/core/schemas/epcis-2.0/EPCIS-JSON-Schema.json"
    );
    let schema: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn assert_valid(schema: &jsonschema::Validator, doc: &Value, what: &str) {
    let errors: Vec<String> = schema.iter_errors(doc).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{what} is not a valid EPCIS 2.0 document: {errors:#?}\n{doc:#}"
    );
}

/// Every document rxledger exports (the REST query's `EPCISQueryDocument`, GraphQL's
/// `epcisDocument`) validates against the official schema, for events captured over REST
/// and sent by scanners over MQTT alike; and an exported document captured again is the
/// same events, recognised by their CBV 2.0 hash.
#[tokio::test]
async fn exported_documents_are_valid_epcis_2_0_and_recapture_as_the_same_events() {
    let app = spawn_app().await;
    let schema = epcis_schema();
    // A scanner's commissioning over MQTT, then acme's packing and shipping over REST.
    let _line = app.acme_with_packs(&["1", "2"]).await;
    let acme = epcis_key(&app, "acme", "MANUFACTURER").await;
    partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    let sscc = "urn:epc:id:sscc:0614141.0000000042";
    let packing = ev::aggregation(
        &now_rfc3339(),
        "ADD",
        sscc,
        &[sgtin("1"), sgtin("2")],
        ACME_SGLN,
    );
    let mut with_context = shipping(&["1", "2"]);
    with_context["example:carrier"] = json!("Fast Freight");
    let mut doc = document(vec![packing, with_context]);
    doc["@context"] = json!([
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        { "example": "https://example.org/epcis/" }
    ]);
    let job = capture(&app, &acme, &doc, None).await.json();
    assert_eq!(job["appendedCount"], 2, "{job}");

    let r = get(&app, "/epcis/events?perPage=10", Some(&acme)).await;
    let query_doc = r.json();
    assert_eq!(event_ids(&query_doc).len(), 3, "{query_doc}");
    assert_valid(&schema, &query_doc, "the REST query's answer");
    let signed: Vec<&str> = query_doc["rxl:provenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["signedBy"].as_str().unwrap())
        .collect();
    assert_eq!(signed, ["device", "log-key", "log-key"]);

    let g = app
        .graphql_as(
            Some(&acme),
            "{ events(first: 10) { epcisDocument } }",
            json!({}),
        )
        .await;
    let text = g["data"]["events"]["epcisDocument"]
        .as_str()
        .unwrap_or_else(|| panic!("{g}"));
    let export: Value = serde_json::from_str(text).unwrap();
    assert_eq!(export["type"], "EPCISDocument");
    assert_valid(&schema, &export, "GraphQL's epcisDocument");

    // The export, captured again: three events recognised, none appended.
    let size = app.app().ledger.head().size;
    let job = capture(&app, &acme, &export, None).await.json();
    assert_eq!(job["recognisedCount"], 3, "{job}");
    assert_eq!(job["appendedCount"], 0, "{job}");
    assert_eq!(job["success"], true, "{job}");
    assert_eq!(app.app().ledger.head().size, size);

    // The same events as EPCIS 2.0 XML, and that XML captured again: the same CBV hashes, so
    // three events recognised and none appended.
    let xml = call(
        &app,
        "GET",
        "/epcis/events?perPage=10",
        Some(&acme),
        &[("Accept", "application/xml")],
        b"",
    )
    .await;
    let text = String::from_utf8_lossy(&xml.body).into_owned();
    assert_eq!(xml.status, 200, "{text}");
    assert!(text.contains("urn:epcglobal:epcis:xsd:2"), "{text}");
    let job = call(
        &app,
        "POST",
        "/epcis/capture",
        Some(&acme),
        &[("Content-Type", "application/xml")],
        &xml.body,
    )
    .await
    .json();
    assert_eq!(job["recognisedCount"], 3, "{job}");
    assert_eq!(job["appendedCount"], 0, "{job}");
    assert_eq!(app.app().ledger.head().size, size);

    // A DSCSA partner asks for EPCIS 1.2 XML, and sends it back with its version: the same
    // CBV hashes again. EPCIS 1.2 in JSON stays refused.
    let xml12 = call(
        &app,
        "GET",
        "/epcis/events?perPage=10",
        Some(&acme),
        &[("Accept", "application/xml"), ("GS1-EPCIS-Version", "1.2")],
        b"",
    )
    .await;
    let text = String::from_utf8_lossy(&xml12.body).into_owned();
    assert_eq!(xml12.status, 200, "{text}");
    assert_eq!(xml12.header("gs1-epcis-version"), Some("1.2.0"));
    assert!(
        text.contains("urn:epcglobal:epcis:xsd:1") && text.contains(r#"schemaVersion="1.2""#),
        "{text}"
    );
    let job = call(
        &app,
        "POST",
        "/epcis/capture",
        Some(&acme),
        &[
            ("Content-Type", "application/xml"),
            ("GS1-EPCIS-Version", "1.2.0"),
        ],
        &xml12.body,
    )
    .await
    .json();
    assert_eq!(job["recognisedCount"], 3, "{job}");
    assert_eq!(job["appendedCount"], 0, "{job}");
    assert_eq!(app.app().ledger.head().size, size);
    let json12 = call(
        &app,
        "GET",
        "/epcis/events?perPage=10",
        Some(&acme),
        &[("GS1-EPCIS-Version", "1.2")],
        b"",
    )
    .await;
    assert_eq!(json12.status, 406);
}

/// `POST /epcis/queries` with a definition.
async fn define(app: &TestApp, token: Option<&str>, definition: &Value) -> Answer {
    call(
        app,
        "POST",
        "/epcis/queries",
        token,
        &[("Content-Type", "application/json")],
        definition.to_string().as_bytes(),
    )
    .await
}

async fn delete(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, "DELETE", path, Some(token), &[], b"").await
}

/// Follows a query's `Link: rel="next"` pages from `first`, collecting every event ID.
async fn all_pages(app: &TestApp, token: &str, first: &str) -> (Vec<String>, Vec<String>) {
    let (mut ids, mut links) = (Vec::new(), Vec::new());
    let mut path = first.to_string();
    loop {
        let r = get(app, &path, Some(token)).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        ids.extend(event_ids(&r.json()));
        let Some(link) = r.header("link") else {
            return (ids, links);
        };
        path = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
        links.push(path.clone());
    }
}

/// Named queries (issue 22): an organisation's own, checked by the parser of
/// `GET /epcis/events` when created, run with its paging, invisible to every other
/// organisation (404 as for a name never used), and kept across a restart.
#[tokio::test]
async fn named_queries_are_the_organisations_own_and_run_as_events_queries_do() {
    let mut app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let whole = partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    let doc = document(vec![
        commissioning("1"),
        commissioning("2"),
        commissioning("3"),
        shipping(&["1", "2"]),
    ]);
    assert_eq!(
        capture(&app, &acme, &doc, None).await.json()["appendedCount"],
        4
    );

    let shipments = json!({"name": "shipments",
        "query": {"EQ_bizStep": ["shipping", "receiving"], "eventType": ["ObjectEvent"]}});
    let r = define(&app, Some(&acme), &shipments).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("location"), Some("/epcis/queries/shipments"));
    assert_eq!(r.header("gs1-epcis-version"), Some("2.0.0"));
    assert_eq!(r.json(), shipments);
    let again = define(&app, Some(&acme), &shipments).await;
    again.problem(409, "ResourceAlreadyExistsException", "QUERY_EXISTS");
    assert_eq!(again.header("location"), Some("/epcis/queries/shipments"));

    // Refused at creation as `GET /epcis/events` refuses the same parameters.
    for (query, status, exception, code) in [
        (
            json!({"EQ_bizStep": ["teleporting"]}),
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        ),
        (
            json!({"EQ_quantity": ["3"]}),
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        ),
        (
            json!({"GE_eventTime": "yesterday"}),
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        ),
        (
            json!({"EQ_bizStep": "shipping|x"}),
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        ),
        (
            json!({"perPage": "10"}),
            400,
            "QueryParameterException",
            "BAD_QUERY_PARAMETER",
        ),
        (
            json!(["EQ_bizStep"]),
            400,
            "ValidationException",
            "INVALID_QUERY",
        ),
    ] {
        define(&app, Some(&acme), &json!({"name": "bad", "query": query}))
            .await
            .problem(status, exception, code);
    }
    for bad in [
        json!({"name": "a b", "query": {}}),
        json!({"name": "x".repeat(65), "query": {}}),
        json!({"query": {}}),
        json!({"name": "q", "query": {}, "schedule": {}}),
    ] {
        define(&app, Some(&acme), &bad)
            .await
            .problem(400, "ValidationException", "INVALID_QUERY");
    }
    call(&app, "POST", "/epcis/queries", Some(&acme), &[], b"{")
        .await
        .problem(400, "ValidationException", "MALFORMED_JSON");
    define(&app, None, &shipments)
        .await
        .problem(401, "SecurityException", "UNAUTHENTICATED");
    assert!(get(&app, "/epcis/queries/bad", Some(&acme)).await.status == 404);

    // The definition, the list, and its events: those of the same parameters on /epcis/events.
    let one = get(&app, "/epcis/queries/shipments", Some(&acme)).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.json(), shipments);
    let list = get(&app, "/epcis/queries", Some(&acme)).await.json();
    assert_eq!(list, json!([shipments]));
    let direct = get(
        &app,
        "/epcis/events?EQ_bizStep=shipping|receiving&eventType=ObjectEvent",
        Some(&acme),
    )
    .await;
    let named = get(&app, "/epcis/queries/shipments/events", Some(&acme)).await;
    assert_eq!(
        named.status,
        200,
        "{}",
        String::from_utf8_lossy(&named.body)
    );
    assert_eq!(named.header("content-type"), Some("application/ld+json"));
    assert_eq!(event_ids(&named.json()).len(), 1);
    assert_eq!(event_ids(&named.json()), event_ids(&direct.json()));
    get(
        &app,
        "/epcis/queries/shipments/events?EQ_bizStep=commissioning",
        Some(&acme),
    )
    .await
    .problem(400, "QueryParameterException", "BAD_QUERY_PARAMETER");

    // Paging: the next page is the named query's own resource, its token tied to the query.
    let all = json!({"name": "everything", "query": {}});
    assert_eq!(define(&app, Some(&acme), &all).await.status, 201);
    let (paged, links) = all_pages(&app, &acme, "/epcis/queries/everything/events?perPage=3").await;
    assert_eq!(
        paged,
        event_ids(&get(&app, "/epcis/events", Some(&acme)).await.json())
    );
    assert_eq!(links.len(), 1);
    assert!(
        links[0].starts_with("/epcis/queries/everything/events?perPage=3&nextPageToken="),
        "{links:?}"
    );
    let token = links[0].split("nextPageToken=").nth(1).unwrap();
    get(
        &app,
        &format!("/epcis/queries/shipments/events?nextPageToken={token}"),
        Some(&acme),
    )
    .await
    .problem(400, "QueryParameterException", "BAD_QUERY_PARAMETER");
    let list = get(&app, "/epcis/queries?perPage=1", Some(&acme)).await;
    assert_eq!(list.json()[0]["name"], "everything");
    assert_eq!(
        list.header("link"),
        Some("</epcis/queries?perPage=1&nextPageToken=everything>; rel=\"next\"")
    );

    // Another organisation neither sees, runs nor deletes them, and has names of its own.
    assert_eq!(
        get(&app, "/epcis/queries", Some(&whole)).await.json(),
        json!([])
    );
    for path in [
        "/epcis/queries/shipments",
        "/epcis/queries/shipments/events",
    ] {
        get(&app, path, Some(&whole))
            .await
            .problem(404, "NoSuchResourceException", "NOT_FOUND");
    }
    let missing = get(&app, "/epcis/queries/never-made", Some(&whole))
        .await
        .json();
    let foreign = get(&app, "/epcis/queries/shipments", Some(&whole))
        .await
        .json();
    assert_eq!(
        missing["detail"]
            .as_str()
            .unwrap()
            .replace("never-made", "shipments"),
        foreign["detail"].as_str().unwrap(),
        "a foreign query reads exactly as a missing one"
    );
    delete(&app, "/epcis/queries/shipments", &whole)
        .await
        .problem(404, "NoSuchResourceException", "NOT_FOUND");
    assert_eq!(define(&app, Some(&whole), &shipments).await.status, 201);
    let theirs = get(&app, "/epcis/queries/shipments/events", Some(&whole)).await;
    assert!(
        event_ids(&theirs.json()).is_empty(),
        "whole sees none of acme's events"
    );

    // Kept across a restart; deleted by its owner only.
    app.restart().await;
    let named = get(&app, "/epcis/queries/shipments/events", Some(&acme)).await;
    assert_eq!(event_ids(&named.json()), event_ids(&direct.json()));
    let r = delete(&app, "/epcis/queries/shipments", &acme).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    get(&app, "/epcis/queries/shipments", Some(&acme))
        .await
        .problem(404, "NoSuchResourceException", "NOT_FOUND");
    assert_eq!(
        get(&app, "/epcis/queries/shipments", Some(&whole))
            .await
            .status,
        200
    );
    let top = get(&app, "/epcis", None).await.json();
    assert!(
        top["member"]
            .as_array()
            .unwrap()
            .contains(&json!("queries")),
        "{top}"
    );
}

/// Opens a WebSocket on `path`: the socket and the 101 answer's headers, or the refusal's
/// status and problem+json body.
async fn upgrade(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
) -> Result<(Ws, Vec<(String, String)>), (u16, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("ws://{}{path}", app.http)
        .into_client_request()
        .unwrap();
    if let Some(t) = token {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, resp)) => {
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            Ok((ws, headers))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            let problem = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Err((resp.status().as_u16(), problem))
        }
        Err(e) => panic!("upgrade to {path}: {e}"),
    }
}

/// Reads pushes until `last` has arrived; every event ID pushed until then, in order. Each
/// push is an EPCIS 2.0 query document naming the subscription.
async fn pushed_until(ws: &mut Ws, last: &str, schema: &jsonschema::Validator) -> Vec<String> {
    let mut ids = Vec::new();
    while !ids.iter().any(|id| id == last) {
        let push = ws_next(ws).await;
        assert_valid(schema, &push, "a subscription's push");
        let results = &push["epcisBody"]["queryResults"];
        assert_eq!(results["queryName"], "SimpleEventQuery", "{push}");
        assert!(
            results["subscriptionID"]
                .as_str()
                .is_some_and(|s| s.len() == 36),
            "{push}"
        );
        ids.extend(event_ids(&push));
    }
    ids
}

fn wholesaler_shipping(serial: &str) -> Value {
    ev::transfer(
        &now_rfc3339(),
        "shipping",
        &[sgtin(serial)],
        WHOLE_SGLN,
        ("urn:epc:id:pgln:0614141.00003", WHOLE_SGLN),
        ("urn:epc:id:pgln:0614141.00000", ACME_SGLN),
        "urn:epcglobal:cbv:bt:0614141000036:R1",
    )
}

/// Standing queries over WebSocket (issue 22): `stream=true` pushes each new event that
/// matches the query and that the caller may see, as the ledger appends it, and nothing
/// logged before; `initialRecordTime` sends the earlier ones first; another organisation
/// cannot subscribe; deleting the query or revoking the key closes the socket with a reason.
#[tokio::test]
async fn a_subscription_pushes_exactly_the_new_matching_events_its_caller_may_see() {
    let app = spawn_app().await;
    let schema = epcis_schema();
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let whole = partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    partner(&app, "nca", "REGULATOR", None, RIVAL_GLN).await;
    let regulator = epcis_key(&app, "nca", "REGULATOR").await;
    let shipping_only = json!({"EQ_bizStep": ["shipping"]});
    for token in [&acme, &regulator] {
        let d = json!({"name": "shipments", "query": shipping_only});
        assert_eq!(define(&app, Some(token), &d).await.status, 201);
    }
    let earlier = shipping(&["1"]);
    let doc = document(vec![
        commissioning("1"),
        commissioning("2"),
        earlier.clone(),
    ]);
    assert_eq!(
        capture(&app, &acme, &doc, None).await.json()["appendedCount"],
        3
    );

    let stream = "/epcis/queries/shipments/events?stream=true";
    let (mut mine, headers) = upgrade(&app, stream, Some(&acme))
        .await
        .expect("acme subscribes");
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header("gs1-epcis-version").as_deref(), Some("2.0.0"));
    assert!(header("gs1-query-min-record-time").is_some(), "{headers:?}");
    let (mut nca, _) = upgrade(&app, stream, Some(&regulator))
        .await
        .expect("nca subscribes");

    // whole's shipping matches the query but is not acme's to see; acme's next one is.
    let theirs = wholesaler_shipping("2");
    assert_eq!(
        capture(&app, &whole, &document(vec![theirs.clone()]), None)
            .await
            .json()["appendedCount"],
        1
    );
    let ours = shipping(&["2"]);
    let doc = document(vec![commissioning("3"), ours.clone(), commissioning("4")]);
    assert_eq!(
        capture(&app, &acme, &doc, None).await.json()["appendedCount"],
        3
    );
    let id = |e: &Value| rxledger_core::epcis::event_hash_id(e).unwrap();
    assert_eq!(
        pushed_until(&mut mine, &id(&ours), &schema).await,
        [id(&ours)]
    );
    assert_eq!(
        pushed_until(&mut nca, &id(&ours), &schema).await,
        [id(&theirs), id(&ours)],
        "the regulator sees every organisation's events"
    );

    // initialRecordTime: what was recorded since then first, then what is new.
    let from = format!("{stream}&initialRecordTime=2000-01-01T00:00:00Z");
    let (mut replay, _) = upgrade(&app, &from, Some(&acme)).await.expect("a replay");
    assert_eq!(
        pushed_until(&mut replay, &id(&ours), &schema).await,
        [id(&earlier), id(&ours)]
    );
    drop(replay);

    // Another organisation cannot subscribe to acme's query, nor anyone without a key.
    let (status, problem) = upgrade(&app, stream, Some(&whole))
        .await
        .expect_err("refused");
    assert_eq!(
        (status, problem["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{problem}"
    );
    let (status, problem) = upgrade(&app, stream, None).await.expect_err("refused");
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    // Controls the binding defines but rxledger does not offer are refused, not ignored.
    for (path, code) in [
        ("/epcis/queries/shipments/events", "STREAM_REQUIRED"),
        ("/epcis/queries/shipments/events?hour=1", "BAD_SUBSCRIPTION"),
        (
            "/epcis/queries/shipments/events?stream=true&perPage=5",
            "BAD_SUBSCRIPTION",
        ),
    ] {
        let (status, problem) = upgrade(&app, path, Some(&acme)).await.expect_err(path);
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(
            problem["type"],
            "epcisException:SubscriptionControlsException"
        );
        assert_eq!(problem["code"], code, "{path}");
    }
    get(&app, stream, Some(&acme)).await.problem(
        400,
        "SubscriptionControlsException",
        "WEBSOCKET_REQUIRED",
    );

    // Deleting the query closes its subscriptions, saying why.
    let r = delete(&app, "/epcis/queries/shipments", &acme).await;
    assert_eq!(r.status, 204);
    let closed = ws_next(&mut mine).await;
    assert_eq!(closed["close"], 4404, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .unwrap()
            .starts_with("QUERY_DELETED"),
        "{closed}"
    );

    // A revoked key's subscription ends at the next event it would have been sent.
    let (token, row) = app
        .app()
        .api_keys
        .issue("nca", "REGULATOR", "to revoke", None)
        .await
        .unwrap();
    let (mut revoked, _) = upgrade(&app, stream, Some(&token))
        .await
        .expect("subscribes");
    app.app().api_keys.revoke(&row.id).await.unwrap();
    let doc = document(vec![shipping(&["3"])]);
    assert_eq!(
        capture(&app, &acme, &doc, None).await.json()["appendedCount"],
        1
    );
    let closed = ws_next(&mut revoked).await;
    assert_eq!(closed["close"], 1008, "{closed}");
    assert!(
        closed["reason"]
            .as_str()
            .unwrap()
            .starts_with("KEY_REVOKED"),
        "{closed}"
    );
    assert_eq!(
        pushed_until(&mut nca, &id(&doc["epcisBody"]["eventList"][0]), &schema)
            .await
            .len(),
        1
    );
}

/// Open subscriptions are bounded per organisation, refused before the upgrade with 429.
#[tokio::test]
async fn subscriptions_per_organisation_are_bounded() {
    let app = spawn_app().await;
    let acme = partner(&app, "acme", "MANUFACTURER", Some(GTIN_PREFIX), ACME_GLN).await;
    let whole = partner(&app, "whole", "WHOLESALER", None, WHOLE_GLN).await;
    for token in [&acme, &whole] {
        let d = json!({"name": "all", "query": {}});
        assert_eq!(define(&app, Some(token), &d).await.status, 201);
    }
    let stream = "/epcis/queries/all/events?stream=true";
    let mut held = Vec::new();
    for _ in 0..rxledger_web::epcis::subscribe::MAX_PER_ORG {
        held.push(upgrade(&app, stream, Some(&acme)).await.expect("room").0);
    }
    let (status, problem) = upgrade(&app, stream, Some(&acme)).await.expect_err("full");
    assert_eq!(status, 429, "{problem}");
    assert_eq!(
        problem["type"],
        "epcisException:SubscriptionControlsException"
    );
    assert_eq!(problem["code"], "TOO_MANY_SUBSCRIPTIONS");
    // Another organisation still has room.
    assert!(upgrade(&app, stream, Some(&whole)).await.is_ok());
}

/// A scanner's events over MQTT reach its organisation's subscription as REST captures do,
/// and so do those of a scanner enrolled after the subscription opened: what a subscriber
/// may see is asked again before each read, never fixed at the upgrade.
#[tokio::test]
async fn a_scanners_events_over_mqtt_are_pushed_even_from_a_device_enrolled_later() {
    let app = spawn_app().await;
    let schema = epcis_schema();
    let mut line1 = app.acme_with_packs(&["1"]).await;
    let acme = epcis_key(&app, "acme", "MANUFACTURER").await;
    let d = json!({"name": "commissioning", "query": {"EQ_bizStep": ["commissioning"]}});
    assert_eq!(define(&app, Some(&acme), &d).await.status, 201);
    let stream = "/epcis/queries/commissioning/events?stream=true";
    let (mut ws, _) = upgrade(&app, stream, Some(&acme))
        .await
        .expect("subscribes");

    let first = common::commission(&["2"], "L1", "2031-06-30");
    assert_eq!(
        line1.send_events(vec![first.clone()]).await.status,
        "ACCEPTED"
    );
    let id = |e: &Value| rxledger_core::epcis::event_hash_id(e).unwrap();
    assert_eq!(
        pushed_until(&mut ws, &id(&first), &schema).await,
        [id(&first)]
    );

    let key2 = app
        .enroll("acme", "MANUFACTURER", None, ACME_GLN, "line-2")
        .await;
    let mut line2 = app.device("line-2", key2).await;
    let later = common::commission(&["3"], "L1", "2031-06-30");
    assert_eq!(
        line2.send_events(vec![later.clone()]).await.status,
        "ACCEPTED"
    );
    assert_eq!(
        pushed_until(&mut ws, &id(&later), &schema).await,
        [id(&later)]
    );
}
