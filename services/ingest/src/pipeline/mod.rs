//! From MQTT messages to ledger entries and receipts.
//!
//! Stages joined by channels, one module each:
//! - [`pump`]: the **event loops** (one per connection) drive the MQTT connections, forward
//!   publishes and carry out acks and receipt publishes queued by the acker;
//! - [`check`]: the **batcher** gathers up to `batch_max` messages or `batch_wait`, looks up the
//!   devices their topics name in one query, then opens envelopes, verifies signatures, parses
//!   and hashes events on every core;
//! - [`sequencer`]: applies the rules that need the ledger ([`rules`]) and appends the batch in
//!   one transaction (retrying while the database is down, without acking anything), on a
//!   thread of its own;
//! - [`acker`]: takes each committed batch, in commit order, records its alerts, then acks
//!   each message and publishes its receipt, while the sequencer appends the next batch;
//! - shutdown drains: stop forwarding, finish the batches already read, ack them, disconnect.
//!
//! Memory is bounded by MQTT flow control, not by hope: a QoS 1 message stays unacknowledged
//! until its batch commits, the broker sends at most its in-flight limit of unacknowledged
//! messages (at most 65,535, the packet-id space), and the channel between the event loop and
//! the batcher is that large. A slow database therefore slows the broker's delivery.

mod acker;
mod check;
mod pump;
mod rules;
mod sequencer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Publish};
use rxledger_core::codes::RejectCode;
use rxledger_core::envelope::{self, EnvelopeError};
use rxledger_core::epcis::{self, EpcisError};
use rxledger_core::histogram::{Histogram, INGEST_BUCKETS};
use rxledger_core::merkle::Hash;
use rxledger_store::packs::Packs;
use rxledger_store::{Alerts, Ledger, NewEntry, Registry, Severity};
use tokio::sync::{mpsc, oneshot, watch};
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
    /// Envelopes a device connection may have awaiting receipts on the embedded broker
    /// (PROTOCOL.md §9.1); the gate holds the rest back, and each device's acks log is sized
    /// for this many receipts. Ignored with an external broker.
    pub device_window: usize,
}

