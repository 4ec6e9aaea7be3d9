//! The pack index as an authenticated map: every identifier the verdicts read, mapped to a
//! commitment to its whole history in the log.
//!
//! An inclusion proof shows that a cited entry is in the log; it cannot show that an answer
//! saw *every* entry about a pack. This map can. Its keys are `SHA-256(0x13 ‖ key)` of the
//! index keys of [`crate::index::epc_key`] (SGTIN, SSCC, lot, GTIN class); its value for a key
//! is a [`History`]: how many entries name it and a hash chain over their (index, leaf hash)
//! in log order. The log commits to the map's root in a [`rootentry`] appended with every
//! batch, so a checkpoint covers it, and a verdict proves, for each identifier it read, that
//! the entries it lists are exactly the ones the map holds ([`completeness`]).
//!
//! The tree ([`tree`]) is a compressed sparse Merkle tree of depth 256 (the shape of Diem's
//! Jellyfish tree and of akd's, without akd's versioning): a subtree holding one key hashes
//! to that key's leaf, an empty one to [`EMPTY`], any other to the node hash of its halves.
//! Proofs ([`proof`]) are the siblings down a key's path, about log₂(keys) of them, and prove
//! presence with a value or absence. Every hash here is domain-separated from the RFC 9162
//! log's (`0x00` leaf, `0x01` node): `0x10` leaf, `0x11` node, `0x12` chain link, `0x13` key.

pub mod answer;
pub mod completeness;
pub mod proof;
pub mod rootentry;
pub mod tree;

use sha2::{Digest, Sha256};

pub use crate::merkle::Hash;
pub use proof::{MapProof, Terminal};
pub use tree::MapTree;

/// The hash of an empty subtree (and the root of the empty map). No SHA-256 output is
/// expected to be all zeros.
pub const EMPTY: Hash = [0; 32];
/// Domain separation prefixes, distinct from RFC 9162's `0x00` and `0x01`.
const LEAF_PREFIX: u8 = 0x10;
const NODE_PREFIX: u8 = 0x11;
const LINK_PREFIX: u8 = 0x12;
const KEY_PREFIX: u8 = 0x13;

/// The map key of an index key (`sgtin:…`, `sscc:…`, `lgtin:…`, `gtin:…`).
pub fn key_of(index_key: &str) -> Hash {
    let mut h = Sha256::new();
    h.update([KEY_PREFIX]);
    h.update(index_key.as_bytes());
    h.finalize().into()
}

/// What the map holds for a key: the number of entries naming it and the head of a hash
/// chain over their (index, leaf hash), in log order. The empty history (no entry) is never
/// stored: a key without entries is absent from the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct History {
    pub count: u64,
    pub head: Hash,
}

impl History {
    /// The history after one more entry: `head' = SHA-256(0x12 ‖ head ‖ index ‖ leaf)`, the
    /// index as 8 big-endian bytes.
    pub fn push(&mut self, index: u64, leaf: &Hash) {
        let mut h = Sha256::new();
        h.update([LINK_PREFIX]);
        h.update(self.head);
        h.update(index.to_be_bytes());
        h.update(leaf);
        self.head = h.finalize().into();
        self.count += 1;
    }

    /// The history of a list of entries, in the order given.
    pub fn of<'a>(entries: impl IntoIterator<Item = &'a (u64, Hash)>) -> History {
        let mut h = History::default();
        for (index, leaf) in entries {
            h.push(*index, leaf);
        }
        h
    }
}

/// `SHA-256(0x10 ‖ key ‖ count ‖ head)`: the hash of a subtree holding only `key`.
pub fn leaf_hash(key: &Hash, value: &History) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(key);
    h.update(value.count.to_be_bytes());
    h.update(value.head);
    h.finalize().into()
}

/// `SHA-256(0x11 ‖ left ‖ right)`: a subtree holding two keys or more.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Bit `depth` of `key`, most significant first: 0 goes left, 1 right.
pub fn bit(key: &Hash, depth: usize) -> bool {
    key[depth / 8] & (0x80 >> (depth % 8)) != 0
}

/// Why a map proof, a map-root entry or a verdict's completeness did not verify. Each names
/// what failed, and those about one identifier name it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("a map proof has {got} siblings, more than the 256 levels of the tree")]
    ProofTooLong { got: usize },
    #[error("a map proof is not in canonical form (an empty sibling above a lone subtree)")]
    NotCanonical,
    #[error("the map proof's leaf is for another key that is not on this key's path")]
    WrongLeaf,
    #[error("the map proof does not lead to the map root")]
    RootMismatch,
    #[error("malformed map-root entry: {0}")]
    BadRootEntry(String),
    #[error("the map-root entry's signature does not verify with the log key")]
    BadSignature,
    #[error("the map-root entry is not included in the checkpoint: {0}")]
    NotIncluded(String),
    #[error("{identifier}: the map proof does not verify against the map root ({reason})")]
    BadProof { identifier: String, reason: String },
    #[error(
        "{identifier}: incomplete history: the answer lists {listed} entries, the map holds {held}"
    )]
    Incomplete {
        identifier: String,
        listed: u64,
        held: u64,
    },
    #[error("{identifier}: the answer's entries differ from the history the map commits to")]
    HistoryMismatch { identifier: String },
    #[error("{identifier}: entries are not listed in log order below the map's size")]
    BadEntryList { identifier: String },
    #[error("entry {index} is cited but listed under no identifier the answer proves complete")]
    UncoveredCitation { index: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_domain_separated_from_the_log() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        assert_ne!(node_hash(&a, &b), crate::merkle::node_hash(&a, &b));
        let mut data = Vec::new();
        data.extend_from_slice(&a);
        data.extend_from_slice(&b);
        // The log's leaf of the same 64 bytes is another hash as well.
        assert_ne!(node_hash(&a, &b), crate::merkle::leaf_hash(&data));
        assert_ne!(key_of("sgtin:1.2"), crate::merkle::leaf_hash(b"sgtin:1.2"));
    }

    #[test]
    fn a_history_chains_index_and_leaf_in_order() {
        let (l1, l2) = ([7u8; 32], [8u8; 32]);
        let h = History::of(&[(3, l1), (9, l2)]);
        assert_eq!(h.count, 2);
        assert_ne!(h, History::of(&[(9, l2), (3, l1)]));
        assert_ne!(h, History::of(&[(3, l1), (10, l2)]));
        assert_ne!(h, History::of(&[(3, l1)]));
        assert!(bit(&[0x80; 32], 0) && !bit(&[0x80; 32], 1));
    }
}
