//! Ed25519 keys in C2SP signed-note form: the log's standard checkpoint signature (type
//! `0x01`) and witness cosignatures (type `0x04`, c2sp.org/tlog-cosignature).
//!
//! The log's k256 signature stays (receipts and devices rely on it), but standard witnesses
//! and tools verify Ed25519 only, so every checkpoint carries both. A verifier key (vkey) is
//! `<name>+<hex key ID>+<base64(type || 32-byte public key)>`, the key ID being
//! `SHA-256(name || 0x0A || type || public key)[:4]` as a big-endian uint32. The type byte
//! is part of the identity: the same key and name under `0x01` and `0x04` are two different
//! verifiers with two key IDs, and a cosigner's verifier never accepts a plain note signature.
//!
//! The arithmetic is aws-lc-rs's (BoringSSL's Ed25519, RFC 8032; it refuses a non-canonical
//! `S`), already in the tree as rustls's crypto provider.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::keys::{KeyError, SignatureError, check_key_name, split_vkey};

/// Length of an Ed25519 public key and of a secret seed.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// What an Ed25519 signature line of a note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdKind {
    /// signed-note type `0x01`: a signature over the note text.
    Note,
    /// signed-note type `0x04`: a timestamped `cosignature/v1` over a checkpoint.
    Cosignature,
}

impl EdKind {
    /// The signed-note signature type byte.
    pub fn type_byte(self) -> u8 {
        match self {
            EdKind::Note => 0x01,
            EdKind::Cosignature => 0x04,
        }
    }

    fn from_type_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(EdKind::Note),
            0x04 => Some(EdKind::Cosignature),
            _ => None,
        }
    }
}

/// An Ed25519 signing key: the log's second checkpoint key, or a witness's key.
pub struct Ed25519Key {
    seed: [u8; KEY_LEN],
    pair: Ed25519KeyPair,
}

impl Clone for Ed25519Key {
    fn clone(&self) -> Self {
        Self::from_bytes(&self.seed)
    }
}

impl Ed25519Key {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut seed = [0u8; KEY_LEN];
        // The operating system's generator failing is not something a key can be made
        // without; k256's `generate` panics in the same case.
        getrandom::fill(&mut seed).expect("the operating system's random number generator");
        Self::from_bytes(&seed)
    }

    /// From the 32-byte RFC 8032 seed.
    pub fn from_bytes(seed: &[u8; KEY_LEN]) -> Self {
        // Every 32-byte string is a valid seed; aws-lc-rs refuses only other lengths.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("a 32-byte Ed25519 seed");
        Self { seed: *seed, pair }
    }

    /// From 64 hex digits of the seed.
    pub fn from_hex(seed: &str) -> Result<Self, KeyError> {
        let raw = hex::decode(seed).map_err(|_| KeyError::BadHex)?;
        let seed: [u8; KEY_LEN] = raw.as_slice().try_into().map_err(|_| KeyError::BadLength {
            expected: KEY_LEN,
            got: raw.len(),
        })?;
        Ok(Self::from_bytes(&seed))
    }

    /// The seed as 64 lower-case hex digits (for the key file only).
    pub fn to_secret_hex(&self) -> String {
        hex::encode(self.seed)
    }

    pub fn public_bytes(&self) -> [u8; KEY_LEN] {
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }

    /// The verifier of this key's signatures of `kind` under `name`.
    pub fn verifier(&self, name: &str, kind: EdKind) -> Result<Ed25519Verifier, KeyError> {
        Ed25519Verifier::new(name, kind, &self.public_bytes())
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Key(public {})", hex::encode(self.public_bytes()))
    }
}

/// A pinned Ed25519 signer: key name, signature type and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ed25519Verifier {
    name: String,
    kind: EdKind,
    key: [u8; KEY_LEN],
}

