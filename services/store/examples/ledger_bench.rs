//! Ledger benchmarks (issue 2): durable append throughput, proof latency, start-up time and
//! bytes on disk, printed as Markdown tables for BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p rxledger-store --example ledger_bench -- \
//!     [--postgres postgres://postgres@127.0.0.1:5432/test] [--entries 1000000] [--batch 1000]
//!     [--runs 5] [--samples 10000] [--no-sqlite]
//! ```
//!
//! The ledger is measured alone: entries are 300 bytes, carry no event index rows, and no
//! device signature is verified. Each append still signs one checkpoint per batch, as in
//! production. Every database is fresh: SQLite in a temporary directory through
//! [`TempDb::sqlite`], PostgreSQL as a new database on the `--postgres` server through
//! [`TempDb::postgres`], dropped at the end.
//!
//! Throughput figures are medians over `--runs` runs of a few seconds each; latency figures
//! are percentiles over `--samples` proofs. A "cold" proof runs on a freshly opened ledger
//! (new connection pool, empty tile cache) and is chosen so that its level-0 tile has not
//! been read yet, so every cold sample includes one tile read from the database.

use std::time::{Duration, Instant};

use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_core::keys::SigningKey;
use rxledger_core::merkle::{self, Hash};
use rxledger_entities::entry;
use rxledger_store::testdb::{POSTGRES_ENV, TempDb, filler_entry};
use rxledger_store::{Database, Ledger, NewEntry, connect};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Set, Statement, TransactionTrait};

const ORIGIN: &str = "bench.rxledger/ledger";
const ENTRY_BYTES: usize = 300;
/// Batch size used to build the large log; big batches make the build fast.
const BUILD_BATCH: u64 = 10_000;
/// Entries per database used for the "start-up does not grow with size" comparison.
const SMALL_LOG: u64 = 1_000;

type Error = Box<dyn std::error::Error>;

struct Args {
    postgres: Option<String>,
    entries: u64,
    batch: usize,
    runs: usize,
    samples: usize,
    sqlite: bool,
}

fn main() -> Result<(), Error> {
    let args = parse_args()?;
    if let Some(url) = &args.postgres {
        // SAFETY: no other thread exists yet (the runtime is built below), so nothing can
        // read the environment concurrently.
        unsafe { std::env::set_var(POSTGRES_ENV, url) };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

fn parse_args() -> Result<Args, Error> {
    let mut args = Args {
        postgres: None,
        entries: 1_000_000,
        batch: 1000,
        runs: 5,
        samples: 10_000,
        sqlite: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--postgres" => args.postgres = Some(value()?),
            "--entries" => args.entries = value()?.parse()?,
            "--batch" => args.batch = value()?.parse()?,
            "--runs" => args.runs = value()?.parse()?,
            "--samples" => args.samples = value()?.parse()?,
            "--no-sqlite" => args.sqlite = false,
            other => return Err(format!("unknown argument {other}; see the module docs").into()),
        }
    }
    if args.batch == 0 || args.runs == 0 || args.samples == 0 || args.entries < 2 {
        return Err("--batch, --runs and --samples must be positive, --entries at least 2".into());
    }
    Ok(args)
}

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }

    async fn fresh(self) -> Result<TempDb, Error> {
        Ok(match self {
            Backend::Sqlite => TempDb::sqlite().await?,
            Backend::Postgres => TempDb::postgres().await?,
        })
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let mut backends = Vec::new();
    if args.sqlite {
        backends.push(Backend::Sqlite);
    }
    if args.postgres.is_some() {
        backends.push(Backend::Postgres);
    }
    let mut batches = vec![args.batch];
    for b in [100, 10] {
        if !batches.contains(&b) {
            batches.push(b);
        }
    }
    let mut report = String::new();
    for backend in backends {
        let mut out = format!("\n### {}\n\n", backend.name());
        out += &throughput(backend, &batches, args.runs).await?;
        out += &breakdown(backend, args.batch as u64).await?;
        out += &large_log(backend, &args).await?;
        println!("{out}");
        report += &out;
    }
    println!("\n---- full report ----\n{report}");
    Ok(())
}

