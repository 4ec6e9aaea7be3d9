//! End-to-end ingest benchmark: signed envelopes over MQTT into the SQLite ledger.
//!
//! `cargo run --release --example ingest_bench -- [EVENTS] [DEVICES] [WINDOW] [mqtt://HOST:PORT] [postgres://…] [pair|witness-pair|nomap] [stream]`
//!
//! Without a mode, one run on the server's defaults, the pack index map included. With
//! `pair`, the run is made four times in one process, alternately without and with the pack
//! index map (issue 24), and the ratio of the rates and the disk per entry are printed. With
//! `witness-pair`, alternately without witnesses and with two local `rxledger witness` servers
//! and a quorum of 2 (issue 21): each witnessed run also waits, after its last receipt, for a
//! checkpoint cosigned by both that covers every entry, and prints how long that took. With
//! `nomap`, one run without the map (`rxledger serve --completeness-map=false`). With
//! `stream`, each device signs its envelopes on a thread of its own while the run goes, a
//! window ahead of what it sends, so that memory stays flat however many there are (issue 25's
//! 10 M run); the signing then shares the cores, and the rate is lower than with envelopes
//! signed in advance. Runs of 2,000,000 envelopes or more print the rate of each million and
//! the last million's against the first's, and the RSS after the first million. With a
//! `postgres://` URL (of a database that exists, such as `postgres://postgres@127.0.0.1/test`),
//! each run's ledger is a fresh database created on that server and dropped after the run,
//! instead of a SQLite file; its size is `pg_database_size`.
//!
//! In one process: the real server (embedded rumqttd, or the external broker given as
//! `mqtt://…`, on a topic root of its own; SQLite in a temp dir, default batch settings) and DEVICES MQTT clients that keep at most WINDOW envelopes without a receipt.
//! Each device keeps its share of the WINDOW (at least one, so with more devices than the
//! WINDOW each has one and all of them together the WINDOW), and the server's device window
//! (`serve --device-window`) is that share unless `RXLEDGER_DEVICE_WINDOW` says otherwise.
//! The clock starts once every device has connected and subscribed.
//! Envelopes are signed before the clock starts. It prints, in the same run, the bare k256
//! verification rate on one and on all cores (the ceiling), the end-to-end rate and its ratio
//! to the ceiling, publish→receipt latency percentiles, and RSS over the run.

mod shared;
use shared::{cpu_seconds, rss_mb};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use firmware_sim::events::{self, Where};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rxledger::server::{self, ServeConfig};
use rxledger_core::envelope::{self, Body};
use rxledger_core::keys::SigningKey;
use rxledger_core::mqttauth;
use rxledger_ingest::{IngestConfig, MqttTarget};
use tokio::sync::Semaphore;

/// The fields of a receipt the clients read, borrowed from its bytes: the simulated scanners
/// share the server's two cores, so they parse no more than they need.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReceiptHead<'a> {
    status: &'a str,
    code: Option<&'a str>,
    payload_hash: &'a str,
}

/// Bare k256 verification on `threads` threads: verifications per second of wall time, and
/// CPU seconds of this process per verification.
fn verify_rate(threads: usize) -> (f64, f64) {
    let key = SigningKey::from_bytes(&[5u8; 32]).unwrap();
    let msg = vec![7u8; 300];
    let sig = key.sign(&msg);
    let pk = key.public_key();
    let per = 20_000;
    let cpu = cpu_seconds();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..per {
                    pk.verify(&msg, &sig).unwrap();
                }
            });
        }
    });
    let n = (per * threads) as f64;
    (n / start.elapsed().as_secs_f64(), (cpu_seconds() - cpu) / n)
}

/// The ceiling, measured in rounds: the other vCPU of these machines is shared with other
/// tenants, and one round can read half or double the next.
fn ceiling_rounds(cores: usize, rounds: usize) -> Vec<(f64, f64)> {
    (0..rounds).map(|_| verify_rate(cores)).collect()
}

