//! Verdict and `verify` benchmark (issues 4 and 5): a realistic million-pack log, then the
//! verdict read from the database in process and `verify` over HTTP.
//!
//! `cargo run --release --example verify_bench -- [--packs 1000000] [--clients 64]
//! [--seconds 20] [--postgres URL] [--dir DIR]`
//!
//! 1. Starts the real server in process (temporary SQLite database unless `--postgres`,
//!    embedded broker and HTTP on port 0) and registers a manufacturer (company prefix
//!    0614141), a wholesaler and `--pharmacies` pharmacies, each with a site.
//! 2. Loads the packs straight through the store, not MQTT: the same envelope, signer and index
//!    rows as `append_state_change`, about 1,000 entries per `Ledger::append`. Per pallet of
//!    1,000 packs: 10 commissionings of 100 serials (lot, expiry), 10 case packings, the
//!    pallet packing, 11 pallet events at the manufacturer and the wholesaler (shipping and
//!    receiving among them), the pallet unpacking, picking, shipping and receiving of each case
//!    to a pharmacy, the case unpacking, and the dispensing of one pack per case. A pack thus has
//!    19 (1 % of packs: 20) events in its history, 15 of them inherited from its case and pallet.
//! 3. Benchmark A: `verify`'s resolver stages, in process, over random packs, timed inside the
//!    server's own path (`rxledger_graphql::verify::verification_timed`): `Packs::events`, the
//!    site directory, `derive_with`, the product checks, `verdict` and the inclusion proof of
//!    the evidence, with a warm event cache and with a fresh `Packs` (cold cache) per pack.
//! 4. Benchmark B: anonymous `verify` over HTTP/1.1 keep-alive from `--clients` tasks for
//!    `--seconds`, after a `{ __typename }` run that gives the HTTP + GraphQL floor.
//!
//! With `--dir DIR` the database and log key live in DIR and a second run reuses the loaded
//! packs. `--serve-for SECS` only loads and serves; `--client ADDR` only runs benchmark B
//! against a server started that way, so the client can run in a process of its own.

mod loaded;
use loaded::{MFR_PREFIX, gln, party, site, sscc};
mod shared;
use shared::rss_mb;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Parser;
use firmware_sim::events::{self, Party, Where, object_event, transfer};
use firmware_sim::http::Connection;
use rxledger::server::{self, App, ServeConfig};

use rxledger_graphql::verify::{self, Stage, Stopwatch, Wanted};
use rxledger_graphql::{Caller, Services};
use rxledger_store::packs::Packs;
use rxledger_store::{Admission, Ledger, NewEntry};
use serde_json::{Value, json};

/// The product every pack is of (under the manufacturer's prefix, `loaded::MFR_PREFIX`).
const ITEM_REF: &str = "107346";
const GTIN: &str = "10614141073464";
const WHS_PREFIX: &str = "4012345";
const PHARMACY_PREFIX: &str = "5012345";
const PACKS_PER_CASE: u64 = 100;
const CASES_PER_PALLET: u64 = 10;
const PACKS_PER_PALLET: u64 = PACKS_PER_CASE * CASES_PER_PALLET;
/// Pallets per `Ledger::append`: 83 entries each, so about 1,000 entries per batch.
const PALLETS_PER_BATCH: u64 = 12;
const HOUR_MS: i64 = 3_600_000;
/// The selection a pharmacy app would ask for: everything.
const VERIFY_QUERY: &str = "query($code:String!){verify(code:$code){verdict dispensable status \
    reasons{code severity message evidence} product{gtin serial lot expiry} \
    evidence{index leafHash treeSize proof} checkpointSize checkpointNote}}";

