//! Scale-out: two `rxledger serve` nodes on one PostgreSQL and one external broker share the
//! ingest through an MQTT shared subscription; one is killed (`kill -9`) mid-stream.
//!
//! Afterwards every receipted envelope is in the ledger exactly once at its receipted index,
//! the surviving node took over sequencing, and `rxledger audit` passes, which checks every
//! checkpoint either node ever signed against the one tree.
//!
//! Failover: once one of two nodes is killed, every envelope published after the kill is
//! receipted by the survivor without its device resending it, on Mosquitto and on the embedded
//! broker (a node leaves no session behind for the broker to route envelopes to).
//!
//! Needs PostgreSQL (`RXLEDGER_TEST_POSTGRES_URL`), and for the Mosquitto runs a broker
//! (`RXLEDGER_TEST_MQTT_URL`); `.ci/run` runs them with `--ignored postgres:: external`.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use rxledger_core::envelope;
use rxledger_core::keys::SigningKey;
use rxledger_store::testdb::TempDb;

const DEVICES: usize = 4;
const PER_DEVICE: usize = 400;

/// A node; killed when dropped so a failing test leaves no process behind.
struct Node(Child, SocketAddr, Option<u16>);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node on `db`; `mqtt` says which broker (`--mqtt-url URL`, or `--mqtt-listen ADDR` for an
/// embedded one).
fn serve(data: &Path, db: &str, mqtt: [&str; 2], root: &str, id: &str) -> Node {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--http-listen",
        "127.0.0.1:0",
        "--batch-wait-ms",
        "20",
    ])
    .args(["--database", db])
    .args(mqtt)
    .args(["--mqtt-topic-root", root])
    .args(["--node-id", id, "--data-dir"])
    .arg(data)
    .env("RXLEDGER_LOG", "info")
    .stderr(std::fs::File::create(data.join(format!("{id}.log"))).unwrap());
    let s = spawn_serve(cmd);
    Node(s.child, s.http, s.mqtt_port)
}

