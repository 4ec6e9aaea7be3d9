//! A store-and-forward scanner: envelopes go to the durable [`Queue`] first, then to MQTT,
//! and stay queued until the server's receipt arrives on the device's acks topic.
//!
//! One task owns the MQTT connection. On every (re)connection it subscribes to the acks topic
//! and, once the subscription is acknowledged, publishes the unreceipted envelopes in queue
//! order, at most [`IN_FLIGHT`] at a time. If receipts stop coming while envelopes are out
//! (the server is down behind a live broker), everything unreceipted is resent after
//! `resend_after`. Resends are the exact queued bytes, so the server answers `DUPLICATE` with
//! the original receipt for anything it already logged.
//!
//! The device logs in to the broker with the MQTT credentials derived from its key and the
//! log's (`rxledger_core::mqttauth`), and drops an envelope only for a receipt that verifies
//! against the pinned log ([`Queue::record_receipts`]): signature, checkpoint, inclusion proof.
//!
//! With [`DeviceOptions::witnesses`] a receipt is not enough: the device also holds each
//! receipted envelope until a checkpoint that the witnesses' quorum cosigned extends the
//! receipt's tree ([`crate::witness`]), and keeps it for good, reporting a fork
//! ([`Device::fork`]), if one is shown not to.
//!
//! Every queue write ends in an fsync, so it runs on tokio's blocking pool and the connection
//! task waits for it there: a slow disk stalls this device, never a runtime worker (and with
//! it other devices' connections).
//!
//! rumqttc's own retransmission state is thrown away on every disconnect (a new client is
//! built), so the queue is the single source of truth for what must be sent. That also lets
//! the broker address change at run time ([`Device::set_broker`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rxledger_core::envelope::{self, Body, Receipt};
use rxledger_core::keys::LogVerifier;
use rxledger_core::mqttauth;
use rxledger_keyfile::tls::ClientTls;
use serde_json::Value;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::Api;
use crate::identity::Identity;
use crate::queue::{Queue, QueueError, Record};
use crate::witness::{self, Witnessing};

/// Most envelopes published and not yet receipted, per device: the protocol's default window
/// (PROTOCOL.md §9.1). The embedded broker holds back what a device publishes beyond its
/// window, so more would only wait there.
pub const IN_FLIGHT: usize = 16;

/// An MQTT broker address, and for `mqtts://` the TLS configuration to reach it with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: Option<BrokerTls>,
}

/// A TLS client configuration (rustls with aws-lc-rs, `rxledger_keyfile::tls`). Two are equal
/// when they are the same configuration.
#[derive(Clone)]
pub struct BrokerTls(pub Arc<rustls::ClientConfig>);

impl PartialEq for BrokerTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for BrokerTls {}

impl std::fmt::Debug for BrokerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerTls")
    }
}

impl Broker {
    /// Parses `mqtt://host[:port]` (port 1883), `mqtts://host[:port]` (port 8883, trusting
    /// the platform's authorities) or a bare `host:port`.
    pub fn parse(url: &str) -> Result<Broker, String> {
        Self::parse_with(url, &ClientTls::default())
    }

    /// Like [`parse`](Self::parse), with `mqtts://` trusting the authorities `tls` names.
    pub fn parse_with(url: &str, tls: &ClientTls<'_>) -> Result<Broker, String> {
        let (secure, rest) = match url.split_once("://") {
            Some(("mqtt", rest)) => (false, rest),
            Some(("mqtts", rest)) => (true, rest),
            Some(_) => return Err(format!("{url:?}: firmware-sim speaks mqtt:// and mqtts://")),
            None => (false, url),
        };
        let rest = rest.trim_end_matches('/');
        let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse()
                    .map_err(|_| format!("{url:?}: the port is not a number"))?,
            ),
            None => (rest, if secure { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let tls = match secure {
            true => Some(BrokerTls(
                tls.config().map_err(|e| format!("{url:?}: {e}"))?,
            )),
            false => None,
        };
        Ok(Broker {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            tls,
        })
    }

    /// Client options for this broker (TCP or TLS) with the given client id.
    pub fn options(&self, client_id: impl Into<String>) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        if let Some(BrokerTls(config)) = &self.tls {
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(config.clone())));
        }
        o
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// How to run one device.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    pub identity: Identity,
    pub topic_root: String,
    pub queue_dir: PathBuf,
    pub broker: Broker,
    /// Resend unreceipted envelopes when no receipt has arrived for this long.
    pub resend_after: Duration,
    /// The log this device pins: receipts must verify against it, and its public key is half
    /// of the device's MQTT credentials.
    pub log: LogVerifier,
    /// The witnesses whose cosigned checkpoint must extend a receipt's tree before the device
    /// drops the envelope; `None` drops it on the log's receipt alone.
    pub witnesses: Option<Witnessing>,
}

