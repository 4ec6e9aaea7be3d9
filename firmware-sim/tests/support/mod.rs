//! Test helpers: the real server in-process (as the root package's `spawn_app` starts it),
//! an [`Api`] backed by its registry, and a TCP proxy that plays an unreachable broker.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use firmware_sim::api::{Api, ApiError, Role, Verification};
use firmware_sim::device::Broker;
use rxledger::server::{self, App, ServeConfig};
use rxledger_core::keys::{PublicKey, SigningKey};
use rxledger_ingest::IngestConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const GLN: &str = "0614141000005";

pub struct Server {
    pub app: Option<App>,
    pub cfg: ServeConfig,
    pub dir: tempfile::TempDir,
    pub topic_root: String,
    /// The log the devices pin (kept, so it is known while the server is down).
    log: rxledger_core::keys::LogVerifier,
}

impl Server {
    pub async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let topic_root = format!("fwsim-test/{}", std::process::id());
        let cfg = ServeConfig {
            origin: Some("test.rxledger.local/log".into()),
            node_id: format!("fwsim-test-{}", std::process::id()),
            ingest: IngestConfig {
                batch_wait: Duration::from_millis(10),
                topic_root: topic_root.clone(),
                ..IngestConfig::default()
            },
            ..ServeConfig::local(dir.path())
        };
        let app = server::start(cfg.clone()).await.expect("server starts");
        Server {
            log: app.ledger.verifier().clone(),
            app: Some(app),
            cfg,
            dir,
            topic_root,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("server is running")
    }

    pub fn broker(&self) -> Broker {
        let (host, port) = self.app().mqtt_addr.clone();
        Broker {
            host,
            port,
            tls: None,
        }
    }

    /// The log the devices pin.
    pub fn log(&self) -> rxledger_core::keys::LogVerifier {
        self.log.clone()
    }

    /// Stops the server (the embedded broker thread lives on: rumqttd cannot stop).
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    /// Starts again on the same database and log key; the embedded broker gets a new port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.app = Some(
            server::start(self.cfg.clone())
                .await
                .expect("server restarts"),
        );
    }

    /// How many entries of the log hold events: what devices and the API appended, not
    /// the log's own map roots.
    pub async fn event_entries(&self) -> u64 {
        let ledger = &self.app().ledger;
        let entries = ledger.entries(0, ledger.head().size).await.unwrap();
        entries
            .iter()
            .filter(|e| firmware_sim::api::EVENT_KINDS.contains(&(e.kind as u64)))
            .count() as u64
    }

    /// Enrolls a device of the manufacturer that owns company prefix 0614141.
    pub async fn enroll(&self, device: &str) -> SigningKey {
        let r = &self.app().registry;
        if r.organization("acme").await.unwrap().is_none() {
            r.add_organization("acme", "acme", "MANUFACTURER")
                .await
                .unwrap();
            r.add_site(GLN, "acme", "acme site").await.unwrap();
            r.add_company_prefix("acme", "0614141").await.unwrap();
        }
        let key = SigningKey::generate();
        r.enroll_device(device, &key.public_key(), "acme", GLN)
            .await
            .unwrap();
        key
    }
}

/// The scenario's [`Api`] on the server's registry, for servers without the GraphQL admin
/// API. `verify` is not available this way.
pub struct RegistryApi<'a>(pub &'a App);

fn err(e: impl std::fmt::Display) -> ApiError {
    ApiError::Shape(e.to_string())
}

impl Api for RegistryApi<'_> {
    async fn log_verifier(&self) -> Result<rxledger_core::keys::LogVerifier, ApiError> {
        Ok(self.0.ledger.verifier().clone())
    }

    async fn create_organization(&self, id: &str, name: &str, role: Role) -> Result<(), ApiError> {
        self.0
            .registry
            .add_organization(id, name, role.as_str())
            .await
            .map(drop)
            .map_err(err)
    }
    async fn add_company_prefix(&self, org: &str, prefix: &str) -> Result<(), ApiError> {
        self.0
            .registry
            .add_company_prefix(org, prefix)
            .await
            .map_err(err)
    }
    async fn add_site(
        &self,
        gln: &str,
        org: &str,
        name: &str,
        _: Option<(f64, f64)>,
    ) -> Result<(), ApiError> {
        self.0
            .registry
            .add_site(gln, org, name)
            .await
            .map(drop)
            .map_err(err)
    }
    async fn enroll_device(
        &self,
        id: &str,
        public_key: &str,
        org: &str,
        site: &str,
    ) -> Result<(), ApiError> {
        let key = PublicKey::from_sec1_hex(public_key).map_err(err)?;
        self.0
            .registry
            .enroll_device(id, &key, org, site)
            .await
            .map(drop)
            .map_err(err)
    }
    async fn revoke_device(&self, id: &str) -> Result<(), ApiError> {
        self.0.registry.revoke_device(id).await.map_err(err)
    }
    async fn verify(&self, _: &str) -> Result<Verification, ApiError> {
        Err(err("verify needs the GraphQL API"))
    }
    async fn log_size(&self) -> Result<u64, ApiError> {
        Ok(self.0.ledger.head().size)
    }
    async fn event_entries(&self, from: u64, to: u64) -> Result<u64, ApiError> {
        let entries = self
            .0
            .ledger
            .entries(from, to.saturating_sub(from))
            .await
            .map_err(err)?;
        Ok(entries
            .iter()
            .filter(|e| firmware_sim::api::EVENT_KINDS.contains(&(e.kind as u64)))
            .count() as u64)
    }
}

/// A TCP proxy on a fixed local port: stopping it is a broker outage as the device sees it
/// (connections cut, connects refused); restarting it on the same port can point at a new
/// upstream broker.
pub struct Proxy {
    pub port: u16,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        Proxy {
            port,
            task: Some(tokio::spawn(serve(l, upstream))),
        }
    }

    pub fn broker(&self) -> Broker {
        Broker {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: None,
        }
    }

    /// Cuts every connection and stops listening.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    pub async fn restart(&mut self, upstream: SocketAddr) {
        self.stop().await;
        let l = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.task = Some(tokio::spawn(serve(l, upstream)));
    }
}

async fn serve(l: TcpListener, upstream: SocketAddr) {
    // Connection tasks live in this set, so aborting the proxy task drops (closes) them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut down, _)) = l.accept().await else {
            return;
        };
        conns.spawn(async move {
            if let Ok(mut up) = TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}

pub fn addr(b: &Broker) -> SocketAddr {
    format!("{}:{}", b.host, b.port).parse().unwrap()
}
