//! Issue 23 item 2, alert cases, through the real server over HTTP (and a WebSocket): a
//! dispense outside custody raises an alert, the alert becomes a case assigned to the brand
//! owner, and the case goes through its timers and transitions, each a signed ledger entry,
//! with a clock the test sets (no waiting). Then the start-up index check and `rxledger
//! audit` pass over a log holding the case records.

mod common;

use std::time::Duration;

use async_graphql::futures_util::{SinkExt as _, StreamExt as _};
use common::*;
use firmware_sim::events::transfer;
use rxledger_core::case;
use rxledger_store::Clock;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

const CASE_FIELDS: &str = "id alertCode pack brandOwner status rootCause escalated nextDueAt openedAt records { entryIndex action actor text rootCause alertMessage alertEvidence }";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The parties, each with an API key.
struct Parties {
    acme: String,
    rival: String,
    corner: String,
    faraway: String,
    regulator: String,
}

async fn key(app: &TestApp, org: &str, role: &str, site: Option<&str>) -> String {
    let a = app.app();
    if a.registry.organization(org).await.unwrap().is_none() {
        a.registry.add_organization(org, org, role).await.unwrap();
    }
    if let Some(gln) = site {
        a.registry.add_site(gln, org, org).await.unwrap();
    }
    a.api_keys.issue(org, role, "cases", None).await.unwrap().0
}

