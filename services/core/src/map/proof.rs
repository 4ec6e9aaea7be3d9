//! Map proofs: a key's history, or its absence, against a map root.
//!
//! A proof is the sibling hashes down the key's path, from the root's children to where the
//! path ends, and what it ends at: the key's own leaf (presence, with its history), another
//! key's leaf whose key shares the path so far (absence), or an empty subtree (absence). The
//! verifier hashes back up with the key's bits. Because a lone key is always hashed as a leaf
//! at the top of its subtree, and leaves, nodes and the empty subtree hash differently, a
//! proof that stops at another depth than the tree's would need a SHA-256 collision.

use super::{EMPTY, Hash, History, MapError, bit, leaf_hash, node_hash};

/// A proof of one key's value, or absence, in the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapProof {
    /// Sibling hashes from the root's children down; at most 256.
    pub siblings: Vec<Hash>,
    pub terminal: Terminal,
}

/// Where a key's path ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Terminal {
    /// An empty subtree: the key is absent.
    Empty,
    /// A leaf: the key's own (present, with this history) or another key's (absent).
    Leaf { key: Hash, value: History },
}

impl MapProof {
    /// Checks the proof for `key` against `root`: `Some(history)` when the key is in the map,
    /// `None` when it is proven absent.
    pub fn verify(&self, root: &Hash, key: &Hash) -> Result<Option<History>, MapError> {
        let depth = self.siblings.len();
        if depth > 256 {
            return Err(MapError::ProofTooLong { got: depth });
        }
        // A lone leaf or an empty subtree beside an empty sibling would have been folded into
        // its parent: a tree never holds that shape, so a proof never shows it.
        if self.siblings.last() == Some(&EMPTY) {
            return Err(MapError::NotCanonical);
        }
        let (mut cur, found) = match &self.terminal {
            Terminal::Empty => (EMPTY, None),
            Terminal::Leaf { key: k, value } => {
                if k != key && (0..depth).any(|d| bit(k, d) != bit(key, d)) {
                    return Err(MapError::WrongLeaf);
                }
                (leaf_hash(k, value), (k == key).then_some(*value))
            }
        };
        for (d, sibling) in self.siblings.iter().enumerate().rev() {
            cur = if bit(key, d) {
                node_hash(sibling, &cur)
            } else {
                node_hash(&cur, sibling)
            };
        }
        if cur != *root {
            return Err(MapError::RootMismatch);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{MapTree, key_of};
    use proptest::prelude::*;

    fn tree_of(n: usize) -> MapTree {
        let mut t = MapTree::new();
        for i in 0..n {
            t.push(&key_of(&format!("sgtin:1.{i}")), i as u64, &[i as u8; 32]);
        }
        t
    }

    #[test]
    fn presence_and_absence_verify_and_tampering_fails() {
        let mut t = tree_of(50);
        let root = t.root();
        let k = key_of("sgtin:1.7");
        let p = t.prove(&k);
        assert_eq!(p.verify(&root, &k).unwrap(), t.get(&k));
        let missing = key_of("sgtin:1.999");
        assert_eq!(t.prove(&missing).verify(&root, &missing).unwrap(), None);
        // A present key's proof does not prove another key present.
        assert_eq!(p.verify(&root, &missing), Err(MapError::WrongLeaf));
        // A changed history, sibling or root fails.
        let mut bad = p.clone();
        if let Terminal::Leaf { value, .. } = &mut bad.terminal {
            value.count += 1;
        }
        assert_eq!(bad.verify(&root, &k), Err(MapError::RootMismatch));
        let mut bad = p.clone();
        bad.siblings[0][0] ^= 1;
        assert_eq!(bad.verify(&root, &k), Err(MapError::RootMismatch));
        assert_eq!(p.verify(&[1; 32], &k), Err(MapError::RootMismatch));
    }

    #[test]
    fn a_present_key_cannot_be_proven_absent() {
        let mut t = tree_of(50);
        let root = t.root();
        let k = key_of("sgtin:1.7");
        let honest = t.prove(&k);
        // Claim the path ends one level higher at an empty subtree, or at the key's leaf.
        let mut short = honest.clone();
        short.siblings.pop();
        short.terminal = Terminal::Empty;
        assert!(short.verify(&root, &k).is_err());
        // Claim it goes one level deeper, beside an empty subtree.
        let mut long = honest.clone();
        long.siblings.push(EMPTY);
        assert_eq!(long.verify(&root, &k), Err(MapError::NotCanonical));
        let mut long = honest;
        long.siblings.push([5; 32]);
        assert_eq!(long.verify(&root, &k), Err(MapError::RootMismatch));
    }

    #[test]
    fn the_empty_map_proves_every_key_absent() {
        let mut t = MapTree::new();
        let root = t.root();
        let k = key_of("sscc:1");
        assert_eq!(t.prove(&k).verify(&root, &k).unwrap(), None);
        let too_long = MapProof {
            siblings: vec![[1; 32]; 257],
            terminal: Terminal::Empty,
        };
        assert_eq!(
            too_long.verify(&root, &k),
            Err(MapError::ProofTooLong { got: 257 })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Any set of keys with any histories: every key's proof verifies to its history,
        /// keys never inserted verify absent, whatever the order of updates and rehashes.
        #[test]
        fn every_key_proves_its_history(
            ops in proptest::collection::vec((0u16..300, any::<u8>(), any::<bool>()), 1..200),
        ) {
            let mut t = MapTree::new();
            let mut model: std::collections::HashMap<Hash, History> = Default::default();
            for (i, (k, leaf, rehash)) in ops.iter().enumerate() {
                let key = key_of(&format!("lgtin:{k}"));
                t.push(&key, i as u64, &[*leaf; 32]);
                model.entry(key).or_default().push(i as u64, &[*leaf; 32]);
                if *rehash {
                    t.root();
                }
            }
            let root = t.root();
            prop_assert_eq!(t.len(), model.len() as u64);
            for (key, history) in &model {
                prop_assert_eq!(t.prove(key).verify(&root, key).unwrap(), Some(*history));
            }
            for k in 300..320 {
                let key = key_of(&format!("lgtin:{k}"));
                prop_assert_eq!(t.prove(&key).verify(&root, &key).unwrap(), None);
            }
            prop_assert_eq!(MapTree::from_leaves(model.into_iter()).root(), root);
        }
    }
}
