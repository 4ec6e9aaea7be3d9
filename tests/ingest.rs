//! Scanner ingest end to end: real server, real MQTT, real HTTP.
//!
//! Every case runs twice: on the embedded defaults (SQLite, rumqttd) and on PostgreSQL with
//! the machine's Mosquitto (`#[ignore]`d with the reason; CI runs them with `--ignored`).

mod common;

use base64::Engine as _;
use common::*;
use rxledger_core::checkpoint;
use rxledger_core::keys::{LogVerifier, SigningKey};
use rxledger_core::merkle;
use serde_json::{Value, json};

const GLN: &str = "0614141000005";

async fn manufacturer(app: &TestApp, device: &str) -> TestDevice {
    let prefix = app
        .app()
        .registry
        .company_prefixes()
        .await
        .unwrap()
        .is_empty()
        .then_some("0614141");
    let key = app
        .enroll("acme", "MANUFACTURER", prefix, GLN, device)
        .await;
    app.device(device, key).await
}

async fn log_size(app: &TestApp) -> i64 {
    let r = app.graphql("{ checkpoint { size } }", json!({})).await;
    r["data"]["checkpoint"]["size"].as_i64().unwrap()
}

async fn assert_alert(app: &TestApp, code: &str) {
    let alerts = app.app().alerts.list(Some(code), 10).await.unwrap();
    assert!(!alerts.is_empty(), "an alert {code} was recorded");
    assert!(
        alerts[0].raw.is_some(),
        "the alert keeps the rejected bytes"
    );
}

