//! Tracing-request benchmark (issue 23 item 1): a 1,000-pack lot traced in a log of
//! `--packs` packs, through the real server over HTTP.
//!
//! `cargo run --release --example trace_bench -- [--packs 1000000] [--samples 5] [--dir DIR]`
//!
//! 1. Starts the real server in process (temporary SQLite database, embedded broker, HTTP on
//!    port 0), registers a manufacturer, a wholesaler, 100 pharmacies and a regulator.
//! 2. Loads the packs straight through the store (the entries `append_state_change` writes,
//!    about 1,000 per `Ledger::append`): per lot of 1,000 packs, 10 commissionings of 100, 10
//!    case packings, a pallet packing, the pallet shipped to and received by the wholesaler,
//!    each case shipped to and received by a pharmacy. A pack's trace thus has 3 owners, 4
//!    transactions and 2 packings.
//! 3. Times `traceRequest` (TRANSACTION_INFORMATION, with the EPCIS document and the evidence
//!    bundle) for `--samples` random lots, and for single packs, as a regulator over HTTP.
//!
//! The target (issue 23): a 1,000-pack lot in under 1 s at 1M packs, in a release build.
//! `--packs 10000` checks that it runs in a debug build.

mod loaded;
use loaded::{MFR_PREFIX, gln, party, site, sscc};
mod shared;
use shared::rss_mb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use clap::Parser;
use firmware_sim::events::{self, Where, transfer};
use rxledger::server::{self, App, ServeConfig};

use rxledger_store::{Admission, Ledger};
use serde_json::{Value, json};

const ITEM_REF: &str = "107346";
const GTIN: &str = "10614141073464";
const WHS_PREFIX: &str = "4012345";
const PHARMACY_PREFIX: &str = "5012345";
const PHARMACIES: u64 = 100;
const PACKS_PER_CASE: u64 = 100;
const CASES_PER_LOT: u64 = 10;
const PACKS_PER_LOT: u64 = PACKS_PER_CASE * CASES_PER_LOT;
/// Lots per `Ledger::append`: 43 entries each.
const LOTS_PER_BATCH: u64 = 24;
const HOUR_MS: i64 = 3_600_000;
const TRACE: &str = "mutation($code: String!) { traceRequest(code: $code, scope: TRANSACTION_INFORMATION, reason: AUDIT, test: true) { request { entryIndex parties } packs { status owners { party { organization name gln } step since entryIndex } transactions { entryIndex bizStep documents throughContainer } aggregations { container entryIndex } } epcisDocument evidenceBundle } }";

#[derive(Parser, Debug)]
#[command(about = "Tracing-request benchmark (issue 23)")]
struct Args {
    /// Packs to load (a multiple of 1,000: whole lots).
    #[arg(long, default_value_t = 1_000_000)]
    packs: u64,
    /// Lots (and packs) traced.
    #[arg(long, default_value_t = 5)]
    samples: u64,
    /// Keep the SQLite database and log key here; a later run with the same --packs reuses them.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    shared::init_logging();
    let args = Args::parse();
    if args.packs == 0 || !args.packs.is_multiple_of(PACKS_PER_LOT) {
        bail!("--packs must be a positive multiple of {PACKS_PER_LOT}");
    }
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let cfg = ServeConfig {
        database: dir.join("bench.db").display().to_string(),
        origin: Some("bench.rxledger.local/log".into()),
        node_id: "trace-bench".into(),
        rate_limit: rxledger::ratelimit::RateLimit {
            per_second: 1e9,
            burst: 1e9,
        },
        ..ServeConfig::local(&dir)
    };
    let app = server::start(cfg).await?;
    load_or_reuse(&app, &dir, args.packs).await?;
    app.packs.load_index().await?;
    let key = regulator(&app).await?;
    let lots = args.packs / PACKS_PER_LOT;
    let mut rng = args.packs ^ 0x9e37_79b9_7f4a_7c15;
    let mut lot_ms = Vec::new();
    let mut pack_ms = Vec::new();
    for i in 0..args.samples {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let lot = (rng >> 33) % lots;
        let (ms, bytes, packs) =
            timed_trace(&app, &key, &format!("(01){GTIN}(10){}", lot_name(lot))).await?;
        if packs != PACKS_PER_LOT as usize {
            bail!("lot {lot} traced {packs} packs, not {PACKS_PER_LOT}");
        }
        println!("lot {lot}: {ms:.0} ms, answer {:.1} MB", bytes as f64 / 1e6);
        lot_ms.push(ms);
        let pack = lot * PACKS_PER_LOT + i % PACKS_PER_LOT;
        let (ms, _, _) =
            timed_trace(&app, &key, &format!("(01){GTIN}(21){}", serial(pack))).await?;
        pack_ms.push(ms);
    }
    lot_ms.sort_by(f64::total_cmp);
    pack_ms.sort_by(f64::total_cmp);
    println!(
        "traceRequest of a {PACKS_PER_LOT}-pack lot at {} packs: median {:.0} ms, max {:.0} ms (target < 1,000 ms in release)",
        args.packs,
        lot_ms[lot_ms.len() / 2],
        lot_ms[lot_ms.len() - 1]
    );
    println!(
        "traceRequest of one pack: median {:.1} ms; RSS {:.0} MB",
        pack_ms[pack_ms.len() / 2],
        rss_mb()
    );
    app.shutdown().await;
    Ok(())
}

