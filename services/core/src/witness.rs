//! A witness's decision on a submitted checkpoint (c2sp.org/tlog-witness `add-checkpoint`),
//! with no I/O: the server reads the stored state, calls [`decide`], and stores the result
//! in the same atomic step.
//!
//! The order of the checks is the spec's, and each refusal is the status code it names:
//! unknown origin 404; no valid signature from a trusted key for the origin 403 (a bad one
//! from a trusted key too); old size above the checkpoint size 400; old size not the size
//! last cosigned 409 with that size; a size-0 checkpoint whose root is not the empty root,
//! a proof from old size 0, a proof that does not verify, or equal sizes with different
//! roots 422. A malformed request body is 400.

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::ed25519::{Ed25519Verifier, EdKind};
use crate::merkle::{self, Hash};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Most consistency proof lines a client may send (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body: the proof lines plus the largest note.
pub const MAX_REQUEST_LEN: usize = 64 + MAX_PROOF_LINES * 45 + checkpoint::MAX_NOTE_LEN;

/// A parsed `add-checkpoint` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    pub note: &'a str,
}

/// What the witness last cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    pub size: u64,
    pub root: Hash,
}

/// Why a witness refuses a checkpoint; [`Refusal::status`] is the HTTP status the spec names.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unknown log origin")]
    UnknownLog,
    #[error("no valid signature from a trusted key for this origin: {0}")]
    Unsigned(CheckpointError),
    #[error("old size {old} is not the size last cosigned ({latest})")]
    Conflict { old: u64, latest: u64 },
    #[error("not consistent with what was cosigned: {0}")]
    Inconsistent(String),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Unsigned(_) => 403,
            Refusal::UnknownLog => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

/// Parses `old <size>\n`, up to [`MAX_PROOF_LINES`] base64 hashes, an empty line, the note.
pub fn parse_request(body: &str) -> Result<AddCheckpoint<'_>, Refusal> {
    let bad = |why: &str| Refusal::BadRequest(why.to_owned());
    if body.len() > MAX_REQUEST_LEN {
        return Err(bad("request body too large"));
    }
    let (first, mut rest) = body
        .split_once('\n')
        .ok_or_else(|| bad("no old size line"))?;
    let old = first
        .strip_prefix("old ")
        .ok_or_else(|| bad("first line is not 'old <size>'"))?;
    let old_size = checkpoint::parse_size(old).map_err(|_| bad("old size is not a decimal"))?;
    let mut proof = Vec::new();
    loop {
        let (line, next) = rest
            .split_once('\n')
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        rest = next;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let hash = B64
            .decode(line)
            .ok()
            .and_then(|b| Hash::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("a proof line is not base64 of 32 bytes"))?;
        proof.push(hash);
    }
    Ok(AddCheckpoint {
        old_size,
        proof,
        note: rest,
    })
}

