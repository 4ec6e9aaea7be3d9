//! RFC 9162 §2.1 Merkle tree hashing, proof generation and proof verification.
//!
//! Why it is shaped like this:
//!
//! * **Proofs are built from complete subtrees only.** Every hash in an RFC 9162 proof is the
//!   Merkle Tree Hash of some range `D[a:b]`. Such a range, as the RFC recursion produces it,
//!   always starts on a boundary aligned to its own size, so it splits into perfect subtrees of
//!   decreasing power-of-two sizes (the binary digits of `b - a`), and its hash is the right fold
//!   of theirs. A perfect subtree is a [`NodeId`], which is what tiles store. So the store never
//!   hashes leaves on a read: a proof costs O(log n) node look-ups.
//! * **The look-ups are known in advance.** [`root_nodes`], [`inclusion_nodes`] and
//!   [`consistency_nodes`] run the very same generators against a recording source, so an
//!   async store can fetch the needed tiles before calling the synchronous generator.
//! * **Verification is strict.** A proof of the wrong length, a hash that is not 32 bytes, an
//!   index outside the tree, or a consistency proof from the empty tree (even `0 → 0`) are
//!   errors with their own [`ProofError`] variant, never a silent `false`.
//! * **Verification follows the RFC 9162 §2.1.3.2 / §2.1.4.2 algorithms**, with one
//!   deliberate extension: a consistency proof between equal sizes is the empty proof
//!   (RFC 9162 §2.1.4.1 generates exactly that) and verifies iff the two roots are equal.

use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// A SHA-256 output.
pub type Hash = [u8; 32];
/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// RFC 9162 domain separation prefix of a leaf hash.
const LEAF_PREFIX: u8 = 0x00;
/// RFC 9162 domain separation prefix of an interior node hash.
const NODE_PREFIX: u8 = 0x01;

/// Errors of proof generation and verification. Each case is distinct so callers and tests can
/// tell a malformed proof from a forged one.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("hash must be 32 bytes, got {got}")]
    BadHashLength { got: usize },
    #[error("a consistency proof from the empty tree is meaningless")]
    ConsistencyFromZero,
    #[error("old tree size {old} exceeds new tree size {new}")]
    OldSizeExceedsNew { old: u64, new: u64 },
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofSize { expected: usize, got: usize },
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    #[error("consistency proof does not lead to the old root")]
    OldRootMismatch,
    #[error("node source has no hash for {0:?}")]
    MissingNode(NodeId),
}

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([LEAF_PREFIX]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([NODE_PREFIX]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Parses a hash from outside input; anything but exactly 32 bytes is rejected.
pub fn hash_from_slice(b: &[u8]) -> Result<Hash, ProofError> {
    Hash::try_from(b).map_err(|_| ProofError::BadHashLength { got: b.len() })
}

/// A complete (perfect) subtree: covers leaves `[index << level, (index + 1) << level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    pub level: u8,
    pub index: u64,
}

impl NodeId {
    /// The leaf at `index`.
    pub const fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }

    /// First leaf covered by this node.
    pub const fn first_leaf(self) -> u64 {
        self.index << self.level
    }
}

/// Anything that can give the hash of a complete subtree of the tree being proven.
pub trait NodeSource {
    fn node(&self, id: NodeId) -> Option<Hash>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    fn node(&self, id: NodeId) -> Option<Hash> {
        (**self).node(id)
    }
}

/// The root hash `MTH(D[0:size])`.
pub fn root(size: u64, src: &impl NodeSource) -> Result<Hash, ProofError> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, src)
}

/// The audit path `PATH(index, D[0:size])` of RFC 9162 §2.1.3.1, bottom-up.
pub fn inclusion_proof(
    index: u64,
    size: u64,
    src: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk down the RFC recursion over the window [lo, hi); each step contributes the sibling
    // range's hash. The RFC appends siblings on the way back up, hence the final reverse.
    let (mut lo, mut hi) = (0u64, size);
    let mut proof = Vec::new();
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(lo + k, hi, src)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(lo, lo + k, src)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The consistency proof `PROOF(old_size, D[0:new_size])` of RFC 9162 §2.1.4.1.
pub fn consistency_proof(
    old_size: u64,
    new_size: u64,
    src: &impl NodeSource,
) -> Result<Vec<Hash>, ProofError> {
    check_consistency_sizes(old_size, new_size)?;
    // SUBPROOF(m, D[lo:hi], b), unrolled: `m` is the old size relative to `lo`, and `whole`
    // is the RFC's flag b (true while the old tree is the left part of the window).
    let (mut lo, mut hi, mut m, mut whole) = (0u64, new_size, old_size, true);
    let mut proof = Vec::new();
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            proof.push(range_hash(lo + k, hi, src)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(lo, lo + k, src)?);
            lo += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        // SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old subtree itself is not known to the
        // verifier, so it is part of the proof.
        proof.push(range_hash(lo, hi, src)?);
    }
    proof.reverse();
    Ok(proof)
}