/// One `traceRequest` over HTTP: (milliseconds, answer bytes, packs traced).
async fn timed_trace(app: &App, key: &str, code: &str) -> anyhow::Result<(f64, usize, usize)> {
    let body = serde_json::to_vec(&json!({ "query": TRACE, "variables": { "code": code } }))?;
    let auth = format!("Bearer {key}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
    ];
    let start = Instant::now();
    let (status, answer) = firmware_sim::http::request(
        app.http_addr,
        "localhost",
        "POST",
        "/graphql",
        &headers,
        &body,
    )
    .await?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let v: Value = serde_json::from_slice(&answer)?;
    if status != 200 || !v["errors"].is_null() {
        bail!("traceRequest {code}: HTTP {status}: {v}");
    }
    let packs = v["data"]["traceRequest"]["packs"]
        .as_array()
        .map_or(0, Vec::len);
    Ok((ms, answer.len(), packs))
}

async fn regulator(app: &App) -> anyhow::Result<String> {
    let r = &app.registry;
    if r.organization("agency").await?.is_none() {
        r.add_organization("agency", "Medicines Agency", "REGULATOR")
            .await?;
        r.add_site(&gln("9506000", 1), "agency", "Inspectorate")
            .await?;
    }
    Ok(app
        .api_keys
        .issue("agency", "REGULATOR", "trace-bench", None)
        .await?
        .0)
}

