//! The map-root entry: how the log commits to the map.
//!
//! The sequencer appends one as the last entry of every batch that appends anything. It
//! names the map root after every entry before it, so the checkpoint that covers the batch
//! covers the map of everything it logged; and because it is an entry, witnesses' consistency
//! checks pin every map root the log ever published (a root carried only in a checkpoint's
//! text could be changed without changing the tree, and a witness that already cosigned that
//! tree size would cosign the other text too). It names no party. Its bytes (docs/PROTOCOL.md
//! has the vector):
//!
//! ```text
//! rxledger map root v1
//! origin <log origin>
//! size <N>                 entries 0..N are covered; this entry is entry N
//! keys <K>                 keys in the map
//! root <base64 of the 32-byte map root>
//! sig <base64 of the log's 64-byte k256 signature over the five lines above>
//! ```
//!
//! Numbers are decimal without leading zeros; every line ends with `\n`. A parsed entry is
//! rendered again and compared byte for byte, so an entry has exactly one spelling.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::{Hash, MapError};
use crate::keys::{PublicKey, SIGNATURE_LEN, SigningKey};

/// The first line of every map-root entry; nothing else in the log starts with it (device
/// envelopes and state changes are JSON).
pub const HEADER: &str = "rxledger map root v1";
/// No map-root entry is longer (origins are at most a few hundred bytes).
pub const MAX_LEN: usize = 1024;

/// What a map-root entry states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapRoot {
    pub origin: String,
    /// Entries `0..size` are in the map; the entry stating it is entry `size`.
    pub size: u64,
    /// How many keys the map holds.
    pub keys: u64,
    pub root: Hash,
}

impl MapRoot {
    /// The signed part: the five lines before `sig`.
    pub fn body(&self) -> String {
        format!(
            "{HEADER}\norigin {}\nsize {}\nkeys {}\nroot {}\n",
            self.origin,
            self.size,
            self.keys,
            B64.encode(self.root)
        )
    }

    /// The entry's bytes, signed by the log's k256 key.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        let body = self.body();
        let sig = key.sign(body.as_bytes());
        format!("{body}sig {}\n", B64.encode(sig)).into_bytes()
    }

    /// Reads an entry's bytes without checking the signature: the statement and the signature.
    pub fn parse(bytes: &[u8]) -> Result<(MapRoot, [u8; SIGNATURE_LEN]), MapError> {
        let bad = |why: &str| MapError::BadRootEntry(why.to_string());
        if bytes.len() > MAX_LEN {
            return Err(bad("longer than 1024 bytes"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?
            .split('\n')
            .collect();
        let [header, origin, size, keys, root, sig] = lines[..] else {
            return Err(bad("not six lines"));
        };
        if header != HEADER {
            return Err(bad("not a map-root entry"));
        }
        let field = |line: &str, name: &str| -> Result<String, MapError> {
            line.strip_prefix(name)
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| MapError::BadRootEntry(format!("no {name} line")))
        };
        let number = |line: &str, name: &str| -> Result<u64, MapError> {
            field(line, name)?
                .parse()
                .map_err(|_| MapError::BadRootEntry(format!("{name} is not a number")))
        };
        let root: Hash = B64
            .decode(field(root, "root")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("root is not 32 bytes of base64"))?;
        let sig: [u8; SIGNATURE_LEN] = B64
            .decode(field(sig, "sig")?)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("sig is not 64 bytes of base64"))?;
        let stated = MapRoot {
            origin: field(origin, "origin")?,
            size: number(size, "size")?,
            keys: number(keys, "keys")?,
            root,
        };
        let canonical = format!("{}sig {}\n", stated.body(), B64.encode(sig));
        if canonical.as_bytes() != bytes {
            return Err(bad("not in canonical form"));
        }
        Ok((stated, sig))
    }

    /// Reads an entry and checks the log's signature on it.
    pub fn open(bytes: &[u8], log_key: &PublicKey) -> Result<MapRoot, MapError> {
        let (stated, sig) = MapRoot::parse(bytes)?;
        log_key
            .verify(stated.body().as_bytes(), &sig)
            .map_err(|_| MapError::BadSignature)?;
        Ok(stated)
    }
}

/// Whether an entry's bytes are a map-root entry (by its header; [`MapRoot::parse`] decides
/// whether it is a well-formed one).
pub fn is_map_root(bytes: &[u8]) -> bool {
    bytes.starts_with(HEADER.as_bytes()) && bytes.get(HEADER.len()) == Some(&b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stated() -> MapRoot {
        MapRoot {
            origin: "rxledger.example/log".into(),
            size: 41,
            keys: 7,
            root: [3; 32],
        }
    }

    #[test]
    fn an_entry_signs_opens_and_refuses_any_change() {
        let key = SigningKey::from_bytes(&[7; 32]).unwrap();
        let bytes = stated().sign(&key);
        assert!(is_map_root(&bytes));
        assert_eq!(MapRoot::open(&bytes, &key.public_key()).unwrap(), stated());
        let other = SigningKey::from_bytes(&[8; 32]).unwrap();
        assert_eq!(
            MapRoot::open(&bytes, &other.public_key()),
            Err(MapError::BadSignature)
        );
        let text = String::from_utf8(bytes.clone()).unwrap();
        let forged = text.replace("size 41", "size 40");
        assert_eq!(
            MapRoot::open(forged.as_bytes(), &key.public_key()),
            Err(MapError::BadSignature)
        );
        for bad in [
            text.replace("size 41", "size 041"),
            text.replace("keys 7\n", "keys 7\nextra\n"),
            text.trim_end().to_string(),
            text.replace("rxledger map root v1", "rxledger map root v2"),
        ] {
            assert!(matches!(
                MapRoot::parse(bad.as_bytes()),
                Err(MapError::BadRootEntry(_))
            ));
        }
        assert!(!is_map_root(br#"{"events":[]}"#));
    }
}
