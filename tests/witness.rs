//! Witnesses end to end: the real server submits its checkpoints to real `rxledger witness`
//! servers on port 0; a quorum is reached and verifies; a witness that goes down does not
//! stop ingest and is caught up when it returns; a rolled-back database and a fork signed
//! with the same keys are refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{Backends, TestApp, spawn_app, spawn_app_with};
use rxledger::keyfile;
use rxledger_core::cosignature::{Quorum, open_cosigned};
use rxledger_core::ed25519::{Ed25519Key, Ed25519Verifier, EdKind};
use rxledger_store::testdb::filler_entry;
use rxledger_store::witnessing::CosignedHead;
use rxledger_witness::{WitnessClient, WitnessConfig, WitnessServer};
use serde_json::json;
use sha2::Digest as _;

const ORIGIN: &str = "test.rxledger.local/log";
/// A guard against hanging, never a measure: every wait below ends on an event.
const PATIENCE: Duration = Duration::from_secs(60);

/// Creates the log's two keys in `dir`; returns the Ed25519 verifier witnesses pin.
fn log_keys(dir: &Path) -> Ed25519Verifier {
    keyfile::generate(&dir.join("log.key"), false).unwrap();
    let ed: Ed25519Key =
        keyfile::generate_key(&keyfile::ed25519_path(&dir.join("log.key")), false).unwrap();
    ed.verifier(ORIGIN, EdKind::Note).unwrap()
}

async fn witness(dir: &Path, listen: SocketAddr, log: &Ed25519Verifier, n: u8) -> WitnessServer {
    rxledger_witness::server::start(WitnessConfig {
        data: dir.to_path_buf(),
        listen,
        name: Some(format!("witness.test/w{n}")),
        logs: vec![log.clone()],
    })
    .await
    .unwrap()
}

/// The log's keys and two witnesses on port 0 that pin its Ed25519 key.
struct Witnessed {
    keys: tempfile::TempDir,
    log: Ed25519Verifier,
    dirs: (tempfile::TempDir, tempfile::TempDir),
    w1: WitnessServer,
    w2: WitnessServer,
}

async fn two_witnesses() -> Witnessed {
    let keys = tempfile::tempdir().unwrap();
    let log = log_keys(keys.path());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w1 = witness(d1.path(), any_port(), &log, 1).await;
    let w2 = witness(d2.path(), any_port(), &log, 2).await;
    Witnessed {
        keys,
        log,
        dirs: (d1, d2),
        w1,
        w2,
    }
}

