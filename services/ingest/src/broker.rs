//! The embedded MQTT broker (rumqttd), for the zero-setup default.
//!
//! Clients reach it only through [`crate::gate`] (plain TCP, and TLS when asked for), which
//! authenticates them and enforces the topic rules; rumqttd itself listens on a loopback port of its own and accepts only the
//! server nodes' credentials and the gate's per-process token (its CONNECT hook).
//!
//! rumqttd keeps messages in memory only and has no shutdown API, so it runs on its own
//! thread for the life of the process. Nothing relies on it for durability: the server acks
//! after commit, and devices resend until they hold a receipt.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rxledger_core::mqttauth::{self, NODE_USERNAME};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};
use tokio::sync::oneshot;

use crate::IngestError;
use crate::gate::{self, Gate, Gatekeeper, TlsListener, ct_eq};
use crate::revocation::Live;

/// A running embedded broker.
#[derive(Clone, Debug)]
pub struct EmbeddedBroker {
    /// Where clients connect (the gate). With port 0 requested, this is the port that was
    /// picked.
    pub addr: SocketAddr,
    /// Where clients connect in TLS (the gate's TLS listener), when it was asked for.
    pub tls_addr: Option<SocketAddr>,
    /// rumqttd's own loopback listener, for this process's server connections only.
    pub internal: SocketAddr,
}

/// Largest MQTT packet the embedded broker accepts. The pipeline has its own, lower limit so
/// that an oversized envelope gets a proper rejection instead of a dropped connection.
pub const BROKER_MAX_PAYLOAD: usize = 1 << 20;

/// Bytes of a device's acks log per slot of its window (PROTOCOL.md §9.1): room for a
/// receipt of an envelope with up to 30 events, with its inclusion proof in a log of up to
/// 2^32 entries and a checkpoint with three cosignatures. A receipt of one event is about
/// 1.9 KB at a million entries.
pub const RECEIPT_BUDGET: usize = 5 * 1024;

/// Segments of an acks log. rumqttd drops a log's oldest segment when a new one is started
/// and the count is reached, so at least `count - 1` full segments (the window's budget)
/// always remain, and at most `count` segments (plus one receipt) are ever held. Two, not
/// more: rumqttd gives every segment a table of 1,024 slots up front (about 240 KB), and a
/// log of small segments allocates one every few receipts. With five segments of a quarter
/// of the budget, 1,000 devices that had received 10 receipts each held 1,562 MB.
const ACKS_SEGMENTS: usize = 2;

/// Default segment size and count for every other filter: the nodes' shared subscription to
/// the envelopes, which at most a few filters use.
const EVENTS_SEGMENT: usize = 4 << 20;
const EVENTS_SEGMENTS: usize = 8;

/// The log rumqttd keeps for each device's acks filter: at least `window` receipts of
/// [`RECEIPT_BUDGET`] bytes stay readable, and at most twice that is held.
pub fn acks_log(window: usize) -> SegmentConfig {
    SegmentConfig {
        // rumqttd refuses segments under 1 KiB.
        max_segment_size: (window.max(1) * RECEIPT_BUDGET)
            .div_ceil(ACKS_SEGMENTS - 1)
            .max(1024),
        max_segment_count: ACKS_SEGMENTS,
    }
}

/// Most bytes of receipts the embedded broker holds for one device, for a window of
/// `window`: the figure DEPLOY.md's sizing multiplies by the devices.
pub fn acks_log_bound(window: usize) -> usize {
    let log = acks_log(window);
    log.max_segment_count * log.max_segment_size + RECEIPT_BUDGET
}

/// Nice value of rumqttd's router thread.
///
/// While a shared subscription has a backlog that its current member cannot take (its 100
/// in-flight deliveries wait for our commit), rumqttd 0.20's router keeps every other member
/// scheduled and re-reads the log for each of them (`forward_device_data` reads before it
/// checks whose turn it is): it spins. A profile of `ingest_bench` put 30% of all CPU in that
/// loop, taken from signature checks. At nice 19 the loop runs on otherwise idle CPU; the
/// router's real work (about 5% of the CPU at 8,000 events/s) still gets done, because the
/// pipeline's stages wait on it. Measured: a median of 8,450 events/s over three alternating
/// pairs against 7,554 at nice 0 (BENCHMARKS.md).
/// `RXLEDGER_BROKER_ROUTER_NICE` overrides it (0 for the old behaviour).
const ROUTER_NICE: i32 = 19;

