//! The MQTT event loops: one per connection, all in the shared subscription.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use rxledger_core::envelope;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Clients, Connection, Delivery, IngestConfig, Readies, Route};

/// Opens `cfg.connections` connections (client ids `{id}`, `{id}-1`, …), each driven by a
/// [`pump`] task that forwards publishes to `raw_tx`. Returns their clients, their tasks, and
/// one receiver per connection that resolves when its subscription is acknowledged.
pub(super) fn connect(
    opts: &MqttOptions,
    cfg: &IngestConfig,
    raw_tx: mpsc::Sender<Delivery>,
    stop: watch::Receiver<bool>,
) -> (Clients, Vec<JoinHandle<()>>, Readies) {
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
        let (client, mut eventloop) = AsyncClient::new(o, 20_000);
        // A PUBACK and the receipt after it are two small writes: with Nagle on, the second
        // waits for the broker's delayed ACK of the first (40 ms on Linux).
        eventloop.network_options.set_tcp_nodelay(true);
        let (ready_tx, ready_rx) = oneshot::channel();
        let session = Arc::new(AtomicU64::new(0));
        tasks.push(tokio::spawn(pump(
            conn,
            session.clone(),
            eventloop,
            client.clone(),
            filter.clone(),
            raw_tx.clone(),
            stop.clone(),
            ready_tx,
        )));
        clients.push(Connection { client, session });
        readies.push(ready_rx);
    }
    (clients, tasks, readies)
}

/// Drives the connection until shutdown has drained and disconnected.
#[allow(clippy::too_many_arguments)]
async fn pump(
    conn: usize,
    session: Arc<AtomicU64>,
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
                let route = Route {
                    conn,
                    session: session.load(Ordering::Acquire),
                    received: std::time::Instant::now(),
                };
                if let Some(Err(mpsc::error::TrySendError::Full((_, p)))) =
                    raw_tx.as_ref().map(|tx| tx.try_send((route, p)))
                {
                    tracing::warn!(topic = %p.topic, "ingest queue full; dropping a QoS 0 message");
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(100);
                // A new session: what the last one delivered can no longer be acked here.
                session.fetch_add(1, Ordering::AcqRel);
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
