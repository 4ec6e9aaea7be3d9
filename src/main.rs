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
    /// Write a new secp256k1 key and the Ed25519 key beside it (`<stem>.ed25519.key`), both
    /// mode 0600, and print their public keys.
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
        /// Audit a node through its public API instead of a database: `https://node`. It
        /// reads the checkpoint and every tile, and the entries as far as --api-key may
        /// (regulator or admin), and says what it could not check.
        #[arg(long, env = "RXLEDGER_AUDIT_URL")]
        url: Option<String>,
        /// With --url: the API key to read with (`Authorization: Bearer`).
        #[arg(long, env = "RXLEDGER_API_KEY", requires = "url")]
        api_key: Option<String>,
        /// With --url: PEM authorities to trust for HTTPS instead of the platform's.
        #[arg(long, requires = "url")]
        ca: Option<PathBuf>,
        /// The log's key file (only its public half is used).
        #[arg(long, env = "RXLEDGER_KEY")]
        key: Option<PathBuf>,
        /// The log's verifier key `<origin>+<keyid>+<base64>`, instead of --key.
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        verifier_key: Option<String>,
        /// A checkpoint saved earlier: the log must be consistent with it.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// With --checkpoint: the witnesses whose cosignatures it must carry.
        #[command(flatten)]
        witnesses: WitnessKeys,
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
    /// Print the log's verifier keys: the k256 one (receipts, `rxledger audit`) and the
    /// Ed25519 one that witnesses are started with (`rxledger witness --log`).
    Vkey {
        #[command(flatten)]
        storage: Storage,
        /// The log key file (default: DATA_DIR/log.key); the Ed25519 key is beside it.
        #[arg(long, env = "RXLEDGER_KEY")]
        key: Option<PathBuf>,
    },
    /// Check a checkpoint note offline: the log's signature (k256 or Ed25519 verifier key) and,
    /// with --witness-key, a quorum of witness cosignatures. Needs no database.
    VerifyCheckpoint {
        /// The note, e.g. saved from GraphQL `checkpoint { cosigned { note } }`.
        file: PathBuf,
        /// The log's verifier key (`rxledger vkey` prints both).
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        log_key: String,
        #[command(flatten)]
        witnesses: WitnessKeys,
    },
    /// Check a saved verdict offline: every cited entry's inclusion in the checkpoint and the
    /// map proofs that the verdict read every entry about its pack, containers and lot.
    /// Needs no database; names the identifier whose history the answer does not show whole.
    VerifyAnswer {
        /// The saved GraphQL `verify` answer (the response, or its `data.verify`), selecting
        /// evidence, reasons { evidence }, checkpointSize and completeness.
        answer: PathBuf,
        /// The checkpoint note the answer's proofs are against (its `checkpointNote`, or the
        /// same size from a source you trust).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The log's verifier key (`rxledger vkey`): checks the checkpoint's signature, and
        /// with the k256 key the map-root entry's too.
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        verifier_key: Option<String>,
    },
    /// Run a C2SP tlog-witness (POST /add-checkpoint) for one or more logs: it cosigns each
    /// checkpoint consistent with what it cosigned before, and refuses any other.
    Witness(WitnessArgs),
    /// Check a tracing answer's evidence bundle offline (GraphQL `traceRequest {
    /// evidenceBundle }`): the checkpoint is the log's and every entry is in its tree. Needs
    /// no database. Exit 0 verified, 2 refused.
    VerifyBundle {
        /// The bundle, as saved from `evidenceBundle`.
        file: PathBuf,
        /// The log's verifier key (`rxledger vkey` prints both; the k256 one also checks the
        /// tracing requests inside).
        #[arg(long, env = "RXLEDGER_VERIFIER_KEY")]
        verifier_key: String,
    },
}

