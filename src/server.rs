//! `rxledger serve`: one process with the ledger, the MQTT ingest and the HTTP API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_graphql_poem::{GraphQLProtocol, GraphQLRequest, GraphQLResponse};
use poem::listener::{AcceptorExt as _, TcpAcceptor};
use poem::web::websocket::{Message, WebSocket, WebSocketConfig};
use poem::web::{Data, Html};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Route, get, handler};
use rxledger_core::mqttauth::{self, NODE_USERNAME};
use rxledger_graphql::RxSchema;
use rxledger_graphql::cost::{LimitCode, Limits, Payer};
use rxledger_graphql::ratelimit::{Limiter, RouteCost};
use rxledger_ingest::{Gatekeeper, Ingest, IngestConfig, MqttTarget, broker};
use rxledger_store::packs::Packs;
use rxledger_store::{Alerts, ApiKeys, IndexCheck, Ledger, LogKeys, Registry};
use rxledger_witness::{CheckpointFile, WitnessClient, Witnessing};
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
    /// Rate-limit tokens per API key (anonymous callers: per IP).
    pub rate_limit: crate::ratelimit::RateLimit,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// MQTT over TLS: the embedded broker's TLS listener (with `tls`'s pair), client
    /// certificates, the node's trust for an external `mqtts://` broker.
    pub mqtt_tls: crate::tls::MqttTls,
    /// What one GraphQL request may cost and answer.
    pub limits: Limits,
    /// A dispense by a pharmacy that does not hold the pack: recorded with an alert, or refused.
    pub custody_policy: rxledger_core::verdict::CustodyPolicy,
    /// The witnesses each checkpoint is submitted to.
    pub witnesses: Vec<WitnessClient>,
    /// Cosignatures a checkpoint needs to be published as cosigned.
    pub witness_quorum: usize,
    /// Keep the authenticated pack index and commit its root with every batch (issue 24),
    /// so that verdicts carry completeness proofs. On by default; `rxledger serve
    /// --completeness-map=false` turns it off.
    pub map: bool,
    /// Alert cases: their timers, the clock they read and how often the node looks.
    pub cases: CaseConfig,
}

/// How a node runs alert cases (`rxledger serve --alert-cases --case-*`).
#[derive(Clone, Debug)]
pub struct CaseConfig {
    /// Open a case for every alert about a pack and run the timers. On by default;
    /// `--alert-cases=false` turns it off (the node then opens no case and runs no timer).
    pub enabled: bool,
    /// When an unanswered case is reminded and escalated (48 h, 5 days, 14 days).
    pub timers: rxledger_core::case::Timers,
    /// Where "now" comes from; tests set it by hand.
    pub clock: rxledger_store::Clock,
    /// How often the timer task looks for due timers (it also runs on every new alert).
    pub sweep_every: Duration,
}

impl Default for CaseConfig {
    fn default() -> Self {
        CaseConfig {
            enabled: true,
            timers: Default::default(),
            clock: rxledger_store::Clock::system(),
            sweep_every: Duration::from_secs(60),
        }
    }
}

impl ServeConfig {
    /// One node on this machine: SQLite `rxledger.db` and `log.key` in `dir`, the embedded
    /// broker and HTTP on free loopback ports, every other setting at its default. Tests and
    /// benchmarks start from this and change what they need.
    pub fn local(dir: &std::path::Path) -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        ServeConfig {
            database: dir.join("rxledger.db").display().to_string(),
            key_path: dir.join("log.key"),
            origin: None,
            mqtt: MqttTarget::Embedded { listen: any_port },
            http_listen: any_port,
            node_id: "rxledger-node-1".into(),
            ingest: IngestConfig::default(),
            public_url: None,
            rate_limit: crate::ratelimit::RateLimit::default(),
            tls: None,
            mqtt_tls: Default::default(),
            limits: Limits::default(),
            custody_policy: Default::default(),
            witnesses: Vec::new(),
            witness_quorum: 0,
            map: true,
            cases: CaseConfig::default(),
        }
    }
}