/// acme commissions packs 1 and 2 and ships pack 1 to the pharmacy `corner`; `faraway`, which
/// never held it, dispenses it: recorded (custody policy `warn`) with an alert.
async fn alert_raised(app: &TestApp) -> Parties {
    let mut line = app.acme_with_packs(&["1", "2"]).await;
    let shipped = line
        .send_events(vec![transfer(
            &now_rfc3339(),
            "shipping",
            &[format!("{PACK_URN}1")],
            PLANT,
            ACME,
            CORNER,
            "urn:epcglobal:cbv:bt:0614141000005:desadv-1",
        )])
        .await;
    assert_eq!(shipped.status.as_str(), "ACCEPTED", "{shipped:?}");
    let p = Parties {
        acme: key(app, "acme", "MANUFACTURER", None).await,
        rival: {
            app.app()
                .registry
                .add_organization("rival", "Rival Pharma", "MANUFACTURER")
                .await
                .unwrap();
            app.app()
                .registry
                .add_company_prefix("rival", "0614142")
                .await
                .unwrap();
            key(app, "rival", "MANUFACTURER", None).await
        },
        corner: key(app, "corner", "PHARMACY", Some("0614141000029")).await,
        faraway: key(app, "faraway", "PHARMACY", Some("0614141000036")).await,
        regulator: app.regulator_key().await,
    };
    let r = app
        .graphql_as(
            Some(&p.faraway),
            "mutation($c: String!) { dispense(code: $c) { entryIndex } }",
            json!({ "c": format!("(01){GTIN}(21)1") }),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    p
}

async fn gql(app: &TestApp, key: Option<&str>, query: &str, vars: Value) -> Value {
    app.graphql_as(key, query, vars).await
}

/// The one field of an answer that must succeed.
async fn ok(app: &TestApp, key: &str, query: &str, vars: Value) -> Value {
    let r = gql(app, Some(key), query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone()
}

/// The error code of a call that must fail.
async fn refused(app: &TestApp, key: Option<&str>, query: &str, vars: Value) -> String {
    let r = gql(app, key, query, vars).await;
    assert!(r["errors"].is_array(), "{query} should be refused: {r}");
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {r}"))
        .to_string()
}

fn one_case(id: u64) -> (String, Value) {
    (
        format!("query($id: Int!) {{ alertCase(id: $id) {{ {CASE_FIELDS} }} }}"),
        json!({ "id": id }),
    )
}

async fn case_as(app: &TestApp, key: &str, id: u64) -> Value {
    let (q, v) = one_case(id);
    ok(app, key, &q, v).await
}

fn actions(case: &Value) -> Vec<String> {
    case["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

const ANSWER: &str =
    "mutation($id: Int!, $t: String!) { answerCase(id: $id, text: $t) { status nextDueAt } }";
const REQUEST: &str = "mutation($id: Int!, $t: String!) { requestCaseInformation(id: $id, text: $t) { status nextDueAt } }";
const CLOSE: &str = "mutation($id: Int!, $c: RootCauseIn!) { closeCase(id: $id, rootCause: $c, text: \"no answer in 14 days\") { status rootCause } }";
const LIST: &str = "query($f: AlertCaseFilter) { alertCases(filter: $f) { id alertCode brandOwner status escalated } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_becomes_a_case_the_brand_owner_answers_and_the_timers_escalate() {
    let clock = Clock::manual(rxledger_store::now_ms());
    let mut app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.cases.enabled = true;
        cfg.cases.clock = clock.clone();
        // The test sweeps itself; the task's own tick must not race its clock moves.
        cfg.cases.sweep_every = Duration::from_secs(24 * 3600);
        cfg.map = true;
    })
    .await;
    let p = alert_raised(&app).await;
    let cases = app.app().cases.clone();
    cases.sweep().await.unwrap();

    // The alert is a case assigned to acme, seen by acme and the regulator only.
    let listed = ok(&app, &p.acme, LIST, json!({})).await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["alertCode"], "DISPENSED_OUTSIDE_CUSTODY");
    assert_eq!(listed[0]["brandOwner"], "acme");
    let id = listed[0]["id"].as_u64().unwrap();
    let c = case_as(&app, &p.regulator, id).await;
    assert_eq!(c["status"], "OPEN");
    assert_eq!(c["pack"], format!("sgtin:{GTIN}.1"));
    assert_eq!(actions(&c), ["OPENED"]);
    assert!(
        c["records"][0]["alertMessage"]
            .as_str()
            .unwrap()
            .contains("faraway"),
        "{c}"
    );
    let opened = rxledger_core::epcis::parse_time(c["openedAt"].as_str().unwrap()).unwrap();
    let due = rxledger_core::epcis::parse_time(c["nextDueAt"].as_str().unwrap()).unwrap();
    assert_eq!(due - opened, 48 * HOUR);
    // A second sweep opens nothing more.
    assert!(cases.sweep().await.unwrap().opened.is_empty());

    // Nobody else sees it or acts on it.
    assert_eq!(ok(&app, &p.rival, LIST, json!({})).await, json!([]));
    let (q, v) = one_case(id);
    assert_eq!(
        refused(&app, Some(&p.rival), &q, v.clone()).await,
        "NOT_FOUND"
    );
    let answer = json!({ "id": id, "t": "ours?" });
    assert_eq!(
        refused(&app, Some(&p.rival), ANSWER, answer.clone()).await,
        "NOT_FOUND"
    );
    for pharmacy in [&p.corner, &p.faraway] {
        assert_eq!(
            refused(&app, Some(pharmacy), LIST, json!({})).await,
            "FORBIDDEN"
        );
        assert_eq!(
            refused(&app, Some(pharmacy), &q, v.clone()).await,
            "FORBIDDEN"
        );
        assert_eq!(
            refused(&app, Some(pharmacy), ANSWER, answer.clone()).await,
            "FORBIDDEN"
        );
    }
    assert_eq!(
        refused(&app, None, LIST, json!({})).await,
        "UNAUTHENTICATED"
    );
    // The brand owner neither asks itself for information nor closes NO_RESPONSE.
    let request = json!({ "id": id, "t": "batch record and scanner log, please" });
    assert_eq!(
        refused(&app, Some(&p.acme), REQUEST, request.clone()).await,
        "CASE_NOT_ALLOWED"
    );
    let no_response = json!({ "id": id, "c": "NO_RESPONSE" });
    assert_eq!(
        refused(&app, Some(&p.acme), CLOSE, no_response.clone()).await,
        "CASE_NOT_ALLOWED"
    );
    // Every text is bounded.
    let long = json!({ "id": id, "t": "x".repeat(case::MAX_TEXT + 1) });
    assert_eq!(
        refused(&app, Some(&p.acme), ANSWER, long).await,
        "BAD_REQUEST"
    );

    // 48 hours without an answer: one reminder, not a minute before. (The server's own timer
    // task may be the one that sweeps: what counts is the case's records.)
    clock.advance(48 * HOUR - 60_000);
    cases.sweep().await.unwrap();
    assert_eq!(actions(&case_as(&app, &p.acme, id).await), ["OPENED"]);
    clock.advance(60_000);
    cases.sweep().await.unwrap();
    let reminded = case_as(&app, &p.acme, id).await;
    assert_eq!(actions(&reminded), ["OPENED", "REMINDED"]);
    assert_eq!(reminded["records"][1]["actor"], case::NODE_ACTOR);

    // acme answers: the timers stop, however long nobody looks.
    let answered = ok(
        &app,
        &p.acme,
        ANSWER,
        json!({ "id": id, "t": "a scanner fault at corner" }),
    )
    .await;
    assert_eq!(answered, json!({ "status": "OPEN", "nextDueAt": null }));
    clock.advance(30 * DAY);
    cases.sweep().await.unwrap();
    assert_eq!(actions(&case_as(&app, &p.acme, id).await).len(), 3);

    // The regulator asks for information: the timers start again, and a node that looked
    // only 15 days later makes every transition due, in order.
    let asked = ok(&app, &p.regulator, REQUEST, request).await;
    assert_eq!(asked["status"], "INFORMATION_REQUESTED");
    clock.advance(15 * DAY);
    cases.sweep().await.unwrap();
    let late = case_as(&app, &p.regulator, id).await;
    assert_eq!(
        actions(&late)[3..],
        ["INFORMATION_REQUESTED", "REMINDED", "REMINDED", "ESCALATED"]
    );
    assert_eq!(
        (&late["escalated"], &late["nextDueAt"]),
        (&json!(true), &Value::Null)
    );
    let escalated = ok(
        &app,
        &p.regulator,
        LIST,
        json!({ "f": { "escalated": true } }),
    )
    .await;
    assert_eq!(escalated[0]["id"].as_u64(), Some(id), "{escalated}");
    assert_eq!(
        ok(
            &app,
            &p.regulator,
            LIST,
            json!({ "f": { "escalated": false } })
        )
        .await,
        json!([])
    );

    // The regulator follows changes live, and closes the case NO_RESPONSE.
    let mut ws = subscribe(&app, &p.regulator).await;
    let mut live = false;
    for _ in 0..10 {
        ok(
            &app,
            &p.regulator,
            ANSWER,
            json!({ "id": id, "t": "following up" }),
        )
        .await;
        if let Some(change) = next_change(&mut ws).await {
            assert_eq!(change["record"]["action"], "COMMENTED", "{change}");
            assert_eq!(change["case"]["id"].as_u64(), Some(id));
            live = true;
            break;
        }
    }
    assert!(live, "the subscription never saw a change");
    let closed = ok(&app, &p.regulator, CLOSE, no_response).await;
    assert_eq!(
        closed,
        json!({ "status": "CLOSED", "rootCause": "NO_RESPONSE" })
    );
    let change = loop {
        let c = next_change(&mut ws).await.expect("the closing arrives");
        if c["record"]["action"] != "COMMENTED" {
            break c;
        }
    };
    assert_eq!(change["record"]["action"], "CLOSED");
    assert_eq!(change["case"]["rootCause"], "NO_RESPONSE");
    assert_eq!(
        refused(
            &app,
            Some(&p.acme),
            ANSWER,
            json!({ "id": id, "t": "late" })
        )
        .await,
        "CASE_CLOSED"
    );

    // Every transition is a desk entry sealed by the log key, signed by whoever acted.
    let c = case_as(&app, &p.regulator, id).await;
    let mut expected: Vec<&str> = vec![
        "OPENED",
        "REMINDED",
        "ANSWERED",
        "INFORMATION_REQUESTED",
        "REMINDED",
        "REMINDED",
        "ESCALATED",
    ];
    let comments = actions(&c).len() - expected.len() - 1;
    expected.extend(std::iter::repeat_n("COMMENTED", comments));
    expected.push("CLOSED");
    assert_eq!(actions(&c), expected);
    check_entries(&app, &p.regulator, &c).await;

    // The start-up index check and the offline audit recognise the records.
    app.restart().await;
    assert_eq!(case_as(&app, &p.acme, id).await["status"], "CLOSED");
    if let Some(a) = app.app.take() {
        a.shutdown().await;
    }
    assert_audit_passes(app.dir.path(), &[]);
}

