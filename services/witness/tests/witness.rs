//! The witness server over real HTTP on port 0, fed by a real ledger: it cosigns a growing
//! log, answers conflicts with its size, refuses forks and strangers, and keeps its state
//! across a restart.

use std::path::Path;
use std::sync::Arc;

use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_core::cosignature::{Quorum, open_cosigned};
use rxledger_core::ed25519::{Ed25519Key, Ed25519Verifier, EdKind};
use rxledger_core::keys::SigningKey;
use rxledger_store::testdb::{TempDb, filler_entry};
use rxledger_store::{Ledger, LogKeys};
use rxledger_witness::client::Answer;
use rxledger_witness::{WitnessClient, WitnessConfig, WitnessServer, server};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ORIGIN: &str = "test.rxledger/witnessed";

fn log_keys(seed: u8) -> LogKeys {
    LogKeys {
        ecdsa: SigningKey::from_bytes(&[seed; 32]).unwrap(),
        ed25519: Some(Ed25519Key::from_bytes(&[seed; 32])),
    }
}

async fn ledger(seed: u8) -> (TempDb, Arc<Ledger>) {
    let tmp = TempDb::sqlite().await.unwrap();
    let l = Ledger::open(tmp.db.clone(), log_keys(seed), ORIGIN)
        .await
        .unwrap();
    (tmp, Arc::new(l))
}

async fn grow(ledger: &Ledger, label: &str, n: u64) {
    let batch: Vec<_> = (0..n).map(|i| filler_entry(label, i, 100)).collect();
    ledger.append(batch).await.unwrap();
}

async fn start(
    dir: &Path,
    listen: std::net::SocketAddr,
    logs: Vec<Ed25519Verifier>,
) -> WitnessServer {
    server::start(WitnessConfig {
        data: dir.to_path_buf(),
        listen,
        name: Some("witness.test/w1".into()),
        logs,
    })
    .await
    .unwrap()
}

/// A witness on port 0 in a fresh directory that pins `log`'s Ed25519 key.
async fn witness_for(log: &Ledger) -> (tempfile::TempDir, WitnessServer) {
    let dir = tempfile::tempdir().unwrap();
    let w = start(
        dir.path(),
        any_port(),
        vec![log.ed25519_verifier().unwrap()],
    )
    .await;
    (dir, w)
}

fn any_port() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn client(w: &WitnessServer) -> WitnessClient {
    WitnessClient::parse(&format!("{}=http://{}", w.verifier.to_vkey(), w.addr)).unwrap()
}

