//! `/metrics` in the Prometheus text format (version 0.0.4), on a listener of its own
//! (`--metrics-listen`), so that operational figures never share the public port.
//!
//! Nothing here is secret about a pack or a party, but ingest rates and alert counts tell a
//! rival how a business runs, so the listener is off by default and meant for a private
//! interface or loopback, where the operator's Prometheus scrapes it (docs/DEPLOY.md).
//!
//! Every figure is read when scraped: the ingest pipeline's counters, the ledger head, alert
//! counts (one `GROUP BY` query, at most every 10 s), the verification latency histograms
//! and the process's resident memory.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, get, handler};
use rxledger_graphql::latency::{Snapshot, VerifyLatency};
use rxledger_ingest::pipeline::Stats;
use rxledger_store::{Database, Ledger};
use sea_orm::{ConnectionTrait, Statement};

/// What a scrape reads.
#[derive(Clone)]
pub struct Sources {
    pub stats: Arc<Stats>,
    pub ledger: Arc<Ledger>,
    pub db: Database,
    /// When this node last saw the log head change, kept by a watcher task.
    head_seen: Arc<Mutex<Instant>>,
    alerts: Arc<Mutex<Option<AlertCounts>>>,
    /// Verification latency by channel, when the node's API is served in this process.
    verify: Option<Arc<VerifyLatency>>,
}

/// The alert counts of the last query, and when it ran.
type AlertCounts = (Instant, Vec<AlertCount>);

/// Alerts of one code and severity: (code, severity, count).
type AlertCount = (String, String, u64);

impl Sources {
    /// Starts watching the ledger head, so that the checkpoint age is known.
    pub fn new(stats: Arc<Stats>, ledger: Arc<Ledger>) -> Self {
        let head_seen = Arc::new(Mutex::new(Instant::now()));
        let mut heads = ledger.subscribe();
        let seen = head_seen.clone();
        tokio::spawn(async move {
            while heads.changed().await.is_ok() {
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
        });
        Sources {
            db: ledger.database().clone(),
            stats,
            ledger,
            head_seen,
            alerts: Default::default(),
            verify: None,
        }
    }

    /// Also exposes the verification latency histograms (`App::verify_latency`).
    pub fn with_verify_latency(mut self, latency: Arc<VerifyLatency>) -> Self {
        self.verify = Some(latency);
        self
    }

    /// Alerts by code and severity, cached for 10 s so that scrapes cost the database little.
    async fn alert_counts(&self) -> anyhow::Result<Vec<AlertCount>> {
        if let Some((at, counts)) = &*self.alerts.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < Duration::from_secs(10)
        {
            return Ok(counts.clone());
        }
        let rows = self
            .db
            .conn
            .query_all_raw(Statement::from_string(
                self.db.backend(),
                "SELECT code, severity, COUNT(*) AS n FROM alerts GROUP BY code, severity \
                 ORDER BY code, severity",
            ))
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for r in rows {
            let n: i64 = r.try_get("", "n")?;
            counts.push((r.try_get("", "code")?, r.try_get("", "severity")?, n as u64));
        }
        *self.alerts.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), counts.clone()));
        Ok(counts)
    }

    /// The exposition text.
    pub async fn render(&self) -> anyhow::Result<String> {
        let mut out = String::with_capacity(4096);
        self.render_ingest(&mut out);
        self.render_log(&mut out).await?;
        if let Some(v) = &self.verify {
            histogram(
                &mut out,
                "rxledger_verify_seconds",
                "Time to answer a verification, from the parsed request to the built answer, by channel (graphql: the verify query; resolver: the Digital Link page, JSON and LVM answers).",
                &[
                    ("channel=\"graphql\"", v.graphql.snapshot()),
                    ("channel=\"resolver\"", v.resolver.snapshot()),
                ],
            );
        }
        Ok(out)
    }

    /// The ingest pipeline's counters.
    fn render_ingest(&self, out: &mut String) {
        let s = &self.stats;
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        metric(
            out,
            "rxledger_ingest_envelopes_received_total",
            "counter",
            "Envelopes taken from MQTT.",
            &[("", get(&s.received) as f64)],
        );
        metric(
            out,
            "rxledger_ingest_receipts_total",
            "counter",
            "Receipts sent, by status.",
            &[
                ("status=\"ACCEPTED\"", get(&s.appended) as f64),
                ("status=\"DUPLICATE\"", get(&s.duplicates) as f64),
                ("status=\"REJECTED\"", get(&s.rejected) as f64),
            ],
        );
        metric(
            out,
            "rxledger_ingest_batches_total",
            "counter",
            "Ledger batches appended by ingest.",
            &[("", get(&s.batches) as f64)],
        );
        let secs = |c: &std::sync::atomic::AtomicU64| get(c) as f64 / 1e6;
        metric(
            out,
            "rxledger_ingest_stage_seconds_total",
            "counter",
            "Time spent per batch stage: check (envelopes, signatures, EPCIS), rules, append (one transaction), ack (receipts).",
            &[
                ("stage=\"check\"", secs(&s.check_us)),
                ("stage=\"rules\"", secs(&s.rules_us)),
                ("stage=\"append\"", secs(&s.append_us)),
                ("stage=\"ack\"", secs(&s.ack_us)),
            ],
        );
        histogram(
            out,
            "rxledger_ingest_append_seconds",
            "Time of each batch's append transaction, the one serial stage of ingest.",
            &[("", s.append_seconds.snapshot())],
        );
        histogram(
            out,
            "rxledger_ingest_receipt_seconds",
            "Time of each envelope in the node, from reading it off MQTT to queueing its receipt and PUBACK.",
            &[("", s.receipt_seconds.snapshot())],
        );
    }

    /// The log head, its age, the alerts and the process.
    async fn render_log(&self, out: &mut String) -> anyhow::Result<()> {
        metric(
            out,
            "rxledger_log_size",
            "gauge",
            "Entries in the log at the latest checkpoint this node holds.",
            &[("", self.ledger.head().size as f64)],
        );
        let age = self
            .head_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        metric(
            out,
            "rxledger_checkpoint_age_seconds",
            "gauge",
            "Seconds since this node last saw a new checkpoint (or started).",
            &[("", age.as_secs_f64())],
        );
        let alerts = self.alert_counts().await?;
        let labels: Vec<(String, f64)> = alerts
            .iter()
            .map(|(code, sev, n)| {
                (
                    format!("code=\"{}\",severity=\"{}\"", escape(code), escape(sev)),
                    *n as f64,
                )
            })
            .collect();
        let labels: Vec<(&str, f64)> = labels.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        metric(
            out,
            "rxledger_alerts_total",
            "counter",
            "Alerts recorded in the database, by code and severity.",
            &labels,
        );
        if let Some(rss) = resident_bytes() {
            metric(
                out,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                &[("", rss as f64)],
            );
        }
        Ok(())
    }
}