/// Raises the limit on open files, as servers do: to `want` (hard limit included, which needs
/// privilege) when that is more than the hard limit allows, or else the soft limit to the hard
/// one. Returns the soft limit in force. On the embedded broker each device connection holds
/// three descriptors (the gate's two sockets and rumqttd's), so 10,000 devices need some
/// 30,000, and the usual soft limit is 1,024; DEPLOY.md says how to raise the hard one.
// `rlim_t` is `u64` on Linux but not on every Unix.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files(want: u64) -> u64 {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 0;
            }
            let wanted = want as libc::rlim_t;
            // Above the hard limit first (privileged), then up to it.
            let tries = [
                (wanted > lim.rlim_max).then_some(wanted),
                Some(lim.rlim_max),
            ];
            for to in tries.into_iter().flatten() {
                let raised = libc::rlimit {
                    rlim_cur: to,
                    rlim_max: to,
                };
                if to > lim.rlim_cur && libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                    break;
                }
            }
        }
        lim.rlim_cur as u64
    }
    #[cfg(not(unix))]
    {
        let _ = want;
        u64::MAX
    }
}

/// Largest GraphQL request body, and largest WebSocket message.
pub const MAX_API_BODY: usize = 256 * 1024;

/// A running server.
pub struct App {
    pub http_addr: SocketAddr,
    /// `https` when the server was given a certificate, `http` otherwise.
    pub http_scheme: &'static str,
    /// The broker the ingest is connected to (host, port).
    pub mqtt_addr: (String, u16),
    /// The embedded broker's TLS listener, when one was asked for.
    pub mqtts_addr: Option<SocketAddr>,
    pub ledger: Arc<Ledger>,
    pub registry: Registry,
    pub alerts: Alerts,
    pub api_keys: ApiKeys,
    pub packs: Arc<Packs>,
    /// Whether the log key was created by this start.
    pub created_key: bool,
    /// The witnesses and the quorum; what they answered is on `ledger.witnesses()`.
    pub witnessing: Arc<Witnessing>,
    /// The first admin token, when this start created it (printed once, never stored).
    pub first_admin_token: Option<String>,
    /// How long verifications take, by channel (`/metrics`).
    pub verify_latency: Arc<rxledger_graphql::latency::VerifyLatency>,
    /// Alert cases, shared by GraphQL and the timer task.
    pub cases: rxledger_store::Cases,
    ingest: Ingest,
    follower: JoinHandle<()>,
    /// The checkpoint file's writer, the witnessing task, the background index check and,
    /// unless `--alert-cases=false`, the alert cases' timer task.
    guards: Vec<JoinHandle<()>>,
    checkpoint_file: CheckpointFile,
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
///
/// Every listener is bound, and the TLS pair read, before anything is created: a start that
/// fails on a taken port or a bad certificate leaves no data directory, database or key
/// behind. The log key is written only once the database has opened, so a database that
/// cannot be reached leaves no stray `log.key` either.
pub async fn start(cfg: ServeConfig) -> anyhow::Result<App> {
    let open_files = raise_open_files(0);
    tracing::debug!(
        open_files,
        "open files allowed: about {} device connections on the embedded broker",
        open_files / 3
    );
    let listeners = Listeners::bind(&cfg)?;
    create_sqlite_dir(&cfg.database)?;
    let db = rxledger_store::connect(&cfg.database).await?;
    let (key, created_key) = keyfile::load_or_create(&cfg.key_path)?;
    let (ed25519, _) = keyfile::load_or_create_key(&keyfile::ed25519_path(&cfg.key_path))?;
    let origin = cfg
        .origin
        .clone()
        .unwrap_or_else(|| default_origin(&key.public_sec1_compressed()));
    let keys = LogKeys {
        ecdsa: key,
        ed25519: Some(ed25519),
    };
    let options = rxledger_store::LedgerOptions { map: cfg.map };
    let ledger = Arc::new(Ledger::open_with(db.clone(), keys, &origin, options).await?);
    let index_check = check_index(&ledger).await?;
    let witnessing = Witnessing::new(cfg.witnesses.clone(), cfg.witness_quorum, ledger.clone());
    let file = CheckpointFile::beside(&cfg.key_path);
    rxledger_witness::check_start(&ledger, &file, &witnessing).await?;
    let registry = Registry::new(db.clone());
    let alerts = Alerts::new(db.clone());
    let cases =
        rxledger_store::Cases::new(ledger.clone(), cfg.cases.timers, cfg.cases.clock.clone());
    let mut guards = vec![
        file.clone().follow(ledger.clone()),
        witnessing.clone().spawn(alerts.clone()),
    ];
    guards.extend(index_check);
    if cfg.cases.enabled {
        guards.push(case_timers(cases.clone(), &alerts, cfg.cases.sweep_every));
    }
    let api_keys = ApiKeys::new(db.clone());
    let packs = Arc::new(Packs::indexed(db.clone(), ledger.postings()));
    let first_admin_token = first_admin(&registry, &api_keys).await?;
    let follower = follow(ledger.clone(), packs.clone());
    let (opts, mqtt_addr, mqtts_addr) =
        mqtt_options(&cfg, listeners.mqtt, &registry, &ledger).await?;
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
        products: rxledger_store::Products::new(db.clone()),
        verify_latency: Default::default(),
    };
    let verify_latency = services.verify_latency.clone();
    let http = serve_http(&cfg, listeners.http, services, cases.clone())?;
    Ok(App {
        http_addr: http.addr,
        http_scheme: http.scheme,
        mqtt_addr,
        mqtts_addr,
        ledger,
        registry,
        alerts,
        api_keys,
        packs,
        created_key,
        witnessing,
        first_admin_token,
        verify_latency,
        cases,
        ingest,
        follower,
        guards,
        checkpoint_file: file,
        http: http.task,
        http_stop: http.stop,
    })
}

