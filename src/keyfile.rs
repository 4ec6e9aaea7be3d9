//! The log's signing key on disk: 64 hex characters and a newline, file mode 0600.

use std::io::Write;
use std::path::Path;

use rxledger_core::keys::SigningKey;

#[derive(Debug, thiserror::Error)]
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
    let p = path.display().to_string();
    if path.exists() && !force {
        return Err(KeyFileError::Exists(p));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyFileError::Write {
            path: p.clone(),
            source,
        })?;
    }
    let key = SigningKey::generate();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| KeyFileError::Write {
        path: p.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        // `mode` applies only when the file is created; tighten an existing one too.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| KeyFileError::Write {
                path: p.clone(),
                source,
            },
        )?;
    }
    writeln!(f, "{}", key.to_secret_hex())
        .and_then(|_| f.sync_all())
        .map_err(|source| KeyFileError::Write { path: p, source })?;
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
