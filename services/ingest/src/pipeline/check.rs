//! The batcher, and everything about a message that does not need the ledger: size, topic,
//! envelope, device, signature, EPCIS validity and event hashes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::Publish;
use rxledger_core::codes::RejectCode;
use rxledger_core::envelope::{self, Opened};
use rxledger_core::epcis;
use rxledger_core::index;
use rxledger_core::keys::PublicKey;
use rxledger_store::ledger::EntryKind;
use rxledger_store::{NewEntry, Registry, Severity, now_ms};
use tokio::sync::mpsc;

use super::{Checked, Delivery, IngestConfig, Ready, Reject, Route, Stats, retry};

/// How long the batcher waits for one more message before closing a batch early.
const LINGER: Duration = Duration::from_millis(2);

/// Gathers deliveries into batches, checks each batch and passes it on to the sequencer.
pub(super) async fn batcher(
    mut rx: mpsc::Receiver<Delivery>,
    tx: mpsc::Sender<Vec<Checked<Ready>>>,
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

/// A delivery after screening: its topic's device, and whether it may be read further.
type Screened = (Delivery, Option<String>, Result<(), Reject>);

/// A screened delivery with the enrolment to check it against (or why it was refused before
/// its envelope was read).
type Enrolled = (Delivery, Option<String>, Result<Enrolment, Reject>);

/// Everything about a batch that does not need the ledger. Device keys are parsed once per
/// distinct key and kept in `keys` across batches.
async fn check_batch(
    batch: Vec<Delivery>,
    registry: &Registry,
    keys: &mut HashMap<String, PublicKey>,
    cfg: &IngestConfig,
) -> Vec<Checked<Ready>> {
    let now = now_ms();
    let mut work = enrol(screen(batch, cfg), registry, keys).await;
    // Envelopes, signatures, EPCIS parsing and hashing: CPU-bound, spread over the workers.
    let skew = cfg.max_clock_skew.as_millis() as i64;
    let per = work.len().div_ceil(cfg.workers.max(1)).max(1);
    let mut handles = Vec::new();
    while !work.is_empty() {
        let chunk: Vec<_> = work.drain(..per.min(work.len())).collect();
        handles.push(tokio::task::spawn_blocking(move || {
            chunk
                .into_iter()
                .map(|((route, p), device, enrolment)| {
                    verify_one(route, p, device, enrolment, now, skew)
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

/// Refuses oversized payloads and topics that name no device. Only the topic is read here;
/// the envelopes are parsed on the workers.
fn screen(batch: Vec<Delivery>, cfg: &IngestConfig) -> Vec<Screened> {
    batch
        .into_iter()
        .map(|(route, p)| {
            let device = envelope::device_of_topic(&cfg.topic_root, &p.topic).map(str::to_string);
            let outcome = if p.payload.len() > cfg.max_payload {
                Err(Reject::new(
                    RejectCode::Oversized,
                    format!(
                        "payload is {} bytes; the limit is {}",
                        p.payload.len(),
                        cfg.max_payload
                    ),
                    Severity::Warning,
                ))
            } else if device.is_none() {
                Err(Reject::new(
                    RejectCode::BadTopic,
                    format!(
                        "topic {:?} is not {}/devices/{{deviceId}}/events",
                        p.topic, cfg.topic_root
                    ),
                    Severity::Warning,
                ))
            } else {
                Ok(())
            };
            ((route, p), device, outcome)
        })
        .collect()
}

/// Looks up every device the screened topics name in one query (even one whose envelope
/// turns out malformed), and pairs each delivery with its device's enrolment.
async fn enrol(
    screened: Vec<Screened>,
    registry: &Registry,
    keys: &mut HashMap<String, PublicKey>,
) -> Vec<Enrolled> {
    let ids: Vec<String> = screened
        .iter()
        .filter_map(|(_, d, o)| o.as_ref().ok().and(d.clone()))
        .collect();
    // A database outage must not turn into rejections: wait for it, acking nothing.
    let devices = retry("device lookup", || registry.devices_by_ids(&ids)).await;
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
    screened
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
        .collect()
}

/// Opens the envelope and checks, in this order, its form, its device's enrolment, its
/// signature and its events.
fn open_enrolled(
    payload: &[u8],
    device: &str,
    enrolment: Enrolment,
) -> Result<(Opened, PublicKey, String), Reject> {
    let o = envelope::open(payload, device)?;
    let id = &o.body.device_id;
    match enrolment {
        Enrolment::Active { key, org } => Ok((o, key, org)),
        Enrolment::Unknown => Err(Reject::new(
            RejectCode::UnknownDevice,
            format!("device {id:?} is not enrolled"),
            Severity::Critical,
        )),
        Enrolment::Revoked => Err(Reject::new(
            RejectCode::DeviceRevoked,
            format!("device {id:?} is revoked"),
            Severity::Critical,
        )),
        Enrolment::UnusableKey(e) => Err(Reject::new(
            RejectCode::UnknownDevice,
            format!("device {id:?} has an unusable enrolled key: {e}"),
            Severity::Critical,
        )),
    }
}

fn verify_one(
    route: Route,
    publish: Publish,
    device: Option<String>,
    enrolment: Result<Enrolment, Reject>,
    now: i64,
    skew: i64,
) -> Checked<Ready> {
    let payload_hash = envelope::payload_hash(&publish.payload);
    let outcome = enrolment.and_then(|e| {
        // `device` is always set when screening passed (BAD_TOPIC otherwise).
        open_enrolled(&publish.payload, device.as_deref().unwrap_or_default(), e)
    });
    let seq = outcome.as_ref().ok().map(|(o, _, _)| o.body.seq);
    let outcome = outcome.and_then(|(o, key, org)| ready(&publish, o, key, org, now, skew));
    Checked {
        route,
        publish,
        device,
        seq,
        payload_hash,
        outcome,
    }
}

/// Checks an opened envelope's signature, `sentAt` and events, and builds its entry.
fn ready(
    publish: &Publish,
    o: Opened,
    key: PublicKey,
    org: String,
    now: i64,
    skew: i64,
) -> Result<Ready, Reject> {
    o.verify(&key)?;
    let sent = epcis::parse_time(&o.body.sent_at).map_err(|e| {
        Reject::new(
            RejectCode::MalformedEnvelope,
            format!("sentAt: {e}"),
            Severity::Warning,
        )
    })?;
    if sent > now + skew {
        return Err(Reject::new(
            RejectCode::ClockSkew,
            format!(
                "sentAt {} is more than {} s in the future; check the device clock",
                o.body.sent_at,
                skew / 1000
            ),
            Severity::Warning,
        ));
    }
    let mut events = Vec::with_capacity(o.body.events.len());
    let mut parsed = Vec::with_capacity(o.body.events.len());
    for (i, json) in o.body.events.iter().enumerate() {
        let (row, ev) = index::index_event(json, &org, now, skew).map_err(|e| {
            let r = Reject::from(e);
            Reject {
                message: format!("events[{i}]: {}", r.message),
                ..r
            }
        })?;
        if let Some(j) = events
            .iter()
            .position(|e: &index::IndexedEvent| e.hash == row.hash)
        {
            return Err(Reject::new(
                RejectCode::DuplicateEvent,
                format!(
                    "events[{i}] is the same event as events[{j}] ({})",
                    epcis::id_of_hash(&row.hash)
                ),
                Severity::Warning,
            ));
        }
        events.push(row);
        parsed.push(ev);
    }
    let seq = i64::try_from(o.body.seq).map_err(|_| {
        Reject::new(
            RejectCode::MalformedEnvelope,
            "seq must be below 2^63",
            Severity::Warning,
        )
    })?;
    Ok(Ready {
        entry: NewEntry {
            data: publish.payload.to_vec(),
            kind: EntryKind::DeviceEnvelope,
            signer: o.body.device_id.clone(),
            seq: Some(seq),
            events,
        },
        org,
        parsed,
    })
}
