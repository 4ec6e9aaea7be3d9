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
use rxledger_graphql::RxSchema;
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
    /// The public base URL printed into QR codes and used as the Digital Link domain, e.g.
    /// `https://verify.example.org`; by default `http://{the HTTP listen address}`.
    pub public_url: Option<String>,
    /// GraphQL requests allowed per API key (anonymous callers: per IP).
    pub rate_limit: crate::ratelimit::RateLimit,
    /// A dispense by a pharmacy that does not hold the pack: recorded with an alert, or refused.
    pub custody_policy: rxledger_core::verdict::CustodyPolicy,
}

/// Largest GraphQL request body.
pub const MAX_API_BODY: usize = 256 * 1024;

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
    follower: JoinHandle<()>,
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
    let packs = Arc::new(Packs::indexed(db.clone(), ledger.postings()));
    let first_admin_token = first_admin(&registry, &api_keys).await?;
    // On PostgreSQL other nodes may sequence too: follow the shared head so that queries and
    // checkpoint subscriptions here see their entries within a second. A SQLite file has one
    // node, whose own appends already move the head.
    let shared = ledger.database().is_postgres();
    // Verdicts read the identifier index from memory once it is loaded (the table until then);
    // the follower keeps it level with what other nodes append.
    let follower = {
        let ledger = ledger.clone();
        let packs = packs.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            match packs.load_index().await {
                Ok(()) => {
                    let (keys, rows) = ledger.postings().len();
                    tracing::info!(
                        keys,
                        rows,
                        ms = started.elapsed().as_millis() as u64,
                        "identifier index loaded"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "loading the identifier index failed; verdicts read the table")
                }
            }
            if !shared {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = ledger.refresh().await {
                    tracing::debug!(error = %e, "reading the shared head failed");
                }
                if let Err(e) = packs.load_index().await {
                    tracing::debug!(error = %e, "catching up the identifier index failed");
                }
            }
        })
    };

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
    let schema = rxledger_graphql::schema_with(services, cfg.custody_policy);
    let listener = std::net::TcpListener::bind(cfg.http_listen).with_context(|| {
        format!(
            "cannot listen for HTTP on {}; choose another with --http-listen ADDR",
            cfg.http_listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let http_addr = listener.local_addr()?;
    let web = rxledger_web::Web {
        schema: schema.clone(),
        keys: api_keys.clone(),
        packs: packs.clone(),
        registry: registry.clone(),
        base_url: cfg
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}"))
            .trim_end_matches('/')
            .to_string(),
    };
    let limit = || poem::middleware::SizeLimit::new(MAX_API_BODY);
    let api = Route::new()
        .at("/graphql", get(graphiql).post(graphql).with(limit()))
        .at(
            "/graphql/ws",
            get(GraphQLSubscription::new(schema.clone())).with(limit()),
        )
        .at("/healthz", get(healthz));
    let routes = rxledger_web::friendly_errors(
        rxledger_web::mount(api, &web)
            .data(schema)
            .data(api_keys.clone())
            .data(Arc::new(crate::ratelimit::Limiter::new(cfg.rate_limit))),
    );
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
        follower,
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

/// POST /graphql: resolves the Bearer token to a caller, takes a token from the caller's rate
/// limit bucket, then runs the query.
#[handler]
async fn graphql(
    schema: Data<&RxSchema>,
    keys: Data<&ApiKeys>,
    limiter: Data<&Arc<crate::ratelimit::Limiter>>,
    remote: &poem::web::RemoteAddr,
    headers: &HeaderMap,
    req: GraphQLRequest,
) -> poem::Response {
    use poem::IntoResponse as _;
    let mut req = req.0;
    let auth = headers.get("authorization").map(|v| v.as_bytes());
    let bucket = match rxledger_graphql::authenticate_header(&keys, auth).await {
        Ok(rxledger_graphql::Caller::Anonymous) => remote
            .as_socket_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default(),
        Ok(caller) => {
            let bucket = match &caller {
                rxledger_graphql::Caller::Key { key_id, .. } => format!("key:{key_id}"),
                rxledger_graphql::Caller::Anonymous => String::new(),
            };
            req = req.data(caller);
            bucket
        }
        Err(refused) => return error_response(refused.code, refused.message).into_response(),
    };
    if let Err(wait) = limiter.check(&bucket) {
        let mut resp = error_response(
            "RATE_LIMITED",
            "too many requests for this API key; slow down and retry after the Retry-After delay",
        )
        .into_response();
        resp.set_status(poem::http::StatusCode::TOO_MANY_REQUESTS);
        resp.headers_mut().insert(
            "retry-after",
            poem::http::HeaderValue::from(wait.ceil().max(1.0) as u64),
        );
        return resp;
    }
    GraphQLResponse::from(schema.execute(req).await).into_response()
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
        self.follower.abort();
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
