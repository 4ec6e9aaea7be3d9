//! secp256k1 keys and ECDSA signatures, shared by the log (checkpoint signing) and by devices
//! (signed envelopes), so both sides use one set of encoding and strictness rules.
//!
//! The rules, which docs/PROTOCOL.md cites:
//!
//! * A signature is ECDSA over secp256k1 of `SHA-256(message)`, with the nonce from RFC 6979
//!   (deterministic), encoded as 64 bytes `r || s` (big-endian), and `s` in the low half of the
//!   group order. Verification rejects any other length and any high-`s` signature, so a
//!   signature has exactly one valid encoding (no malleability).
//! * A public key is the 33-byte compressed SEC1 point (`0x02`/`0x03 || x`), in lower-case hex
//!   where text is needed. Uncompressed and hybrid encodings are rejected.
//! * A secret key is 32 bytes, a scalar in `[1, n)`. It is never printed: `Debug` redacts it.
//! * In checkpoints the log's key is pinned as a [`LogVerifier`]: a key name plus public key,
//!   written in the Go `note` verifier-key form `<name>+<key ID hex>+<base64(type || key)>`,
//!   with the signature type bytes defined in [`SIGNATURE_TYPE`] (see [`crate::checkpoint`]).
//!
//! Key generation is the one place that reads OS randomness; everything else is deterministic.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use k256::ecdsa::signature::hazmat::PrehashSigner as _;
use k256::elliptic_curve::Generate as _;
use sha2::{Digest, Sha256};
use std::fmt;

/// Length of a compressed SEC1 public key.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of an `r || s` signature.
pub const SIGNATURE_LEN: usize = 64;

/// The signed-note signature type of rxledger's ECDSA/secp256k1/SHA-256 signatures: `0xff`,
/// the byte signed-note reserves for types without an assigned byte, followed (as the spec
/// recommends) by a longer identifier unlikely to collide, here the ASCII string
/// `rxledger/ecdsa-secp256k1-sha256`.
pub const SIGNATURE_TYPE: &[u8] = b"\xffrxledger/ecdsa-secp256k1-sha256";

/// Errors of parsing keys.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key is not valid hex")]
    BadHex,
    #[error("key must be {expected} bytes, got {got}")]
    BadLength { expected: usize, got: usize },
    #[error("public key must be compressed SEC1 (prefix 0x02 or 0x03), got prefix {prefix:#04x}")]
    NotCompressed { prefix: u8 },
    #[error("public key is not a point on secp256k1")]
    InvalidPoint,
    #[error("secret key is zero or not below the group order")]
    InvalidSecret,
    #[error("key name must be non-empty and contain no spaces or '+'")]
    BadKeyName,
    #[error("verifier key is not <name>+<hex key id>+<base64 key>")]
    BadVerifierKey,
    #[error("verifier key has an unknown signature type")]
    UnknownSignatureType,
    #[error("verifier key ID does not match its name and key")]
    KeyIdMismatch,
}

/// Errors of verifying a signature.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature must be 64 bytes, got {got}")]
    BadLength { got: usize },
    #[error("signature r or s is zero or not below the group order")]
    Malformed,
    #[error("signature s is in the high half of the group order")]
    HighS,
    #[error("signature does not verify")]
    Invalid,
}

/// A secp256k1 signing key, used by the log and by devices.
#[derive(Clone)]
pub struct SigningKey(k256::ecdsa::SigningKey);