/// The alert cases' timer task: a sweep (open cases for new alerts, make due reminders and
/// escalations) on every new alert and every `every`, reading the configured clock.
fn case_timers(cases: rxledger_store::Cases, alerts: &Alerts, every: Duration) -> JoinHandle<()> {
    let mut new_alerts = alerts.subscribe();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = new_alerts.recv() => {
                    if matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        return;
                    }
                }
            }
            // One sweep covers every alert recorded so far: a burst of alerts costs one.
            use tokio::sync::broadcast::error::TryRecvError;
            while matches!(new_alerts.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
            match cases.sweep().await {
                Ok(s) if !s.opened.is_empty() || !s.timers.is_empty() => {
                    tracing::info!(
                        opened = s.opened.len(),
                        timers = s.timers.len(),
                        "alert cases"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "alert cases: the sweep failed; it runs again")
                }
            }
        }
    })
}

/// Refuses to start on an index that is not what the log gives: verdicts read the `epcs` and
/// `commissions` tables (and the in-memory copy loaded from them), so they are rebuilt from the
/// entries and compared (`store::indexaudit`, one page of entries in memory at a time).
///
/// When the map built at open from the `epcs` rows is the one the log's last map-root entry
/// commits to, the rows verdicts read are vouched for already, and the check of the rows runs
/// in the background (the task returned): the node answers at once, no entry is appended until
/// the check passes (`Ledger::index_check`), and a failed check refuses every append and is
/// reported (`rxledger serve` exits on it). It does not build a second map: rows that match
/// the entries give the map that matched. Otherwise (no map, no map-root entry yet, or a map
/// that disagrees) the check, map roots included, runs before the node starts, and a mismatch
/// refuses the start.
async fn check_index(ledger: &Arc<Ledger>) -> anyhow::Result<Option<JoinHandle<()>>> {
    if ledger.map_vouches_for_index().await == Some(true) {
        ledger.checking_index();
        let ledger = ledger.clone();
        return Ok(Some(tokio::spawn(async move {
            let outcome = match index_problems(&ledger, Recompute::Rows).await {
                Ok(None) => IndexCheck::Passed,
                Ok(Some(problems)) => {
                    tracing::error!(
                        "the index does not match the log; nothing is appended: {problems}"
                    );
                    IndexCheck::Failed(problems)
                }
                Err(e) => {
                    tracing::error!(error = %e, "the index check could not run; nothing is appended");
                    IndexCheck::Failed(format!("the check could not run: {e:#}"))
                }
            };
            ledger.index_checked(outcome);
        })));
    }
    if let Some(problems) = index_problems(ledger, Recompute::RowsAndMap).await? {
        anyhow::bail!("the index does not match the log {problems}");
    }
    Ok(None)
}

/// What the start-up check rebuilds from the entries.
enum Recompute {
    /// The index rows only: the map built from them is the log's (so the older map roots are
    /// left to `rxledger audit`, and no second map is held).
    Rows,
    /// The rows, and the map they give against every map-root entry.
    RowsAndMap,
}

