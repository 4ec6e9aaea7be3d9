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
///
/// Nodes live in two arenas (inner nodes, leaves) and refer to each other by 32-bit index,
/// with no allocation or pointer of their own. A key costs one leaf (72 bytes) and about 1.44
/// inner nodes (44 bytes each: two keys that share bits past where they part from the others
/// hang under a chain), some 136 bytes in all, against about 195 for boxed nodes. Nothing is
/// ever removed from the map, so the arenas only grow.
#[derive(Default)]
pub struct MapTree {
    root: NodeRef,
    len: u64,
    inner: Arena<Inner>,
    leaves: Arena<Leaf>,
}

impl std::fmt::Debug for MapTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapTree").field("len", &self.len).finish()
    }
}

/// A node: empty, or an index into one of the arenas, the low bit telling which.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct NodeRef(u32);

enum Node {
    Empty,
    Leaf(u32),
    Inner(u32),
}

impl NodeRef {
    const EMPTY: NodeRef = NodeRef(0);

    fn leaf(i: u32) -> NodeRef {
        NodeRef(((i + 1) << 1) | 1)
    }

    fn inner(i: u32) -> NodeRef {
        NodeRef((i + 1) << 1)
    }

    fn get(self) -> Node {
        match self.0 {
            0 => Node::Empty,
            r if r & 1 == 1 => Node::Leaf((r >> 1) - 1),
            r => Node::Inner((r >> 1) - 1),
        }
    }
}

#[derive(Debug)]
struct Leaf {
    key: Hash,
    value: History,
}

#[derive(Debug)]
struct Inner {
    hash: Hash,
    left: NodeRef,
    right: NodeRef,
    /// A key below changed since the last rehash, so `hash` is stale.
    dirty: bool,
}

/// Slots allocated a chunk at a time: no slack beyond one chunk, and no copy as it grows.
struct Arena<T> {
    chunks: Vec<Vec<T>>,
    len: u32,
}

