//! Issue 24 through the real server: a verdict proves it read every entry about its pack, its
//! case and its lot (map proofs against the map root the cited checkpoint covers), a client
//! checks it offline with `rxledger verify-answer`, and an operator who hides an event, from
//! the answer or from the index, is caught with the identifier named.

mod common;

use common::*;
use rxledger_graphql::verify::{self, Wanted};
use rxledger_graphql::{Caller, Services};
use serde_json::{Value, json};

const CASE: &str = "urn:epc:id:sscc:0614141.1234567890";
const PACK: &str = "sgtin:10614141073464.1";
const VERIFY: &str = "query($code: String!) { verify(code: $code) { verdict reasons { code evidence } \
    evidence { index leafHash treeSize proof } checkpointSize checkpointNote \
    completeness { mapEntry { index dataBase64 proof } identifiers { identifier \
    entries { index leafHash } siblings leaf { key count head } } } } }";

fn code(serial: &str) -> String {
    format!("(01)10614141073464(21){serial}")
}

/// Pack 1 commissioned, packed into a case, the case observed, and the pack dispensed by a
/// pharmacy through the API; returns the dispensing entry's index.
async fn history(app: &TestApp) -> u64 {
    let mut line = app.acme_with_packs(&["1", "2"]).await;
    let packed = line
        .send_events(vec![firmware_sim::events::aggregation(
            &now_rfc3339(),
            "ADD",
            CASE,
            &[format!("{PACK_URN}1")],
            PLANT,
        )])
        .await;
    assert_eq!(packed.status, "ACCEPTED", "{packed:?}");
    let a = app.app();
    a.registry
        .add_organization("corner", "Corner Pharmacy", "PHARMACY")
        .await
        .unwrap();
    a.registry
        .add_site("0614141000029", "corner", "Corner")
        .await
        .unwrap();
    let (key, _) = a
        .api_keys
        .issue("corner", "PHARMACY", "till", None)
        .await
        .unwrap();
    let r = app
        .graphql_as(
            Some(&key),
            &format!(
                "mutation {{ dispense(code: \"{}\") {{ entryIndex }} }}",
                code("1")
            ),
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    r["data"]["dispense"]["entryIndex"].as_u64().unwrap()
}

/// Saves the answer and its checkpoint and runs `rxledger verify-answer` on them.
fn verify_answer_cli(app: &TestApp, v: &Value, name: &str) -> (bool, String) {
    let answer = app.dir.path().join(format!("{name}.json"));
    let cp = app.dir.path().join(format!("{name}.checkpoint"));
    std::fs::write(&answer, v.to_string()).unwrap();
    std::fs::write(&cp, v["checkpointNote"].as_str().unwrap()).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("verify-answer")
        .arg(&answer)
        .arg("--checkpoint")
        .arg(&cp)
        .arg("--verifier-key")
        .arg(app.log().to_vkey())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn identifier<'v>(v: &'v mut Value, id: &str) -> &'v mut Value {
    v["completeness"]["identifiers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|i| i["identifier"] == id)
        .unwrap_or_else(|| panic!("{id} is not among the identifiers"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_proves_it_saw_everything_and_a_hidden_event_is_named() {
    let app = spawn_app_with(Backends::Embedded, |c| c.map = true).await;
    let dispensed = history(&app).await;
    let r = app.graphql(VERIFY, json!({ "code": code("1") })).await;
    assert!(r["errors"].is_null(), "{r}");
    let v = r["data"]["verify"].clone();
    assert_eq!(v["verdict"], "ALREADY_DISPENSED", "{v}");

    // The pack, its case, its lot and its GTIN class, each with what the verdict read.
    let ids: Vec<&str> = v["completeness"]["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["identifier"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{v}");
    assert_eq!(
        (ids[0], ids[2], ids[3]),
        (PACK, "lgtin:10614141073464.L1", "gtin:10614141073464"),
        "{v}"
    );
    assert!(ids[1].starts_with("sscc:"), "{v}");
    let case_id = ids[1].to_string();
    let pack_entries: Vec<u64> = identifier(&mut v.clone(), PACK)["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert!(pack_entries.contains(&dispensed), "{v}");
    let (ok, out) = verify_answer_cli(&app, &v, "honest");
    assert!(ok && out.contains("ANSWER VERIFIED"), "{out}");
    assert!(out.contains(&format!("complete:    {PACK} (")), "{out}");

    // The resolver's page (no script) runs the same check and says so.
    let (status, page) = http(
        app.http,
        "GET",
        "/01/10614141073464/21/1",
        &[("Accept", "text/html".to_string())],
        b"",
    )
    .await;
    let page = String::from_utf8_lossy(&page);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"<p class="witness witness-ok" id="completeness-status">Complete: "#),
        "{page}"
    );

    // The operator hides the dispensing from the answer: the list no longer matches the map.
    let mut hidden = v.clone();
    let entries = identifier(&mut hidden, PACK)["entries"]
        .as_array_mut()
        .unwrap();
    entries.retain(|e| e["index"].as_u64() != Some(dispensed));
    let (ok, out) = verify_answer_cli(&app, &hidden, "hidden");
    assert!(!ok, "{out}");
    assert!(
        out.contains("ANSWER REFUSED") && out.contains(&format!("{PACK}: incomplete history")),
        "{out}"
    );

    // Or claims the case has no history at all (an empty list, the leaf removed).
    let mut orphan = v.clone();
    let case = identifier(&mut orphan, &case_id);
    case["entries"] = json!([]);
    case["leaf"] = Value::Null;
    let (ok, out) = verify_answer_cli(&app, &orphan, "orphan");
    assert!(
        !ok && out.contains(&format!("{case_id}: the map proof does not verify")),
        "{out}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_that_hides_an_event_gives_answers_that_fail_naming_the_pack() {
    let mut app = spawn_app_with(Backends::Embedded, |c| c.map = true).await;
    let dispensed = history(&app).await;
    // The monitor's alert cases may still append after the history's receipts; the note
    // to check against is the head the reopened ledger serves, read below.
    app.app.take().unwrap().shutdown().await;

    // A malicious operator deletes the dispensing's index row and serves from the table with
    // the start-up check left out (its own build): the verdict no longer sees the dispensing.
    let db = rxledger_store::connect(&app.cfg.database).await.unwrap();
    use sea_orm::ConnectionTrait;
    db.conn
        .execute_unprepared(&format!(
            "DELETE FROM epcs WHERE epc = '{PACK}' AND entry_idx = {dispensed}"
        ))
        .await
        .unwrap();
    let key = rxledger::keyfile::load(&app.dir.path().join("log.key")).unwrap();
    let origin = app.cfg.origin.clone().unwrap();
    let options = rxledger_store::LedgerOptions { map: true };
    let services = Services {
        ledger: std::sync::Arc::new(
            rxledger_store::Ledger::open_with(db.clone(), key, &origin, options)
                .await
                .unwrap(),
        ),
        registry: rxledger_store::Registry::new(db.clone()),
        alerts: rxledger_store::Alerts::new(db.clone()),
        api_keys: rxledger_store::ApiKeys::new(db.clone()),
        products: rxledger_store::Products::new(db.clone()),
        // Reads that walk the (tampered) `epcs` table.
        packs: std::sync::Arc::new(rxledger_store::packs::Packs::new(db)),
        verify_latency: Default::default(),
    };
    let note = services.ledger.head().note;
    let answer = verify::verification(&services, &Caller::Anonymous, &code("1"), Wanted::ALL)
        .await
        .unwrap();
    assert_eq!(answer.verdict, "AUTHENTIC");
    let v = serde_json::to_value(&answer).unwrap();
    assert_eq!(v["checkpointNote"], note.as_str());
    let verifier = services.ledger.verifier().to_vkey();
    let refused = rxledger::verify_answer::verify_answer(&v, &note, Some(&verifier))
        .expect_err("an answer from the tampered index fails");
    assert!(
        refused.contains(&format!("{PACK}: incomplete history")),
        "{refused}"
    );
    // The auditor names the missing row; the map's own roots still match the entries.
    let report = rxledger_store::audit::audit(
        services.ledger.database(),
        services.ledger.verifier(),
        None,
        |_, _| {},
    )
    .await
    .unwrap();
    assert!(report.map_roots_checked >= 3, "{report:?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains(&format!("epcs row {PACK} in event"))),
        "{report:?}"
    );
}