/// The derived tables checked against the first `size` entries: `None` when they match, or
/// the problems (the first [`SHOWN`]) with their count.
async fn index_problems(ledger: &Ledger, what: Recompute) -> anyhow::Result<Option<String>> {
    const SHOWN: usize = 20;
    let started = std::time::Instant::now();
    let size = ledger.head().size;
    let db = ledger.database();
    let report = match what {
        Recompute::Rows => rxledger_store::indexaudit::check_index_rows(db, size).await?,
        Recompute::RowsAndMap => rxledger_store::indexaudit::check_index(db, size).await?,
    };
    if !report.ok() {
        let shown: Vec<&str> = report
            .problems
            .iter()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        return Ok(Some(format!(
            "({} problem(s); `rxledger audit` lists them all):\n{}",
            report.problems.len(),
            shown.join("\n")
        )));
    }
    tracing::info!(
        entries = size,
        rows = report.index_rows_checked,
        ms = started.elapsed().as_millis() as u64,
        "index checked against the log"
    );
    Ok(None)
}

/// Loads the identifier index in the background; verdicts read it from memory once it is
/// loaded (the table until then). On PostgreSQL other nodes may sequence too, so the task then
/// follows the shared head, keeping queries, checkpoint subscriptions and the index here within
/// a second of their entries. A SQLite file has one node, whose own appends move the head.
fn follow(ledger: Arc<Ledger>, packs: Arc<Packs>) -> JoinHandle<()> {
    let shared = ledger.database().is_postgres();
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
}

/// The public listeners of a node, bound before anything is created.
struct Listeners {
    /// HTTP, and the TLS configuration read and checked from its files.
    http: (std::net::TcpListener, Option<crate::tls::Configs>),
    /// The embedded broker's gate, plain and TLS (with its configuration read and checked);
    /// `None` with an external broker.
    mqtt: Option<GateListeners>,
}

impl Listeners {
    fn bind(cfg: &ServeConfig) -> anyhow::Result<Self> {
        let mqtt = match &cfg.mqtt {
            MqttTarget::Embedded { listen } => Some(gate_listeners(cfg, *listen)?),
            MqttTarget::External(_) => None,
        };
        let http = std::net::TcpListener::bind(cfg.http_listen).with_context(|| {
            format!(
                "cannot listen for HTTP on {}; choose another with --http-listen ADDR",
                cfg.http_listen
            )
        })?;
        http.set_nonblocking(true)?;
        let tls = cfg.tls.clone().map(crate::tls::configs).transpose()?;
        Ok(Self {
            http: (http, tls),
            mqtt,
        })
    }
}

/// The gate's plain listener, and its TLS listener with the configuration it serves.
type GateListeners = (
    std::net::TcpListener,
    Option<(std::net::TcpListener, rxledger_ingest::TlsListener)>,
);

fn gate_listeners(cfg: &ServeConfig, listen: SocketAddr) -> anyhow::Result<GateListeners> {
    let plain = broker::bind(listen).with_context(|| {
        "choose another MQTT address with --mqtt-listen ADDR, or use a broker that runs \
         already with --mqtt-url mqtt://HOST:PORT"
    })?;
    let files = cfg.mqtt_tls.files.as_ref().or(cfg.tls.as_ref());
    let tls = match (cfg.mqtt_tls.listen, files) {
        (None, _) => None,
        (Some(at), Some(files)) => Some((
            broker::bind(at).context("choose another MQTT TLS address with --mqtts-listen ADDR")?,
            crate::tls::mqtt_listener(files.clone(), cfg.mqtt_tls.client_ca.as_deref())?,
        )),
        (Some(_), None) => anyhow::bail!(
            "MQTT over TLS (--mqtts-listen) needs a certificate: --mqtts-cert and --mqtts-key, \
             or --tls-cert and --tls-key"
        ),
    };
    Ok((plain, tls))
}

/// Creates the directory of a SQLite database file (a bare path, the default), which SQLite
/// itself does not. PostgreSQL and `sqlite:` URLs are left as given.
fn create_sqlite_dir(database: &str) -> anyhow::Result<()> {
    if rxledger_store::normalize_url(database) == database {
        return Ok(());
    }
    match std::path::Path::new(database).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display())),
        _ => Ok(()),
    }
}