async fn load_or_reuse(app: &App, dir: &Path, packs: u64) -> anyhow::Result<()> {
    let marker = dir.join("trace-loaded.txt");
    let size = app.ledger.head().size;
    if size > 0 {
        let have = std::fs::read_to_string(&marker).unwrap_or_default();
        if have.trim() != packs.to_string() {
            bail!("{} holds another load ({have:?})", dir.display());
        }
        println!(
            "reusing {packs} packs in {} ({size} entries)",
            dir.display()
        );
        return Ok(());
    }
    register(app).await?;
    let start = Instant::now();
    let entries = load(app.ledger.clone(), packs).await?;
    println!(
        "loaded {packs} packs as {entries} entries in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    std::fs::write(&marker, packs.to_string())?;
    Ok(())
}

async fn register(app: &App) -> anyhow::Result<()> {
    let r = &app.registry;
    r.add_organization("acme", "Acme Pharma", "MANUFACTURER")
        .await?;
    r.add_company_prefix("acme", MFR_PREFIX).await?;
    r.add_site(&gln(MFR_PREFIX, 1), "acme", "Acme plant")
        .await?;
    r.add_organization("whs", "Central Wholesale", "WHOLESALER")
        .await?;
    r.add_site(&gln(WHS_PREFIX, 1), "whs", "Central DC").await?;
    for p in 0..PHARMACIES {
        let id = format!("pharmacy-{p:03}");
        r.add_organization(&id, &id, "PHARMACY").await?;
        r.add_site(&gln(PHARMACY_PREFIX, p + 1), &id, &id).await?;
    }
    Ok(())
}

async fn load(ledger: Arc<Ledger>, packs: u64) -> anyhow::Result<u64> {
    let lots = packs / PACKS_PER_LOT;
    let base_ms = rxledger_store::now_ms() - 30 * 24 * HOUR_MS;
    let mut appended = 0u64;
    let mut first = 0;
    while first < lots {
        let last = (first + LOTS_PER_BATCH).min(lots);
        let batch = (first..last)
            .flat_map(|l| lot_events(l, base_ms))
            .map(|(org, e)| loaded::entry(&ledger, &org, e))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let offered = batch.len();
        let done = ledger.append(batch).await?;
        let ok = done
            .admissions
            .iter()
            .filter(|a| matches!(a, Admission::Appended { .. }))
            .count();
        if ok != offered {
            bail!("only {ok} of {offered} entries were appended");
        }
        appended += ok as u64;
        first = last;
    }
    Ok(appended)
}

/// The 43 events of one lot: commissioned, cased, palletised, to the wholesaler, cases to
/// pharmacies.
fn lot_events(lot: u64, base_ms: i64) -> Vec<(String, Value)> {
    let at = |hour: i64| {
        rxledger_core::epcis::format_time(base_ms + hour * HOUR_MS + lot as i64 * 1_000)
    };
    let (mfr, whs) = (site(MFR_PREFIX, 1), site(WHS_PREFIX, 1));
    let (mfr_party, whs_party) = (party(MFR_PREFIX, 1), party(WHS_PREFIX, 1));
    let cases: Vec<u64> = (0..CASES_PER_LOT)
        .map(|c| lot * CASES_PER_LOT + c)
        .collect();
    let case_ids: Vec<String> = cases.iter().map(|c| sscc(0, *c)).collect();
    let pallet = sscc(1, lot);
    let acme = |e: Value| ("acme".to_string(), e);
    let mut out = Vec::with_capacity(43);
    for &c in &cases {
        out.push(acme(events::commissioning(
            &at(0),
            &case_packs(c),
            Where::Site(&mfr),
            &lot_name(lot),
            "2030-12-31",
        )));
    }
    for (&c, id) in cases.iter().zip(&case_ids) {
        out.push(acme(events::aggregation(
            &at(1),
            "ADD",
            id,
            &case_packs(c),
            &mfr,
        )));
    }
    out.push(acme(events::aggregation(
        &at(2),
        "ADD",
        &pallet,
        &case_ids,
        &mfr,
    )));
    let desadv = format!("urn:epcglobal:cbv:bt:{}:D{lot}", gln(MFR_PREFIX, 1));
    let one = std::slice::from_ref(&pallet);
    let (from, to) = (
        (mfr_party.as_str(), mfr.as_str()),
        (whs_party.as_str(), whs.as_str()),
    );
    out.push(acme(transfer(
        &at(3),
        "shipping",
        one,
        &mfr,
        from,
        to,
        &desadv,
    )));
    out.push((
        "whs".into(),
        transfer(&at(10), "receiving", one, &whs, from, to, &desadv),
    ));
    for (&c, id) in cases.iter().zip(&case_ids) {
        let ph = c % PHARMACIES;
        let (ph_site, ph_pgln) = (
            site(PHARMACY_PREFIX, ph + 1),
            party(PHARMACY_PREFIX, ph + 1),
        );
        let dest = (ph_pgln.as_str(), ph_site.as_str());
        let desadv = format!("urn:epcglobal:cbv:bt:{}:C{c}", gln(WHS_PREFIX, 1));
        let one = std::slice::from_ref(id);
        out.push((
            "whs".into(),
            transfer(&at(20), "shipping", one, &whs, to, dest, &desadv),
        ));
        out.push((
            format!("pharmacy-{ph:03}"),
            transfer(&at(30), "receiving", one, &ph_site, to, dest, &desadv),
        ));
    }
    out
}

fn case_packs(c: u64) -> Vec<String> {
    (c * PACKS_PER_CASE..(c + 1) * PACKS_PER_CASE)
        .map(|p| format!("urn:epc:id:sgtin:{MFR_PREFIX}.{ITEM_REF}.{}", serial(p)))
        .collect()
}

fn serial(pack: u64) -> String {
    format!("P{pack:08}")
}

fn lot_name(lot: u64) -> String {
    format!("T{lot:05}")
}
