//! From MQTT messages to ledger entries and receipts.
//!
//! Tasks joined by channels:
//! - the **event loops** (one per connection) drive the MQTT connections, forward publishes
//!   and carry out acks and receipt publishes queued by the acker;
//! - the **batcher** gathers up to `batch_max` messages or `batch_wait`, looks up the devices
//!   their topics name in one query, then opens envelopes, verifies signatures, parses and
//!   hashes events on every core;
//! - the **sequencer** applies the rules that need the ledger and appends the batch in one
//!   transaction (retrying while the database is down, without acking anything), on a
//!   thread of its own;
//! - the **acker** takes each committed batch, in commit order, records its alerts, then acks
//!   each message and publishes its receipt, while the sequencer appends the next batch;
//! - shutdown drains: stop forwarding, finish the batches already read, ack them, disconnect.
//!
//! Memory is bounded by MQTT flow control, not by hope: a QoS 1 message stays unacknowledged
//! until its batch commits, the broker sends at most its in-flight limit of unacknowledged
//! messages (at most 65,535, the packet-id space), and the channel between the event loop and
//! the batcher is that large. A slow database therefore slows the broker's delivery.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, Publish, QoS};
use rxledger_core::envelope::{self, EnvelopeError, Opened, Receipt};
use rxledger_core::epcis;
use rxledger_core::gs1::{Gtin, Sgtin};
use rxledger_core::keys::PublicKey;
use rxledger_core::merkle;
use rxledger_core::pack::{self, IngestContext};
use rxledger_store::ledger::EntryKind;
use rxledger_store::packs::{self, Packs};
use rxledger_store::{
    Admission, Alerts, Ledger, NewAlert, NewEntry, NewEvent, Registry, Severity, now_ms,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::monitor;
use tokio::task::JoinHandle;

/// Tunables, with the defaults used by `rxledger serve`.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    /// Most messages per ledger transaction.
    pub batch_max: usize,
    /// Longest a message waits for its batch to fill.
    pub batch_wait: Duration,
    /// Largest MQTT payload accepted; larger ones are rejected with `OVERSIZED`.
    pub max_payload: usize,
    /// Threads that verify signatures.
    pub workers: usize,
    /// How far in the future a device's `sentAt` or an `eventTime` may be.
    pub max_clock_skew: Duration,
    /// Topics are `{topic_root}/devices/{deviceId}/events` and `…/acks`.
    pub topic_root: String,
    /// MQTT connections this node opens, all in the shared subscription. Brokers cap the
    /// unacknowledged deliveries per connection (rumqttd at 100, Mosquitto's
    /// `max_inflight_messages` at 20 by default) and acks wait for the commit, so the
    /// connections bound how many envelopes can be in the pipeline. 64 x 100 lets a batch be
    /// collected, one checked, one appended and one acked at once, at 800 to 900 envelopes
    /// each; with 32 batches stayed near 640 and ingest was 6 to 8 % slower (BENCHMARKS.md).
    pub connections: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            batch_max: 1000,
            batch_wait: Duration::from_millis(50),
            max_payload: 64 * 1024,
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            max_clock_skew: Duration::from_secs(300),
            topic_root: envelope::DEFAULT_TOPIC_ROOT.to_string(),
            connections: 64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error(
        "cannot start the embedded MQTT broker on {addr} (choose another address with --mqtt-listen ADDR, or use an external broker with --mqtt-url mqtt://host:port)"
    )]
    BrokerListen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("bad MQTT URL {0}")]
    MqttUrl(String),
    #[error("cannot connect to the MQTT broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("ingest stopped: {0}")]
    Stopped(String),
}

/// Counters, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub appended: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub batches: AtomicU64,
    /// Cumulative microseconds per stage, for benchmarks: checking (envelope, device lookup,
    /// signatures, EPCIS), rules, append (one transaction), acks and receipts.
    pub check_us: AtomicU64,
    pub rules_us: AtomicU64,
    pub append_us: AtomicU64,
    pub ack_us: AtomicU64,
}

