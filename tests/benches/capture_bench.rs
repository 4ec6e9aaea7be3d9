//! End-to-end EPCIS REST benchmark: capture of large EPCIS 2.0 JSON-LD documents, then the
//! query's latency for pages of events.
//!
//! `cargo run --release --example capture_bench -- [EVENTS_PER_DOC] [DOCS] [QUERIES] [PER_PAGE]`
//!
//! In one process: the real server (SQLite in a temp dir, no rate limit) and one HTTP client.
//! DOCS documents of EVENTS_PER_DOC commissioning events (default 10,000 × 3) are built
//! before the clock starts and posted one after the other to `POST /epcis/capture`; each
//! answer is the finished job, so the time per document is the whole capture (parse, CBV
//! hash, rules, one append transaction, checkpoint). Then QUERIES pages of PER_PAGE events
//! (default 200 × 100) are read through `GET /epcis/events`, half unfiltered at random
//! starting points (following `nextPageToken`), half by `EQ_bizStep` and `MATCH_anyEPC`,
//! and their latency percentiles printed.

mod shared;
use shared::{cpu_seconds, rss_mb};
use std::time::Instant;

use firmware_sim::events::{self, Where};
use rxledger::server::{self, ServeConfig};
use serde_json::{Value, json};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn document(doc: u64, per_doc: u64) -> Vec<u8> {
    let events: Vec<Value> = (0..per_doc)
        .map(|i| {
            events::commissioning(
                "2026-11-25T10:00:00.000Z",
                &[format!("urn:epc:id:sgtin:0614141.107346.D{doc}S{i}")],
                Where::ReadPoint("urn:epc:id:sgln:0614141.00000.0"),
                "L1",
                "2030-01-31",
            )
        })
        .collect();
    json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-25T10:00:00.000Z",
        "epcisBody": { "eventList": events },
    })
    .to_string()
    .into_bytes()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    shared::init_logging();
    let per_doc = arg(1, 10_000);
    let docs = arg(2, 3);
    let queries = arg(3, 200);
    let per_page = arg(4, 100);

    let dir = tempfile::tempdir()?;
    let cfg = ServeConfig {
        database: dir.path().join("bench.db").display().to_string(),
        node_id: format!("capture-bench-{}", std::process::id()),
        rate_limit: rxledger::ratelimit::RateLimit {
            per_second: 1e9,
            burst: 1e9,
        },
        ..ServeConfig::local(dir.path())
    };
    let app = server::start(cfg).await?;
    app.registry
        .add_organization("acme", "Acme", "MANUFACTURER")
        .await?;
    app.registry.add_company_prefix("acme", "0614141").await?;
    app.registry
        .add_site("0614141000005", "acme", "Plant")
        .await?;
    let (token, _) = app
        .api_keys
        .issue("acme", "MANUFACTURER", "bench", None)
        .await?;
    let auth = format!("Bearer {token}");
    let addr = app.http_addr;
    let host = addr.to_string();

    let bodies: Vec<Vec<u8>> = (0..docs).map(|d| document(d, per_doc)).collect();
    println!(
        "{docs} documents of {per_doc} events, {:.1} MB each; RSS {:.0} MB",
        bodies[0].len() as f64 / 1e6,
        rss_mb()
    );

    let mut secs = Vec::new();
    let cpu = cpu_seconds();
    for (d, body) in bodies.iter().enumerate() {
        let t = Instant::now();
        let (status, answer) = firmware_sim::http::request(
            addr,
            &host,
            "POST",
            "/epcis/capture",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/ld+json"),
            ],
            body,
        )
        .await?;
        let s = t.elapsed().as_secs_f64();
        let job: Value = serde_json::from_slice(&answer)?;
        anyhow::ensure!(
            status == 202 && job["appendedCount"] == per_doc,
            "document {d}: {status} {job}"
        );
        println!(
            "document {d}: {per_doc} events in {s:.2} s = {:.0} events/s",
            per_doc as f64 / s
        );
        secs.push(s);
    }
    let total: f64 = secs.iter().sum();
    let events = per_doc * docs;
    println!(
        "capture: {events} events in {total:.2} s = {:.0} events/s; {:.0} µs CPU per event; RSS {:.0} MB",
        events as f64 / total,
        (cpu_seconds() - cpu) / events as f64 * 1e6,
        rss_mb()
    );

    let mut latencies = Vec::new();
    let mut token_path: Option<String> = None;
    for q in 0..queries {
        let path = match (q % 4, &token_path) {
            (0, Some(next)) => next.clone(),
            (0 | 1, _) => format!("/epcis/events?perPage={per_page}"),
            (2, _) => format!("/epcis/events?EQ_bizStep=commissioning&perPage={per_page}"),
            _ => format!(
                "/epcis/events?MATCH_anyEPC=urn:epc:id:sgtin:0614141.107346.D{}S{}&perPage={per_page}",
                q % docs.max(1),
                (q * 7919) % per_doc.max(1)
            ),
        };
        let t = Instant::now();
        let (status, head, body) = firmware_sim::http::request_with_head(
            addr,
            &host,
            "GET",
            &path,
            &[("Authorization", &auth)],
            b"",
        )
        .await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            status == 200,
            "{path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        token_path = head
            .iter()
            .find(|(k, _)| k == "link")
            .and_then(|(_, v)| v.strip_prefix('<'))
            .and_then(|v| v.split_once('>'))
            .map(|(u, _)| u.to_string());
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    println!(
        "query: {queries} pages of up to {per_page} events at {events} events: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(&latencies, 0.5),
        pct(&latencies, 0.95),
        pct(&latencies, 0.99),
        pct(&latencies, 1.0)
    );
    app.shutdown().await;
    Ok(())
}
