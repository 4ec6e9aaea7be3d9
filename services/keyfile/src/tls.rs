//! TLS for MQTT clients (the node to an external broker, firmware-sim's devices): the
//! authorities a client trusts and, for a device, the certificate it presents.
//!
//! Every configuration is built with the aws-lc-rs provider named explicitly. The tree also
//! holds `ring` (through sqlx), and rustls refuses to guess between two providers: a config
//! built with `ClientConfig::builder()` would panic at the first `mqtts://` connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// Why a TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
    #[error("no trusted authority: {0}")]
    NoRoots(String),
}

/// Where a client's trust and identity come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls<'a> {
    /// PEM authorities to trust instead of the platform's (a private CA).
    pub ca: Option<&'a Path>,
    /// A client certificate chain and its key, both PEM, for brokers that ask for one.
    pub identity: Option<(&'a Path, &'a Path)>,
}

impl ClientTls<'_> {
    /// A rustls client configuration for these files.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsFileError> {
        let roots = match self.ca {
            Some(path) => authorities(path)?,
            None => platform_roots()?,
        };
        let builder = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsFileError::NoRoots(e.to_string()))?
        .with_root_certificates(roots);
        let config = match self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let bytes = read(key)?;
                let key_der = PrivateKeyDer::from_pem_slice(&bytes)
                    .map_err(|e| invalid(key, format!("no private key: {e}")))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| invalid(key, format!("unusable client certificate or key: {e}")))?
            }
        };
        Ok(Arc::new(config))
    }
}

/// Every certificate in a PEM file, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The certificates of a PEM file as trust anchors.
pub fn authorities(path: &Path) -> Result<RootCertStore, TlsFileError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable authority: {e}")))?;
    }
    Ok(roots)
}

/// The platform's trusted authorities (what `mqtts://` trusts without a CA file).
fn platform_roots() -> Result<RootCertStore, TlsFileError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found.errors.first().map(|e| e.to_string());
        return Err(TlsFileError::NoRoots(format!(
            "the platform has none ({}); name a CA file",
            why.unwrap_or_else(|| "empty store".into())
        )));
    }
    Ok(roots)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn invalid(path: &Path, why: String) -> TlsFileError {
    TlsFileError::Invalid {
        path: path.display().to_string(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = ClientTls {
            ca: Some(&path),
            identity: None,
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ca.pem") && err.contains("no CERTIFICATE"),
            "{err}"
        );
        let missing = dir.path().join("missing.pem");
        let err = certificates(&missing).unwrap_err().to_string();
        assert!(
            err.contains("cannot read") && err.contains("missing.pem"),
            "{err}"
        );
    }
}