#[derive(Parser, Debug)]
#[command(about = "Verdict and verify-over-HTTP benchmark (issues 4 and 5)")]
struct Args {
    /// Packs to load (a multiple of 1,000: whole pallets).
    #[arg(long, default_value_t = 1_000_000)]
    packs: u64,
    /// Concurrent HTTP clients, each with one keep-alive connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Length of the HTTP run.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Random packs for the in-process benchmark.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Pharmacies the cases are shipped to (each one a registered site).
    #[arg(long, default_value_t = 100)]
    pharmacies: u64,
    /// An empty PostgreSQL database to use instead of a temporary SQLite file.
    #[arg(long)]
    postgres: Option<String>,
    /// Keep the SQLite database and log key here; a later run with the same --packs reuses them.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only load and serve HTTP for this many seconds (for a client in another process).
    #[arg(long)]
    serve_for: Option<u64>,
    /// Only run the HTTP benchmark against a server at this address.
    #[arg(long)]
    client: Option<SocketAddr>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    shared::init_logging();
    let args = Args::parse();
    if args.packs == 0 || !args.packs.is_multiple_of(PACKS_PER_PALLET) {
        bail!("--packs must be a positive multiple of {PACKS_PER_PALLET}");
    }
    if let Some(addr) = args.client {
        http_benchmarks(addr, &args).await?;
        return Ok(());
    }
    println!("machine: {}", machine());

    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let database = match &args.postgres {
        Some(url) => url.clone(),
        None => dir.join("bench.db").display().to_string(),
    };
    let cfg = ServeConfig {
        database,
        origin: Some("bench.rxledger.local/log".into()),
        node_id: "verify-bench".into(),
        // The completeness benchmark (issue 24) needs the pack index map; answers that do
        // not select `completeness` do not read it.
        map: true,
        rate_limit: rxledger::ratelimit::RateLimit {
            per_second: 1e9,
            burst: 1e9,
        },
        ..ServeConfig::local(&dir)
    };
    let t = Instant::now();
    let app = server::start(cfg).await?;
    // On a reused --dir this is the start-up of a node with a large log: the index check
    // (issue 21) re-hashes every entry and rebuilds the map before anything is served.
    println!(
        "server started in {:.2} s with {} entries in its log (start-up index check included)",
        t.elapsed().as_secs_f64(),
        app.ledger.head().size
    );
    load_or_reuse(&app, &dir, &args).await?;
    let t = Instant::now();
    app.packs.load_index().await?;
    let (keys, rows) = app.ledger.postings().len();
    println!(
        "identifier index in memory: {keys} keys, {rows} rows, ready {:.2} s after the load (the server loads it in the background)",
        t.elapsed().as_secs_f64()
    );
    println!(
        "database: {}; RSS {:.0} MB",
        database_size(&dir, args.postgres.is_some()),
        rss_mb()
    );

    if let Some(secs) = args.serve_for {
        println!("serving on {} for {secs} s", app.http_addr);
        tokio::time::sleep(Duration::from_secs(secs)).await;
        app.shutdown().await;
        return Ok(());
    }

    in_process_benchmarks(&app, &args).await?;
    http_benchmarks(app.http_addr, &args).await?;
    println!("RSS at end {:.0} MB", rss_mb());
    app.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Loads `--packs` packs unless `dir` already holds exactly them (from an earlier `--dir` run).
async fn load_or_reuse(app: &App, dir: &Path, args: &Args) -> anyhow::Result<()> {
    let marker = dir.join("loaded.txt");
    let want = format!("{} {}", args.packs, args.pharmacies);
    let size = app.ledger.head().size;
    if size > 0 {
        let have = std::fs::read_to_string(&marker).unwrap_or_default();
        if have.trim() != want {
            bail!(
                "the database in {} already holds {size} entries of another load ({have:?}, want {want:?})",
                dir.display()
            );
        }
        println!(
            "reusing {} packs in {} ({size} entries)",
            args.packs,
            dir.display()
        );
        return Ok(());
    }
    register(app, args.pharmacies).await?;
    let start = Instant::now();
    let entries = load(app.ledger.clone(), args.packs, args.pharmacies).await?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "loaded {} packs as {entries} entries in {secs:.1} s ({:.0} packs/s, {:.0} entries/s)",
        args.packs,
        args.packs as f64 / secs,
        entries as f64 / secs
    );
    std::fs::write(&marker, want)?;
    Ok(())
}

async fn register(app: &App, pharmacies: u64) -> anyhow::Result<()> {
    let r = &app.registry;
    r.add_organization("acme", "Acme Pharma", "MANUFACTURER")
        .await?;
    r.add_company_prefix("acme", MFR_PREFIX).await?;
    r.add_site(&gln(MFR_PREFIX, 1), "acme", "Acme packaging plant")
        .await?;
    r.add_organization("whs", "Central Wholesale", "WHOLESALER")
        .await?;
    r.add_site(&gln(WHS_PREFIX, 1), "whs", "Central Wholesale DC")
        .await?;
    for p in 0..pharmacies {
        let id = pharmacy_org(p);
        r.add_organization(&id, &id, "PHARMACY").await?;
        r.add_site(&gln(PHARMACY_PREFIX, p + 1), &id, &id).await?;
    }
    Ok(())
}

