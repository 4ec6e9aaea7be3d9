//! The log's side: gathering witness cosignatures for its newest checkpoint.
//!
//! Witnessing is per checkpoint, never per event, and it runs beside the ingest, not in it:
//! the sequencer signs and publishes checkpoints as before (receipts carry the log's own
//! signature at once), and one task follows the ledger's head through a `watch` channel,
//! which keeps only the newest value. So however many checkpoints were signed while a round
//! was in flight or a witness was down, the next round submits only the latest: the backlog
//! is one checkpoint, and a witness that comes back catches up in one request (a consistency
//! proof from the size it last cosigned).
//!
//! A checkpoint becomes the node's *cosigned* checkpoint only when `quorum` witnesses have
//! cosigned that very checkpoint. A witness that cannot be reached is retried with a capped
//! backoff and raises one `WITNESS_DOWN` alert per outage; a witness that refuses (it holds a
//! larger tree, or ours is not consistent with what it cosigned) raises `WITNESS_REFUSED`,
//! which is evidence of a rollback or a fork and is never retried into silence.

use std::sync::Arc;
use std::time::Duration;

use rxledger_core::cosignature;
use rxledger_store::witnessing::{CosignedHead, WitnessStatus, WitnessView};
use rxledger_store::{Alerts, Ledger, NewAlert, Severity, SignedHead, StoreError};

use crate::client::{Answer, ClientError, WitnessClient};

/// The first wait before asking a failing witness again, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(5));
/// Conflicts followed in one submission before giving up (each one moves to the size the
/// witness reported, so two suffice unless the witness keeps moving).
const MAX_CONFLICTS: usize = 3;

