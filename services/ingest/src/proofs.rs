//! Inclusion proofs for a whole committed batch, for its receipts.
//!
//! A proof read from the stored tiles costs a few hundred hashes (the tiles hold only every
//! eighth level), far too much per receipt. But a batch is the contiguous range `[a, n)` at the
//! right edge of the tree of size `n`, and every node an audit path of an entry in it needs is
//! either built from the batch's own leaves or is a left sibling of an ancestor of entry `a`
//! (left siblings in RFC 9162 are always complete subtrees). So one stored proof, entry `a`'s,
//! plus the batch's leaves give every proof, each node hashed once.

use std::cell::RefCell;
use std::collections::HashMap;

use rxledger_core::merkle::{self, Hash, NodeId, NodeSource, ProofError};

/// The audit paths of entries `a..a + leaves.len()` in the tree of size `n`, given the stored
/// audit path of entry `a`. `leaves` must be exactly the leaf hashes of `[a, n)`.
pub fn batch_proofs(
    a: u64,
    n: u64,
    leaves: &[Hash],
    first_proof: &[Hash],
) -> Result<Vec<Vec<Hash>>, ProofError> {
    if a + leaves.len() as u64 != n {
        return Err(ProofError::IndexOutOfRange { index: a, size: n });
    }
    let mut shape = Vec::new();
    left_siblings(a, 0, n, &mut shape);
    if shape.len() != first_proof.len() {
        return Err(ProofError::WrongProofSize {
            expected: shape.len(),
            got: first_proof.len(),
        });
    }
    let old = shape
        .into_iter()
        .zip(first_proof)
        .filter_map(|(id, h)| id.map(|id| (id, *h)))
        .collect();
    let src = BatchNodes {
        a,
        leaves,
        old,
        memo: RefCell::new(HashMap::new()),
    };
    (a..n)
        .map(|i| merkle::inclusion_proof(i, n, &src))
        .collect()
}

/// Which elements of `PATH(m, D[lo:hi])` (RFC 9162 §2.1.3.1), leaf up, are left siblings,
/// and which complete subtree each is; right siblings are `None`.
fn left_siblings(m: u64, lo: u64, hi: u64, out: &mut Vec<Option<NodeId>>) {
    if hi - lo <= 1 {
        return;
    }
    // The largest power of two below the range's size.
    let k = 1u64 << (63 - (hi - lo - 1).leading_zeros());
    if m < lo + k {
        left_siblings(m, lo, lo + k, out);
        out.push(None);
    } else {
        left_siblings(m, lo + k, hi, out);
        out.push(Some(NodeId {
            level: k.trailing_zeros() as u8,
            index: lo / k,
        }));
    }
}

/// Complete subtrees of the tree, from the batch's leaves and entry `a`'s left siblings.
struct BatchNodes<'a> {
    a: u64,
    leaves: &'a [Hash],
    old: HashMap<NodeId, Hash>,
    memo: RefCell<HashMap<NodeId, Hash>>,
}

impl NodeSource for BatchNodes<'_> {
    fn node(&self, id: NodeId) -> Option<Hash> {
        if id.level == 0 && id.index >= self.a {
            return self.leaves.get((id.index - self.a) as usize).copied();
        }
        if let Some(h) = self.old.get(&id) {
            return Some(*h);
        }
        if let Some(h) = self.memo.borrow().get(&id) {
            return Some(*h);
        }
        if id.level == 0 {
            return None;
        }
        let child = |index| NodeId {
            level: id.level - 1,
            index,
        };
        let h = merkle::node_hash(
            &self.node(child(id.index * 2))?,
            &self.node(child(id.index * 2 + 1))?,
        );
        self.memo.borrow_mut().insert(id, h);
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct All(Vec<Hash>);

    impl NodeSource for All {
        fn node(&self, id: NodeId) -> Option<Hash> {
            if id.level == 0 {
                return self.0.get(id.index as usize).copied();
            }
            let l = self.node(NodeId {
                level: id.level - 1,
                index: id.index * 2,
            })?;
            let r = self.node(NodeId {
                level: id.level - 1,
                index: id.index * 2 + 1,
            })?;
            Some(merkle::node_hash(&l, &r))
        }
    }

    /// Every proof equals the one computed from the whole tree, for every split.
    #[test]
    fn batch_proofs_match_full_tree_proofs() {
        let all: Vec<Hash> = (0u32..70)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        for n in 1..=all.len() as u64 {
            let tree = All(all[..n as usize].to_vec());
            for a in 0..n {
                let first = merkle::inclusion_proof(a, n, &tree).unwrap();
                let got = batch_proofs(a, n, &all[a as usize..n as usize], &first).unwrap();
                for (i, p) in (a..n).zip(got) {
                    assert_eq!(
                        p,
                        merkle::inclusion_proof(i, n, &tree).unwrap(),
                        "{a} {i} {n}"
                    );
                }
            }
        }
    }
}
