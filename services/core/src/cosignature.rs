//! Witness cosignatures (c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1`) and the quorum a
//! client demands before it trusts a checkpoint.
//!
//! A witness cosigns a checkpoint only after checking it is consistent with everything it
//! cosigned for that log before (c2sp.org/tlog-witness, [`crate::witness`]). A log that shows
//! two clients two different trees can therefore get at most one of them cosigned by each
//! honest witness: a client that demands K cosignatures from a set of witnesses it trusts is
//! safe from a split view as long as fewer than K of them collude with the log.
//!
//! **Format.** A cosignature is a note signature line `— <witness name> base64(key ID ||
//! timestamp || signature)`: key ID `SHA-256(name || 0x0A || 0x04 || key)[:4]`, timestamp a
//! big-endian u64 of POSIX seconds (never zero, at most 2^63 - 1), and an Ed25519 signature
//! over `cosignature/v1\ntime <timestamp>\n` followed by the checkpoint body (the note text,
//! final newline included, no signature lines).

use crate::checkpoint::{
    self, Checkpoint, CheckpointError, NoteVerifier, signature_line, split_note, verify_lines,
};
use crate::ed25519::{Ed25519Key, Ed25519Verifier, EdKind, SIGNATURE_LEN};
use crate::keys::SignatureError;

/// The header line of the signed message: domain separation.
const HEADER: &str = "cosignature/v1";
/// Length of the timestamp that precedes the signature in the line's payload.
const TIMESTAMP_LEN: usize = 8;

/// The message a `cosignature/v1` signs for the note text `text` at `timestamp`.
pub fn message(text: &str, timestamp: u64) -> String {
    format!("{HEADER}\ntime {timestamp}\n{text}")
}

/// The witness's signature line cosigning the checkpoint whose note text is `text`.
pub fn cosign(
    text: &str,
    witness: &Ed25519Verifier,
    key: &Ed25519Key,
    timestamp: u64,
) -> Result<String, CheckpointError> {
    if witness.kind() != EdKind::Cosignature || witness.public_bytes() != key.public_bytes() {
        return Err(CheckpointError::BadKeyName);
    }
    if timestamp == 0 || timestamp > i64::MAX as u64 {
        return Err(CheckpointError::BadSignature(SignatureError::Malformed));
    }
    let mut payload = timestamp.to_be_bytes().to_vec();
    payload.extend_from_slice(&key.sign(message(text, timestamp).as_bytes()));
    Ok(signature_line(witness.name(), witness.key_id(), &payload))
}

/// The timestamp of a cosignature line's payload.
pub fn timestamp(payload: &[u8]) -> Result<u64, SignatureError> {
    if payload.len() != TIMESTAMP_LEN + SIGNATURE_LEN {
        return Err(SignatureError::BadLength { got: payload.len() });
    }
    let mut ts = [0u8; TIMESTAMP_LEN];
    ts.copy_from_slice(&payload[..TIMESTAMP_LEN]);
    match u64::from_be_bytes(ts) {
        t if t == 0 || t > i64::MAX as u64 => Err(SignatureError::Malformed),
        t => Ok(t),
    }
}

impl NoteVerifier for Ed25519Verifier {
    fn name(&self) -> &str {
        Ed25519Verifier::name(self)
    }
    fn key_id(&self) -> u32 {
        Ed25519Verifier::key_id(self)
    }
    fn verify_note(&self, text: &[u8], payload: &[u8]) -> Result<(), SignatureError> {
        match self.kind() {
            EdKind::Note => self.verify_raw(text, payload),
            EdKind::Cosignature => {
                let ts = timestamp(payload)?;
                let text = std::str::from_utf8(text).map_err(|_| SignatureError::Invalid)?;
                self.verify_raw(message(text, ts).as_bytes(), &payload[TIMESTAMP_LEN..])
            }
        }
    }
}

/// Who must cosign: a set of witness keys and how many of them.
#[derive(Clone, Debug, Default)]
pub struct Quorum {
    pub witnesses: Vec<Ed25519Verifier>,
    pub need: usize,
}

impl Quorum {
    /// The witnesses of this quorum whose valid cosignature `note` carries. A cosignature
    /// from one of them that fails to verify rejects the note (signed-note).
    pub fn cosigners(&self, note: &str) -> Result<Vec<String>, CheckpointError> {
        let (text, lines) = split_note(note)?;
        let mut names = Vec::new();
        for w in &self.witnesses {
            if verify_lines(text, &lines, w)? && !names.iter().any(|n| n == w.name()) {
                names.push(w.name().to_owned());
            }
        }
        Ok(names)
    }
}

