//! `rxledger verify-answer`: a saved verdict checked offline, inclusion and completeness.
//!
//! The answer is GraphQL `verify` (the whole response, its `data.verify`, or the resolver's
//! JSON) selecting `evidence { index leafHash treeSize proof }`, `reasons { evidence }`,
//! `checkpointSize` and `completeness { … }`. The checkpoint is one the client trusts (saved,
//! cosigned, checked with `rxledger verify-checkpoint`); with `--verifier-key` its signature is
//! checked here too, and with the log's k256 key so is the map-root entry's. Every check is
//! `rxledger_core`'s (`map::answer`): the RFC 9162 inclusion of each cited entry, then
//! `map::completeness::Completeness::verify`, which names the identifier whose history the
//! answer does not show whole.

use rxledger_core::checkpoint::{self, Checkpoint, NoteVerifier};
use rxledger_core::keys::{LogVerifier, PublicKey};
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
    let (cp, log_key) = open(note, verifier_key)?;
    let v = rxledger_core::map::answer::verify_answer(answer, &cp, log_key.as_ref())?;
    Ok(Verified {
        checkpoint: cp,
        verdict: v.verdict,
        identifiers: v.identifiers,
        evidence: v.evidence,
    })
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