/// One raw HTTP/1.1 exchange: status line, headers and body as text.
async fn raw(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: w\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // A server that refuses a body may answer and close before taking all of it: what it
    // answered is what counts.
    let _ = s.write_all(body.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_growing_log_is_cosigned_and_conflicts_name_the_size() {
    let (_db, log) = ledger(1).await;
    let (_dir, w) = witness_for(&log).await;
    let c = client(&w);
    grow(&log, "a", 5).await;
    let h5 = log.head();
    let Answer::Cosigned(line) = c.add_checkpoint(0, &[], &h5.note).await.unwrap() else {
        panic!("first checkpoint not cosigned");
    };
    let quorum = Quorum {
        witnesses: vec![w.verifier.clone()],
        need: 1,
    };
    let cosigned = format!("{}{line}", h5.note);
    let (cp, names) = open_cosigned(&cosigned, &log.ed25519_verifier().unwrap(), &quorum).unwrap();
    assert_eq!((cp.size, names), (5, vec!["witness.test/w1".to_owned()]));
    // It also carries the log's k256 signature, untouched.
    assert!(checkpoint::open_checkpoint(&cosigned, log.verifier()).is_ok());

    grow(&log, "b", 7).await;
    let h12 = log.head();
    // A stale old size: 409, text/x.tlog.size, the size it holds.
    assert_eq!(
        c.add_checkpoint(0, &[], &h12.note).await.unwrap(),
        Answer::Conflict(5)
    );
    let answer = raw(
        w.addr,
        "POST",
        "/add-checkpoint",
        &rxledger_core::witness::request_body(3, &[], &h12.note),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: text/x.tlog.size"),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\n5\n"), "{answer}");
    // With the consistency proof from 5 it is cosigned.
    let proof = log.consistency_proof(5, 12).await.unwrap();
    assert!(matches!(
        c.add_checkpoint(5, &proof, &h12.note).await.unwrap(),
        Answer::Cosigned(_)
    ));
    // A wrong proof is 422.
    let bad = log.consistency_proof(4, 12).await.unwrap();
    assert!(matches!(
        c.add_checkpoint(12, &bad, &h12.note).await.unwrap(),
        Answer::Refused { status: 422, .. }
    ));
    w.stop().await;
}

#[tokio::test]
async fn a_fork_with_the_same_key_is_refused() {
    let (_a, honest) = ledger(2).await;
    let (_b, fork) = ledger(2).await;
    let dir = tempfile::tempdir().unwrap();
    let w = start(
        dir.path(),
        any_port(),
        vec![honest.ed25519_verifier().unwrap()],
    )
    .await;
    let c = client(&w);
    grow(&honest, "honest", 4).await;
    grow(&fork, "forged", 9).await;
    assert!(matches!(
        c.add_checkpoint(0, &[], &honest.head().note).await.unwrap(),
        Answer::Cosigned(_)
    ));
    // The fork, signed by the same keys, at a larger size: 409 first, then 422 with a proof.
    let f = fork.head();
    assert_eq!(
        c.add_checkpoint(0, &[], &f.note).await.unwrap(),
        Answer::Conflict(4)
    );
    let proof = fork.consistency_proof(4, 9).await.unwrap();
    assert!(matches!(
        c.add_checkpoint(4, &proof, &f.note).await.unwrap(),
        Answer::Refused { status: 422, .. }
    ));
    // The fork at the same size as the honest log: 422 too.
    let (_c, same) = ledger(2).await;
    grow(&same, "other", 4).await;
    assert!(matches!(
        c.add_checkpoint(4, &[], &same.head().note).await.unwrap(),
        Answer::Refused { status: 422, .. }
    ));
    // It still holds the honest tree.
    let hash = hex::encode(Sha256::digest(ORIGIN.as_bytes()));
    let got = raw(w.addr, "GET", &format!("/{hash}/checkpoint"), "").await;
    let note = got.split_once("\r\n\r\n").unwrap().1;
    let cp = checkpoint::open_checkpoint(note, honest.verifier()).unwrap();
    assert_eq!((cp.size, cp.root), (4, honest.head().root));
    w.stop().await;
}

#[tokio::test]
async fn strangers_bad_signatures_and_huge_bodies_are_refused() {
    let (_db, log) = ledger(3).await;
    let (_dir, w) = witness_for(&log).await;
    let c = client(&w);
    // Another origin: 404.
    let other = Checkpoint {
        origin: "elsewhere.example/log".into(),
        size: 0,
        root: rxledger_core::merkle::empty_root(),
    };
    let keys = log_keys(3);
    let note =
        checkpoint::sign_checkpoint_with(&other, &keys.ecdsa, keys.ed25519.as_ref()).unwrap();
    assert!(matches!(
        c.add_checkpoint(0, &[], &note).await.unwrap(),
        Answer::Refused { status: 404, .. }
    ));
    // The right origin signed by another Ed25519 key: 403.
    let stranger = Ed25519Key::from_bytes(&[99; 32]);
    let mine = Checkpoint {
        origin: ORIGIN.into(),
        ..other
    };
    let note = checkpoint::sign_checkpoint_with(&mine, &keys.ecdsa, Some(&stranger)).unwrap();
    assert!(matches!(
        c.add_checkpoint(0, &[], &note).await.unwrap(),
        Answer::Refused { status: 403, .. }
    ));
    // Bodies past the bound: 413 before they are read whole.
    let huge = "x".repeat(rxledger_core::witness::MAX_REQUEST_LEN + 1);
    assert!(
        raw(w.addr, "POST", "/add-checkpoint", &huge)
            .await
            .starts_with("HTTP/1.1 413")
    );
    assert!(
        raw(w.addr, "POST", "/add-checkpoint", "old 0\n")
            .await
            .starts_with("HTTP/1.1 400")
    );
    w.stop().await;
}

#[tokio::test]
async fn state_and_key_survive_a_restart() {
    let (_db, log) = ledger(4).await;
    let dir = tempfile::tempdir().unwrap();
    let logs = vec![log.ed25519_verifier().unwrap()];
    let w = start(dir.path(), any_port(), logs.clone()).await;
    let first_key = w.verifier.clone();
    grow(&log, "a", 6).await;
    assert!(matches!(
        client(&w)
            .add_checkpoint(0, &[], &log.head().note)
            .await
            .unwrap(),
        Answer::Cosigned(_)
    ));
    w.stop().await;
    let w = start(dir.path(), any_port(), logs).await;
    assert_eq!(w.verifier, first_key);
    assert_eq!(
        client(&w)
            .add_checkpoint(0, &[], &log.head().note)
            .await
            .unwrap(),
        Answer::Conflict(6)
    );
    // The cosigner key is a type-0x04 vkey others can pin.
    assert_eq!(
        Ed25519Verifier::from_vkey(&w.verifier.to_vkey())
            .unwrap()
            .kind(),
        EdKind::Cosignature
    );
    w.stop().await;
}
