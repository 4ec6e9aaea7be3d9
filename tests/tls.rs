//! HTTPS: the server speaks TLS with the certificate it is given, to clients that trust the
//! certificate's authority, and nothing in plain text. The authority is made inside the test.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Backends, spawn_app_with};
use rxledger::tls::TlsFiles;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// A test certificate authority and a server certificate it issued for localhost.
struct Pki {
    ca_der: CertificateDer<'static>,
    server_cert_pem: String,
    server_key_pem: String,
}

fn new_pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "rxledger test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Pki {
        ca_der: ca_cert.der().clone(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

fn write_files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
    let files = TlsFiles {
        cert: dir.join("fullchain.pem"),
        key: dir.join("privkey.pem"),
    };
    std::fs::write(&files.cert, cert).unwrap();
    std::fs::write(&files.key, key).unwrap();
    files
}

fn client(trusted: &[CertificateDer<'static>]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add(c.clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request over TLS; the raw response.
async fn https(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    request: &str,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn serves_https_to_clients_that_trust_its_authority_and_nothing_in_plain_text() {
    let pki = new_pki();
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &pki.server_cert_pem, &pki.server_key_pem);
    let app = spawn_app_with(Backends::Embedded, |c| c.tls = Some(files)).await;
    assert_eq!(app.app().http_scheme, "https");

    let trusting = client(std::slice::from_ref(&pki.ca_der));
    let health = https(
        &trusting,
        app.http,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let body = r#"{"query":"{ checkpoint { size } }"}"#;
    let answer = https(
        &trusting,
        app.http,
        &format!(
            "POST /graphql HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .unwrap();
    assert!(
        answer.contains(r#"{"data":{"checkpoint":{"size":0}}}"#),
        "{answer}"
    );

    let stranger = client(&[new_pki().ca_der]);
    let refused = https(
        &stranger,
        app.http,
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await;
    let err = refused.expect_err("a client that does not trust the authority");
    // Another authority of the same name: the signature, not the name, decides.
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(app.http).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out).await;
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1 200"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&out)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_the_start() {
    let (pki, other) = (new_pki(), new_pki());
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &pki.server_cert_pem, &other.server_key_pem);
    let cfg = rxledger::server::ServeConfig {
        node_id: "rxledger-tls-test".into(),
        tls: Some(files),
        ..rxledger::server::ServeConfig::local(dir.path())
    };
    let err = match rxledger::server::start(cfg).await {
        Ok(_) => panic!("the server started with a mismatched key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("does not belong to the certificate"), "{err}");
    assert!(
        err.contains("fullchain.pem"),
        "the message names the file: {err}"
    );
}