/// The default of [`IngestConfig::device_window`]: with 10,000 devices, the embedded
/// broker's acks logs stay under 1.7 GB.
pub const DEFAULT_DEVICE_WINDOW: usize = 16;

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
            device_window: DEFAULT_DEVICE_WINDOW,
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
#[derive(Debug)]
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
    /// Each batch's append transaction (the sequencer's serial step), as a histogram: its
    /// tail is what envelopes queue behind.
    pub append_seconds: Histogram,
    /// Each envelope's time in the node, from the event loop reading it to its receipt and
    /// PUBACK being queued on the connection it came on: the node's share of what a device
    /// sees between its publish and its receipt.
    pub receipt_seconds: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Stats {
            received: zero(),
            appended: zero(),
            duplicates: zero(),
            rejected: zero(),
            batches: zero(),
            check_us: zero(),
            rules_us: zero(),
            append_us: zero(),
            ack_us: zero(),
            append_seconds: Histogram::with_edges(&INGEST_BUCKETS),
            receipt_seconds: Histogram::with_edges(&INGEST_BUCKETS),
        }
    }
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
        // Clean sessions: a node that dies leaves no session behind for the broker to keep
        // routing its share of the envelopes to (Mosquitto queues them for an offline
        // persistent session until it comes back, however long that is). Its subscriptions end
        // when its connection closes, so new envelopes go at once to the nodes still
        // connected; those it held unacknowledged are resent by their devices (PROTOCOL.md
        // §2, §9). Connecting clean also discards a session an older version left persistent.
        opts.set_manual_acks(true)
            .set_clean_session(true)
            .set_inflight(1000)
            .set_max_packet_size(rumqttc_max(cfg.max_payload), rumqttc_max(cfg.max_payload));
        let stats = Arc::new(Stats::default());
        let (stop, stop_rx) = watch::channel(false);
        let (raw_tx, raw_rx) = mpsc::channel::<Delivery>(65_536);
        let (batch_tx, batch_rx) = mpsc::channel::<Vec<Checked<Ready>>>(2);
        let (clients, mut tasks, readies) = pump::connect(&opts, &cfg, raw_tx, stop_rx);
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
        let batcher = tokio::spawn(check::batcher(
            raw_rx,
            batch_tx,
            registry,
            cfg.clone(),
            stats.clone(),
        ));
        let acker = acker::Acker {
            clients,
            ledger: ledger.clone(),
            topic_root: cfg.topic_root.clone(),
            packs: packs.clone(),
            alerts,
            stats: stats.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let sequencer = sequencer::on_own_thread(sequencer::run(
            batch_rx,
            acker,
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

/// A message and where it came from (its PUBACK must go back there).
type Delivery = (Route, Publish);

/// The connection a message came on, and which session of it: each connect starts a new
/// session. Nodes connect with clean sessions, so after a reconnect the broker has forgotten
/// the old session's deliveries, and a PUBACK with one of their packet ids would ack some
/// other message (Mosquitto) or break the connection (rumqttd, which disconnects on an
/// unexpected ack). The acker acks a message only in the session it came in; the device
/// resends one that was not (PROTOCOL.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    conn: usize,
    session: u64,
    /// When the event loop read the message: the node's share of its publish→receipt time
    /// is measured from here ([`Stats::receipt_seconds`]).
    received: std::time::Instant,
}

/// One of the node's MQTT connections: its client, and the session it is in (counted by its
/// event loop at every CONNACK).
struct Connection {
    client: AsyncClient,
    session: Arc<AtomicU64>,
}

impl Connection {
    /// Whether a message that came on `route` can still be acknowledged here.
    fn current(&self, route: Route) -> bool {
        self.session.load(std::sync::atomic::Ordering::Acquire) == route.session
    }
}

/// A message on its way through the stages: where it came from, what could be read of it,
/// and either what the next stage works on (`T`) or why it was rejected.
struct Checked<T> {
    route: Route,
    publish: Publish,
    device: Option<String>,
    seq: Option<u64>,
    payload_hash: String,
    outcome: Result<T, Reject>,
}

impl<T> Checked<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Checked<U> {
        Checked {
            route: self.route,
            publish: self.publish,
            device: self.device,
            seq: self.seq,
            payload_hash: self.payload_hash,
            outcome: self.outcome.map(f),
        }
    }
}

/// A message that passed every check without the ledger: the entry to offer, and what the
/// rules and the acker need.
struct Ready {
    entry: NewEntry,
    /// The submitting device's organization, for the business rules.
    org: String,
    parsed: Vec<epcis::Event>,
}

impl Ready {
    /// Hands the entry to the append; keeps what the acker needs once it is committed.
    fn offer(self) -> (NewEntry, Offered) {
        let event_hashes = self.entry.events.iter().map(|e| e.hash).collect();
        (
            self.entry,
            Offered {
                event_hashes,
                parsed: self.parsed,
            },
        )
    }
}

/// An entry offered to the ledger, as the acker sees it.
struct Offered {
    /// CBV 2.0 event hashes, in order, rendered as hash IDs only in the receipt.
    event_hashes: Vec<Hash>,
    parsed: Vec<epcis::Event>,
}

/// A rejection: a stable code for the device, a message for humans, an alert for regulators.
#[derive(Debug)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
    pub severity: Severity,
    /// Ledger indices that justify the rejection.
    pub evidence: Vec<u64>,
}

impl Reject {
    fn new(code: RejectCode, message: impl Into<String>, severity: Severity) -> Self {
        Reject {
            code,
            message: message.into(),
            severity,
            evidence: Vec::new(),
        }
    }
}

impl From<EnvelopeError> for Reject {
    fn from(e: EnvelopeError) -> Self {
        let code = RejectCode::from(&e);
        let severity = if code == RejectCode::BadSignature {
            Severity::Critical
        } else {
            Severity::Warning
        };
        Reject::new(code, e.to_string(), severity)
    }
}

impl From<EpcisError> for Reject {
    fn from(e: EpcisError) -> Self {
        Reject::new(RejectCode::from(&e), e.to_string(), Severity::Warning)
    }
}

/// Runs `attempt` until it succeeds, waiting out failures (a database outage) with a growing
/// pause; `what` names the step in the log. Nothing is acked meanwhile, so a failure delays
/// messages and never turns into a rejection.
async fn retry<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::error!(error = %e, "{what} failed; retrying in {backoff:?} (nothing was acked)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Every connection, for acks and receipts.
type Clients = Vec<Connection>;

/// Resolves once every connection's subscription is acknowledged.
type Readies = Vec<oneshot::Receiver<()>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_acked_only_in_the_session_it_came_in() {
        let (client, _eventloop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 1);
        let c = Connection {
            client,
            session: Arc::new(AtomicU64::new(1)),
        };
        let came = Route {
            conn: 0,
            session: 1,
            received: std::time::Instant::now(),
        };
        assert!(c.current(came));
        // The event loop reconnected: the broker forgot the first session's packet ids.
        c.session.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        assert!(!c.current(came));
    }
}
