//! `firmware-sim`: simulated rxledger scanners. Every flag can also come from a
//! `FIRMWARE_SIM_*` environment variable.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use firmware_sim::device::Broker;
use firmware_sim::identity::{self, Identity};
use firmware_sim::label::{self, Label};
use firmware_sim::load::{self, LoadOptions, LoadReport};
use firmware_sim::queue::Queue;
use firmware_sim::scenario::{self, Injections, ScenarioOptions};
use rxledger_core::cosignature::Quorum;
use rxledger_core::ed25519::Ed25519Verifier;
use rxledger_core::envelope;
use rxledger_core::keys::LogVerifier;

#[derive(Parser)]
#[command(
    name = "firmware-sim",
    version,
    about = "Simulated rxledger scanners: device keys, store-and-forward, supply-chain scenarios, load and QR labels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a device key (mode 0600) and print what an administrator needs to enroll it.
    Keygen {
        #[arg(long, env = "FIRMWARE_SIM_KEY")]
        out: PathBuf,
        #[arg(long, env = "FIRMWARE_SIM_DEVICE_ID", default_value = "scanner-1")]
        device_id: String,
        /// The organization and site to show in the enrollment command.
        #[arg(long, env = "FIRMWARE_SIM_ORG", default_value = "ORG")]
        org: String,
        #[arg(long, env = "FIRMWARE_SIM_SITE", default_value = "SITE_GLN")]
        site: String,
        /// Replace an existing key file.
        #[arg(long)]
        force: bool,
    },
    /// Print the receipts a device's queue holds (its proof of what the log accepted).
    Receipts {
        #[arg(long, env = "FIRMWARE_SIM_QUEUE")]
        queue: PathBuf,
    },
    /// Play a supply chain with optional attacks and check every receipt and verdict.
    Scenario(ScenarioArgs),
    /// Play the scenario's supply chain as EPCIS 2.0 JSON-LD documents over the REST
    /// binding (each organization's events in one capture), then check the same verdicts.
    Partner(PartnerArgs),
    /// Publish signed commissioning envelopes at a fixed rate and measure receipts.
    Load(LoadArgs),
    /// Create keys for load devices and a script that enrolls them.
    LoadSetup {
        #[arg(long, env = "FIRMWARE_SIM_DEVICES")]
        devices: usize,
        /// Keys file to write (mode 0600); the enrollment script goes to FILE.enroll.sh.
        #[arg(long, env = "FIRMWARE_SIM_KEYS_FILE")]
        out: PathBuf,
        #[arg(long, env = "FIRMWARE_SIM_ORG", default_value = "load")]
        org: String,
        #[arg(long, env = "FIRMWARE_SIM_COMPANY_PREFIX", default_value = "0614141")]
        company_prefix: String,
        /// GLN of the load site; default: the company prefix's location 00001.
        #[arg(long, env = "FIRMWARE_SIM_SITE")]
        site: Option<String>,
        /// Enroll right away through GraphQL at this server (needs --admin-key).
        #[arg(long, env = "FIRMWARE_SIM_SERVER")]
        server: Option<String>,
        #[arg(long, env = "FIRMWARE_SIM_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Print a pack's GS1 Digital Link as a QR code and optionally write it as SVG.
    Label {
        #[arg(long)]
        gtin: String,
        #[arg(long)]
        serial: String,
        #[arg(long)]
        lot: String,
        /// YYMMDD.
        #[arg(long)]
        expiry: String,
        #[arg(long, env = "FIRMWARE_SIM_LABEL_BASE", default_value = label::DEFAULT_BASE)]
        base: String,
        #[arg(long)]
        svg: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ScenarioArgs {
    /// The server's HTTP address.
    #[arg(
        long,
        env = "FIRMWARE_SIM_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The broker: mqtt://host:port, or mqtts://host:port (8883) for TLS.
    #[arg(
        long,
        env = "FIRMWARE_SIM_MQTT",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    mqtt: String,
    /// The authorities (PEM) to trust for mqtts://, e.g. a private CA. Default: the
    /// platform's trusted roots.
    #[arg(long, env = "FIRMWARE_SIM_MQTT_CA")]
    mqtt_ca: Option<PathBuf>,
    #[arg(long, env = "FIRMWARE_SIM_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    #[arg(long, env = "FIRMWARE_SIM_PACKS", default_value_t = 40)]
    packs: usize,
    #[arg(long, env = "FIRMWARE_SIM_PHARMACIES", default_value_t = 3)]
    pharmacies: usize,
    /// Comma-separated: counterfeit, forged, replay, revoked, out-of-order, offline, or all.
    #[arg(long, env = "FIRMWARE_SIM_INJECT", default_value = "")]
    inject: String,
    #[arg(long, env = "FIRMWARE_SIM_TOPIC_ROOT", default_value = envelope::DEFAULT_TOPIC_ROOT)]
    topic_root: String,
    /// Seeds the ids this run creates; random by default.
    #[arg(long, env = "FIRMWARE_SIM_SEED")]
    seed: Option<u64>,
    /// Keep device queues here (default: a temporary directory).
    #[arg(long, env = "FIRMWARE_SIM_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Seconds an offline device stays offline.
    #[arg(long, env = "FIRMWARE_SIM_OFFLINE_SECS", default_value_t = 3.0)]
    offline_secs: f64,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A witness's verifier key (`rxledger witness` prints it). Repeatable. Each device then
    /// keeps a receipted envelope until a checkpoint the witnesses cosigned extends its
    /// receipt's tree (docs/PROTOCOL.md §13.6), and the run fails if any is left held.
    #[arg(
        long = "witness-key",
        env = "FIRMWARE_SIM_WITNESS_KEYS",
        value_delimiter = ','
    )]
    witness_keys: Vec<String>,
    /// How many of the `--witness-key`s must cosign (default: all of them).
    #[arg(long, env = "FIRMWARE_SIM_WITNESS_QUORUM")]
    witness_quorum: Option<usize>,
}

