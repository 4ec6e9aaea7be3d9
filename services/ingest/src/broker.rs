//! The embedded MQTT broker (rumqttd), for the zero-setup default.
//!
//! Clients reach it only through [`crate::gate`], which authenticates them and enforces the
//! topic rules; rumqttd itself listens on a loopback port of its own and accepts only the
//! server nodes' credentials and the gate's per-process token (its CONNECT hook).
//!
//! rumqttd keeps messages in memory only and has no shutdown API, so it runs on its own
//! thread for the life of the process. Nothing relies on it for durability: the server acks
//! after commit, and devices resend until they hold a receipt.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;

use rxledger_core::mqttauth::{self, NODE_USERNAME};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::IngestError;
use crate::gate::{self, Gatekeeper, ct_eq};

/// A running embedded broker.
#[derive(Clone, Debug)]
pub struct EmbeddedBroker {
    /// Where clients connect (the gate). With port 0 requested, this is the port that was
    /// picked.
    pub addr: SocketAddr,
    /// rumqttd's own loopback listener, for this process's server connections only.
    pub internal: SocketAddr,
}

/// Largest MQTT packet the embedded broker accepts. The pipeline has its own, lower limit so
/// that an oversized envelope gets a proper rejection instead of a dropped connection.
pub const BROKER_MAX_PAYLOAD: usize = 1 << 20;

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
fn lower_priority(nice: i32) {
    // SAFETY: setpriority only changes scheduling; on Linux `who = 0` is the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the router's priority");
    }
}

/// Starts rumqttd on a loopback port and the gate on `listen`. Fails with a clear error if
/// the address is taken. Must be called inside a tokio runtime (the gate runs on it).
pub fn start(listen: SocketAddr, keeper: Gatekeeper) -> Result<EmbeddedBroker, IngestError> {
    let bind_err = |addr| move |source| IngestError::BrokerListen { addr, source };
    let public = TcpListener::bind(listen).map_err(bind_err(listen))?;
    let addr = public.local_addr().map_err(bind_err(listen))?;
    public.set_nonblocking(true).map_err(bind_err(addr))?;
    let public = tokio::net::TcpListener::from_std(public).map_err(bind_err(addr))?;
    // rumqttd binds inside its own thread and only logs a failure, so pick a free port first.
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let probe = TcpListener::bind(loopback).map_err(bind_err(loopback))?;
    let internal = probe.local_addr().map_err(bind_err(loopback))?;
    drop(probe);
    let token: Arc<str> = random_token().map_err(bind_err(internal))?.into();
    start_rumqttd(
        internal,
        mqttauth::node_password(keeper.ledger.key()),
        token.clone(),
    )?;
    tokio::spawn(gate::serve(
        public,
        internal,
        keeper,
        token,
        BROKER_MAX_PAYLOAD + 1024,
    ));
    Ok(EmbeddedBroker { addr, internal })
}

/// 32 random bytes, hex: the gate's credential at rumqttd, never leaves the process.
fn random_token() -> std::io::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(b))
}

/// Starts rumqttd on `addr`; its CONNECT hook admits the server nodes (node credentials) and
/// the gate (the token, for client ids the gate prefixed with `{deviceId}:`).
fn start_rumqttd(
    addr: SocketAddr,
    node_password: String,
    token: Arc<str>,
) -> Result<(), IngestError> {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: BROKER_MAX_PAYLOAD,
        max_inflight_count: 5_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let ok = if user == NODE_USERNAME {
            ct_eq(&pass, &node_password)
        } else {
            client_id.contains(':') && ct_eq(&pass, &token)
        };
        std::future::ready(ok)
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
            max_segment_size: 4 << 20,
            max_segment_count: 8,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    // rumqttd's router thread is created by `Broker::new` and inherits the creating thread's
    // nice value, so it is created on a short-lived thread that has lowered its priority
    // first; the network threads, started by `Broker::start`, keep the normal priority.
    let broker = std::thread::Builder::new()
        .name("rumqttd-router".into())
        .spawn(move || {
            lower_priority(router_nice());
            Broker::new(config)
        })
        .and_then(|t| {
            t.join()
                .map_err(|_| std::io::Error::other("rumqttd's router did not start"))
        })
        .map_err(|source| IngestError::BrokerListen { addr, source })?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = broker;
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|source| IngestError::BrokerListen { addr, source })?;
    Ok(())
}