/// The log's checkpoint signing key.
pub type LogKey = SigningKey;

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        Self(k256::ecdsa::SigningKey::generate())
    }

    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, KeyError> {
        k256::ecdsa::SigningKey::from_slice(secret)
            .map(Self)
            .map_err(|_| KeyError::InvalidSecret)
    }

    /// From 64 hex digits.
    pub fn from_hex(secret: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(secret.trim()).map_err(|_| KeyError::BadHex)?;
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                expected: 32,
                got: bytes.len(),
            })?;
        Self::from_bytes(&arr)
    }

    /// The secret as 64 lower-case hex digits, for the key file. Handle with care.
    pub fn to_secret_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    pub fn public_sec1_compressed(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key().to_sec1_compressed()
    }

    pub fn public_hex(&self) -> String {
        self.public_key().to_hex()
    }

    /// Static ECDH: the 32-byte x coordinate of `secret · peer`. A device (with the log's
    /// public key) and the log (with the device's enrolled key) compute the same value, so it
    /// can derive a shared credential without any new secret (see `crate::mqttauth`).
    pub fn shared_secret(&self, peer: &PublicKey) -> [u8; 32] {
        let shared = k256::ecdh::diffie_hellman(self.0.as_nonzero_scalar(), peer.0.as_affine());
        (*shared.raw_secret_bytes()).into()
    }

    /// ECDSA over `SHA-256(msg)`, RFC 6979 nonce, `r || s` with low `s`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let digest: [u8; 32] = Sha256::digest(msg).into();
        // Signing a 32-byte prehash with a valid key only fails on a negligible-probability
        // internal error; k256 never returns it for secp256k1 with RFC 6979 nonces.
        let sig: k256::ecdsa::Signature = match self.0.sign_prehash(&digest) {
            Ok(s) => s,
            Err(_) => unreachable!("RFC 6979 signing of a 32-byte digest cannot fail"),
        };
        // k256 normalises s for secp256k1 (NORMALIZE_S); normalising again is a cheap no-op
        // that keeps the low-s guarantee local to this function.
        let sig = sig.normalize_s();
        sig.to_bytes().into()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public_hex())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// `key.sign(msg)`: ECDSA over `SHA-256(msg)`, `r || s`, low `s`.
pub fn sign(key: &SigningKey, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    key.sign(msg)
}

/// A secp256k1 public key, always handled in compressed SEC1 form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(k256::ecdsa::VerifyingKey);

impl PublicKey {
    /// From exactly 33 bytes of compressed SEC1.
    pub fn from_sec1_bytes(b: &[u8]) -> Result<Self, KeyError> {
        if b.len() != PUBLIC_KEY_LEN {
            return Err(KeyError::BadLength {
                expected: PUBLIC_KEY_LEN,
                got: b.len(),
            });
        }
        if b[0] != 0x02 && b[0] != 0x03 {
            return Err(KeyError::NotCompressed { prefix: b[0] });
        }
        k256::ecdsa::VerifyingKey::from_sec1_bytes(b)
            .map(Self)
            .map_err(|_| KeyError::InvalidPoint)
    }

    /// From 66 hex digits of compressed SEC1.
    pub fn from_sec1_hex(s: &str) -> Result<Self, KeyError> {
        let b = hex::decode(s.trim()).map_err(|_| KeyError::BadHex)?;
        Self::from_sec1_bytes(&b)
    }