/// A running ingest pipeline.
pub struct Ingest {
    pub stats: Arc<Stats>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Ingest {
    /// Connects, subscribes and starts the pipeline. Returns once the subscription is
    /// acknowledged, or an error if the broker cannot be reached within `connect_timeout`.
    pub async fn start(
        mut opts: MqttOptions,
        ledger: Arc<Ledger>,
        registry: Registry,
        packs: Arc<Packs>,
        alerts: Alerts,
        cfg: IngestConfig,
        connect_timeout: Duration,
    ) -> Result<Ingest, IngestError> {
        let addr = format!("{}:{}", opts.broker_address().0, opts.broker_address().1);
        opts.set_manual_acks(true)
            .set_clean_session(false)
            .set_inflight(1000)
            .set_max_packet_size(rumqttc_max(cfg.max_payload), rumqttc_max(cfg.max_payload));
        let stats = Arc::new(Stats::default());
        let (stop, stop_rx) = watch::channel(false);
        let (raw_tx, raw_rx) = mpsc::channel::<Delivery>(65_536);
        let (batch_tx, batch_rx) = mpsc::channel::<Vec<Checked>>(2);
        let filter = envelope::shared_events_filter(&cfg.topic_root);
        let base_id = opts.client_id();
        let mut clients = Vec::new();
        let mut tasks = Vec::new();
        let mut readies = Vec::new();
        for conn in 0..cfg.connections.max(1) {
            let mut o = opts.clone();
            if conn > 0 {
                o.set_client_id(format!("{base_id}-{conn}"));
            }
            let (client, eventloop) = AsyncClient::new(o, 20_000);
            let (ready_tx, ready_rx) = oneshot::channel();
            tasks.push(tokio::spawn(pump(
                conn,
                eventloop,
                client.clone(),
                filter.clone(),
                raw_tx.clone(),
                stop_rx.clone(),
                ready_tx,
            )));
            clients.push(client);
            readies.push(ready_rx);
        }
        drop(raw_tx);
        for ready_rx in readies {
            match tokio::time::timeout(connect_timeout, ready_rx).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    for t in &tasks {
                        t.abort();
                    }
                    return Err(IngestError::Connect {
                        addr,
                        reason: "no connection acknowledged in time (is the broker running?)"
                            .into(),
                    });
                }
            }
        }
        let batcher = tokio::spawn(batcher(
            raw_rx,
            batch_tx,
            registry,
            cfg.clone(),
            stats.clone(),
        ));
        let sequencer = on_own_thread(sequencer(
            batch_rx,
            Acker {
                clients,
                ledger: ledger.clone(),
                topic_root: cfg.topic_root.clone(),
                packs: packs.clone(),
                alerts,
                stats: stats.clone(),
                runtime: tokio::runtime::Handle::current(),
            },
            ledger,
            packs,
            stats.clone(),
        ));
        tasks.push(batcher);
        tasks.push(sequencer);
        Ok(Ingest { stats, stop, tasks })
    }

    /// Stops taking messages, commits and acks what was already read, then disconnects.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

fn rumqttc_max(payload: usize) -> usize {
    // Room for the topic and headers around the largest payload the broker may pass on.
    (payload * 4).max(crate::broker::BROKER_MAX_PAYLOAD) + 1024
}