/// The request body for `add-checkpoint`.
pub fn request_body(old_size: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old_size}\n");
    for h in proof {
        body.push_str(&B64.encode(h));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// Decides a request against the logs the witness trusts (each an Ed25519 note key whose
/// name is the log's origin) and what it last cosigned for that origin (`None`: never).
/// Returns the checkpoint to cosign and record.
pub fn decide(
    req: &AddCheckpoint<'_>,
    trusted: &[Ed25519Verifier],
    latest: Option<&Latest>,
) -> Result<Checkpoint, Refusal> {
    let origin = req.note.split('\n').next().unwrap_or_default();
    let keys: Vec<_> = trusted
        .iter()
        .filter(|v| v.name() == origin && v.kind() == EdKind::Note)
        .collect();
    if keys.is_empty() {
        return Err(Refusal::UnknownLog);
    }
    let (text, lines) = checkpoint::split_note(req.note).map_err(Refusal::Unsigned)?;
    let mut signed = false;
    for k in keys {
        signed |= checkpoint::verify_lines(text, &lines, k).map_err(Refusal::Unsigned)?;
    }
    if !signed {
        return Err(Refusal::Unsigned(CheckpointError::NoTrustedSignature));
    }
    let cp = Checkpoint::parse_body(text)
        .map_err(|e| Refusal::BadRequest(format!("checkpoint body: {e}")))?;
    check_consistency(req, &cp, latest)?;
    Ok(cp)
}

fn check_consistency(
    req: &AddCheckpoint<'_>,
    cp: &Checkpoint,
    latest: Option<&Latest>,
) -> Result<(), Refusal> {
    let inconsistent = Refusal::Inconsistent;
    if req.old_size > cp.size {
        return Err(Refusal::BadRequest(format!(
            "old size {} is above the checkpoint size {}",
            req.old_size, cp.size
        )));
    }
    let latest_size = latest.map_or(0, |l| l.size);
    if req.old_size != latest_size {
        return Err(Refusal::Conflict {
            old: req.old_size,
            latest: latest_size,
        });
    }
    if cp.size == 0 && cp.root != merkle::empty_root() {
        return Err(inconsistent(
            "a size-0 checkpoint needs the empty root".into(),
        ));
    }
    let Some(latest) = latest.filter(|l| l.size > 0) else {
        if req.proof.is_empty() {
            return Ok(());
        }
        return Err(inconsistent("a proof from size 0 must be empty".into()));
    };
    merkle::verify_consistency(latest.size, cp.size, &latest.root, &cp.root, &req.proof)
        .map_err(|e| inconsistent(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint_with;
    use crate::ed25519::Ed25519Key;
    use crate::keys::SigningKey;
    use crate::merkle::CompactRange;

    const ORIGIN: &str = "example.com/log";

    struct Log {
        k256: SigningKey,
        ed: Ed25519Key,
        leaves: Vec<Hash>,
    }

    impl Log {
        fn new() -> Self {
            Log {
                k256: SigningKey::from_bytes(&[5; 32]).unwrap(),
                ed: Ed25519Key::from_bytes(&[6; 32]),
                leaves: (0..40u8).map(|i| merkle::leaf_hash(&[i])).collect(),
            }
        }
        fn root(&self, size: u64) -> Hash {
            let mut r = CompactRange::new();
            for l in &self.leaves[..size as usize] {
                r.push(*l);
            }
            r.root()
        }
        fn note(&self, size: u64) -> String {
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size,
                root: self.root(size),
            };
            sign_checkpoint_with(&cp, &self.k256, Some(&self.ed)).unwrap()
        }
        fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
            let nodes = Leaves(&self.leaves[..new as usize]);
            merkle::consistency_proof(old, new, &nodes).unwrap()
        }
        fn trusted(&self) -> Vec<Ed25519Verifier> {
            vec![self.ed.verifier(ORIGIN, EdKind::Note).unwrap()]
        }
        fn latest(&self, size: u64) -> Latest {
            Latest {
                size,
                root: self.root(size),
            }
        }
    }

    struct Leaves<'a>(&'a [Hash]);

    impl merkle::NodeSource for Leaves<'_> {
        fn node(&self, id: merkle::NodeId) -> Option<Hash> {
            if id.level == 0 {
                return self.0.get(id.index as usize).copied();
            }
            let child = |index| merkle::NodeId {
                level: id.level - 1,
                index,
            };
            let (l, r) = (
                self.node(child(2 * id.index))?,
                self.node(child(2 * id.index + 1))?,
            );
            Some(merkle::node_hash(&l, &r))
        }
    }

    fn run(body: &str, log: &Log, latest: Option<&Latest>) -> Result<Checkpoint, Refusal> {
        decide(&parse_request(body)?, &log.trusted(), latest)
    }

    #[test]
    fn first_checkpoint_then_a_consistent_one() {
        let log = Log::new();
        let cp = run(&request_body(0, &[], &log.note(10)), &log, None).unwrap();
        assert_eq!((cp.size, cp.root), (10, log.root(10)));
        let body = request_body(10, &log.proof(10, 25), &log.note(25));
        let cp = run(&body, &log, Some(&log.latest(10))).unwrap();
        assert_eq!(cp.size, 25);
        // The same size again with the same root is fine (empty proof).
        let same = request_body(25, &[], &log.note(25));
        assert!(run(&same, &log, Some(&log.latest(25))).is_ok());
    }

    #[test]
    fn conflicts_name_the_latest_size() {
        let log = Log::new();
        let body = request_body(0, &[], &log.note(25));
        let err = run(&body, &log, Some(&log.latest(10))).unwrap_err();
        assert_eq!(err, Refusal::Conflict { old: 0, latest: 10 });
        assert_eq!(err.status(), 409);
        // A rollback: asking to go from 10 to 5 is a bad request (old above new).
        let back = request_body(10, &[], &log.note(5));
        assert_eq!(
            run(&back, &log, Some(&log.latest(10)))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn a_fork_is_unprocessable() {
        let log = Log::new();
        let mut fork = Log::new();
        fork.leaves[3] = merkle::leaf_hash(b"forged");
        let body = request_body(10, &fork.proof(10, 25), &fork.note(25));
        let err = run(&body, &log, Some(&log.latest(10))).unwrap_err();
        assert_eq!(err.status(), 422, "{err}");
        // Same size, other root.
        let same = request_body(
            10,
            &[],
            &Log {
                leaves: {
                    let mut l = log.leaves.clone();
                    l[3] = merkle::leaf_hash(b"x");
                    l
                },
                ..Log::new()
            }
            .note(10),
        );
        assert_eq!(
            run(&same, &log, Some(&log.latest(10)))
                .unwrap_err()
                .status(),
            422
        );
        // A proof from size 0 must be empty.
        let from_zero = request_body(0, &[log.root(1)], &log.note(10));
        assert_eq!(run(&from_zero, &log, None).unwrap_err().status(), 422);
    }

    #[test]
    fn unknown_and_unsigned_logs() {
        let log = Log::new();
        let other = Ed25519Key::from_bytes(&[9; 32]);
        let body = request_body(0, &[], &log.note(3));
        assert_eq!(
            decide(&parse_request(&body).unwrap(), &[], None),
            Err(Refusal::UnknownLog)
        );
        let wrong_key = vec![other.verifier(ORIGIN, EdKind::Note).unwrap()];
        let err = decide(&parse_request(&body).unwrap(), &wrong_key, None).unwrap_err();
        assert_eq!(err.status(), 403);
        let tampered = body.replace("\n3\n", "\n4\n");
        assert_eq!(run(&tampered, &log, None).unwrap_err().status(), 403);
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let log = Log::new();
        let note = log.note(3);
        for body in [
            format!("old 03\n\n{note}"),
            format!("old 3\n{note}"),
            format!("new 3\n\n{note}"),
            format!("old 3\nAAAA\n\n{note}"),
            format!(
                "old 0\n{}\n{note}",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)
            ),
        ] {
            assert_eq!(parse_request(&body).unwrap_err().status(), 400, "{body}");
        }
        let proof = log.proof(3, 40);
        let body = request_body(3, &proof, &note);
        let parsed = parse_request(&body).unwrap();
        assert_eq!(
            (parsed.old_size, parsed.proof, parsed.note),
            (3, proof, note.as_str())
        );
    }
}