/// Builds and signs batches on a thread of its own while this task appends the previous one.
async fn load(ledger: Arc<Ledger>, packs: u64, pharmacies: u64) -> anyhow::Result<u64> {
    let pallets = packs / PACKS_PER_PALLET;
    let base_ms = rxledger_store::now_ms() - 40 * 24 * HOUR_MS;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Vec<NewEntry>>>(2);
    let signer = ledger.clone();
    let producer = std::thread::spawn(move || {
        let mut first = 0;
        while first < pallets {
            let last = (first + PALLETS_PER_BATCH).min(pallets);
            let batch = (first..last)
                .flat_map(|p| pallet_events(p, base_ms, pharmacies))
                .map(|(org, event)| loaded::entry(&signer, &org, event))
                .collect::<anyhow::Result<Vec<_>>>();
            if tx.blocking_send(batch).is_err() {
                return;
            }
            first = last;
        }
    });
    let mut appended = 0u64;
    let mut last_report = Instant::now();
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let offered = batch.len();
        let done = ledger.append(batch).await?;
        let ok = done
            .admissions
            .iter()
            .filter(|a| matches!(a, Admission::Appended { .. }))
            .count();
        if ok != offered {
            bail!(
                "only {ok} of {offered} entries were appended: {:?}",
                done.admissions
                    .iter()
                    .find(|a| !matches!(a, Admission::Appended { .. }))
            );
        }
        appended += ok as u64;
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            println!(
                "  … {appended} entries, {} packs, RSS {:.0} MB",
                appended / 83 * PACKS_PER_PALLET,
                rss_mb()
            );
        }
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the batch builder panicked"))?;
    Ok(appended)
}

/// The 83 events of one pallet, in business order, with the submitting organization.
fn pallet_events(pallet: u64, base_ms: i64, pharmacies: u64) -> Vec<(String, Value)> {
    let p = Pallet::new(pallet, base_ms);
    let mut out = Vec::with_capacity(83);
    p.at_the_manufacturer(&mut out);
    p.at_the_wholesaler(&mut out);
    for i in 0..p.cases.len() {
        p.to_a_pharmacy(i, pharmacies, &mut out);
    }
    out
}

/// One pallet of cases, and the places and parties its events name.
struct Pallet {
    pallet: u64,
    base_ms: i64,
    cases: Vec<u64>,
    case_ids: Vec<String>,
    pallet_id: String,
    mfr: String,
    whs: String,
    mfr_party: String,
    whs_party: String,
}

impl Pallet {
    fn new(pallet: u64, base_ms: i64) -> Pallet {
        let cases: Vec<u64> = (0..CASES_PER_PALLET)
            .map(|c| pallet * CASES_PER_PALLET + c)
            .collect();
        Pallet {
            pallet,
            base_ms,
            case_ids: cases.iter().map(|c| sscc(0, *c)).collect(),
            cases,
            pallet_id: sscc(1, pallet),
            mfr: site(MFR_PREFIX, 1),
            whs: site(WHS_PREFIX, 1),
            mfr_party: party(MFR_PREFIX, 1),
            whs_party: party(WHS_PREFIX, 1),
        }
    }

    /// The event time `hour` hours into the pallet's journey.
    fn at(&self, hour: i64) -> String {
        rxledger_core::epcis::format_time(
            self.base_ms + hour * HOUR_MS + self.pallet as i64 * 1_000,
        )
    }

