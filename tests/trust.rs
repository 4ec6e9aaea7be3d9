//! Issue 21, items 3 and 4, through the real server: every reason of a verdict cites every
//! entry it rests on, with proofs an anonymous caller can check and no party named; and a
//! server refuses to start on an index the log does not give.

mod common;

use common::*;
use rxledger_core::checkpoint;
use rxledger_core::merkle;
use serde_json::{Value, json};

const CASE: &str = "urn:epc:id:sscc:0614141.1234567890";
const VERIFY: &str = "query($code: String!) { verify(code: $code) { verdict reasons { code message evidence } evidence { index leafHash treeSize proof } checkpointSize checkpointNote timeline { index inherited } } }";

/// `corner`, a pharmacy with a site and an API key.
async fn pharmacy_key(app: &TestApp) -> String {
    let a = app.app();
    a.registry
        .add_organization("corner", "Corner Pharmacy", "PHARMACY")
        .await
        .unwrap();
    a.registry
        .add_site("0614141000029", "corner", "Corner")
        .await
        .unwrap();
    a.api_keys
        .issue("corner", "PHARMACY", "till", None)
        .await
        .unwrap()
        .0
}

/// Runs a state change on `serial` (or a lot recall) and returns its entry index.
async fn change(app: &TestApp, key: &str, mutation: &str) -> u64 {
    let r = app
        .graphql_as(
            Some(key),
            &format!("mutation {{ {mutation} {{ entryIndex }} }}"),
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{mutation}: {r}");
    let field = mutation.split('(').next().unwrap();
    r["data"][field]["entryIndex"].as_u64().unwrap()
}

fn pack_code(serial: &str) -> String {
    format!("(01)10614141073464(21){serial}")
}

/// Each cited index has its proof in `evidence`, and the proof verifies against the
/// checkpoint the answer names.
fn check_proofs(app: &TestApp, v: &Value, cited: &[u64]) {
    let cp = checkpoint::open_checkpoint(v["checkpointNote"].as_str().unwrap(), &app.log())
        .expect("the answer's checkpoint is signed by the log");
    assert_eq!(cp.size, v["checkpointSize"].as_u64().unwrap());
    for &index in cited {
        let e = v["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["index"].as_u64() == Some(index))
            .unwrap_or_else(|| panic!("entry {index} is cited but has no proof: {v}"));
        let leaf: merkle::Hash = hex::decode(e["leafHash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let proof: Vec<merkle::Hash> = e["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root)
            .unwrap_or_else(|err| panic!("entry {index}: {err}"));
    }
}

fn reason<'v>(v: &'v Value, code: &str) -> &'v Value {
    v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} reason: {v}"))
}

