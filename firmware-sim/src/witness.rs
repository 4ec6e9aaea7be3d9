//! Holding envelopes for the witnesses: a receipt proves that the log signed a tree holding
//! the envelope, but a log that shows each device its own fork signs such trees too. Only a
//! checkpoint that the witnesses' quorum cosigned, and that extends the receipt's tree, shows
//! that everybody sees the same log. With witnesses configured a device therefore keeps each
//! receipted envelope until [`extended_by`] proves that for its receipt's tree
//! (docs/PROTOCOL.md §13.6).

use std::collections::BTreeSet;
use std::time::Duration;

use rxledger_core::checkpoint::Checkpoint;
use rxledger_core::cosignature::Quorum;
use rxledger_core::merkle::{self, Hash};

use crate::api::{Api, ApiError, GraphQl};

/// What a device needs to hold its envelopes for the witnesses.
#[derive(Clone, Debug)]
pub struct Witnessing {
    /// The witnesses' keys, and how many of them must cosign.
    pub quorum: Quorum,
    /// Where the cosigned checkpoint and the consistency proofs come from. Nothing it says is
    /// trusted: the note must carry the quorum's cosignatures and the proofs must verify.
    pub api: GraphQl,
    /// How often a device with held envelopes looks for a newer cosigned checkpoint.
    pub every: Duration,
}

/// Which log trees a cosigned checkpoint extends.
#[derive(Debug, Default)]
pub struct Extension {
    /// Trees (size, root) proven to be prefixes of the cosigned tree.
    pub proven: BTreeSet<(u64, Hash)>,
    /// Trees proven *not* to be: a fork, each with why.
    pub forks: Vec<String>,
}

/// Checks each of `trees` no larger than the cosigned checkpoint `cp` against it: the same
/// root at the same size, or an RFC 9162 consistency proof from `api` that verifies. Trees
/// larger than `cp` are left for a later checkpoint.
pub async fn extended_by<A: Api>(
    api: &A,
    cp: &Checkpoint,
    trees: impl IntoIterator<Item = (u64, Hash)>,
) -> Result<Extension, ApiError> {
    let mut out = Extension::default();
    for (size, root) in trees.into_iter().filter(|(size, _)| *size <= cp.size) {
        let proof = if size == cp.size {
            Vec::new()
        } else {
            api.consistency_proof(size, cp.size).await?
        };
        match merkle::verify_consistency(size, cp.size, &root, &cp.root, &proof) {
            Ok(()) => {
                out.proven.insert((size, root));
            }
            Err(e) => out.forks.push(format!(
                "the receipts' checkpoint at size {size} is not consistent with the checkpoint \
                 the witnesses cosigned at size {}: {e}",
                cp.size
            )),
        }
    }
    Ok(out)
}