    fn mfr_party(&self) -> Party<'_> {
        (&self.mfr_party, &self.mfr)
    }

    fn whs_party(&self) -> Party<'_> {
        (&self.whs_party, &self.whs)
    }

    /// The pallet's `shipping` or `receiving` at `site`, from Acme to the wholesaler under
    /// one despatch advice.
    fn to_the_wholesaler(&self, hour: i64, step: &str, site: &str) -> Value {
        let desadv = format!(
            "urn:epcglobal:cbv:bt:{}:D{}",
            gln(MFR_PREFIX, 1),
            self.pallet
        );
        let one = std::slice::from_ref(&self.pallet_id);
        let (from, to) = (self.mfr_party(), self.whs_party());
        transfer(&self.at(hour), step, one, site, from, to, &desadv)
    }

    /// Commissioning, case packing, palletising, storing, shipping and departure.
    fn at_the_manufacturer(&self, out: &mut Vec<(String, Value)>) {
        let acme = |e: Value| ("acme".to_string(), e);
        let mfr = &self.mfr;
        for &c in &self.cases {
            out.push(acme(events::commissioning(
                &self.at(0),
                &case_packs(c),
                Where::Site(mfr),
                &lot_of(c * PACKS_PER_CASE),
                "2030-12-31",
            )));
        }
        for (&c, case_id) in self.cases.iter().zip(&self.case_ids) {
            let packs = case_packs(c);
            out.push(acme(events::aggregation(
                &self.at(1),
                "ADD",
                case_id,
                &packs,
                mfr,
            )));
        }
        out.push(acme(events::aggregation(
            &self.at(2),
            "ADD",
            &self.pallet_id,
            &self.case_ids,
            mfr,
        )));
        let one = std::slice::from_ref(&self.pallet_id);
        for (hour, step, disp) in [
            (3, "storing", "sellable_not_accessible"),
            (4, "inspecting", "conformant"),
            (5, "staging_outbound", "in_progress"),
            (6, "loading", "in_progress"),
        ] {
            out.push(acme(object_event(
                &self.at(hour),
                "OBSERVE",
                step,
                disp,
                one,
                mfr,
            )));
        }
        out.push(acme(self.to_the_wholesaler(7, "shipping", mfr)));
        out.push(acme(object_event(
            &self.at(8),
            "OBSERVE",
            "departing",
            "in_transit",
            one,
            mfr,
        )));
    }

    /// Arrival, receiving, storing and unpacking of the pallet.
    fn at_the_wholesaler(&self, out: &mut Vec<(String, Value)>) {
        let wholesaler = |e: Value| ("whs".to_string(), e);
        let whs = &self.whs;
        let one = std::slice::from_ref(&self.pallet_id);
        let observe =
            |hour, step, disp| object_event(&self.at(hour), "OBSERVE", step, disp, one, whs);
        out.push(wholesaler(observe(20, "arriving", "in_transit")));
        out.push(wholesaler(observe(21, "unloading", "in_progress")));
        out.push(wholesaler(self.to_the_wholesaler(22, "receiving", whs)));
        out.push(wholesaler(observe(
            23,
            "accepting",
            "sellable_not_accessible",
        )));
        out.push(wholesaler(observe(24, "storing", "sellable_accessible")));
        out.push(wholesaler(events::aggregation(
            &self.at(30),
            "DELETE",
            &self.pallet_id,
            &self.case_ids,
            whs,
        )));
    }

    /// The pallet's `i`th case picked and shipped to its pharmacy, received, unpacked, one
    /// pack dispensed.
    fn to_a_pharmacy(&self, i: usize, pharmacies: u64, out: &mut Vec<(String, Value)>) {
        let (c, case_id) = (self.cases[i], &self.case_ids[i]);
        let wholesaler = |e: Value| ("whs".to_string(), e);
        let ph = c % pharmacies;
        let ph_site = site(PHARMACY_PREFIX, ph + 1);
        let ph_pgln = party(PHARMACY_PREFIX, ph + 1);
        let ph_party = (ph_pgln.as_str(), ph_site.as_str());
        let ph_org = pharmacy_org(ph);
        let one = std::slice::from_ref(case_id);
        let desadv = format!("urn:epcglobal:cbv:bt:{}:C{c}", gln(WHS_PREFIX, 1));
        let whs = &self.whs;
        out.push(wholesaler(object_event(
            &self.at(31),
            "OBSERVE",
            "picking",
            "in_progress",
            one,
            whs,
        )));
        let from = self.whs_party();
        out.push(wholesaler(transfer(
            &self.at(32),
            "shipping",
            one,
            whs,
            from,
            ph_party,
            &desadv,
        )));
        out.push((
            ph_org.clone(),
            transfer(
                &self.at(40),
                "receiving",
                one,
                &ph_site,
                from,
                ph_party,
                &desadv,
            ),
        ));
        out.push((
            ph_org.clone(),
            events::aggregation(&self.at(41), "DELETE", case_id, &case_packs(c), &ph_site),
        ));
        out.push((
            ph_org,
            object_event(
                &self.at(50),
                "OBSERVE",
                "dispensing",
                "dispensed",
                &[sgtin_urn(c * PACKS_PER_CASE)],
                &ph_site,
            ),
        ));
    }
}