fn key() -> SigningKey {
    // A fixed key: the benchmark needs a key, not a secret.
    SigningKey::from_bytes(&[42u8; 32]).expect("a constant non-zero scalar is a valid key")
}

fn entry(i: u64) -> NewEntry {
    filler_entry("bench entry", i, ENTRY_BYTES)
}

fn batch(from: u64, n: u64) -> Vec<NewEntry> {
    (from..from + n).map(entry).collect()
}

/// Appends `n` entries in batches of `b`, returning the time spent inside `append` only.
async fn append_timed(ledger: &Ledger, n: u64, b: u64) -> Result<Duration, Error> {
    let mut spent = Duration::ZERO;
    let mut done = 0;
    while done < n {
        let size = ledger.head().size;
        let take = b.min(n - done);
        let entries = batch(size, take);
        let t = Instant::now();
        let out = ledger.append(entries).await?;
        spent += t.elapsed();
        if out.head.size != size + take {
            return Err(format!("append did not grow the log by {take}").into());
        }
        done += take;
    }
    Ok(spent)
}

/// Durable appends per second for each batch size: one fresh database per batch size, one
/// warm-up run, then `runs` timed runs; median, min and max of the runs.
async fn throughput(backend: Backend, batches: &[usize], runs: usize) -> Result<String, Error> {
    let mut out = String::from(
        "Durable appends of 300-byte entries (time inside `Ledger::append`, commit included)\n\n\
         | batch | entries/run | runs | median entries/s | min | max | median ms/batch | vs first row |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut first = None;
    for &b in batches {
        let b = b as u64;
        // About a second per run at the expected rates.
        let per_run = b * (50_000 / b).clamp(50, 200);
        let tmp = backend.fresh().await?;
        let ledger = Ledger::open(tmp.db.clone(), key(), ORIGIN).await?;
        append_timed(&ledger, per_run.min(10 * b), b).await?;
        let mut rates = Vec::with_capacity(runs);
        for _ in 0..runs {
            let spent = append_timed(&ledger, per_run, b).await?;
            rates.push(per_run as f64 / spent.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let base = *first.get_or_insert(median);
        out += &format!(
            "| {b} | {per_run} | {runs} | **{median:.0}** | {:.0} | {:.0} | {:.2} | {:.2}× |\n",
            rates[0],
            rates[rates.len() - 1],
            1000.0 * b as f64 / median,
            median / base,
        );
        eprintln!("{} batch {b}: {rates:.0?}", backend.name());
        drop(ledger);
        tmp.drop_now().await;
    }
    Ok(out)
}

/// Where the time of one append goes: its parts timed on their own, interleaved with full
/// appends so that all figures come from the same moments of a noisy machine.
async fn breakdown(backend: Backend, b: u64) -> Result<String, Error> {
    const ROUNDS: usize = 30;
    let tmp = backend.fresh().await?;
    let ledger = Ledger::open(tmp.db.clone(), key(), ORIGIN).await?;
    append_timed(&ledger, 10 * b, b).await?;
    let scratch = backend.fresh().await?;
    let conn = &scratch.db.conn;
    let exec = |sql: &str| Statement::from_string(scratch.db.backend(), sql.to_string());
    conn.execute_raw(exec("CREATE TABLE bench_commit (x BIGINT)"))
        .await?;
    let (mut hash, mut sign, mut commit, mut insert, mut append) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut next_idx = 0i64;
    for _ in 0..ROUNDS {
        let entries = batch(ledger.head().size, b);
        let t = Instant::now();
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(&e.data)).collect();
        hash.push(t.elapsed());
        std::hint::black_box(leaves);

        let t = Instant::now();
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: next_idx as u64,
            root: [1; 32],
        };
        std::hint::black_box(checkpoint::sign_checkpoint(&cp, &key())?);
        sign.push(t.elapsed());

        // One tiny write and a durable commit: the fixed cost of any transaction.
        let t = Instant::now();
        let txn = conn.begin().await?;
        txn.execute_raw(exec("INSERT INTO bench_commit (x) VALUES (1)"))
            .await?;
        txn.commit().await?;
        commit.push(t.elapsed());

        // The entry rows alone, as `insert_entries` writes them, plus a commit.
        let t = Instant::now();
        insert_entry_rows(conn, &entries, &mut next_idx).await?;
        insert.push(t.elapsed());

        let t = Instant::now();
        ledger.append(entries).await?;
        append.push(t.elapsed());
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (hash, sign, commit, insert, append) = (
        med(&mut hash),
        med(&mut sign),
        med(&mut commit),
        med(&mut insert),
        med(&mut append),
    );
    let out = breakdown_table(b, ROUNDS, [append, insert, commit, hash, sign]);
    drop(ledger);
    tmp.drop_now().await;
    scratch.drop_now().await;
    Ok(out)
}

/// Writes `entries` as entry rows in 500-row chunks, as `insert_entries` does, and commits.
async fn insert_entry_rows(
    conn: &DatabaseConnection,
    entries: &[NewEntry],
    next_idx: &mut i64,
) -> Result<(), Error> {
    let txn = conn.begin().await?;
    for chunk in entries.chunks(500) {
        let rows: Vec<entry::ActiveModel> = chunk
            .iter()
            .map(|e| {
                *next_idx += 1;
                entry::ActiveModel {
                    idx: Set(*next_idx),
                    data: Set(e.data.clone()),
                    kind: Set(e.kind as i16),
                    signer: Set(e.signer.clone()),
                    seq: Set(*next_idx),
                    received_ms: Set(0),
                }
            })
            .collect();
        entry::Entity::insert_many(rows)
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// The breakdown as a Markdown table; the medians are append, insert, commit, hash, sign.
fn breakdown_table(b: u64, rounds: usize, medians: [Duration; 5]) -> String {
    let [append, insert, commit, hash, sign] = medians;
    let rest = append.saturating_sub(insert + hash + sign);
    let line = |what: &str, d: Duration| {
        format!(
            "| {what} | {:.3} | {:.0}% |\n",
            ms(d),
            100.0 * d.as_secs_f64() / append.as_secs_f64()
        )
    };
    let mut out = format!(
        "\nWhere an append of {b} goes (medians of {rounds} interleaved rounds)\n\n\
         | part | ms | share of append |\n|---|---:|---:|\n"
    );
    out += &line("`Ledger::append`, whole", append);
    out += &line(
        "entry rows: `insert_many` in 500-row chunks + commit",
        insert,
    );
    out += &line("… of which an empty durable commit", commit);
    out += &line("leaf hashes", hash);
    out += &line("checkpoint signature", sign);
    out += &line(
        "rest: head read, tiles, checkpoint row, head CAS, tree root",
        rest,
    );
    out
}

/// Builds a log of `args.entries` entries and measures proofs, start-up and disk use on it.
async fn large_log(backend: Backend, args: &Args) -> Result<String, Error> {
    let n = args.entries;
    let tmp = backend.fresh().await?;
    let ledger = Ledger::open(tmp.db.clone(), key(), ORIGIN).await?;
    let t = Instant::now();
    let spent = append_timed(&ledger, n, BUILD_BATCH).await?;
    let build_wall = t.elapsed();
    let head = ledger.head();
    drop(ledger);
    eprintln!(
        "{}: built {n} entries in {build_wall:.1?} ({:.0}/s in append)",
        backend.name(),
        n as f64 / spent.as_secs_f64()
    );
    let mut out = format!(
        "\nLog of {n} entries built in batches of {BUILD_BATCH}: {:.1} s, {:.0} entries/s.\n",
        build_wall.as_secs_f64(),
        n as f64 / spent.as_secs_f64()
    );

    let disk = disk_use(backend, &tmp).await?;
    out += &format!(
        "\nOn disk at {n} entries: {} bytes, **{:.0} bytes/entry** (entry data is {ENTRY_BYTES} B).{}\n",
        disk.total,
        disk.total as f64 / n as f64,
        disk.detail
    );

    out += &proofs(&tmp, n, &head.root, args.samples).await?;

    // Start-up: a new connection pool (includes the migration check) and `Ledger::open`.
    let small = backend.fresh().await?;
    {
        let l = Ledger::open(small.db.clone(), key(), ORIGIN).await?;
        append_timed(&l, SMALL_LOG, SMALL_LOG).await?;
    }
    let mut table = String::from(
        "\nStart-up (median of runs; `connect` = new pool + migration check, `open` = `Ledger::open`)\n\n\
         | log size | runs | connect ms | open ms (median) | open ms (max) |\n|---:|---:|---:|---:|---:|\n",
    );
    let mut open_medians = Vec::new();
    for (size, db) in [(SMALL_LOG, &small), (n, &tmp)] {
        let runs = args.runs.max(5);
        let mut connects = Vec::new();
        let mut opens = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let fresh = connect(&db.url).await?;
            connects.push(t.elapsed());
            let t = Instant::now();
            let l = Ledger::open(fresh.clone(), key(), ORIGIN).await?;
            opens.push(t.elapsed());
            if l.head().size != size {
                return Err("reopened log has the wrong size".into());
            }
            drop(l);
            fresh.conn.close().await?;
        }
        connects.sort();
        opens.sort();
        open_medians.push(opens[runs / 2].as_secs_f64());
        table += &format!(
            "| {size} | {runs} | {:.1} | **{:.2}** | {:.2} |\n",
            ms(connects[runs / 2]),
            ms(opens[runs / 2]),
            ms(opens[runs - 1]),
        );
    }
    out += &table;
    out += &format!(
        "\n`Ledger::open` at {n} entries takes {:.2}× the time it takes at {SMALL_LOG}.\n",
        open_medians[1] / open_medians[0]
    );
    small.drop_now().await;
    tmp.drop_now().await;
    Ok(out)
}

struct Disk {
    total: u64,
    detail: String,
}

async fn disk_use(backend: Backend, tmp: &TempDb) -> Result<Disk, Error> {
    match backend {
        Backend::Sqlite => {
            let rows = query_i64s(&tmp.db, "PRAGMA wal_checkpoint(TRUNCATE)", 3).await?;
            let main = std::fs::metadata(&tmp.url)?.len();
            let wal = std::fs::metadata(format!("{}-wal", tmp.url))
                .map(|m| m.len())
                .unwrap_or(0);
            Ok(Disk {
                total: main + wal,
                detail: format!(
                    " Main file {main} B + WAL {wal} B after `PRAGMA wal_checkpoint(TRUNCATE)` \
                     (busy, log, checkpointed = {rows:?})."
                ),
            })
        }
        Backend::Postgres => {
            let total = query_i64s(&tmp.db, "SELECT pg_database_size(current_database())", 1)
                .await?
                .first()
                .copied()
                .unwrap_or(0) as u64;
            let parts = query_i64s(
                &tmp.db,
                "SELECT pg_total_relation_size('entries'), pg_total_relation_size('tiles'), \
                 pg_total_relation_size('checkpoints')",
                3,
            )
            .await?;
            Ok(Disk {
                total,
                detail: format!(
                    " `pg_database_size`, which includes about 7.5 MB of catalog in any database; \
                     `pg_total_relation_size` of entries, tiles, checkpoints = {parts:?} B."
                ),
            })
        }
    }
}

/// Runs a query returning one row of `cols` integers.
async fn query_i64s(db: &Database, sql: &str, cols: usize) -> Result<Vec<i64>, Error> {
    let stmt = Statement::from_string(db.backend(), sql.to_string());
    let row = db.conn.query_one_raw(stmt).await?.ok_or("no row")?;
    (0..cols)
        .map(|i| Ok(row.try_get_by_index::<i64>(i)?))
        .collect()
}

/// Inclusion and consistency proof latency, cold and warm.
async fn proofs(tmp: &TempDb, n: u64, root: &Hash, samples: usize) -> Result<String, Error> {
    let mut rng = SplitMix(0x5eed);
    let tiles = n.div_ceil(256);
    let mut out = format!(
        "\nProof latency at {n} entries (`inclusion_proof(i, {n})`, `consistency_proof(m, {n})`)\n\n\
         | proof | cache | samples | p50 µs | p99 µs | max µs | mean µs |\n\
         |---|---|---:|---:|---:|---:|---:|\n"
    );

    // Cold: a fresh pool and ledger; one index per level-0 tile, in random order.
    let mut cold_tiles: Vec<u64> = (0..tiles).collect();
    rng.shuffle(&mut cold_tiles);
    cold_tiles.truncate(samples);
    let within = |rng: &mut SplitMix, t: u64| t * 256 + rng.below(256.min(n - t * 256));
    let cold_idx: Vec<u64> = cold_tiles.iter().map(|&t| within(&mut rng, t)).collect();
    let warm_idx: Vec<u64> = (0..samples).map(|_| rng.below(n)).collect();

    let db = connect(&tmp.url).await?;
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await?;
    let cold = time_inclusion(&ledger, &cold_idx, n, root).await?;
    out += &row("inclusion", "cold (new ledger, tile not yet read)", &cold);
    // Every level-0 tile read above is now cached (the cache holds 8192 tiles).
    let _ = time_inclusion(&ledger, &warm_idx, n, root).await?;
    let warm = time_inclusion(&ledger, &warm_idx, n, root).await?;
    out += &row("inclusion", "warm", &warm);
    drop(ledger);
    db.conn.close().await?;

    // Consistency from a random older size; cold picks one old size per level-0 tile.
    let cold_old: Vec<u64> = cold_tiles
        .iter()
        .map(|&t| (within(&mut rng, t) + 1).min(n - 1))
        .collect();
    let warm_old: Vec<u64> = (0..samples).map(|_| 1 + rng.below(n - 1)).collect();
    let db = connect(&tmp.url).await?;
    let ledger = Ledger::open(db.clone(), key(), ORIGIN).await?;
    let cold = time_consistency(&ledger, &cold_old, n, root).await?;
    out += &row("consistency", "cold (new ledger, tile not yet read)", &cold);
    let _ = time_consistency(&ledger, &warm_old, n, root).await?;
    let warm = time_consistency(&ledger, &warm_old, n, root).await?;
    out += &row("consistency", "warm", &warm);
    drop(ledger);
    db.conn.close().await?;
    Ok(out)
}

/// Times each proof; verifies every proof afterwards, outside the timing.
async fn time_inclusion(
    ledger: &Ledger,
    indices: &[u64],
    n: u64,
    root: &Hash,
) -> Result<Vec<Duration>, Error> {
    let mut times = Vec::with_capacity(indices.len());
    let mut proofs = Vec::with_capacity(indices.len());
    for &i in indices {
        let t = Instant::now();
        let p = ledger.inclusion_proof(i, n).await?;
        times.push(t.elapsed());
        proofs.push(p);
    }
    for (&i, p) in indices.iter().zip(&proofs) {
        merkle::verify_inclusion(&merkle::leaf_hash(&entry(i).data), i, n, p, root)?;
    }
    Ok(times)
}

async fn time_consistency(
    ledger: &Ledger,
    olds: &[u64],
    n: u64,
    root: &Hash,
) -> Result<Vec<Duration>, Error> {
    let mut times = Vec::with_capacity(olds.len());
    let mut proofs = Vec::with_capacity(olds.len());
    for &m in olds {
        let t = Instant::now();
        let p = ledger.consistency_proof(m, n).await?;
        times.push(t.elapsed());
        proofs.push(p);
    }
    // Check a sample against roots computed from the tiles (every one would be slow).
    for (&m, p) in olds.iter().zip(&proofs).step_by(97) {
        let old_root = ledger.root_at(m).await?;
        merkle::verify_consistency(m, n, &old_root, root, p)?;
    }
    Ok(times)
}

fn row(proof: &str, cache: &str, times: &[Duration]) -> String {
    let mut t = times.to_vec();
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let pct = |p: f64| t[((t.len() as f64 * p) as usize).min(t.len() - 1)];
    let mean = t.iter().sum::<Duration>() / t.len() as u32;
    format!(
        "| {proof} | {cache} | {} | {:.0} | **{:.0}** | {:.0} | {:.0} |\n",
        t.len(),
        us(pct(0.50)),
        us(pct(0.99)),
        us(t[t.len() - 1]),
        us(mean),
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A small deterministic generator, so every run samples the same indices.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for sampling (n is far below 2^64).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}
