//! Secret files on disk: the one writer of files that only their owner may read.
//!
//! The server's log key, a scanner's device key, the load generator's keys file and the
//! broker's password file all hold secrets, so they are written here and nowhere else: mode
//! 0600 from the moment the file is created (and tightened if it already existed), flushed
//! to disk before the caller goes on. A key file holds 64 lower-case hex characters and a
//! newline; the encoding itself is `rxledger_core::keys`. The core has no I/O, which is why
//! this is a crate of its own that the `rxledger` binary and firmware-sim both use.
//!
//! [`tls`] reads the other files both of them need for MQTT over TLS: trusted authorities
//! and client certificates, into a rustls configuration.

pub mod tls;

use std::io::Write;
use std::path::Path;

use rxledger_core::ed25519::Ed25519Key;
use rxledger_core::keys::{KeyError, SigningKey};

/// A secret key kept in a file as 64 hex characters: the log's and devices' secp256k1 keys,
/// the log's and witnesses' Ed25519 keys.
pub trait SecretKey: Sized {
    /// What the key is, for error messages.
    const KIND: &'static str;
    fn from_hex(hex: &str) -> Result<Self, KeyError>;
    fn to_secret_hex(&self) -> String;
    fn generate() -> Self;
}

impl SecretKey for SigningKey {
    const KIND: &'static str = "secp256k1";
    fn from_hex(hex: &str) -> Result<Self, KeyError> {
        SigningKey::from_hex(hex)
    }
    fn to_secret_hex(&self) -> String {
        SigningKey::to_secret_hex(self)
    }
    fn generate() -> Self {
        SigningKey::generate()
    }
}

impl SecretKey for Ed25519Key {
    const KIND: &'static str = "Ed25519";
    fn from_hex(hex: &str) -> Result<Self, KeyError> {
        Ed25519Key::from_hex(hex)
    }
    fn to_secret_hex(&self) -> String {
        Ed25519Key::to_secret_hex(self)
    }
    fn generate() -> Self {
        Ed25519Key::generate()
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a {kind} secret key (expected 64 hex characters): {why}")]
    Invalid {
        path: String,
        kind: &'static str,
        why: String,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} already exists; refusing to overwrite it (use --force to replace it)")]
    Exists(String),
}

/// Reads a secp256k1 key file.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    load_key(path)
}

/// Reads a key file of any kind.
pub fn load_key<K: SecretKey>(path: &Path) -> Result<K, KeyFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: p.clone(),
        source,
    })?;
    K::from_hex(text.trim()).map_err(|e| KeyFileError::Invalid {
        path: p,
        kind: K::KIND,
        why: e.to_string(),
    })
}

/// Writes a new random secp256k1 key to `path` with mode 0600. Refuses to overwrite unless
/// `force`.
pub fn generate(path: &Path, force: bool) -> Result<SigningKey, KeyFileError> {
    generate_key(path, force)
}

/// Writes a new random key of any kind to `path` with mode 0600.
pub fn generate_key<K: SecretKey>(path: &Path, force: bool) -> Result<K, KeyFileError> {
    let key = K::generate();
    create_private(path, format!("{}\n", key.to_secret_hex()).as_bytes(), force)?;
    Ok(key)
}

/// Loads the secp256k1 key at `path`, creating it first if there is none. Returns whether it
/// was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
    load_or_create_key(path)
}

/// Loads the key of any kind at `path`, creating it first if there is none.
pub fn load_or_create_key<K: SecretKey>(path: &Path) -> Result<(K, bool), KeyFileError> {
    if path.exists() {
        Ok((load_key(path)?, false))
    } else {
        Ok((generate_key(path, false)?, true))
    }
}

/// Replaces `path` atomically: the bytes go to a temporary file beside it (mode 0600,
/// synced), which is renamed over `path`, and the directory is synced. A crash leaves the old
/// file or the new one, never a torn one. For state that must survive the database, such as
/// the newest checkpoint the log signed.
pub fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // A name of its own per call, so two writers never share (and tear) a temporary file.
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    write_private(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Writes a new secret file, creating its directory. Refuses to overwrite unless `force`.
pub fn create_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), KeyFileError> {
    let p = path.display().to_string();
    if path.exists() && !force {
        return Err(KeyFileError::Exists(p));
    }
    let write = || {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        write_private(path, bytes)
    };
    write().map_err(|source| KeyFileError::Write { path: p, source })
}

/// Replaces `path` with `bytes`, readable by its owner only, and syncs it to disk.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    // `mode` applies only when the file is created; tighten one that already existed.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_key_file_round_trips_with_mode_0600_and_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/dev.key");
        let key = generate(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(load(&path).unwrap().public_hex(), key.public_hex());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert!(matches!(
            generate(&path, false),
            Err(KeyFileError::Exists(_))
        ));
        let again = generate(&path, true).unwrap();
        assert_eq!(load(&path).unwrap().public_hex(), again.public_hex());
        let (same, created) = load_or_create(&path).unwrap();
        assert_eq!((same.public_hex(), created), (again.public_hex(), false));
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Invalid { .. })));
    }

    #[test]
    fn ed25519_keys_and_atomic_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.ed25519.key");
        let (key, created) = load_or_create_key::<Ed25519Key>(&path).unwrap();
        assert!(created);
        let (again, created) = load_or_create_key::<Ed25519Key>(&path).unwrap();
        assert_eq!((again.public_bytes(), created), (key.public_bytes(), false));
        let state = dir.path().join("log.checkpoint");
        replace_private(&state, b"one").unwrap();
        replace_private(&state, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temporary left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_file_is_tightened() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(mode(&path), 0o600);
    }
}
