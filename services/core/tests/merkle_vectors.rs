//! Known-answer tests against public vectors from transparency-dev/merkle:
//!
//! * `testdata/inclusion/**` and `testdata/consistency/**` (vendored unchanged, with their
//!   file names, under `tests/testdata/merkle/`): every case marked valid must verify, and every
//!   tampered or invalid one must fail. A hash that is not 32 bytes makes a case fail at
//!   parsing, which counts as failing.
//! * The canonical 8-leaf tree of `testonly/constants.go`: roots at every size, every complete
//!   node, and proofs for every index and every pair of sizes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rxledger_core::merkle::{
    self, CompactRange, Hash, NodeId, NodeSource, ProofError, hash_from_slice, leaf_hash,
};
use rxledger_core::tiles::{self, TileSet};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/merkle")
        .join(kind)
}

/// Every `*.json` below `dir`, sorted so failures are reproducible.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn load(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A base64 field decoded to a strict 32-byte hash (null or missing counts as empty).
fn hash(v: &Value, field: &str) -> Result<Hash, ProofError> {
    let bytes = match v.get(field) {
        Some(Value::String(s)) => B64.decode(s).expect("vector base64"),
        _ => Vec::new(),
    };
    hash_from_slice(&bytes)
}

fn proof(v: &Value) -> Result<Vec<Hash>, ProofError> {
    match v.get("proof") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|s| hash_from_slice(&B64.decode(s.as_str().expect("string")).expect("base64")))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn u64_field(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a u64"))
}

/// Older vector files name the index `leafIndex`, newer ones `leafIdx`.
fn leaf_index(v: &Value) -> u64 {
    match v.get("leafIdx") {
        Some(_) => u64_field(v, "leafIdx"),
        None => u64_field(v, "leafIndex"),
    }
}

fn check_inclusion(v: &Value) -> Result<(), ProofError> {
    let leaf = hash(v, "leafHash")?;
    let root = hash(v, "root")?;
    let proof = proof(v)?;
    merkle::verify_inclusion(
        &leaf,
        leaf_index(v),
        u64_field(v, "treeSize"),
        &proof,
        &root,
    )
}

fn check_consistency(v: &Value) -> Result<(), ProofError> {
    let root1 = hash(v, "root1")?;
    let root2 = hash(v, "root2")?;
    let proof = proof(v)?;
    merkle::verify_consistency(
        u64_field(v, "size1"),
        u64_field(v, "size2"),
        &root1,
        &root2,
        &proof,
    )
}

/// Runs every vector of one kind; returns (valid, invalid) counts.
fn run(kind: &str, check: fn(&Value) -> Result<(), ProofError>) -> (usize, usize) {
    let files = json_files(&data_dir(kind));
    assert!(!files.is_empty(), "no {kind} vectors vendored");
    let (mut valid, mut invalid) = (0, 0);
    for p in files {
        let v = load(&p);
        let want_err = v["wantErr"].as_bool().expect("wantErr");
        let got = check(&v);
        if want_err {
            invalid += 1;
            assert!(got.is_err(), "{}: tampered vector verified", p.display());
        } else {
            valid += 1;
            assert_eq!(got, Ok(()), "{}", p.display());
        }
    }
    (valid, invalid)
}

#[test]
fn transparency_dev_inclusion_vectors() {
    let (valid, invalid) = run("inclusion", check_inclusion);
    assert!(
        valid >= 1 && invalid >= 5,
        "valid {valid}, invalid {invalid}"
    );
}

#[test]
fn transparency_dev_consistency_vectors() {
    let (valid, invalid) = run("consistency", check_consistency);
    assert!(
        valid >= 1 && invalid >= 5,
        "valid {valid}, invalid {invalid}"
    );
}

#[test]
fn consistency_from_size_zero_is_rejected_even_if_the_vector_says_ok() {
    // transparency-dev accepts 0 -> 0 with an empty proof; rxledger is stricter on purpose.
    let e = merkle::empty_root();
    assert_eq!(
        merkle::verify_consistency(0, 0, &e, &e, &[]),
        Err(ProofError::ConsistencyFromZero)
    );
}

// --- The canonical 8-leaf tree of transparency-dev/merkle testonly/constants.go. ---

const LEAF_INPUTS: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// NodeHashes(): [level][index] of every complete subtree.
const NODE_HASHES: [&[&str]; 4] = [
    &[
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    &[
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    &[
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
];

/// RootHashes(): root at every size 0..=8.
const ROOT_HASHES: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(s: &str) -> Hash {
    hash_from_slice(&hex::decode(s).unwrap()).unwrap()
}

fn canonical_leaves() -> Vec<Hash> {
    LEAF_INPUTS
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
}

#[test]
fn canonical_tree_roots_and_nodes() {
    let leaves = canonical_leaves();
    let mut cr = CompactRange::new();
    assert_eq!(cr.root(), h(ROOT_HASHES[0]));
    assert_eq!(merkle::empty_root(), h(ROOT_HASHES[0]));
    for (n, leaf) in leaves.iter().enumerate() {
        cr.push(*leaf);
        assert_eq!(
            cr.root(),
            h(ROOT_HASHES[n + 1]),
            "compact range root at {}",
            n + 1
        );
        // Tiles built one leaf at a time give the same root.
        let set = tileset(&leaves[..=n]);
        assert_eq!(
            merkle::root(n as u64 + 1, &set).unwrap(),
            h(ROOT_HASHES[n + 1])
        );
    }
    let set = tileset(&leaves);
    for (level, row) in NODE_HASHES.iter().enumerate() {
        for (index, want) in row.iter().enumerate() {
            let id = NodeId {
                level: level as u8,
                index: index as u64,
            };
            assert_eq!(set.node(id), Some(h(want)), "{id:?}");
        }
    }
}

#[test]
fn canonical_tree_proofs() {
    let leaves = canonical_leaves();
    let set = tileset(&leaves);
    for n in 1..=8u64 {
        let root = h(ROOT_HASHES[n as usize]);
        for i in 0..n {
            let p = merkle::inclusion_proof(i, n, &set).unwrap();
            merkle::verify_inclusion(&leaves[i as usize], i, n, &p, &root).unwrap();
            // A proof for one index never proves a neighbour.
            if n > 1 {
                let j = (i + 1) % n;
                assert!(merkle::verify_inclusion(&leaves[i as usize], j, n, &p, &root).is_err());
            }
        }
        for m in 1..=n {
            let old = h(ROOT_HASHES[m as usize]);
            let p = merkle::consistency_proof(m, n, &set).unwrap();
            merkle::verify_consistency(m, n, &old, &root, &p).unwrap();
            if m < n {
                assert!(merkle::verify_consistency(m, n, &root, &old, &p).is_err());
            }
        }
    }
    // The happy paths of testdata/inclusion/1 and testdata/consistency/1, as proofs we generate.
    assert_eq!(
        merkle::inclusion_proof(0, 8, &set).unwrap(),
        vec![
            h(NODE_HASHES[0][1]),
            h(NODE_HASHES[1][1]),
            h(NODE_HASHES[2][1])
        ]
    );
    assert_eq!(
        merkle::consistency_proof(1, 8, &set).unwrap(),
        merkle::inclusion_proof(0, 8, &set).unwrap()
    );
}

fn tileset(leaves: &[Hash]) -> TileSet {
    let mut set = TileSet::new();
    for t in tiles::append(0, &[], leaves).unwrap() {
        set.insert(t);
    }
    set
}