/// One metric family: HELP, TYPE and one sample per label set (`""` for none).
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// One histogram family: `_bucket` samples with `le` (cumulative, then `+Inf`), `_sum` and
/// `_count`, per label set.
fn histogram(out: &mut String, name: &str, help: &str, series: &[(&str, Snapshot)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in series {
        // A family without labels has bare `_sum` and `_count`, and only `le` on its buckets.
        let (sep, braced) = match labels.is_empty() {
            true => ("", String::new()),
            false => (",", format!("{{{labels}}}")),
        };
        for (le, n) in &h.buckets {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(out, "{name}_sum{braced} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{braced} {}", h.count);
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident set size from `/proc/self/statm` (Linux only).
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[handler]
async fn scrape(sources: Data<&Sources>) -> Response {
    match sources.render().await {
        Ok(text) => Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(e) => {
            tracing::warn!("metrics: {e:#}");
            Response::builder()
                .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
                .body("metrics unavailable\n")
        }
    }
}

/// A bound metrics listener, not yet serving: bound before anything is written, so that a
/// taken port stops the start cleanly.
pub struct Bound {
    acceptor: poem::listener::TcpAcceptor,
    pub addr: SocketAddr,
}

/// Binds `addr` for [`serve`].
pub async fn bind(addr: SocketAddr) -> anyhow::Result<Bound> {
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (--metrics-listen)"))?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .unwrap_or(addr);
    Ok(Bound {
        acceptor,
        addr: bound,
    })
}

/// Serves `GET /metrics` on `bound` until the process ends.
pub fn serve(bound: Bound, sources: Sources) {
    let app = Route::new().at("/metrics", get(scrape)).data(sources);
    tokio::spawn(async move {
        if let Err(e) = poem::Server::new_with_acceptor(bound.acceptor)
            .run(app)
            .await
        {
            tracing::error!("metrics listener stopped: {e}");
        }
    });
}
