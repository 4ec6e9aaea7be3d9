//! A saved or live verify answer checked as a client checks it: the inclusion of every cited
//! entry and the completeness proof, from the answer's JSON (GraphQL `verify`, its
//! `data.verify`, or the resolver's JSON) and a checkpoint the caller already trusts.
//!
//! One implementation for `rxledger verify-answer`, the pharmacist's page ("complete"), the
//! benchmarks and any Rust client; docs/VERIFY.md §4 describes the same steps for others.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::completeness::{Claim, Completeness};
use super::{History, MapProof, Terminal};
use crate::checkpoint::Checkpoint;
use crate::keys::PublicKey;
use crate::merkle::{self, Hash};

/// What a verified answer showed.
#[derive(Debug)]
pub struct Verified {
    pub verdict: String,
    /// The identifiers proven complete, each with its number of entries.
    pub identifiers: Vec<(String, usize)>,
    /// Cited entries whose inclusion was checked.
    pub evidence: usize,
    /// The index of the map-root entry the answer is complete against.
    pub map_entry: u64,
    /// How many distinct entries the identifiers list.
    pub entries: usize,
}

/// Checks `answer` against the trusted checkpoint `cp` of the log whose k256 key is `log_key`
/// (without it, the map-root entry is trusted for its inclusion alone). The error says what
/// failed, naming the identifier when it is about one.
pub fn verify_answer(
    answer: &Value,
    cp: &Checkpoint,
    log_key: Option<&PublicKey>,
) -> Result<Verified, String> {
    let v = verification(answer)?;
    let size = number(&v["checkpointSize"], "checkpointSize")?;
    if size != cp.size {
        return Err(format!(
            "the answer's proofs are against the checkpoint of size {size}, not the given one of \
             size {}: give that checkpoint",
            cp.size
        ));
    }
    let evidence = check_evidence(v, cp)?;
    let cited = cited(v)?;
    let c = v
        .get("completeness")
        .filter(|c| !c.is_null())
        .ok_or("the answer carries no completeness proof (select `completeness`)")?;
    let completeness = decode(c)?;
    completeness
        .verify(cp.size, &cp.root, &cp.origin, log_key, &cited)
        .map_err(|e| e.to_string())?;
    Ok(Verified {
        verdict: v["verdict"].as_str().unwrap_or("").to_string(),
        identifiers: completeness
            .claims
            .iter()
            .map(|c| (c.identifier.clone(), c.entries.len()))
            .collect(),
        evidence,
        map_entry: completeness.map_entry_index,
        entries: completeness
            .claims
            .iter()
            .flat_map(|c| c.entries.iter().map(|(i, _)| *i))
            .collect::<std::collections::BTreeSet<u64>>()
            .len(),
    })
}

/// The `Verification` object inside a saved answer.
fn verification(answer: &Value) -> Result<&Value, String> {
    let v = match (answer.pointer("/data/verify"), answer.get("verify")) {
        (Some(v), _) | (None, Some(v)) => v,
        _ => answer,
    };
    if !v.is_object() || v.get("verdict").is_none() {
        return Err(
            "not a verify answer: no `verdict` (save the GraphQL response or its data.verify)"
                .into(),
        );
    }
    Ok(v)
}

/// Checks each evidence item's inclusion in the checkpoint; returns how many.
fn check_evidence(v: &Value, cp: &Checkpoint) -> Result<usize, String> {
    let items = v["evidence"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for e in items {
        let index = number(&e["index"], "evidence index")?;
        let leaf = hash(&e["leafHash"], "evidence leafHash")?;
        if number(&e["treeSize"], "evidence treeSize")? != cp.size {
            return Err(format!("evidence {index} is proven in another tree size"));
        }
        let proof = hashes(&e["proof"], "evidence proof")?;
        merkle::verify_inclusion(&leaf, index, cp.size, &proof, &cp.root)
            .map_err(|err| format!("entry {index} is not included in the checkpoint: {err}"))?;
    }
    Ok(items.len())
}

/// Every entry the reasons cite.
fn cited(v: &Value) -> Result<Vec<u64>, String> {
    let mut out = Vec::new();
    for r in v["reasons"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        for i in r["evidence"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(number(i, "reason evidence")?);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The answer's `completeness` as the core's type.
fn decode(c: &Value) -> Result<Completeness, String> {
    let entry = &c["mapEntry"];
    let claims = c["identifiers"]
        .as_array()
        .ok_or("completeness.identifiers is not a list")?
        .iter()
        .map(claim)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Completeness {
        map_entry_index: number(&entry["index"], "mapEntry.index")?,
        map_entry: B64
            .decode(
                entry["dataBase64"]
                    .as_str()
                    .ok_or("mapEntry.dataBase64 is missing")?,
            )
            .map_err(|_| "mapEntry.dataBase64 is not base64")?,
        map_entry_proof: hashes(&entry["proof"], "mapEntry.proof")?,
        claims,
    })
}

fn claim(i: &Value) -> Result<Claim, String> {
    let identifier = i["identifier"]
        .as_str()
        .ok_or("an identifier is missing")?
        .to_string();
    let entries = i["entries"]
        .as_array()
        .ok_or_else(|| format!("{identifier}: entries is not a list"))?
        .iter()
        .map(|e| {
            Ok((
                number(&e["index"], "entry index")?,
                hash(&e["leafHash"], "entry leafHash")?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let terminal = match &i["leaf"] {
        Value::Null => Terminal::Empty,
        l => Terminal::Leaf {
            key: hash(&l["key"], "leaf key")?,
            value: History {
                count: number(&l["count"], "leaf count")?,
                head: hash(&l["head"], "leaf head")?,
            },
        },
    };
    Ok(Claim {
        identifier,
        entries,
        proof: MapProof {
            siblings: hashes(&i["siblings"], "siblings")?,
            terminal,
        },
    })
}

fn number(v: &Value, what: &str) -> Result<u64, String> {
    v.as_u64()
        .ok_or_else(|| format!("{what} is not a non-negative integer"))
}

fn hash(v: &Value, what: &str) -> Result<Hash, String> {
    v.as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| merkle::hash_from_slice(&b).ok())
        .ok_or_else(|| format!("{what} is not 32 bytes of hex"))
}

fn hashes(v: &Value, what: &str) -> Result<Vec<Hash>, String> {
    let items = v
        .as_array()
        .ok_or_else(|| format!("{what} is not a list"))?;
    if items.len() > 256 {
        return Err(format!("{what} has more than 256 hashes"));
    }
    items.iter().map(|h| hash(h, what)).collect()
}