/// An enrolled device publishes and gets a receipt; the event is in the ledger with an
/// inclusion proof that verifies against the signed checkpoint, all checked as a client would.
async fn receipt_and_proof(backends: Backends) {
    let app = spawn_app_with(backends, |_| {}).await;
    let mut dev = manufacturer(&app, "line-1").await;
    let r = dev
        .send_events(vec![commission(&["1001", "1002"], "L1", "2030-01-31")])
        .await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    assert_eq!(r.seq, Some(1));
    let index = r.entry_index.unwrap();
    assert_eq!(r.event_ids.len(), 1);
    assert!(
        r.event_ids[0].starts_with("ni:///sha-256;") && r.event_ids[0].ends_with("?ver=CBV2.0")
    );

    let k = app
        .graphql("{ ledgerPublicKey { verifierKey } }", json!({}))
        .await;
    let verifier = LogVerifier::from_vkey(
        k["data"]["ledgerPublicKey"]["verifierKey"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let cp = checkpoint::open_checkpoint(r.checkpoint.as_ref().unwrap(), &verifier).unwrap();
    assert!(cp.size > index);

    let q = "query($i: Int!, $n: Int) { inclusionProof(index: $i, treeSize: $n) { leafHash hashes } entries(from: $i, count: 1) { dataBase64 } }";
    // Entry bytes go to the signer's organization, regulators and admins (anonymous callers
    // get the leaf hash only).
    let admin = app.app().first_admin_token.clone().unwrap();
    let p = app
        .graphql_as(Some(&admin), q, json!({ "i": index, "n": cp.size }))
        .await;
    let proof: Vec<merkle::Hash> = p["data"]["inclusionProof"]["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| merkle::hash_from_slice(&hex::decode(h.as_str().unwrap()).unwrap()).unwrap())
        .collect();
    let data = base64::engine::general_purpose::STANDARD
        .decode(p["data"]["entries"][0]["dataBase64"].as_str().unwrap())
        .unwrap();
    let leaf = merkle::leaf_hash(&data);
    assert_eq!(hex::encode(leaf), r.leaf_hash.clone().unwrap());
    merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root).unwrap();
    app.stop().await;
}

/// Each bad message is rejected with its own code, nothing is appended, an alert is recorded.
async fn rejections(backends: Backends) {
    let app = spawn_app_with(backends, |_| {}).await;
    let mut dev = manufacturer(&app, "line-1").await;
    assert_eq!(
        dev.send_events(vec![commission(&["1"], "L1", "2030-01-31")])
            .await
            .status,
        "ACCEPTED"
    );
    let before = log_size(&app).await;

    // A forged signature: the device's own MQTT login, envelopes signed by another key.
    let mut forger = app.device("line-1", dev.key.clone()).await;
    forger.key = SigningKey::generate();
    forger.seq = 100;
    let r = forger
        .send_events(vec![commission(&["2"], "L1", "2030-01-31")])
        .await;
    assert_eq!(r.code.as_deref(), Some("BAD_SIGNATURE"));

    // An unknown or revoked device cannot log in to the embedded broker at all; behind an
    // external broker without rxledger's ACL (the test's shared Mosquitto) it gets in, and
    // the server refuses its envelopes.
    let key = app
        .enroll("acme", "MANUFACTURER", None, GLN, "line-2")
        .await;
    app.app().registry.revoke_device("line-2").await.unwrap();
    for (id, key, code, serial) in [
        ("nobody", SigningKey::generate(), "UNKNOWN_DEVICE", "3"),
        ("line-2", key, "DEVICE_REVOKED", "4"),
    ] {
        match app.try_device(id, key).await {
            Err(e) => assert_eq!(backends, Backends::Embedded, "{id} refused: {e}"),
            Ok(mut d) => {
                assert_eq!(backends, Backends::External, "{id} got in");
                let r = d
                    .send_events(vec![commission(&[serial], "L1", "2030-01-31")])
                    .await;
                assert_eq!(r.code.as_deref(), Some(code));
            }
        }
    }

    let r = dev.send(b"{not json".to_vec()).await;
    assert_eq!(r.code.as_deref(), Some("MALFORMED_ENVELOPE"));

    let mut bad_gtin = commission(&["5"], "L1", "2030-01-31");
    bad_gtin["epcList"] = json!(["https://id.gs1.org/01/10614141073465/21/5"]);
    let r = dev.send_events(vec![bad_gtin]).await;
    assert_eq!(r.code.as_deref(), Some("INVALID_IDENTIFIER"), "{r:?}");
    assert!(
        r.message.as_deref().unwrap_or("").contains("check digit"),
        "{r:?}"
    );

    let mut bad_step = commission(&["6"], "L1", "2030-01-31");
    bad_step["bizStep"] = json!("teleporting");
    let r = dev.send_events(vec![bad_step]).await;
    assert_eq!(r.code.as_deref(), Some("UNKNOWN_BIZSTEP"), "{r:?}");

    // A replay: an envelope signed with a sequence number that was already used.
    let seq = dev.seq;
    dev.seq = 0;
    let r = dev
        .send_events(vec![commission(&["7"], "L1", "2030-01-31")])
        .await;
    assert_eq!(r.code.as_deref(), Some("REPLAY"), "{r:?}");
    dev.seq = seq;

    let mut huge = commission(&["8"], "L1", "2030-01-31");
    huge["ilmd"]["note"] = Value::String("x".repeat(70 * 1024));
    let r = dev.send_events(vec![huge]).await;
    assert_eq!(r.code.as_deref(), Some("OVERSIZED"), "{r:?}");

    // Business rules: a serial is commissioned once, and only by its brand owner.
    let r = dev
        .send_events(vec![commission(&["1"], "L1", "2030-01-31")])
        .await;
    assert_eq!(
        r.code.as_deref(),
        Some("SERIAL_ALREADY_COMMISSIONED"),
        "{r:?}"
    );
    let wkey = app
        .enroll("wholesale", "WHOLESALER", None, "0614141000012", "dock-1")
        .await;
    let mut wholesaler = app.device("dock-1", wkey).await;
    let mut at_own_site = commission(&["900"], "L1", "2030-01-31");
    at_own_site["readPoint"] = json!({"id": "urn:epc:id:sgln:0614141.00001.0"});
    at_own_site["bizLocation"] = json!({"id": "urn:epc:id:sgln:0614141.00001.0"});
    let r = wholesaler.send_events(vec![at_own_site]).await;
    assert_eq!(r.code.as_deref(), Some("NOT_BRAND_OWNER"), "{r:?}");

    // One envelope cannot carry the same event twice, nor commission a serial twice.
    let twice = commission(&["901"], "L1", "2030-01-31");
    let r = dev.send_events(vec![twice.clone(), twice]).await;
    assert_eq!(r.code.as_deref(), Some("DUPLICATE_EVENT"), "{r:?}");
    let mut other = commission(&["902"], "L1", "2030-01-31");
    let r = dev
        .send_events(vec![commission(&["902"], "L2", "2030-01-31"), {
            // Same serial, a different event: another (unregistered) location.
            other["bizLocation"] = json!({"id": "urn:epc:id:sgln:0614141.00099.0"});
            other
        }])
        .await;
    assert_eq!(
        r.code.as_deref(),
        Some("SERIAL_ALREADY_COMMISSIONED"),
        "{r:?}"
    );

    assert_eq!(log_size(&app).await, before, "nothing was appended");
    for code in [
        "SERIAL_ALREADY_COMMISSIONED",
        "NOT_BRAND_OWNER",
        "DUPLICATE_EVENT",
        "BAD_SIGNATURE",
        "MALFORMED_ENVELOPE",
        "INVALID_IDENTIFIER",
        "UNKNOWN_BIZSTEP",
        "REPLAY",
        "OVERSIZED",
    ] {
        assert_alert(&app, code).await;
    }
    // Only an external broker without rxledger's ACL lets these devices publish at all.
    if backends == Backends::External {
        assert_alert(&app, "UNKNOWN_DEVICE").await;
        assert_alert(&app, "DEVICE_REVOKED").await;
    }
    app.stop().await;
}

/// The same message delivered twice: one entry, and the original receipt again.
async fn duplicate_delivery(backends: Backends) {
    let app = spawn_app_with(backends, |_| {}).await;
    let mut dev = manufacturer(&app, "line-1").await;
    let payload = dev.envelope(vec![commission(&["9"], "L1", "2030-01-31")]);
    let first = dev.send(payload.clone()).await;
    let second = dev.send(payload).await;
    assert_eq!(first.status, "ACCEPTED");
    assert_eq!(second.status, "DUPLICATE");
    assert_eq!(
        (&first.entry_index, &first.leaf_hash, &first.event_ids),
        (&second.entry_index, &second.leaf_hash, &second.event_ids)
    );
    assert_eq!(app.event_entries().await, 1);
    app.stop().await;
}

/// Suspicious histories are not refused but become alerts: a pack dispensed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_dispensed_twice_raises_an_alert() {
    let app = spawn_app().await;
    let mut line = manufacturer(&app, "line-1").await;
    assert_eq!(
        line.send_events(vec![commission(&["D1"], "L1", "2031-01-31")])
            .await
            .status,
        "ACCEPTED"
    );
    let key = app
        .enroll("corner", "PHARMACY", None, "0614141000029", "till-1")
        .await;
    let mut till = app.device("till-1", key).await;
    let dispense = |minutes_ago: i64| {
        json!({
            "type": "ObjectEvent",
            "eventTime": rfc3339(rxledger_store::now_ms() - minutes_ago * 60_000),
            "eventTimeZoneOffset": "+00:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.D1"],
            "action": "OBSERVE",
            "bizStep": "dispensing",
            "disposition": "dispensed",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00002.0"}
        })
    };
    assert_eq!(
        till.send_events(vec![dispense(10)]).await.status,
        "ACCEPTED"
    );
    assert_eq!(
        till.send_events(vec![dispense(1)]).await.status,
        "ACCEPTED",
        "suspicious, not refused"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let alerts = app
            .app()
            .alerts
            .list(Some("DISPENSED_TWICE"), 10)
            .await
            .unwrap();
        if let Some(a) = alerts.first() {
            assert!(a.subject.contains("sgtin:10614141073464.D1"), "{a:?}");
            assert_eq!(
                a.evidence_entries.split_whitespace().count(),
                2,
                "both dispenses are evidence: {a:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no DISPENSED_TWICE alert within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

/// A device may report only from its own organization's registered sites (a stolen or
/// misconfigured scanner cannot speak for another party's warehouse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reports_only_from_its_own_sites() {
    let app = spawn_app().await;
    let mut line = manufacturer(&app, "line-1").await;
    assert_eq!(
        line.send_events(vec![commission(&["S1"], "L1", "2031-01-31")])
            .await
            .status,
        "ACCEPTED"
    );
    app.enroll("corner", "PHARMACY", None, "0614141000029", "till-1")
        .await;
    let observe = |site: &str| {
        json!({
            "type": "ObjectEvent",
            "eventTime": now_rfc3339(),
            "eventTimeZoneOffset": "+00:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.S1"],
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "readPoint": {"id": site}
        })
    };
    let r = line
        .send_events(vec![observe("urn:epc:id:sgln:0614141.00002.0")])
        .await;
    assert_eq!(r.status, "REJECTED");
    assert_eq!(r.code.as_deref(), Some("FOREIGN_SITE"), "{r:?}");
    assert!(r.message.as_deref().unwrap().contains("corner"), "{r:?}");
    assert_alert(&app, "FOREIGN_SITE").await;
    // Its own site, and a site nobody registered (a carrier's hub), are fine.
    for site in [
        "urn:epc:id:sgln:0614141.00000.0",
        "urn:epc:id:sgln:0614141.00099.0",
    ] {
        let r = line.send_events(vec![observe(site)]).await;
        assert_eq!(r.status, "ACCEPTED", "{site}: {r:?}");
    }
    app.stop().await;
}

/// Device clocks drift. A clock running behind (or an envelope held offline) is accepted with
/// its own times; one running more than the allowed skew ahead is refused with CLOCK_SKEW.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_device_clocks() {
    let app = spawn_app().await;
    let mut line = manufacturer(&app, "line-1").await;
    let mut sealed = |offset_ms: i64, serial: &str| {
        let at = rxledger_store::now_ms() + offset_ms;
        let mut ev = commission(&[serial], "L1", "2031-01-31");
        ev["eventTime"] = json!(rfc3339(at));
        line.seq += 1;
        let body = rxledger_core::envelope::Body {
            v: 1,
            device_id: line.id.clone(),
            seq: line.seq,
            sent_at: rfc3339(at),
            events: vec![ev],
        };
        rxledger_core::envelope::seal(&line.key, &body)
    };
    let behind = sealed(-3 * 3_600_000, "K1");
    let slightly_ahead = sealed(60_000, "K2");
    let far_ahead = sealed(3_600_000, "K3");
    let r = line.send(behind).await;
    assert_eq!(r.status, "ACCEPTED", "3 h behind: {r:?}");
    let r = line.send(slightly_ahead).await;
    assert_eq!(
        r.status, "ACCEPTED",
        "1 min ahead is within the skew: {r:?}"
    );
    let r = line.send(far_ahead).await;
    assert_eq!(r.status, "REJECTED");
    assert_eq!(r.code.as_deref(), Some("CLOCK_SKEW"), "{r:?}");
    assert!(
        r.message.as_deref().unwrap().contains("device clock"),
        "{r:?}"
    );
    app.stop().await;
}

/// The embedded broker's device window (PROTOCOL.md §9.1): what a device publishes beyond
/// its window is held back, never dropped. With a window of 4, forty envelopes published at
/// once are all receipted, and no commit appends more than 4 of them. The acks log a window
/// of 4 gets holds about 30 KiB, less than these forty receipts, so it also rolls over
/// while the device reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_device_window_is_held_back_not_lost() {
    use std::collections::{HashMap, HashSet};
    let app = spawn_app_with(Backends::Embedded, |c| c.ingest.device_window = 4).await;
    let mut line = manufacturer(&app, "line-1").await;
    let burst: Vec<Vec<u8>> = (0..40)
        .map(|i| line.envelope(vec![commission(&[&format!("W{i}")], "L1", "2031-01-31")]))
        .collect();
    for e in &burst {
        line.publish(e.clone()).await;
    }
    let mut waiting: HashSet<String> = burst
        .iter()
        .map(|e| rxledger_core::envelope::payload_hash(e))
        .collect();
    // Receipts of one commit carry the checkpoint that commit signed.
    let mut per_commit: HashMap<u64, usize> = HashMap::new();
    while !waiting.is_empty() {
        let r = line.next_receipt().await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
        if waiting.remove(&r.payload_hash) {
            let note = r
                .checkpoint
                .as_deref()
                .expect("an accepted receipt has a checkpoint");
            let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
            *per_commit.entry(size).or_default() += 1;
        }
    }
    let most = per_commit.values().max().copied().unwrap_or(0);
    assert!(
        most <= 4,
        "a commit appended {most} envelopes of a device with a window of 4: {per_commit:?}"
    );
    assert_eq!(per_commit.values().sum::<usize>(), 40);
    app.stop().await;
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $case() { super::$case(super::Backends::Embedded).await; } )*
        }
        mod external {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               #[ignore = "needs PostgreSQL and Mosquitto: set RXLEDGER_TEST_POSTGRES_URL and RXLEDGER_TEST_MQTT_URL and run with --ignored (CI does)"]
               async fn $case() { super::$case(super::Backends::External).await; } )*
        }
    };
}

both!(receipt_and_proof, rejections, duplicate_delivery);
