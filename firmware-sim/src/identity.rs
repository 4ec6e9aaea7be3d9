//! A scanner's identity: its device id and its secp256k1 key.
//!
//! The key file has the same format as the server's log key: 64 lower-case hex characters
//! and a newline, file mode 0600, read and written by `rxledger_keyfile` as the server's is.
//! Signing goes through `rxledger_core::keys`, so devices and the server share one
//! implementation of every encoding rule.

use std::path::Path;

use rxledger_core::envelope;
use rxledger_core::keys::SigningKey;
pub use rxledger_keyfile::KeyFileError;

/// Why an identity or its key file is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
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
    Ok(rxledger_keyfile::load(path)?)
}

/// Generates a key and writes it to `path` with mode 0600. Refuses to overwrite unless `force`.
pub fn generate_key(path: &Path, force: bool) -> Result<SigningKey, IdentityError> {
    Ok(rxledger_keyfile::generate(path, force)?)
}

/// Writes secret text to a new file readable only by its owner.
pub fn write_secret(path: &Path, text: &str, force: bool) -> Result<(), IdentityError> {
    Ok(rxledger_keyfile::create_private(
        path,
        text.as_bytes(),
        force,
    )?)
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
            Err(IdentityError::KeyFile(KeyFileError::Exists(_)))
        ));
        let id = Identity::new("line-1", key).unwrap();
        let text = id.enrollment("acme", "0614141000005");
        assert!(text.contains("rxledger device enroll --id line-1 --key 0"));
        assert!(Identity::new("bad id", SigningKey::generate()).is_err());
    }
}