/// Witness keys a checkpoint must carry cosignatures from.
#[derive(Args, Clone)]
struct WitnessKeys {
    /// A witness's cosigner verifier key (type 0x04), as `rxledger witness` prints it.
    /// Repeatable.
    #[arg(long = "witness-key", value_parser = cosigner_vkey)]
    keys: Vec<rxledger_core::ed25519::Ed25519Verifier>,
    /// How many of them must have cosigned. Default: all given.
    #[arg(long = "witness-quorum")]
    quorum: Option<usize>,
}

impl WitnessKeys {
    fn quorum(&self) -> anyhow::Result<rxledger_core::cosignature::Quorum> {
        let need = self.quorum.unwrap_or(self.keys.len());
        if need > self.keys.len() {
            bail!(
                "--witness-quorum {need} is more than the {} --witness-key given",
                self.keys.len()
            );
        }
        Ok(rxledger_core::cosignature::Quorum {
            witnesses: self.keys.clone(),
            need,
        })
    }
}

#[derive(Args)]
struct WitnessArgs {
    /// Directory for the witness's key (`witness.key`, created on first start) and state
    /// (`witness.db`).
    #[arg(
        long,
        env = "RXLEDGER_WITNESS_DATA",
        default_value = "rxledger-witness"
    )]
    data: PathBuf,
    /// HTTP address; port 0 picks a free port.
    #[arg(
        long,
        env = "RXLEDGER_WITNESS_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    listen: SocketAddr,
    /// A log to witness: its Ed25519 verifier key, as `rxledger vkey` prints it. Repeatable.
    #[arg(long = "log", required = true, value_parser = ed25519_vkey)]
    logs: Vec<rxledger_core::ed25519::Ed25519Verifier>,
    /// The witness's key name. Default: rxledger.witness/<hash of its public key>.
    #[arg(long, env = "RXLEDGER_WITNESS_NAME")]
    name: Option<String>,
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
    /// Keep the authenticated pack index and append its root with every batch, so that
    /// verdicts carry completeness proofs (`verify { completeness }`, `rxledger verify-answer`).
    /// On by default; `--completeness-map=false` runs without it (verdicts then carry no
    /// completeness proof, and the pharmacist's page cannot say "complete").
    #[arg(
        long,
        env = "RXLEDGER_COMPLETENESS_MAP",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    completeness_map: bool,
    /// Open an alert case for every alert about a pack, assigned to its brand owner, and run
    /// its reminders and escalation (docs/CASES.md). On by default; `--alert-cases=false`
    /// turns it off.
    #[arg(
        long,
        env = "RXLEDGER_ALERT_CASES",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    alert_cases: bool,
    /// An alert case the brand owner has not answered is reminded after this long (from its
    /// opening, or from a regulator's request for information): `90s`, `30m`, `48h`, `5d`.
    #[arg(long, env = "RXLEDGER_CASE_FIRST_REMINDER", default_value = "48h", value_parser = span_ms)]
    case_first_reminder: i64,
    /// ... reminded again after this long.
    #[arg(long, env = "RXLEDGER_CASE_SECOND_REMINDER", default_value = "5d", value_parser = span_ms)]
    case_second_reminder: i64,
    /// ... and escalated to the regulator after this long; only then may a regulator close it
    /// NO_RESPONSE.
    #[arg(long, env = "RXLEDGER_CASE_ESCALATION", default_value = "14d", value_parser = span_ms)]
    case_escalation: i64,
    /// How often the alert cases' timers are looked at (they are also on every new alert).
    #[arg(long, env = "RXLEDGER_CASE_SWEEP", default_value = "60s", value_parser = span_ms)]
    case_sweep: i64,
    /// A witness to submit every new checkpoint to: `<its cosigner vkey>=http://host:port`,
    /// as `rxledger witness` prints it. Repeatable.
    #[arg(long = "witness", value_parser = witness_spec)]
    witnesses: Vec<rxledger_witness::WitnessClient>,
    /// Cosignatures a checkpoint needs before it is published as cosigned. Default: 1 when
    /// witnesses are given.
    #[arg(long, env = "RXLEDGER_WITNESS_QUORUM")]
    witness_quorum: Option<usize>,
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
    /// Envelopes a device connection may have awaiting receipts on the embedded broker; the
    /// broker holds the rest back, and keeps up to 10 KiB of receipts per slot for each
    /// device. Raise it for a few devices that publish fast (a load test).
    #[arg(
        long,
        env = "RXLEDGER_DEVICE_WINDOW",
        default_value_t = rxledger_ingest::pipeline::DEFAULT_DEVICE_WINDOW as u32,
        value_parser = clap::value_parser!(u32).range(1..=65_536)
    )]
    device_window: u32,
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
        Command::Keygen { out, force } => keygen(&out, force),
        Command::Audit {
            url: Some(url),
            api_key,
            ca,
            verifier_key,
            checkpoint,
            witnesses,
            ..
        } => {
            let quorum = if witnesses.keys.is_empty() {
                None
            } else {
                Some(witnesses.quorum()?)
            };
            remote_audit(rxledger::remote_audit::RemoteAudit {
                url,
                api_key,
                verifier_key,
                checkpoint,
                quorum,
                ca,
            })
            .await
        }
        Command::Audit {
            storage,
            key,
            verifier_key,
            checkpoint,
            witnesses,
            ..
        } => run_audit(&storage, key, verifier_key, checkpoint, &witnesses).await,
        Command::VerifyCheckpoint {
            file,
            log_key,
            witnesses,
        } => verify_checkpoint(&file, &log_key, &witnesses),
        Command::VerifyBundle { file, verifier_key } => verify_bundle(&file, &verifier_key),
        Command::VerifyAnswer {
            answer,
            checkpoint,
            verifier_key,
        } => verify_answer(&answer, &checkpoint, verifier_key.as_deref()),
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
        Command::AdminKey { storage, label } => admin_key(&storage, &label).await,
        Command::ExportSchema => {
            print!("{}", rxledger_graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Vkey { storage, key } => vkey(&storage, &storage.key(&key)).await,
        Command::Witness(w) => witness(w).await,
    }
}