impl Ed25519Verifier {
    pub fn new(name: &str, kind: EdKind, public: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            kind,
            key: *public,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> EdKind {
        self.kind
    }

    pub fn public_bytes(&self) -> [u8; KEY_LEN] {
        self.key
    }

    /// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
    pub fn key_id(&self) -> u32 {
        let mut h = Sha256::new();
        h.update(self.name.as_bytes());
        h.update([0x0A, self.kind.type_byte()]);
        h.update(self.key);
        let d = h.finalize();
        u32::from_be_bytes([d[0], d[1], d[2], d[3]])
    }

    /// `<name>+<8 hex key ID>+<base64(type || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut blob = vec![self.kind.type_byte()];
        blob.extend_from_slice(&self.key);
        format!("{}+{:08x}+{}", self.name, self.key_id(), B64.encode(blob))
    }

    /// Parses a vkey of type `0x01` or `0x04`; the key ID must match the name and key.
    pub fn from_vkey(s: &str) -> Result<Self, KeyError> {
        let (name, id, blob) = split_vkey(s)?;
        let (&type_byte, key) = blob.split_first().ok_or(KeyError::BadVerifierKey)?;
        let kind = EdKind::from_type_byte(type_byte).ok_or(KeyError::UnknownSignatureType)?;
        let key: &[u8; KEY_LEN] = key.try_into().map_err(|_| KeyError::BadLength {
            expected: KEY_LEN,
            got: key.len(),
        })?;
        let v = Self::new(name, kind, key)?;
        if v.key_id() != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(v)
    }

    /// Verifies a bare 64-byte Ed25519 signature over `msg`.
    pub fn verify_raw(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        if sig.len() != SIGNATURE_LEN {
            return Err(SignatureError::BadLength { got: sig.len() });
        }
        UnparsedPublicKey::new(&ED25519, &self.key)
            .verify(msg, sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signed-note spec's example vkey (c2sp.org/signed-note, "Verifier keys").
    const SPEC_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";

    #[test]
    fn the_spec_vkey_parses_and_prints_back() {
        let v = Ed25519Verifier::from_vkey(SPEC_VKEY).unwrap();
        assert_eq!(v.name(), "example.com/foo");
        assert_eq!(v.kind(), EdKind::Note);
        assert_eq!(v.key_id(), 0x530d903a);
        assert_eq!(v.to_vkey(), SPEC_VKEY);
    }

    #[test]
    fn vkeys_are_checked() {
        let bad_id = SPEC_VKEY.replace("530d903a", "530d903b");
        assert_eq!(
            Ed25519Verifier::from_vkey(&bad_id),
            Err(KeyError::KeyIdMismatch)
        );
        // Same key as type 0x02 (ECDSA per the spec): not an Ed25519 verifier.
        let mut blob = B64.decode(SPEC_VKEY.rsplit('+').next().unwrap()).unwrap();
        blob[0] = 0x02;
        let other = format!("example.com/foo+530d903a+{}", B64.encode(&blob));
        assert_eq!(
            Ed25519Verifier::from_vkey(&other),
            Err(KeyError::UnknownSignatureType)
        );
        assert_eq!(
            Ed25519Verifier::from_vkey("example.com/foo+530d903a"),
            Err(KeyError::BadVerifierKey)
        );
        assert_eq!(
            Ed25519Verifier::new("has space", EdKind::Note, &[1; 32]),
            Err(KeyError::BadKeyName)
        );
    }

    #[test]
    fn the_type_byte_changes_the_key_id() {
        let key = Ed25519Key::from_bytes(&[7; 32]);
        let note = key.verifier("w.example/1", EdKind::Note).unwrap();
        let cosig = key.verifier("w.example/1", EdKind::Cosignature).unwrap();
        assert_ne!(note.key_id(), cosig.key_id());
        assert_eq!(Ed25519Verifier::from_vkey(&cosig.to_vkey()), Ok(cosig));
    }

    #[test]
    fn secret_round_trip_and_redacted_debug() {
        let key = Ed25519Key::generate();
        let again = Ed25519Key::from_hex(&key.to_secret_hex()).unwrap();
        assert_eq!(again.public_bytes(), key.public_bytes());
        assert!(!format!("{key:?}").contains(&key.to_secret_hex()));
        assert_eq!(
            Ed25519Key::from_hex("00").unwrap_err(),
            KeyError::BadLength {
                expected: 32,
                got: 1
            }
        );
    }
}
