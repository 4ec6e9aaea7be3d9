//! Load mode, for benchmarks: D enrolled devices publish small commissioning envelopes at an
//! aggregate rate, and every receipt is timed against its publish.
//!
//! Load devices skip the durable queue: the point is to measure the server, and an fsync per
//! envelope on the client would measure the client's disk instead. Each envelope is still
//! signed with `rxledger-core` and carries a unique serial. Sequence numbers are
//! `max(previous + 1, microseconds since 1970)`, so a later run with the same keys never
//! reuses one and needs no state file.
//!
//! Latencies go into a log-scale histogram (2% buckets) so that reports from several
//! processes (`--procs`) merge exactly by adding counts.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS};
use rxledger_core::envelope::{self, Body, Receipt};
use rxledger_core::epcis;
use rxledger_core::gs1::{Gtin, Serial, Sgtin};
use rxledger_core::keys::{PublicKey, SigningKey};
use rxledger_core::mqttauth;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::device::Broker;
use crate::events::{self, Where};
use crate::identity::{self, Identity};
use crate::scenario::now_ms;
use crate::scenario::plan::with_check_digit;

/// One load device: its identity and the company prefix its GTIN is built from.
#[derive(Clone, Debug)]
pub struct LoadDevice {
    pub identity: Identity,
    pub company_prefix: String,
    /// The device's position in its keys file. Its serials start with it, so two devices of
    /// one company prefix never commission the same serial, whichever process runs them.
    pub ordinal: u32,
}

impl LoadDevice {
    /// The GTIN-14 of the one product this device commissions.
    pub fn gtin(&self) -> String {
        let item_len = 12 - self.company_prefix.len().min(12);
        with_check_digit(&format!("0{}{:0item_len$}", self.company_prefix, 1))
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub mqtt: Broker,
    pub topic_root: String,
    /// The log's public key, for the devices' MQTT credentials (none: anonymous).
    pub log_key: Option<PublicKey>,
    pub devices: Vec<LoadDevice>,
    /// Aggregate envelopes per second.
    pub rate: f64,
    pub duration: Duration,
    /// How long to wait for outstanding receipts after the last publish.
    pub drain: Duration,
}

/// Publish→receipt latencies, in 2% log buckets of microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Histogram {
    pub buckets: BTreeMap<u32, u64>,
    pub max_us: u64,
    pub count: u64,
}

const GROWTH: f64 = 1.02;

impl Histogram {
    pub fn record(&mut self, us: u64) {
        let b = ((us as f64 + 1.0).ln() / GROWTH.ln()) as u32;
        *self.buckets.entry(b).or_default() += 1;
        self.max_us = self.max_us.max(us);
        self.count += 1;
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_default() += n;
        }
        self.max_us = self.max_us.max(other.max_us);
        self.count += other.count;
    }

    /// The `q` quantile (0..=1) in microseconds, within 2%.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                let upper = GROWTH.powi(*b as i32 + 1) - 1.0;
                return (upper as u64).min(self.max_us);
            }
        }
        self.max_us
    }
}

/// What a load run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LoadReport {
    pub devices: usize,
    pub sent: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub rejected_codes: BTreeMap<String, u64>,
    /// Sent but never receipted within the drain time.
    pub missing: u64,
    /// Wall time from the first publish to the last receipt.
    pub elapsed_s: f64,
    pub latency: Histogram,
}