/// Four packs out of the supply chain, each a different way: (serial, verdict, the entries
/// its reason must cite). Packs 1 to 3 were commissioned at entry 0, pack 4 in lot L2 later.
async fn four_packs_out(app: &TestApp) -> [(&'static str, &'static str, Vec<u64>); 4] {
    let mut line = app.acme_with_packs(&["1", "2", "3"]).await;
    let commissioned = line
        .send_events(vec![commission(&["4"], "L2", "2031-06-30")])
        .await;
    let lot2 = commissioned.entry_index.unwrap();
    let packed = line
        .send_events(vec![firmware_sim::events::aggregation(
            &now_rfc3339(),
            "ADD",
            CASE,
            &[format!("{PACK_URN}3")],
            PLANT,
        )])
        .await;
    let stolen_case = line
        .send_events(vec![json!({
            "type": "ObjectEvent", "eventTime": now_rfc3339(), "eventTimeZoneOffset": "+00:00",
            "epcList": [CASE], "action": "OBSERVE", "disposition": "stolen",
            "readPoint": {"id": PLANT}
        })])
        .await;
    assert_eq!(stolen_case.status.as_str(), "ACCEPTED", "{stolen_case:?}");
    let (packed, stolen_case) = (
        packed.entry_index.unwrap(),
        stolen_case.entry_index.unwrap(),
    );
    let pharmacy = pharmacy_key(app).await;
    let regulator = app.regulator_key().await;
    // A destruction witnessed by the regulator happens at one of its sites.
    app.app()
        .registry
        .add_site("0614141000067", "emvo", "Inspectorate")
        .await
        .unwrap();
    let dispensed = change(
        app,
        &pharmacy,
        &format!("dispense(code: \"{}\")", pack_code("1")),
    )
    .await;
    let destroyed = change(
        app,
        &regulator,
        &format!("destroy(code: \"{}\")", pack_code("2")),
    )
    .await;
    let recalled = change(
        app,
        &regulator,
        "recallLot(gtin: \"10614141073464\", lot: \"L2\")",
    )
    .await;
    [
        ("1", "ALREADY_DISPENSED", vec![dispensed]),
        ("2", "DESTROYED", vec![destroyed]),
        // The case's theft reached the pack through the packing entry.
        ("3", "STOLEN", vec![stolen_case, packed]),
        // The lot's recall reached the pack through the commissioning that gave it its lot.
        ("4", "RECALLED", vec![recalled, lot2]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_verdicts_cite_every_entry_they_rest_on_and_name_no_party() {
    let app = spawn_app().await;
    let cases = four_packs_out(&app).await;
    let lot2 = cases[3].2[1];
    for (serial, code, cited) in cases {
        let r = app
            .graphql(VERIFY, json!({ "code": pack_code(serial) }))
            .await;
        assert!(r["errors"].is_null(), "{r}");
        let v = &r["data"]["verify"];
        assert_eq!(v["verdict"], code, "{v}");
        let evidence: Vec<u64> = reason(v, code)["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect();
        assert_eq!(evidence, cited, "{code}: {v}");
        let authentic = reason(v, "AUTHENTIC")["evidence"].clone();
        let commissioning = if serial == "4" { lot2 } else { 0 };
        assert_eq!(authentic, json!([commissioning]), "{v}");
        check_proofs(&app, v, &cited);
        check_proofs(&app, v, &[commissioning]);
        let text = v.to_string();
        for party in [
            "corner",
            "emvo",
            "acme",
            "line-1",
            "0614141000029",
            "0614141000005",
        ] {
            assert!(!text.contains(party), "{code} reveals {party}: {text}");
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_to_start_on_an_index_the_log_does_not_give() {
    let mut app = spawn_app().await;
    app.acme_with_packs(&["1"]).await;
    let pharmacy = pharmacy_key(&app).await;
    let dispensed = change(
        &app,
        &pharmacy,
        &format!("dispense(code: \"{}\")", pack_code("1")),
    )
    .await;
    let before = app.graphql(VERIFY, json!({ "code": pack_code("1") })).await;
    assert_eq!(before["data"]["verify"]["verdict"], "ALREADY_DISPENSED");
    // A clean log starts again.
    app.restart().await;
    app.app.take().unwrap().shutdown().await;

    // The issue's attack: the dispensed pack's index rows deleted behind the server's back.
    let db = rxledger_store::connect(&app.cfg.database).await.unwrap();
    use sea_orm::ConnectionTrait;
    db.conn
        .execute_unprepared(&format!(
            "DELETE FROM epcs WHERE epc = 'sgtin:10614141073464.1' AND entry_idx = {dispensed}"
        ))
        .await
        .unwrap();
    let refused = rxledger::server::start(app.cfg.clone()).await;
    let err = format!("{:#}", refused.err().expect("the start is refused"));
    assert!(
        err.contains("the index does not match the log")
            && err.contains("epcs row sgtin:10614141073464.1 in event")
            && err.contains(&format!("is missing: the entries give entry {dispensed}")),
        "{err}"
    );
}

/// With the map, the `epcs` rows verdicts read are vouched for at open (the map they give is
/// the one the log commits to), so the rest of the index check runs behind the open node:
/// appends wait for it, and a table it finds wrong (here a `commissions` row deleted, which
/// the map does not cover) refuses every append from then on, naming the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_check_runs_behind_a_vouching_map_and_a_wrong_table_stops_appends() {
    use rxledger_store::IndexCheck;
    let mut app = spawn_app().await;
    app.acme_with_packs(&["1", "2"]).await;
    let pharmacy = pharmacy_key(&app).await;

    // A clean log: the check passes behind the open node, and appends go on.
    app.restart().await;
    let mut check = app.app().ledger.index_check();
    let outcome = check
        .wait_for(|c| *c != IndexCheck::Running)
        .await
        .unwrap()
        .clone();
    assert_eq!(outcome, IndexCheck::Passed);
    let regulator = app.regulator_key().await;
    let status = index_check_status(&app, &regulator).await;
    assert_eq!(
        status["data"]["ledgerStatus"]["indexCheck"],
        json!({"state": "PASSED", "problems": null}),
        "{status}"
    );
    change(
        &app,
        &pharmacy,
        &format!("dispense(code: \"{}\")", pack_code("1")),
    )
    .await;
    app.app.take().unwrap().shutdown().await;

    // A commissions row deleted behind the server's back.
    let db = rxledger_store::connect(&app.cfg.database).await.unwrap();
    use sea_orm::ConnectionTrait;
    let deleted = db
        .conn
        .execute_unprepared("DELETE FROM commissions WHERE sgtin = 'sgtin:10614141073464.2'")
        .await
        .unwrap();
    assert_eq!(deleted.rows_affected(), 1);
    // The epcs rows are vouched for by the map: the node opens.
    app.restart().await;
    let size = app.app().ledger.head().size;
    let mut check = app.app().ledger.index_check();
    let outcome = check
        .wait_for(|c| *c != IndexCheck::Running)
        .await
        .unwrap()
        .clone();
    let IndexCheck::Failed(why) = outcome else {
        panic!("the check passed over a deleted commissions row: {outcome:?}");
    };
    assert!(
        why.contains("commissions row sgtin:10614141073464.2 is missing"),
        "{why}"
    );
    // Nothing is appended any more: a dispense is refused, and the log did not move.
    let r = app
        .graphql_as(
            Some(&pharmacy),
            &format!(
                "mutation {{ dispense(code: \"{}\") {{ entryIndex }} }}",
                pack_code("2")
            ),
            json!({}),
        )
        .await;
    assert!(!r["errors"].is_null(), "{r}");
    assert_eq!(app.app().ledger.head().size, size);
    // The operator reads why in the ledger's status.
    let status = index_check_status(&app, &regulator).await;
    let check = &status["data"]["ledgerStatus"]["indexCheck"];
    assert_eq!(check["state"], "FAILED", "{status}");
    assert!(
        check["problems"]
            .as_str()
            .unwrap()
            .contains("commissions row sgtin:10614141073464.2 is missing"),
        "{status}"
    );
    app.app.take().unwrap().shutdown().await;
}

/// `rxledger serve` opens behind a vouching map, then exits non-zero, naming the row, when
/// the background check finds a table the map does not cover wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_when_the_background_index_check_fails() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let key = rxledger_core::keys::SigningKey::generate();
    enroll_acme_cli(data, &[], &[("line-1", &key)]);
    let serve = || {
        let mut cmd = Command::new(BIN);
        cmd.args(serve_args(data, 20)).stderr(Stdio::piped());
        spawn_serve(cmd)
    };
    let mut first = serve();
    let mut line = TestDevice::connect(
        ("127.0.0.1".into(), first.mqtt_port.unwrap()),
        rxledger_core::envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key,
        &log_verifier_in(data),
    )
    .await;
    let r = line
        .send_events(vec![commission(&["1", "2"], "L1", "2031-06-30")])
        .await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    let db = rxledger_store::connect(&data.join("rxledger.db").display().to_string())
        .await
        .unwrap();
    use sea_orm::ConnectionTrait;
    db.conn
        .execute_unprepared("DELETE FROM commissions WHERE sgtin = 'sgtin:10614141073464.2'")
        .await
        .unwrap();
    drop(db);

    // It opens (spawn_serve read "listening on"), then stops on the check's finding.
    let second = serve();
    let out = tokio::task::spawn_blocking(move || second.child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the index does not match the log")
            && stderr.contains("commissions row sgtin:10614141073464.2 is missing"),
        "{stderr}"
    );
}

/// `ledgerStatus { indexCheck }` as the regulator `token` reads it.
async fn index_check_status(app: &TestApp, token: &str) -> serde_json::Value {
    app.graphql_as(
        Some(token),
        "{ ledgerStatus { indexCheck { state problems } } }",
        json!({}),
    )
    .await
}