impl DeviceOptions {
    pub fn new(
        identity: Identity,
        broker: Broker,
        queue_dir: PathBuf,
        log: LogVerifier,
    ) -> DeviceOptions {
        DeviceOptions {
            log,
            identity,
            topic_root: envelope::DEFAULT_TOPIC_ROOT.into(),
            queue_dir,
            broker,
            resend_after: Duration::from_secs(5),
            witnesses: None,
        }
    }
}

/// Errors of a running device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("no receipt for envelope seq {seq} ({hash}) within {waited:?}")]
    Timeout {
        seq: u64,
        hash: String,
        waited: Duration,
    },
    #[error("{0} envelopes still have no receipt after {1:?}")]
    FlushTimeout(u64, Duration),
    #[error("the device has stopped")]
    Stopped,
    #[error("the broker refuses this device's login (revoked?)")]
    Refused,
    #[error(
        "{0} receipted envelopes are still held: no checkpoint the witnesses cosigned extends \
         their receipts' trees after {1:?} (last: {2})"
    )]
    WitnessTimeout(u64, Duration, String),
    #[error("the log showed this device a fork, so its envelopes stay queued: {0}")]
    Fork(String),
}

/// A queued envelope; await its receipt with [`Ticket::receipt`].
#[derive(Debug)]
pub struct Ticket {
    pub seq: u64,
    pub hash: String,
    pub payload: Vec<u8>,
    rx: oneshot::Receiver<Receipt>,
    refused: watch::Receiver<bool>,
}

impl Ticket {
    /// The envelope's receipt; [`DeviceError::Refused`] if the broker refuses the device's
    /// login first (a revoked device is cut off by the embedded broker, so its last envelopes
    /// get no receipt).
    pub async fn receipt(self, timeout: Duration) -> Result<Receipt, DeviceError> {
        let Ticket {
            seq,
            hash,
            rx,
            mut refused,
            ..
        } = self;
        let cut_off = async move {
            match refused.wait_for(|r| *r).await {
                Ok(_) => DeviceError::Refused,
                Err(_) => DeviceError::Stopped,
            }
        };
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                biased;
                r = rx => r.map_err(|_| DeviceError::Stopped),
                e = cut_off => Err(e),
            }
        });
        match outcome.await {
            Ok(r) => r,
            Err(_) => Err(DeviceError::Timeout {
                seq,
                hash,
                waited: timeout,
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    broker: Broker,
    online: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    log: LogVerifier,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<Receipt>>>>,
    /// Unreceipted envelopes, mirrored from the queue for waiting without the lock.
    unreceipted: watch::Sender<u64>,
    /// Receipted envelopes held for the witnesses, mirrored likewise.
    held: watch::Sender<u64>,
    /// Why the last look for a cosigned checkpoint settled nothing, if it did not.
    witness_note: Mutex<String>,
    /// Evidence of a fork: a receipt's tree that the cosigned tree does not extend.
    fork: watch::Sender<Option<String>>,
    connected: watch::Sender<bool>,
    /// The broker refused the last login (CONNACK refusal); cleared by the next accepted one.
    refused: watch::Sender<bool>,
    wake: Notify,
    /// Publishes made (including resends), for reports.
    published: AtomicU64,
    /// Why the last connection attempt failed, for a clear error when none succeeds.
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock is a bug already reported; the queue's files are
        // consistent after every call, so keep using it.
        lock(&self.queue)
    }

    /// Runs queue work that writes and fsyncs files on the blocking pool, so no runtime worker
    /// waits for the disk or for the queue's lock, and the lock is never held across an
    /// `.await`. The caller waits for it, so what it made durable is durable when this
    /// returns. `None` when the runtime is shutting down.
    async fn on_disk<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Shared, &mut Queue) -> T + Send + 'static,
    ) -> Option<T> {
        let shared = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut q = shared.queue();
            work(&shared, &mut q)
        });
        match done.await {
            Ok(t) => Some(t),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
    fn waiters(&self) -> MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Receipt>>>> {
        lock(&self.waiters)
    }
}