impl<T> Default for Arena<T> {
    fn default() -> Self {
        Arena {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

const CHUNK_BITS: u32 = 16;
const CHUNK: usize = 1 << CHUNK_BITS;

impl<T> Arena<T> {
    fn push(&mut self, v: T) -> u32 {
        let i = self.len;
        // Indices are shifted left once in a `NodeRef`: at most 2³¹ - 1 of each.
        assert!(i < (u32::MAX >> 1) - 1, "the map holds 2^31 nodes");
        if (i as usize) & (CHUNK - 1) == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks
            .last_mut()
            .expect("a chunk was just pushed")
            .push(v);
        self.len += 1;
        i
    }

    fn get(&self, i: u32) -> &T {
        &self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }

    fn get_mut(&mut self, i: u32) -> &mut T {
        &mut self.chunks[(i >> CHUNK_BITS) as usize][i as usize & (CHUNK - 1)]
    }
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
        let mut node = self.root;
        let mut depth = 0;
        loop {
            match node.get() {
                Node::Empty => return None,
                Node::Leaf(l) => {
                    let l = self.leaves.get(l);
                    return (l.key == *key).then_some(l.value);
                }
                Node::Inner(i) => {
                    let i = self.inner.get(i);
                    node = if bit(key, depth) { i.right } else { i.left };
                    depth += 1;
                }
            }
        }
    }

    /// Appends entry `index` with leaf hash `leaf` to the history of `key` (creating it).
    pub fn push(&mut self, key: &Hash, index: u64, leaf: &Hash) {
        self.update(key, |value| value.push(index, leaf));
    }

    /// Sets the history of `key`.
    pub fn set(&mut self, key: &Hash, value: History) {
        self.update(key, |v| *v = value);
    }

    /// Applies `change` to the history of `key` (the empty history when the map lacks it), in
    /// one walk down the tree: a key already held is changed in its leaf, in place.
    fn update(&mut self, key: &Hash, change: impl FnOnce(&mut History)) {
        // Down to where the key belongs, marking the path dirty; `parent` is the inner node
        // (and side) whose child is replaced when the key lands in an empty slot or a leaf.
        let mut parent: Option<(u32, bool)> = None;
        let mut node = self.root;
        let mut depth = 0;
        let replacement = loop {
            match node.get() {
                Node::Empty => {
                    let mut value = History::default();
                    change(&mut value);
                    break NodeRef::leaf(self.leaves.push(Leaf { key: *key, value }));
                }
                Node::Leaf(l) => {
                    let old = self.leaves.get_mut(l);
                    if old.key == *key {
                        change(&mut old.value);
                        return;
                    }
                    let mut value = History::default();
                    change(&mut value);
                    let new = self.leaves.push(Leaf { key: *key, value });
                    break self.split(l, new, depth);
                }
                Node::Inner(i) => {
                    let right = bit(key, depth);
                    let inner = self.inner.get_mut(i);
                    inner.dirty = true;
                    parent = Some((i, right));
                    node = if right { inner.right } else { inner.left };
                    depth += 1;
                }
            }
        };
        match parent {
            None => self.root = replacement,
            Some((i, right)) => {
                let inner = self.inner.get_mut(i);
                if right {
                    inner.right = replacement;
                } else {
                    inner.left = replacement;
                }
            }
        }
        self.len += 1;
    }

    /// The root hash, rehashing what changed since the last call.
    pub fn root(&mut self) -> Hash {
        self.rehash(self.root)
    }

    /// The proof of `key`'s history, or of its absence. Hashes of nodes changed since the last
    /// [`MapTree::root`] are computed on the way, so the proof is always of the current map.
    pub fn prove(&self, key: &Hash) -> MapProof {
        let mut siblings = Vec::new();
        let mut node = self.root;
        let mut depth = 0;
        let terminal = loop {
            match node.get() {
                Node::Empty => break Terminal::Empty,
                Node::Leaf(l) => {
                    let l = self.leaves.get(l);
                    break Terminal::Leaf {
                        key: l.key,
                        value: l.value,
                    };
                }
                Node::Inner(i) => {
                    let i = self.inner.get(i);
                    let (next, other) = if bit(key, depth) {
                        (i.right, i.left)
                    } else {
                        (i.left, i.right)
                    };
                    siblings.push(self.hash_of(other));
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
        self.collect(self.root, &mut out);
        out
    }

    /// The subtree at `depth` holding leaves `a` and `b`, whose keys differ (distinct SHA-256
    /// outputs part before bit 256, so the recursion ends).
    fn split(&mut self, a: u32, b: u32, depth: usize) -> NodeRef {
        let (ka, kb) = (&self.leaves.get(a).key, &self.leaves.get(b).key);
        let (ba, bb) = (bit(ka, depth), bit(kb, depth));
        let (left, right) = if ba == bb {
            let below = self.split(a, b, depth + 1);
            if ba {
                (NodeRef::EMPTY, below)
            } else {
                (below, NodeRef::EMPTY)
            }
        } else if ba {
            (NodeRef::leaf(b), NodeRef::leaf(a))
        } else {
            (NodeRef::leaf(a), NodeRef::leaf(b))
        };
        NodeRef::inner(self.inner.push(Inner {
            hash: EMPTY,
            left,
            right,
            dirty: true,
        }))
    }

    fn rehash(&mut self, node: NodeRef) -> Hash {
        // Only a dirty inner node has a hash to recompute and store; the rest is `hash_of`'s.
        let Node::Inner(i) = node.get() else {
            return self.hash_of(node);
        };
        let inner = self.inner.get(i);
        if !inner.dirty {
            return inner.hash;
        }
        let (left, right) = (inner.left, inner.right);
        let h = node_hash(&self.rehash(left), &self.rehash(right));
        let inner = self.inner.get_mut(i);
        inner.hash = h;
        inner.dirty = false;
        h
    }

    /// The hash of a subtree without caching (for proofs taken between rehashes).
    fn hash_of(&self, node: NodeRef) -> Hash {
        match node.get() {
            Node::Empty => EMPTY,
            Node::Leaf(l) => {
                let l = self.leaves.get(l);
                leaf_hash(&l.key, &l.value)
            }
            Node::Inner(i) => {
                let i = self.inner.get(i);
                if i.dirty {
                    node_hash(&self.hash_of(i.left), &self.hash_of(i.right))
                } else {
                    i.hash
                }
            }
        }
    }

    fn collect(&self, node: NodeRef, out: &mut Vec<(Hash, History)>) {
        match node.get() {
            Node::Empty => {}
            Node::Leaf(l) => {
                let l = self.leaves.get(l);
                out.push((l.key, l.value));
            }
            Node::Inner(i) => {
                let i = self.inner.get(i);
                self.collect(i.left, out);
                self.collect(i.right, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::key_of;

    #[test]
    fn a_key_costs_one_leaf_and_one_inner_node() {
        assert_eq!(std::mem::size_of::<Leaf>(), 72);
        assert_eq!(std::mem::size_of::<Inner>(), 44);
        let mut t = MapTree::new();
        for i in 0..1000 {
            t.push(&key_of(&format!("sgtin:1.{i}")), i, &[2; 32]);
        }
        assert_eq!(t.leaves.len, 1000);
        assert!(t.inner.len >= 999, "{}", t.inner.len);
    }

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

    /// The root and a proof of a fixed map, as the boxed tree before the arenas computed them:
    /// the map's roots are committed in the log, so its layout in memory must not move them.
    #[test]
    fn the_root_of_a_fixed_map_is_pinned() {
        let mut t = MapTree::new();
        for i in 0..5000u64 {
            let k = key_of(&format!("sgtin:0614141.107346.{i}"));
            t.push(&k, i, &[(i % 251) as u8; 32]);
            if i % 777 == 0 {
                t.root();
            }
            if i % 3 == 0 {
                t.push(&k, i + 100_000, &[7; 32]);
            }
        }
        let p = t.prove(&key_of("sgtin:0614141.107346.42"));
        assert_eq!(
            hex::encode(t.root()),
            "7ca30b7b1c8fc8edd35cbceced86a0167fdd3b31b5c51a38b105ad98b8fec79f"
        );
        assert_eq!(p.siblings.len(), 12);
        assert_eq!(
            hex::encode(p.siblings[3]),
            "c5fe68276ca2bf22837c471fef40b029750960118a05ca7b55cbea7ae254b196"
        );
    }
}
