//! HTTPS for the API and the pages: rustls (through poem's listener) with a certificate chain
//! and private key read from PEM files.
//!
//! Certificates are renewed while the server runs (an ACME client replaces them every 60 to
//! 90 days), so the files are checked every [`RELOAD_EVERY`] and a changed pair is loaded
//! without a restart. A pair is loaded only if it is whole: at least one certificate, a
//! private key of a supported type, and a key that belongs to the first certificate. A bad
//! pair at start-up stops the server with a clear error; a bad pair later is logged and the
//! previous one stays in service, so a half-written renewal never takes the site down.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use futures_util::Stream;
use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// How often the certificate files are checked for a renewal.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// The PEM files HTTPS serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`fullchain.pem`).
    pub cert: PathBuf,
    /// The leaf certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate chain and key that were read and checked together.
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
    /// When the two files were last modified, to notice a renewal.
    stamp: Stamp,
}

/// The modification times of the certificate and key files.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

impl TlsFiles {
    /// Reads and checks both files: the server refuses to start on a pair it could not serve.
    fn load(&self) -> anyhow::Result<Pair> {
        let stamp = self.stamp();
        let cert = std::fs::read(&self.cert)
            .with_context(|| format!("cannot read the TLS certificate {}", self.cert.display()))?;
        let key = std::fs::read(&self.key)
            .with_context(|| format!("cannot read the TLS private key {}", self.key.display()))?;
        check(&cert, &key).with_context(|| {
            format!(
                "the TLS certificate {} and key {} cannot be served",
                self.cert.display(),
                self.key.display()
            )
        })?;
        Ok(Pair { cert, key, stamp })
    }

    /// The pair as renewed since `seen`, if the files changed and the new pair loads; a
    /// change that does not load is logged once and not retried until the files change again.
    fn renewal(&self, seen: &mut Stamp) -> Option<Pair> {
        let now = self.stamp();
        if now == *seen {
            return None;
        }
        *seen = now;
        match self.load() {
            Ok(pair) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                Some(pair)
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "the renewed TLS certificate was not loaded; the previous one stays in service"
                );
                None
            }
        }
    }

    fn stamp(&self) -> Stamp {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (modified(&self.cert), modified(&self.key))
    }
}

/// The certificate at least parses, the key is one rustls can sign with, and the key is the
/// one the leaf certificate names.
fn check(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<()> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("the certificate file is not PEM: {e}"))?;
    if chain.is_empty() {
        bail!("the certificate file holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow::anyhow!("the key file holds no private key: {e}"))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("unsupported private key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain, signer)
        .keys_match()
        .map_err(|e| anyhow::anyhow!("the private key does not belong to the certificate: {e}"))
}

impl Pair {
    fn config(&self) -> RustlsConfig {
        RustlsConfig::new().fallback(
            RustlsCertificate::new()
                .cert(self.cert.clone())
                .key(self.key.clone()),
        )
    }
}

/// The stream of TLS configurations a listener serves: the first, then each renewal.
pub type Configs = std::pin::Pin<Box<dyn Stream<Item = RustlsConfig> + Send + 'static>>;

/// The configurations poem's TLS acceptor serves: the pair read now (an error if it cannot
/// be served), then each renewal of the files that loads cleanly.
pub fn configs(files: TlsFiles) -> anyhow::Result<Configs> {
    let first = files.load()?;
    let initial = first.config();
    let renewals =
        futures_util::stream::unfold((files, first.stamp), |(files, mut seen)| async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                if let Some(pair) = files.renewal(&mut seen) {
                    return Some((pair.config(), (files, seen)));
                }
            }
        });
    Ok(Box::pin(futures_util::StreamExt::chain(
        futures_util::stream::once(std::future::ready(initial)),
        renewals,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_is_accepted() {
        let (cert, key) = pair("localhost");
        check(cert.as_bytes(), key.as_bytes()).unwrap();
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = pair("localhost");
        let (_, other_key) = pair("localhost");
        let err = check(cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn a_renewal_is_loaded_once_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let write = |(cert, key): &(String, String)| {
            std::fs::write(&files.cert, cert).unwrap();
            std::fs::write(&files.key, key).unwrap();
        };
        let (first, renewed) = (pair("localhost"), pair("localhost"));
        write(&first);
        let mut seen = files.load().unwrap().stamp;
        assert!(files.renewal(&mut seen).is_none(), "unchanged files");

        // A renewal half-written: the new certificate beside the old key.
        std::fs::write(&files.cert, &renewed.0).unwrap();
        bump(&files.cert);
        assert!(files.renewal(&mut seen).is_none(), "a mismatched pair");

        std::fs::write(&files.key, &renewed.1).unwrap();
        bump(&files.key);
        let pair = files.renewal(&mut seen).expect("the whole renewal loads");
        assert_eq!(pair.cert, renewed.0.as_bytes());
        assert!(files.renewal(&mut seen).is_none(), "loaded once");
    }

    /// Moves a file's modification time on by a second: two writes within one clock tick
    /// would otherwise look like no change.
    fn bump(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        let t = f.metadata().unwrap().modified().unwrap() + Duration::from_secs(1);
        f.set_modified(t).unwrap();
    }

    #[test]
    fn files_without_a_certificate_or_key_are_refused() {
        let (cert, key) = pair("localhost");
        let err = check(key.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no CERTIFICATE"), "{err}");
        let err = check(cert.as_bytes(), cert.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("no private key"), "{err}");
    }
}