    pub fn to_sec1_compressed(&self) -> [u8; PUBLIC_KEY_LEN] {
        let point = self.0.to_sec1_point(true);
        let mut out = [0u8; PUBLIC_KEY_LEN];
        // A compressed point of secp256k1 is always 33 bytes.
        out.copy_from_slice(point.as_bytes());
        out
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_sec1_compressed())
    }

    /// Verifies a 64-byte `r || s` low-`s` signature over `SHA-256(msg)`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SignatureError> {
        self.verify_digest(&Sha256::digest(msg).into(), sig)
    }

    /// [`verify`](Self::verify) for a message whose SHA-256 `digest` the caller has already
    /// computed (a partner's document of many megabytes is hashed once).
    pub fn verify_digest(&self, digest: &[u8; 32], sig: &[u8]) -> Result<(), SignatureError> {
        use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
        if sig.len() != SIGNATURE_LEN {
            return Err(SignatureError::BadLength { got: sig.len() });
        }
        let sig = k256::ecdsa::Signature::from_slice(sig).map_err(|_| SignatureError::Malformed)?;
        if sig.normalize_s() != sig {
            return Err(SignatureError::HighS);
        }
        self.0
            .verify_prehash(digest, &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// A log's pinned identity for checkpoints: the signed-note key name and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    key: PublicKey,
}

impl LogVerifier {
    pub fn new(name: &str, key: PublicKey) -> Result<Self, KeyError> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// `SHA-256(name || 0x0A || SIGNATURE_TYPE || 33-byte key)[:4]`, big-endian.
    pub fn key_id(&self) -> u32 {
        key_id(&self.name, &self.key)
    }

    /// The verifier key text a regulator pins: `<name>+<8 hex key ID>+<base64(type || key)>`.
    pub fn to_vkey(&self) -> String {
        let mut blob = SIGNATURE_TYPE.to_vec();
        blob.extend_from_slice(&self.key.to_sec1_compressed());
        format!("{}+{:08x}+{}", self.name, self.key_id(), B64.encode(blob))
    }

    /// Parses [`to_vkey`](Self::to_vkey) output; the key ID must match the name and key.
    pub fn from_vkey(s: &str) -> Result<Self, KeyError> {
        let (name, id, blob) = split_vkey(s)?;
        let key = blob
            .strip_prefix(SIGNATURE_TYPE)
            .ok_or(KeyError::UnknownSignatureType)?;
        let v = Self::new(name, PublicKey::from_sec1_bytes(key)?)?;
        if v.key_id() != id {
            return Err(KeyError::KeyIdMismatch);
        }
        Ok(v)
    }
}

/// A vkey's parts, `<name>+<8 hex key ID>+<base64 blob>`: the name, the key ID and the
/// decoded blob (signature type and key material), unchecked.
pub fn split_vkey(s: &str) -> Result<(&str, u32, Vec<u8>), KeyError> {
    let mut parts = s.trim().splitn(3, '+');
    let (Some(name), Some(id_hex), Some(blob)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(KeyError::BadVerifierKey);
    };
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KeyError::BadVerifierKey);
    }
    let id = u32::from_str_radix(id_hex, 16).map_err(|_| KeyError::BadVerifierKey)?;
    let blob = B64.decode(blob).map_err(|_| KeyError::BadVerifierKey)?;
    Ok((name, id, blob))
}

/// The signed-note key ID of `key` under `name` with [`SIGNATURE_TYPE`].
pub fn key_id(name: &str, key: &PublicKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0A]);
    h.update(SIGNATURE_TYPE);
    h.update(key.to_sec1_compressed());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// signed-note: key names are non-empty and contain no Unicode spaces or `+`.