/// The node's MQTT connection options and the broker addresses devices use (plain, TLS): the
/// embedded broker (started here; the node connects to rumqttd's own loopback port, devices
/// to the gate) or an external one.
async fn mqtt_options(
    cfg: &ServeConfig,
    gate: Option<GateListeners>,
    registry: &Registry,
    ledger: &Arc<Ledger>,
) -> anyhow::Result<(rumqttc::MqttOptions, (String, u16), Option<SocketAddr>)> {
    let url = match (&cfg.mqtt, gate) {
        (MqttTarget::Embedded { .. }, Some((plain, tls))) => {
            let keeper = Gatekeeper {
                registry: registry.clone(),
                ledger: ledger.clone(),
                topic_root: cfg.ingest.topic_root.clone(),
            };
            let b = broker::start(plain, keeper, tls, cfg.ingest.device_window).await?;
            let mut o = rumqttc_options(
                &cfg.node_id,
                &b.internal.ip().to_string(),
                b.internal.port(),
            );
            o.set_credentials(NODE_USERNAME, mqttauth::node_password(ledger.key()));
            return Ok((o, (b.addr.ip().to_string(), b.addr.port()), b.tls_addr));
        }
        (MqttTarget::External(url), _) => url,
        (MqttTarget::Embedded { .. }, None) => unreachable!("Listeners::bind binds the gate"),
    };
    let trust = rxledger_keyfile::tls::ClientTls {
        ca: cfg.mqtt_tls.ca.as_deref(),
        identity: None,
    };
    let tls = url
        .tls
        .then(|| trust.config())
        .transpose()
        .context("the authorities for mqtts:// (--mqtt-ca)")?;
    let o = url.options(&cfg.node_id, ledger.key(), tls)?;
    Ok((o, (url.host.clone(), url.port), None))
}

