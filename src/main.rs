//! `rxledger`: the command line. Every flag can also come from an `RXLEDGER_*` variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use rxledger::keyfile;
use rxledger::server::{self, ServeConfig};
use rxledger_core::keys::{LogVerifier, PublicKey};
use rxledger_ingest::{IngestConfig, MqttTarget, MqttUrl};
use rxledger_store::{Registry, audit};

/// mimalloc instead of glibc malloc: allocation and freeing took about 16% of the CPU in an
/// ingest profile (many small, short-lived strings and JSON values per event); ingest_bench,
/// three alternating pairs: median 7,891 events/s against 7,166 with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rxledger",
    version,
    about = "A tamper-evident ledger of GS1 EPCIS events that stops counterfeit medicines"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "RXLEDGER_LOG_FORMAT", default_value = "text", global = true, value_parser = ["text", "json"])]
    log_format: String,
}

/// What is logged unless `RXLEDGER_LOG` says otherwise. The embedded broker (rumqttd) logs a
/// client's normal disconnect, and every connection at shutdown, at ERROR level; devices reach
/// it only through our gate, which logs refused and broken connections itself, so rumqttd's
/// own lines are shown only when asked for (`RXLEDGER_LOG=info,rumqttd=debug`).
const DEFAULT_LOG_FILTER: &str = "info,rumqttd=off,sqlx=warn,sea_orm_migration=warn";

/// `--database`: a SQLite path, a `sqlite:` URL or a PostgreSQL URL. Anything else with a
/// scheme (`mysql://…`) would otherwise be taken for a SQLite file name.
fn database_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty: give a SQLite file path or postgres://user@host/db".into());
    }
    let supported = ["postgres://", "postgresql://", "sqlite:"];
    if supported.iter().any(|p| s.starts_with(p)) {
        return Ok(s.to_string());
    }
    if let Some((scheme, _)) = s.split_once("://") {
        return Err(format!(
            "`{scheme}://` is not a supported database: use a SQLite file path, \
             sqlite://PATH or postgres://user@host/db"
        ));
    }
    Ok(s.to_string())
}

/// `--public-url`: the stem of every GS1 Digital Link printed into a QR code, so it must be an
/// absolute `https://` (or `http://`) URL with a host; `verify.example.org` alone would make
/// every code unreadable by a phone.
fn public_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "`{s}` has no scheme: write it as a phone should open it, e.g. https://{}",
                s.split("://").last().unwrap_or(s)
            )
        })?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(format!(
            "`{s}` has no host: e.g. https://verify.example.org"
        ));
    }
    if s.contains(['?', '#']) || s.chars().any(char::is_whitespace) {
        return Err(format!(
            "`{s}` must be a plain base URL, without a query, a fragment or spaces"
        ));
    }
    Ok(s.trim_end_matches('/').to_string())
}

#[derive(Args, Clone)]
struct Storage {
    /// Directory for the default database and key files.
    #[arg(
        long,
        env = "RXLEDGER_DATA_DIR",
        default_value = "rxledger-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Database: a SQLite file path or sqlite:// URL, or postgres://user@host/db. Default: DATA_DIR/rxledger.db.
    #[arg(long, env = "RXLEDGER_DATABASE_URL", global = true, value_parser = database_url)]
    database: Option<String>,
}

impl Storage {
    fn url(&self) -> anyhow::Result<String> {
        if self.database.is_none() {
            std::fs::create_dir_all(&self.data_dir).with_context(|| {
                format!("cannot create data directory {}", self.data_dir.display())
            })?;
        }
        Ok(self.database_url())
    }

    /// The database URL without creating anything: `serve` creates the directory itself,
    /// once its listeners are bound.
    fn database_url(&self) -> String {
        match &self.database {
            Some(u) => u.clone(),
            None => self.data_dir.join("rxledger.db").display().to_string(),
        }
    }

