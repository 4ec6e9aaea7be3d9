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

use rxledger_core::keys::SigningKey;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not a secp256k1 secret key (expected 64 hex characters): {why}")]
    Invalid { path: String, why: String },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} already exists; refusing to overwrite it (use --force to replace it)")]
    Exists(String),
}

/// Reads a key file.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: p.clone(),
        source,
    })?;
    SigningKey::from_hex(text.trim()).map_err(|e| KeyFileError::Invalid {
        path: p,
        why: e.to_string(),
    })
}

/// Writes a new random key to `path` with mode 0600. Refuses to overwrite unless `force`.
pub fn generate(path: &Path, force: bool) -> Result<SigningKey, KeyFileError> {
    let key = SigningKey::generate();
    create_private(path, format!("{}\n", key.to_secret_hex()).as_bytes(), force)?;
    Ok(key)
}

/// Loads the key at `path`, creating it first if there is none. Returns whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
    if path.exists() {
        Ok((load(path)?, false))
    } else {
        Ok((generate(path, false)?, true))
    }
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
