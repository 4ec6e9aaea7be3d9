//! Store-and-forward against the real server: every envelope gets a receipt, an outage of
//! broker and server loses nothing and duplicates nothing, and a scenario's receipts all
//! match their expectations.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use firmware_sim::device::{Device, DeviceOptions};
use firmware_sim::events::{self, Where};
use firmware_sim::identity::Identity;
use firmware_sim::queue::Queue;
use firmware_sim::scenario::{self, Injections, ScenarioOptions};
use rxledger_core::envelope::{self, Receipt};
use rxledger_core::epcis;
use serde_json::Value;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

fn now() -> String {
    epcis::format_time(scenario::now_ms())
}

fn commission(serial: &str) -> Vec<Value> {
    let epc = format!("urn:epc:id:sgtin:0614141.107346.{serial}");
    vec![events::commissioning(
        &now(),
        &[epc],
        Where::Unrecorded,
        "L1",
        "2030-01-31",
    )]
}

fn device(
    server: &Server,
    id: &str,
    key: rxledger_core::keys::SigningKey,
    dir: &std::path::Path,
    broker: firmware_sim::Broker,
) -> Device {
    let mut o = DeviceOptions::new(
        Identity::new(id, key).unwrap(),
        broker,
        dir.join(id),
        server.log(),
    );
    o.topic_root = server.topic_root.clone();
    o.resend_after = Duration::from_secs(2);
    Device::start(o).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_envelope_gets_a_receipt_and_one_log_entry() {
    let server = Server::start().await;
    let key = server.enroll("line-1").await;
    let dir = tempfile::tempdir().unwrap();
    let dev = device(&server, "line-1", key.clone(), dir.path(), server.broker());
    const N: usize = 40;
    let mut tickets = Vec::new();
    for i in 0..N {
        tickets.push(dev.send(commission(&format!("A{i}")), now()).await.unwrap());
    }
    let mut indexes = HashSet::new();
    for (i, t) in tickets.into_iter().enumerate() {
        let seq = t.seq;
        let r = t.receipt(WAIT).await.unwrap();
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
        assert_eq!(r.seq, Some(seq));
        assert_eq!(seq, i as u64 + 1);
        assert!(indexes.insert(r.entry_index.unwrap()));
    }
    dev.flush(WAIT).await.unwrap();
    assert_eq!(server.event_entries().await, N as u64);
    assert_eq!(
        dev.stored_receipts().unwrap().len(),
        N,
        "receipts are kept on disk"
    );
    dev.shutdown().await.unwrap();

    // A device that crashed after the server committed but before it stored the receipt
    // resends the same bytes from its queue and gets the original receipt back.
    let q = Queue::open(dir.path().join("line-1")).unwrap();
    // Receipts are stored in arrival order, and envelopes may be appended in any order.
    let receipts: Vec<Receipt> = q.receipts().unwrap().collect();
    drop(q);
    let stored_payload = std::fs::read_to_string(dir.path().join("line-1/outbox.jsonl"))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned));
    if let Some(line) = stored_payload {
        let v: Value = serde_json::from_str(&line).unwrap();
        let first = receipts
            .iter()
            .find(|r| Some(r.payload_hash.as_str()) == v["hash"].as_str())
            .expect("the first envelope has a stored receipt")
            .clone();
        let crashed = tempfile::tempdir().unwrap();
        let mut q = Queue::open(crashed.path().join("line-1")).unwrap();
        q.push(1, v["payload"].as_str().unwrap().as_bytes().to_vec())
            .unwrap();
        drop(q);
        // The key only logs the device in: the bytes are the old ones.
        let dev = device(&server, "line-1", key, crashed.path(), server.broker());
        dev.flush(WAIT).await.unwrap();
        let again: Vec<Receipt> = dev.stored_receipts().unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].status, "DUPLICATE");
        assert_eq!(again[0].entry_index, first.entry_index);
        dev.shutdown().await.unwrap();
        assert_eq!(server.event_entries().await, N as u64, "no duplicate entry");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_loses_nothing_and_duplicates_nothing() {
    let mut server = Server::start().await;
    let key = server.enroll("line-1").await;
    let mut proxy = Proxy::start(addr(&server.broker())).await;
    let dir = tempfile::tempdir().unwrap();
    let dev = device(&server, "line-1", key.clone(), dir.path(), proxy.broker());

    for i in 0..10 {
        let t = dev.send(commission(&format!("B{i}")), now()).await.unwrap();
        assert_eq!(t.receipt(WAIT).await.unwrap().status, "ACCEPTED");
    }

    // The server goes down behind a live broker: the broker PUBACKs (in memory only), no
    // receipt comes, and the device keeps every envelope.
    server.stop().await;
    let mut held = Vec::new();
    for i in 10..15 {
        held.push(dev.send(commission(&format!("B{i}")), now()).await.unwrap());
    }
    let deadline = std::time::Instant::now() + WAIT;
    while dev.published() < 15 {
        assert!(
            std::time::Instant::now() < deadline,
            "published to the broker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Then the broker becomes unreachable too. The device keeps scanning.
    proxy.stop().await;
    for i in 15..20 {
        held.push(dev.send(commission(&format!("B{i}")), now()).await.unwrap());
    }
    assert_eq!(dev.unreceipted(), 10);
    // The device process restarts in the middle of the outage, from its queue on disk.
    dev.shutdown().await.unwrap();
    let dev = device(&server, "line-1", key, dir.path(), proxy.broker());
    assert_eq!(dev.unreceipted(), 10);
    assert_eq!(dev.next_seq(), 21, "sequence numbers survive the restart");
    for i in 20..25 {
        dev.send(commission(&format!("B{i}")), now()).await.unwrap();
    }

    // Server back (same database and key, a new embedded broker port), broker reachable
    // again at the device's address.
    server.restart().await;
    proxy.restart(addr(&server.broker())).await;
    dev.flush(WAIT).await.unwrap();
    assert!(dev.connected(WAIT).await);

    assert_eq!(
        server.event_entries().await,
        25,
        "nothing lost, nothing twice"
    );
    let receipts = dev.stored_receipts().unwrap();
    let accepted: HashSet<&str> = receipts
        .iter()
        .filter(|r| r.status == "ACCEPTED" || r.status == "DUPLICATE")
        .map(|r| r.payload_hash.as_str())
        .collect();
    assert_eq!(accepted.len(), 25);
    assert!(
        receipts.iter().all(|r| r.status != "REJECTED"),
        "{receipts:?}"
    );
    for t in held {
        assert!(accepted.contains(t.hash.as_str()));
        assert_eq!(envelope::payload_hash(&t.payload), t.hash);
    }
    dev.shutdown().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_receipts_meet_every_expectation() {
    let server = Server::start().await;
    let mut opts = ScenarioOptions::new("http://unused", server.broker(), None);
    opts.packs = 14;
    opts.pharmacies = 3;
    // Counterfeit expectations need the verdict engine's ingest rules; the rest is transport.
    opts.inject = Injections::parse("forged,replay,revoked,out-of-order,offline").unwrap();
    opts.topic_root = server.topic_root.clone();
    opts.offline_for = Duration::ZERO;
    opts.receipt_timeout = WAIT;
    opts.check_verdicts = false;
    let report = scenario::run_scenario_with(&RegistryApi(server.app()), opts)
        .await
        .unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert_eq!(report.log_growth as usize, report.accepted);
    assert_eq!(report.duplicate, 1);
    // The revoked scanner's dispense: a DEVICE_REVOKED receipt, or cut off by the gate's
    // revocation sweep before the receipt reached it.
    assert_eq!(report.rejected + report.cut_off, 3, "{}", report.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_counts_every_receipt() {
    let server = Server::start().await;
    let mut devices = Vec::new();
    for i in 0..3 {
        let id = format!("load-{i}");
        let key = server.enroll(&id).await;
        devices.push(firmware_sim::load::LoadDevice {
            identity: Identity::new(&id, key).unwrap(),
            company_prefix: "0614141".into(),
            ordinal: i,
        });
    }
    let report = firmware_sim::run_load(firmware_sim::LoadOptions {
        mqtt: server.broker(),
        topic_root: server.topic_root.clone(),
        log_key: Some(*server.log().public_key()),
        devices,
        rate: 200.0,
        duration: Duration::from_millis(500),
        drain: WAIT,
    })
    .await
    .unwrap();
    assert!(report.sent >= 90, "{}", report.summary());
    assert_eq!(report.accepted, report.sent, "{}", report.summary());
    assert_eq!((report.rejected, report.missing), (0, 0));
    assert_eq!(report.latency.count, report.sent);
    assert!(report.latency.quantile(0.99) <= report.latency.max_us);
    assert_eq!(server.event_entries().await, report.sent);
}

/// The whole scenario through the GraphQL API, every injection, every verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_scenario_over_graphql() {
    let server = Server::start().await;
    let token = server
        .app()
        .first_admin_token
        .clone()
        .expect("a fresh server has a first admin key");
    let mut opts = ScenarioOptions::new(
        &format!("http://{}", server.app().http_addr),
        server.broker(),
        Some(token),
    );
    opts.packs = 14;
    opts.pharmacies = 3;
    opts.inject = Injections::all();
    opts.topic_root = server.topic_root.clone();
    opts.offline_for = Duration::ZERO;
    opts.receipt_timeout = WAIT;
    let report = scenario::run_scenario(opts).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
}