pub fn check_key_name(name: &str) -> Result<(), KeyError> {
    let bad = |c: char| c.is_whitespace() || c == '+' || c.is_control();
    if name.is_empty() || name.chars().any(bad) {
        return Err(KeyError::BadKeyName);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The known-answer key: the 32 bytes 0x01, 0x02, ..., 0x20.
    fn kat_key() -> SigningKey {
        let secret: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
        SigningKey::from_bytes(&secret).unwrap()
    }

    const KAT_MSG: &[u8] = b"rxledger known-answer test";

    #[test]
    fn known_answer() {
        let key = kat_key();
        assert_eq!(
            key.to_secret_hex(),
            "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"
        );
        assert_eq!(hex::encode(Sha256::digest(KAT_MSG)), KAT_DIGEST);
        assert_eq!(key.public_hex(), KAT_PUBLIC);
        assert_eq!(hex::encode(key.sign(KAT_MSG)), KAT_SIG);
        key.public_key()
            .verify(KAT_MSG, &key.sign(KAT_MSG))
            .unwrap();
    }

    // Cross-checked with OpenSSL (Python `cryptography` 48, deterministic_signing=True).
    const KAT_DIGEST: &str = "43eb4135e007d781072325bb3df08dff340fbccf9f798abfc2335def48ef2acb";
    const KAT_PUBLIC: &str = "0284bf7562262bbd6940085748f3be6afa52ae317155181ece31b66351ccffa4b0";
    const KAT_SIG: &str = "f5155dd0dc92165b1a3d0e84eaadcca8a2d57e2c3b39848bb6a0f23924c08eb9\
                           356ce7e4bfbbe4114a82e8ca3cba5099bb9d1fa6e2be3c1e6b42334363c5e594";

    #[test]
    fn debug_redacts_the_secret() {
        let key = kat_key();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&key.to_secret_hex()), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn verify_rejects_bad_signatures() {
        let key = SigningKey::generate();
        let pk = key.public_key();
        let sig = key.sign(b"msg");
        assert_eq!(pk.verify(b"msg", &sig), Ok(()));
        assert_eq!(pk.verify(b"msh", &sig), Err(SignatureError::Invalid));
        assert_eq!(
            pk.verify(b"msg", &sig[..63]),
            Err(SignatureError::BadLength { got: 63 })
        );
        assert_eq!(
            pk.verify(b"msg", &[0u8; 64]),
            Err(SignatureError::Malformed)
        );
        // The high-s twin (s' = n - s) is the same signature mathematically; it must be refused.
        let parsed = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert_eq!(
            pk.verify(b"msg", &high.to_bytes()),
            Err(SignatureError::HighS)
        );
        let other = SigningKey::generate().public_key();
        assert_eq!(other.verify(b"msg", &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn public_key_parsing_is_strict() {
        let key = kat_key();
        let pk = key.public_key();
        assert_eq!(PublicKey::from_sec1_hex(&pk.to_hex()), Ok(pk));
        let uncompressed = key.0.verifying_key().to_sec1_point(false);
        assert_eq!(
            PublicKey::from_sec1_bytes(uncompressed.as_bytes()),
            Err(KeyError::BadLength {
                expected: 33,
                got: 65
            })
        );
        let mut bad = pk.to_sec1_compressed();
        bad[0] = 0x04;
        assert_eq!(
            PublicKey::from_sec1_bytes(&bad),
            Err(KeyError::NotCompressed { prefix: 0x04 })
        );
        // x = 5 has no point on secp256k1 (5^3 + 7 = 132 is not a square mod p).
        let mut off_curve = [0u8; 33];
        off_curve[0] = 0x02;
        off_curve[32] = 5;
        assert_eq!(
            PublicKey::from_sec1_bytes(&off_curve),
            Err(KeyError::InvalidPoint)
        );
        assert_eq!(PublicKey::from_sec1_hex("zz"), Err(KeyError::BadHex));
        assert_eq!(
            SigningKey::from_bytes(&[0; 32]).unwrap_err(),
            KeyError::InvalidSecret
        );
        assert_eq!(
            SigningKey::from_hex("00").unwrap_err(),
            KeyError::BadLength {
                expected: 32,
                got: 1
            }
        );
        let round = SigningKey::from_hex(&key.to_secret_hex()).unwrap();
        assert_eq!(round.public_key(), pk);
    }

    #[test]
    fn vkey_round_trip_and_key_id() {
        let pk = kat_key().public_key();
        let v = LogVerifier::new("example.com/log", pk).unwrap();
        let text = v.to_vkey();
        assert_eq!(LogVerifier::from_vkey(&text), Ok(v.clone()));
        // Independent key ID computation from the documented formula.
        let mut pre = b"example.com/log\n".to_vec();
        pre.push(0xff);
        pre.extend_from_slice(b"rxledger/ecdsa-secp256k1-sha256");
        pre.extend_from_slice(&hex::decode(KAT_PUBLIC).unwrap());
        let d = Sha256::digest(&pre);
        assert_eq!(format!("{:08x}", v.key_id()), hex::encode(&d[..4]));
        assert_eq!(v.key_id(), 0x0ce8_4c22);
        assert!(text.starts_with(&format!("example.com/log+{}+", hex::encode(&d[..4]))));
        let wrong_id = text.replacen(&hex::encode(&d[..4]), "00000000", 1);
        assert_eq!(
            LogVerifier::from_vkey(&wrong_id),
            Err(KeyError::KeyIdMismatch)
        );
        assert_eq!(LogVerifier::from_vkey("a+b"), Err(KeyError::BadVerifierKey));
        assert_eq!(LogVerifier::new("a b", pk), Err(KeyError::BadKeyName));
        assert_eq!(LogVerifier::new("", pk), Err(KeyError::BadKeyName));
    }
}