/// The EPCs of the packs in case `c`.
fn case_packs(c: u64) -> Vec<String> {
    (c * PACKS_PER_CASE..(c + 1) * PACKS_PER_CASE)
        .map(sgtin_urn)
        .collect()
}

fn sgtin_urn(pack: u64) -> String {
    format!("urn:epc:id:sgtin:{MFR_PREFIX}.{ITEM_REF}.{}", serial(pack))
}

fn serial(pack: u64) -> String {
    format!("P{pack:08}")
}

/// One lot per 10,000 packs.
fn lot_of(pack: u64) -> String {
    format!("L{:05}", pack / 10_000)
}

fn pharmacy_org(p: u64) -> String {
    format!("pharmacy-{p:03}")
}

/// What a pharmacist's scanner sends: GTIN, expiry, lot and serial.
fn scan_code(pack: u64) -> String {
    format!(
        "(01){GTIN}(17)301231(10){}(21){}",
        lot_of(pack),
        serial(pack)
    )
}

// ---------------------------------------------------------------------------------------------
// Benchmark A: the resolver's stages, in process
// ---------------------------------------------------------------------------------------------

/// Microseconds spent in each stage of one verdict.
#[derive(Default, Clone, Copy)]
struct Stages {
    parse: f64,
    events: f64,
    directory: f64,
    derive: f64,
    product: f64,
    verdict: f64,
    evidence: f64,
    history: usize,
    found: usize,
}

impl Stages {
    /// `Packs::events` + `derive_with` + `verdict`: the issue-4 figure.
    fn core(&self) -> f64 {
        self.events + self.derive + self.verdict
    }
    fn total(&self) -> f64 {
        self.parse
            + self.events
            + self.directory
            + self.derive
            + self.product
            + self.verdict
            + self.evidence
    }
}

/// Times the stages of the server's own `verify` path (`rxledger_graphql::verify`), as the
/// HTTP benchmark asks it: anonymous, with evidence, without the timeline.
struct Laps {
    t: Instant,
    stages: Stages,
}

impl Stopwatch for Laps {
    fn lap(&mut self, stage: Stage) {
        let us = self.t.elapsed().as_secs_f64() * 1e6;
        self.t = Instant::now();
        let s = &mut self.stages;
        match stage {
            Stage::Parse => s.parse += us,
            Stage::Events => s.events += us,
            Stage::Directory => s.directory += us,
            Stage::Derive => s.derive += us,
            Stage::Product => s.product += us,
            Stage::Verdict => s.verdict += us,
            Stage::Evidence => s.evidence += us,
        }
    }

    fn found(&mut self, events: usize) {
        self.stages.found = events;
    }

    fn derived(&mut self, history_items: usize) {
        self.stages.history = history_items;
    }
}

/// One verification through the real resolver path, timed per stage.
async fn timed_verdict(services: &Services, code: &str) -> anyhow::Result<Stages> {
    let mut laps = Laps {
        t: Instant::now(),
        stages: Stages::default(),
    };
    let wanted = Wanted {
        evidence: true,
        timeline: false,
        trade_item: false,
        completeness: false,
    };
    let v = verify::verification_timed(services, &Caller::Anonymous, code, wanted, &mut laps)
        .await
        .map_err(|e| anyhow::anyhow!("verify {code}: {}: {}", e.code.as_str(), e.message))?;
    std::hint::black_box(v);
    Ok(laps.stages)
}

/// The server's services, reading packs through `packs`.
fn services_with(app: &App, packs: Arc<Packs>) -> Services {
    Services {
        ledger: app.ledger.clone(),
        registry: app.registry.clone(),
        alerts: app.alerts.clone(),
        api_keys: app.api_keys.clone(),
        products: rxledger_store::Products::new(app.ledger.database().clone()),
        packs,
        verify_latency: app.verify_latency.clone(),
    }
}