fn router_nice() -> i32 {
    let Ok(v) = std::env::var("RXLEDGER_BROKER_ROUTER_NICE") else {
        return ROUTER_NICE;
    };
    match v.trim().parse::<i32>() {
        Ok(n) if (0..=19).contains(&n) => n,
        _ => {
            tracing::warn!(
                value = %v,
                "RXLEDGER_BROKER_ROUTER_NICE must be a nice value from 0 to 19; using {ROUTER_NICE}"
            );
            ROUTER_NICE
        }
    }
}

/// Lowers the calling thread's priority (Linux nice values are per thread, and threads it
/// spawns inherit them). Failure only costs throughput, so it is logged and ignored.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    // SAFETY: setpriority only changes scheduling; on Linux `who = 0` is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the router's priority");
    }
}

/// Elsewhere `setpriority(PRIO_PROCESS, 0, …)` would lower the whole process, so the router
/// keeps the normal priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

/// Binds a gate address, so that a caller can hold every listener before it creates anything
/// (a start that fails on a taken port must leave nothing behind). Fails with a clear error if
/// the address is taken.
pub fn bind(listen: SocketAddr) -> Result<TcpListener, IngestError> {
    let l = TcpListener::bind(listen).map_err(bind_err(listen))?;
    l.set_nonblocking(true).map_err(bind_err(listen))?;
    Ok(l)
}

/// Starts rumqttd on a loopback port and the gate on `public` (and in TLS on `tls`'s
/// listener), both from [`bind`]. Runs on the tokio runtime (the gate is a task) and never
/// blocks it.
///
/// `window` is how many envelopes a device connection may have awaiting receipts (the gate
/// holds the rest back), and each device's acks log is sized for it ([`acks_log`]).
pub async fn start(
    public: TcpListener,
    keeper: Gatekeeper,
    tls: Option<(TcpListener, TlsListener)>,
    window: usize,
) -> Result<EmbeddedBroker, IngestError> {
    let (public, addr) = adopt(public)?;
    let tls = match tls {
        Some((l, listener)) => Some((adopt(l)?, listener)),
        None => None,
    };
    let token: Arc<str> = random_token().map_err(bind_err(addr))?.into();
    let acks = (
        rxledger_core::envelope::acks_topic(&keeper.topic_root, "+"),
        acks_log(window),
    );
    let internal = start_rumqttd(
        mqttauth::node_password(keeper.ledger.key()),
        token.clone(),
        acks,
    )
    .await?;
    let live = Arc::new(Live::default());
    tokio::spawn(live.clone().sweep_forever(keeper.registry.clone()));
    let gate = Arc::new(Gate {
        upstream: internal,
        keeper,
        token,
        max_packet: BROKER_MAX_PAYLOAD + 1024,
        live,
        window: window.max(1),
    });
    let tls_addr = tls.as_ref().map(|((_, a), _)| *a);
    if let Some(((listener, _), config)) = tls {
        tokio::spawn(gate::serve(listener, gate.clone(), Some(config)));
    }
    tokio::spawn(gate::serve(public, gate, None));
    Ok(EmbeddedBroker {
        addr,
        tls_addr,
        internal,
    })
}

fn bind_err(addr: SocketAddr) -> impl Fn(std::io::Error) -> IngestError {
    move |source| IngestError::BrokerListen { addr, source }
}

/// A bound listener on the runtime, and its address.
fn adopt(l: TcpListener) -> Result<(tokio::net::TcpListener, SocketAddr), IngestError> {
    let unknown = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let addr = l.local_addr().map_err(bind_err(unknown))?;
    let l = tokio::net::TcpListener::from_std(l).map_err(bind_err(addr))?;
    Ok((l, addr))
}

/// 32 random bytes, hex: the gate's credential at rumqttd, never leaves the process.
fn random_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(b))
}