fn spec(w: &WitnessServer) -> WitnessClient {
    WitnessClient::parse(&format!("{}=http://{}", w.verifier.to_vkey(), w.addr)).unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A node whose keys live in `keys`, submitting to `witnesses` with `quorum`.
async fn node(keys: &Path, witnesses: &[&WitnessServer], quorum: usize) -> TestApp {
    let specs: Vec<_> = witnesses.iter().map(|w| spec(w)).collect();
    let key_path = keys.join("log.key");
    spawn_app_with(Backends::Embedded, move |cfg| {
        cfg.key_path = key_path;
        cfg.witnesses = specs;
        cfg.witness_quorum = quorum;
    })
    .await
}

/// Waits until the node publishes a cosigned checkpoint of at least `size`.
async fn cosigned_at(t: &TestApp, size: u64) -> CosignedHead {
    let mut rx = t.app().ledger.witnesses().subscribe();
    let wait = async {
        loop {
            if let Some(c) = rx.borrow_and_update().clone().filter(|c| c.size >= size) {
                return c;
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("no cosigned checkpoint of size {size}"))
}

/// Polls the node's witness status until `ok` holds (the status has no change stream).
async fn until_status(
    t: &TestApp,
    ok: impl Fn(&rxledger_store::witnessing::WitnessStatus) -> bool,
) {
    let wait = async {
        while !ok(&t.app().ledger.witnesses().status()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "status never came: {:?}",
                t.app().ledger.witnesses().status()
            )
        });
}

#[tokio::test]
async fn two_witnesses_cosign_and_the_quorum_verifies() {
    let Witnessed {
        keys,
        log,
        dirs: _dirs,
        w1,
        w2,
    } = two_witnesses().await;
    let t = node(keys.path(), &[&w1, &w2], 2).await;
    t.acme_with_packs(&["W1", "W2"]).await;
    let head = t.app().ledger.head();
    let cosigned = cosigned_at(&t, head.size).await;
    let quorum = Quorum {
        witnesses: vec![w1.verifier.clone(), w2.verifier.clone()],
        need: 2,
    };
    let (cp, names) = open_cosigned(&cosigned.note, &log, &quorum).unwrap();
    assert_eq!(cp.size, head.size);
    assert_eq!(names, vec!["witness.test/w1", "witness.test/w2"]);
    // The same note still verifies with the log's k256 key alone (receipts, devices).
    rxledger_core::checkpoint::open_checkpoint(&cosigned.note, t.app().ledger.verifier()).unwrap();

    // GraphQL: the checkpoint and a verdict carry the cosigned note; the key query both vkeys.
    let r = t
        .graphql(
            "{ checkpoint { size cosigned { size note cosigners } } \
               ledgerPublicKey { ed25519VerifierKey } \
               verify(code: \"(01)10614141073464(21)W1\") { cosignedCheckpoint { size note } } }",
            json!({}),
        )
        .await;
    assert_eq!(r["errors"], serde_json::Value::Null, "{r}");
    let d = &r["data"];
    assert_eq!(d["checkpoint"]["cosigned"]["note"], cosigned.note.as_str());
    assert_eq!(d["checkpoint"]["cosigned"]["cosigners"], json!(names));
    assert_eq!(
        d["ledgerPublicKey"]["ed25519VerifierKey"],
        log.to_vkey().as_str()
    );
    let from_verdict = d["verify"]["cosignedCheckpoint"]["note"].as_str().unwrap();
    open_cosigned(from_verdict, &log, &quorum).unwrap();
    // What a client must demand is public: the quorum and the witnesses' names.
    let k = t
        .graphql("{ ledgerPublicKey { witnessQuorum witnesses } }", json!({}))
        .await;
    assert_eq!(
        k["data"]["ledgerPublicKey"],
        json!({ "witnessQuorum": 2, "witnesses": ["witness.test/w1", "witness.test/w2"] })
    );
    // The resolver's page says plainly that the cited checkpoint is witnessed.
    let (status, page) = common::http(t.http, "GET", "/01/10614141073464/21/W1", &[], b"").await;
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    assert!(
        page.contains(&format!(
            "Witnessed: the checkpoint of {} entries, which holds every cited entry, is cosigned by witness.test/w1, witness.test/w2 (2 required).",
            head.size
        )),
        "{page}"
    );

    let regulator = t.regulator_key().await;
    let r = t
        .graphql_as(
            Some(&regulator),
            "{ ledgerStatus { witnessing { quorum cosignedSize degraded witnesses { name up cosignedSize error } } } }",
            json!({}),
        )
        .await;
    let w = &r["data"]["ledgerStatus"]["witnessing"];
    assert_eq!(w["quorum"], 2, "{r}");
    assert_eq!(w["degraded"], false, "{r}");
    assert_eq!(w["witnesses"][1]["up"], true, "{r}");
    t.stop().await;
    w1.stop().await;
    w2.stop().await;
}

#[tokio::test]
async fn a_witness_down_for_a_while_does_not_stop_ingest_and_is_caught_up() {
    let Witnessed {
        keys,
        log,
        dirs: (_d1, d2),
        w1,
        w2,
    } = two_witnesses().await;
    let w2_addr = w2.addr;
    let t = node(keys.path(), &[&w1, &w2], 2).await;
    let mut line = t.acme_with_packs(&["D1"]).await;
    let before = cosigned_at(&t, t.app().ledger.head().size).await;

    w2.stop().await;
    // Ingest goes on: every envelope gets its receipt, signed by the log at once.
    for serial in ["D2", "D3", "D4"] {
        let r = line
            .send_events(vec![common::commission(&[serial], "L1", "2031-06-30")])
            .await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
    }
    let head = t.app().ledger.head();
    assert!(head.size > before.size);
    // No quorum without w2: the cosigned checkpoint stays behind, and the node says why.
    until_status(&t, |s| s.witnesses[1].error.is_some() && !s.witnesses[1].up).await;
    assert!(t.app().ledger.witnesses().cosigned().unwrap().size < head.size);
    assert!(t.app().ledger.witnesses().degraded());
    let alerts = tokio::time::timeout(PATIENCE, async {
        loop {
            let found = t.app().alerts.list(Some("WITNESS_DOWN"), 10).await.unwrap();
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a WITNESS_DOWN alert");
    assert_eq!(alerts.len(), 1, "one alert per outage: {alerts:?}");
    assert!(alerts[0].subject.contains("witness.test/w2"), "{alerts:?}");

    // w2 comes back on the same address with its state: the node catches it up with one
    // consistency proof, and the newest checkpoint gets its quorum.
    let w2 = witness(d2.path(), w2_addr, &log, 2).await;
    let after = cosigned_at(&t, head.size).await;
    assert_eq!(after.cosigners.len(), 2);
    until_status(&t, |s| {
        s.witnesses.iter().all(|w| w.up && w.error.is_none())
    })
    .await;
    assert!(!t.app().ledger.witnesses().degraded());
    let alerts = t.app().alerts.list(Some("WITNESS_DOWN"), 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "retries raise no second alert: {alerts:?}");
    t.stop().await;
    w1.stop().await;
    w2.stop().await;
}

/// The SQLite files of a stopped node's database.
fn db_files(dir: &Path) -> Vec<std::path::PathBuf> {
    ["rxledger.db", "rxledger.db-wal", "rxledger.db-shm"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

fn copy_db(from: &Path, to: &Path) {
    for (src, dst) in db_files(from).iter().zip(db_files(to)) {
        let _ = std::fs::remove_file(&dst);
        if src.exists() {
            std::fs::copy(src, &dst).unwrap();
        }
    }
}

/// Runs `rxledger serve` on `data` and returns its exit status and stderr; fails the test if
/// it starts instead of refusing.
fn serve_must_refuse(data: &Path, extra: &[&str]) -> String {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(common::serve_args(data, 10))
        .args(["--origin", ORIGIN])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > PATIENCE {
            child.kill().unwrap();
            panic!("serve started on a rolled-back database");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    use std::io::Read as _;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "{err}");
    err
}

/// Appends `n` entries straight through the node's ledger.
async fn grow(t: &TestApp, label: &str, n: u64) {
    let batch: Vec<_> = (0..n).map(|i| filler_entry(label, i, 100)).collect();
    t.app().ledger.append(batch).await.unwrap();
}

#[tokio::test]
async fn an_older_copy_of_the_database_is_refused_at_start() {
    let mut t = spawn_app().await;
    grow(&t, "first", 3).await;
    let size_then = t.app().ledger.head().size;
    t.app.take().unwrap().shutdown().await;
    let old = tempfile::tempdir().unwrap();
    copy_db(t.dir.path(), old.path());
    t.restart().await;
    grow(&t, "second", 2).await;
    let signed = t.app().ledger.head().size;
    t.app.take().unwrap().shutdown().await;

    // The operator puts the older copy back: the node remembers what it signed.
    copy_db(old.path(), t.dir.path());
    let err = serve_must_refuse(t.dir.path(), &[]);
    assert!(err.contains("rolled back"), "{err}");
    assert!(
        err.contains(&format!("database is at size {size_then}, but this log already signed a checkpoint at size {signed}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_fork_with_the_same_keys_never_reaches_a_quorum() {
    let keys = tempfile::tempdir().unwrap();
    let log = log_keys(keys.path());
    let wd = tempfile::tempdir().unwrap();
    let w = witness(wd.path(), any_port(), &log, 1).await;
    let honest = node(keys.path(), &[&w], 1).await;
    grow(&honest, "honest", 2).await;
    let cosigned = cosigned_at(&honest, 2).await;

    // A second database with the same keys (its own data directory, so its own memory of
    // what it signed), grown further with other entries while it had no witness.
    let fork_keys = tempfile::tempdir().unwrap();
    for f in ["log.key", "log.ed25519.key"] {
        std::fs::copy(keys.path().join(f), fork_keys.path().join(f)).unwrap();
    }
    let mut fork = node(fork_keys.path(), &[], 0).await;
    grow(&fork, "forged", 5).await;
    let mut cfg = fork.cfg.clone();
    fork.app.take().unwrap().shutdown().await;

    // Started with the witness, the fork is refused: the witness holds the honest tree, and
    // the fork's tree is not consistent with it (409 with size 2, then 422 on the proof).
    cfg.witnesses = vec![spec(&w)];
    cfg.witness_quorum = 1;
    let err = match rxledger::server::start(cfg).await {
        Ok(_) => panic!("the fork started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("witness witness.test/w1 refuses"), "{err}");
    assert!(err.contains("422"), "{err}");

    // The witness still holds the honest tree, and serves it with its cosignature.
    let hash = hex::encode(sha2::Sha256::digest(ORIGIN.as_bytes()));
    let (status, body) =
        common::http(w.addr, "GET", &format!("/{hash}/checkpoint"), &[], b"").await;
    assert_eq!(status, 200);
    let note = String::from_utf8(body).unwrap();
    let quorum = Quorum {
        witnesses: vec![w.verifier.clone()],
        need: 1,
    };
    let (cp, _) = open_cosigned(&note, &log, &quorum).unwrap();
    assert_eq!(cp.size, cosigned.size);
    assert_eq!(cp.root, honest.app().ledger.root_at(cp.size).await.unwrap());
    honest.stop().await;
    fork.stop().await;
    w.stop().await;
}

/// firmware-sim with `--witness-key` for both witnesses: after the scenario, every receipt's
/// checkpoint is consistent with one the quorum cosigned. Demanding a witness the node never
/// submits to fails the run and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_sim_checks_its_receipts_against_the_witnessed_log() {
    let Witnessed {
        keys,
        log: _,
        dirs: _dirs,
        w1,
        w2,
    } = two_witnesses().await;
    let t = node(keys.path(), &[&w1, &w2], 2).await;

    let mut opts = t.scenario_options(12, 2);
    opts.witnesses = Some(Quorum {
        witnesses: vec![w1.verifier.clone(), w2.verifier.clone()],
        need: 2,
    });
    opts.receipt_timeout = PATIENCE;
    let report = firmware_sim::scenario::run_scenario(opts.clone())
        .await
        .unwrap();
    assert!(report.ok(), "{}", report.summary());
    let (size, names) = report.witnessed.clone().expect("the run was witnessed");
    assert!(size >= report.log_growth, "{}", report.summary());
    assert_eq!(names, vec!["witness.test/w1", "witness.test/w2"]);
    assert!(report.summary().contains("the witnesses cosigned"));

    // A witness this node never submits to can never cosign: the run must fail, naming why.
    let stranger = Ed25519Key::generate()
        .verifier("witness.test/stranger", EdKind::Cosignature)
        .unwrap();
    opts.witnesses = Some(Quorum {
        witnesses: vec![w1.verifier.clone(), stranger],
        need: 2,
    });
    opts.seed += 1;
    opts.receipt_timeout = Duration::from_secs(2);
    let report = firmware_sim::scenario::run_scenario(opts).await.unwrap();
    assert!(report.witnessed.is_none());
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.contains("no checkpoint cosigned by 2 of the 2 witnesses")),
        "{}",
        report.summary()
    );
    t.stop().await;
    w1.stop().await;
    w2.stop().await;
}

/// A firmware-sim device with witnesses configured on `t`'s broker, its queue in `queue`,
/// reading cosigned checkpoints and proofs from the node at `api`.
fn held_device(
    t: &TestApp,
    api: &TestApp,
    key: rxledger_core::keys::SigningKey,
    queue: &Path,
    quorum: Quorum,
) -> firmware_sim::Device {
    let mut o = firmware_sim::DeviceOptions::new(
        firmware_sim::Identity::new("line-1", key).unwrap(),
        firmware_sim::Broker {
            host: t.mqtt.0.clone(),
            port: t.mqtt.1,
            tls: None,
        },
        queue.to_path_buf(),
        t.log(),
    );
    o.topic_root = t.topic_root.clone();
    o.witnesses = Some(firmware_sim::witness::Witnessing {
        quorum,
        api: firmware_sim::GraphQl::new(&format!("http://{}", api.http), None).unwrap(),
        every: Duration::from_millis(50),
    });
    firmware_sim::Device::start(o).unwrap()
}

async fn acme_line(t: &TestApp) -> rxledger_core::keys::SigningKey {
    t.enroll(
        "acme",
        "MANUFACTURER",
        Some("0614141"),
        "0614141000005",
        "line-1",
    )
    .await
}

/// With witnesses, a device keeps a receipted envelope until a checkpoint the quorum
/// cosigned extends its receipt's tree: not while a witness is down, and at once when it
/// is back and caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_drops_an_envelope_only_once_the_witnesses_cosign_its_tree() {
    let Witnessed {
        keys,
        log,
        dirs: (_d1, d2),
        w1,
        w2,
    } = two_witnesses().await;
    let w2_addr = w2.addr;
    let t = node(keys.path(), &[&w1, &w2], 2).await;
    let key = acme_line(&t).await;
    let quorum = Quorum {
        witnesses: vec![w1.verifier.clone(), w2.verifier.clone()],
        need: 2,
    };
    w2.stop().await;
    let queue = tempfile::tempdir().unwrap();
    let dev = held_device(&t, &t, key, queue.path(), quorum);
    let events = vec![common::commission(&["W1", "W2"], "L1", "2031-06-30")];
    let ticket = dev.send(events, common::now_rfc3339()).await.unwrap();
    let r = ticket.receipt(PATIENCE).await.unwrap();
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    assert_eq!((dev.unreceipted(), dev.held()), (0, 1));

    // One witness of two is down: no checkpoint covering the receipt reaches the quorum.
    let err = dev
        .witnessed(Duration::from_millis(600))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 receipted envelopes are still held"),
        "{err}"
    );
    assert_eq!(dev.held(), 1);
    assert!(dev.fork().is_none());

    let w2 = witness(d2.path(), w2_addr, &log, 2).await;
    dev.witnessed(PATIENCE).await.unwrap();
    assert_eq!(dev.held(), 0);
    assert!(dev.fork().is_none());
    dev.shutdown().await.unwrap();
    t.stop().await;
    w1.stop().await;
    w2.stop().await;
}

/// A node with the honest log's keys but its own database shows a device a fork: the
/// receipt verifies against the pinned key, but the tree it names is not a prefix of the
/// tree the witnesses cosigned. The device keeps the envelope and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_shown_a_fork_keeps_its_envelope_and_says_so() {
    let keys = tempfile::tempdir().unwrap();
    let log = log_keys(keys.path());
    let wd = tempfile::tempdir().unwrap();
    let w = witness(wd.path(), any_port(), &log, 1).await;
    let honest = node(keys.path(), &[&w], 1).await;

    let fork_keys = tempfile::tempdir().unwrap();
    for f in ["log.key", "log.ed25519.key"] {
        std::fs::copy(keys.path().join(f), fork_keys.path().join(f)).unwrap();
    }
    let fork = node(fork_keys.path(), &[], 0).await;
    let key = acme_line(&fork).await;
    let queue = tempfile::tempdir().unwrap();
    let quorum = Quorum {
        witnesses: vec![w.verifier.clone()],
        need: 1,
    };
    // The device publishes to the fork, and reads the cosigned log from the honest node.
    let dev = held_device(&fork, &honest, key, queue.path(), quorum);
    let events = vec![common::commission(&["F1"], "L1", "2031-06-30")];
    let ticket = dev.send(events, common::now_rfc3339()).await.unwrap();
    let r = ticket.receipt(PATIENCE).await.unwrap();
    assert_eq!(
        r.status, "ACCEPTED",
        "the fork signs with the pinned key: {r:?}"
    );

    // The honest log grows past the fork's size and is cosigned there.
    let fork_size = fork.app().ledger.head().size;
    grow(&honest, "honest", fork_size + 3).await;
    cosigned_at(&honest, fork_size + 3).await;
    let err = dev.witnessed(PATIENCE).await.unwrap_err().to_string();
    assert!(err.contains("the log showed this device a fork"), "{err}");
    assert!(
        err.contains("is not consistent with the checkpoint"),
        "{err}"
    );
    assert_eq!(dev.held(), 1, "the envelope stays on the device");
    dev.shutdown().await.unwrap();
    honest.stop().await;
    fork.stop().await;
    w.stop().await;
}
