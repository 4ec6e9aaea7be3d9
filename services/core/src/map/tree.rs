//! The map's compressed sparse Merkle tree, in memory.
//!
//! A subtree with one key is stored (and hashed) as that key's leaf wherever its path first
//! parts from every other key's, so the tree has one inner node fewer than keys and a key sits
//! about log₂(keys) levels down. Updates mark the inner nodes on their paths dirty;
//! [`MapTree::root`] rehashes only those, so a batch of updates costs one hash per changed
//! node, shared paths near the root once. The store keeps the leaves ([`MapTree::leaves`]) and rebuilds the
//! inner nodes from them when it opens.

use super::{EMPTY, Hash, History, MapProof, Terminal, bit, leaf_hash, node_hash};

/// The authenticated map from key to [`History`].
#[derive(Debug, Default)]
pub struct MapTree {
    root: Node,
    len: u64,
}

#[derive(Debug, Default)]
enum Node {
    #[default]
    Empty,
    Leaf(Box<Leaf>),
    Inner(Box<Inner>),
}

#[derive(Debug)]
struct Leaf {
    key: Hash,
    value: History,
}

#[derive(Debug)]
struct Inner {
    /// `None` while a key below changed since the last rehash.
    hash: Option<Hash>,
    left: Node,
    right: Node,
}

impl MapTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree holding `leaves` (in any order; a key given twice keeps its last value).
    pub fn from_leaves(leaves: impl IntoIterator<Item = (Hash, History)>) -> Self {
        let mut t = MapTree::new();
        for (key, value) in leaves {
            t.set(&key, value);
        }
        t
    }

    /// How many keys the map holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The history of `key`, if the map holds it.
    pub fn get(&self, key: &Hash) -> Option<History> {
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => return None,
                Node::Leaf(l) => return (l.key == *key).then_some(l.value),
                Node::Inner(i) => {
                    node = if bit(key, depth) { &i.right } else { &i.left };
                    depth += 1;
                }
            }
        }
    }

    /// Appends entry `index` with leaf hash `leaf` to the history of `key` (creating it).
    pub fn push(&mut self, key: &Hash, index: u64, leaf: &Hash) {
        let mut value = self.get(key).unwrap_or_default();
        value.push(index, leaf);
        self.set(key, value);
    }

    /// Sets the history of `key`.
    pub fn set(&mut self, key: &Hash, value: History) {
        if set_in(&mut self.root, key, value, 0) {
            self.len += 1;
        }
    }

    /// The root hash, rehashing what changed since the last call.
    pub fn root(&mut self) -> Hash {
        rehash(&mut self.root)
    }

    /// The proof of `key`'s history, or of its absence. Hashes of nodes changed since the last
    /// [`MapTree::root`] are computed on the way, so the proof is always of the current map.
    pub fn prove(&self, key: &Hash) -> MapProof {
        let mut siblings = Vec::new();
        let mut node = &self.root;
        let mut depth = 0;
        let terminal = loop {
            match node {
                Node::Empty => break Terminal::Empty,
                Node::Leaf(l) => {
                    break Terminal::Leaf {
                        key: l.key,
                        value: l.value,
                    };
                }
                Node::Inner(i) => {
                    let (next, other) = if bit(key, depth) {
                        (&i.right, &i.left)
                    } else {
                        (&i.left, &i.right)
                    };
                    siblings.push(hash_of(other));
                    node = next;
                    depth += 1;
                }
            }
        };
        MapProof { siblings, terminal }
    }

    /// Every (key, history), in key order: what the store writes.
    pub fn leaves(&self) -> Vec<(Hash, History)> {
        let mut out = Vec::with_capacity(self.len as usize);
        collect(&self.root, &mut out);
        out
    }
}

/// Sets `key` under `node` at `depth`; true when the key is new.
fn set_in(node: &mut Node, key: &Hash, value: History, depth: usize) -> bool {
    match node {
        Node::Empty => {
            *node = Node::Leaf(Box::new(Leaf { key: *key, value }));
            true
        }
        Node::Leaf(l) if l.key == *key => {
            l.value = value;
            false
        }
        Node::Leaf(_) => {
            let Node::Leaf(old) = std::mem::take(node) else {
                unreachable!("matched a leaf just above")
            };
            *node = split(old, Box::new(Leaf { key: *key, value }), depth);
            true
        }
        Node::Inner(i) => {
            i.hash = None;
            let child = if bit(key, depth) {
                &mut i.right
            } else {
                &mut i.left
            };
            set_in(child, key, value, depth + 1)
        }
    }
}

/// The subtree at `depth` holding two leaves whose keys differ (distinct SHA-256 outputs
/// part before bit 256, so the recursion ends).
fn split(a: Box<Leaf>, b: Box<Leaf>, depth: usize) -> Node {
    let (ba, bb) = (bit(&a.key, depth), bit(&b.key, depth));
    let (left, right) = if ba == bb {
        let below = split(a, b, depth + 1);
        if ba {
            (Node::Empty, below)
        } else {
            (below, Node::Empty)
        }
    } else if ba {
        (Node::Leaf(b), Node::Leaf(a))
    } else {
        (Node::Leaf(a), Node::Leaf(b))
    };
    Node::Inner(Box::new(Inner {
        hash: None,
        left,
        right,
    }))
}

fn rehash(node: &mut Node) -> Hash {
    match node {
        Node::Empty => EMPTY,
        Node::Leaf(l) => leaf_hash(&l.key, &l.value),
        Node::Inner(i) => {
            if let Some(h) = i.hash {
                return h;
            }
            let h = node_hash(&rehash(&mut i.left), &rehash(&mut i.right));
            i.hash = Some(h);
            h
        }
    }
}

/// The hash of a subtree without caching (for proofs taken between rehashes).
fn hash_of(node: &Node) -> Hash {
    match node {
        Node::Empty => EMPTY,
        Node::Leaf(l) => leaf_hash(&l.key, &l.value),
        Node::Inner(i) => i
            .hash
            .unwrap_or_else(|| node_hash(&hash_of(&i.left), &hash_of(&i.right))),
    }
}

fn collect(node: &Node, out: &mut Vec<(Hash, History)>) {
    match node {
        Node::Empty => {}
        Node::Leaf(l) => out.push((l.key, l.value)),
        Node::Inner(i) => {
            collect(&i.left, out);
            collect(&i.right, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::key_of;

    #[test]
    fn the_empty_map_and_one_key() {
        let mut t = MapTree::new();
        assert_eq!(t.root(), EMPTY);
        let k = key_of("sgtin:1.1");
        t.push(&k, 4, &[9; 32]);
        let v = t.get(&k).unwrap();
        assert_eq!(t.root(), leaf_hash(&k, &v));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn the_root_depends_on_content_not_on_insertion_order() {
        let keys: Vec<Hash> = (0..200).map(|i| key_of(&format!("sgtin:1.{i}"))).collect();
        let mut a = MapTree::new();
        for (i, k) in keys.iter().enumerate() {
            a.push(k, i as u64, &[1; 32]);
        }
        let mut b = MapTree::new();
        for (i, k) in keys.iter().enumerate().rev() {
            b.push(k, i as u64, &[1; 32]);
            // Rehash midway, so cached hashes meet later updates.
            if i % 37 == 0 {
                b.root();
            }
        }
        assert_eq!(a.root(), b.root());
        assert_eq!(MapTree::from_leaves(a.leaves()).root(), a.root());
        assert_eq!(a.len(), 200);
    }
}