/// The rates of `rounds`, for printing.
fn rates(rounds: &[(f64, f64)]) -> String {
    rounds
        .iter()
        .map(|(r, _)| format!("{r:.0}/s"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn event(serial: u64) -> serde_json::Value {
    events::commissioning(
        "2026-11-25T10:00:00.000Z",
        &[format!("urn:epc:id:sgtin:0614141.107346.B{serial}")],
        Where::ReadPoint("urn:epc:id:sgln:0614141.00000.0"),
        "L1",
        "2030-01-31",
    )
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// What the command line asks for.
struct Options {
    total: u64,
    devices: usize,
    window: usize,
    external: Option<rxledger_ingest::MqttUrl>,
    topic_root: String,
    /// The PostgreSQL server each run creates its database on, instead of SQLite.
    postgres: Option<String>,
    /// What the runs compare.
    mode: Mode,
    /// Sign while sending, instead of before the clock starts.
    stream: bool,
}

/// What a benchmark's runs compare.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One run on the server's defaults (the map included).
    Single,
    /// Without and with the pack index map, alternately.
    MapPair,
    /// One run without the pack index map.
    NoMap,
    /// Without and with two witnesses (quorum 2), alternately.
    WitnessPair,
}

/// What one run turns on besides the defaults.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Features {
    map: bool,
    witnesses: bool,
}

impl Options {
    /// Envelopes each device keeps without a receipt: its share of the window, at least one.
    fn share(&self) -> usize {
        (self.window / self.devices.max(1)).max(1)
    }

    fn from_args() -> anyhow::Result<Options> {
        let args: Vec<u64> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        let external = std::env::args()
            .skip(1)
            .find(|a| a.starts_with("mqtt://"))
            .map(|u| rxledger_ingest::MqttUrl::parse(&u))
            .transpose()?;
        // A topic root of this run's own, so an external broker's other traffic stays apart.
        let topic_root = match &external {
            Some(_) => format!("bench{}/v1", std::process::id()),
            None => envelope::DEFAULT_TOPIC_ROOT.to_string(),
        };
        Ok(Options {
            total: *args.first().unwrap_or(&100_000),
            devices: *args.get(1).unwrap_or(&8) as usize,
            window: *args.get(2).unwrap_or(&4_000) as usize,
            external,
            topic_root,
            postgres: std::env::args()
                .skip(1)
                .find(|a| a.starts_with("postgres://") || a.starts_with("postgresql://")),
            mode: if std::env::args().skip(1).any(|a| a == "pair") {
                Mode::MapPair
            } else if std::env::args().skip(1).any(|a| a == "witness-pair") {
                Mode::WitnessPair
            } else if std::env::args().skip(1).any(|a| a == "nomap") {
                Mode::NoMap
            } else {
                Mode::Single
            },
            stream: std::env::args().skip(1).any(|a| a == "stream"),
        })
    }
}

/// One simulated scanner: its id, MQTT password and signed envelopes with their hashes.
type Work = (String, String, Envelopes);

/// A device's envelopes, with their payload hashes: signed before the run, or as it goes.
enum Envelopes {
    Signed(std::vec::IntoIter<(String, Vec<u8>)>),
    Streamed {
        rx: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
        n: usize,
    },
}

impl Envelopes {
    fn len(&self) -> usize {
        match self {
            Envelopes::Signed(v) => v.len(),
            Envelopes::Streamed { n, .. } => *n,
        }
    }
}

/// Devices connecting at once.
static CONNECTING: Semaphore = Semaphore::const_new(200);

/// Envelopes receipted so far in this process, for the progress lines.
static RECEIPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Publish→receipt latencies (ms) and receipts by status or code.
type Tally = (Vec<f64>, HashMap<String, u64>);

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    shared::init_logging();
    let opts = Options::from_args()?;
    // Each client holds its own socket and three of the server's (the gate's two and
    // rumqttd's), all in this one process.
    let want = opts.devices as u64 * 4 + 4096;
    let allowed = server::raise_open_files(want);
    if allowed < want {
        eprintln!(
            "open files: {allowed} allowed, {want} wanted for {} devices",
            opts.devices
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);

    let (v1, _) = verify_rate(1);
    let ceiling = ceiling_rounds(cores, 3);
    println!(
        "k256 verify: {v1:.0}/s on 1 core; on {cores} cores, before the run: {}",
        rates(&ceiling)
    );

    // The server's defaults: the map on, no witnesses.
    let defaults = Features {
        map: true,
        witnesses: false,
    };
    let nomap = Features {
        map: false,
        ..defaults
    };
    let modes = match opts.mode {
        Mode::Single => vec![defaults],
        Mode::NoMap => vec![nomap],
        Mode::MapPair => vec![nomap, defaults, nomap, defaults],
        Mode::WitnessPair => {
            let w = Features {
                witnesses: true,
                ..defaults
            };
            vec![defaults, w, defaults, w]
        }
    };
    let mut runs = Vec::new();
    for f in modes {
        println!(
            "\n== run {} the pack index map, {} witnesses ==",
            if f.map { "with" } else { "without" },
            if f.witnesses { "with two" } else { "without" }
        );
        runs.push((f, one_run(&opts, f, &ceiling, cores).await?));
    }
    // A pair: the first two runs are the one without and the one with the feature.
    if let [(base, _), (w, _), ..] = runs[..] {
        let of = |f: Features| -> Vec<(f64, f64)> {
            runs.iter().filter(|r| r.0 == f).map(|r| r.1).collect()
        };
        let (off, on) = (of(base), of(w));
        let mean = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
            v.iter().map(f).sum::<f64>() / v.len() as f64
        };
        println!(
            "\n{}: {:.0} events/s with it, {:.0} without: {:.2}x; disk {:.0} B per envelope with it, {:.0} without",
            if w.witnesses {
                "two witnesses, quorum 2"
            } else {
                "pack index map"
            },
            mean(&on, |r| r.0),
            mean(&off, |r| r.0),
            mean(&on, |r| r.0) / mean(&off, |r| r.0),
            mean(&on, |r| r.1),
            mean(&off, |r| r.1),
        );
    }
    Ok(())
}

/// One run on a fresh server and database; its rate and database bytes per envelope.
async fn one_run(
    opts: &Options,
    features: Features,
    ceiling: &[(f64, f64)],
    cores: usize,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let witnesses = if features.witnesses {
        two_witnesses(dir.path()).await?
    } else {
        Vec::new()
    };
    let pg = match &opts.postgres {
        Some(admin) => Some(rxledger_store::testdb::TempDb::postgres_on(admin).await?),
        None => None,
    };
    let database = match &pg {
        Some(t) => t.url.clone(),
        None => dir.path().join("bench.db").display().to_string(),
    };
    println!(
        "ledger: {}",
        match &pg {
            Some(_) => "PostgreSQL, a fresh database",
            None => "SQLite in a temporary directory",
        }
    );
    let app = start_server(opts, dir.path(), &database, features, &witnesses).await?;
    let work = sign(&app, opts).await?;
    let total = work
        .iter()
        .map(|(_, _, envs)| envs.len() as u64)
        .sum::<u64>();
    println!(
        "{} {total} envelopes for {} devices; RSS {:.0} MB",
        match opts.stream {
            true => "signing as they are sent:",
            false => "signed",
        },
        opts.devices,
        rss_mb()
    );

    let (mqtt_host, mqtt_port) = app.mqtt_addr.clone();
    println!(
        "broker: {} at {mqtt_host}:{mqtt_port}, topic root {}",
        if opts.external.is_some() {
            "external"
        } else {
            "embedded rumqttd"
        },
        opts.topic_root
    );
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let receipted_before = RECEIPTED.load(std::sync::atomic::Ordering::Relaxed);
    let samples: Arc<std::sync::Mutex<Vec<Sample>>> = Default::default();
    let rss_sampler = tokio::spawn({
        let samples = samples.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let sample = Sample {
                    secs: start.elapsed().as_secs_f64(),
                    receipted: RECEIPTED.load(std::sync::atomic::Ordering::Relaxed)
                        - receipted_before,
                    rss_mb: rss_mb(),
                };
                println!(
                    "t={:>4.0} s  receipted {}  RSS {:.0} MB",
                    sample.secs, sample.receipted, sample.rss_mb
                );
                samples.lock().unwrap().push(sample);
            }
        }
    });
    let ((latencies, counts), connected) = run_devices(work, &app, opts).await?;
    let secs = connected.elapsed().as_secs_f64();
    let cpu_per_event = (cpu_seconds() - cpu_start) / total as f64;
    rss_sampler.abort();
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    samples.push(Sample {
        secs,
        receipted: total,
        rss_mb: rss_mb(),
    });
    print_per_million(&samples);
    let run = Measured {
        total,
        secs,
        cpu_per_event,
        latencies,
        counts,
    };
    if features.witnesses {
        let size = app.ledger.head().size;
        let t = Instant::now();
        let mut rx = app.ledger.witnesses().subscribe();
        let covered = async {
            loop {
                if rx
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|c| c.size >= size)
                {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(120), covered)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no checkpoint cosigned by both witnesses covered {size} entries within 120 s"
                )
            })?;
        println!(
            "a checkpoint of {size} entries or more cosigned by both witnesses {:.0} ms after the last receipt (before the ceiling is measured again)",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    print_results(run, ceiling.to_vec(), cores);
    print_ingest_stats(&app, total);
    println!("RSS at end {:.0} MB", rss_mb());
    let entries = app.ledger.head().size.max(1);
    app.shutdown().await;
    // The raw entry bytes, against which item 7 of issue 25 measures the database.
    let db = rxledger_store::connect(&database).await?;
    let entry_bytes = query_i64(
        &db,
        "SELECT CAST(sum(length(data)) AS BIGINT) AS n FROM entries",
    )
    .await? as u64;
    let bytes: u64 = match pg {
        Some(t) => {
            let n = query_i64(
                &db,
                "SELECT pg_database_size(current_database())::bigint AS n",
            )
            .await?;
            db.conn.close().await?;
            t.drop_now().await;
            n as u64
        }
        None => {
            db.conn.close().await?;
            std::fs::read_dir(dir.path())?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("bench.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        }
    };
    println!(
        "database: {bytes} bytes, {entries} entries for {total} envelopes; {:.0} B per envelope, \
         {:.2}x the entry bytes ({entry_bytes} bytes, {:.0} B per envelope)",
        bytes as f64 / total as f64,
        bytes as f64 / entry_bytes.max(1) as f64,
        entry_bytes as f64 / total as f64,
    );
    Ok((total as f64 / secs, bytes as f64 / total as f64))
}

/// The one integer column `n` of the one row `sql` returns.
async fn query_i64(db: &rxledger_store::Database, sql: &str) -> anyhow::Result<i64> {
    use sea_orm::ConnectionTrait;
    let row = db
        .conn
        .query_one_raw(sea_orm::Statement::from_string(
            db.conn.get_database_backend(),
            sql,
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("{sql} returned no row"))?;
    Ok(row.try_get("", "n")?)
}

/// A progress line: seconds since the clock started, envelopes receipted, RSS.
struct Sample {
    secs: f64,
    receipted: u64,
    rss_mb: f64,
}

/// For runs of 2,000,000 envelopes or more: the rate of each million (the time it was
/// receipted in, between the 5 s samples by linear interpolation), the last million's rate
/// against the first's, and the RSS from the end of the first million on.
fn print_per_million(samples: &[Sample]) {
    const M: u64 = 1_000_000;
    let total = samples.last().map_or(0, |s| s.receipted);
    if total < 2 * M {
        return;
    }
    // When the receipts passed `n`.
    let at = |n: u64| -> f64 {
        let mut prev = (0.0, 0u64);
        for s in samples {
            if s.receipted >= n {
                let span = (s.receipted - prev.1).max(1) as f64;
                return prev.0 + (s.secs - prev.0) * (n - prev.1) as f64 / span;
            }
            prev = (s.secs, s.receipted);
        }
        prev.0
    };
    let rates: Vec<f64> = (1..=total / M)
        .map(|k| M as f64 / (at(k * M) - at((k - 1) * M)).max(1e-9))
        .collect();
    let shown: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
    println!("rate per million (events/s): {}", shown.join(", "));
    println!(
        "last million against the first: {:.2} ({:.0} against {:.0} events/s)",
        rates[rates.len() - 1] / rates[0],
        rates[rates.len() - 1],
        rates[0]
    );
    let after = at(M);
    let rss: Vec<f64> = samples
        .iter()
        .filter(|s| s.secs >= after)
        .map(|s| s.rss_mb)
        .collect();
    if let (Some(lo), Some(hi)) = (
        rss.iter().copied().reduce(f64::min),
        rss.iter().copied().reduce(f64::max),
    ) {
        println!("RSS after the first million: {lo:.0} to {hi:.0} MB");
    }
}

/// What one run measured.
struct Measured {
    total: u64,
    secs: f64,
    cpu_per_event: f64,
    latencies: Vec<f64>,
    counts: HashMap<String, u64>,
}

/// Measures the ceiling again after the run, then prints the run against it.
fn print_results(run: Measured, mut ceiling: Vec<(f64, f64)>, cores: usize) {
    let Measured {
        total,
        secs,
        cpu_per_event,
        latencies,
        counts,
    } = run;
    let rate = total as f64 / secs;
    let after = ceiling_rounds(cores, 3);
    println!(
        "k256 verify on {cores} cores, after the run: {}",
        rates(&after)
    );
    ceiling.extend(after);
    let vn = median(ceiling.iter().map(|(r, _)| *r).collect());
    let vmax = ceiling.iter().map(|(r, _)| *r).fold(0.0, f64::max);
    let cpu_per_verify = median(ceiling.iter().map(|(_, c)| *c).collect());
    let mut l = latencies;
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("ingested {total} envelopes in {secs:.1} s: {rate:.0} events/s end to end");
    println!(
        "ratio to the {cores}-core verify ceiling: {:.2} of the median of 6 rounds ({vn:.0}/s), \
         {:.2} of the fastest ({vmax:.0}/s)",
        rate / vn,
        rate / vmax
    );
    println!(
        "CPU per event: {:.1} us of process CPU time (server, broker and clients), against \
         {:.1} us per bare verification: verification is {:.2} of the CPU an event costs",
        cpu_per_event * 1e6,
        cpu_per_verify * 1e6,
        cpu_per_verify / cpu_per_event
    );
    println!(
        "publish→receipt latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&l, 0.5),
        pct(&l, 0.99),
        pct(&l, 1.0)
    );
    println!("receipts by status: {counts:?}");
}

/// The real server (SQLite in `dir`, default batch settings) and the manufacturer `acme`.
/// The log's two keys in `dir` and two `rxledger witness` servers on port 0 pinning its
/// Ed25519 key, each with its state in a directory of its own under `dir`.
async fn two_witnesses(
    dir: &std::path::Path,
) -> anyhow::Result<Vec<rxledger_witness::WitnessServer>> {
    use rxledger_core::ed25519::{Ed25519Key, EdKind};
    let key_path = dir.join("log.key");
    rxledger::keyfile::generate(&key_path, false)?;
    let ed: Ed25519Key =
        rxledger::keyfile::generate_key(&rxledger::keyfile::ed25519_path(&key_path), false)?;
    let log = ed.verifier(BENCH_ORIGIN, EdKind::Note)?;
    let mut out = Vec::new();
    for n in 1..=2 {
        let data = dir.join(format!("witness{n}"));
        std::fs::create_dir_all(&data)?;
        out.push(
            rxledger_witness::server::start(rxledger_witness::WitnessConfig {
                data,
                listen: "127.0.0.1:0".parse()?,
                name: Some(format!("witness.bench/w{n}")),
                logs: vec![log.clone()],
            })
            .await?,
        );
    }
    Ok(out)
}

/// The log's origin in every run (the witnesses pin it).
const BENCH_ORIGIN: &str = "bench.rxledger.local/log";

async fn start_server(
    opts: &Options,
    dir: &std::path::Path,
    database: &str,
    features: Features,
    witnesses: &[rxledger_witness::WitnessServer],
) -> anyhow::Result<server::App> {
    let cfg = ServeConfig {
        database: database.to_string(),
        mqtt: match opts.external.clone() {
            Some(url) => MqttTarget::External(url),
            None => ServeConfig::local(dir).mqtt,
        },
        node_id: format!("bench-node-{}", std::process::id()),
        ingest: IngestConfig {
            topic_root: opts.topic_root.clone(),
            // The same variable as `rxledger serve --mqtt-connections`.
            connections: env_count(
                "RXLEDGER_MQTT_CONNECTIONS",
                IngestConfig::default().connections,
            )?,
            // The same variable as `rxledger serve --batch-max`.
            batch_max: env_count("RXLEDGER_BATCH_MAX", IngestConfig::default().batch_max)?,
            // Each device keeps its share of the window in flight, so the embedded broker
            // lets it (`rxledger serve --device-window`); with more devices than the window,
            // one each. The same variable as `serve` sets it otherwise (the acks logs' size).
            device_window: env_count("RXLEDGER_DEVICE_WINDOW", opts.share())?,
            ..IngestConfig::default()
        },
        rate_limit: rxledger::ratelimit::RateLimit {
            per_second: 1e9,
            burst: 1e9,
        },
        map: features.map,
        origin: Some(BENCH_ORIGIN.into()),
        witnesses: witnesses
            .iter()
            .map(|w| {
                rxledger_witness::WitnessClient::parse(&format!(
                    "{}=http://{}",
                    w.verifier.to_vkey(),
                    w.addr
                ))
            })
            .collect::<Result<_, _>>()?,
        witness_quorum: witnesses.len(),
        ..ServeConfig::local(dir)
    };
    let app = server::start(cfg).await?;
    app.registry
        .add_organization("acme", "Acme", "MANUFACTURER")
        .await?;
    app.registry.add_company_prefix("acme", "0614141").await?;
    app.registry
        .add_site("0614141000005", "acme", "Plant")
        .await?;
    Ok(app)
}

/// Enrolls the devices and signs and hashes every envelope, before the clock starts.
async fn sign(app: &server::App, opts: &Options) -> anyhow::Result<Vec<Work>> {
    let per_dev = opts.total / opts.devices as u64;
    let mut work = Vec::new();
    for d in 0..opts.devices {
        let key = SigningKey::generate();
        let id = format!("bench-{d}");
        app.registry
            .enroll_device(&id, &key.public_key(), "acme", "0614141000005")
            .await?;
        let seal = {
            let (id, key) = (id.clone(), key.clone());
            move |i: u64| {
                let body = Body {
                    v: 1,
                    device_id: id.clone(),
                    seq: i + 1,
                    sent_at: "2026-11-25T10:00:00.000Z".into(),
                    events: vec![event(d as u64 * per_dev + i)],
                };
                let bytes = envelope::seal(&key, &body);
                (envelope::payload_hash(&bytes), bytes)
            }
        };
        let envs = if opts.stream {
            // Two windows ahead of the sender: the signer waits while the channel is full.
            let ahead = (2 * opts.window / opts.devices.max(1)).max(1);
            let (tx, rx) = tokio::sync::mpsc::channel(ahead);
            std::thread::spawn(move || {
                for i in 0..per_dev {
                    if tx.blocking_send(seal(i)).is_err() {
                        return;
                    }
                }
            });
            Envelopes::Streamed {
                rx,
                n: per_dev as usize,
            }
        } else {
            Envelopes::Signed((0..per_dev).map(seal).collect::<Vec<_>>().into_iter())
        };
        // The device's MQTT password, derived from its key and the log's (mqttauth).
        let password = mqttauth::device_password(&key, &app.ledger.key().public_key(), &id);
        work.push((id, password, envs));
    }
    Ok(work)
}

/// Runs every device at once and gathers their latencies and receipts.
///
/// The devices connect and subscribe first, all of them (10,000 take seconds); the clock of
/// the rate starts when the last one has, and is returned.
async fn run_devices(
    work: Vec<Work>,
    app: &server::App,
    opts: &Options,
) -> anyhow::Result<(Tally, Instant)> {
    let (host, port) = app.mqtt_addr.clone();
    // Each device keeps its share of the window without a receipt, and all of them together
    // the window.
    let share = opts.share();
    let all = Arc::new(Semaphore::new(opts.window));
    let connecting = Instant::now();
    let ready = Arc::new(tokio::sync::Barrier::new(work.len() + 1));
    let tasks: Vec<_> = work
        .into_iter()
        .map(|(id, password, envs)| {
            let broker = (host.clone(), port);
            let root = opts.topic_root.clone();
            let gate = (share, all.clone(), ready.clone());
            tokio::spawn(run_device(id, password, envs, broker, root, gate))
        })
        .collect();
    // A device that cannot connect panics with the reason, and never reaches the barrier.
    tokio::time::timeout(Duration::from_secs(300), ready.wait())
        .await
        .map_err(|_| anyhow::anyhow!("not every device connected within 300 s (see above)"))?;
    let connected = Instant::now();
    println!(
        "{} devices connected and subscribed in {:.1} s; RSS {:.0} MB",
        tasks.len(),
        connecting.elapsed().as_secs_f64(),
        rss_mb()
    );
    let (mut latencies, mut counts) = (Vec::new(), HashMap::<String, u64>::new());
    for t in tasks {
        let (mine, local) = t.await?;
        latencies.extend(mine);
        for (k, v) in local {
            *counts.entry(k).or_default() += v;
        }
    }
    Ok(((latencies, counts), connected))
}

/// One device: connects and subscribes, waits at `ready` for the others, then publishes its
/// envelopes, keeping at most `share` without a receipt (and taking a permit of `all` for
/// each), and times each receipt.
async fn run_device(
    id: String,
    password: String,
    mut envs: Envelopes,
    (host, port): (String, u16),
    root: String,
    (share, all, ready): (usize, Arc<Semaphore>, Arc<tokio::sync::Barrier>),
) -> Tally {
    let mut opts = MqttOptions::new(format!("{id}-client-{}", std::process::id()), host, port);
    // rumqttc allocates its in-flight table up front: no larger than the share needs, for
    // 10,000 devices in one process.
    opts.set_max_packet_size(1 << 20, 1 << 20)
        .set_inflight(share.clamp(16, 1000) as u16)
        .set_keep_alive(Duration::from_secs(60))
        .set_credentials(id.clone(), password);
    let (client, mut el) = AsyncClient::new(opts, share.clamp(16, 10_000));
    client
        .subscribe(envelope::acks_topic(&root, &id), QoS::AtLeastOnce)
        .await
        .unwrap();
    {
        // A few hundred connect at a time: thousands at once outrun the CONNECT timeout
        // (rumqttd takes one connection a millisecond, and the gate checks each login).
        let _turn = CONNECTING.acquire().await.unwrap();
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => break,
                Ok(_) => {}
                Err(e) => panic!("device {id} cannot connect: {e}"),
            }
        }
    }
    ready.wait().await;
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> =
        Arc::new(std::sync::Mutex::new(HashMap::with_capacity(share)));
    let window = Arc::new(Semaphore::new(share));
    let n = envs.len();
    let (sent2, window2, all2) = (sent.clone(), window.clone(), all.clone());
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut mine = Vec::with_capacity(n);
        let mut local: HashMap<String, u64> = HashMap::new();
        while got < n {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let r: ReceiptHead = serde_json::from_slice(&p.payload).unwrap();
                    let t = sent2.lock().unwrap().remove(r.payload_hash);
                    if let Some(t) = t {
                        mine.push(t.elapsed().as_secs_f64() * 1000.0);
                        got += 1;
                        RECEIPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        window2.add_permits(1);
                        all2.add_permits(1);
                    }
                    *local
                        .entry(r.code.unwrap_or(r.status).to_string())
                        .or_default() += 1;
                }
                Ok(_) => {}
                Err(e) => panic!("client connection failed: {e}"),
            }
        }
        (mine, local)
    });
    loop {
        let next = match &mut envs {
            Envelopes::Signed(v) => v.next(),
            Envelopes::Streamed { rx, .. } => rx.recv().await,
        };
        let Some((hash, e)) = next else { break };
        window.acquire().await.unwrap().forget();
        all.acquire().await.unwrap().forget();
        sent.lock().unwrap().insert(hash, Instant::now());
        client
            .publish(
                envelope::events_topic(&root, &id),
                QoS::AtLeastOnce,
                false,
                e,
            )
            .await
            .unwrap();
    }
    reader.await.unwrap()
}

/// The server's own counters: what it appended, and where a batch's time went.
fn print_ingest_stats(app: &server::App, total: u64) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    let st = app.ingest_stats();
    println!(
        "ingest stats: appended {}, duplicates {}, rejected {}, batches {}",
        st.appended.load(Relaxed),
        st.duplicates.load(Relaxed),
        st.rejected.load(Relaxed),
        st.batches.load(Relaxed)
    );
    let b = st.batches.load(Relaxed).max(1) as f64;
    let ms = |a: &AtomicU64| a.load(Relaxed) as f64 / 1000.0 / b;
    println!(
        "per batch (ms): check {:.2}, rules {:.2}, append {:.2}, acks+receipts {:.2}; {:.0} envelopes per batch",
        ms(&st.check_us),
        ms(&st.rules_us),
        ms(&st.append_us),
        ms(&st.ack_us),
        total as f64 / b
    );
}

/// A whole number of at least 1 from the environment, or `default` when it is not set.
fn env_count(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => anyhow::bail!("{name} must be a whole number of at least 1, not {v:?}"),
        },
    }
}
