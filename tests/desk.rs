//! Issue 23, the regulator's and brand owner's desk, through the real server over HTTP and
//! MQTT: quarantine of a case and of a lot, who may place and lift one, and the EU codes a
//! verdict carries.

mod common;

use common::*;
use firmware_sim::events::{aggregation, transfer};
use serde_json::{Value, json};

const CASE_URN: &str = "urn:epc:id:sscc:0614141.1234567890";
/// The case above as an element string: extension digit 1, prefix, serial reference, check digit.
const CASE_CODE: &str = "(00)106141412345678908";
const VERIFY: &str = "query($code: String!) { verify(code: $code) { verdict dispensable status euAlert reasons { code evidence euAlert nmvsCode } } }";
const HOLD: &str = "mutation($code: String!) { quarantine(code: $code, reason: SUSPECT) { entryIndex target released verification { verdict dispensable } } }";
const RELEASE: &str = "mutation($code: String!) { releaseQuarantine(code: $code) { entryIndex target released verification { verdict dispensable } } }";
const DISPENSE: &str = "mutation($code: String!) { dispense(code: $code) { entryIndex } }";

fn pack(serial: &str) -> String {
    format!("(01){GTIN}(21){serial}")
}

/// The desk's parties, each with an API key: the pharmacy `corner` (site 0614141000029),
/// another pharmacy `faraway`, the brand owner `acme`, and the regulator `emvo`, each with a
/// site where its changes happen.
struct Desk {
    corner: String,
    faraway: String,
    acme: String,
    regulator: String,
    /// Ledger entries: the commissioning of packs 1–4 and the packing of 1 and 2 in the case.
    commissioned: u64,
    packed: u64,
}

async fn key(app: &TestApp, org: &str, role: &str, site: &str) -> String {
    let a = app.app();
    if a.registry.organization(org).await.unwrap().is_none() {
        a.registry.add_organization(org, org, role).await.unwrap();
    }
    a.registry.add_site(site, org, org).await.unwrap();
    a.api_keys.issue(org, role, "desk", None).await.unwrap().0
}

/// acme commissions packs 1 to 4 (lot L1), packs 1 and 2 into the case, and ships the case
/// and pack 3 to `corner`, which holds them from then on (the shipping names it the owner).
async fn desk(app: &TestApp) -> Desk {
    let mut line = app.acme_with_packs(&["1", "2", "3", "4"]).await;
    let commissioned = 0;
    let children = [format!("{PACK_URN}1"), format!("{PACK_URN}2")];
    let packed = line
        .send_events(vec![aggregation(
            &now_rfc3339(),
            "ADD",
            CASE_URN,
            &children,
            PLANT,
        )])
        .await;
    assert_eq!(packed.status.as_str(), "ACCEPTED", "{packed:?}");
    let shipped = line
        .send_events(vec![transfer(
            &now_rfc3339(),
            "shipping",
            &[CASE_URN.to_string(), format!("{PACK_URN}3")],
            PLANT,
            ACME,
            CORNER,
            "urn:epcglobal:cbv:bt:0614141000005:desadv-1",
        )])
        .await;
    assert_eq!(shipped.status.as_str(), "ACCEPTED", "{shipped:?}");
    Desk {
        corner: key(app, "corner", "PHARMACY", "0614141000029").await,
        faraway: key(app, "faraway", "PHARMACY", "0614141000036").await,
        acme: app
            .app()
            .api_keys
            .issue("acme", "MANUFACTURER", "desk", None)
            .await
            .unwrap()
            .0,
        regulator: {
            let k = app.regulator_key().await;
            app.app()
                .registry
                .add_site("0614141000067", "emvo", "Inspectorate")
                .await
                .unwrap();
            k
        },
        commissioned,
        packed: packed.entry_index.unwrap(),
    }
}

async fn call(app: &TestApp, key: Option<&str>, query: &str, code: &str) -> Value {
    app.graphql_as(key, query, json!({ "code": code })).await
}

