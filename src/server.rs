//! `rxledger serve`: one process with the ledger, the MQTT ingest and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql_poem::{GraphQLRequest, GraphQLResponse, GraphQLSubscription};
use poem::listener::TcpAcceptor;
use poem::web::{Data, Html};
use poem::{EndpointExt, Route, get, handler, http::HeaderMap};
use rxledger_graphql::{Caller, RxSchema};
use rxledger_ingest::{Ingest, IngestConfig, MqttTarget, broker};
use rxledger_store::packs::Packs;
use rxledger_store::{Alerts, ApiKeys, Ledger, Registry};
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
    pub api_keys: ApiKeys,
    pub packs: Arc<Packs>,
    /// Whether the log key was created by this start.
    pub created_key: bool,
    /// The first admin token, when this start created it (printed once, never stored).
    pub first_admin_token: Option<String>,
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
    let api_keys = ApiKeys::new(db.clone());
    let packs = Arc::new(Packs::new(db.clone()));
    let first_admin_token = first_admin(&registry, &api_keys).await?;

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
        packs.clone(),
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
        api_keys: api_keys.clone(),
        packs: packs.clone(),
    };
    let schema = rxledger_graphql::schema(services);
    let routes = Route::new()
        .at("/graphql", get(graphiql).post(graphql))
        .at("/graphql/ws", get(GraphQLSubscription::new(schema.clone())))
        .at("/healthz", get(healthz))
        .data(schema)
        .data(api_keys.clone())
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
        api_keys,
        packs,
        created_key,
        first_admin_token,
        ingest,
        http,
        http_stop,
    })
}

/// On the very first start there is no way in: create the `admin` organization and one
/// ADMIN key, whose token the caller prints once.
async fn first_admin(registry: &Registry, keys: &ApiKeys) -> anyhow::Result<Option<String>> {
    if keys.has_admin().await? {
        return Ok(None);
    }
    if registry.organization("admin").await?.is_none() {
        registry
            .add_organization("admin", "rxledger operator", "ADMIN")
            .await?;
    }
    let (token, _) = keys
        .issue("admin", "ADMIN", "first admin key", None)
        .await?;
    Ok(Some(token))
}

/// POST /graphql: resolves the Bearer token to a caller, then runs the query.
#[handler]
async fn graphql(
    schema: Data<&RxSchema>,
    keys: Data<&ApiKeys>,
    headers: &HeaderMap,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let mut req = req.0;
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    if let Some(token) = token {
        match keys.authenticate(token).await {
            Ok(Ok(p)) => req = req.data(Caller::from_principal(p)),
            Ok(Err(problem)) => {
                let (code, msg) = match problem {
                    rxledger_store::apikeys::TokenProblem::Expired => {
                        ("KEY_EXPIRED", "this API key has expired")
                    }
                    rxledger_store::apikeys::TokenProblem::Revoked => {
                        ("KEY_REVOKED", "this API key was revoked")
                    }
                    rxledger_store::apikeys::TokenProblem::Unknown => {
                        ("UNAUTHENTICATED", "unknown API key")
                    }
                };
                return error_response(code, msg);
            }
            Err(e) => {
                tracing::error!(error = %e, "API key lookup failed");
                return error_response(
                    "INTERNAL",
                    "internal error; the operator's log has the details",
                );
            }
        }
    }
    schema.execute(req).await.into()
}

fn error_response(code: &str, message: &str) -> GraphQLResponse {
    use async_graphql::ErrorExtensions as _;
    let err = async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code));
    let resp = async_graphql::Response::from_errors(vec![
        err.into_server_error(async_graphql::Pos::default()),
    ]);
    GraphQLResponse(resp)
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