/// The complete nodes that [`root`] reads, in order.
pub fn root_nodes(size: u64) -> Vec<NodeId> {
    let rec = Recorder::default();
    // A recording source answers every read, so `root` cannot fail here.
    let _ = root(size, &rec);
    rec.into_nodes()
}

/// The complete nodes that [`inclusion_proof`] reads, in order and without duplicates.
pub fn inclusion_nodes(index: u64, size: u64) -> Result<Vec<NodeId>, ProofError> {
    let rec = Recorder::default();
    inclusion_proof(index, size, &rec)?;
    Ok(rec.into_nodes())
}

/// The complete nodes that [`consistency_proof`] reads, in order and without duplicates.
pub fn consistency_nodes(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, ProofError> {
    let rec = Recorder::default();
    consistency_proof(old_size, new_size, &rec)?;
    Ok(rec.into_nodes())
}

/// The number of hashes in `PATH(index, D[0:size])`, from the same recursion as generation.
pub fn inclusion_proof_len(index: u64, size: u64) -> Result<usize, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi, mut len) = (0u64, size, 0usize);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            hi = lo + k;
        } else {
            lo += k;
        }
        len += 1;
    }
    Ok(len)
}

/// The number of hashes in `PROOF(old_size, D[0:new_size])`.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Result<usize, ProofError> {
    check_consistency_sizes(old_size, new_size)?;
    let (mut lo, mut hi, mut m, mut whole, mut len) = (0u64, new_size, old_size, true, 0usize);
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            hi = lo + k;
        } else {
            lo += k;
            m -= k;
            whole = false;
        }
        len += 1;
    }
    Ok(len + usize::from(!whole))
}

/// Verifies that `leaf` is at `index` in the tree of `size` leaves with root `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let expected = inclusion_proof_len(index, size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }
    // `f` walks the leaf's position up the tree and `s` the last leaf's; where they meet the
    // path runs along the right border, where right siblings are absent and levels are skipped.
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongProofSize {
                expected,
                got: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 || r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree `(new_size, new_root)` extends `(old_size, old_root)`
/// (RFC 9162 §2.1.4.2; equal sizes need the empty proof and equal roots).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_proof_len(old_size, new_size)?;
    if proof.len() != expected {
        return Err(ProofError::WrongProofSize {
            expected,
            got: proof.len(),
        });
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // When the old tree is a perfect subtree its root is the first path element and the
    // proof omits it.
    let seed_from_root = old_size.is_power_of_two();
    let mut path = proof.iter();
    let first = if seed_from_root {
        *old_root
    } else {
        // Non-empty: consistency_proof_len is at least 1 when old_size < new_size.
        *path
            .next()
            .ok_or(ProofError::WrongProofSize { expected, got: 0 })?
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // `fr` rebuilds the old root using only left siblings; `sr` rebuilds the new root.
    let (mut fr, mut sr) = (first, first);
    for c in path {
        if s == 0 {
            return Err(ProofError::WrongProofSize {
                expected,
                got: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if s != 0 || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// A compact range (frontier) over leaves `[0, size)`: the roots of the perfect subtrees that
/// the binary digits of `size` describe, largest first. It lets an auditor recompute a whole
/// tree from raw entries in O(log n) memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// `(level, hash)` of each perfect subtree, levels strictly decreasing.
    nodes: Vec<(u8, Hash)>,
}

impl CompactRange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        self.push_visit(leaf, |_, _| {});
    }

    /// Appends a leaf hash and reports every complete node it creates (the leaf itself first,
    /// then each parent that becomes complete), so a caller can store them.
    pub fn push_visit(&mut self, leaf: Hash, mut visit: impl FnMut(NodeId, &Hash)) {
        let index = self.size;
        visit(NodeId::leaf(index), &leaf);
        let mut level = 0u8;
        let mut hash = leaf;
        // Merge while the previous subtree has the same height: the trailing one bits of the
        // old size are exactly the subtrees that the new leaf completes.
        while let Some(&(top_level, top_hash)) = self.nodes.last() {
            if top_level != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&top_hash, &hash);
            level += 1;
            visit(
                NodeId {
                    level,
                    index: index >> level,
                },
                &hash,
            );
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// Number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The frontier as complete nodes, largest (leftmost) first.
    pub fn nodes(&self) -> Vec<(NodeId, Hash)> {
        let mut start = 0u64;
        self.nodes
            .iter()
            .map(|&(level, hash)| {
                let id = NodeId {
                    level,
                    index: start >> level,
                };
                start += 1u64 << level;
                (id, hash)
            })
            .collect()
    }

    /// `MTH(D[0:size])`: the right fold of the frontier.
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(&(_, last)) => it.fold(last, |acc, (_, left)| node_hash(left, &acc)),
        }
    }
}

/// Largest power of two strictly below `n` (RFC 9162's `k`), for `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn check_consistency_sizes(old_size: u64, new_size: u64) -> Result<(), ProofError> {
    if old_size == 0 {
        return Err(ProofError::ConsistencyFromZero);
    }
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNew {
            old: old_size,
            new: new_size,
        });
    }
    Ok(())
}

