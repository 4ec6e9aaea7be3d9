//! Crash safety: a writer killed with SIGKILL at any moment loses nothing it reported as
//! committed, leaves nothing half-written, and the log carries on.
//!
//! The test re-executes its own binary as a child process (selected by the `CHILD_ENV`
//! variable and the exact test name). The child opens a ledger on a SQLite file and appends
//! batches forever, printing `committed <size> <root hex>` after each `append` returns: that
//! line is the acknowledgement a client would get. The parent reads a few acknowledgements,
//! waits a little (a different delay each round), kills the child, and reopens the file. The
//! child spends nearly all its time inside `append`, so the kill lands in the middle of a
//! batch: while rows are inserted, tiles written, the checkpoint signed, or the commit synced.
//!
//! After every kill the reopened log must hold every acknowledged size with the acknowledged
//! root, pass the full audit, and accept new appends. What is checked does not depend on when
//! the kill lands, so the test cannot flake on timing; only its coverage varies.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rxledger_core::keys::SigningKey;
use rxledger_core::merkle::{self, Hash};
use rxledger_store::audit::audit;
use rxledger_store::testdb::filler_entry;
use rxledger_store::{Ledger, NewEntry, connect};

const CHILD_ENV: &str = "RXLEDGER_CRASH_CHILD";
const TEST_NAME: &str = "sigkill_mid_batch_loses_nothing_committed";
const ORIGIN: &str = "test.rxledger/crash";
/// Batch sizes the child cycles through: full tiles, a tile boundary plus one, a few entries.
const BATCHES: [u64; 4] = [1000, 257, 1500, 3];
/// Per round: acknowledgements to wait for, then milliseconds to wait before the kill.
const ROUNDS: [(usize, u64); 5] = [(2, 0), (3, 4), (2, 9), (4, 15), (3, 23)];

#[test]
fn sigkill_mid_batch_loses_nothing_committed() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db").display().to_string();
    let rt = runtime();
    // Every (size, root) ever acknowledged, by the children and by the parent's own appends.
    let mut acked: Vec<(u64, Hash)> = Vec::new();
    let mut interrupted = 0;
    for (round, (wait_for, delay_ms)) in ROUNDS.into_iter().enumerate() {
        let mut child = KillOnDrop(spawn_child(&path));
        let stdout = child.0.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        while seen < wait_for {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("round {round}: the child exited before committing"))
                .unwrap();
            if let Some(ack) = parse_ack(&line) {
                acked.push(ack);
                seen += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        // Lines written before the kill are acknowledgements too.
        acked.extend(lines.map_while(Result::ok).filter_map(|l| parse_ack(&l)));
        let last = acked.last().unwrap().0;

        let (crashed_at, appended) = rt.block_on(check_after_crash(&path, &acked));
        // The head is either the last acknowledged size (the batch in flight rolled back) or
        // one batch beyond it (it committed but the child died before printing).
        let max_batch = BATCHES.iter().max().unwrap();
        assert!(
            (last..=last + max_batch).contains(&crashed_at),
            "round {round}: head {crashed_at} but last acked {last}"
        );
        if crashed_at == last {
            interrupted += 1;
        }
        acked.push(appended);
        eprintln!("round {round}: killed at head {crashed_at}, last acked {last}");
    }
    // Not asserted (timing decides it), but shown so a reader can see the coverage.
    eprintln!(
        "{interrupted} of {} kills rolled a batch back",
        ROUNDS.len()
    );
}

/// Reopens the log after a kill and checks it. Returns the size found on reopening, and the
/// size and root after one more append.
async fn check_after_crash(path: &str, acked: &[(u64, Hash)]) -> (u64, (u64, Hash)) {
    let db = connect(path).await.unwrap();
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await.unwrap();
    let head = ledger.head();
    for &(size, root) in acked {
        assert!(
            size <= head.size,
            "acked size {size} lost: head is {}",
            head.size
        );
        assert_eq!(ledger.root_at(size).await.unwrap(), root, "root at {size}");
        if size > 0 && size < head.size {
            let proof = ledger.consistency_proof(size, head.size).await.unwrap();
            merkle::verify_consistency(size, head.size, &root, &head.root, &proof).unwrap();
        }
    }
    let report = audit(&db, ledger.verifier(), None, |_, _| {})
        .await
        .unwrap();
    assert!(report.ok(), "audit after crash: {:?}", report.problems);
    assert_eq!(report.size, head.size);

    // The log carries on from where it stopped.
    let b = ledger.append(batch(head.size, 10)).await.unwrap();
    assert_eq!(b.head.size, head.size + 10);
    let last = head.size + 9;
    let proof = ledger.inclusion_proof(last, b.head.size).await.unwrap();
    merkle::verify_inclusion(
        &merkle::leaf_hash(&entry(last).data),
        last,
        b.head.size,
        &proof,
        &b.head.root,
    )
    .unwrap();
    drop(ledger);
    db.conn.close().await.unwrap();
    (head.size, (b.head.size, b.head.root))
}

/// The child: append forever, acknowledging each committed batch on stdout.
fn child(path: &str) -> ! {
    // Exit when the parent goes away (its end of our stdin closes), so a parent that panics
    // never leaves a writer running.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(2);
    });
    runtime().block_on(async {
        let db = connect(path).await.unwrap();
        let ledger = Ledger::open(db, key(), ORIGIN).await.unwrap();
        let mut out = std::io::stdout().lock();
        for n in BATCHES.iter().cycle() {
            let size = ledger.head().size;
            let b = ledger.append(batch(size, *n)).await.unwrap();
            writeln!(
                out,
                "committed {} {}",
                b.head.size,
                hex::encode(b.head.root)
            )
            .unwrap();
            out.flush().unwrap();
        }
        unreachable!("BATCHES.iter().cycle() never ends")
    })
}

fn spawn_child(path: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Kills the child if the parent panics before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `committed <size> <root hex>`; other lines (the test harness's own) are ignored.
fn parse_ack(line: &str) -> Option<(u64, Hash)> {
    let rest = line.strip_prefix("committed ")?;
    let (size, root) = rest.split_once(' ')?;
    let root = hex::decode(root.trim()).ok()?;
    Some((size.parse().ok()?, merkle::hash_from_slice(&root).ok()?))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32]).unwrap()
}

fn entry(i: u64) -> NewEntry {
    filler_entry("crash entry", i, 300)
}

fn batch(from: u64, n: u64) -> Vec<NewEntry> {
    (from..from + n).map(entry).collect()
}