/// Ports tried before giving up, should other processes keep taking the one just picked.
const PORT_ATTEMPTS: usize = 5;
/// The username of the start-up probe, which no device id or node can have (`#` is not
/// allowed in either). rumqttd's CONNECT hook admits it once, with the right secret.
const PROBE_USERNAME: &str = "probe#rxledger";
/// How long rumqttd gets to bind its port and answer the probe.
const PROBE_WAIT: Duration = Duration::from_secs(10);

/// Starts rumqttd on a free loopback port and returns the port once it is proven to be this
/// rumqttd's: its CONNECT hook has seen the probe's one-time secret through it.
///
/// rumqttd binds inside its own thread and only logs a failure, so a free port is picked
/// first (bound and released). Another process may take it in between; then rumqttd's server
/// thread ends, `Broker::start` returns, and the next port is tried. A probe that connects to
/// some other listener never reaches this hook, so a stolen port is never mistaken for ours.
async fn start_rumqttd(
    node_password: String,
    token: Arc<str>,
    acks: (String, SegmentConfig),
) -> Result<SocketAddr, IngestError> {
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut last = std::io::Error::other("no port tried");
    for _ in 0..PORT_ATTEMPTS {
        let addr = TcpListener::bind(loopback)
            .and_then(|picked| picked.local_addr())
            .map_err(|source| IngestError::BrokerListen {
                addr: loopback,
                source,
            })?;
        let secret: Arc<str> = random_token()
            .map_err(|source| IngestError::BrokerListen { addr, source })?
            .into();
        let seen = Arc::new(AtomicBool::new(false));
        let hook = Hook {
            node_password: node_password.clone(),
            token: token.clone(),
            probe: secret.clone(),
            seen: seen.clone(),
        };
        let mut stopped = spawn_rumqttd(addr, hook, acks.clone()).await?;
        match probe(addr, &secret, &seen, &mut stopped).await {
            Ok(()) => return Ok(addr),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "rumqttd did not come up on this port; trying another");
                last = e;
            }
        }
    }
    Err(IngestError::BrokerListen {
        addr: loopback,
        source: last,
    })
}

/// What rumqttd's CONNECT hook admits: the server nodes (node credentials) and the gate (the
/// token, for client ids the gate prefixed with `{deviceId}:`), and the start-up probe once:
/// the first CONNECT with the probe's secret sets `seen`, and every probe after it is refused.
/// (Admitted rather than refused, because rumqttd logs every refusal as an error.)
#[derive(Clone)]
struct Hook {
    node_password: String,
    token: Arc<str>,
    probe: Arc<str>,
    seen: Arc<AtomicBool>,
}

impl Hook {
    fn admits(&self, client_id: &str, user: &str, pass: &str) -> bool {
        if user == PROBE_USERNAME {
            return ct_eq(pass, &self.probe) && !self.seen.swap(true, Ordering::AcqRel);
        }
        if user == NODE_USERNAME {
            ct_eq(pass, &self.node_password)
        } else {
            client_id.contains(':') && ct_eq(pass, &self.token)
        }
    }
}