/// The HTTP side once it listens.
struct Http {
    addr: SocketAddr,
    scheme: &'static str,
    task: JoinHandle<std::io::Result<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Binds the HTTP listener (checking the TLS pair first) and serves the API, the GraphQL
/// WebSocket and the web routes on it until stopped.
fn serve_http(
    cfg: &ServeConfig,
    (listener, tls): (std::net::TcpListener, Option<crate::tls::Configs>),
    services: rxledger_graphql::Services,
    cases: rxledger_store::Cases,
) -> anyhow::Result<Http> {
    let schema = rxledger_graphql::schema_with_cases(
        services.clone(),
        cfg.limits,
        cfg.custody_policy,
        cases,
    );
    let limiter = Arc::new(Limiter::new(cfg.rate_limit));
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let web = rxledger_web::Web {
        services,
        base_url: cfg
            .public_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{addr}"))
            .trim_end_matches('/')
            .to_string(),
        limiter: limiter.clone(),
    };
    let api = Route::new()
        .at(
            "/graphql",
            get(graphiql)
                .post(graphql)
                .around(|ep, req| cap_body(ep, req, MAX_API_BODY)),
        )
        .at("/graphql/ws", get(graphql_ws))
        .at("/healthz", get(healthz));
    let routes = rxledger_web::friendly_errors(
        rxledger_web::mount(api, &web)
            .data(web.clone())
            .data(schema)
            .data(limiter)
            .data(Arc::new(WsSockets::default())),
    );
    let acceptor = match tls {
        Some(configs) => TcpAcceptor::from_std(listener)?.rustls(configs).boxed(),
        None => TcpAcceptor::from_std(listener)?.boxed(),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
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
    Ok(Http {
        addr,
        scheme,
        task,
        stop,
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

/// Refuses a body over `max` bytes with 413 before the handler reads it. Unlike poem's
/// `SizeLimit` it does not demand a Content-Length: GET requests and WebSocket upgrades have
/// none (a browser's got 411), and a chunked body is read up to `max` and refused past it.
async fn cap_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
    max: usize,
) -> poem::Result<poem::Response> {
    let too_large = || poem::Error::from_status(poem::http::StatusCode::PAYLOAD_TOO_LARGE);
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max as u64 => return Err(too_large()),
        Some(_) => {}
        None if req.method() == poem::http::Method::GET
            || req.method() == poem::http::Method::HEAD => {}
        None => {
            let body = req
                .take_body()
                .into_bytes_limit(max)
                .await
                .map_err(|_| too_large())?;
            req.set_body(body);
        }
    }
    Ok(ep.call(req).await?.into_response())
}

/// The rate-limit bucket of a caller: its API key, or its address when anonymous.
fn bucket(caller: &rxledger_graphql::Caller, req: &Request) -> String {
    match caller {
        rxledger_graphql::Caller::Key { key_id, .. } => format!("key:{key_id}"),
        rxledger_graphql::Caller::Anonymous => rxledger_web::client_ip(req),
    }
}

/// POST /graphql: resolves the Bearer token or the session cookie to a caller, then runs the
/// query, which the cost guard prices and charges to the caller's bucket before it runs (429
/// when it is empty).
#[handler]
async fn graphql(
    schema: Data<&RxSchema>,
    web: Data<&rxledger_web::Web>,
    limiter: Data<&Arc<Limiter>>,
    http: &Request,
    req: GraphQLRequest,
) -> poem::Response {
    let mut req = req.0;
    let caller =
        match rxledger_web::session::caller(&web.services.api_keys, http, &web.base_url).await {
            Ok(caller) => caller,
            Err(refused) => return refused_response(&refused),
        };
    req = req.data(Payer {
        bucket: bucket(&caller, http),
        limiter: limiter.clone(),
    });
    if caller != rxledger_graphql::Caller::Anonymous {
        req = req.data(caller);
    }
    let resp = schema.execute(req).await;
    let retry_after = resp.errors.iter().find_map(|e| {
        let ext = e.extensions.as_ref()?;
        let code = ext.get("code")?.clone().into_json().ok()?;
        if code.as_str()? != LimitCode::RateLimited.as_str() {
            return None;
        }
        ext.get("retryAfter")?.clone().into_json().ok()?.as_u64()
    });
    let mut out = GraphQLResponse::from(resp).into_response();
    if let Some(after) = retry_after {
        out.set_status(poem::http::StatusCode::TOO_MANY_REQUESTS);
        out.headers_mut()
            .insert("retry-after", poem::http::HeaderValue::from(after));
    }
    out
}

/// GET /graphql/ws: GraphQL over WebSocket (graphql-transport-ws, and the older graphql-ws).
/// Messages are capped like HTTP bodies; the API key comes in the `connection_init` payload
/// ([`ws_caller`]); each operation is priced and charged like an HTTP request.
#[handler]
async fn graphql_ws(
    schema: Data<&RxSchema>,
    limiter: Data<&Arc<Limiter>>,
    sockets: Data<&Arc<WsSockets>>,
    web: Data<&rxledger_web::Web>,
    req: &Request,
    ws: WebSocket,
    protocol: GraphQLProtocol,
) -> poem::Response {
    let ip = rxledger_web::client_ip(req);
    if let Err(wait) = limiter.take(&ip, RouteCost::WsConnect.tokens()) {
        return rxledger_web::Problem::rate_limited(wait).respond(true);
    }
    // A browser's session (checked to come from this site's page) stands in for a key the
    // connection_init payload does not carry.
    let keys = &web.services.api_keys;
    let session = match rxledger_web::session::caller(keys, req, &web.base_url).await {
        Ok(rxledger_graphql::Caller::Anonymous) => None,
        Ok(caller) => Some(caller),
        Err(refused) => return refused_response(&refused),
    };
    let Some(held) = WsSockets::open(&sockets, &ip) else {
        return rxledger_web::Problem::new(
            poem::http::StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_CONNECTIONS",
            format!("at most {MAX_WS_PER_ADDRESS} GraphQL WebSockets per address at once"),
        )
        .respond(true);
    };
    let (schema, keys, limiter) = (schema.0.clone(), keys.clone(), limiter.0.clone());
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_API_BODY))
        .max_frame_size(Some(MAX_API_BODY));
    ws.protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .config(config)
        .on_upgrade(move |socket| async move {
            serve_ws(socket, schema, protocol, keys, limiter, ip, session).await;
            drop(held);
        })
        .into_response()
}

/// GraphQL WebSockets one client address may hold open at once.
pub const MAX_WS_PER_ADDRESS: usize = 32;

/// Open GraphQL WebSockets per client address.
#[derive(Default)]
struct WsSockets(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One open WebSocket, counted until dropped.
struct WsHeld(Arc<WsSockets>, String);

impl WsSockets {
    fn open(this: &Arc<WsSockets>, ip: &str) -> Option<WsHeld> {
        let mut open = this.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip.to_string()).or_insert(0);
        if *n >= MAX_WS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(WsHeld(this.clone(), ip.to_string()))
    }
}

impl Drop for WsHeld {
    fn drop(&mut self) {
        let mut open = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.1);
            }
        }
    }
}

