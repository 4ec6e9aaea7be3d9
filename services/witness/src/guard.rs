//! Rollback and fork refusal at start.
//!
//! An operator (or an accident) that restores an older copy of the database and restarts
//! would otherwise sign a second, different tree at sizes it already published. Two things
//! outside the database remember what the log signed: a small file beside the log key
//! (`log.checkpoint`, the newest checkpoint this node signed, replaced atomically and synced
//! by `rxledger-keyfile`, written off the ingest path after each commit) and the witnesses
//! (each knows the newest checkpoint it cosigned for the log). [`check_start`] refuses to go
//! on when the database is behind either, or holds a different tree at the size either
//! remembers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_store::{Ledger, StoreError};

use crate::submit::{Failure, Witnessing};

/// Why `serve` refuses to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error(
        "the database is at size {db}, but this log already signed a checkpoint at size {signed} \
         ({file}): the database was rolled back or replaced; restore the newest copy"
    )]
    BehindFile { db: u64, signed: u64, file: String },
    #[error(
        "the database's tree at size {size} is not the one this log signed ({file}): \
         the database was replaced by a fork"
    )]
    ForkOfFile { size: u64, file: String },
    #[error(
        "witness {witness} refuses this database ({why}): it was rolled back or forked; \
         restore the newest copy"
    )]
    Witness { witness: String, why: String },
    #[error("cannot read {file}: {why}")]
    Unreadable { file: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The file beside the log key that remembers the newest checkpoint this node signed.
#[derive(Clone, Debug)]
pub struct CheckpointFile(PathBuf);

impl CheckpointFile {
    /// `log.checkpoint` in the directory of `key_path`.
    pub fn beside(key_path: &Path) -> Self {
        let dir = key_path.parent().unwrap_or(Path::new(""));
        CheckpointFile(dir.join("log.checkpoint"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The checkpoint in the file, checked against the log's key; `None` if there is no file.
    pub fn read(&self, ledger: &Ledger) -> Result<Option<Checkpoint>, Refused> {
        let unreadable = |why: String| Refused::Unreadable {
            file: self.0.display().to_string(),
            why,
        };
        let note = match std::fs::read_to_string(&self.0) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e.to_string())),
        };
        checkpoint::open_checkpoint(&note, ledger.verifier())
            .map(Some)
            .map_err(|e| unreadable(e.to_string()))
    }

    /// Replaces the file with `note` (atomically, synced).
    pub fn write(&self, note: &str) -> std::io::Result<()> {
        rxledger_keyfile::replace_private(&self.0, note.as_bytes())
    }

    /// Keeps the file at the ledger's newest checkpoint, off the ingest path: the `watch`
    /// channel coalesces, so a burst of batches costs one write.
    pub fn follow(self, ledger: Arc<Ledger>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut heads = ledger.subscribe();
            loop {
                let note = heads.borrow_and_update().note.clone();
                let file = self.clone();
                let wrote = tokio::task::spawn_blocking(move || file.write(&note)).await;
                if let Ok(Err(e)) | Err(e) = wrote.map_err(std::io::Error::other) {
                    tracing::error!(error = %e, file = %self.0.display(), "cannot record the newest checkpoint");
                }
                if heads.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

/// Refuses a database that is behind, or forked from, the checkpoint file or any witness.
/// Witnesses that cannot be reached are skipped (they are asked again, and alert, once the
/// node runs); each one that answers is asked to cosign the current head, so this is also
/// the node's first witnessing round.
pub async fn check_start(
    ledger: &Ledger,
    file: &CheckpointFile,
    witnessing: &Arc<Witnessing>,
) -> Result<(), Refused> {
    let head = ledger.head();
    let shown = file.path().display().to_string();
    if let Some(cp) = file.read(ledger)? {
        if cp.size > head.size {
            return Err(Refused::BehindFile {
                db: head.size,
                signed: cp.size,
                file: shown,
            });
        }
        if ledger.root_at(cp.size).await? != cp.root {
            return Err(Refused::ForkOfFile {
                size: cp.size,
                file: shown,
            });
        }
    }
    let mut have = Vec::new();
    for (i, failure) in witnessing.round(&head, &mut have).await {
        let name = witnessing.name(i).to_owned();
        match failure {
            f if f.is_refusal() => {
                return Err(Refused::Witness {
                    witness: name,
                    why: f.to_string(),
                });
            }
            Failure::Store(e) => return Err(e.into()),
            f => tracing::warn!(witness = name, error = %f, "witness not reachable at start"),
        }
    }
    Ok(())
}