/// Connects to `addr` as the probe until rumqttd's hook has seen `secret`, rumqttd's server
/// stops (its port was taken), or [`PROBE_WAIT`] passes.
async fn probe(
    addr: SocketAddr,
    secret: &str,
    seen: &AtomicBool,
    stopped: &mut oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    while tokio::time::Instant::now() < deadline {
        let mut o = rumqttc::MqttOptions::new("rxledger-probe", addr.ip().to_string(), addr.port());
        o.set_credentials(PROBE_USERNAME, secret);
        let (_client, mut eventloop) = rumqttc::AsyncClient::new(o, 1);
        // Only what the hook saw matters; the connection closes when the event loop drops.
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
        if seen.load(Ordering::Acquire) {
            return Ok(());
        }
        if stopped.try_recv().is_ok() {
            return Err(std::io::Error::other(
                "rumqttd's server stopped (port taken?)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(std::io::Error::other("rumqttd did not answer in time"))
}

/// Starts rumqttd on `addr` with `hook` as its CONNECT hook, and `acks.1` as the log of every
/// filter matching `acks.0` (the devices' acks topics). The returned receiver fires if
/// rumqttd's server stops, which it does at once when it cannot bind `addr`.
async fn spawn_rumqttd(
    addr: SocketAddr,
    hook: Hook,
    acks: (String, SegmentConfig),
) -> Result<oneshot::Receiver<()>, IngestError> {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: BROKER_MAX_PAYLOAD,
        max_inflight_count: 5_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        std::future::ready(hook.admits(&client_id, &user, &pass))
    });
    let server = ServerSettings {
        name: "v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_010,
            max_outgoing_packet_count: 1_000,
            max_segment_size: EVENTS_SEGMENT,
            max_segment_count: EVENTS_SEGMENTS,
            custom_segment: Some(HashMap::from([acks])),
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    let failed = |source| IngestError::BrokerListen { addr, source };
    // rumqttd's router thread is created by `Broker::new` and inherits the creating thread's
    // nice value, so it is created on a short-lived thread that has lowered its priority
    // first; the network threads, started by `Broker::start`, keep the normal priority. The
    // broker comes back over a channel, so the runtime is never blocked on a join.
    let (made_tx, made_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("rumqttd-router".into())
        .spawn(move || {
            lower_priority(router_nice());
            let _ = made_tx.send(Broker::new(config));
        })
        .map_err(failed)?;
    let mut broker = made_rx
        .await
        .map_err(|_| failed(std::io::Error::other("rumqttd's router did not start")))?;
    let (stopped_tx, stopped_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            // Returns only when rumqttd's server threads have ended.
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
            let _ = stopped_tx.send(());
        })
        .map_err(failed)?;
    Ok(stopped_rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(secret: &str) -> Hook {
        Hook {
            node_password: "node".into(),
            token: "token".into(),
            probe: secret.into(),
            seen: Arc::new(AtomicBool::new(false)),
        }
    }

    #[tokio::test]
    async fn rumqttd_is_proven_on_its_own_port() {
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .unwrap();
        let h = hook("secret");
        let mut stopped = spawn_rumqttd(addr, h.clone(), ("x/devices/+/acks".into(), acks_log(16)))
            .await
            .unwrap();
        probe(addr, "secret", &h.seen, &mut stopped).await.unwrap();
    }

    #[tokio::test]
    async fn a_port_someone_else_holds_is_never_taken_for_rumqttd() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = taken.local_addr().unwrap();
        let h = hook("secret");
        let mut stopped = spawn_rumqttd(addr, h.clone(), ("x/devices/+/acks".into(), acks_log(16)))
            .await
            .unwrap();
        assert!(probe(addr, "secret", &h.seen, &mut stopped).await.is_err());
        assert!(!h.seen.load(Ordering::Acquire));
    }

    #[test]
    fn an_acks_log_keeps_a_window_of_receipts_and_little_more() {
        for window in [1, 16, 512, 10_000] {
            let log = acks_log(window);
            // What survives the drop of the oldest segment.
            let kept = (log.max_segment_count - 1) * log.max_segment_size;
            assert!(
                kept >= window * RECEIPT_BUDGET,
                "window {window}: {kept} B kept"
            );
            assert!(log.max_segment_size >= 1024);
        }
        // The default window's bound, as DEPLOY.md states it: 165 KiB a device.
        assert_eq!(acks_log_bound(16), 165 * 1024);
    }

    #[test]
    fn the_hook_admits_the_probe_once_and_nodes_and_the_gate() {
        let h = hook("secret");
        assert!(!h.admits("rxledger-probe", PROBE_USERNAME, "wrong"));
        assert!(!h.seen.load(Ordering::Acquire));
        assert!(h.admits("rxledger-probe", PROBE_USERNAME, "secret"));
        assert!(h.seen.load(Ordering::Acquire));
        assert!(!h.admits("rxledger-probe", PROBE_USERNAME, "secret"));
        assert!(h.admits("node-1", NODE_USERNAME, "node"));
        assert!(!h.admits("node-1", NODE_USERNAME, "token"));
        assert!(h.admits("dev-1:abc", "dev-1", "token"));
        assert!(!h.admits("dev-1", "dev-1", "token"));
    }
}
