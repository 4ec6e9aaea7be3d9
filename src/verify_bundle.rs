//! `rxledger verify-bundle`: checks a tracing answer's evidence bundle offline, with nothing
//! but the log's verifier key. The checks are the core's (`trace::verify_bundle`); this reads
//! the file and says what it found.

use std::path::Path;

use anyhow::Context as _;
use rxledger_core::checkpoint::NoteVerifier;
use rxledger_core::keys::LogVerifier;
use rxledger_core::trace::{self, Bundle};

/// Largest bundle file read (a 10,000-pack lot's history with proofs fits well within it).
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// What a verified bundle holds.
#[derive(Debug)]
pub struct Verified {
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub entries: usize,
    /// The tracing requests among the entries, as (index, requester, subject), when the
    /// verifier key is the log's k256 key (records are sealed with it).
    pub requests: Vec<(u64, String, String)>,
}

/// Reads and checks the bundle at `file` against `log_key` (the k256 or Ed25519 verifier
/// key `rxledger vkey` prints). `Ok(Err(why))` is a bundle that does not verify.
pub fn verify_file(file: &Path, log_key: &str) -> anyhow::Result<Result<Verified, String>> {
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read bundle file {}", file.display()))?
        .len();
    if len > MAX_BUNDLE_BYTES {
        anyhow::bail!("{} is larger than {MAX_BUNDLE_BYTES} bytes", file.display());
    }
    let text = std::fs::read(file)
        .with_context(|| format!("cannot read bundle file {}", file.display()))?;
    let bundle: Bundle = match serde_json::from_slice(&text) {
        Ok(b) => b,
        Err(e) => return Ok(Err(format!("not an evidence bundle: {e}"))),
    };
    let k256 = LogVerifier::from_vkey(log_key).ok();
    let verifier: Box<dyn NoteVerifier> = match &k256 {
        Some(v) => Box::new(v.clone()),
        None => Box::new(
            rxledger_core::ed25519::Ed25519Verifier::from_vkey(log_key)
                .map_err(|e| anyhow::anyhow!("bad --verifier-key: {e}"))?,
        ),
    };
    let cp = match trace::verify_bundle(&bundle, verifier.as_ref()) {
        Ok(cp) => cp,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut requests = Vec::new();
    if let Some(log) = &k256 {
        for e in &bundle.entries {
            let bytes = e.bytes().map_err(|err| anyhow::anyhow!("{err}"))?;
            if trace::is_trace_record(&bytes) {
                match trace::open_record(&bytes, log) {
                    Ok(r) => requests.push((e.index, r.requester, r.subject)),
                    Err(err) => return Ok(Err(format!("entry {}: {err}", e.index))),
                }
            }
        }
    }
    Ok(Ok(Verified {
        origin: cp.origin,
        size: cp.size,
        root: hex::encode(cp.root),
        entries: bundle.entries.len(),
        requests,
    }))
}
