//! The log's signing key on disk: 64 hex characters and a newline, file mode 0600. The one
//! implementation, shared with firmware-sim's device keys, is `rxledger_keyfile`.

//! The log's Ed25519 key sits beside it (`log.key` → `log.ed25519.key`).

pub use rxledger_keyfile::{
    KeyFileError, generate, generate_key, load, load_key, load_or_create, load_or_create_key,
};

use std::path::{Path, PathBuf};

/// The log's Ed25519 key file, beside its k256 key file: `log.key` → `log.ed25519.key`.
pub fn ed25519_path(key_path: &Path) -> PathBuf {
    let stem = key_path
        .file_stem()
        .map_or_else(|| "log".into(), |s| s.to_string_lossy().into_owned());
    key_path.with_file_name(format!("{stem}.ed25519.key"))
}