/// A running scanner.
pub struct Device {
    id: String,
    identity: Identity,
    topic_root: String,
    shared: Arc<Shared>,
    target: watch::Sender<Target>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Device {
    /// Opens the queue and starts the connection task. Envelopes left unreceipted by an
    /// earlier run are resent as soon as the broker is reachable.
    pub fn start(opts: DeviceOptions) -> Result<Device, DeviceError> {
        let mut queue = Queue::open(&opts.queue_dir)?;
        if opts.witnesses.is_some() {
            queue.hold_for_witnesses();
        }
        let (unreceipted, _) = watch::channel(queue.unreceipted());
        let (connected, _) = watch::channel(false);
        let password = mqttauth::device_password(
            &opts.identity.key,
            opts.log.public_key(),
            &opts.identity.device_id,
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            log: opts.log.clone(),
            waiters: Mutex::new(HashMap::new()),
            unreceipted,
            held: watch::channel(0).0,
            witness_note: Mutex::new("no cosigned checkpoint read yet".into()),
            fork: watch::channel(None).0,
            connected,
            refused: watch::channel(false).0,
            wake: Notify::new(),
            published: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let (target, target_rx) = watch::channel(Target {
            broker: opts.broker.clone(),
            online: true,
        });
        let (stop, stop_rx) = watch::channel(false);
        if let Some(w) = opts.witnesses.clone() {
            tokio::spawn(hold_for_witnesses(shared.clone(), w, stop.subscribe()));
        }
        let task = tokio::spawn(link(
            shared.clone(),
            opts.identity.device_id.clone(),
            password,
            opts.topic_root.clone(),
            opts.resend_after,
            target_rx,
            stop_rx,
        ));
        Ok(Device {
            id: opts.identity.device_id.clone(),
            identity: opts.identity,
            topic_root: opts.topic_root,
            shared,
            target,
            stop,
            task: Some(task),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn topic_root(&self) -> &str {
        &self.topic_root
    }

    /// Signs `events` with the next sequence number, queues the envelope durably and hands it
    /// to the connection. Returns once it is on disk.
    pub async fn send(&self, events: Vec<Value>, sent_at: String) -> Result<Ticket, DeviceError> {
        let key = self.identity.key.clone();
        let id = self.id.clone();
        self.enqueue(move |q| {
            q.push_with(|seq| {
                let body = Body {
                    v: envelope::VERSION,
                    device_id: id,
                    seq,
                    sent_at,
                    events,
                };
                envelope::seal(&key, &body)
            })
        })
        .await
    }

    /// Queues bytes built elsewhere: a resend of an old envelope, or a deliberately bad one.
    pub async fn send_raw(&self, seq: u64, payload: Vec<u8>) -> Result<Ticket, DeviceError> {
        self.enqueue(move |q| q.push(seq, payload)).await
    }

    /// The next sequence number [`send`](Self::send) will use.
    pub fn next_seq(&self) -> u64 {
        self.shared.queue().last_seq() + 1
    }

    async fn enqueue(
        &self,
        push: impl FnOnce(&mut Queue) -> Result<Record, QueueError> + Send + 'static,
    ) -> Result<Ticket, DeviceError> {
        let shared = self.shared.clone();
        let (tx, rx) = oneshot::channel();
        let record = tokio::task::spawn_blocking(move || {
            let mut q = shared.queue();
            let record = push(&mut q)?;
            // Registered before the lock is released, so the link cannot publish (and the
            // receipt cannot arrive) before someone is waiting for it.
            shared
                .waiters()
                .entry(record.hash.clone())
                .or_default()
                .push(tx);
            shared.unreceipted.send_replace(q.unreceipted());
            Ok::<_, QueueError>(record)
        })
        .await
        .map_err(|_| DeviceError::Stopped)??;
        self.shared.wake.notify_one();
        Ok(Ticket {
            seq: record.seq,
            hash: record.hash,
            payload: record.payload,
            rx,
            refused: self.shared.refused.subscribe(),
        })
    }

    /// Envelopes without a receipt.
    pub fn unreceipted(&self) -> u64 {
        *self.shared.unreceipted.borrow()
    }

    /// Whether the broker refused the device's last login.
    pub fn refused(&self) -> bool {
        *self.shared.refused.borrow()
    }

    /// Publishes made so far, resends included.
    pub fn published(&self) -> u64 {
        self.shared.published.load(Ordering::Relaxed)
    }

    /// Waits until every queued envelope has a receipt.
    pub async fn flush(&self, timeout: Duration) -> Result<(), DeviceError> {
        let mut rx = self.shared.unreceipted.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(DeviceError::Stopped),
            Err(_) => Err(DeviceError::FlushTimeout(self.unreceipted(), timeout)),
        }
    }

    /// Receipted envelopes held until the witnesses cosign a tree that extends theirs.
    pub fn held(&self) -> u64 {
        *self.shared.held.borrow()
    }

    /// Evidence that the log showed this device a fork, if it did.
    pub fn fork(&self) -> Option<String> {
        self.shared.fork.borrow().clone()
    }

    /// Waits until every queued envelope is settled: receipted and, with witnesses, in a tree
    /// the witnesses' cosigned checkpoint extends. Ends at once with the evidence if the
    /// device is shown a fork.
    pub async fn witnessed(&self, timeout: Duration) -> Result<(), DeviceError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.flush(timeout).await?;
        let mut held = self.shared.held.subscribe();
        let mut fork = self.shared.fork.subscribe();
        let settled = async {
            loop {
                if let Some(why) = fork.borrow_and_update().clone() {
                    return Err(DeviceError::Fork(why));
                }
                if *held.borrow_and_update() == 0 {
                    return Ok(());
                }
                tokio::select! {
                    r = held.changed() => r.map_err(|_| DeviceError::Stopped)?,
                    r = fork.changed() => r.map_err(|_| DeviceError::Stopped)?,
                }
            }
        };
        match tokio::time::timeout_at(deadline, settled).await {
            Ok(r) => r,
            Err(_) => Err(DeviceError::WitnessTimeout(
                self.held(),
                timeout,
                lock(&self.shared.witness_note).clone(),
            )),
        }
    }

    /// Waits until the device is connected and subscribed to its acks.
    pub async fn connected(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.connected.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await,
            Ok(Ok(_))
        )
    }

    /// Why the last connection attempt failed, if one did.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.shared.last_error).clone()
    }

    /// Points the device at another broker; it reconnects and resends what is unreceipted.
    pub fn set_broker(&self, broker: Broker) {
        self.target.send_modify(|t| t.broker = broker);
    }

    /// Drops the connection and keeps queueing (an offline period), or comes back.
    pub fn set_online(&self, online: bool) {
        self.target.send_modify(|t| t.online = online);
    }

    /// Every receipt this device has stored, oldest first.
    pub fn stored_receipts(&self) -> Result<Vec<Receipt>, DeviceError> {
        Ok(self.shared.queue().receipts()?.collect())
    }

    /// Stops the connection and writes the queue state.
    pub async fn shutdown(mut self) -> Result<(), DeviceError> {
        self.stop.send_replace(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let checkpoint = self.shared.on_disk(|_, q| q.checkpoint()).await;
        checkpoint.ok_or(DeviceError::Stopped)??;
        Ok(())
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// A lock that a panic elsewhere does not poison for good: every value this device keeps
/// behind one is consistent between calls.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// While the device runs: every `w.every`, if envelopes are held, reads the newest cosigned
/// checkpoint and settles the held envelopes whose receipts' trees it is proven to extend.
/// A tree proven not to be extended is a fork: its envelopes stay, and [`Device::fork`] says
/// why.
async fn hold_for_witnesses(shared: Arc<Shared>, w: Witnessing, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(w.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if *shared.held.borrow() == 0 {
            continue;
        }
        let note = match look(&shared, &w).await {
            Ok(Some(settled)) if settled > 0 => {
                // The window has room again: publish what waited behind the held ones.
                shared.wake.notify_one();
                continue;
            }
            Ok(Some(_)) => "the newest cosigned checkpoint does not cover them yet".into(),
            Ok(None) => return,
            Err(why) => why,
        };
        *lock(&shared.witness_note) = note;
    }
}

/// One look: the cosigned checkpoint, its quorum, and a consistency proof per held tree.
/// `Ok(None)` when the runtime is shutting down.
async fn look(shared: &Arc<Shared>, w: &Witnessing) -> Result<Option<u64>, String> {
    use rxledger_core::checkpoint::CheckpointError;
    let note = w
        .api
        .cosigned_checkpoint()
        .await
        .map_err(|e| format!("reading the cosigned checkpoint: {e}"))?
        .ok_or("the server has no cosigned checkpoint yet")?;
    let cp = match rxledger_core::cosignature::open_cosigned(&note, &shared.log, &w.quorum) {
        Ok((cp, _)) => cp,
        Err(e @ CheckpointError::NoQuorum { .. }) => return Err(e.to_string()),
        Err(e) => return Err(format!("the cosigned checkpoint does not verify: {e}")),
    };
    let Some(trees) = shared.on_disk(|_, q| q.held_trees()).await else {
        return Ok(None);
    };
    let ext = witness::extended_by(&w.api, &cp, trees)
        .await
        .map_err(|e| format!("reading a consistency proof: {e}"))?;
    if let Some(why) = ext.forks.first() {
        tracing::error!(error = %why, "the log showed this device a fork; its envelopes stay");
        shared.fork.send_if_modified(|f| {
            let first = f.is_none();
            f.get_or_insert_with(|| why.clone());
            first
        });
    }
    let settled = shared
        .on_disk(move |shared, q| {
            let n = q.witnessed(&ext.proven)?;
            shared.held.send_replace(q.held());
            Ok::<_, QueueError>(n)
        })
        .await;
    match settled {
        None => Ok(None),
        Some(Ok(n)) => Ok(Some(n)),
        Some(Err(e)) => Err(e.to_string()),
    }
}

fn client_id(device: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{device}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The connection task: connect, subscribe, publish from the queue, record receipts, repeat.
///
/// Longer than most functions on purpose: it is one `select!` over stop, retarget, new
/// envelopes, the resend timer and the MQTT event loop, whose arms share the connection
/// (client, event loop, [`Session`]), and read best as one state machine.
async fn link(
    shared: Arc<Shared>,
    device: String,
    password: String,
    topic_root: String,
    resend_after: Duration,
    mut target: watch::Receiver<Target>,
    mut stop: watch::Receiver<bool>,
) {
    let events_topic = envelope::events_topic(&topic_root, &device);
    let acks_topic = envelope::acks_topic(&topic_root, &device);
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            return;
        }
        let current = target.borrow_and_update().clone();
        if !current.online {
            tokio::select! {
                _ = target.changed() => continue,
                _ = stop.changed() => return,
            }
        }
        let mut opts = current.broker.options(client_id(&device));
        opts.set_keep_alive(Duration::from_secs(5))
            .set_clean_session(true)
            .set_inflight(IN_FLIGHT as u16)
            .set_max_packet_size(4 << 20, 4 << 20)
            .set_credentials(device.clone(), password.clone());
        let (client, mut eventloop) = AsyncClient::new(opts, IN_FLIGHT * 2 + 16);
        // Small publishes back to back: without TCP_NODELAY each waits for the last one's ACK.
        eventloop.network_options.set_tcp_nodelay(true);
        let mut session = Session {
            shared: &shared,
            client: &client,
            topic: &events_topic,
            subscribed: false,
            last_sent: None,
            last_progress: Instant::now(),
        };
        let mut tick = tokio::time::interval(resend_after.max(Duration::from_millis(100)) / 4);
        let outcome = loop {
            tokio::select! {
                _ = stop.changed() => {
                    let _ = client.try_disconnect();
                    // Give the disconnect a moment to go out; the queue is already durable.
                    let _ = tokio::time::timeout(Duration::from_millis(100), eventloop.poll()).await;
                    return;
                }
                _ = target.changed() => break Ok(()),
                _ = shared.wake.notified(), if session.subscribed => session.publish_new(),
                _ = tick.tick() => {
                    // Persisting the queue head lazily is safe: a stale head only means resends.
                    match shared.on_disk(|_, q| q.checkpoint()).await {
                        Some(Ok(())) => {}
                        Some(Err(e)) => break Err(e),
                        None => return,
                    }
                    let waiting = session.subscribed && *shared.unreceipted.borrow() > 0 && session.last_sent.is_some();
                    if waiting && session.last_progress.elapsed() >= resend_after {
                        tracing::info!(device, "no receipts for {resend_after:?}; resending");
                        session.last_sent = None;
                        session.last_progress = Instant::now();
                        session.publish_new();
                    }
                }
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(50);
                        shared.refused.send_replace(false);
                        let _ = client.try_subscribe(acks_topic.clone(), QoS::AtLeastOnce);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        session.subscribed = true;
                        session.last_sent = None;
                        session.last_progress = Instant::now();
                        shared.connected.send_replace(true);
                        session.publish_new();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == acks_topic => {
                        match serde_json::from_slice::<Receipt>(&p.payload) {
                            Ok(r) => match session.receipts(vec![r]).await {
                                Some(Ok(())) => {}
                                Some(Err(e)) => break Err(e),
                                None => return,
                            },
                            Err(e) => tracing::warn!(device, error = %e, "unreadable receipt"),
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(device, error = %e, "MQTT connection lost");
                        *lock(&shared.last_error) = Some(e.to_string());
                        if matches!(e, rumqttc::ConnectionError::ConnectionRefused(_)) {
                            shared.refused.send_replace(true);
                        }
                        break Ok(());
                    }
                }
            }
        };
        shared.connected.send_replace(false);
        drop(eventloop);
        if let Err(e) = outcome {
            tracing::error!(device, error = %e, "queue failure; the device stops sending");
            return;
        }
        // Back off before reconnecting, unless told to go elsewhere or stop.
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = target.changed() => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One MQTT connection's view of the queue.
struct Session<'a> {
    shared: &'a Arc<Shared>,
    client: &'a AsyncClient,
    topic: &'a str,
    subscribed: bool,
    /// Offset of the last envelope published on this connection.
    last_sent: Option<u64>,
    last_progress: Instant,
}

impl Session<'_> {
    /// Publishes unreceipted envelopes after `last_sent`, within the in-flight window.
    fn publish_new(&mut self) {
        let pending = self.shared.queue().pending(IN_FLIGHT);
        for r in pending {
            if self.last_sent.is_some_and(|o| r.offset <= o) {
                continue;
            }
            match self
                .client
                .try_publish(self.topic, QoS::AtLeastOnce, false, r.payload)
            {
                Ok(()) => {
                    self.last_sent = Some(r.offset);
                    self.shared.published.fetch_add(1, Ordering::Relaxed);
                }
                // Full: the rest goes out after the next receipt or tick.
                Err(_) => break,
            }
        }
    }

    /// Stores the receipts that verify (fsynced, so the proof is durable before the envelope
    /// leaves the queue), wakes whoever waits for them and fills the freed in-flight slots.
    /// `None` when the runtime is shutting down.
    async fn receipts(&mut self, receipts: Vec<Receipt>) -> Option<Result<(), QueueError>> {
        let settled = self
            .shared
            .on_disk(move |shared, q| {
                let settled = q.record_receipts(&receipts, &shared.log)?;
                shared.unreceipted.send_replace(q.unreceipted());
                shared.held.send_replace(q.held());
                Ok::<_, QueueError>(settled)
            })
            .await?;
        let receipts = match settled {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        if !receipts.is_empty() {
            self.last_progress = Instant::now();
        }
        let mut waiters = self.shared.waiters();
        for r in receipts {
            if let Some(list) = waiters.remove(&r.payload_hash) {
                let mut list = list.into_iter();
                if let Some(first) = list.next() {
                    let _ = first.send(r.clone());
                }
                let rest: Vec<_> = list.collect();
                if !rest.is_empty() {
                    waiters.insert(r.payload_hash.clone(), rest);
                }
            }
        }
        drop(waiters);
        self.publish_new();
        Some(Ok(()))
    }
}