/// Opens a checkpoint that must be signed by the log and cosigned by `quorum.need` of
/// `quorum.witnesses`; returns it with the names of the witnesses that cosigned.
pub fn open_cosigned(
    note: &str,
    log: &(impl NoteVerifier + ?Sized),
    quorum: &Quorum,
) -> Result<(Checkpoint, Vec<String>), CheckpointError> {
    let cp = checkpoint::open_checkpoint(note, log)?;
    let names = quorum.cosigners(note)?;
    if names.len() < quorum.need {
        return Err(CheckpointError::NoQuorum {
            got: names.len(),
            need: quorum.need,
        });
    }
    Ok((cp, names))
}

/// The signature line of `witness` in a witness's `add-checkpoint` answer for `note`,
/// verified against the note's text. Lines from other keys are ignored, as the spec asks.
pub fn accept_response(
    note: &str,
    response: &str,
    witness: &Ed25519Verifier,
) -> Result<String, CheckpointError> {
    let joined = format!("{note}{response}");
    let (text, lines) = split_note(&joined)?;
    let ours: Vec<_> = lines
        .iter()
        .filter(|l| l.name == witness.name() && l.key_id == witness.key_id())
        .cloned()
        .collect();
    if !verify_lines(text, &ours, witness)? {
        return Err(CheckpointError::NoTrustedSignature);
    }
    Ok(ours[0].raw.to_owned())
}

