//! The one serial stage: the rules that need the ledger, then one append per batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rxledger_store::packs::Packs;
use rxledger_store::{Admission, Batch, Ledger, NewEntry};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::acker::{self, Acker, Committed};
use super::{Checked, Ready, Stats, rules};

/// Appends batches in order. Receipts and acks are handed to the acker, so the next batch's
/// rules and append start as soon as this one is committed.
pub(super) async fn run(
    mut rx: mpsc::Receiver<Vec<Checked<Ready>>>,
    a: Acker,
    ledger: Arc<Ledger>,
    packs: Arc<Packs>,
    stats: Arc<Stats>,
) {
    // One committed batch may wait for the acker while the next is appended: still bounded.
    let (ack_tx, ack_rx) = mpsc::channel::<Committed>(1);
    let runtime = a.runtime.clone();
    let acker = runtime.spawn(acker::run(ack_rx, a));
    while let Some(mut batch) = rx.recv().await {
        let t = std::time::Instant::now();
        rules::apply(&mut batch, &packs).await;
        stats
            .rules_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        let t = std::time::Instant::now();
        // The entries go to the append; the acker keeps only what its receipts need.
        let mut entries: Vec<NewEntry> = Vec::with_capacity(batch.len());
        let batch: Vec<_> = batch
            .into_iter()
            .map(|c| {
                c.map(|ready| {
                    let (entry, offered) = ready.offer();
                    entries.push(entry);
                    offered
                })
            })
            .collect();
        // Nothing is acked until the batch is durable; while the database is down, wait.
        let result = append_durably(&ledger, &entries).await;
        let took = t.elapsed();
        stats
            .append_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        stats.append_seconds.observe(took);
        if ack_tx.send(Committed { batch, result }).await.is_err() {
            break;
        }
    }
    // Drained: the acker finishes the committed batches, then disconnects.
    drop(ack_tx);
    if let Err(e) = acker.await {
        tracing::error!(error = %e, "the acker stopped abnormally");
    }
}

/// Appends a batch, waiting out database outages (nothing is acked meanwhile). If the batch
/// breaks a database constraint, which the checks before should have made impossible, one
/// bad envelope must not stall ingest forever: the entries are appended one by one and the
/// offender alone is refused.
async fn append_durably(ledger: &Ledger, entries: &[NewEntry]) -> Batch {
    let mut backoff = Duration::from_millis(50);
    loop {
        match ledger.append(entries).await {
            Ok(b) => return b,
            Err(e) if e.is_conflict() && entries.len() > 1 => {
                tracing::error!(error = %e, "a batch broke a constraint; appending its entries one by one");
                let mut admissions = Vec::with_capacity(entries.len());
                let mut head = ledger.head();
                for entry in entries {
                    let one = Box::pin(append_durably(ledger, std::slice::from_ref(entry))).await;
                    admissions.extend(one.admissions);
                    head = one.head;
                }
                return Batch { admissions, head };
            }
            Err(e) if e.is_conflict() => {
                tracing::error!(error = %e, "an entry broke a constraint and was refused");
                return Batch {
                    admissions: vec![Admission::Conflict],
                    head: ledger.head(),
                };
            }
            Err(e) => {
                tracing::error!(error = %e, "appending a batch failed; retrying in {backoff:?} (nothing was acked)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Runs `task` on a thread of its own, with a single-threaded runtime.
///
/// The sequencer is the one serial stage of ingest, and an append is some 30 database round
/// trips. On the shared runtime each of its wake-ups queued behind the MQTT event loops (one
/// per connection), which are busy under load, and the append took about a tenth longer.
pub(super) fn on_own_thread(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(task),
            Err(e) => tracing::error!(error = %e, "cannot start the sequencer's runtime"),
        }
    })
}