async fn serve_ws(
    socket: poem::web::websocket::WebSocketStream,
    schema: RxSchema,
    protocol: GraphQLProtocol,
    keys: ApiKeys,
    limiter: Arc<Limiter>,
    ip: String,
    session: Option<rxledger_graphql::Caller>,
) {
    use async_graphql::futures_util::{SinkExt as _, StreamExt as _, future};
    use std::sync::atomic::Ordering;
    let (mut sink, stream) = socket.split();
    let guard = Arc::new(WsGuard::default());
    let input = {
        let guard = guard.clone();
        stream
            .take_while(move |m| future::ready(guard.admit(m)))
            .filter_map(|m| future::ready(m.ok().filter(|m| m.is_text() || m.is_binary())))
            .map(Message::into_bytes)
    };
    let init = {
        let guard = guard.clone();
        move |payload: serde_json::Value| async move {
            let r = ws_caller(&keys, &limiter, ip, &payload, session).await;
            if r.is_err() {
                guard.refused.store(true, Ordering::Relaxed);
            }
            r
        }
    };
    let out = async_graphql::http::WebSocket::new(schema, input, protocol.0)
        .on_connection_init(init)
        .keepalive_timeout(None);
    let mut out = std::pin::pin!(out);
    while let Some(msg) = out.next().await {
        let msg = match msg {
            async_graphql::http::WsMessage::Text(t) => {
                guard.sent(&t);
                Message::text(t)
            }
            // graphql-transport-ws: 4403 Forbidden for a refused connection_init.
            async_graphql::http::WsMessage::Close(_, reason)
                if guard.refused.load(Ordering::Relaxed) =>
            {
                Message::close_with(4403u16, reason)
            }
            async_graphql::http::WsMessage::Close(code, reason) => {
                Message::close_with(code, reason)
            }
        };
        if sink.send(msg).await.is_err() {
            return;
        }
    }
    if let Some((code, reason)) = guard.close_reason() {
        let _ = sink.send(Message::close_with(code, reason)).await;
    }
}

/// Operations one GraphQL WebSocket may have open at once (live subscriptions included).
pub const MAX_WS_OPERATIONS: usize = 100;