/// `MTH(D[lo:hi])` for a range that the RFC recursion produces (`lo` aligned to the largest
/// power of two not above `hi - lo`): the right fold of its perfect subtrees, largest first.
fn range_hash(lo: u64, hi: u64, src: &impl NodeSource) -> Result<Hash, ProofError> {
    debug_assert!(lo < hi);
    let mut parts = Vec::with_capacity(8);
    let mut start = lo;
    while start < hi {
        // The highest set bit of the remaining length is the next (largest) perfect subtree.
        let level = 63 - (hi - start).leading_zeros();
        let id = NodeId {
            level: level as u8,
            index: start >> level,
        };
        parts.push(src.node(id).ok_or(ProofError::MissingNode(id))?);
        start += 1u64 << level;
    }
    let mut it = parts.into_iter().rev();
    // `parts` is non-empty because lo < hi.
    let last = it.next().ok_or(ProofError::WrongProofSize {
        expected: 1,
        got: 0,
    })?;
    Ok(it.fold(last, |acc, left| node_hash(&left, &acc)))
}

/// A source that answers every read with a dummy hash and remembers what was asked.
#[derive(Default)]
struct Recorder {
    seen: RefCell<Vec<NodeId>>,
}

impl Recorder {
    fn into_nodes(self) -> Vec<NodeId> {
        self.seen.into_inner()
    }
}

impl NodeSource for Recorder {
    fn node(&self, id: NodeId) -> Option<Hash> {
        let mut seen = self.seen.borrow_mut();
        if !seen.contains(&id) {
            seen.push(id);
        }
        Some([0; HASH_LEN])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// All leaves of a tree held in memory; nodes are hashed on demand.
    struct Leaves(Vec<Hash>);

    impl NodeSource for Leaves {
        fn node(&self, id: NodeId) -> Option<Hash> {
            let lo = usize::try_from(id.first_leaf()).ok()?;
            let hi = lo + (1usize << id.level);
            (hi <= self.0.len()).then(|| naive_mth(&self.0[lo..hi]))
        }
    }

    /// MTH straight from RFC 9162 §2.1.1.
    fn naive_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    #[test]
    fn hashing_primitives() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Leaf of the empty string, from transparency-dev/merkle testonly NodeHashes[0][0].
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert_eq!(
            hash_from_slice(&[0; 31]),
            Err(ProofError::BadHashLength { got: 31 })
        );
        assert_eq!(
            hash_from_slice(&[0; 33]),
            Err(ProofError::BadHashLength { got: 33 })
        );
        assert_eq!(hash_from_slice(&[7; 32]), Ok([7; 32]));
    }