async fn checkpoint_size(http_addr: SocketAddr) -> u64 {
    let body = br#"{"query":"{ checkpoint { size } }"}"#;
    let (status, resp) = http(
        http_addr,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json".into())],
        body,
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    v["data"]["checkpoint"]["size"].as_u64().unwrap()
}

mod external {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and an MQTT broker: set RXLEDGER_TEST_POSTGRES_URL and RXLEDGER_TEST_MQTT_URL"]
    async fn a_killed_node_leaves_no_session_behind_on_mosquitto() {
        let mqtt = std::env::var(MQTT_ENV).expect("RXLEDGER_TEST_MQTT_URL");
        failover(Some(&mqtt)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and an MQTT broker: set RXLEDGER_TEST_POSTGRES_URL and RXLEDGER_TEST_MQTT_URL"]
    async fn two_nodes_share_ingest_and_survive_a_kill() {
        let mqtt = std::env::var(MQTT_ENV).expect("RXLEDGER_TEST_MQTT_URL");
        let (mqtt_host, mqtt_port) = {
            let u = rxledger_ingest::MqttUrl::parse(&mqtt).unwrap();
            (u.host.clone(), u.port)
        };
        let pg = TempDb::postgres().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        let db = pg.url.clone();
        let root = format!("rxledger-scale/{}", std::process::id());
        let keys: Vec<SigningKey> = (0..DEVICES).map(|_| SigningKey::generate()).collect();
        let ids: Vec<String> = (0..DEVICES).map(|i| format!("line-{i}")).collect();
        let devices: Vec<(&str, &SigningKey)> = ids.iter().map(String::as_str).zip(&keys).collect();
        enroll_acme_cli(data, &["--database", &db], &devices);
        // The first node creates the log key; the second shares it (one log, two sequencers).
        let mut a = Some(serve(
            data,
            &db,
            ["--mqtt-url", &mqtt],
            &root,
            &format!("scale-a-{}", std::process::id()),
        ));
        let b = serve(
            data,
            &db,
            ["--mqtt-url", &mqtt],
            &root,
            &format!("scale-b-{}", std::process::id()),
        );

        let mut devices = Vec::new();
        let mut outstanding: Vec<HashMap<String, Vec<u8>>> = Vec::new();
        for (i, k) in keys.into_iter().enumerate() {
            let mut d = TestDevice::connect(
                (mqtt_host.clone(), mqtt_port),
                &root,
                &format!("line-{i}"),
                k,
                &log_verifier_in(data),
            )
            .await;
            let mut mine = HashMap::new();
            for n in 0..PER_DEVICE {
                let e = d.envelope(vec![commission(
                    &[&format!("D{i}N{n}a"), &format!("D{i}N{n}b")],
                    "L1",
                    "2030-01-31",
                )]);
                mine.insert(envelope::payload_hash(&e), e);
            }
            devices.push(d);
            outstanding.push(mine);
        }
        let total = DEVICES * PER_DEVICE;
        let mut receipts: HashMap<String, u64> = HashMap::new();
        let started = Instant::now();
        let mut killed_at: Option<Instant> = None;
        let mut takeover: Option<Duration> = None;
        // Publish in rounds of at most ROUND envelopes per device, resending whatever has no
        // receipt yet, as a scanner's store-and-forward queue does, until every envelope holds
        // a receipt. Node a dies once two fifths are receipted.
        const ROUND: usize = 50;
        let mut published_after_kill: HashSet<String> = HashSet::new();
        while receipts.len() < total {
            if started.elapsed() > Duration::from_secs(240) {
                let log = std::fs::read_to_string(
                    data.join(format!("scale-b-{}.log", std::process::id())),
                )
                .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "only {} of {total} receipted; node b's log ends:\n{}",
                    receipts.len(),
                    tail.join("\n")
                );
            }
            for (d, mine) in devices.iter().zip(&outstanding) {
                let mut todo: Vec<(&String, &Vec<u8>)> = mine
                    .iter()
                    .filter(|(h, _)| !receipts.contains_key(*h))
                    .collect();
                todo.sort_by_key(|(h, _)| h.as_str());
                for (hash, e) in todo.into_iter().take(ROUND) {
                    if killed_at.is_some() {
                        published_after_kill.insert(hash.clone());
                    }
                    d.publish(e.clone()).await;
                }
            }
            let mut quiet = 0;
            while quiet < 3 {
                let mut got = false;
                for d in devices.iter_mut() {
                    while let Ok(Some(r)) =
                        tokio::time::timeout(Duration::from_millis(100), d.try_next_receipt()).await
                    {
                        assert!(r.status == "ACCEPTED" || r.status == "DUPLICATE", "{r:?}");
                        let index = r.entry_index.unwrap();
                        let first = *receipts.entry(r.payload_hash.clone()).or_insert(index);
                        assert_eq!(
                            first, index,
                            "every receipt for one envelope names one index"
                        );
                        if takeover.is_none()
                            && r.status == "ACCEPTED"
                            && published_after_kill.contains(&r.payload_hash)
                        {
                            takeover = killed_at.map(|k| k.elapsed());
                        }
                        got = true;
                    }
                }
                if got { quiet = 0 } else { quiet += 1 }
            }
            if a.is_some() && receipts.len() >= total * 2 / 5 {
                // Both nodes follow the one head before the kill.
                assert!(checkpoint_size(b.1).await > 0);
                drop(a.take()); // SIGKILL, mid-stream
                killed_at = Some(Instant::now());
            }
        }
        eprintln!(
            "{total} envelopes receipted in {:?}; first envelope sent after the kill was appended {:?} after it",
            started.elapsed(),
            takeover
        );
        assert!(killed_at.is_some(), "the kill happened mid-stream");
        assert!(
            takeover.is_some(),
            "the surviving node sequenced after the kill"
        );

        // Every receipted envelope is in the log exactly once, at its receipted index.
        let store = rxledger_store::connect(&db).await.unwrap();
        let rows = {
            use rxledger_entities::entry;
            use sea_orm::{ColumnTrait, QueryFilter};
            use sea_orm::{EntityTrait, QueryOrder};
            // The envelopes; the map roots each batch ends with are the log's own.
            entry::Entity::find()
                .filter(entry::Column::Kind.eq(1))
                .order_by_asc(entry::Column::Idx)
                .all(&store.conn)
                .await
                .unwrap()
        };
        let by_hash: HashMap<String, u64> = rows
            .iter()
            .map(|e| (envelope::payload_hash(&e.data), e.idx as u64))
            .collect();
        assert_eq!(
            by_hash.len(),
            rows.len(),
            "no envelope is in the ledger twice"
        );
        assert_eq!(rows.len(), total);
        for (hash, index) in &receipts {
            assert_eq!(
                by_hash.get(hash),
                Some(index),
                "receipted envelope at its index"
            );
        }
        let distinct: HashSet<&String> = receipts.keys().collect();
        assert_eq!(distinct.len(), total);
        // The survivor serves the final head.
        let deadline = Instant::now() + Duration::from_secs(10);
        while checkpoint_size(b.1).await < total as u64 {
            assert!(Instant::now() < deadline, "node b follows the head");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(b);

        assert_audit_passes(data, &["--database", &db]);
        pg.drop_now().await;
    }
}

mod postgres {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: set RXLEDGER_TEST_POSTGRES_URL"]
    async fn a_killed_node_leaves_no_session_behind_on_the_embedded_broker() {
        failover(None).await;
    }
}

/// Two nodes share the ingest on one PostgreSQL, through the broker at `mqtt` or, without
/// one, through the first node's embedded broker. Once every envelope of a first round is
/// receipted, one node is killed (the second, where the first hosts the broker); then each
/// device publishes its next envelopes exactly once, and every one of them must be receipted
/// by the survivor, with no resend. A node that left a persistent session behind keeps its
/// share of the shared subscription queued there, so about half would never be answered.
async fn failover(mqtt: Option<&str>) {
    const ROUNDS: usize = 100;
    let pg = TempDb::postgres().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let db = pg.url.clone();
    let pid = std::process::id();
    let root = format!("rxledger-failover/{pid}");
    let keys: Vec<SigningKey> = (0..DEVICES).map(|_| SigningKey::generate()).collect();
    let ids: Vec<String> = (0..DEVICES).map(|i| format!("line-{i}")).collect();
    let enrolled: Vec<(&str, &SigningKey)> = ids.iter().map(String::as_str).zip(&keys).collect();
    enroll_acme_cli(data, &["--database", &db], &enrolled);
    let (a_id, b_id) = (format!("failover-a-{pid}"), format!("failover-b-{pid}"));
    let (survivor, victim, broker) = match mqtt {
        Some(url) => {
            let u = rxledger_ingest::MqttUrl::parse(url).unwrap();
            let a = serve(data, &db, ["--mqtt-url", url], &root, &a_id);
            let b = serve(data, &db, ["--mqtt-url", url], &root, &b_id);
            (b, a, (u.host.clone(), u.port))
        }
        None => {
            let a = serve(data, &db, ["--mqtt-listen", "127.0.0.1:0"], &root, &a_id);
            let port = a.2.expect("the first node runs the embedded broker");
            let url = format!("mqtt://127.0.0.1:{port}");
            let b = serve(data, &db, ["--mqtt-url", &url], &root, &b_id);
            (a, b, ("127.0.0.1".to_string(), port))
        }
    };
    let mut devices = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        devices.push(
            TestDevice::connect(
                broker.clone(),
                &root,
                &format!("line-{i}"),
                k,
                &log_verifier_in(data),
            )
            .await,
        );
    }
    let mut serial = 0;
    let mut round = |devices: &mut Vec<TestDevice>| {
        let mut sent = Vec::new();
        for (i, d) in devices.iter_mut().enumerate() {
            serial += 1;
            let s = format!("F{serial}");
            sent.push((i, d.envelope(vec![commission(&[&s], "L1", "2030-01-31")])));
        }
        sent
    };
    // Both nodes take their share of a first round, every envelope receipted.
    let first: Vec<_> = (0..ROUNDS / 4).flat_map(|_| round(&mut devices)).collect();
    let waits = publish_once(&mut devices, first).await;
    assert!(
        waits.iter().all(Option::is_some),
        "the first round is receipted"
    );
    let before = event_entries(&db).await;

    drop(victim); // SIGKILL
    let after: Vec<_> = (0..ROUNDS).flat_map(|_| round(&mut devices)).collect();
    let n = after.len();
    let mut waits = publish_once(&mut devices, after).await;
    let missing = waits.iter().filter(|w| w.is_none()).count();
    assert_eq!(
        missing, 0,
        "{missing} of {n} envelopes published after the kill got no receipt without a resend"
    );
    waits.sort();
    let ms = |q: f64| {
        waits[((n as f64 * q) as usize).min(n - 1)]
            .unwrap()
            .as_secs_f64()
            * 1e3
    };
    eprintln!(
        "failover ({}): {n} envelopes after the kill, time to receipt p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        if mqtt.is_some() {
            "external broker"
        } else {
            "embedded broker"
        },
        ms(0.5),
        ms(0.99),
        ms(1.0)
    );
    assert_eq!(event_entries(&db).await, before + n as u64);
    drop(survivor);
    pg.drop_now().await;
}

/// Publishes each `(device, envelope)` once, in order, and waits for their receipts; returns,
/// per envelope, the time from its publish to its receipt, `None` for those with no receipt
/// 30 s after the last publish.
async fn publish_once(
    devices: &mut [TestDevice],
    envelopes: Vec<(usize, Vec<u8>)>,
) -> Vec<Option<Duration>> {
    let mut sent: HashMap<String, (usize, Instant)> = HashMap::new();
    for (n, (i, e)) in envelopes.into_iter().enumerate() {
        sent.insert(envelope::payload_hash(&e), (n, Instant::now()));
        devices[i].publish(e).await;
    }
    let mut waits = vec![None; sent.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = sent.len();
    while left > 0 && Instant::now() < deadline {
        for d in devices.iter_mut() {
            while let Ok(Some(r)) =
                tokio::time::timeout(Duration::from_millis(20), d.try_next_receipt()).await
            {
                assert_eq!(r.status, "ACCEPTED", "{r:?}");
                if let Some((n, at)) = sent.get(&r.payload_hash)
                    && waits[*n].is_none()
                {
                    waits[*n] = Some(at.elapsed());
                    left -= 1;
                }
            }
        }
    }
    waits
}

/// The envelopes (log entries of kind 1) in the log on `db`.
async fn event_entries(db: &str) -> u64 {
    use rxledger_entities::entry;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let store = rxledger_store::connect(db).await.unwrap();
    entry::Entity::find()
        .filter(entry::Column::Kind.eq(1))
        .count(&store.conn)
        .await
        .unwrap()
}
