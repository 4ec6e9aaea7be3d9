//! The embedded MQTT broker (rumqttd), for the zero-setup default.
//!
//! rumqttd keeps messages in memory only and has no shutdown API, so it runs on its own
//! thread for the life of the process. Nothing relies on it for durability: the server acks
//! after commit, and devices resend until they hold a receipt.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::IngestError;

/// A running embedded broker.
#[derive(Clone, Debug)]
pub struct EmbeddedBroker {
    /// Where it listens. With port 0 requested, this is the port that was picked.
    pub addr: SocketAddr,
}

/// Largest MQTT packet the embedded broker accepts. The pipeline has its own, lower limit so
/// that an oversized envelope gets a proper rejection instead of a dropped connection.
pub const BROKER_MAX_PAYLOAD: usize = 1 << 20;

/// Starts rumqttd on `listen`. Fails with a clear error if the address is taken.
pub fn start(listen: SocketAddr) -> Result<EmbeddedBroker, IngestError> {
    // rumqttd binds inside its own thread and only logs a failure, so check first; this also
    // resolves port 0 to a concrete free port.
    let probe = TcpListener::bind(listen).map_err(|source| IngestError::BrokerListen {
        addr: listen,
        source,
    })?;
    let addr = probe
        .local_addr()
        .map_err(|source| IngestError::BrokerListen {
            addr: listen,
            source,
        })?;
    drop(probe);

    let connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: BROKER_MAX_PAYLOAD,
        max_inflight_count: 5_000,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
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
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|source| IngestError::BrokerListen { addr, source })?;
    Ok(EmbeddedBroker { addr })
}
