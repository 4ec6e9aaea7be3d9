//! After the commit: alerts, receipts with inclusion proofs, PUBACKs, in commit order.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rumqttc::{Publish, QoS};
use rxledger_core::codes::RejectCode;
use rxledger_core::envelope::{self, Receipt, ReceiptStatus};
use rxledger_core::epcis;
use rxledger_core::gs1::Sgtin;
use rxledger_core::merkle::Hash;
use rxledger_store::packs::Packs;
use rxledger_store::{Admission, Alerts, Batch, Ledger, NewAlert, Severity};
use tokio::sync::mpsc;

use super::{Checked, Clients, Offered, Reject, Route, Stats, retry};
use crate::monitor;

/// What the acker needs, and the runtime it runs on: the shared one, beside the connections
/// it publishes through.
pub(super) struct Acker {
    pub clients: Clients,
    pub ledger: Arc<Ledger>,
    pub topic_root: String,
    pub packs: Arc<Packs>,
    pub alerts: Alerts,
    pub stats: Arc<Stats>,
    pub runtime: tokio::runtime::Handle,
}

/// A batch the ledger has committed: its messages, and the admission of each offered entry
/// (in order) with the head after it.
pub(super) struct Committed {
    pub batch: Vec<Checked<Offered>>,
    pub result: Batch,
}

/// Records the alerts of each committed batch, then publishes its receipts and acks its
/// messages, batch after batch in commit order (so PUBACKs keep the order of the PUBLISHes).
pub(super) async fn run(mut rx: mpsc::Receiver<Committed>, a: Acker) {
    let monitor = monitor::spawn(a.packs.clone(), a.alerts.clone());
    while let Some(committed) = rx.recv().await {
        let t = std::time::Instant::now();
        a.stats.batches.fetch_add(1, Ordering::Relaxed);
        let size = committed.result.head.size;
        let mut s = settle(committed, &a.stats);
        attach_proofs(&a.ledger, &mut s.receipts, &s.proved, size).await;
        envelope::sign_receipts(&mut s.receipts, a.ledger.key());
        retry("recording alerts", || a.alerts.record(s.alerts.clone())).await;
        for ((route, publish, device), receipt) in s.routes.into_iter().zip(s.receipts) {
            let connection = &a.clients[route.conn.min(a.clients.len() - 1)];
            let client = &connection.client;
            if let Some(d) = device {
                let bytes = serde_json::to_vec(&receipt).unwrap_or_default();
                let topic = envelope::acks_topic(&a.topic_root, &d);
                if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, bytes).await {
                    tracing::warn!(error = %e, "could not queue a receipt");
                }
            }
            if !connection.current(route) {
                // Came in an earlier session of this connection: its packet id is void.
                tracing::debug!(
                    conn = route.conn,
                    "not acking a delivery of an earlier session"
                );
            } else if let Err(e) = client.ack(&publish).await {
                tracing::warn!(error = %e, "could not queue a PUBACK");
            }
            a.stats.receipt_seconds.observe(route.received.elapsed());
        }
        a.stats
            .ack_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if !s.watch_list.is_empty() && monitor.try_send(s.watch_list).is_err() {
            tracing::warn!("the suspicion monitor is behind; some packs were not re-examined");
        }
    }
    // Drained: everything read was committed and acked. Disconnect after those requests.
    for c in &a.clients {
        let _ = c.client.disconnect().await;
    }
}

/// A committed batch turned into what goes out: one receipt and route per message.
struct Settled {
    receipts: Vec<Receipt>,
    /// (connection, message, device) to ack and answer, in the receipts' order.
    routes: Vec<(Route, Publish, Option<String>)>,
    /// (receipt position, entry index, leaf hash) of receipts that need an inclusion proof.
    proved: Vec<(usize, u64, Hash)>,
    alerts: Vec<NewAlert>,
    /// Packs that newly logged events make worth a second look.
    watch_list: Vec<Sgtin>,
}

/// What became of one message: in the log at `index`, or rejected.
enum Outcome {
    Logged {
        status: ReceiptStatus,
        index: u64,
        leaf_hash: Hash,
        event_hashes: Vec<Hash>,
    },
    Rejected(Reject),
}