/// `note` with each of `lines` appended that it does not already carry.
pub fn with_lines(note: &str, lines: &[String]) -> String {
    let mut out = note.to_owned();
    for l in lines {
        if !out.contains(l.as_str()) {
            out.push_str(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{open_note, sign_checkpoint_with};
    use crate::keys::{LogVerifier, SigningKey};
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    const ORIGIN: &str = "example.com/rxledger";

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: [size as u8; 32],
        }
    }

    fn witness(n: u8) -> (Ed25519Key, Ed25519Verifier) {
        let key = Ed25519Key::from_bytes(&[n; 32]);
        let v = key
            .verifier(&format!("witness.example/w{n}"), EdKind::Cosignature)
            .unwrap();
        (key, v)
    }

    /// golang.org/x/mod/sumdb/note's documented example (the reference implementation):
    /// key `PRIVATE+KEY+PeterNeumann+c74f20a3+AYEK…`, its text, and the exact signed note.
    #[test]
    fn ed25519_note_signature_known_answer() {
        let seed = B64
            .decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")
            .unwrap();
        assert_eq!(seed[0], 0x01);
        let key = Ed25519Key::from_bytes(seed[1..].try_into().unwrap());
        let v = key.verifier("PeterNeumann", EdKind::Note).unwrap();
        assert_eq!(
            v.to_vkey(),
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
        );
        let text = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
        let line = signature_line(v.name(), v.key_id(), &key.sign(text.as_bytes()));
        assert_eq!(
            line,
            "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        );
        assert_eq!(open_note(&format!("{text}\n{line}"), &v), Ok(text));
    }

    /// c2sp.org/signed-note's example note and verifier key.
    #[test]
    fn the_signed_note_spec_example_verifies() {
        let v = Ed25519Verifier::from_vkey(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert_eq!(open_note(note, &v), Ok("This is an example message.\n"));
        let tampered = note.replace("example message", "exemplary message");
        assert_eq!(
            open_note(&tampered, &v),
            Err(CheckpointError::BadSignature(SignatureError::Invalid))
        );
    }

    #[test]
    fn a_checkpoint_carries_both_log_signatures() {
        let k256 = SigningKey::from_bytes(&[3; 32]).unwrap();
        let ed = Ed25519Key::from_bytes(&[4; 32]);
        let note = sign_checkpoint_with(&cp(8), &k256, Some(&ed)).unwrap();
        let k256_v = LogVerifier::new(ORIGIN, k256.public_key()).unwrap();
        let ed_v = ed.verifier(ORIGIN, EdKind::Note).unwrap();
        assert_eq!(checkpoint::open_checkpoint(&note, &k256_v), Ok(cp(8)));
        assert_eq!(checkpoint::open_checkpoint(&note, &ed_v), Ok(cp(8)));
        // The k256-only note is a prefix: verifiers of the k256 key see the same note.
        let plain = sign_checkpoint_with(&cp(8), &k256, None).unwrap();
        assert!(note.starts_with(&plain));
        // The same Ed25519 key as a cosigner does not accept the log's plain signature.
        let as_cosigner = ed.verifier(ORIGIN, EdKind::Cosignature).unwrap();
        assert_eq!(
            checkpoint::open_checkpoint(&note, &as_cosigner),
            Err(CheckpointError::NoTrustedSignature)
        );
    }

    #[test]
    fn cosignature_message_and_payload() {
        let (key, v) = witness(1);
        let text = cp(8).body();
        assert_eq!(
            message(&text, 1679315147),
            format!("cosignature/v1\ntime 1679315147\n{text}")
        );
        let line = cosign(&text, &v, &key, 1679315147).unwrap();
        let b64 = line
            .strip_prefix("\u{2014} witness.example/w1 ")
            .unwrap()
            .trim_end();
        let raw = B64.decode(b64).unwrap();
        assert_eq!(raw.len(), 4 + 8 + 64);
        assert_eq!(raw[..4], v.key_id().to_be_bytes());
        assert_eq!(raw[4..12], 1679315147u64.to_be_bytes());
        // The signature is plain RFC 8032 over the documented message.
        let note_v = Ed25519Verifier::new(v.name(), EdKind::Note, &v.public_bytes()).unwrap();
        note_v
            .verify_raw(message(&text, 1679315147).as_bytes(), &raw[12..])
            .unwrap();
        assert!(cosign(&text, &v, &key, 0).is_err());
    }

    #[test]
    fn quorum_counts_distinct_valid_witnesses() {
        let log = SigningKey::from_bytes(&[3; 32]).unwrap();
        let log_v = LogVerifier::new(ORIGIN, log.public_key()).unwrap();
        let note = sign_checkpoint_with(&cp(8), &log, None).unwrap();
        let (k1, w1) = witness(1);
        let (k2, w2) = witness(2);
        let text = cp(8).body();
        let l1 = cosign(&text, &w1, &k1, 10).unwrap();
        let l2 = cosign(&text, &w2, &k2, 11).unwrap();
        let quorum = Quorum {
            witnesses: vec![w1.clone(), w2.clone()],
            need: 2,
        };
        let one = with_lines(&note, std::slice::from_ref(&l1));
        assert_eq!(
            open_cosigned(&one, &log_v, &quorum),
            Err(CheckpointError::NoQuorum { got: 1, need: 2 })
        );
        // The same line twice is still one witness.
        let twice = format!("{one}{l1}");
        assert_eq!(
            open_cosigned(&twice, &log_v, &quorum),
            Err(CheckpointError::NoQuorum { got: 1, need: 2 })
        );
        let both = with_lines(&note, &[l1.clone(), l2.clone()]);
        let (got, names) = open_cosigned(&both, &log_v, &quorum).unwrap();
        assert_eq!(got, cp(8));
        assert_eq!(names, vec!["witness.example/w1", "witness.example/w2"]);
        // A cosignature of another tree, relabelled as w2's, rejects the note.
        let forged = cosign(&cp(9).body(), &w2, &k2, 11).unwrap();
        let bad = with_lines(&note, &[l1, forged]);
        assert_eq!(
            open_cosigned(&bad, &log_v, &quorum),
            Err(CheckpointError::BadSignature(SignatureError::Invalid))
        );
    }

    #[test]
    fn a_response_yields_the_witness_line_only() {
        let log = SigningKey::from_bytes(&[3; 32]).unwrap();
        let note = sign_checkpoint_with(&cp(8), &log, None).unwrap();
        let (k1, w1) = witness(1);
        let (k2, w2) = witness(2);
        let l1 = cosign(&cp(8).body(), &w1, &k1, 10).unwrap();
        let l2 = cosign(&cp(8).body(), &w2, &k2, 10).unwrap();
        let response = format!("{l2}{l1}");
        assert_eq!(accept_response(&note, &response, &w1), Ok(l1));
        assert_eq!(
            accept_response(&note, &l2, &w1),
            Err(CheckpointError::NoTrustedSignature)
        );
        let wrong_tree = cosign(&cp(9).body(), &w1, &k1, 10).unwrap();
        assert_eq!(
            accept_response(&note, &wrong_tree, &w1),
            Err(CheckpointError::BadSignature(SignatureError::Invalid))
        );
    }
}