/// Each record's entry: kind 3, the actor's signer, bytes that open with the log key to the
/// record the case shows.
async fn check_entries(app: &TestApp, regulator: &str, case: &Value) {
    use base64::Engine as _;
    let log = app.log();
    for r in case["records"].as_array().unwrap() {
        let index = r["entryIndex"].as_i64().unwrap();
        let e = ok(
            app,
            regulator,
            "query($f: Int!) { entries(from: $f, count: 1) { kind signer dataBase64 } }",
            json!({ "f": index }),
        )
        .await;
        let e = &e[0];
        assert_eq!(e["kind"], 3, "{e}");
        let signer = match r["actor"].as_str().unwrap() {
            case::NODE_ACTOR => "log:desk".to_string(),
            org => format!("org:{org}"),
        };
        assert_eq!(e["signer"], signer.as_str());
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(e["dataBase64"].as_str().unwrap())
            .unwrap();
        let record = case::open_record(&bytes, &log).unwrap();
        assert_eq!(record.action.as_str(), r["action"].as_str().unwrap());
        assert!(rxledger_core::trace::is_record(&bytes));
    }
}

/// A graphql-transport-ws subscription to `alertCaseChanges` with `key`.
async fn subscribe(app: &TestApp, key: &str) -> Ws {
    let mut req = format!("ws://{}/graphql/ws", app.http)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {key}")}});
    ws.send(Message::text(init.to_string())).await.unwrap();
    let ack = next_message(&mut ws, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let sub = json!({"type": "subscribe", "id": "1", "payload": {"query":
        "subscription { alertCaseChanges { case { id status rootCause } record { action actor } } }"}});
    ws.send(Message::text(sub.to_string())).await.unwrap();
    ws
}

async fn next_message(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(serde_json::from_str(&t).unwrap()),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the WebSocket ended: {other:?}"),
            Err(_) => return None,
        }
    }
}

