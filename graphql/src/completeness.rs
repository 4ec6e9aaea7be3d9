//! A verdict's proof that it read every entry about its pack (`Verification.completeness`).
//!
//! The verdict path records what it read ([`Reads`]: each identifier the store's walk looked
//! up, with the entries found for it); this module adds, from the ledger's committed map, a
//! map proof per identifier and the map-root entry they are against with its inclusion proof
//! in the checkpoint the verdict cites. A client checks it all with
//! `rxledger_core::map::completeness` (`rxledger verify-answer` does; docs/VERIFY.md §4).
//! Built only when selected, like evidence. Everything here names no party (indices, leaf
//! hashes and the identifiers of the pack, its containers and its lot), so every caller gets
//! it.
//!
//! The map proof is taken first and the checkpoint after it, so the cited checkpoint always
//! covers the map-root entry. An event about the pack committed between the verdict's read
//! and the proof shows as an incomplete identifier: the server does not hide it, and a client
//! asks again.

use async_graphql::SimpleObject;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rxledger_core::map::{History, Terminal};
use serde::Serialize;

use crate::hashes::Hashes;
use crate::{ApiError, Services};

/// What a verdict read: each identifier with the entries found for it, in log order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads(pub Vec<(String, Vec<u64>)>);

/// The proof that the verdict read every entry about each identifier it looked up.
#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completeness {
    /// The map-root entry the map proofs are against, included in the cited checkpoint.
    pub map_entry: MapEntry,
    pub identifiers: Vec<IdentifierHistory>,
}

/// A map-root entry (docs/PROTOCOL.md §14) with its inclusion proof.
#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapEntry {
    pub index: i64,
    /// The entry's exact bytes, base64.
    pub data_base64: String,
    /// RFC 9162 inclusion proof of the entry in the tree of `checkpointSize`.
    pub proof: Hashes,
}

/// One identifier the verdict read, the entries it read about it, and the map's proof that
/// these are all of them.
#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentifierHistory {
    /// The index key: `sgtin:<gtin>.<serial>`, `sscc:<sscc>`, `lgtin:<gtin>.<lot>`,
    /// `gtin:<gtin>`.
    pub identifier: String,
    pub entries: Vec<ListedEntry>,
    /// Map siblings from the root's children down, hex.
    pub siblings: Hashes,
    /// Where the identifier's path ends: null at an empty subtree (absent), else a leaf,
    /// the identifier's own (its history) or another key's (absent).
    pub leaf: Option<MapLeaf>,
}

#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedEntry {
    pub index: i64,
    pub leaf_hash: String,
}

#[derive(SimpleObject, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapLeaf {
    /// The map key, hex: SHA-256(0x13 ‖ identifier).
    pub key: String,
    pub count: i64,
    /// The head of the history's hash chain, hex.
    pub head: String,
}

/// A snapshot of the committed map for the identifiers of `reads`, taken before the
/// checkpoint is read.
pub struct Snapshot {
    root: rxledger_store::map::CommittedRoot,
    proofs: Vec<rxledger_store::map::KeyProof>,
}

impl Snapshot {
    /// The map proofs for `reads`; `None` when the ledger has no committed map.
    pub async fn take(s: &Services, reads: &Reads) -> Option<Snapshot> {
        let ids: Vec<String> = reads.0.iter().map(|(id, _)| id.clone()).collect();
        let (root, proofs) = s.ledger.map_proofs(&ids).await?;
        Some(Snapshot { root, proofs })
    }

    /// The answer's completeness against the checkpoint of `size` (read after the snapshot).
    pub async fn build(
        self,
        s: &Services,
        reads: &Reads,
        size: u64,
    ) -> Result<Option<Completeness>, ApiError> {
        if self.root.index >= size {
            return Ok(None);
        }
        let proof = s.ledger.inclusion_proof(self.root.index, size).await?;
        let mut identifiers = Vec::with_capacity(reads.0.len());
        for ((id, indices), kp) in reads.0.iter().zip(self.proofs) {
            let mut entries = Vec::with_capacity(indices.len());
            let mut listed = History::default();
            for &index in indices {
                let leaf = s.ledger.leaf_hash(index).await?;
                listed.push(index, &leaf);
                entries.push(ListedEntry {
                    index: index as i64,
                    leaf_hash: hex::encode(leaf),
                });
            }
            if listed != kp.history.unwrap_or_default() {
                tracing::warn!(
                    identifier = %id,
                    "a verdict's reads differ from the committed map (a newer event, or an index that disagrees with the log)"
                );
            }
            identifiers.push(IdentifierHistory {
                identifier: id.clone(),
                entries,
                siblings: Hashes::hex(&kp.proof.siblings),
                leaf: match kp.proof.terminal {
                    Terminal::Empty => None,
                    Terminal::Leaf { key, value } => Some(MapLeaf {
                        key: hex::encode(key),
                        count: value.count as i64,
                        head: hex::encode(value.head),
                    }),
                },
            });
        }
        Ok(Some(Completeness {
            map_entry: MapEntry {
                index: self.root.index as i64,
                data_base64: B64.encode(&self.root.entry),
                proof: Hashes::hex(&proof),
            },
            identifiers,
        }))
    }
}
