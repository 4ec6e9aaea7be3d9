//! A pharmacy client written against the committed `graphql/schema.graphql` only: plain
//! GraphQL over HTTP, as any pharmacy software would do it.

mod common;

use common::*;
use serde_json::{Value, json};

const VERIFY: &str = "query($code: String!) { verify(code: $code) { verdict dispensable reasons { code severity message evidence } product { gtin serial lot expiry } status evidence { index leafHash treeSize proof } checkpointSize } }";

fn code_of(r: &Value) -> Option<&str> {
    r["errors"][0]["extensions"]["code"].as_str()
}

async fn admin(app: &TestApp, q: &str, vars: Value) -> Value {
    let token = app
        .app()
        .first_admin_token
        .clone()
        .expect("first start printed an admin key");
    let r = app.graphql_as(Some(&token), q, vars).await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_dispense_verify_again() {
    let app = spawn_app().await;
    app.acme_with_packs(&["1001", "1002"]).await;

    admin(&app, "mutation { createOrganization(input: {id: \"corner\", name: \"Corner Pharmacy\", role: PHARMACY}) { id } }", json!({})).await;
    admin(&app, "mutation { addSite(input: {gln: \"0614141000029\", orgId: \"corner\", name: \"Corner\"}) { gln } }", json!({})).await;
    let issued = admin(
        &app,
        "mutation { issueApiKey(orgId: \"corner\", label: \"till 1\") { token role } }",
        json!({}),
    )
    .await;
    let pharmacy = issued["issueApiKey"]["token"].as_str().unwrap().to_string();
    assert_eq!(issued["issueApiKey"]["role"], "PHARMACY");

    // Anonymous verification of a genuine pack, by its DataMatrix scan with a GS separator.
    let scan = "]d2011061414107346417310630\u{1d}10L1\u{1d}211001";
    let anon = app.graphql(VERIFY, json!({ "code": scan })).await;
    assert!(anon["errors"].is_null(), "{anon}");
    let v = &anon["data"]["verify"];
    assert_eq!(v["verdict"], "AUTHENTIC", "{v}");
    assert_eq!(v["dispensable"], true);
    assert_eq!(v["product"]["lot"], "L1");

    // The pharmacy dispenses it, then scanning again shows ALREADY_DISPENSED.
    let d = app
        .graphql_as(Some(&pharmacy), "mutation($c: String!) { dispense(code: $c) { entryIndex verification { verdict dispensable } } }", json!({ "c": "https://id.gs1.org/01/10614141073464/21/1001" }))
        .await;
    assert!(d["errors"].is_null(), "{d}");
    assert_eq!(
        d["data"]["dispense"]["verification"]["verdict"],
        "ALREADY_DISPENSED"
    );
    let again = app
        .graphql_as(
            Some(&pharmacy),
            VERIFY,
            json!({ "code": "(01)10614141073464(21)1001" }),
        )
        .await;
    assert_eq!(
        again["data"]["verify"]["verdict"], "ALREADY_DISPENSED",
        "{again}"
    );
    assert_eq!(again["data"]["verify"]["dispensable"], false);
    assert!(
        !again["data"]["verify"]["evidence"]
            .as_array()
            .unwrap()
            .is_empty(),
        "the verdict cites ledger entries with proofs"
    );
    // A regulator reads the dispensing pharmacy by its name, with its id.
    let regulator = app.regulator_key().await;
    let r = app
        .graphql_as(
            Some(&regulator),
            VERIFY,
            json!({ "code": "(01)10614141073464(21)1001" }),
        )
        .await;
    let message = r["data"]["verify"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["code"] == "ALREADY_DISPENSED")
        .and_then(|x| x["message"].as_str())
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        message.starts_with("Already dispensed on ")
            && message.ends_with(" by Corner Pharmacy (corner)."),
        "{r}"
    );

    // A second dispense is refused; the same pharmacy may undo its own dispense.
    let twice = app
        .graphql_as(
            Some(&pharmacy),
            "mutation { dispense(code: \"urn:epc:id:sgtin:0614141.107346.1001\") { entryIndex } }",
            json!({}),
        )
        .await;
    assert!(code_of(&twice).is_some(), "{twice}");
    let undo = app.graphql_as(Some(&pharmacy), "mutation { undoDispense(code: \"urn:epc:id:sgtin:0614141.107346.1001\") { verification { verdict dispensable } } }", json!({})).await;
    // Active again. This pharmacy never received the pack through the supply chain, which it
    // is told as a warning that does not block dispensing.
    assert_eq!(
        undo["data"]["undoDispense"]["verification"]["verdict"], "NOT_IN_YOUR_CUSTODY",
        "{undo}"
    );
    assert_eq!(
        undo["data"]["undoDispense"]["verification"]["dispensable"], true,
        "{undo}"
    );

    // Never commissioned: a probable counterfeit.
    let fake = app
        .graphql(VERIFY, json!({ "code": "(01)10614141073464(21)FAKE1" }))
        .await;
    assert_eq!(
        fake["data"]["verify"]["verdict"], "UNKNOWN_SERIAL",
        "{fake}"
    );
    assert_eq!(fake["data"]["verify"]["dispensable"], false);

    // The pharmacy pages through its own events, EPCIS-style; the manufacturer's are not its.
    let q = "query($f: EventFilterInput, $after: String) { events(filter: $f, first: 1, after: $after) { nodes { eventId bizStep entryIndex } endCursor hasNextPage } }";
    let f = json!({ "anyEpc": "urn:epc:id:sgtin:0614141.107346.1001" });
    let p1 = app.graphql_as(Some(&pharmacy), q, json!({ "f": f })).await;
    assert_eq!(
        p1["data"]["events"]["nodes"][0]["bizStep"], "dispensing",
        "{p1}"
    );
    assert_eq!(p1["data"]["events"]["hasNextPage"], true, "{p1}");
    let p2 = app
        .graphql_as(
            Some(&pharmacy),
            q,
            json!({ "f": f, "after": p1["data"]["events"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        p2["data"]["events"]["nodes"].as_array().unwrap().len(),
        1,
        "the undo: {p2}"
    );
    assert_eq!(
        p2["data"]["events"]["hasNextPage"], false,
        "the commissioning is the manufacturer's: {p2}"
    );
    let anon_events = app.graphql(q, json!({ "f": f })).await;
    assert_eq!(code_of(&anon_events), Some("UNAUTHENTICATED"));

    // Bad input gets its documented error code.
    let bad = app
        .graphql(VERIFY, json!({ "code": "(01)10614141073465(21)1001" }))
        .await;
    assert_eq!(code_of(&bad), Some("INVALID_CODE"), "{bad}");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("check digit"),
        "{bad}"
    );
    let anon_dispense = app
        .graphql(
            "mutation { dispense(code: \"(01)10614141073464(21)1002\") { entryIndex } }",
            json!({}),
        )
        .await;
    assert_eq!(code_of(&anon_dispense), Some("UNAUTHENTICATED"));
    let expired = admin(
        &app,
        "mutation { issueApiKey(orgId: \"corner\", label: \"old\", expiresInDays: 0) { token } }",
        json!({}),
    )
    .await;
    let r = app
        .graphql_as(
            expired["issueApiKey"]["token"].as_str(),
            VERIFY,
            json!({ "code": "(01)10614141073464(21)1002" }),
        )
        .await;
    assert_eq!(code_of(&r), Some("KEY_EXPIRED"), "{r}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_has_its_own_rate_limit() {
    let app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.rate_limit = rxledger::ratelimit::RateLimit {
            per_second: 0.001,
            burst: 3.0,
        }
    })
    .await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let (other, _) = app
        .app()
        .api_keys
        .issue("admin", "ADMIN", "second", None)
        .await
        .unwrap();
    for _ in 0..3 {
        let r = app
            .graphql_as(Some(&admin), "{ me { orgId } }", json!({}))
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let body = serde_json::to_vec(&json!({ "query": "{ me { orgId } }" })).unwrap();
    let (status, resp) = http(
        app.http,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json".into()),
            ("Authorization", format!("Bearer {admin}")),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 429);
    let v: Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(code_of(&v), Some("RATE_LIMITED"), "{v}");
    // Another key, and anonymous callers, have their own buckets.
    let r = app
        .graphql_as(Some(&other), "{ me { orgId } }", json!({}))
        .await;
    assert!(r["errors"].is_null(), "{r}");
    let r = app.graphql("{ checkpoint { size } }", json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    app.stop().await;
}

/// The server leaves out the inclusion proofs and the timeline when the query does not ask for
/// them; asked for through fragments or aliases, they must still come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_and_timeline_come_back_however_they_are_asked_for() {
    let app = spawn_app().await;
    app.acme_with_packs(&["1001"]).await;
    let code = json!({ "code": "(01)10614141073464(21)1001" });

    let bare = app
        .graphql(
            "query($code: String!) { verify(code: $code) { verdict } }",
            code.clone(),
        )
        .await;
    assert_eq!(bare["data"]["verify"]["verdict"], "AUTHENTIC", "{bare}");

    let q = "query($code: String!) { verify(code: $code) { verdict ...Proofs \
             ... on Verification { steps: timeline { bizStep } } } } \
             fragment Proofs on Verification { evidence { index proof } }";
    let r = app.graphql(q, code.clone()).await;
    assert!(r["errors"].is_null(), "{r}");
    let v = &r["data"]["verify"];
    let evidence = v["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty(), "the verdict cites its entries: {v}");
    assert!(evidence[0]["proof"].is_array(), "{v}");
    assert_eq!(v["steps"][0]["bizStep"], "commissioning", "{v}");

    let plain = app
        .graphql(
            "query($code: String!) { verify(code: $code) { evidence { index } timeline { index } } }",
            code,
        )
        .await;
    assert_eq!(
        plain["data"]["verify"]["evidence"],
        v["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| json!({ "index": e["index"] }))
            .collect::<Value>(),
        "{plain}"
    );
    assert_eq!(
        plain["data"]["verify"]["timeline"].as_array().map(Vec::len),
        v["steps"].as_array().map(Vec::len),
        "{plain}"
    );
    app.stop().await;
}
