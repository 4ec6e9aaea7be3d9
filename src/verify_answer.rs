//! `rxledger verify-answer`: a saved verdict checked offline, inclusion and completeness.
//!
//! The answer is GraphQL `verify` (the whole response, its `data.verify`, or the resolver's
//! JSON) selecting `evidence { index leafHash treeSize proof }`, `reasons { evidence }`,
//! `checkpointSize` and `completeness { … }`. The checkpoint is one the client trusts (saved,
//! cosigned, checked with `rxledger verify-checkpoint`); with `--verifier-key` its signature is
//! checked here too, and with the log's k256 key so is the map-root entry's. Every check is
//! `rxledger_core`'s: the RFC 9162 inclusion of each cited entry, then
//! `map::completeness::Completeness::verify`, which names the identifier whose history the
//! answer does not show whole.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rxledger_core::checkpoint::{self, Checkpoint, NoteVerifier};
use rxledger_core::keys::{LogVerifier, PublicKey};
use rxledger_core::map::completeness::{Claim, Completeness};
use rxledger_core::map::{History, MapProof, Terminal};
use rxledger_core::merkle::{self, Hash};
use serde_json::Value;

/// What a verified answer showed.
#[derive(Debug)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    pub verdict: String,
    /// The identifiers proven complete, each with its number of entries.
    pub identifiers: Vec<(String, usize)>,
    /// Cited entries whose inclusion was checked.
    pub evidence: usize,
}

/// Checks `answer` against the checkpoint `note`; `verifier_key` is the log's k256 or Ed25519
/// verifier key (`rxledger vkey`). The error says what failed, naming the identifier when it
/// is about one.
pub fn verify_answer(
    answer: &Value,
    note: &str,
    verifier_key: Option<&str>,
) -> Result<Verified, String> {
    let v = verification(answer)?;
    let (cp, log_key) = open(note, verifier_key)?;
    let size = number(&v["checkpointSize"], "checkpointSize")?;
    if size != cp.size {
        return Err(format!(
            "the answer's proofs are against the checkpoint of size {size}, not the given one of \
             size {}: give that checkpoint",
            cp.size
        ));
    }
    let evidence = check_evidence(v, &cp)?;
    let cited = cited(v)?;
    let c = v
        .get("completeness")
        .filter(|c| !c.is_null())
        .ok_or("the answer carries no completeness proof (select `completeness`)")?;
    let completeness = decode(c)?;
    completeness
        .verify(cp.size, &cp.root, &cp.origin, log_key.as_ref(), &cited)
        .map_err(|e| e.to_string())?;
    Ok(Verified {
        verdict: v["verdict"].as_str().unwrap_or("").to_string(),
        identifiers: completeness
            .claims
            .iter()
            .map(|c| (c.identifier.clone(), c.entries.len()))
            .collect(),
        evidence,
        checkpoint: cp,
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

/// The checkpoint, its signature checked when a key is given; and the log's k256 key, when
/// that is the key given.
fn open(note: &str, verifier_key: Option<&str>) -> Result<(Checkpoint, Option<PublicKey>), String> {
    let Some(vkey) = verifier_key else {
        let (text, _) = checkpoint::split_note(note).map_err(|e| format!("checkpoint: {e}"))?;
        let cp = Checkpoint::parse_body(text).map_err(|e| format!("checkpoint: {e}"))?;
        return Ok((cp, None));
    };
    let (verifier, k256): (Box<dyn NoteVerifier>, Option<PublicKey>) =
        match rxledger_core::ed25519::Ed25519Verifier::from_vkey(vkey) {
            Ok(v) if v.kind() == rxledger_core::ed25519::EdKind::Note => (Box::new(v), None),
            _ => {
                let v =
                    LogVerifier::from_vkey(vkey).map_err(|e| format!("bad --verifier-key: {e}"))?;
                let key = *v.public_key();
                (Box::new(v), Some(key))
            }
        };
    let cp = checkpoint::open_checkpoint(note, verifier.as_ref())
        .map_err(|e| format!("checkpoint refused: {e}"))?;
    Ok((cp, k256))
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