/// Drives the connection until shutdown has drained and disconnected.
async fn pump(
    conn: usize,
    mut eventloop: EventLoop,
    client: AsyncClient,
    filter: String,
    raw_tx: mpsc::Sender<Delivery>,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<()>,
) {
    let mut raw_tx = Some(raw_tx);
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let ev = tokio::select! {
            ev = eventloop.poll() => ev,
            changed = stop.changed(), if raw_tx.is_some() => {
                if changed.is_err() || *stop.borrow() {
                    // Stop forwarding: what is not yet read stays unacknowledged at the broker.
                    let _ = client.try_unsubscribe(filter.clone());
                    raw_tx = None;
                }
                continue;
            }
        };
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                // While draining (no sender) a message is not acked, so the broker delivers it
                // again later. Only QoS 0 traffic can overflow (see module docs).
                if let Some(Err(mpsc::error::TrySendError::Full((_, p)))) =
                    raw_tx.as_ref().map(|tx| tx.try_send((conn, p)))
                {
                    tracing::warn!(topic = %p.topic, "ingest queue full; dropping a QoS 0 message");
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                // One line per node, not one per connection (64 by default).
                if conn == 0 {
                    tracing::info!(
                        session_present = ack.session_present,
                        "connected to MQTT broker"
                    );
                } else {
                    tracing::debug!(
                        conn,
                        session_present = ack.session_present,
                        "connected to MQTT broker"
                    );
                }
                if raw_tx.is_some() {
                    let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if raw_tx.is_none() && *stop.borrow() {
                    break;
                }
                if ready.is_some() {
                    // Never connected yet: the embedded broker may still be binding its port,
                    // and a broker that never answers is reported by `Ingest::start` when its
                    // connect timeout runs out. Not worth a warning at every start.
                    tracing::debug!(error = %e, "MQTT broker not reachable yet; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                tracing::warn!(error = %e, "MQTT connection lost; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A message after the batcher: ready to append, or rejected with a reason.
/// A message and the index of the connection it came on (its PUBACK must go back there).
type Delivery = (usize, Publish);

struct Checked {
    conn: usize,
    publish: Publish,
    device: Option<String>,
    seq: Option<u64>,
    payload_hash: String,
    outcome: Result<Ready, Reject>,
}

struct Ready {
    entry: NewEntry,
    event_ids: Vec<String>,
    /// The submitting device's organization, for the business rules.
    org: String,
    parsed: Vec<epcis::Event>,
}

/// A rejection: a stable code for the device, a message for humans, an alert for regulators.
#[derive(Debug)]
pub struct Reject {
    pub code: &'static str,
    pub message: String,
    pub severity: Severity,
    /// Ledger indices that justify the rejection.
    pub evidence: Vec<u64>,
}

impl Reject {
    fn new(code: &'static str, message: impl Into<String>, severity: Severity) -> Self {
        Reject {
            code,
            message: message.into(),
            severity,
            evidence: Vec::new(),
        }
    }
}

/// What the ingest rules know about one batch.
struct RuleContext<'a> {
    prefixes: &'a [(String, String)],
    /// Registered sites: GLN to (organization, coordinates).
    directory: &'a packs::Directory,
    /// Serials already in the ledger, by sgtin key: the entry that commissioned them.
    existing: &'a HashMap<String, u64>,
    /// (signer, seq) of those entries: a resend of the very envelope is not a violation (the
    /// ledger answers it with the original receipt).
    origins: &'a HashMap<u64, (String, i64)>,
    me: (&'a str, i64),
    /// Serials commissioned earlier in this batch, and earlier in this envelope.
    in_batch: &'a HashSet<String>,
    in_envelope: &'a HashSet<String>,
}

/// Stands for "earlier in this batch": the index is not known before the append.
const IN_THIS_BATCH: u64 = u64::MAX;

impl IngestContext for RuleContext<'_> {
    fn brand_owner(&self, gtin: &Gtin) -> Option<String> {
        packs::owner_of(self.prefixes, gtin)
    }

    fn already_commissioned(&self, sgtin: &Sgtin) -> Option<u64> {
        let key = packs::sgtin_key(sgtin);
        if let Some(index) = self.existing.get(&key) {
            let resend = self
                .origins
                .get(index)
                .is_some_and(|(s, q)| s == self.me.0 && *q == self.me.1);
            return (!resend).then_some(*index);
        }
        (self.in_batch.contains(&key) || self.in_envelope.contains(&key)).then_some(IN_THIS_BATCH)
    }

    fn site_owner(&self, gln: &str) -> Option<String> {
        pack::SiteDirectory::organization(self.directory, gln)
    }
}

/// Applies the rules that need the ledger (brand ownership, one commissioning per serial),
/// turning violating messages into rejections before the batch is appended.
async fn apply_rules(batch: &mut [Checked], packs: &Packs) {
    let keys: Vec<String> = batch
        .iter()
        .filter_map(|c| c.outcome.as_ref().ok())
        .flat_map(|r| {
            r.entry
                .events
                .iter()
                .flat_map(|e| e.commissions.iter().map(|c| c.sgtin.clone()))
        })
        .collect();
    if !batch.iter().any(|c| c.outcome.is_ok()) {
        return;
    }
    let mut backoff = Duration::from_millis(50);
    let (prefixes, directory, existing, origins) = loop {
        let lookups = async {
            let prefixes = packs.prefixes().await?;
            let directory = packs.directory().await?;
            let (existing, origins) = if keys.is_empty() {
                (HashMap::new(), HashMap::new())
            } else {
                let existing = packs.commissioned(&keys).await?;
                let idx: Vec<u64> = existing.values().copied().collect();
                let origins = packs.signers_of(&idx).await?;
                (existing, origins)
            };
            Ok::<_, rxledger_store::StoreError>((prefixes, directory, existing, origins))
        };
        match lookups.await {
            Ok(v) => break v,
            Err(e) => {
                tracing::error!(error = %e, "rule lookups failed; retrying in {backoff:?} (nothing was acked)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    let mut in_batch: HashSet<String> = HashSet::new();
    let mut envelopes: HashSet<(String, i64)> = HashSet::new();
    for c in batch.iter_mut() {
        let Ok(ready) = &c.outcome else { continue };
        // A second copy of an envelope in the same batch is a redelivery: the ledger answers
        // it with the first copy's receipt, so the rules must not judge it again.
        if !envelopes.insert((ready.entry.signer.clone(), ready.entry.seq)) {
            continue;
        }
        let mut in_envelope: HashSet<String> = HashSet::new();
        let mut violation = None;
        for (ev, row) in ready.parsed.iter().zip(&ready.entry.events) {
            let ctx = RuleContext {
                prefixes: &prefixes,
                directory: &directory,
                existing: &existing,
                origins: &origins,
                me: (&ready.entry.signer, ready.entry.seq),
                in_batch: &in_batch,
                in_envelope: &in_envelope,
            };
            if let Err(v) = pack::check_ingest(ev, &ready.org, &ctx) {
                violation = Some(v);
                break;
            }
            in_envelope.extend(row.commissions.iter().map(|c| c.sgtin.clone()));
        }
        match violation {
            Some(v) => {
                c.outcome = Err(Reject {
                    code: v.code.as_str(),
                    message: v
                        .message
                        .replace(&IN_THIS_BATCH.to_string(), "earlier in this batch"),
                    severity: Severity::Critical,
                    evidence: v
                        .evidence
                        .into_iter()
                        .filter(|i| *i != IN_THIS_BATCH)
                        .collect(),
                });
            }
            None => in_batch.extend(in_envelope),
        }
    }
}

/// How long the batcher waits for one more message before closing a batch early.
const LINGER: Duration = Duration::from_millis(2);

async fn batcher(
    mut rx: mpsc::Receiver<Delivery>,
    tx: mpsc::Sender<Vec<Checked>>,
    registry: Registry,
    cfg: IngestConfig,
    stats: Arc<Stats>,
) {
    let mut keys: HashMap<String, PublicKey> = HashMap::new();
    loop {
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        // A batch closes when it is full, when `batch_wait` has passed, or when the intake
        // has been idle for `LINGER`: brokers cap unacknowledged deliveries (rumqttd at 100
        // per connection), and those only resume after this batch commits and is acked.
        let deadline = tokio::time::Instant::now() + cfg.batch_wait;
        while batch.len() < cfg.batch_max {
            let linger = (tokio::time::Instant::now() + LINGER).min(deadline);
            match tokio::time::timeout_at(linger, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                Ok(None) | Err(_) => break,
            }
        }
        stats
            .received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let t = std::time::Instant::now();
        let checked = check_batch(batch, &registry, &mut keys, &cfg).await;
        stats
            .check_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if tx.send(checked).await.is_err() {
            break;
        }
    }
}

/// What the registry says about the device a topic names, resolved once per batch.
#[derive(Clone)]
enum Enrolment {
    Unknown,
    Revoked,
    UnusableKey(String),
    Active { key: PublicKey, org: String },
}

/// Everything about a batch that does not need the ledger: size, topic, envelope, device,
/// signature, EPCIS validity and event hashes.
async fn check_batch(
    batch: Vec<Delivery>,
    registry: &Registry,
    keys: &mut HashMap<String, PublicKey>,
    cfg: &IngestConfig,
) -> Vec<Checked> {
    let now = now_ms();
    // Only the topic is read here; the envelopes are parsed on the workers. A device whose
    // topic names it is looked up even if its envelope turns out malformed: one query for
    // every device in the batch, keys parsed once per distinct key.
    let screened: Vec<(Delivery, Option<String>, Result<(), Reject>)> = batch
        .into_iter()
        .map(|(conn, p)| {
            let device = envelope::device_of_topic(&cfg.topic_root, &p.topic).map(str::to_string);
            let outcome = if p.payload.len() > cfg.max_payload {
                Err(Reject::new(
                    "OVERSIZED",
                    format!(
                        "payload is {} bytes; the limit is {}",
                        p.payload.len(),
                        cfg.max_payload
                    ),
                    Severity::Warning,
                ))
            } else if device.is_none() {
                Err(Reject::new(
                    "BAD_TOPIC",
                    format!(
                        "topic {:?} is not {}/devices/{{deviceId}}/events",
                        p.topic, cfg.topic_root
                    ),
                    Severity::Warning,
                ))
            } else {
                Ok(())
            };
            ((conn, p), device, outcome)
        })
        .collect();
    let ids: Vec<String> = screened
        .iter()
        .filter_map(|(_, d, o)| o.as_ref().ok().and(d.clone()))
        .collect();
    // A database outage must not turn into rejections: wait for it, acking nothing.
    let mut backoff = Duration::from_millis(50);
    let devices = loop {
        match registry.devices_by_ids(&ids).await {
            Ok(d) => break d,
            Err(e) => {
                tracing::error!(error = %e, "device lookup failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    };
    let mut enrolments: HashMap<String, Enrolment> = HashMap::with_capacity(devices.len());
    for (id, row) in &devices {
        let e = if row.status != "active" {
            Enrolment::Revoked
        } else if let Some(k) = keys.get(&row.public_key) {
            Enrolment::Active {
                key: *k,
                org: row.org_id.clone(),
            }
        } else {
            match PublicKey::from_sec1_hex(&row.public_key) {
                Ok(k) => {
                    keys.insert(row.public_key.clone(), k);
                    Enrolment::Active {
                        key: k,
                        org: row.org_id.clone(),
                    }
                }
                Err(e) => Enrolment::UnusableKey(e.to_string()),
            }
        };
        enrolments.insert(id.clone(), e);
    }
    let mut work: Vec<_> = screened
        .into_iter()
        .map(|(p, device, outcome)| {
            let enrolment = outcome.map(|()| {
                device
                    .as_ref()
                    .and_then(|d| enrolments.get(d))
                    .cloned()
                    .unwrap_or(Enrolment::Unknown)
            });
            (p, device, enrolment)
        })
        .collect();

    // Envelopes, signatures, EPCIS parsing and hashing: CPU-bound, spread over the workers.
    let skew = cfg.max_clock_skew.as_millis() as i64;
    let per = work.len().div_ceil(cfg.workers.max(1)).max(1);
    let mut handles = Vec::new();
    while !work.is_empty() {
        let chunk: Vec<_> = work.drain(..per.min(work.len())).collect();
        handles.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|((conn, p), device, enrolment)| {
                    verify_one(conn, p, device, enrolment, now, skew)
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(v) => out.extend(v),
            Err(e) => tracing::error!(error = %e, "a verification worker panicked"),
        }
    }
    out
}

/// Opens the envelope and checks, in this order, its form, its device's enrolment, its
/// signature and its events.
fn open_enrolled(
    payload: &[u8],
    device: &str,
    enrolment: Enrolment,
) -> Result<(Opened, PublicKey, String), Reject> {
    let o = envelope::open(payload, device).map_err(envelope_reject)?;
    let id = &o.body.device_id;
    match enrolment {
        Enrolment::Active { key, org } => Ok((o, key, org)),
        Enrolment::Unknown => Err(Reject::new(
            "UNKNOWN_DEVICE",
            format!("device {id:?} is not enrolled"),
            Severity::Critical,
        )),
        Enrolment::Revoked => Err(Reject::new(
            "DEVICE_REVOKED",
            format!("device {id:?} is revoked"),
            Severity::Critical,
        )),
        Enrolment::UnusableKey(e) => Err(Reject::new(
            "UNKNOWN_DEVICE",
            format!("device {id:?} has an unusable enrolled key: {e}"),
            Severity::Critical,
        )),
    }
}

fn verify_one(
    conn: usize,
    publish: Publish,
    device: Option<String>,
    enrolment: Result<Enrolment, Reject>,
    now: i64,
    skew: i64,
) -> Checked {
    let payload_hash = envelope::payload_hash(&publish.payload);
    let outcome = enrolment.and_then(|e| {
        // `device` is always set when screening passed (BAD_TOPIC otherwise).
        open_enrolled(&publish.payload, device.as_deref().unwrap_or_default(), e)
    });
    let seq = outcome.as_ref().ok().map(|(o, _, _)| o.body.seq);
    let outcome = outcome.and_then(|(o, key, org)| {
        o.verify(&key).map_err(envelope_reject)?;
        let sent = epcis::parse_time(&o.body.sent_at).map_err(|e| {
            Reject::new(
                "MALFORMED_ENVELOPE",
                format!("sentAt: {e}"),
                Severity::Warning,
            )
        })?;
        if sent > now + skew {
            return Err(Reject::new(
                "CLOCK_SKEW",
                format!(
                    "sentAt {} is more than {} s in the future; check the device clock",
                    o.body.sent_at,
                    skew / 1000
                ),
                Severity::Warning,
            ));
        }
        let mut events = Vec::with_capacity(o.body.events.len());
        let mut event_ids = Vec::with_capacity(o.body.events.len());
        let mut parsed = Vec::with_capacity(o.body.events.len());
        for (i, json) in o.body.events.iter().enumerate() {
            let (row, id, ev) = check_event(json, &org, now, skew).map_err(|r| Reject {
                message: format!("events[{i}]: {}", r.message),
                ..r
            })?;
            if let Some(j) = event_ids.iter().position(|e| *e == id) {
                return Err(Reject::new(
                    "DUPLICATE_EVENT",
                    format!("events[{i}] is the same event as events[{j}] ({id})"),
                    Severity::Warning,
                ));
            }
            event_ids.push(id);
            events.push(row);
            parsed.push(ev);
        }
        let seq = i64::try_from(o.body.seq).map_err(|_| {
            Reject::new(
                "MALFORMED_ENVELOPE",
                "seq must be below 2^63",
                Severity::Warning,
            )
        })?;
        Ok(Ready {
            entry: NewEntry {
                data: publish.payload.to_vec(),
                kind: EntryKind::DeviceEnvelope,
                signer: o.body.device_id.clone(),
                seq,
                events,
            },
            event_ids,
            org,
            parsed,
        })
    });
    Checked {
        conn,
        publish,
        device,
        seq,
        payload_hash,
        outcome,
    }
}

/// Validates one EPCIS event and computes its CBV 2.0 hash ID and index rows.
fn check_event(
    json: &serde_json::Value,
    org: &str,
    now: i64,
    skew: i64,
) -> Result<(NewEvent, String, epcis::Event), Reject> {
    packs::index_event(json, org, now, skew).map_err(epcis_reject)
}

fn envelope_reject(e: EnvelopeError) -> Reject {
    let code = match &e {
        EnvelopeError::BadSignature => "BAD_SIGNATURE",
        EnvelopeError::DeviceMismatch { .. } => "DEVICE_MISMATCH",
        EnvelopeError::EventCount(_) => "TOO_MANY_EVENTS",
        _ => "MALFORMED_ENVELOPE",
    };
    let severity = if code == "BAD_SIGNATURE" {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Reject::new(code, e.to_string(), severity)
}

fn epcis_reject(e: epcis::EpcisError) -> Reject {
    Reject::new(e.code(), e.to_string(), Severity::Warning)
}

/// A batch's admissions, one per entry, and the head after it.
struct Appended {
    admissions: Vec<Admission>,
    head: rxledger_store::SignedHead,
}

/// Appends a batch, waiting out database outages (nothing is acked meanwhile). If the batch
/// breaks a database constraint, which the checks before should have made impossible, one
/// bad envelope must not stall ingest forever: the entries are appended one by one and the
/// offender alone is refused.
async fn append_durably(ledger: &Ledger, entries: &[NewEntry]) -> Appended {
    let mut backoff = Duration::from_millis(50);
    loop {
        match ledger.append(entries).await {
            Ok(b) => {
                return Appended {
                    admissions: b.admissions,
                    head: b.head,
                };
            }
            Err(e) if e.is_conflict() && entries.len() > 1 => {
                tracing::error!(error = %e, "a batch broke a constraint; appending its entries one by one");
                let mut admissions = Vec::with_capacity(entries.len());
                let mut head = ledger.head();
                for entry in entries {
                    let one = Box::pin(append_durably(ledger, std::slice::from_ref(entry))).await;
                    admissions.extend(one.admissions);
                    head = one.head;
                }
                return Appended { admissions, head };
            }
            Err(e) if e.is_conflict() => {
                tracing::error!(error = %e, "an entry broke a constraint and was refused");
                return Appended {
                    admissions: vec![Admission::Conflict],
                    head: ledger.head(),
                };
            }
            Err(e) => {
                tracing::error!(error = %e, "appending a batch failed; retrying in {backoff:?} (nothing was acked)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// A placeholder for an entry lent to the append; allocates nothing.
fn lent() -> NewEntry {
    NewEntry {
        data: Vec::new(),
        kind: EntryKind::DeviceEnvelope,
        signer: String::new(),
        seq: 0,
        events: Vec::new(),
    }
}

/// Runs `task` on a thread of its own, with a single-threaded runtime.
///
/// The sequencer is the one serial stage of ingest, and an append is some 30 database round
/// trips. On the shared runtime each of its wake-ups queued behind the MQTT event loops (one
/// per connection), which are busy under load, and the append took about a tenth longer.
fn on_own_thread(task: impl std::future::Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(task),
            Err(e) => tracing::error!(error = %e, "cannot start the sequencer's runtime"),
        }
    })
}

/// What the acker needs, and the runtime it runs on: the shared one, beside the connections
/// it publishes through.
struct Acker {
    clients: Vec<AsyncClient>,
    ledger: Arc<Ledger>,
    topic_root: String,
    packs: Arc<Packs>,
    alerts: Alerts,
    stats: Arc<Stats>,
    runtime: tokio::runtime::Handle,
}

/// Appends batches in order. Receipts and acks are handed to the acker, so the next batch's
/// rules and append start as soon as this one is committed.
async fn sequencer(
    mut rx: mpsc::Receiver<Vec<Checked>>,
    a: Acker,
    ledger: Arc<Ledger>,
    packs: Arc<Packs>,
    stats: Arc<Stats>,
) {
    // One committed batch may wait for the acker while the next is appended: still bounded.
    let (ack_tx, ack_rx) = mpsc::channel::<(Vec<Checked>, Appended)>(1);
    let acker = a.runtime.spawn(acker(
        ack_rx,
        a.clients,
        a.ledger,
        a.topic_root,
        a.packs,
        a.alerts,
        a.stats,
    ));
    while let Some(mut batch) = rx.recv().await {
        let t = std::time::Instant::now();
        apply_rules(&mut batch, &packs).await;
        stats
            .rules_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        let t = std::time::Instant::now();
        // The entries are lent to the append and put back for the acker, not copied.
        let entries: Vec<NewEntry> = batch
            .iter_mut()
            .filter_map(|c| {
                c.outcome
                    .as_mut()
                    .ok()
                    .map(|r| std::mem::replace(&mut r.entry, lent()))
            })
            .collect();
        // Nothing is acked until the batch is durable; while the database is down, wait.
        let result = append_durably(&ledger, &entries).await;
        let ready = batch.iter_mut().filter_map(|c| c.outcome.as_mut().ok());
        for (r, entry) in ready.zip(entries) {
            r.entry = entry;
        }
        stats
            .append_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if ack_tx.send((batch, result)).await.is_err() {
            break;
        }
    }
    // Drained: the acker finishes the committed batches, then disconnects.
    drop(ack_tx);
    if let Err(e) = acker.await {
        tracing::error!(error = %e, "the acker stopped abnormally");
    }
}

/// Records the alerts of each committed batch, then publishes its receipts and acks its
/// messages, batch after batch in commit order (so PUBACKs keep the order of the PUBLISHes).
async fn acker(
    mut rx: mpsc::Receiver<(Vec<Checked>, Appended)>,
    clients: Vec<AsyncClient>,
    ledger: Arc<Ledger>,
    topic_root: String,
    packs: Arc<Packs>,
    alerts: Alerts,
    stats: Arc<Stats>,
) {
    let monitor = monitor::spawn(packs, alerts.clone());
    while let Some((batch, result)) = rx.recv().await {
        let t = std::time::Instant::now();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        let mut admissions = result.admissions.into_iter();
        let mut watch_list = Vec::new();
        let mut receipts = Vec::with_capacity(batch.len());
        let mut routes = Vec::with_capacity(batch.len());
        // (receipt position, entry index, leaf hash) of receipts that need an inclusion proof.
        let mut proved = Vec::new();
        let mut new_alerts = Vec::new();
        for c in batch {
            let mut r = Receipt {
                v: envelope::VERSION,
                status: String::new(),
                device_id: c.device.clone().unwrap_or_default(),
                seq: c.seq,
                payload_hash: c.payload_hash.clone(),
                code: None,
                message: None,
                entry_index: None,
                leaf_hash: None,
                event_ids: Vec::new(),
                checkpoint: None,
                inclusion_proof: Vec::new(),
                signature: None,
            };
            let reject = match c.outcome {
                Ok(ready) => {
                    let admission = admissions.next();
                    let leaf_raw = merkle::leaf_hash(&ready.entry.data);
                    let leaf = hex::encode(leaf_raw);
                    match admission {
                        Some(Admission::Appended { index })
                        | Some(Admission::Duplicate { index }) => {
                            let dup = matches!(admission, Some(Admission::Duplicate { .. }));
                            r.status = if dup { "DUPLICATE" } else { "ACCEPTED" }.into();
                            r.entry_index = Some(index);
                            r.leaf_hash = Some(leaf);
                            proved.push((receipts.len(), index, leaf_raw));
                            r.event_ids = ready.event_ids;
                            r.checkpoint = Some(result.head.note.clone());
                            if dup {
                                stats.duplicates.fetch_add(1, Ordering::Relaxed);
                            } else {
                                stats.appended.fetch_add(1, Ordering::Relaxed);
                                watch_list
                                    .extend(ready.parsed.iter().flat_map(monitor::packs_to_watch));
                            }
                            None
                        }
                        Some(Admission::Replay { last_seq }) => Some(Reject::new(
                            "REPLAY",
                            format!(
                                "sequence number {} is not above the last accepted one ({last_seq}) and is not a resend of it",
                                c.seq.unwrap_or(0)
                            ),
                            Severity::Critical,
                        )),
                        Some(Admission::DuplicateEvent { index, event }) => Some(Reject::new(
                            "DUPLICATE_EVENT",
                            format!(
                                "event {} is already in the log at entry {index}",
                                epcis::id_of_hash(&event)
                            ),
                            Severity::Warning,
                        )),
                        // Device envelopes carry no precondition, so never Refused.
                        Some(Admission::Conflict | Admission::Refused(_)) | None => {
                            Some(Reject::new(
                                "INTERNAL",
                                "the envelope conflicts with data already in the ledger and was not stored; the operator was alerted",
                                Severity::Critical,
                            ))
                        }
                    }
                }
                Err(reject) => Some(reject),
            };
            if let Some(reject) = reject {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                r.status = "REJECTED".into();
                r.code = Some(reject.code.to_string());
                r.message = Some(reject.message.clone());
                let mut subjects = Vec::new();
                if let Some(d) = &c.device {
                    subjects.push(format!("device:{d}"));
                }
                new_alerts.push(NewAlert {
                    code: reject.code.to_string(),
                    severity: reject.severity,
                    subjects,
                    message: reject.message,
                    evidence: reject.evidence,
                    raw: Some(c.publish.payload.iter().copied().take(64 * 1024).collect()),
                });
            }
            receipts.push(r);
            routes.push((c.conn, c.publish, c.device));
        }
        attach_proofs(&ledger, &mut receipts, &proved, result.head.size).await;
        envelope::sign_receipts(&mut receipts, ledger.key());
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = alerts.record(new_alerts.clone()).await {
            tracing::error!(error = %e, "recording alerts failed; retrying in {backoff:?} (nothing was acked)");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        for ((conn, publish, device), receipt) in routes.into_iter().zip(receipts) {
            let client = &clients[conn.min(clients.len() - 1)];
            if let Some(d) = device {
                let bytes = serde_json::to_vec(&receipt).unwrap_or_default();
                if let Err(e) = client
                    .publish(
                        envelope::acks_topic(&topic_root, &d),
                        QoS::AtLeastOnce,
                        false,
                        bytes,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not queue a receipt");
                }
            }
            if let Err(e) = client.ack(&publish).await {
                tracing::warn!(error = %e, "could not queue a PUBACK");
            }
        }
        stats
            .ack_us
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if !watch_list.is_empty() && monitor.try_send(watch_list).is_err() {
            tracing::warn!("the suspicion monitor is behind; some packs were not re-examined");
        }
    }
    // Drained: everything read was committed and acked. Disconnect after those requests.
    for client in &clients {
        let _ = client.disconnect().await;
    }
}

/// Puts each accepted or duplicate receipt's inclusion proof in the batch's checkpoint tree.
/// The batch's own entries get theirs from one stored proof (see `proofs`); others (duplicates
/// of older entries) are read one by one. A receipt left without a proof is refused by the
/// device, which resends and gets a `DUPLICATE` receipt with one.
async fn attach_proofs(
    ledger: &Ledger,
    receipts: &mut [Receipt],
    proved: &[(usize, u64, merkle::Hash)],
    size: u64,
) {
    let mut fresh: Vec<&(usize, u64, merkle::Hash)> = proved
        .iter()
        .filter(|p| receipts[p.0].status == "ACCEPTED")
        .collect();
    fresh.sort_by_key(|p| p.1);
    let contiguous = fresh
        .first()
        .is_some_and(|f| f.1 + fresh.len() as u64 == size)
        && fresh.windows(2).all(|w| w[1].1 == w[0].1 + 1);
    let mut done = HashSet::new();
    if contiguous {
        let a = fresh[0].1;
        let leaves: Vec<merkle::Hash> = fresh.iter().map(|p| p.2).collect();
        let proofs = match ledger.inclusion_proof(a, size).await {
            Ok(first) => {
                crate::proofs::batch_proofs(a, size, &leaves, &first).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match proofs {
            Ok(proofs) => {
                for (p, proof) in fresh.iter().zip(proofs) {
                    receipts[p.0].inclusion_proof = proof.iter().map(hex::encode).collect();
                    done.insert(p.0);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot prove a batch's entries"),
        }
    }
    for (at, index, _) in proved.iter().filter(|p| !done.contains(&p.0)) {
        match ledger.inclusion_proof(*index, size).await {
            Ok(proof) => receipts[*at].inclusion_proof = proof.iter().map(hex::encode).collect(),
            Err(e) => tracing::error!(error = %e, index, "cannot prove an entry for its receipt"),
        }
    }
}
