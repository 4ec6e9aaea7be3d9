//! Differential test against an independent RFC 6962 implementation, the `ct-merkle` crate
//! (with SHA-256 its hashing is exactly RFC 6962 / RFC 9162: 0x00 leaf and 0x01 node
//! prefixes). Our proofs are produced the way the server produces them, from tiles built by
//! `tiles::append` in uneven batches and read through a `TileSet`, so this covers the whole
//! read path, not just the recursion.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use proptest::prelude::*;
use rxledger_core::merkle::{self, Hash, leaf_hash};
use rxledger_core::tiles::{self, Tile, TileSet};
use sha2::Sha256;

/// Leaf `i` is the 8-byte big-endian index followed by a byte that varies the length.
fn entry(i: u64) -> Vec<u8> {
    let mut e = i.to_be_bytes().to_vec();
    e.extend(std::iter::repeat_n(0xab, (i % 5) as usize));
    e
}

/// Appends leaves in the given batch sizes (cycled) and keeps every tile, as the store does.
fn build(leaves: &[Hash], batches: &[usize]) -> TileSet {
    let mut set = TileSet::new();
    let mut size = 0u64;
    let mut rest = leaves;
    let mut batches = batches.iter().copied().cycle();
    while !rest.is_empty() {
        let n = batches.next().unwrap_or(1).clamp(1, rest.len());
        let edge: Vec<Tile> = tiles::right_edge(size)
            .iter()
            .map(|(id, _)| set.get(*id).expect("right edge was stored").clone())
            .collect();
        for t in tiles::append(size, &edge, &rest[..n]).unwrap() {
            set.insert(t);
        }
        size += n as u64;
        rest = &rest[n..];
    }
    set
}

fn digest(h: &Hash) -> ct_merkle::digest::Output<Sha256> {
    (*h).into()
}

fn ct_inclusion(proof: &[Hash]) -> InclusionProof<Sha256> {
    let digests: Vec<_> = proof.iter().map(digest).collect();
    InclusionProof::from_digests(digests.iter())
}

fn ct_consistency(proof: &[Hash]) -> ConsistencyProof<Sha256> {
    let digests: Vec<_> = proof.iter().map(digest).collect();
    ConsistencyProof::from_digests(digests.iter())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn proofs_and_roots_match_ct_merkle(
        size in 1u64..3000,
        batches in proptest::collection::vec(1usize..1200, 1..5),
        picks in proptest::collection::vec(any::<u64>(), 6),
    ) {
        let entries: Vec<Vec<u8>> = (0..size).map(entry).collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let set = build(&leaves, &batches);

        let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        // Roots agree at every size on the way up (cheap: ct-merkle keeps its tree in memory).
        let mut ct_roots = Vec::with_capacity(entries.len());
        for e in &entries {
            ct.push(e.clone());
            ct_roots.push(ct.root());
        }
        let ct_root = ct.root();
        let root = merkle::root(size, &set).unwrap();
        prop_assert_eq!(ct_root.as_bytes().as_slice(), &root[..]);

        for &p in &picks {
            // Inclusion: same bytes as ct-merkle's own proof, and accepted by its verifier.
            let i = p % size;
            let proof = merkle::inclusion_proof(i, size, &set).unwrap();
            let ct_proof = ct_inclusion(&proof);
            let theirs = ct.prove_inclusion(i as usize);
            prop_assert_eq!(ct_proof.as_bytes(), theirs.as_bytes());
            prop_assert!(ct_root.verify_inclusion(&entries[i as usize], i, &ct_proof).is_ok());
            merkle::verify_inclusion(&leaves[i as usize], i, size, &proof, &root).unwrap();

            // Consistency from a random old size, checked by ct-merkle against both roots.
            let m = 1 + (p >> 20) % size;
            let old_root = merkle::root(m, &set).unwrap();
            prop_assert_eq!(ct_roots[(m - 1) as usize].as_bytes().as_slice(), &old_root[..]);
            let proof = merkle::consistency_proof(m, size, &set).unwrap();
            let ct_proof = ct_consistency(&proof);
            let theirs = ct.prove_consistency((size - m) as usize);
            prop_assert_eq!(ct_proof.as_bytes(), theirs.as_bytes());
            let old = RootHash::<Sha256>::new(digest(&old_root), m);
            prop_assert!(ct_root.verify_consistency(&old, &ct_proof).is_ok());
            merkle::verify_consistency(m, size, &old_root, &root, &proof).unwrap();
        }
    }

    #[test]
    fn tampered_proofs_fail_in_both(
        size in 2u64..600,
        pick in any::<u64>(),
        bit in 0usize..256,
    ) {
        let entries: Vec<Vec<u8>> = (0..size).map(entry).collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let set = build(&leaves, &[97]);
        let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
        for e in &entries {
            ct.push(e.clone());
        }
        let root = merkle::root(size, &set).unwrap();
        let i = pick % size;
        let mut proof = merkle::inclusion_proof(i, size, &set).unwrap();
        let k = (pick >> 32) as usize % proof.len().max(1);
        if let Some(h) = proof.get_mut(k) {
            h[bit / 8] ^= 1 << (bit % 8);
            let ct_proof = ct_inclusion(&proof);
            prop_assert!(ct.root().verify_inclusion(&entries[i as usize], i, &ct_proof).is_err());
            prop_assert_eq!(
                merkle::verify_inclusion(&leaves[i as usize], i, size, &proof, &root),
                Err(merkle::ProofError::RootMismatch)
            );
        }
    }
}