/// `rxledger keygen`: a new log key pair (k256 and Ed25519), each file mode 0600.
fn keygen(out: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let key = keyfile::generate(out, force)?;
    let ed_path = keyfile::ed25519_path(out);
    let ed: rxledger_core::ed25519::Ed25519Key = keyfile::generate_key(&ed_path, force)?;
    println!(
        "wrote {} and {} (mode 0600)",
        out.display(),
        ed_path.display()
    );
    println!("public key: {}", key.public_hex());
    println!("ed25519 public key: {}", hex::encode(ed.public_bytes()));
    Ok(ExitCode::SUCCESS)
}

/// `rxledger audit --url`: the audit through a node's API; exit 2 when it finds a problem.
async fn remote_audit(audit: rxledger::remote_audit::RemoteAudit) -> anyhow::Result<ExitCode> {
    let report = rxledger::remote_audit::run(&audit).await?;
    rxledger::remote_audit::print(&report);
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// `rxledger admin-key`: another ADMIN key, for when the first one is lost.
async fn admin_key(storage: &Storage, label: &str) -> anyhow::Result<ExitCode> {
    let db = rxledger_store::connect(&storage.url()?).await?;
    let registry = Registry::new(db.clone());
    if registry.organization("admin").await?.is_none() {
        registry
            .add_organization("admin", "rxledger operator", "ADMIN")
            .await?;
    }
    let (token, row) = rxledger_store::ApiKeys::new(db)
        .issue("admin", "ADMIN", label, None)
        .await?;
    println!(
        "admin API key {} (shown once, keep it safe): {token}",
        row.id
    );
    Ok(ExitCode::SUCCESS)
}

/// `rxledger vkey`: both verifier keys of the log in this data directory.
async fn vkey(storage: &Storage, key_path: &Path) -> anyhow::Result<ExitCode> {
    let key = keyfile::load(key_path)?;
    let (ed, _) = keyfile::load_or_create_key::<rxledger_core::ed25519::Ed25519Key>(
        &keyfile::ed25519_path(key_path),
    )?;
    let db = rxledger_store::connect(&storage.url()?).await?;
    let head = rxledger_store::ledger::read_head(&db).await?;
    let origin = rxledger_store::ledger::read_checkpoint_origin(&head.note)?;
    let k256 = LogVerifier::new(&origin, key.public_key()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let ed = ed
        .verifier(&origin, rxledger_core::ed25519::EdKind::Note)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("k256:    {}", k256.to_vkey());
    println!("ed25519: {}", ed.to_vkey());
    Ok(ExitCode::SUCCESS)
}

/// `rxledger witness`: runs until SIGTERM or Ctrl-C.
async fn witness(w: WitnessArgs) -> anyhow::Result<ExitCode> {
    let stop = shutdown_signal()?;
    std::fs::create_dir_all(&w.data)
        .with_context(|| format!("cannot create witness directory {}", w.data.display()))?;
    let server = rxledger_witness::server::start(rxledger_witness::WitnessConfig {
        data: w.data,
        listen: w.listen,
        name: w.name,
        logs: w.logs,
    })
    .await?;
    println!("witness vkey: {}", server.verifier.to_vkey());
    println!("listening on http://{}", server.addr);
    stop.await;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// `--log`: an Ed25519 note verifier key (type 0x01), named by the log's origin.
fn ed25519_vkey(s: &str) -> Result<rxledger_core::ed25519::Ed25519Verifier, String> {
    let v = rxledger_core::ed25519::Ed25519Verifier::from_vkey(s).map_err(|e| e.to_string())?;
    if v.kind() != rxledger_core::ed25519::EdKind::Note {
        return Err("not a log key (signed-note type 0x01); see `rxledger vkey`".into());
    }
    Ok(v)
}

/// `rxledger verify-checkpoint`: the log's signature and the witnesses' quorum, offline.
fn verify_checkpoint(
    file: &Path,
    log_key: &str,
    witnesses: &WitnessKeys,
) -> anyhow::Result<ExitCode> {
    use rxledger_core::checkpoint::NoteVerifier;
    let note = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read checkpoint file {}", file.display()))?;
    let log: Box<dyn NoteVerifier> =
        match rxledger_core::ed25519::Ed25519Verifier::from_vkey(log_key) {
            Ok(v) if v.kind() == rxledger_core::ed25519::EdKind::Note => Box::new(v),
            _ => Box::new(
                LogVerifier::from_vkey(log_key)
                    .map_err(|e| anyhow::anyhow!("bad --log-key: {e}"))?,
            ),
        };
    match rxledger_core::cosignature::open_cosigned(&note, log.as_ref(), &witnesses.quorum()?) {
        Ok((cp, names)) => {
            println!("origin:   {}", cp.origin);
            println!("size:     {}", cp.size);
            println!("root:     {}", hex::encode(cp.root));
            println!(
                "cosigned: {}",
                if names.is_empty() {
                    "-".into()
                } else {
                    names.join(", ")
                }
            );
            println!("CHECKPOINT VERIFIED");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("CHECKPOINT REFUSED: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

fn verify_bundle(file: &Path, verifier_key: &str) -> anyhow::Result<ExitCode> {
    match rxledger::verify_bundle::verify_file(file, verifier_key)? {
        Ok(v) => {
            println!("origin:   {}", v.origin);
            println!("size:     {}", v.size);
            println!("root:     {}", v.root);
            println!("entries:  {}", v.entries);
            for (index, requester, subject) in &v.requests {
                println!("request:  entry {index} by {requester} about {subject}");
            }
            println!("BUNDLE VERIFIED");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            println!("BUNDLE REFUSED: {why}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `rxledger verify-answer`: a saved verdict's inclusion and completeness, offline.
fn verify_answer(
    answer: &Path,
    checkpoint: &Path,
    verifier_key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(answer)
        .with_context(|| format!("cannot read answer file {}", answer.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", answer.display()))?;
    let note = std::fs::read_to_string(checkpoint)
        .with_context(|| format!("cannot read checkpoint file {}", checkpoint.display()))?;
    match rxledger::verify_answer::verify_answer(&json, &note, verifier_key) {
        Ok(v) => {
            println!("origin:      {}", v.checkpoint.origin);
            println!("size:        {}", v.checkpoint.size);
            println!("verdict:     {}", v.verdict);
            println!("evidence:    {} entries included", v.evidence);
            for (id, n) in &v.identifiers {
                println!("complete:    {id} ({n} entries)");
            }
            if verifier_key.is_none() {
                println!("(no --verifier-key: the checkpoint is trusted as given)");
            }
            println!("ANSWER VERIFIED");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("ANSWER REFUSED: {e}");
            Ok(ExitCode::from(2))
        }
    }
}

/// `--witness-key`: a cosigner verifier key (type 0x04).
fn cosigner_vkey(s: &str) -> Result<rxledger_core::ed25519::Ed25519Verifier, String> {
    let v = rxledger_core::ed25519::Ed25519Verifier::from_vkey(s).map_err(|e| e.to_string())?;
    if v.kind() != rxledger_core::ed25519::EdKind::Cosignature {
        return Err(
            "not a witness key (signed-note type 0x04); `rxledger witness` prints it".into(),
        );
    }
    Ok(v)
}

/// `--witness`: `<cosigner vkey>=http://host:port[/prefix]`.
fn witness_spec(s: &str) -> Result<rxledger_witness::WitnessClient, String> {
    rxledger_witness::WitnessClient::parse(s).map_err(|e| e.to_string())
}

/// `--witness-quorum`: between 1 and the number of witnesses; 1 by default.
fn witness_quorum(witnesses: usize, quorum: Option<usize>) -> anyhow::Result<usize> {
    match (witnesses, quorum) {
        (0, None | Some(0)) => Ok(0),
        (0, Some(_)) => bail!("--witness-quorum needs at least one --witness"),
        (n, Some(k)) if k == 0 || k > n => {
            bail!("--witness-quorum must be between 1 and the {n} witnesses given")
        }
        (_, k) => Ok(k.unwrap_or(1)),
    }
}

async fn serve(s: Serve) -> anyhow::Result<ExitCode> {
    let metrics = match s.metrics_listen {
        Some(addr) => Some(rxledger::metrics::bind(addr).await?),
        None => None,
    };
    let cfg = serve_config(&s)?;
    let stop = shutdown_signal()?;
    let app = server::start(cfg.clone()).await?;
    print_started(&app, &cfg, &s.storage);
    if let Some(bound) = metrics {
        let sources = rxledger::metrics::Sources::new(app.ingest_counters(), app.ledger.clone())
            .with_verify_latency(app.verify_latency.clone());
        println!("metrics:      http://{}/metrics", bound.addr);
        rxledger::metrics::serve(bound, sources);
    }
    let web = format!("{}://{}", app.http_scheme, app.http_addr);
    println!("graphql:      {web}/graphql");
    println!("pharmacist:   {web}/");
    println!("listening on {web}");
    // The index check may still run in the background (`server::start`); a node whose index
    // does not match its log appends nothing, and stops.
    let mut index = app.ledger.index_check();
    let failed = index.wait_for(|c| matches!(c, rxledger_store::IndexCheck::Failed(_)));
    let problems = tokio::select! {
        _ = stop => None,
        Ok(c) = failed => match &*c {
            rxledger_store::IndexCheck::Failed(why) => Some(why.clone()),
            _ => None,
        },
    };
    eprintln!("shutting down: draining batches in flight");
    app.shutdown().await;
    if let Some(why) = problems {
        eprintln!("error: the index does not match the log {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `rxledger serve`'s flags ask for, checked (the witness quorum) before anything starts.
fn serve_config(s: &Serve) -> anyhow::Result<ServeConfig> {
    let mqtt = match &s.mqtt_url {
        Some(url) => MqttTarget::External(MqttUrl::parse(url)?),
        None => MqttTarget::Embedded {
            listen: s.mqtt_listen,
        },
    };
    Ok(ServeConfig {
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
            device_window: s.device_window as usize,
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
        witness_quorum: witness_quorum(s.witnesses.len(), s.witness_quorum)?,
        witnesses: s.witnesses.clone(),
        map: s.completeness_map,
        cases: rxledger::server::CaseConfig {
            enabled: s.alert_cases,
            timers: rxledger_core::case::Timers::new(
                s.case_first_reminder,
                s.case_second_reminder,
                s.case_escalation,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "--case-first-reminder, --case-second-reminder, --case-escalation: {e}"
                )
            })?,
            clock: rxledger_store::Clock::system(),
            sweep_every: Duration::from_millis(s.case_sweep as u64),
        },
    })
}

/// What a started node prints: what it created, its keys, witnesses and listeners.
fn print_started(app: &server::App, cfg: &ServeConfig, storage: &Storage) {
    let head = app.ledger.head();
    if app.created_key {
        println!("created log key {}", cfg.key_path.display());
    }
    if let Some(token) = &app.first_admin_token {
        print_first_admin(token, storage);
    }
    println!("log origin:   {}", app.ledger.origin());
    println!("public key:   {}", app.ledger.key().public_hex());
    println!("verifier key: {}", app.ledger.verifier().to_vkey());
    if let Some(ed) = app.ledger.ed25519_verifier() {
        println!("ed25519 vkey: {}", ed.to_vkey());
    }
    if app.witnessing.is_enabled() {
        let status = app.ledger.witnesses().status();
        println!(
            "witnesses:    {} (quorum {})",
            status.witnesses.len(),
            status.quorum
        );
    }
    println!("log size:     {}", head.size);
    println!(
        "mqtt:         mqtt://{}:{}",
        app.mqtt_addr.0, app.mqtt_addr.1
    );
    if let Some(addr) = app.mqtts_addr {
        println!("mqtts:        mqtts://{addr}");
    }
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
    witnesses: &WitnessKeys,
) -> anyhow::Result<ExitCode> {
    if !witnesses.keys.is_empty() && checkpoint.is_none() {
        bail!("--witness-key checks the cosignatures of --checkpoint FILE; give one");
    }
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
    if let Some(note) = saved.as_deref().filter(|_| !witnesses.keys.is_empty()) {
        let (cp, names) =
            rxledger_core::cosignature::open_cosigned(note, &verifier, &witnesses.quorum()?)
                .map_err(|e| anyhow::anyhow!("the saved checkpoint is not cosigned: {e}"))?;
        println!("cosigned:     size {} by {}", cp.size, names.join(", "));
    }
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
    println!(
        "map:          {} map-root entries recomputed from the entries and compared",
        report.map_roots_checked
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

/// A span of time, `<n>s`, `<n>m`, `<n>h` or `<n>d`, in milliseconds (at least one second,
/// at most ten years).
fn span_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a span of time: use e.g. 90s, 30m, 48h or 5d");
    let split = s.len().checked_sub(1).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if (1_000..=10 * 366 * 86_400_000).contains(&ms) {
        Ok(ms)
    } else {
        Err(format!("{s:?} is out of range: 1s to 3660d"))
    }
}

#[cfg(test)]
mod tests {
    use super::span_ms;

    #[test]
    fn spans_of_time_for_the_case_timers() {
        assert_eq!(span_ms("48h"), Ok(48 * 3_600_000));
        assert_eq!(span_ms("5d"), Ok(5 * 86_400_000));
        assert_eq!(span_ms("90s"), Ok(90_000));
        assert_eq!(span_ms("30m"), Ok(1_800_000));
        for bad in [
            "",
            "h",
            "48",
            "4.5h",
            "-1d",
            "0s",
            "3661d",
            "99999999999999999d",
            "2w",
        ] {
            assert!(span_ms(bad).is_err(), "{bad}");
        }
    }
}