async fn in_process_benchmarks(app: &App, args: &Args) -> anyhow::Result<()> {
    let db = app.ledger.database().clone();
    let mut rng = Rng(0x5eed_1234);
    let sample: Vec<u64> = (0..args.samples).map(|_| rng.below(args.packs)).collect();
    let codes: Vec<String> = sample.iter().map(|p| scan_code(*p)).collect();

    // A sanity check that the sample is what the brief asks for.
    let server = services_with(app, app.packs.clone());
    let probe = timed_verdict(&server, &codes[0]).await?;
    println!(
        "\nA. verdict in process, {} random packs (pack {} has {} history items)",
        args.samples, sample[0], probe.history
    );

    // Cold: a fresh `Packs` per pack, so every event is read from the database and parsed
    // again. "table" also walks the `epcs` table; "index" uses the in-memory identifier index.
    let (table, table_secs) = time_each(&codes, || {
        services_with(app, Arc::new(Packs::new(db.clone())))
    })
    .await?;
    let indexed = || Arc::new(Packs::indexed(db.clone(), app.ledger.postings()));
    let (cold, cold_secs) = time_each(&codes, || services_with(app, indexed())).await?;
    let warm_packs = services_with(app, indexed());
    time_each(&codes, || warm_packs.clone()).await?;
    let (warm, warm_secs) = time_each(&codes, || warm_packs.clone()).await?;

    let hist: Vec<f64> = warm.iter().map(|s| s.history as f64).collect();
    let mut found: Vec<f64> = warm.iter().map(|s| s.found as f64).collect();
    found.sort_by(f64::total_cmp);
    println!(
        "events per pack from Packs::events: median {:.0}",
        quantile(&found, 0.5)
    );
    println!(
        "history items per pack: min {:.0}, median {:.0}, max {:.0}",
        quantile(&hist, 0.0),
        quantile(&hist, 0.5),
        quantile(&hist, 1.0)
    );
    for (name, runs, secs) in [
        ("cold, table walk,", &table, table_secs),
        ("cold, index in memory,", &cold, cold_secs),
        ("warm, index in memory,", &warm, warm_secs),
    ] {
        print_stages(name, runs, secs);
    }

    schema_benchmark(&server, &codes).await?;
    completeness_benchmark(&server, &codes).await?;

    // What the resolver alone sustains on this machine.
    println!(
        "resolver alone, {} concurrent tasks, 5 s, the server's Packs:",
        args.clients
    );
    let (n, mut lat) = resolver_run(&server, args).await?;
    println!("  {:.0}/s  {}", n as f64 / 5.0, summary_us(&mut lat));
    Ok(())
}

/// Issue 24: what a verdict's completeness proof costs. Per random pack, the real answer
/// (`Wanted::ALL`) with and without `completeness`: the extra bytes of its JSON, the time the
/// server takes to add it, and the time a client takes to check it offline
/// (`rxledger::verify_answer`, the core's `Completeness::verify`, with the log key).
async fn completeness_benchmark(server: &Services, codes: &[String]) -> anyhow::Result<()> {
    let without = Wanted {
        completeness: false,
        ..Wanted::ALL
    };
    let vkey = server.ledger.verifier().to_vkey();
    let (mut extra, mut build_us, mut check_us, mut ids) = (vec![], vec![], vec![], vec![]);
    for code in codes {
        let c = &Caller::Anonymous;
        let t = Instant::now();
        let plain = verify::verification(server, c, code, without).await;
        let plain_us = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let full = verify::verification(server, c, code, Wanted::ALL).await;
        build_us.push(t.elapsed().as_secs_f64() * 1e6 - plain_us);
        let (plain, full) = match (plain, full) {
            (Ok(p), Ok(f)) => (serde_json::to_vec(&p)?, serde_json::to_value(&f)?),
            _ => bail!("verify {code} failed"),
        };
        extra.push((serde_json::to_vec(&full)?.len() - plain.len()) as f64);
        let note = full["checkpointNote"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = Instant::now();
        let verified = rxledger::verify_answer::verify_answer(&full, &note, Some(&vkey))
            .map_err(|e| anyhow::anyhow!("{code}: {e}"))?;
        check_us.push(t.elapsed().as_secs_f64() * 1e6);
        ids.push(verified.identifiers.len() as f64);
    }
    ids.sort_by(f64::total_cmp);
    println!(
        "completeness (issue 24), {} packs, median {:.0} identifiers each:",
        codes.len(),
        quantile(&ids, 0.5)
    );
    println!(
        "  extra answer bytes (JSON):    {}",
        summary_bytes(&mut extra)
    );
    println!(
        "  server time to add it:        {}",
        summary_us(&mut build_us)
    );
    println!(
        "  client check (verify-answer): {}",
        summary_us(&mut check_us)
    );
    Ok(())
}

fn summary_bytes(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "median {:.0} B, p99 {:.0} B, max {:.0} B",
        quantile(v, 0.5),
        quantile(v, 0.99),
        quantile(v, 1.0)
    )
}