/// Pairs each message with its admission and builds its receipt (unsigned, without a proof)
/// and, for a rejection, its alert.
fn settle(Committed { batch, result }: Committed, stats: &Stats) -> Settled {
    let mut admissions = result.admissions.into_iter();
    let mut s = Settled {
        receipts: Vec::with_capacity(batch.len()),
        routes: Vec::with_capacity(batch.len()),
        proved: Vec::new(),
        alerts: Vec::new(),
        watch_list: Vec::new(),
    };
    for c in batch {
        let outcome = match c.outcome {
            Ok(offered) => {
                let outcome = admitted(admissions.next(), offered.event_hashes, c.seq);
                if let Outcome::Logged { status, .. } = &outcome {
                    if *status == ReceiptStatus::Duplicate {
                        stats.duplicates.fetch_add(1, Ordering::Relaxed);
                    } else {
                        stats.appended.fetch_add(1, Ordering::Relaxed);
                        s.watch_list
                            .extend(offered.parsed.iter().flat_map(monitor::packs_to_watch));
                    }
                }
                outcome
            }
            Err(reject) => Outcome::Rejected(reject),
        };
        let mut r = Receipt {
            v: envelope::VERSION,
            status: ReceiptStatus::Rejected,
            device_id: c.device.clone().unwrap_or_default(),
            seq: c.seq,
            payload_hash: c.payload_hash,
            code: None,
            message: None,
            entry_index: None,
            leaf_hash: None,
            event_ids: Vec::new(),
            checkpoint: None,
            inclusion_proof: Vec::new(),
            signature: None,
        };
        match outcome {
            Outcome::Logged {
                status,
                index,
                leaf_hash,
                event_hashes,
            } => {
                r.status = status;
                r.entry_index = Some(index);
                r.leaf_hash = Some(hex::encode(leaf_hash));
                r.event_ids = event_hashes.iter().map(epcis::id_of_hash).collect();
                r.checkpoint = Some(result.head.note.clone());
                s.proved.push((s.receipts.len(), index, leaf_hash));
            }
            Outcome::Rejected(reject) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                r.code = Some(reject.code.to_string());
                r.message = Some(reject.message.clone());
                s.alerts
                    .push(alert(reject, c.device.as_deref(), &c.publish));
            }
        }
        s.receipts.push(r);
        s.routes.push((c.route, c.publish, c.device));
    }
    s
}

/// What the ledger's admission of an offered entry means for its device.
fn admitted(admission: Option<Admission>, event_hashes: Vec<Hash>, seq: Option<u64>) -> Outcome {
    let logged = |status, index, leaf_hash| Outcome::Logged {
        status,
        index,
        leaf_hash,
        event_hashes,
    };
    match admission {
        Some(Admission::Appended { index, leaf_hash }) => {
            logged(ReceiptStatus::Accepted, index, leaf_hash)
        }
        Some(Admission::Duplicate { index, leaf_hash }) => {
            logged(ReceiptStatus::Duplicate, index, leaf_hash)
        }
        Some(Admission::Replay { last_seq }) => Outcome::Rejected(Reject::new(
            RejectCode::Replay,
            format!(
                "sequence number {} is not above the last accepted one ({last_seq}) and is not a resend of it",
                seq.unwrap_or(0)
            ),
            Severity::Critical,
        )),
        Some(Admission::DuplicateEvent { index, event }) => Outcome::Rejected(Reject::new(
            RejectCode::DuplicateEvent,
            format!(
                "event {} is already in the log at entry {index}",
                epcis::id_of_hash(&event)
            ),
            Severity::Warning,
        )),
        // Device envelopes carry no precondition, so never Refused.
        Some(Admission::Conflict | Admission::Refused(_)) | None => Outcome::Rejected(Reject::new(
            RejectCode::Internal,
            "the envelope conflicts with data already in the ledger and was not stored; the operator was alerted",
            Severity::Critical,
        )),
    }
}

/// The alert a rejection leaves for regulators, with the start of the raw message.
fn alert(reject: Reject, device: Option<&str>, publish: &Publish) -> NewAlert {
    NewAlert {
        code: reject.code.to_string(),
        severity: reject.severity,
        subjects: device.map(|d| format!("device:{d}")).into_iter().collect(),
        message: reject.message,
        evidence: reject.evidence,
        raw: Some(publish.payload.iter().copied().take(64 * 1024).collect()),
    }
}

/// Puts each accepted or duplicate receipt's inclusion proof in the batch's checkpoint tree.
/// The batch's own entries get theirs from one stored proof (see `proofs`); others (duplicates
/// of older entries) are read one by one. A receipt left without a proof is refused by the
/// device, which resends and gets a `DUPLICATE` receipt with one.
async fn attach_proofs(
    ledger: &Ledger,
    receipts: &mut [Receipt],
    proved: &[(usize, u64, Hash)],
    size: u64,
) {
    let mut fresh: Vec<&(usize, u64, Hash)> = proved
        .iter()
        .filter(|p| receipts[p.0].status == ReceiptStatus::Accepted)
        .collect();
    fresh.sort_by_key(|p| p.1);
    let contiguous = fresh
        .first()
        .is_some_and(|f| f.1 + fresh.len() as u64 == size)
        && fresh.windows(2).all(|w| w[1].1 == w[0].1 + 1);
    let mut done = HashSet::new();
    if contiguous {
        let a = fresh[0].1;
        let leaves: Vec<Hash> = fresh.iter().map(|p| p.2).collect();
        let proofs = match ledger.inclusion_proof(a, size).await {
            Ok(first) => {
                crate::proofs::batch_proofs(a, size, &leaves, &first).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match proofs {
            Ok(proofs) => {
                for (p, proof) in fresh.iter().zip(proofs) {
                    receipts[p.0].inclusion_proof = proof.iter().map(hex::encode).collect();
                    done.insert(p.0);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot prove a batch's entries"),
        }
    }
    for (at, index, _) in proved.iter().filter(|p| !done.contains(&p.0)) {
        match ledger.inclusion_proof(*index, size).await {
            Ok(proof) => receipts[*at].inclusion_proof = proof.iter().map(hex::encode).collect(),
            Err(e) => tracing::error!(error = %e, index, "cannot prove an entry for its receipt"),
        }
    }
}
