//! HTTPS for the API and the pages (rustls through poem's listener), and MQTT over TLS on the
//! embedded broker's gate (tokio-rustls), with one certificate chain and private key read
//! from PEM files.
//!
//! Certificates are renewed while the server runs (an ACME client replaces them every 60 to
//! 90 days), so the files are checked every [`RELOAD_EVERY`] and a changed pair is loaded
//! without a restart. A pair is loaded only if it is whole: at least one certificate, a
//! private key of a supported type, and a key that belongs to the first certificate. A bad
//! pair at start-up stops the server with a clear error; a bad pair later is logged and the
//! previous one stays in service, so a half-written renewal never takes the site down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, bail};
use futures_util::Stream;
use poem::listener::{RustlsCertificate, RustlsConfig};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rxledger_ingest::TlsListener;
use tokio::sync::watch;

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
    let (chain, key) = parse(cert_pem, key_pem)?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("unsupported private key: {e}"))?;
    rustls::sign::CertifiedKey::new(chain, signer)
        .keys_match()
        .map_err(|e| anyhow::anyhow!("the private key does not belong to the certificate: {e}"))
}

/// The certificate chain and the private key of two PEM files.
fn parse(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("the certificate file is not PEM: {e}"))?;
    if chain.is_empty() {
        bail!("the certificate file holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow::anyhow!("the key file holds no private key: {e}"))?;
    Ok((chain, key))
}

impl Pair {
    fn config(&self) -> RustlsConfig {
        RustlsConfig::new().fallback(
            RustlsCertificate::new()
                .cert(self.cert.clone())
                .key(self.key.clone()),
        )
    }

    /// The MQTT listener's configuration: this pair, and client certificates checked by
    /// `clients` when given.
    fn server_config(
        &self,
        clients: Option<&Arc<dyn ClientCertVerifier>>,
    ) -> anyhow::Result<Arc<ServerConfig>> {
        let (chain, key) = parse(&self.cert, &self.key)?;
        let builder = ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?;
        let builder = match clients {
            Some(v) => builder.with_client_cert_verifier(v.clone()),
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(builder.with_single_cert(chain, key)?))
    }
}

/// The pair read now (an error if it cannot be served), and each renewal of the files that
/// loads cleanly, checked every [`RELOAD_EVERY`].
fn reloading(files: TlsFiles) -> anyhow::Result<(Pair, impl Stream<Item = Pair> + Send + 'static)> {
    let first = files.load()?;
    let renewals =
        futures_util::stream::unfold((files, first.stamp), |(files, mut seen)| async move {
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                if let Some(pair) = files.renewal(&mut seen) {
                    return Some((pair, (files, seen)));
                }
            }
        });
    Ok((first, renewals))
}

/// The stream of TLS configurations a listener serves: the first, then each renewal.
pub type Configs = std::pin::Pin<Box<dyn Stream<Item = RustlsConfig> + Send + 'static>>;

/// The configurations poem's TLS acceptor serves: the pair read now (an error if it cannot
/// be served), then each renewal of the files that loads cleanly.
pub fn configs(files: TlsFiles) -> anyhow::Result<Configs> {
    let (first, renewals) = reloading(files)?;
    let initial = first.config();
    Ok(Box::pin(futures_util::StreamExt::chain(
        futures_util::stream::once(std::future::ready(initial)),
        futures_util::StreamExt::map(renewals, |pair| pair.config()),
    )))
}

/// MQTT over TLS on the embedded broker: where its TLS listener is, and who must present a
/// client certificate there. The node's trust for an external `mqtts://` broker is here too.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MqttTls {
    /// The gate's TLS listener (conventionally port 8883).
    pub listen: Option<SocketAddr>,
    /// The certificate it serves; by default HTTPS's (`--tls-cert`, `--tls-key`).
    pub files: Option<TlsFiles>,
    /// Devices on the TLS listener must present a certificate issued by this authority (PEM)
    /// that names them (CN or DNS name = device id); read once at start.
    pub client_ca: Option<PathBuf>,
    /// Authorities the node trusts for an external `mqtts://` broker (PEM); by default the
    /// platform's.
    pub ca: Option<PathBuf>,
}

/// The gate's TLS listener configuration: the pair read now (an error if it cannot be
/// served), replaced by each renewal of the files that loads cleanly; client certificates
/// required and verified against `client_ca` when it is given.
pub fn mqtt_listener(files: TlsFiles, client_ca: Option<&Path>) -> anyhow::Result<TlsListener> {
    let clients = match client_ca {
        Some(path) => {
            let roots = rxledger_keyfile::tls::authorities(path)
                .context("the MQTT client certificate authority (--mqtt-client-ca)")?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            Some(WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?)
        }
        None => None,
    };
    let (first, renewals) = reloading(files.clone())?;
    let (tx, configs) = watch::channel(first.server_config(clients.as_ref())?);
    let client_certs = clients.is_some();
    tokio::spawn(async move {
        let mut renewals = std::pin::pin!(renewals);
        while let Some(pair) = futures_util::StreamExt::next(&mut renewals).await {
            match pair.server_config(clients.as_ref()) {
                Ok(config) => {
                    if tx.send(config).is_err() {
                        return;
                    }
                    tracing::info!(cert = %files.cert.display(), "MQTT TLS certificate reloaded");
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "the renewed certificate was not loaded for MQTT; the previous one stays"
                ),
            }
        }
    });
    Ok(TlsListener {
        configs,
        client_certs,
    })
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
