//! What the node knows of its witnesses, kept beside the ledger so every reader of the log
//! (GraphQL, the resolver, metrics) sees the same thing: the newest checkpoint with a quorum
//! of cosignatures, and each witness's state. `rxledger-witness` writes it; nothing here does
//! I/O.

use std::sync::Mutex;

use rxledger_core::ed25519::Ed25519Verifier;
use tokio::sync::watch;

/// The newest checkpoint with a quorum of witness cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignedHead {
    pub size: u64,
    /// The log's note with the cosignature lines appended.
    pub note: String,
    /// The names of the witnesses whose cosignatures it carries.
    pub cosigners: Vec<String>,
}

/// What the node knows of one witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessView {
    pub name: String,
    /// The cosigner key the node pins for it (`serve --witness`): what a client checks the
    /// witness's cosignature lines with.
    pub verifier: Ed25519Verifier,
    pub url: String,
    /// The size this witness last cosigned for the log, as far as the node knows.
    pub cosigned_size: Option<u64>,
    /// Whether the last request got an answer.
    pub up: bool,
    /// The last failure or refusal, while it lasts.
    pub error: Option<String>,
}

/// The node's witnessing status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessStatus {
    /// Cosignatures needed; 0 when no witness is configured.
    pub quorum: usize,
    pub witnesses: Vec<WitnessView>,
    /// The size of the newest checkpoint with a quorum.
    pub cosigned_size: Option<u64>,
}

/// The shared board.
#[derive(Debug)]
pub struct Board {
    cosigned: watch::Sender<Option<CosignedHead>>,
    status: Mutex<WitnessStatus>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            cosigned: watch::channel(None).0,
            status: Mutex::default(),
        }
    }
}

impl Board {
    /// The newest checkpoint with a quorum, if any yet.
    pub fn cosigned(&self) -> Option<CosignedHead> {
        self.cosigned.borrow().clone()
    }

    /// Follows [`Self::cosigned`].
    pub fn subscribe(&self) -> watch::Receiver<Option<CosignedHead>> {
        self.cosigned.subscribe()
    }

    /// Publishes a cosigned checkpoint unless a larger one is already published.
    pub fn publish(&self, next: CosignedHead) {
        lock(&self.status).cosigned_size = Some(next.size);
        self.cosigned.send_if_modified(|cur| {
            let newer = cur
                .as_ref()
                .is_none_or(|c| c.size <= next.size && *c != next);
            if newer {
                *cur = Some(next);
            }
            newer
        });
    }

    pub fn status(&self) -> WitnessStatus {
        lock(&self.status).clone()
    }

    /// Changes the status in place.
    pub fn update<T>(&self, f: impl FnOnce(&mut WitnessStatus) -> T) -> T {
        f(&mut lock(&self.status))
    }

    /// Whether some configured witness is failing now (the node's "witness down" state).
    pub fn degraded(&self) -> bool {
        let s = lock(&self.status);
        s.witnesses.iter().any(|w| w.error.is_some())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every mutation is a plain assignment, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