impl LoadReport {
    /// Receipts per second.
    pub fn throughput(&self) -> f64 {
        let done = self.accepted + self.duplicate + self.rejected;
        if self.elapsed_s > 0.0 {
            done as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Adds another process's report (for `--procs`).
    pub fn merge(&mut self, o: &LoadReport) {
        self.devices += o.devices;
        self.sent += o.sent;
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.rejected += o.rejected;
        for (c, n) in &o.rejected_codes {
            *self.rejected_codes.entry(c.clone()).or_default() += n;
        }
        self.missing += o.missing;
        self.elapsed_s = self.elapsed_s.max(o.elapsed_s);
        self.latency.merge(&o.latency);
    }

    pub fn summary(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "devices {}  sent {}  acknowledged {} (accepted {}, duplicate {})  rejected {} {:?}  missing {}\nthroughput {:.0} receipts/s over {:.1} s\nlatency publish→receipt: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms\n",
            self.devices,
            self.sent,
            self.accepted + self.duplicate,
            self.accepted,
            self.duplicate,
            self.rejected,
            self.rejected_codes,
            self.missing,
            self.throughput(),
            self.elapsed_s,
            ms(self.latency.quantile(0.5)),
            ms(self.latency.quantile(0.99)),
            ms(self.latency.max_us),
        )
    }
}

#[derive(Default)]
struct Tally {
    out: HashMap<String, Instant>,
    report: LoadReport,
    last_receipt: Option<Instant>,
}

/// Runs the load and reports.
pub async fn run_load(opts: LoadOptions) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(!opts.devices.is_empty(), "load needs at least one device");
    anyhow::ensure!(opts.rate > 0.0, "--rate must be positive");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = Vec::new();
    for d in &opts.devices {
        clients.push(connect(&opts, d, tally.clone()).await?);
    }
    let started = Instant::now();
    let mut seqs = vec![0u64; clients.len()];
    let mut serial_n = 0u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_device = 0;
    let mut next_progress = PROGRESS_EVERY;
    while started.elapsed() < opts.duration {
        tick.tick().await;
        if started.elapsed() >= next_progress {
            next_progress += PROGRESS_EVERY;
            progress(&lock(&tally), sent, started.elapsed(), &opts.topic_root)?;
        }
        let due = (started.elapsed().as_secs_f64() * opts.rate) as u64;
        while sent < due {
            let i = next_device;
            next_device = (next_device + 1) % clients.len();
            let micros = now_ms() as u64 * 1000 + serial_n % 1000;
            seqs[i] = (seqs[i] + 1).max(micros);
            serial_n += 1;
            let payload = envelope_for(&opts.devices[i], seqs[i])?;
            let hash = envelope::payload_hash(&payload);
            lock(&tally).out.insert(hash, Instant::now());
            clients[i]
                .publish(
                    envelope::events_topic(&opts.topic_root, &opts.devices[i].identity.device_id),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await?;
            sent += 1;
        }
    }
    // Drain: wait for outstanding receipts, without a fixed sleep when they all arrive.
    let deadline = Instant::now() + opts.drain;
    while Instant::now() < deadline && !lock(&tally).out.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in &clients {
        let _ = c.try_disconnect();
    }
    let mut t = lock(&tally);
    let mut report = std::mem::take(&mut t.report);
    report.devices = opts.devices.len();
    report.sent = sent;
    report.missing = t.out.len() as u64;
    report.elapsed_s = t
        .last_receipt
        .map_or(started.elapsed(), |l| l.duration_since(started))
        .as_secs_f64();
    Ok(report)
}

/// How often a long run prints a progress line (on stderr, so `--json` output stays clean).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// A run with no receipt at all by then stops: nothing answers on the topic.
const FIRST_RECEIPT_WITHIN: Duration = Duration::from_secs(10);

/// Prints a progress line, or stops the run when nothing has answered in time.
fn progress(t: &Tally, sent: u64, elapsed: Duration, topic_root: &str) -> anyhow::Result<()> {
    let r = &t.report;
    let receipted = r.accepted + r.duplicate + r.rejected;
    anyhow::ensure!(
        receipted > 0 || elapsed < FIRST_RECEIPT_WITHIN,
        "no receipt for any of {sent} envelopes in {:.0} s: the broker takes them, but no \
         rxledger server answers on topic root {topic_root:?}; check that `rxledger serve` \
         uses this broker and topic root",
        elapsed.as_secs_f64()
    );
    eprintln!(
        "load: {:>4.0} s  sent {sent}  receipted {receipted} ({} accepted, {} rejected)  {:.0}/s",
        elapsed.as_secs_f64(),
        r.accepted,
        r.rejected,
        receipted as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // The tally is plain counters; a panic elsewhere leaves it usable.
    t.lock().unwrap_or_else(|e| e.into_inner())
}

/// The serial a load device commissions with sequence number `seq`: the device's ordinal in
/// three base-36 digits, then the sequence number in base 36 (unique per device), at most
/// 16 characters in all (AI 21 allows 20). Devices share their GTIN, and sequence numbers
/// are microsecond clocks that two devices (or two `--procs`) can both reach, so the
/// ordinal is what keeps serials apart.
fn load_serial(ordinal: u32, seq: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    fn base36(mut n: u64, min_width: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while n > 0 || out.len() < min_width.max(1) {
            out.push(DIGITS[(n % 36) as usize]);
            n /= 36;
        }
        out.reverse();
        out
    }
    let mut serial = base36(u64::from(ordinal) % 36u64.pow(3), 3);
    serial.extend(base36(seq, 1));
    // Only ASCII digits and capitals were pushed.
    String::from_utf8(serial).unwrap_or_default()
}

/// A commissioning envelope for one fresh serial.
fn envelope_for(d: &LoadDevice, seq: u64) -> anyhow::Result<Vec<u8>> {
    let gtin = Gtin::parse(&d.gtin())?;
    let serial = Serial::parse(&load_serial(d.ordinal, seq))?;
    let epc = Sgtin { gtin, serial }.to_epc_urn(d.company_prefix.len())?;
    let now = epcis::format_time(now_ms());
    let event = events::commissioning(
        &now,
        std::slice::from_ref(&epc),
        Where::Unrecorded,
        "LOAD1",
        "2035-12-31",
    );
    let body = Body {
        v: envelope::VERSION,
        device_id: d.identity.device_id.clone(),
        seq,
        sent_at: now,
        events: vec![event],
    };
    Ok(envelope::seal(&d.identity.key, &body))
}

async fn connect(
    opts: &LoadOptions,
    d: &LoadDevice,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<AsyncClient> {
    let id = &d.identity.device_id;
    let mut o = opts
        .mqtt
        .options(format!("load-{id}-{}", std::process::id()));
    o.set_keep_alive(Duration::from_secs(30))
        .set_inflight(1000)
        .set_max_packet_size(1 << 20, 1 << 20);
    if let Some(log) = &opts.log_key {
        o.set_credentials(
            id.clone(),
            mqttauth::device_password(&d.identity.key, log, id),
        );
    }
    let (client, mut eventloop) = AsyncClient::new(o, 10_000);
    // Small publishes back to back: without TCP_NODELAY each waits for the last one's ACK.
    eventloop.network_options.set_tcp_nodelay(true);
    let acks = envelope::acks_topic(&opts.topic_root, id);
    client.subscribe(acks.clone(), QoS::AtLeastOnce).await?;
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut ready = Some(ready_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == acks => {
                    let Ok(r) = serde_json::from_slice::<Receipt>(&p.payload) else {
                        continue;
                    };
                    let mut t = lock(&tally);
                    let Some(at) = t.out.remove(&r.payload_hash) else {
                        continue;
                    };
                    let now = Instant::now();
                    t.last_receipt = Some(now);
                    t.report
                        .latency
                        .record(now.duration_since(at).as_micros() as u64);
                    match r.status.as_str() {
                        "ACCEPTED" => t.report.accepted += 1,
                        "DUPLICATE" => t.report.duplicate += 1,
                        _ => {
                            t.report.rejected += 1;
                            *t.report
                                .rejected_codes
                                .entry(r.code.unwrap_or_default())
                                .or_default() += 1;
                        }
                    }
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(e) => {
                    if ready.is_none() {
                        tracing::warn!(error = %e, "load device connection lost");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "device {id} could not subscribe to its acks at {}",
                opts.mqtt
            )
        })??;
    Ok(client)
}

/// Writes a keys file (mode 0600) with `n` new devices: `device_id secret_hex company_prefix`.
pub fn write_keys_file(
    path: &Path,
    prefix: &str,
    company_prefix: &str,
    n: usize,
    force: bool,
) -> anyhow::Result<Vec<LoadDevice>> {
    let mut text =
        String::from("# firmware-sim load devices: device_id secret_key_hex company_prefix\n");
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let identity = Identity::new(&format!("{prefix}{i:05}"), SigningKey::generate())?;
        text.push_str(&format!(
            "{} {} {company_prefix}\n",
            identity.device_id,
            identity.key.to_secret_hex()
        ));
        out.push(LoadDevice {
            identity,
            company_prefix: company_prefix.into(),
            ordinal: i as u32,
        });
    }
    identity::write_secret(path, &text, force)?;
    Ok(out)
}

/// Reads a keys file written by [`write_keys_file`].
pub fn read_keys_file(path: &Path) -> anyhow::Result<Vec<LoadDevice>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [id, key, prefix] = f[..] else {
            anyhow::bail!(
                "{}:{}: expected `device_id secret_key_hex company_prefix`",
                path.display(),
                n + 1
            );
        };
        out.push(LoadDevice {
            identity: Identity::new(id, SigningKey::from_hex(key)?)?,
            company_prefix: prefix.into(),
            ordinal: out.len() as u32,
        });
    }
    Ok(out)
}

/// A shell script that registers the devices with the `rxledger` CLI.
pub fn enroll_script(devices: &[LoadDevice], org: &str, site_gln: &str) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# Enrolls the firmware-sim load devices. Run where `rxledger` can reach the database.\nset -e\n",
    );
    if let Some(d) = devices.first() {
        s.push_str(&format!(
            "rxledger org add --id {org} --name {org} --role MANUFACTURER || true\nrxledger org prefix --org {org} --prefix {} || true\nrxledger site add --gln {site_gln} --org {org} --name {org} || true\n",
            d.company_prefix
        ));
    }
    for d in devices {
        s.push_str(&format!(
            "rxledger device enroll --id {} --key {} --org {org} --site {site_gln}\n",
            d.identity.device_id,
            d.identity.key.public_hex()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_and_merge() {
        let mut a = Histogram::default();
        for us in 1..=1000 {
            a.record(us * 1000);
        }
        let p50 = a.quantile(0.5) as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.03, "{p50}");
        assert_eq!(a.quantile(1.0), 1_000_000);
        let mut b = Histogram::default();
        b.record(5_000_000);
        a.merge(&b);
        assert_eq!((a.count, a.max_us), (1001, 5_000_000));
    }

    #[test]
    fn keys_file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let written = write_keys_file(&path, "load-", "0614141", 3, false).unwrap();
        let read = read_keys_file(&path).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[2].identity.device_id, "load-00002");
        assert_eq!(
            read[1].identity.key.public_hex(),
            written[1].identity.key.public_hex()
        );
        assert_eq!(read[0].gtin(), "00614141000012");
        let script = enroll_script(&read, "load", "0614141000005");
        assert!(script.contains("rxledger device enroll --id load-00000 --key 0"));
        // Envelopes are valid: they open and verify with the device's key.
        let payload = envelope_for(&read[0], 1_700_000_000_000_000).unwrap();
        let opened = envelope::open(&payload, "load-00000").unwrap();
        opened.verify(&read[0].identity.key.public_key()).unwrap();
        rxledger_core::epcis::parse_event(&opened.body.events[0]).unwrap();
    }

    /// Two devices at the same sequence number (two processes reaching the same microsecond)
    /// commission different serials; one device's serials follow its sequence numbers.
    #[test]
    fn load_serials_never_collide_between_devices() {
        let seq = 1_700_000_000_000_123;
        assert_ne!(load_serial(0, seq), load_serial(1, seq));
        assert_ne!(load_serial(1, 36), load_serial(36, 1));
        assert_ne!(load_serial(2, seq), load_serial(2, seq + 1));
        assert_eq!(load_serial(1, 35), "001Z");
        let longest = load_serial(46_655, u64::MAX);
        assert_eq!(longest.len(), 16);
        Serial::parse(&longest).unwrap();
    }
}