/// One timed verification per code, each through the services `with` gives; the stages and
/// the seconds they took in all.
async fn time_each(
    codes: &[String],
    with: impl Fn() -> Services,
) -> anyhow::Result<(Vec<Stages>, f64)> {
    let mut runs = Vec::with_capacity(codes.len());
    let start = Instant::now();
    for code in codes {
        runs.push(timed_verdict(&with(), code).await?);
    }
    Ok((runs, start.elapsed().as_secs_f64()))
}

fn print_stages(name: &str, runs: &[Stages], secs: f64) {
    println!(
        "{name} event cache ({} verdicts in {secs:.2} s, {:.0}/s on one task):",
        runs.len(),
        runs.len() as f64 / secs
    );
    stage_line("  events+derive+verdict", runs, Stages::core);
    stage_line("  Packs::events        ", runs, |s| s.events);
    stage_line("  directory (memory)   ", runs, |s| s.directory);
    stage_line("  derive_with          ", runs, |s| s.derive);
    stage_line("  product checks       ", runs, |s| s.product);
    stage_line("  verdict              ", runs, |s| s.verdict);
    stage_line("  evidence proofs      ", runs, |s| s.evidence);
    stage_line("  parse code           ", runs, |s| s.parse);
    stage_line("  whole resolver       ", runs, Stages::total);
}

/// `verify` through async-graphql, without HTTP, against `{ __typename }`.
async fn schema_benchmark(server: &Services, codes: &[String]) -> anyhow::Result<()> {
    let schema = rxledger_graphql::schema(server.clone());
    for code in codes {
        schema.execute(verify_request(code)).await;
    }
    let mut lat = Vec::with_capacity(codes.len());
    for code in codes {
        let t = Instant::now();
        let r = schema.execute(verify_request(code)).await;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        if !r.errors.is_empty() {
            bail!("verify failed: {:?}", r.errors);
        }
    }
    let mut trivial = Vec::with_capacity(codes.len());
    for _ in codes {
        let t = Instant::now();
        schema.execute("{ __typename }").await;
        trivial.push(t.elapsed().as_secs_f64() * 1e6);
    }
    println!("schema.execute, warm cache, one task:");
    println!("  verify                 {}", summary_us(&mut lat));
    println!("  {{ __typename }}         {}", summary_us(&mut trivial));
    Ok(())
}

async fn resolver_run(server: &Services, args: &Args) -> anyhow::Result<(u64, Vec<f64>)> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (server, n) = (server.clone(), args.packs);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x1234_5678 ^ (c as u64 + 1));
            let mut lat = Vec::new();
            while Instant::now() < end {
                let code = scan_code(rng.below(n));
                let t = Instant::now();
                timed_verdict(&server, &code).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                // A verdict from warm caches never waits, so without this a task would keep
                // its worker for its whole loop, and a verdict that does wait would be timed
                // across other tasks' loops (p99 76 ms against a p50 of 0.08 ms).
                tokio::task::yield_now().await;
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((all.len() as u64, all))
}

fn verify_request(code: &str) -> async_graphql::Request {
    async_graphql::Request::new(VERIFY_QUERY)
        .variables(async_graphql::Variables::from_json(json!({ "code": code })))
}

fn stage_line(name: &str, runs: &[Stages], f: impl Fn(&Stages) -> f64) {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    println!("{name} {}", summary_us(&mut v));
}

fn summary_us(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
        quantile(v, 0.5) / 1e3,
        quantile(v, 0.99) / 1e3,
        quantile(v, 1.0) / 1e3
    )
}

// ---------------------------------------------------------------------------------------------
// Benchmark B: verify over HTTP
// ---------------------------------------------------------------------------------------------

