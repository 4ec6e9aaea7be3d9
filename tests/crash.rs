//! Crash safety of ingest: `kill -9` the real binary while a client publishes 10,000 events.
//!
//! Every event the client holds a receipt for must be in the ledger exactly once after the
//! restart; after the client resends what has no receipt (the exact same bytes), all 10,000
//! are there exactly once, and `rxledger audit` passes.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rxledger_core::envelope;
use rxledger_core::keys::SigningKey;
use rxledger_store::ledger::read_head;

const TOTAL: u64 = 10_000;

/// Starts `rxledger serve` on free ports and returns it with its MQTT port.
fn serve(data: &Path) -> (Child, u16) {
    let mut cmd = Command::new(BIN);
    // The device keeps up to rumqttc's 100 envelopes in flight, more than the default window.
    cmd.args(serve_args(data, 20))
        .args(["--completeness-map", "--device-window", "1000"])
        .env("RXLEDGER_LOG", "warn")
        .stderr(Stdio::null());
    let s = spawn_serve(cmd);
    (
        s.child,
        s.mqtt_port.expect("serve printed its MQTT address"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let key = SigningKey::generate();
    enroll_acme_cli(data, &[], &[("line-1", &key)]);

    let (mut server, port) = serve(data);
    let mut dev = TestDevice::connect(
        ("127.0.0.1".into(), port),
        envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key.clone(),
        &log_verifier_in(data),
    )
    .await;
    let envelopes: Vec<Vec<u8>> = (0..TOTAL)
        .map(|i| dev.envelope(vec![commission(&[&format!("C{i}")], "L1", "2030-01-31")]))
        .collect();
    for e in &envelopes {
        dev.publish(e.clone()).await;
    }
    // Kill the server once a part of the stream has been receipted.
    let mut receipts: HashMap<String, u64> = HashMap::new();
    while receipts.len() < 2_000 {
        let r = dev.next_receipt().await;
        assert!(r.status == "ACCEPTED" || r.status == "DUPLICATE", "{r:?}");
        let index = r.entry_index.unwrap();
        assert_eq!(
            *receipts.entry(r.payload_hash.clone()).or_insert(index),
            index,
            "a redelivery gets the original receipt"
        );
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    // Receipts already in flight when the process died still count as held.
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_millis(200), dev.try_next_receipt()).await
    {
        receipts.insert(r.payload_hash.clone(), r.entry_index.unwrap());
    }
    assert!(
        (receipts.len() as u64) < TOTAL,
        "the kill came before the end of the stream"
    );

    // After the restart, everything receipted is there, once, at the receipted index.
    let db = rxledger_store::connect(&data.join("rxledger.db").display().to_string())
        .await
        .unwrap();
    let (server, port) = serve(data);
    let mut server = server;
    let ledger_rows = all_entries(&db).await;
    let by_hash: HashMap<String, u64> = ledger_rows
        .iter()
        .map(|(i, d)| (envelope::payload_hash(d), *i))
        .collect();
    assert_eq!(
        by_hash.len(),
        ledger_rows.len(),
        "no envelope is in the ledger twice"
    );
    for (hash, index) in &receipts {
        assert_eq!(
            by_hash.get(hash),
            Some(index),
            "a receipted envelope is in the ledger at its receipted index"
        );
    }

    // The client resends everything without a receipt, byte for byte.
    let mut dev = TestDevice::connect(
        ("127.0.0.1".into(), port),
        envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key,
        &log_verifier_in(data),
    )
    .await;
    let missing: Vec<&Vec<u8>> = envelopes
        .iter()
        .filter(|e| !receipts.contains_key(&envelope::payload_hash(e)))
        .collect();
    for e in &missing {
        dev.publish((*e).clone()).await;
    }
    // Wait for the receipt of each resent envelope; a redelivered copy of an earlier one may
    // also produce a (DUPLICATE) receipt, which does not count.
    let mut waiting: std::collections::HashSet<String> =
        missing.iter().map(|e| envelope::payload_hash(e)).collect();
    while !waiting.is_empty() {
        let r = dev.next_receipt().await;
        assert!(r.status == "ACCEPTED" || r.status == "DUPLICATE", "{r:?}");
        waiting.remove(&r.payload_hash);
    }
    let rows = all_entries(&db).await;
    assert_eq!(rows.len() as u64, TOTAL, "all 10,000 are in the ledger");
    let distinct: std::collections::HashSet<String> = rows
        .iter()
        .map(|(_, d)| envelope::payload_hash(d))
        .collect();
    assert_eq!(distinct.len() as u64, TOTAL, "each exactly once");
    // Every other entry is a map-root entry the ledger appended with each batch.
    let map_roots = map_root_count(&db).await;
    assert!(map_roots > 0);
    assert_eq!(read_head(&db).await.unwrap().size, TOTAL + map_roots);

    server.kill().unwrap();
    server.wait().unwrap();
    assert_audit_passes(data, &[]);
}

/// The envelopes in the ledger (without its own map-root entries), by index.
async fn all_entries(db: &rxledger_store::Database) -> Vec<(u64, Vec<u8>)> {
    use rxledger_entities::entry;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    entry::Entity::find()
        .filter(entry::Column::Kind.ne(rxledger_store::ledger::EntryKind::MapRoot as i16))
        .order_by_asc(entry::Column::Idx)
        .all(&db.conn)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.idx as u64, e.data))
        .collect()
}

/// How many map-root entries the ledger holds.
async fn map_root_count(db: &rxledger_store::Database) -> u64 {
    use rxledger_entities::entry;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    entry::Entity::find()
        .filter(entry::Column::Kind.eq(rxledger_store::ledger::EntryKind::MapRoot as i16))
        .count(&db.conn)
        .await
        .unwrap()
}