/// The next case change streamed, if one comes within half a second (a subscription is live
/// only once the server has polled it, which the protocol does not acknowledge).
async fn next_change(ws: &mut Ws) -> Option<Value> {
    let m = next_message(ws, Duration::from_millis(500)).await?;
    assert_eq!(m["type"], "next", "{m}");
    Some(m["payload"]["data"]["alertCaseChanges"].clone())
}

/// A pharmacy may not subscribe; an alert about a pack of an unregistered prefix opens a case
/// nobody is assigned to, escalated at once and the regulator's alone.
#[tokio::test]
async fn an_unassigned_case_is_the_regulators_and_a_pharmacy_sees_no_changes() {
    let clock = Clock::manual(rxledger_store::now_ms());
    let app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.cases.enabled = true;
        cfg.cases.clock = clock.clone();
        cfg.cases.sweep_every = Duration::from_secs(24 * 3600);
    })
    .await;
    let p = alert_raised(&app).await;
    // An alert about a pack whose GTIN no organisation owns (prefix 0999999).
    app.app()
        .alerts
        .record(vec![rxledger_store::NewAlert {
            code: "DISPENSED_TWICE".into(),
            severity: rxledger_store::Severity::Warning,
            subjects: vec!["sgtin:10999999000016.7".into()],
            message: "dispensed twice".into(),
            evidence: vec![1],
            raw: None,
        }])
        .await
        .unwrap();
    app.app().cases.sweep().await.unwrap();
    let all = ok(&app, &p.regulator, LIST, json!({})).await;
    let orphan = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["alertCode"] == "DISPENSED_TWICE")
        .unwrap_or_else(|| panic!("{all}"));
    assert!(orphan["brandOwner"].is_null());
    assert_eq!(orphan["escalated"], true);
    let mine = ok(&app, &p.acme, LIST, json!({})).await;
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|c| c["brandOwner"] == "acme"),
        "{mine}"
    );
    clock.advance(30 * DAY);
    app.app().cases.sweep().await.unwrap();
    let (q, v) = one_case(orphan["id"].as_u64().unwrap());
    let orphan = ok(&app, &p.regulator, &q, v).await;
    assert_eq!(actions(&orphan), ["OPENED"], "nobody to remind");

    let mut ws = subscribe(&app, &p.corner).await;
    let m = next_message(&mut ws, Duration::from_secs(20))
        .await
        .unwrap();
    let err = if m["payload"].is_array() {
        &m["payload"][0]
    } else {
        &m["payload"]["errors"][0]
    };
    assert_eq!(err["extensions"]["code"], "FORBIDDEN", "{m}");
    app.stop().await;
}