    fn key(&self, key: &Option<PathBuf>) -> PathBuf {
        key.clone().unwrap_or_else(|| self.data_dir.join("log.key"))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the ledger, the MQTT ingest and the HTTP API.
    Serve(Box<Serve>),
    /// Write a new secp256k1 key (mode 0600) and print its public key.
    Keygen {
        /// Where to write the key.
        #[arg(long, env = "RXLEDGER_KEY")]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Recompute the whole log from its raw entries and check every signature and hash.
    Audit {
        #[command(flatten)]
        storage: Storage,
        /// The log's key file (only its public half is used).
        #[arg(long, env = "RXLEDGER_KEY")]
        key: Option<PathBuf>,
        /// The log's verifier key `<origin>+<keyid>+<base64>`, instead of --key.
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        verifier_key: Option<String>,
        /// A checkpoint saved earlier: the log must be consistent with it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Copy the live SQLite database to FILE: a consistent snapshot, WAL included, taken while
    /// the server runs (a plain `cp` of the file is not). The log key is not in it: keep
    /// `log.key` safe separately. PostgreSQL: use pg_dump (docs/DEPLOY.md).
    Backup {
        #[command(flatten)]
        storage: Storage,
        /// The backup file to write; it must not exist.
        file: PathBuf,
    },
    /// Put a backup in place as this data directory's database, after it passes the full
    /// audit. The database must not exist: stop the server and move the old one aside first.
    Restore {
        #[command(flatten)]
        storage: Storage,
        /// The backup file written by `rxledger backup`.
        file: PathBuf,
        /// The log's key file (only its public half is used). Default: DATA_DIR/log.key.
        #[arg(long, env = "RXLEDGER_KEY")]
        key: Option<PathBuf>,
        /// The log's verifier key `<origin>+<keyid>+<base64>`, instead of --key.
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        verifier_key: Option<String>,
    },
    /// Print the latest signed checkpoint (save it to audit against later).
    Checkpoint {
        #[command(flatten)]
        storage: Storage,
    },
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCmd),
    /// Manage API keys: issue one for an organization, list them, revoke one.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Manage sites.
    #[command(subcommand)]
    Site(SiteCmd),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Product master data: what a GTIN is (trade name, strength, form, pack size), shown on
    /// verdicts, pages and labels.
    #[command(subcommand)]
    Product(ProductCmd),
    /// Write an external broker's password file and ACL from the device registry, so that
    /// devices log in with the credentials derived from enrolment and reach only their own
    /// topics (docs/DEPLOY.md).
    BrokerAcl {
        #[command(flatten)]
        storage: Storage,
        /// The log key file (default: DATA_DIR/log.key).
        #[arg(long, env = "RXLEDGER_KEY")]
        key: Option<PathBuf>,
        /// `mosquitto` (Mosquitto 2.0 `password_file` and `acl_file`), the only format yet.
        #[arg(long, default_value = "mosquitto")]
        format: String,
        /// The topic root the servers use (serve's --mqtt-topic-root).
        #[arg(long, env = "RXLEDGER_MQTT_TOPIC_ROOT", default_value = rxledger_core::envelope::DEFAULT_TOPIC_ROOT)]
        topic_root: String,
        /// Directory to write `passwd` and `acl` into (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a new ADMIN API key for the `admin` organization and print it (once).
    AdminKey {
        #[command(flatten)]
        storage: Storage,
        /// A label to recognise the key by.
        #[arg(long, default_value = "issued by rxledger admin-key")]
        label: String,
    },
    /// Print the GraphQL schema (SDL).
    ExportSchema,
}

#[derive(Args)]
struct Serve {
    #[command(flatten)]
    storage: Storage,
    /// The log's signing key; created on first start if missing.
    #[arg(long, env = "RXLEDGER_KEY")]
    key: Option<PathBuf>,
    /// Checkpoint origin line. Default: rxledger.local/<hash of the public key>.
    #[arg(long, env = "RXLEDGER_ORIGIN")]
    origin: Option<String>,
    /// HTTP address for GraphQL and the pages; port 0 picks a free port.
    #[arg(long, env = "RXLEDGER_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// Public base URL of this service: the domain of the GS1 Digital Links printed into QR
    /// codes (e.g. https://verify.example.org). Default: http://{--http-listen}.
    #[arg(long, env = "RXLEDGER_PUBLIC_URL", value_parser = public_url)]
    public_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first, e.g. fullchain.pem); needs
    /// --tls-key. The files are re-read when they change, so a renewal needs no restart.
    #[arg(long, env = "RXLEDGER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RXLEDGER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Rate-limit tokens per second per API key (anonymous: per client IP); bursts may reach
    /// twice this. A GraphQL request takes one token per 500 points of cost (a full `verify`
    /// takes one); the resolver 1, `/qr` 2, `/labels` 5, `/scan` 10.
    #[arg(long, env = "RXLEDGER_RATE_LIMIT", default_value_t = 100.0)]
    rate_limit: f64,
    /// Largest cost of one GraphQL operation, in points: a field costs 1, a list its page
    /// size times its items' cost, `verify` 20 (docs/SECURITY.md has the model).
    #[arg(long, env = "RXLEDGER_MAX_QUERY_COST", default_value_t = 25_000)]
    max_query_cost: u64,
    /// Largest GraphQL answer, in MiB.
    #[arg(long, env = "RXLEDGER_MAX_RESPONSE_MIB", default_value_t = 16)]
    max_response_mib: usize,
    /// What a dispense by a pharmacy that does not hold the pack does: `warn` records it and
    /// alerts the regulator and the brand owner (custody data arrives late); `refuse` refuses
    /// it with NOT_IN_YOUR_CUSTODY and raises the same alert.
    #[arg(long, env = "RXLEDGER_CUSTODY_POLICY", default_value = "warn", value_parser = custody_policy)]
    custody_policy: rxledger_core::verdict::CustodyPolicy,
    /// Serve Prometheus metrics at http://ADDR/metrics, on a listener of its own (off by
    /// default; bind it to loopback or a private interface: it needs no key).
    #[arg(long, env = "RXLEDGER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Address of the embedded MQTT broker.
    #[arg(long, env = "RXLEDGER_MQTT_LISTEN", default_value = "127.0.0.1:1883")]
    mqtt_listen: SocketAddr,
    /// Also serve the embedded broker in TLS on this address (conventionally port 8883), with
    /// --mqtts-cert, or else the --tls-cert pair (files reloaded like HTTPS's). Off by default.
    #[arg(long, env = "RXLEDGER_MQTTS_LISTEN", conflicts_with = "mqtt_url")]
    mqtts_listen: Option<SocketAddr>,
    /// The PEM certificate chain of the MQTT TLS listener, when it is not --tls-cert's (plain
    /// HTTP behind a TLS proxy, say); needs --mqtts-key.
    #[arg(long, env = "RXLEDGER_MQTTS_CERT", requires_all = ["mqtts_key", "mqtts_listen"])]
    mqtts_cert: Option<PathBuf>,
    /// The PEM private key of --mqtts-cert.
    #[arg(long, env = "RXLEDGER_MQTTS_KEY", requires = "mqtts_cert")]
    mqtts_key: Option<PathBuf>,
    /// Devices on the TLS listener must present a client certificate issued by this PEM
    /// authority whose CN or a DNS name is their device id (their password stays required).
    #[arg(long, env = "RXLEDGER_MQTT_CLIENT_CA", requires = "mqtts_listen")]
    mqtt_client_ca: Option<PathBuf>,
    /// Use an external broker instead of the embedded one: mqtt://user:pass@host:port, or
    /// mqtts://… (port 8883) for TLS.
    #[arg(long, env = "RXLEDGER_MQTT_URL")]
    mqtt_url: Option<String>,
    /// The authorities (PEM) to trust for an mqtts:// broker, e.g. a private CA. Default: the
    /// platform's trusted roots.
    #[arg(long, env = "RXLEDGER_MQTT_CA", requires = "mqtt_url")]
    mqtt_ca: Option<PathBuf>,
    /// Topic root: devices publish on ROOT/devices/{id}/events and get receipts on ROOT/devices/{id}/acks.
    #[arg(long, env = "RXLEDGER_MQTT_TOPIC_ROOT", default_value = "rxledger/v1")]
    mqtt_topic_root: String,
    /// MQTT client id of this node; stable across restarts and different on every node.
    #[arg(long, env = "RXLEDGER_NODE_ID", default_value = "rxledger-node-1")]
    node_id: String,
    /// Most entries per ledger transaction.
    #[arg(long, env = "RXLEDGER_BATCH_MAX", default_value_t = 1000)]
    batch_max: usize,
    /// Longest wait for a batch to fill, in milliseconds.
    #[arg(long, env = "RXLEDGER_BATCH_WAIT_MS", default_value_t = 50)]
    batch_wait_ms: u64,
    /// MQTT connections this node opens in the shared subscription. Brokers cap the
    /// unacknowledged deliveries per connection and acks wait for the commit, so this bounds
    /// how many envelopes can be in one batch.
    #[arg(
        long,
        env = "RXLEDGER_MQTT_CONNECTIONS",
        default_value_t = IngestConfig::default().connections as u16,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    mqtt_connections: u16,
}

#[derive(Subcommand)]
enum OrgCmd {
    /// Add an organization.
    Add {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        /// MANUFACTURER, WHOLESALER, PHARMACY, REGULATOR or ADMIN.
        #[arg(long)]
        role: String,
    },
    /// Register a GS1 company prefix to an organization.
    Prefix {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        org: String,
        #[arg(long)]
        prefix: String,
    },
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Issue an API key for an organization and print its token (shown once, never stored).
    Issue {
        #[command(flatten)]
        storage: Storage,
        /// The organization the key acts for.
        #[arg(long)]
        org: String,
        /// MANUFACTURER, WHOLESALER, PHARMACY, REGULATOR or ADMIN. Default: the organization's role.
        #[arg(long)]
        role: Option<String>,
        /// A label to recognise the key by (e.g. the till or the person).
        #[arg(long, default_value = "issued by rxledger key issue")]
        label: String,
        /// Days until the key expires. Default: never.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List the keys (never their tokens), optionally of one organization.
    List {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        org: Option<String>,
    },
    /// Revoke a key by its id (from `key list`); it is refused from then on.
    Revoke {
        #[command(flatten)]
        storage: Storage,
        /// The key's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum SiteCmd {
    /// Add a site, identified by its GLN.
    Add {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        gln: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
    },
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Subcommand)]
enum ProductCmd {
    /// Register or replace a GTIN's master data (as the operator; through the API only the
    /// brand owner, regulators and admins may).
    Set {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        gtin: String,
        /// The trade name (gs1:productName).
        #[arg(long)]
        name: String,
        /// As printed, e.g. "500 mg".
        #[arg(long)]
        strength: Option<String>,
        /// The pharmaceutical form, e.g. "film-coated tablet".
        #[arg(long)]
        form: Option<String>,
        /// The pack size (gs1:netContent), e.g. "28 tablets".
        #[arg(long)]
        pack_size: Option<String>,
        /// The marketing authorisation holder.
        #[arg(long)]
        holder: Option<String>,
        /// An https URL of a picture of the pack.
        #[arg(long)]
        image_url: Option<String>,
    },
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

#[derive(Subcommand)]
enum DeviceCmd {
    /// Enroll a device with its SEC1 compressed public key (hex).
    Enroll {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        id: String,
        #[arg(long)]
        key: String,
        #[arg(long)]
        org: String,
        #[arg(long)]
        site: String,
    },
    /// Revoke a device: its later messages are rejected.
    Revoke {
        #[command(flatten)]
        storage: Storage,
        #[arg(long)]
        id: String,
    },
    List {
        #[command(flatten)]
        storage: Storage,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RXLEDGER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER)),
        )
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each once. Many of our errors already quote their source in
/// their own message ("cannot read key file …: No such file or directory"), which `{:#}`
/// would then print a second time.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(s) => serve(*s).await,
        Command::Keygen { out, force } => {
            let key = keyfile::generate(&out, force)?;
            println!("wrote {} (mode 0600)", out.display());
            println!("public key: {}", key.public_hex());
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            storage,
            key,
            verifier_key,
            checkpoint,
        } => run_audit(&storage, key, verifier_key, checkpoint).await,
        Command::Backup { storage, file } => backup(&storage, &file).await,
        Command::Restore {
            storage,
            file,
            key,
            verifier_key,
        } => restore(&storage, &file, key, verifier_key).await,
        Command::Checkpoint { storage } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            let head = rxledger_store::ledger::read_head(&db).await?;
            print!("{}", head.note);
            Ok(ExitCode::SUCCESS)
        }
        Command::Org(c) => org(c).await,
        Command::Key(c) => api_key(c).await,
        Command::Site(c) => site(c).await,
        Command::Product(c) => product(c).await,
        Command::Device(c) => device(c).await,
        Command::BrokerAcl {
            storage,
            key,
            format,
            topic_root,
            out,
        } => broker_acl(&storage, &key, &format, &topic_root, &out).await,
        Command::AdminKey { storage, label } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            let registry = Registry::new(db.clone());
            if registry.organization("admin").await?.is_none() {
                registry
                    .add_organization("admin", "rxledger operator", "ADMIN")
                    .await?;
            }
            let (token, row) = rxledger_store::ApiKeys::new(db)
                .issue("admin", "ADMIN", &label, None)
                .await?;
            println!(
                "admin API key {} (shown once, keep it safe): {token}",
                row.id
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::ExportSchema => {
            print!("{}", rxledger_graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(s: Serve) -> anyhow::Result<ExitCode> {
    let metrics = match s.metrics_listen {
        Some(addr) => Some(rxledger::metrics::bind(addr).await?),
        None => None,
    };
    let mqtt = match &s.mqtt_url {
        Some(url) => MqttTarget::External(MqttUrl::parse(url)?),
        None => MqttTarget::Embedded {
            listen: s.mqtt_listen,
        },
    };
    let cfg = ServeConfig {
        database: s.storage.database_url(),
        key_path: s.storage.key(&s.key),
        origin: s.origin.clone(),
        mqtt,
        http_listen: s.http_listen,
        node_id: s.node_id.clone(),
        ingest: IngestConfig {
            batch_max: s.batch_max.max(1),
            batch_wait: Duration::from_millis(s.batch_wait_ms),
            connections: usize::from(s.mqtt_connections),
            topic_root: s.mqtt_topic_root.clone(),
            ..IngestConfig::default()
        },
        public_url: s.public_url.clone(),
        tls: s
            .tls_cert
            .clone()
            .zip(s.tls_key.clone())
            .map(|(cert, key)| rxledger::tls::TlsFiles { cert, key }),
        mqtt_tls: rxledger::tls::MqttTls {
            listen: s.mqtts_listen,
            files: s
                .mqtts_cert
                .clone()
                .zip(s.mqtts_key.clone())
                .map(|(cert, key)| rxledger::tls::TlsFiles { cert, key }),
            client_ca: s.mqtt_client_ca.clone(),
            ca: s.mqtt_ca.clone(),
        },
        rate_limit: rxledger::ratelimit::RateLimit {
            per_second: s.rate_limit,
            burst: s.rate_limit * 2.0,
        },
        limits: rxledger_graphql::cost::Limits {
            max_cost: s.max_query_cost,
            max_response_bytes: s.max_response_mib << 20,
            ..Default::default()
        },
        custody_policy: s.custody_policy,
    };
    let stop = shutdown_signal()?;
    let app = server::start(cfg.clone()).await?;
    let head = app.ledger.head();
    if app.created_key {
        println!("created log key {}", cfg.key_path.display());
    }
    if let Some(token) = &app.first_admin_token {
        print_first_admin(token, &s.storage);
    }
    println!("log origin:   {}", app.ledger.origin());
    println!("public key:   {}", app.ledger.key().public_hex());
    println!("verifier key: {}", app.ledger.verifier().to_vkey());
    println!("log size:     {}", head.size);
    println!(
        "mqtt:         mqtt://{}:{}",
        app.mqtt_addr.0, app.mqtt_addr.1
    );
    if let Some(addr) = app.mqtts_addr {
        println!("mqtts:        mqtts://{addr}");
    }
    if let Some(bound) = metrics {
        let sources = rxledger::metrics::Sources::new(app.ingest_counters(), app.ledger.clone());
        println!("metrics:      http://{}/metrics", bound.addr);
        rxledger::metrics::serve(bound, sources);
    }
    let web = format!("{}://{}", app.http_scheme, app.http_addr);
    println!("graphql:      {web}/graphql");
    println!("pharmacist:   {web}/");
    println!("listening on {web}");
    stop.await;
    eprintln!("shutting down: draining batches in flight");
    app.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The first admin key, printed once when it is created, with the way to more keys and the
/// way back in should this one be lost.
fn print_first_admin(token: &str, storage: &Storage) {
    let data = match &storage.database {
        Some(url) => format!("--database {}", rxledger_store::redact(url)),
        None => format!("--data-dir {}", storage.data_dir.display()),
    };
    println!("first admin API key (shown once, keep it safe): {token}");
    println!("  send it as:    Authorization: Bearer {token}");
    println!("  more keys:     rxledger key issue {data} --org ORG");
    println!("  lost this one? rxledger admin-key {data}");
}

/// SIGTERM or Ctrl-C. The handlers are registered when this is called, not when the future is
/// first polled: a signal that arrives between "listening on" and the wait must stop the server
/// cleanly, not kill it with the default action (a test that sent SIGTERM right after reading
/// that line failed half the time).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// The verifier of log `origin`: from `--verifier-key`, or the public half of the key file,
/// refused if it is another log's.
fn log_verifier(
    storage: &Storage,
    key: Option<PathBuf>,
    verifier_key: Option<String>,
    origin: &str,
) -> anyhow::Result<LogVerifier> {
    let verifier = match verifier_key {
        Some(v) => {
            LogVerifier::from_vkey(&v).map_err(|e| anyhow::anyhow!("bad --verifier-key: {e}"))?
        }
        None => {
            let path = storage.key(&key);
            let k = keyfile::load(&path)?;
            LogVerifier::new(origin, k.public_key()).map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    if verifier.name() != origin {
        bail!(
            "the verifier key is for log {:?} but this database holds log {origin:?}",
            verifier.name()
        );
    }
    Ok(verifier)
}

async fn run_audit(
    storage: &Storage,
    key: Option<PathBuf>,
    verifier_key: Option<String>,
    checkpoint: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let url = storage.url()?;
    let db = rxledger_store::connect(&url).await?;
    let head = rxledger_store::ledger::read_head(&db).await?;
    let origin = rxledger_store::ledger::read_checkpoint_origin(&head.note)?;
    let verifier = log_verifier(storage, key, verifier_key, &origin)?;
    let saved = match &checkpoint {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read checkpoint file {}", p.display()))?,
        ),
        None => None,
    };
    let mut last = std::time::Instant::now();
    let report = audit::audit(&db, &verifier, saved.as_deref(), |done, total| {
        if last.elapsed() > Duration::from_millis(500) || done == total {
            last = std::time::Instant::now();
            eprint!("\r{}", progress_bar(done, total));
        }
    })
    .await?;
    if report.size > 0 {
        eprintln!();
    }
    println!("log:          {}", report.origin);
    println!("size:         {}", report.size);
    println!("root:         {}", hex::encode(report.root));
    println!("entries:      {} rehashed", report.entries_checked);
    println!("tiles:        {} compared", report.tiles_checked);
    println!("checkpoints:  {} verified", report.checkpoints_checked);
    println!(
        "index:        {} rows rebuilt from the entries and compared",
        report.index_rows_checked
    );
    if report.entries_unreadable > 0 {
        println!(
            "unreadable:   {} entries or events that give no index rows",
            report.entries_unreadable
        );
    }
    if let Some(s) = report.consistent_with {
        println!("consistent with the saved checkpoint at size {s}");
    }
    if report.ok() {
        println!("AUDIT PASSED");
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &report.problems {
            println!("PROBLEM: {p}");
        }
        println!("AUDIT FAILED: {} problem(s)", report.problems.len());
        Ok(ExitCode::from(2))
    }
}

fn progress_bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 40;
    let filled = (done * WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH) as usize;
    format!(
        "[{}{}] {done}/{total} entries",
        "#".repeat(filled),
        " ".repeat(WIDTH as usize - filled)
    )
}

async fn registry(storage: &Storage) -> anyhow::Result<Registry> {
    Ok(Registry::new(
        rxledger_store::connect(&storage.url()?).await?,
    ))
}

async fn org(c: OrgCmd) -> anyhow::Result<ExitCode> {
    match c {
        OrgCmd::Add {
            storage,
            id,
            name,
            role,
        } => {
            let o = registry(&storage)
                .await?
                .add_organization(&id, &name, &role.to_uppercase())
                .await?;
            println!("added organization {} ({}, {})", o.id, o.name, o.role);
        }
        OrgCmd::Prefix {
            storage,
            org,
            prefix,
        } => {
            registry(&storage)
                .await?
                .add_company_prefix(&org, &prefix)
                .await?;
            println!("registered company prefix {prefix} to {org}");
        }
        OrgCmd::List { storage } => {
            for o in registry(&storage).await?.organizations().await? {
                println!("{}\t{}\t{}", o.id, o.role, o.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rxledger backup FILE`.
async fn backup(storage: &Storage, file: &Path) -> anyhow::Result<ExitCode> {
    let default_db = storage.data_dir.join("rxledger.db");
    if storage
        .database
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"))
    {
        bail!("{}", rxledger::backup::POSTGRES);
    }
    if storage.database.is_none() && !default_db.is_file() {
        bail!("there is no database at {}", default_db.display());
    }
    let db = rxledger_store::connect(&storage.url()?).await?;
    let copy = rxledger::backup::backup(&db, file).await?;
    println!(
        "backup {}: log size {}, {} bytes; the log key is not in it (keep {} safe)",
        copy.path.display(),
        copy.size,
        copy.bytes,
        storage.key(&None).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `rxledger restore FILE`.
async fn restore(
    storage: &Storage,
    file: &Path,
    key: Option<PathBuf>,
    verifier_key: Option<String>,
) -> anyhow::Result<ExitCode> {
    let target = match &storage.database {
        None => storage.data_dir.join("rxledger.db"),
        Some(url) if !url.contains("://") && !url.starts_with("sqlite:") => PathBuf::from(url),
        Some(_) => bail!(
            "rxledger restore writes a SQLite file: give --data-dir or a file path as \
             --database (PostgreSQL: pg_restore, docs/DEPLOY.md)"
        ),
    };
    let (copy, report) = rxledger::backup::restore(file, &target, |origin| {
        log_verifier(storage, key.clone(), verifier_key.clone(), origin)
    })
    .await?;
    println!(
        "restored {} to {}: log size {}, root {}, {} entries rehashed, AUDIT PASSED",
        file.display(),
        copy.path.display(),
        report.size,
        hex::encode(report.root),
        report.entries_checked
    );
    let key_path = storage.key(&key);
    if !key_path.exists() {
        println!(
            "the log key is not at {}: put the log's key there (or pass --key to serve) \
             before starting the server",
            key_path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn api_key(c: KeyCmd) -> anyhow::Result<ExitCode> {
    use rxledger_core::epcis::format_time;
    match c {
        KeyCmd::Issue {
            storage,
            org,
            role,
            label,
            expires_in_days,
        } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            let Some(o) = Registry::new(db.clone()).organization(&org).await? else {
                bail!(
                    "no organization {org:?}: `rxledger org list` shows them, `rxledger org add` adds one"
                );
            };
            let role = role.map_or(o.role.clone(), |r| r.to_uppercase());
            let expires =
                expires_in_days.map(|d| rxledger_store::now_ms() + i64::from(d) * 86_400_000);
            let (token, row) = rxledger_store::ApiKeys::new(db)
                .issue(&o.id, &role, &label, expires)
                .await?;
            println!(
                "API key {} for {} ({}), shown once, keep it safe: {token}",
                row.id, row.org_id, row.role
            );
        }
        KeyCmd::List { storage, org } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            println!("id\torganization\trole\tcreated\texpires\trevoked\tlabel");
            for k in rxledger_store::ApiKeys::new(db)
                .list(org.as_deref())
                .await?
            {
                let at = |ms: Option<i64>| ms.map_or_else(|| "-".to_string(), format_time);
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.org_id,
                    k.role,
                    format_time(k.created_ms),
                    at(k.expires_ms),
                    at(k.revoked_ms),
                    k.label
                );
            }
        }
        KeyCmd::Revoke { storage, id } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            rxledger_store::ApiKeys::new(db).revoke(&id).await?;
            println!("revoked API key {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn site(c: SiteCmd) -> anyhow::Result<ExitCode> {
    match c {
        SiteCmd::Add {
            storage,
            gln,
            org,
            name,
        } => {
            let gln =
                rxledger_core::gs1::Gln::parse(&gln).map_err(|e| anyhow::anyhow!("--gln: {e}"))?;
            let s = registry(&storage)
                .await?
                .add_site(gln.as_str(), &org, &name)
                .await?;
            println!("added site {} ({}) for {}", s.gln, s.name, s.org_id);
        }
        SiteCmd::List { storage } => {
            for s in registry(&storage).await?.sites().await? {
                println!("{}\t{}\t{}", s.gln, s.org_id, s.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn product(c: ProductCmd) -> anyhow::Result<ExitCode> {
    match c {
        ProductCmd::Set {
            storage,
            gtin,
            name,
            strength,
            form,
            pack_size,
            holder,
            image_url,
        } => {
            let gtin = rxledger_core::gs1::Gtin::parse(&gtin)
                .map_err(|e| anyhow::anyhow!("--gtin: {e}"))?;
            let item = rxledger_store::TradeItem {
                product_name: name,
                strength,
                dosage_form: form,
                net_content: pack_size,
                marketing_authorisation_holder: holder,
                image_url,
            };
            let db = rxledger_store::connect(&storage.url()?).await?;
            let p = rxledger_store::Products::new(db)
                .set(&gtin, item, "operator")
                .await?;
            println!("registered {} as {}", p.gtin, p.product_name);
        }
        ProductCmd::List { storage } => {
            let db = rxledger_store::connect(&storage.url()?).await?;
            for p in rxledger_store::Products::new(db).list().await? {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.gtin,
                    p.product_name,
                    opt(&p.strength),
                    opt(&p.dosage_form),
                    opt(&p.net_content),
                    opt(&p.marketing_authorisation_holder)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn device(c: DeviceCmd) -> anyhow::Result<ExitCode> {
    match c {
        DeviceCmd::Enroll {
            storage,
            id,
            key,
            org,
            site,
        } => {
            let key = PublicKey::from_sec1_hex(&key).map_err(|e| anyhow::anyhow!("--key: {e}"))?;
            let d = registry(&storage)
                .await?
                .enroll_device(&id, &key, &org, &site)
                .await?;
            println!(
                "enrolled device {} at {} for {}",
                d.id, d.site_gln, d.org_id
            );
        }
        DeviceCmd::Revoke { storage, id } => {
            registry(&storage).await?.revoke_device(&id).await?;
            println!("revoked device {id}");
        }
        DeviceCmd::List { storage } => {
            for d in registry(&storage).await?.devices().await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    d.id, d.status, d.org_id, d.site_gln, d.public_key
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rxledger broker-acl`: the active devices' MQTT credentials and topic rules.
async fn broker_acl(
    storage: &Storage,
    key: &Option<PathBuf>,
    format: &str,
    topic_root: &str,
    out: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        format == "mosquitto",
        "unknown --format {format:?}; the only format is mosquitto"
    );
    let log_key = keyfile::load(&storage.key(key))?;
    let mut devices = Vec::new();
    for d in registry(storage).await?.devices().await? {
        if d.status != "active" {
            continue;
        }
        match rxledger_core::keys::PublicKey::from_sec1_hex(&d.public_key) {
            Ok(k) => devices.push((d.id, k)),
            Err(e) => eprintln!("skipping device {}: unusable key: {e}", d.id),
        }
    }
    let files = rxledger_ingest::brokeracl::mosquitto(&devices, &log_key, topic_root)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, text) in [("passwd", &files.passwd), ("acl", &files.acl)] {
        let path = out.join(name);
        rxledger_keyfile::write_private(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "wrote {} and {} for {} devices and the server nodes",
        out.join("passwd").display(),
        out.join("acl").display(),
        devices.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn custody_policy(s: &str) -> Result<rxledger_core::verdict::CustodyPolicy, String> {
    rxledger_core::verdict::CustodyPolicy::parse(s)
        .ok_or_else(|| format!("{s:?} is not a custody policy: use warn or refuse"))
}