    #[test]
    fn proofs_round_trip_small_trees() {
        for n in 1..=70u64 {
            let src = Leaves(leaves(n));
            let r = root(n, &src).unwrap();
            assert_eq!(r, naive_mth(&src.0));
            for i in 0..n {
                let p = inclusion_proof(i, n, &src).unwrap();
                assert_eq!(p.len(), inclusion_proof_len(i, n).unwrap());
                verify_inclusion(&src.0[i as usize], i, n, &p, &r).unwrap();
            }
            for m in 1..=n {
                let old = naive_mth(&src.0[..m as usize]);
                let p = consistency_proof(m, n, &src).unwrap();
                assert_eq!(p.len(), consistency_proof_len(m, n).unwrap());
                verify_consistency(m, n, &old, &r, &p).unwrap();
            }
        }
    }

    #[test]
    fn strictness() {
        let src = Leaves(leaves(8));
        let r = root(8, &src).unwrap();
        let e = empty_root();
        assert_eq!(
            consistency_proof(0, 0, &src),
            Err(ProofError::ConsistencyFromZero)
        );
        assert_eq!(
            verify_consistency(0, 0, &e, &e, &[]),
            Err(ProofError::ConsistencyFromZero)
        );
        assert_eq!(
            verify_consistency(0, 8, &e, &r, &[]),
            Err(ProofError::ConsistencyFromZero)
        );
        assert_eq!(
            verify_consistency(5, 4, &r, &r, &[]),
            Err(ProofError::OldSizeExceedsNew { old: 5, new: 4 })
        );
        assert_eq!(
            inclusion_proof(8, 8, &src),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            verify_inclusion(&r, 0, 0, &[], &r),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        let mut p = inclusion_proof(3, 8, &src).unwrap();
        p.push([0; 32]);
        assert_eq!(
            verify_inclusion(&src.0[3], 3, 8, &p, &r),
            Err(ProofError::WrongProofSize {
                expected: 3,
                got: 4
            })
        );
        p.pop();
        p[1][0] ^= 1;
        assert_eq!(
            verify_inclusion(&src.0[3], 3, 8, &p, &r),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(verify_consistency(8, 8, &r, &r, &[]), Ok(()));
        assert_eq!(
            verify_consistency(8, 8, &r, &e, &[]),
            Err(ProofError::RootMismatch)
        );
        let old = root(5, &src).unwrap();
        let mut c = consistency_proof(5, 8, &src).unwrap();
        c[0][0] ^= 1;
        assert_eq!(
            verify_consistency(5, 8, &old, &r, &c),
            Err(ProofError::OldRootMismatch)
        );
        assert_eq!(
            inclusion_proof(0, 8, &Leaves(vec![])),
            Err(ProofError::MissingNode(NodeId { level: 2, index: 1 }))
        );
    }

    #[test]
    fn node_lists_are_logarithmic_and_complete() {
        assert!(root_nodes(0).is_empty());
        assert_eq!(
            root_nodes(7),
            vec![
                NodeId { level: 2, index: 0 },
                NodeId { level: 1, index: 2 },
                NodeId { level: 0, index: 6 },
            ]
        );
        let n = 1_000_003u64;
        let nodes = inclusion_nodes(123_456, n).unwrap();
        assert!(nodes.len() <= 2 * 64, "{}", nodes.len());
        for id in &nodes {
            assert!((id.index + 1) << id.level <= n, "{id:?} not complete");
        }
        assert!(consistency_nodes(1_000, n).unwrap().len() <= 2 * 64);
        assert_eq!(
            inclusion_nodes(5, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
    }

    #[test]
    fn compact_range_matches_naive() {
        let all = leaves(300);
        let mut cr = CompactRange::new();
        assert_eq!(cr.root(), empty_root());
        let mut completed = Vec::new();
        for (i, l) in all.iter().enumerate() {
            cr.push_visit(*l, |id, h| completed.push((id, *h)));
            assert_eq!(cr.size(), i as u64 + 1);
            assert_eq!(cr.root(), naive_mth(&all[..=i]));
        }
        // Every perfect subtree is reported exactly once, with the right hash.
        let src = Leaves(all.clone());
        let expected: u64 = (0..=8).map(|l| 300u64 >> l).sum();
        assert_eq!(completed.len() as u64, expected);
        for (id, h) in completed {
            assert_eq!(Some(h), src.node(id));
        }
        for (id, h) in cr.nodes() {
            assert_eq!(Some(h), src.node(id));
        }
    }
}
