//! The log's signing key on disk: 64 hex characters and a newline, file mode 0600. The one
//! implementation, shared with firmware-sim's device keys, is `rxledger_keyfile`.

pub use rxledger_keyfile::{KeyFileError, generate, load, load_or_create};