async fn http_benchmarks(addr: SocketAddr, args: &Args) -> anyhow::Result<()> {
    let floor = json!({ "query": "{ __typename }" }).to_string();
    println!(
        "\nB. HTTP/1.1 keep-alive, {} clients, anonymous, against {addr}",
        args.clients
    );
    let r = http_run(addr, args, 5, 0, move |_| floor.clone()).await?;
    r.print("{ __typename } (HTTP + GraphQL floor), 5 s");
    let packs = args.packs;
    // Two runs over different random packs: the first starts with whatever the event cache
    // holds (after a server start, nothing), the second finds the events the first read.
    for (run, what) in [
        (1u64, "first run"),
        (2, "second run, events cached by the first"),
    ] {
        let r = http_run(addr, args, args.seconds, run, move |rng| {
            json!({ "query": VERIFY_QUERY, "variables": { "code": scan_code(rng.below(packs)) } })
                .to_string()
        })
        .await?;
        r.print(&format!("verify, random packs, {} s, {what}", args.seconds));
        println!(
            "  verdicts: {}",
            r.verdicts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

struct HttpReport {
    requests: u64,
    secs: f64,
    latencies_us: Vec<f64>,
    errors: u64,
    verdicts: std::collections::BTreeMap<String, u64>,
}

impl HttpReport {
    fn print(&self, what: &str) {
        let mut l = self.latencies_us.clone();
        println!(
            "  {what}: {} requests, {:.0}/s, errors {}; latency {}",
            self.requests,
            self.requests as f64 / self.secs,
            self.errors,
            summary_us(&mut l)
        );
    }
}

/// Runs `clients` keep-alive connections for one second of warm-up plus `seconds`, each sending
/// the next body from `body` as soon as the previous answer is in.
async fn http_run(
    addr: SocketAddr,
    args: &Args,
    seconds: u64,
    salt: u64,
    body: impl Fn(&mut Rng) -> String + Send + Sync + 'static,
) -> anyhow::Result<HttpReport> {
    let body = Arc::new(body);
    let warm_until = Instant::now() + Duration::from_secs(1);
    let end = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1) ^ (salt << 32));
            let mut conn = Connection::open(addr).await?;
            let host = addr.to_string();
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut verdicts = std::collections::BTreeMap::<String, u64>::new();
            loop {
                let b = body(&mut rng);
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let (status, resp) = conn
                    .send(&host, "POST", "/graphql", JSON, b.as_bytes(), false)
                    .await?;
                let done = Instant::now();
                if done < warm_until {
                    continue;
                }
                lat.push((done - t).as_secs_f64() * 1e6);
                // The load generator shares the two cores with the server, so it reads only
                // what it checks: no error, and the verdict (the server writes compact JSON).
                if status != 200
                    || find(&resp, b"\"errors\"").is_some()
                    || !resp.starts_with(b"{\"data\":")
                {
                    errors += 1;
                } else if let Some(verdict) = string_after(&resp, b"\"verdict\":\"") {
                    *verdicts.entry(verdict.to_string()).or_default() += 1;
                }
            }
            anyhow::Ok((lat, errors, verdicts))
        }));
    }
    let mut report = HttpReport {
        requests: 0,
        secs: seconds as f64,
        latencies_us: Vec::new(),
        errors: 0,
        verdicts: Default::default(),
    };
    for t in tasks {
        let (lat, errors, verdicts) = t.await??;
        report.requests += lat.len() as u64;
        report.latencies_us.extend(lat);
        report.errors += errors;
        for (k, v) in verdicts {
            *report.verdicts.entry(k).or_default() += v;
        }
    }
    Ok(report)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // memmem, not `windows().position()`: the load generator shares the two cores with the
    // server, so it should not compare each ~12 KB answer byte by byte.
    memchr::memmem::find(haystack, needle)
}

/// The JSON string value that follows `key` (which ends with the opening quote).
fn string_after<'a>(body: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let start = find(body, key)? + key.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// The request header of every benchmark request.
const JSON: &[(&str, &str)] = &[("Content-Type", "application/json")];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// SplitMix64: reproducible samples without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn database_size(dir: &Path, postgres: bool) -> String {
    if postgres {
        return "PostgreSQL".into();
    }
    let mb: u64 = ["bench.db", "bench.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>()
        / 1_000_000;
    format!("SQLite, {mb} MB")
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
        / 1024.0;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}, {mem_gb:.0} GB RAM")
}