#[derive(Args)]
struct PartnerArgs {
    /// The server's HTTP address.
    #[arg(
        long,
        env = "FIRMWARE_SIM_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    #[arg(long, env = "FIRMWARE_SIM_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    #[arg(long, env = "FIRMWARE_SIM_PACKS", default_value_t = 40)]
    packs: usize,
    #[arg(long, env = "FIRMWARE_SIM_PHARMACIES", default_value_t = 3)]
    pharmacies: usize,
    /// Seeds the ids this run creates; random by default.
    #[arg(long, env = "FIRMWARE_SIM_SEED")]
    seed: Option<u64>,
    /// Send the documents as EPCIS 1.2 XML (the DSCSA's files) instead of EPCIS 2.0 JSON-LD.
    #[arg(long)]
    xml: bool,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// The broker: mqtt://host:port, or mqtts://host:port (8883) for TLS.
    #[arg(
        long,
        env = "FIRMWARE_SIM_MQTT",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    mqtt: String,
    /// The authorities (PEM) to trust for mqtts://, e.g. a private CA. Default: the
    /// platform's trusted roots.
    #[arg(long, env = "FIRMWARE_SIM_MQTT_CA")]
    mqtt_ca: Option<PathBuf>,
    #[arg(long, env = "FIRMWARE_SIM_DEVICES")]
    devices: usize,
    /// Aggregate envelopes per second.
    #[arg(long, env = "FIRMWARE_SIM_RATE")]
    rate: f64,
    /// Seconds.
    #[arg(long, env = "FIRMWARE_SIM_DURATION", default_value_t = 10.0)]
    duration: f64,
    /// Seconds to wait for outstanding receipts at the end.
    #[arg(long, env = "FIRMWARE_SIM_DRAIN", default_value_t = 10.0)]
    drain: f64,
    /// Child processes to spread the devices and the rate over.
    #[arg(long, env = "FIRMWARE_SIM_PROCS", default_value_t = 1)]
    procs: usize,
    /// Devices from `load-setup` (required).
    #[arg(long, env = "FIRMWARE_SIM_KEYS_FILE")]
    keys_file: PathBuf,
    #[arg(long, env = "FIRMWARE_SIM_TOPIC_ROOT", default_value = envelope::DEFAULT_TOPIC_ROOT)]
    topic_root: String,
    /// The log's verifier key (`rxledger` GraphQL `ledgerPublicKey { verifierKey }`): the
    /// devices log in to the broker with the credentials derived from it and their keys.
    /// Without it they connect anonymously, which only a broker without rxledger's ACL allows.
    #[arg(long, env = "FIRMWARE_SIM_LOG_KEY")]
    log_key: Option<String>,
    /// Print the report as JSON (what child processes do).
    #[arg(long)]
    json: bool,
    /// Internal: this child's slice, `i/P` (devices i, i+P, …).
    #[arg(long, hide = true)]
    slice: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FIRMWARE_SIM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Keygen {
            out,
            device_id,
            org,
            site,
            force,
        } => {
            let key = identity::generate_key(&out, force)?;
            let id = Identity::new(&device_id, key)?;
            println!("wrote {} (mode 0600)\n", out.display());
            print!("{}", id.enrollment(&org, &site));
        }
        Command::Receipts { queue } => {
            let q = Queue::open(&queue)?;
            for r in q.receipts()? {
                println!("{}", serde_json::to_string(&r)?);
            }
            eprintln!(
                "{} envelopes without a receipt; last sequence number {}",
                q.unreceipted(),
                q.last_seq()
            );
        }
        Command::Scenario(a) => return scenario(a).await,
        Command::Partner(a) => return partner(a).await,
        Command::Load(a) => return load(a).await,
        Command::LoadSetup {
            devices,
            out,
            org,
            company_prefix,
            site,
            server,
            admin_key,
            force,
        } => {
            let site = site.unwrap_or_else(|| default_site(&company_prefix));
            let devs =
                load::write_keys_file(&out, &format!("{org}-"), &company_prefix, devices, force)?;
            let script_path = PathBuf::from(format!("{}.enroll.sh", out.display()));
            std::fs::write(&script_path, load::enroll_script(&devs, &org, &site))?;
            println!(
                "wrote {} devices to {} (mode 0600)",
                devs.len(),
                out.display()
            );
            println!("enrollment script: sh {}", script_path.display());
            if let Some(server) = server {
                enroll_load_devices(&server, admin_key, &org, &company_prefix, &site, &devs)
                    .await?;
            }
        }
        Command::Label {
            gtin,
            serial,
            lot,
            expiry,
            base,
            svg,
        } => {
            let l = Label::new(&gtin, &serial, &lot, &expiry, &base)?;
            println!("{}", l.terminal());
            println!("{}", l.uri);
            if let Some(path) = svg {
                std::fs::write(&path, l.svg())
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The GLN of location 1 under `company_prefix`: the load devices' site unless given.
fn default_site(company_prefix: &str) -> String {
    scenario::plan::with_check_digit(&format!(
        "{company_prefix}{:0w$}",
        1,
        w = 12usize.saturating_sub(company_prefix.len())
    ))
}

/// Registers the load devices' organization, prefix and site through the API, and enrolls
/// every device.
async fn enroll_load_devices(
    server: &str,
    admin_key: Option<String>,
    org: &str,
    company_prefix: &str,
    site: &str,
    devs: &[load::LoadDevice],
) -> anyhow::Result<()> {
    use firmware_sim::api::{Api, GraphQl, Role};
    let api = GraphQl::new(server, admin_key)?;
    // An existing organization, prefix or site from an earlier setup is fine.
    let _ = api.create_organization(org, org, Role::Manufacturer).await;
    let _ = api.add_company_prefix(org, company_prefix).await;
    let _ = api.add_site(site, org, org, None).await;
    for d in devs {
        api.enroll_device(
            &d.identity.device_id,
            &d.identity.key.public_hex(),
            org,
            site,
        )
        .await
        .with_context(|| format!("enrolling {}", d.identity.device_id))?;
    }
    println!("enrolled {} devices at {server}", devs.len());
    Ok(())
}

/// The broker of `--mqtt`, trusting `--mqtt-ca` for mqtts://.
fn broker(url: &str, ca: Option<&Path>) -> anyhow::Result<Broker> {
    let tls = rxledger_keyfile::tls::ClientTls { ca, identity: None };
    Broker::parse_with(url, &tls).map_err(anyhow::Error::msg)
}

async fn scenario(a: ScenarioArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ScenarioOptions::new(
        &a.server,
        broker(&a.mqtt, a.mqtt_ca.as_deref())?,
        Some(a.admin_key),
    );
    opts.packs = a.packs;
    opts.pharmacies = a.pharmacies;
    opts.inject = Injections::parse(&a.inject).map_err(anyhow::Error::msg)?;
    opts.topic_root = a.topic_root;
    opts.seed = a.seed.unwrap_or_else(|| scenario::now_ms() as u64);
    opts.state_dir = a.state_dir;
    opts.offline_for = Duration::from_secs_f64(a.offline_secs.max(0.0));
    opts.progress = !a.json;
    opts.witnesses = quorum(&a.witness_keys, a.witness_quorum)?;
    let report = scenario::run_scenario(opts).await?;
    finish(a.json, &report, report.ok())
}

/// Prints a report as JSON when asked (the text was printed as the run went), and exits
/// non-zero when an expectation failed.
fn finish(json: bool, report: &impl serde::Serialize, ok: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn partner(a: PartnerArgs) -> anyhow::Result<ExitCode> {
    let report = firmware_sim::partner::run_partner(firmware_sim::partner::PartnerOptions {
        server: a.server,
        admin_key: a.admin_key,
        packs: a.packs,
        pharmacies: a.pharmacies,
        seed: a.seed.unwrap_or_else(|| scenario::now_ms() as u64),
        format: if a.xml {
            firmware_sim::partner::PartnerFormat::Epcis12Xml
        } else {
            firmware_sim::partner::PartnerFormat::JsonLd
        },
        progress: !a.json,
    })
    .await?;
    finish(a.json, &report, report.ok())
}

async fn load(a: LoadArgs) -> anyhow::Result<ExitCode> {
    let report = if a.procs > 1 && a.slice.is_none() {
        fork(&a).await?
    } else {
        let mut devices = load::read_keys_file(&a.keys_file)?;
        devices.truncate(a.devices);
        let mut rate = a.rate;
        if let Some(slice) = &a.slice {
            let (i, p) = slice
                .split_once('/')
                .and_then(|(i, p)| Some((i.parse::<usize>().ok()?, p.parse::<usize>().ok()?)))
                .filter(|(i, p)| i < p)
                .context("--slice must be i/P with i < P")?;
            devices = devices.into_iter().skip(i).step_by(p).collect();
            rate /= p as f64;
        }
        anyhow::ensure!(
            !devices.is_empty(),
            "no devices: run firmware-sim load-setup first and pass --keys-file"
        );
        load::run_load(LoadOptions {
            mqtt: broker(&a.mqtt, a.mqtt_ca.as_deref())?,
            topic_root: a.topic_root.clone(),
            log_key: a
                .log_key
                .as_deref()
                .map(LogVerifier::from_vkey)
                .transpose()
                .context("--log-key is not a verifier key")?
                .map(|v| *v.public_key()),
            devices,
            rate,
            duration: Duration::from_secs_f64(a.duration),
            drain: Duration::from_secs_f64(a.drain),
        })
        .await?
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.summary());
    }
    Ok(if report.missing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `procs` children of this executable, each with a slice of the devices and the rate,
/// and merges their JSON reports.
async fn fork(a: &LoadArgs) -> anyhow::Result<LoadReport> {
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    // Each child takes the first `devices` lines of the keys file and keeps every P-th.
    for i in 0..a.procs {
        let child = tokio::process::Command::new(&exe)
            .arg("load")
            .args(["--mqtt", &a.mqtt])
            .args(
                a.mqtt_ca
                    .iter()
                    .flat_map(|c| [OsStr::new("--mqtt-ca"), c.as_os_str()]),
            )
            .args(["--devices", &a.devices.to_string()])
            .args(["--rate", &a.rate.to_string()])
            .args(["--duration", &a.duration.to_string()])
            .args(["--drain", &a.drain.to_string()])
            .args(["--keys-file", &a.keys_file.display().to_string()])
            .args(["--topic-root", &a.topic_root])
            .args(a.log_key.iter().flat_map(|k| ["--log-key", k.as_str()]))
            .args(["--slice", &format!("{i}/{}", a.procs)])
            .arg("--json")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting a load child process")?;
        children.push(child);
    }
    let mut merged = LoadReport::default();
    for c in children {
        let out = c.wait_with_output().await?;
        let report: LoadReport = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("a load child exited with {} and no report", out.status))?;
        merged.merge(&report);
    }
    Ok(merged)
}

/// The witness quorum `--witness-key` and `--witness-quorum` ask for, checked before the run.
fn quorum(keys: &[String], need: Option<usize>) -> anyhow::Result<Option<Quorum>> {
    if keys.is_empty() {
        anyhow::ensure!(
            need.is_none(),
            "--witness-quorum needs the witnesses' keys: add --witness-key VKEY for each"
        );
        return Ok(None);
    }
    let witnesses = keys
        .iter()
        .map(|k| {
            Ed25519Verifier::from_vkey(k.trim())
                .map_err(|e| anyhow::anyhow!("--witness-key {k:?} is not an Ed25519 vkey: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let need = need.unwrap_or(witnesses.len());
    anyhow::ensure!(
        (1..=witnesses.len()).contains(&need),
        "--witness-quorum {need} must be between 1 and the {} witness keys given",
        witnesses.len()
    );
    Ok(Some(Quorum { witnesses, need }))
}
