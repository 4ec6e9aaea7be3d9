//! A scanner's identity: its device id and its secp256k1 key.
//!
//! The key file has the same format as the server's log key: 64 lower-case hex characters
//! and a newline, file mode 0600. Signing goes through `rxledger_core::keys`, so devices and
//! the server share one implementation of every encoding rule.

use std::io::Write;
use std::path::Path;

use rxledger_core::envelope;
use rxledger_core::keys::SigningKey;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is not a secp256k1 secret key (expected 64 hex characters): {why}")]
    Invalid { path: String, why: String },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} already exists; refusing to overwrite it (use --force to replace it)")]
    Exists(String),
    #[error("device id {0:?} is not 1 to 64 characters of A-Z a-z 0-9 - _ .")]
    BadDeviceId(String),
}

/// A device id with its signing key.
#[derive(Clone, Debug)]
pub struct Identity {
    pub device_id: String,
    pub key: SigningKey,
}

impl Identity {
    pub fn new(device_id: &str, key: SigningKey) -> Result<Identity, IdentityError> {
        if !envelope::valid_device_id(device_id) {
            return Err(IdentityError::BadDeviceId(device_id.into()));
        }
        Ok(Identity {
            device_id: device_id.into(),
            key,
        })
    }

    /// What an administrator needs to enroll this device.
    pub fn enrollment(&self, org: &str, site_gln: &str) -> String {
        format!(
            "device id:  {id}\npublic key: {pk}\n\nenroll it with:\n  rxledger device enroll --id {id} --key {pk} --org {org} --site {site_gln}\n\nor with GraphQL (admin key):\n  mutation {{ enrollDevice(input: {{id: \"{id}\", publicKey: \"{pk}\", orgId: \"{org}\", siteGln: \"{site_gln}\"}}) {{ id status }} }}\n",
            id = self.device_id,
            pk = self.key.public_hex(),
        )
    }
}

/// Reads a key file.
pub fn load_key(path: &Path) -> Result<SigningKey, IdentityError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
        path: p.clone(),
        source,
    })?;
    SigningKey::from_hex(text.trim()).map_err(|e| IdentityError::Invalid {
        path: p,
        why: e.to_string(),
    })
}

/// Generates a key and writes it to `path` with mode 0600. Refuses to overwrite unless `force`.
pub fn generate_key(path: &Path, force: bool) -> Result<SigningKey, IdentityError> {
    let key = SigningKey::generate();
    write_secret(path, &format!("{}\n", key.to_secret_hex()), force)?;
    Ok(key)
}

/// Writes secret text to a new file readable only by its owner.
pub fn write_secret(path: &Path, text: &str, force: bool) -> Result<(), IdentityError> {
    let p = path.display().to_string();
    let werr = |source| IdentityError::Write {
        path: p.clone(),
        source,
    };
    if path.exists() && !force {
        return Err(IdentityError::Exists(p));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(werr)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(werr)?;
    // `mode` only applies on creation; tighten a file that already existed (with --force).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(werr)?;
    }
    f.write_all(text.as_bytes()).map_err(werr)?;
    f.sync_all().map_err(werr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.key");
        let key = generate_key(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(load_key(&path).unwrap().public_hex(), key.public_hex());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            generate_key(&path, false),
            Err(IdentityError::Exists(_))
        ));
        let id = Identity::new("line-1", key).unwrap();
        let text = id.enrollment("acme", "0614141000005");
        assert!(text.contains("rxledger device enroll --id line-1 --key 0"));
        assert!(Identity::new("bad id", SigningKey::generate()).is_err());
    }
}
