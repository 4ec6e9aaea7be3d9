//! The EPCIS 2.0 REST binding end to end: a real server, real HTTP, API keys issued by the
//! server's own store. Capture goes through the ledger's one append; queries see what GraphQL
//! `events` shows each caller; every refusal is problem+json with its GS1 exception type.

mod common;

use common::{TestApp, now_rfc3339, spawn_app};
use firmware_sim::events::{self as ev, Where};
use serde_json::{Value, json};

const GTIN_PREFIX: &str = "0614141";
/// acme's plant, and the wholesaler's and a rival's sites (valid GLNs).
const ACME_GLN: &str = "0614141000005";
const ACME_SGLN: &str = "urn:epc:id:sgln:0614141.00000.0";
const WHOLE_GLN: &str = "0614141000036";
const WHOLE_SGLN: &str = "urn:epc:id:sgln:0614141.00003.0";
const RIVAL_GLN: &str = "0614141000043";

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A refusal: its status, problem+json content type, GS1 exception type and code.
    fn problem(&self, status: u16, exception: &str, code: &str) {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{body}"
        );
        assert_eq!(
            body["type"],
            format!("epcisException:{exception}"),
            "{body}"
        );
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status, "{body}");
    }
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, headers, body) = firmware_sim::http::request_with_head(
        app.http,
        &app.http.to_string(),
        method,
        path,
        &headers,
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Answer {
    call(app, "GET", path, token, &[], b"").await
}

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

/// An organization with a site (and a company prefix), and an API key for it.
async fn partner(app: &TestApp, org: &str, role: &str, prefix: Option<&str>, gln: &str) -> String {
    let r = &app.app().registry;
    r.add_organization(org, org, role).await.unwrap();
    if let Some(p) = prefix {
        r.add_company_prefix(org, p).await.unwrap();
    }
    r.add_site(gln, org, &format!("{org} site")).await.unwrap();
    key(app, org, role).await
}

async fn key(app: &TestApp, org: &str, role: &str) -> String {
    app.app()
        .api_keys
        .issue(org, role, "epcis", None)
        .await
        .unwrap()
        .0
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
    let regulator = key(&app, "nca", "REGULATOR").await;
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
    assert_eq!(app.app().ledger.head().size, before + 1);

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
    assert_eq!(app.app().ledger.head().size, before + 1);

    // The same document again: the two are recognised by their CBV hash, nothing appended.
    let job = capture(&app, &acme, &doc, Some("proceed")).await.json();
    assert_eq!(job["appendedCount"], 0, "{job}");
    assert_eq!(job["recognisedCount"], 2);
    assert_eq!(job["recognised"][0]["ledgerEntry"], before);
    assert_eq!(app.app().ledger.head().size, before + 1);

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
    let regulator = key(&app, "nca", "REGULATOR").await;
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
    let acme = key(&app, "acme", "MANUFACTURER").await;
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