/// Why one submission failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Down(#[from] ClientError),
    #[error("the witness has cosigned size {theirs}, beyond this log's {ours}")]
    Ahead { theirs: u64, ours: u64 },
    #[error("the witness has cosigned size {theirs}, which another node has already sequenced")]
    Stale { theirs: u64 },
    #[error("the witness refused with {status}: {message}")]
    Refused { status: u16, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure {
    /// Whether this is evidence against the log (a rollback or a fork), not an outage.
    pub fn is_refusal(&self) -> bool {
        match self {
            Failure::Ahead { .. } => true,
            Failure::Refused { status, .. } => *status == 422 || *status == 403,
            Failure::Down(_) | Failure::Store(_) | Failure::Stale { .. } => false,
        }
    }
}

/// The configured witnesses and the quorum of one log; what they answer goes to the
/// ledger's [`Board`](rxledger_store::witnessing::Board).
pub struct Witnessing {
    clients: Vec<WitnessClient>,
    quorum: usize,
    ledger: Arc<Ledger>,
}

impl Witnessing {
    pub fn new(clients: Vec<WitnessClient>, quorum: usize, ledger: Arc<Ledger>) -> Arc<Self> {
        let witnesses = clients
            .iter()
            .map(|c| WitnessView {
                name: c.name().to_owned(),
                verifier: c.verifier.clone(),
                url: c.url.clone(),
                cosigned_size: None,
                up: false,
                error: None,
            })
            .collect();
        ledger.witnesses().update(|s| {
            *s = WitnessStatus {
                quorum,
                witnesses,
                cosigned_size: None,
            }
        });
        Arc::new(Witnessing {
            clients,
            quorum,
            ledger,
        })
    }

    /// Whether any witness is configured.
    pub fn is_enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    /// The name of witness `i`.
    pub fn name(&self, i: usize) -> &str {
        self.clients[i].name()
    }

    /// One round on `head`: asks every witness not in `have` yet, adds the lines it gets, and
    /// publishes the cosigned checkpoint once `have` reaches the quorum. Returns each
    /// witness's failure, by index.
    pub async fn round(
        self: &Arc<Self>,
        head: &SignedHead,
        have: &mut Vec<(usize, String)>,
    ) -> Vec<(usize, Failure)> {
        let mut asks = tokio::task::JoinSet::new();
        for i in (0..self.clients.len()).filter(|i| !have.iter().any(|(j, _)| j == i)) {
            let (me, head) = (self.clone(), head.clone());
            asks.spawn(async move { (i, me.submit(i, &head).await) });
        }
        let mut failures = Vec::new();
        while let Some(done) = asks.join_next().await {
            match done {
                Ok((i, Ok(line))) => have.push((i, line)),
                Ok((i, Err(f))) => failures.push((i, f)),
                // A submission cannot panic but through a bug; the next round asks again.
                Err(e) => tracing::error!(error = %e, "a witness submission failed"),
            }
        }
        if have.len() >= self.quorum && self.quorum > 0 {
            self.publish(head, have);
        }
        failures
    }

    fn publish(&self, head: &SignedHead, have: &[(usize, String)]) {
        let mut lines: Vec<_> = have.to_vec();
        lines.sort();
        let cosigners = lines
            .iter()
            .map(|(i, _)| self.clients[*i].name().to_owned())
            .collect();
        let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
        self.ledger.witnesses().publish(CosignedHead {
            size: head.size,
            note: cosignature::with_lines(&head.note, &lines),
            cosigners,
        });
    }

    /// Submits `head` to witness `i`, following 409s to the size it holds.
    async fn submit(&self, i: usize, head: &SignedHead) -> Result<String, Failure> {
        let client = &self.clients[i];
        let board = self.ledger.witnesses();
        let mut old = board.update(|s| s.witnesses[i].cosigned_size.unwrap_or(0));
        let result = async {
            for _ in 0..MAX_CONFLICTS {
                if old > head.size {
                    return Err(Failure::Ahead {
                        theirs: old,
                        ours: head.size,
                    });
                }
                let proof = match old {
                    0 => Vec::new(),
                    o if o == head.size => Vec::new(),
                    o => self.ledger.consistency_proof(o, head.size).await?,
                };
                match client.add_checkpoint(old, &proof, &head.note).await? {
                    Answer::Cosigned(line) => return Ok(line),
                    Answer::Conflict(size) if size > head.size => {
                        return Err(self.ahead(size).await);
                    }
                    Answer::Conflict(size) => old = size,
                    Answer::Refused { status, message } => {
                        return Err(Failure::Refused { status, message });
                    }
                }
            }
            Err(Failure::Refused {
                status: 409,
                message: "the witness's size kept changing".into(),
            })
        }
        .await;
        board.update(|s| record(&mut s.witnesses[i], head, &result));
        result
    }

    /// A witness holds a larger tree than `head`: evidence against this database, unless
    /// another node sharing it has sequenced past `theirs` meanwhile.
    async fn ahead(&self, theirs: u64) -> Failure {
        match self.ledger.refresh().await {
            Ok(now) if now.size >= theirs => Failure::Stale { theirs },
            Ok(now) => Failure::Ahead {
                theirs,
                ours: now.size,
            },
            Err(e) => Failure::Store(e),
        }
    }

    /// Follows the ledger's head for as long as the node runs (see the module docs).
    pub fn spawn(self: Arc<Self>, alerts: Alerts) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if !self.is_enabled() {
                return;
            }
            let mut heads = self.ledger.subscribe();
            let mut have: Vec<(usize, String)> = Vec::new();
            let mut size = None;
            let mut backoff = BACKOFF.0;
            let mut raised = vec![false; self.clients.len()];
            loop {
                let head = heads.borrow_and_update().clone();
                if size != Some(head.size) {
                    have.clear();
                    size = Some(head.size);
                }
                let failures = self.round(&head, &mut have).await;
                self.alert(&alerts, &failures, &mut raised).await;
                let changed = if failures.is_empty() {
                    backoff = BACKOFF.0;
                    heads.changed().await
                } else {
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    tokio::select! {
                        r = heads.changed() => r,
                        _ = tokio::time::sleep(wait) => Ok(()),
                    }
                };
                if changed.is_err() {
                    return;
                }
            }
        })
    }

    /// One alert per outage or refusal of each witness; cleared when it answers again.
    async fn alert(&self, alerts: &Alerts, failures: &[(usize, Failure)], raised: &mut [bool]) {
        let mut new = Vec::new();
        for (i, flag) in raised.iter_mut().enumerate() {
            let failure = failures.iter().find(|(j, _)| *j == i).map(|(_, f)| f);
            let Some(f) = failure else {
                if self.ledger.witnesses().update(|s| s.witnesses[i].up) {
                    *flag = false;
                }
                continue;
            };
            if *flag {
                continue;
            }
            *flag = true;
            let name = self.clients[i].name();
            tracing::warn!(witness = name, error = %f, "witness failed");
            let (code, severity) = match f.is_refusal() {
                true => ("WITNESS_REFUSED", Severity::Critical),
                false => ("WITNESS_DOWN", Severity::Warning),
            };
            new.push(NewAlert {
                code: code.into(),
                severity,
                subjects: vec![format!("witness:{name}")],
                message: format!("witness {name} ({}): {f}", self.clients[i].url),
                evidence: Vec::new(),
                raw: None,
            });
        }
        if let Err(e) = alerts.record(new).await {
            tracing::warn!(error = %e, "recording a witness alert failed");
        }
    }
}

/// Writes one submission's outcome into the witness's view.
fn record(view: &mut WitnessView, head: &SignedHead, result: &Result<String, Failure>) {
    view.up = !matches!(result, Err(Failure::Down(_)) | Err(Failure::Store(_)));
    match result {
        Ok(_) => {
            view.cosigned_size = Some(head.size);
            view.error = None;
        }
        Err(f) => view.error = Some(f.to_string()),
    }
}