/// What one GraphQL WebSocket has open, and why it is being closed.
#[derive(Default)]
struct WsGuard {
    too_large: std::sync::atomic::AtomicBool,
    too_many: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicBool,
    open: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl WsGuard {
    /// Whether to take this incoming message; `false` ends the connection's input.
    fn admit(&self, m: &Result<Message, std::io::Error>) -> bool {
        use std::sync::atomic::Ordering;
        let bytes: &[u8] = match m {
            // tungstenite refuses a message or frame over the cap with an error.
            Err(_) => {
                self.too_large.store(true, Ordering::Relaxed);
                return false;
            }
            Ok(Message::Text(t)) => t.as_bytes(),
            Ok(Message::Binary(b)) => b,
            Ok(_) => return true,
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return true; // the protocol answers malformed messages itself
        };
        let id = v["id"].as_str().unwrap_or_default().to_string();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match v["type"].as_str() {
            Some("subscribe" | "start") if open.len() >= MAX_WS_OPERATIONS => {
                self.too_many.store(true, Ordering::Relaxed);
                return false;
            }
            Some("subscribe" | "start") => {
                open.insert(id);
            }
            Some("complete" | "stop") => {
                open.remove(&id);
            }
            _ => {}
        }
        true
    }

    /// Notes an operation the server completed.
    fn sent(&self, text: &str) {
        if text.len() < 256
            && text.starts_with(r#"{"type":"complete""#)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(text)
            && let Some(id) = v["id"].as_str()
        {
            self.open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }

    fn close_reason(&self) -> Option<(u16, String)> {
        use std::sync::atomic::Ordering;
        if self.too_large.load(Ordering::Relaxed) {
            let kib = MAX_API_BODY >> 10;
            return Some((
                1009,
                format!("TOO_LARGE: a message may be at most {kib} KiB"),
            ));
        }
        if self.too_many.load(Ordering::Relaxed) {
            return Some((
                4400,
                format!("TOO_MANY_OPERATIONS: at most {MAX_WS_OPERATIONS} open on one connection"),
            ));
        }
        None
    }
}

/// The API key from a `connection_init` payload, in any of the spellings clients use:
/// `{"Authorization": "Bearer …"}` (any case of the name), the same inside `"headers"`, or a
/// bare token as `"apiKey"`, `"api_key"` or `"token"`. No key: the browser session the
/// upgrade request carried, if any, else anonymous. A refused key closes the connection with
/// 4403 and the reason (`UNAUTHENTICATED: …`).
async fn ws_caller(
    keys: &ApiKeys,
    limiter: &Arc<Limiter>,
    ip: String,
    payload: &serde_json::Value,
    session: Option<rxledger_graphql::Caller>,
) -> async_graphql::Result<async_graphql::Data> {
    let authorization = ws_authorization(payload);
    let caller = match (authorization, session) {
        (None, Some(session)) => session,
        (authorization, _) => rxledger_graphql::authenticate(keys, authorization.as_deref())
            .await
            .map_err(|r| async_graphql::Error::new(format!("{}: {}", r.code, r.message)))?,
    };
    let bucket = match &caller {
        rxledger_graphql::Caller::Key { key_id, .. } => format!("key:{key_id}"),
        rxledger_graphql::Caller::Anonymous => ip,
    };
    let mut data = async_graphql::Data::default();
    data.insert(Payer {
        bucket,
        limiter: limiter.clone(),
    });
    if caller != rxledger_graphql::Caller::Anonymous {
        data.insert(caller);
    }
    Ok(data)
}

/// The `Authorization` value a `connection_init` payload carries, as an HTTP header would.
fn ws_authorization(payload: &serde_json::Value) -> Option<String> {
    let find = |obj: &serde_json::Value| -> Option<String> {
        let obj = obj.as_object()?;
        for (k, v) in obj {
            let Some(v) = v.as_str() else { continue };
            if k.eq_ignore_ascii_case("authorization") {
                return Some(v.to_string());
            }
            if ["apikey", "api_key", "token"]
                .iter()
                .any(|n| k.eq_ignore_ascii_case(n))
            {
                return Some(format!("Bearer {v}"));
            }
        }
        None
    };
    find(payload).or_else(|| find(payload.get("headers")?))
}

/// A refused key or session as a GraphQL error: 403 for a cross-site request, and the cookie
/// cleared when the session has ended.
fn refused_response(refused: &rxledger_graphql::TokenRefused) -> poem::Response {
    let mut resp = error_response(refused.code, refused.message).into_response();
    if refused.code == "CSRF_REFUSED" {
        resp.set_status(poem::http::StatusCode::FORBIDDEN);
    }
    if rxledger_web::session::ENDED_CODES.contains(&refused.code)
        && let Ok(v) =
            poem::http::HeaderValue::from_str(&rxledger_web::session::clear_cookie(false))
    {
        resp.headers_mut().insert("set-cookie", v);
    }
    resp
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
        for g in &self.guards {
            g.abort();
        }
        // The writer follows the head a moment behind; after the last batch, catch it up.
        if let Err(e) = self.checkpoint_file.write(&self.ledger.head().note) {
            tracing::error!(error = %e, "cannot record the newest checkpoint");
        }
        let _ = self.http_stop.send(());
        let _ = self.http.await;
    }

    pub fn ingest_stats(&self) -> &rxledger_ingest::pipeline::Stats {
        &self.ingest.stats
    }

    /// The ingest counters, shared (for `/metrics`).
    pub fn ingest_counters(&self) -> Arc<rxledger_ingest::pipeline::Stats> {
        self.ingest.stats.clone()
    }
}

#[handler]
fn graphiql() -> Html<&'static str> {
    Html(rxledger_web::GRAPHIQL_PAGE)
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

#[cfg(test)]
mod tests {
    use super::ws_authorization;
    use serde_json::json;

    #[test]
    fn connection_init_payloads_in_every_common_spelling() {
        let want = Some("Bearer rxk_1".to_string());
        for p in [
            json!({"Authorization": "Bearer rxk_1"}),
            json!({"authorization": "Bearer rxk_1"}),
            json!({"AUTHORIZATION": "Bearer rxk_1"}),
            json!({"headers": {"Authorization": "Bearer rxk_1"}}),
            json!({"headers": {"x": 1}, "apiKey": "rxk_1"}),
            json!({"api_key": "rxk_1"}),
            json!({"token": "rxk_1"}),
        ] {
            assert_eq!(ws_authorization(&p), want, "{p}");
        }
        // The scheme is passed on as sent, for `authenticate` to judge.
        assert_eq!(
            ws_authorization(&json!({"Authorization": "Basic abc"})).as_deref(),
            Some("Basic abc")
        );
        for p in [
            json!({}),
            json!(null),
            json!({"headers": {}}),
            json!({"apiKey": 5}),
        ] {
            assert_eq!(ws_authorization(&p), None, "{p}");
        }
    }
}
