//! `rxledger serve`: one process with the ledger, the MQTT ingest and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql_poem::{GraphQL, GraphQLSubscription};
use poem::listener::TcpAcceptor;
use poem::{EndpointExt, Route, get, handler, web::Html};
use rxledger_ingest::{Ingest, IngestConfig, MqttTarget, broker};
use rxledger_store::{Alerts, Ledger, Registry};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::keyfile;

/// Everything `serve` needs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// A SQLite path or URL, or a PostgreSQL URL.
    pub database: String,
    pub key_path: PathBuf,
    /// The checkpoint origin line; by default derived from the log's public key.
    pub origin: Option<String>,
    pub mqtt: MqttTarget,
    pub http_listen: SocketAddr,
    /// MQTT client id of this node: stable across restarts, different on every node.
    pub node_id: String,
    pub ingest: IngestConfig,
}

/// A running server.
pub struct App {
    pub http_addr: SocketAddr,
    /// The broker the ingest is connected to (host, port).
    pub mqtt_addr: (String, u16),
    pub ledger: Arc<Ledger>,
    pub registry: Registry,
    pub alerts: Alerts,
    /// Whether the log key was created by this start.
    pub created_key: bool,
    ingest: Ingest,
    http: JoinHandle<std::io::Result<()>>,
    http_stop: tokio::sync::oneshot::Sender<()>,
}

/// The default origin: unique per log key, stable for the life of the log.
pub fn default_origin(public_key: &[u8]) -> String {
    format!(
        "rxledger.local/{}",
        &hex::encode(Sha256::digest(public_key))[..16]
    )
}

/// Starts every part; returns once MQTT is subscribed and HTTP is listening.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<App> {
    let (key, created_key) = keyfile::load_or_create(&cfg.key_path)?;
    let origin = cfg
        .origin
        .clone()
        .unwrap_or_else(|| default_origin(&key.public_sec1_compressed()));
    let db = rxledger_store::connect(&cfg.database).await?;
    let ledger = Arc::new(Ledger::open(db.clone(), key, &origin).await?);
    let registry = Registry::new(db.clone());
    let alerts = Alerts::new(db.clone());

    let (opts, mqtt_addr) = match &cfg.mqtt {
        MqttTarget::Embedded { listen } => {
            let b = broker::start(*listen)?;
            let host = b.addr.ip().to_string();
            (
                rumqttc_options(&cfg.node_id, &host, b.addr.port()),
                (host, b.addr.port()),
            )
        }
        MqttTarget::External(url) => (url.options(&cfg.node_id)?, (url.host.clone(), url.port)),
    };
    let ingest = Ingest::start(
        opts,
        ledger.clone(),
        registry.clone(),
        alerts.clone(),
        cfg.ingest.clone(),
        Duration::from_secs(10),
    )
    .await
    .with_context(|| format!("starting MQTT ingest via {}:{}", mqtt_addr.0, mqtt_addr.1))?;

    let services = rxledger_graphql::Services {
        ledger: ledger.clone(),
        registry: registry.clone(),
        alerts: alerts.clone(),
    };
    let schema = rxledger_graphql::schema(services);
    let routes = Route::new()
        .at("/graphql", get(graphiql).post(GraphQL::new(schema.clone())))
        .at("/graphql/ws", get(GraphQLSubscription::new(schema)))
        .at("/healthz", get(healthz))
        .with(poem::middleware::SizeLimit::new(256 * 1024));
    let listener = std::net::TcpListener::bind(cfg.http_listen).with_context(|| {
        format!(
            "cannot listen for HTTP on {}; choose another with --http-listen ADDR",
            cfg.http_listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let http_addr = listener.local_addr()?;
    let acceptor = TcpAcceptor::from_std(listener)?;
    let (http_stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .idle_timeout(Duration::from_secs(30))
            .run_with_graceful_shutdown(
                routes,
                async move {
                    let _ = stop_rx.await;
                },
                Some(Duration::from_secs(5)),
            )
            .await
    });
    Ok(App {
        http_addr,
        mqtt_addr,
        ledger,
        registry,
        alerts,
        created_key,
        ingest,
        http,
        http_stop,
    })
}

fn rumqttc_options(node_id: &str, host: &str, port: u16) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(node_id, host, port);
    o.set_keep_alive(Duration::from_secs(15));
    o
}

impl App {
    /// Stops taking messages, commits and acks batches in flight, then stops HTTP.
    pub async fn shutdown(self) {
        self.ingest.shutdown().await;
        let _ = self.http_stop.send(());
        let _ = self.http.await;
    }

    pub fn ingest_stats(&self) -> &rxledger_ingest::pipeline::Stats {
        &self.ingest.stats
    }
}

/// GraphiQL, loaded from a CDN by the browser; the server itself serves no JavaScript here.
const GRAPHIQL: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rxledger GraphiQL</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="https://unpkg.com/graphiql@3/graphiql.min.css"></head>
<body style="margin:0"><div id="graphiql" style="height:100vh"></div>
<script crossorigin src="https://unpkg.com/react@18/umd/react.production.min.js"></script>
<script crossorigin src="https://unpkg.com/react-dom@18/umd/react-dom.production.min.js"></script>
<script crossorigin src="https://unpkg.com/graphiql@3/graphiql.min.js"></script>
<script>
const url = new URL('/graphql', location.href).href;
const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl: url.replace(/^http/, 'ws') + '/ws' });
ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(GraphiQL, { fetcher }));
</script></body></html>"#;

#[handler]
fn graphiql() -> Html<&'static str> {
    Html(GRAPHIQL)
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}