/// The data of a mutation or query that must succeed.
async fn ok(app: &TestApp, key: Option<&str>, query: &str, code: &str) -> Value {
    let r = call(app, key, query, code).await;
    assert!(r["errors"].is_null(), "{code}: {r}");
    r["data"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone()
}

/// The error code of a call that must fail.
async fn refused(app: &TestApp, key: Option<&str>, query: &str, code: &str) -> String {
    let r = call(app, key, query, code).await;
    assert!(r["errors"].is_array(), "{code} should be refused: {r}");
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code: {r}"))
        .to_string()
}

#[tokio::test]
async fn a_quarantined_case_blocks_dispensing_until_its_custodian_releases_it() {
    let app = spawn_app().await;
    let d = desk(&app).await;

    // Someone who does not hold the case may not quarantine it; its custodian may.
    assert_eq!(
        refused(&app, Some(&d.faraway), HOLD, CASE_CODE).await,
        "NOT_IN_YOUR_CUSTODY"
    );
    let held = ok(&app, Some(&d.corner), HOLD, CASE_CODE).await;
    assert_eq!(held["target"], "CASE");
    assert!(held["verification"].is_null());
    let hold_entry = held["entryIndex"].as_u64().unwrap();
    assert_eq!(
        refused(&app, Some(&d.corner), HOLD, CASE_CODE).await,
        "STATUS_ALREADY_SET"
    );

    // Pack 1 is in the case: quarantined, with the quarantine and the packing as evidence.
    let v = ok(&app, None, VERIFY, &pack("1")).await;
    assert_eq!(v["verdict"], "QUARANTINED", "{v}");
    assert_eq!(v["status"], "QUARANTINED");
    assert_eq!(v["dispensable"], false);
    assert_eq!(v["reasons"][0]["evidence"], json!([hold_entry, d.packed]));
    assert!(v["reasons"][0]["euAlert"].is_null());
    // Pack 3 travelled beside the case, not in it.
    let v3 = ok(&app, Some(&d.corner), VERIFY, &pack("3")).await;
    assert_eq!(v3["verdict"], "AUTHENTIC", "{v3}");
    assert_eq!(
        refused(&app, Some(&d.corner), DISPENSE, &pack("1")).await,
        "QUARANTINED"
    );

    // Only who placed it, the brand owner or a regulator may lift it.
    assert_eq!(
        refused(&app, Some(&d.faraway), RELEASE, CASE_CODE).await,
        "RELEASE_NOT_ALLOWED"
    );
    assert_eq!(
        refused(&app, None, RELEASE, CASE_CODE).await,
        "UNAUTHENTICATED"
    );
    let released = ok(&app, Some(&d.corner), RELEASE, CASE_CODE).await;
    assert_eq!(released["released"], json!([hold_entry]));
    assert!(released["entryIndex"].as_u64().unwrap() > hold_entry);
    assert_eq!(
        refused(&app, Some(&d.corner), RELEASE, CASE_CODE).await,
        "NOT_QUARANTINED"
    );
    let v = ok(&app, None, VERIFY, &pack("1")).await;
    assert_eq!(
        (v["verdict"].as_str(), &v["dispensable"]),
        (Some("AUTHENTIC"), &json!(true))
    );
    ok(&app, Some(&d.corner), DISPENSE, &pack("1")).await;
    app.stop().await;
}

#[tokio::test]
async fn a_regulators_lot_quarantine_is_lifted_by_a_regulator_only() {
    let app = spawn_app().await;
    let d = desk(&app).await;
    let lot = format!("(01){GTIN}(10)L1");

    // A pharmacy holds no lot; the regulator quarantines it.
    assert_eq!(
        refused(&app, Some(&d.corner), HOLD, &lot).await,
        "NOT_IN_YOUR_CUSTODY"
    );
    let held = ok(&app, Some(&d.regulator), HOLD, &lot).await;
    assert_eq!(held["target"], "LOT");
    let lot_entry = held["entryIndex"].as_u64().unwrap();

    // Every pack of the lot, in the case or not, still at acme or not.
    for serial in ["1", "3", "4"] {
        let v = ok(&app, None, VERIFY, &pack(serial)).await;
        assert_eq!(v["verdict"], "QUARANTINED", "{serial}: {v}");
        // The lot's quarantine, and the commissioning that gave the pack its lot.
        assert_eq!(
            v["reasons"][0]["evidence"],
            json!([lot_entry, d.commissioned])
        );
    }
    // The pharmacy's own quarantine of pack 3 stacks on it, and its release lifts only its own.
    let own = ok(&app, Some(&d.corner), HOLD, &pack("3")).await;
    assert_eq!(own["verification"]["verdict"], "QUARANTINED");
    let lifted = ok(&app, Some(&d.corner), RELEASE, &pack("3")).await;
    assert_eq!(lifted["released"], json!([own["entryIndex"]]));
    assert_eq!(lifted["verification"]["verdict"], "QUARANTINED");

    // Not even the brand owner lifts a regulator's quarantine.
    assert_eq!(
        refused(&app, Some(&d.acme), RELEASE, &lot).await,
        "RELEASE_NOT_ALLOWED"
    );
    assert_eq!(
        refused(&app, Some(&d.corner), RELEASE, &pack("4")).await,
        "RELEASE_NOT_ALLOWED"
    );
    let released = ok(&app, Some(&d.regulator), RELEASE, &lot).await;
    assert_eq!(released["released"], json!([lot_entry]));
    for serial in ["1", "3", "4"] {
        let v = ok(&app, None, VERIFY, &pack(serial)).await;
        assert_eq!(v["verdict"], "AUTHENTIC", "{serial}: {v}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_device_cannot_write_a_quarantine_and_verdicts_carry_eu_codes() {
    let app = spawn_app().await;
    let mut line = app.acme_with_packs(&["1"]).await;
    let mut forged = firmware_sim::events::object_event(
        &now_rfc3339(),
        "OBSERVE",
        "inspecting",
        "active",
        &[format!("{PACK_URN}1")],
        PLANT,
    );
    forged["bizTransactionList"] = json!([{
        "type": "urn:rxledger:bt:quarantine-release",
        "bizTransaction": "urn:rxledger:ledger-entry:0",
    }]);
    let r = line.send_events(vec![forged]).await;
    assert_eq!(r.status.as_str(), "REJECTED", "{r:?}");
    assert_eq!(r.code.as_deref(), Some("API_ONLY_TRANSACTION"));

    // An unknown serial is EU alert A3 (NMVS_NC_PC_02); a batch mismatch A68.
    let v = ok(&app, None, VERIFY, &pack("99")).await;
    assert_eq!(v["euAlert"], "A3");
    assert_eq!(v["reasons"][0]["nmvsCode"], "NMVS_NC_PC_02");
    let v = ok(&app, None, VERIFY, &format!("(01){GTIN}(10)L9(21)1")).await;
    assert_eq!(
        (v["verdict"].as_str(), v["euAlert"].as_str()),
        (Some("BATCH_MISMATCH"), Some("A68"))
    );
    let v = ok(&app, None, VERIFY, &pack("1")).await;
    assert!(v["euAlert"].is_null(), "{v}");
    app.stop().await;
}

const TRACE: &str = "mutation($code: String!, $scope: TraceScopeIn!) { traceRequest(code: $code, scope: $scope, reason: SUSPECT, incidentNumber: \"FDA-3911-0042\", test: true) { request { entryIndex requester subject scope reason incidentNumber test parties } checkpointSize packs { code status owners { party { organization name gln } step entryIndex } transactions { bizStep party { organization } documents throughContainer } aggregations { container packed entryIndex } } epcisDocument evidenceBundle } }";
const REQUESTS: &str = "{ traceRequests { entryIndex requester parties } }";

async fn trace(app: &TestApp, key: &str, code: &str, scope: &str) -> Value {
    app.graphql_as(Some(key), TRACE, json!({ "code": code, "scope": scope }))
        .await
}

/// Runs `rxledger verify-bundle` on `bundle` and returns (exit code, stdout).
fn verify_bundle(dir: &std::path::Path, name: &str, bundle: &str, vkey: &str) -> (i32, String) {
    let file = dir.join(name);
    std::fs::write(&file, bundle).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("verify-bundle")
        .arg(&file)
        .args(["--verifier-key", vkey])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn a_trace_request_is_a_ledger_entry_its_parties_see_and_its_bundle_verifies_offline() {
    let app = spawn_app().await;
    let d = desk(&app).await;

    // A pharmacy may not trace; a brand owner may trace its own product.
    let r = trace(&app, &d.corner, &pack("1"), "ALL_KNOWN_OWNERS").await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FORBIDDEN", "{r}");
    let own = trace(&app, &d.acme, &pack("1"), "LAST_KNOWN_OWNER").await;
    assert!(own["errors"].is_null(), "{own}");
    let own = &own["data"]["traceRequest"];
    assert_eq!(
        own["packs"][0]["owners"][0]["party"]["organization"],
        "corner"
    );
    assert!(
        own["evidenceBundle"].is_null(),
        "raw entries are the regulators'"
    );

    let r = trace(&app, &d.regulator, &pack("1"), "TRANSACTION_INFORMATION").await;
    assert!(r["errors"].is_null(), "{r}");
    let t = &r["data"]["traceRequest"];
    let req = &t["request"];
    assert_eq!(
        (
            req["requester"].as_str(),
            req["scope"].as_str(),
            req["reason"].as_str()
        ),
        (
            Some("emvo"),
            Some("TRANSACTION_INFORMATION"),
            Some("SUSPECT")
        )
    );
    assert_eq!(
        (req["incidentNumber"].as_str(), &req["test"]),
        (Some("FDA-3911-0042"), &json!(true))
    );
    assert_eq!(req["parties"], json!(["acme", "corner"]));
    let p = &t["packs"][0];
    assert_eq!(p["status"], "IN_TRANSIT");
    let owners: Vec<(&str, &str)> = p["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["party"]["organization"].as_str().unwrap(),
                o["step"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(owners, [("acme", "COMMISSIONED"), ("corner", "SHIPPED")]);
    assert_eq!(p["owners"][1]["party"]["name"], "corner");
    assert_eq!(p["owners"][1]["party"]["gln"], "0614141000029");
    assert_eq!(p["aggregations"][0]["entryIndex"].as_u64(), Some(d.packed));
    assert_eq!(p["aggregations"][0]["packed"], true);
    let shipping = &p["transactions"][0];
    assert_eq!(shipping["bizStep"], "shipping");
    assert!(
        shipping["throughContainer"]
            .as_str()
            .unwrap()
            .contains("/00/")
    );
    assert!(
        shipping["documents"][0]
            .as_str()
            .unwrap()
            .contains("desadv-1")
    );

    // The EPCIS document holds the events the answer rests on.
    let doc: Value = serde_json::from_str(t["epcisDocument"].as_str().unwrap()).unwrap();
    assert_eq!(doc["type"], "EPCISDocument");
    let steps: Vec<&str> = doc["epcisBody"]["eventList"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["bizStep"].as_str())
        .collect();
    assert_eq!(steps, ["commissioning", "packing", "shipping"]);

    // The request is visible to the requester, the parties asked and regulators, not others.
    let request = req["entryIndex"].as_u64().unwrap();
    for (key, sees) in [
        (&d.regulator, true),
        (&d.corner, true),
        (&d.acme, true),
        (&d.faraway, false),
    ] {
        let r = app.graphql_as(Some(key), REQUESTS, json!({})).await;
        let listed = r["data"]["traceRequests"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .any(|x| x["entryIndex"].as_u64() == Some(request));
        assert_eq!(listed, sees, "{r}");
    }

    // The bundle verifies offline with the real CLI; a tampered one is refused.
    let vkey = app.log().to_vkey();
    let bundle = t["evidenceBundle"].as_str().unwrap();
    let (code, out) = verify_bundle(app.dir.path(), "bundle.json", bundle, &vkey);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("BUNDLE VERIFIED"), "{out}");
    assert!(
        out.contains(&format!("request:  entry {request} by emvo")),
        "{out}"
    );
    let mut tampered: Value = serde_json::from_str(bundle).unwrap();
    let data = tampered["entries"][0]["data"].as_str().unwrap().to_string();
    let mut bytes = base64_decode(&data);
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    tampered["entries"][0]["data"] = json!(base64_encode(&bytes));
    let (code, out) = verify_bundle(
        app.dir.path(),
        "tampered.json",
        &tampered.to_string(),
        &vkey,
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("BUNDLE REFUSED"), "{out}");
    app.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}
