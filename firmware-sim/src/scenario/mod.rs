//! Scenario mode: set up a manufacturer, a wholesaler and K pharmacies through the API, play a
//! supply chain through store-and-forward devices, inject attacks and faults, then check
//! every receipt and every verdict against the [`Plan`]'s expectations.
//!
//! The plan ([`plan`]) is pure data; this module only executes it, so what the scenario
//! *means* can be read and tested without a server.

pub mod plan;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rxledger_core::checkpoint::{self, CheckpointError};
use rxledger_core::cosignature::{self, Quorum};
use rxledger_core::envelope::{self, Body, Receipt};
use rxledger_core::epcis;
use rxledger_core::keys::{LogVerifier, SigningKey};
use serde::Serialize;

use crate::api::{Api, GraphQl};
use crate::device::{Broker, Device, DeviceError, DeviceOptions, Ticket};
use crate::identity::Identity;
use crate::witness::Witnessing;
pub use plan::{Expect, Injections, Plan, PlanConfig, Step, VerdictExpectation};

/// Everything `firmware-sim scenario` takes.
#[derive(Clone, Debug)]
pub struct ScenarioOptions {
    /// `http://host:port` of the server (GraphQL at `/graphql`).
    pub server: String,
    pub mqtt: Broker,
    pub admin_key: Option<String>,
    pub packs: usize,
    pub pharmacies: usize,
    pub inject: Injections,
    pub topic_root: String,
    pub seed: u64,
    /// Where device queues live; a temporary directory if `None`.
    pub state_dir: Option<PathBuf>,
    /// Longest wait for any one receipt.
    pub receipt_timeout: Duration,
    /// How long first contact may take before the run stops with a clear error: every
    /// device's broker connection, and the first receipt of the run.
    pub contact_timeout: Duration,
    /// How long an offline device stays offline after its last queued scan.
    pub offline_for: Duration,
    /// Print progress and the summary on stdout.
    pub progress: bool,
    /// Check final verdicts with `verify`; off only where the server has no verdict API.
    pub check_verdicts: bool,
    /// Demand that the witnesses saw the log the receipts came from: each device holds its
    /// receipted envelopes until a checkpoint cosigned by this quorum extends their trees
    /// (docs/PROTOCOL.md §13.6), and after the run one such checkpoint must cover every
    /// receipt's checkpoint. `None`: the log's own signature is trusted (docs/VERIFY.md).
    pub witnesses: Option<Quorum>,
}

impl ScenarioOptions {
    pub fn new(server: &str, mqtt: Broker, admin_key: Option<String>) -> ScenarioOptions {
        ScenarioOptions {
            server: server.into(),
            mqtt,
            admin_key,
            packs: 20,
            pharmacies: 2,
            inject: Injections::default(),
            topic_root: envelope::DEFAULT_TOPIC_ROOT.into(),
            seed: 1,
            state_dir: None,
            receipt_timeout: Duration::from_secs(30),
            contact_timeout: Duration::from_secs(10),
            offline_for: Duration::from_secs(2),
            progress: false,
            check_verdicts: true,
            witnesses: None,
        }
    }
}

/// What happened, and every expectation that did not hold.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScenarioReport {
    pub tag: String,
    pub envelopes: usize,
    pub accepted: usize,
    pub duplicate: usize,
    pub rejected: usize,
    /// Envelopes of a revoked device that got no receipt because the broker cut the device
    /// off first (the embedded broker closes a revoked device's connection and refuses its
    /// logins; behind Mosquitto it gets a DEVICE_REVOKED receipt instead).
    pub cut_off: usize,
    pub verdicts_checked: usize,
    /// How many entries holding events the log gained (not its own map roots and desk
    /// records); must equal `accepted`.
    pub log_growth: u64,
    pub failures: Vec<String>,
    pub elapsed_ms: u128,
    /// A few checked codes and the verdict each gave, to try by hand (README tour).
    pub samples: Vec<(String, String)>,
    /// With `witnesses`: the size of the cosigned checkpoint that covered every receipt, and
    /// the witnesses that cosigned it.
    pub witnessed: Option<(u64, Vec<String>)>,
}

impl ScenarioReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "scenario {}: {} envelopes ({} accepted, {} duplicate, {} rejected, {} cut off), {} verdicts checked, {} event entries logged, {:.1} s\n",
            self.tag,
            self.envelopes,
            self.accepted,
            self.duplicate,
            self.rejected,
            self.cut_off,
            self.verdicts_checked,
            self.log_growth,
            self.elapsed_ms as f64 / 1000.0
        );
        for (code, verdict) in &self.samples {
            s.push_str(&format!("  try verify(code: {code:?})  -> {verdict}\n"));
        }
        if let Some((size, names)) = &self.witnessed {
            s.push_str(&format!(
                "every receipt is in the log the witnesses cosigned at size {size} ({})\n",
                names.join(", ")
            ));
        }
        if self.ok() {
            s.push_str("every expectation held\n");
        } else {
            s.push_str(&format!("{} expectations failed:\n", self.failures.len()));
            for f in &self.failures {
                s.push_str(&format!("  - {f}\n"));
            }
        }
        s
    }
}

/// Runs a scenario against the GraphQL API at `opts.server`.
pub async fn run_scenario(opts: ScenarioOptions) -> anyhow::Result<ScenarioReport> {
    let api = GraphQl::new(&opts.server, opts.admin_key.clone())?;
    run_scenario_with(&api, opts).await
}

struct Waiting {
    label: String,
    device: String,
    expect: Expect,
    ticket: Ticket,
}

/// Runs a scenario with any [`Api`] implementation: builds the plan, registers its
/// organizations and devices, plays its steps, then checks the verdicts and the log.
pub async fn run_scenario_with<A: Api>(
    api: &A,
    opts: ScenarioOptions,
) -> anyhow::Result<ScenarioReport> {
    let started = Instant::now();
    let plan = Plan::build(
        &PlanConfig {
            packs: opts.packs,
            pharmacies: opts.pharmacies,
            seed: opts.seed,
            inject: opts.inject,
        },
        now_ms(),
    )
    .map_err(anyhow::Error::msg)?;
    let temp;
    let state_dir = match &opts.state_dir {
        Some(d) => d.join(&plan.tag),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let size_before = api.log_size().await.with_context(|| {
        format!(
            "cannot reach the rxledger server at {}: check --server (the address \
             `rxledger serve` prints after `listening on`) and that it is running",
            opts.server
        )
    })?;
    let log = api
        .log_verifier()
        .await
        .context("reading the log's verifier key")?;
    say(
        &opts,
        &format!(
            "scenario {}: {} organizations, {} devices, {} packs",
            plan.tag,
            plan.orgs.len(),
            plan.devices.len(),
            plan.packs.len()
        ),
    );
    register(api, &plan).await?;
    let devices = enroll(api, &plan, &opts, &state_dir, &log).await?;
    connect_all(&devices, &opts).await?;
    let mut run = Run {
        api,
        opts: &opts,
        devices,
        report: ScenarioReport {
            tag: plan.tag.clone(),
            ..ScenarioReport::default()
        },
        waiting: Vec::new(),
        sent: HashMap::new(),
        offline: HashSet::new(),
        accepted: HashSet::new(),
        checkpoints: BTreeSet::new(),
    };
    for step in &plan.steps {
        run.play(step).await?;
    }
    for d in std::mem::take(&mut run.offline) {
        run.device(&d)?.set_online(true);
    }
    run.settle().await?;
    run.check_verdicts(&plan).await;
    if opts.witnesses.is_some() {
        run.devices_witnessed().await;
    }
    if let Some(quorum) = &opts.witnesses {
        match witnessed(api, &log, quorum, &run.checkpoints, opts.receipt_timeout).await {
            Ok(w) => run.report.witnessed = Some(w),
            Err(e) => run.report.failures.push(e),
        }
    }
    let size_after = api.log_size().await.context("reading the log size")?;
    let growth = api
        .event_entries(size_before, size_after)
        .await
        .context("reading the entries the scenario appended")?;
    let mut report = run.finish(growth).await?;
    report.elapsed_ms = started.elapsed().as_millis();
    say(&opts, &report.summary());
    Ok(report)
}

/// Waits for every device's broker connection, so that a wrong or unreachable `--mqtt`, or
/// credentials the broker refuses, stop the run within `contact_timeout` with the reason.
async fn connect_all(
    devices: &HashMap<String, Device>,
    opts: &ScenarioOptions,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + opts.contact_timeout;
    for (id, d) in devices {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !d.connected(left).await {
            let why = d.last_error().unwrap_or_else(|| "no answer".into());
            anyhow::bail!(
                "device {id} could not connect to the MQTT broker at {}:{} within {:?} ({why}): \
                 check --mqtt (the address `rxledger serve` prints as `mqtt:`) and --topic-root",
                opts.mqtt.host,
                opts.mqtt.port,
                opts.contact_timeout
            );
        }
    }
    Ok(())
}

/// Prints a progress line when the options ask for progress.
fn say(opts: &ScenarioOptions, s: &str) {
    if opts.progress {
        println!("{s}");
    }
}

/// Creates the plan's organizations with their company prefixes and sites.
pub(crate) async fn register<A: Api>(api: &A, plan: &Plan) -> anyhow::Result<()> {
    for o in &plan.orgs {
        api.create_organization(&o.id, &o.name, o.role)
            .await
            .with_context(|| format!("creating organization {}", o.id))?;
        if let Some(p) = &o.prefix {
            api.add_company_prefix(&o.id, p)
                .await
                .with_context(|| format!("adding company prefix {p} to {}", o.id))?;
        }
        for s in &o.sites {
            api.add_site(&s.gln, &o.id, &s.name, Some(s.lat_lon))
                .await
                .with_context(|| format!("adding site {}", s.gln))?;
        }
    }
    Ok(())
}

/// Enrolls a new key for each of the plan's devices and starts the device, with its queue
/// under `state_dir`.
async fn enroll<A: Api>(
    api: &A,
    plan: &Plan,
    opts: &ScenarioOptions,
    state_dir: &std::path::Path,
    log: &rxledger_core::keys::LogVerifier,
) -> anyhow::Result<HashMap<String, Device>> {
    let mut devices = HashMap::new();
    for d in &plan.devices {
        let key = SigningKey::generate();
        api.enroll_device(&d.id, &key.public_hex(), &d.org, &d.site_gln)
            .await
            .with_context(|| format!("enrolling device {}", d.id))?;
        let mut o = DeviceOptions::new(
            Identity::new(&d.id, key)?,
            opts.mqtt.clone(),
            state_dir.join(&d.id),
            log.clone(),
        );
        o.topic_root = opts.topic_root.clone();
        if let Some(quorum) = &opts.witnesses {
            o.witnesses = Some(Witnessing {
                quorum: quorum.clone(),
                api: GraphQl::new(&opts.server, None)?,
                every: Duration::from_millis(200),
            });
        }
        devices.insert(d.id.clone(), Device::start(o)?);
    }
    Ok(devices)
}

/// A scenario being played: its devices and what it is still waiting for.
struct Run<'a, A: Api> {
    api: &'a A,
    opts: &'a ScenarioOptions,
    devices: HashMap<String, Device>,
    report: ScenarioReport,
    /// Sent envelopes whose receipts have not been checked yet.
    waiting: Vec<Waiting>,
    /// Every envelope sent, by label, for replays.
    sent: HashMap<String, (u64, Vec<u8>)>,
    /// Devices offline now; their receipts are waited for once they are back.
    offline: HashSet<String>,
    /// Hashes of the envelopes the log accepted.
    accepted: HashSet<String>,
    /// The distinct checkpoint notes the receipts carried.
    checkpoints: BTreeSet<String>,
}

impl<A: Api> Run<'_, A> {
    fn device(&self, id: &str) -> anyhow::Result<&Device> {
        self.devices
            .get(id)
            .with_context(|| format!("the plan uses device {id} but does not declare it"))
    }

    /// Plays one step.
    async fn play(&mut self, step: &Step) -> anyhow::Result<()> {
        match step {
            Step::Phase(p) => say(self.opts, &format!("== {p}")),
            Step::Barrier => self.settle().await?,
            Step::Revoke { device } => self
                .api
                .revoke_device(device)
                .await
                .with_context(|| format!("revoking {device}"))?,
            Step::Offline { device: d } => {
                self.device(d)?.set_online(false);
                self.offline.insert(d.clone());
            }
            Step::Online { device: d, held } => {
                let dev = self.device(d)?;
                if dev.unreceipted() < *held as u64 {
                    let failure = format!(
                        "{d} was offline but only {} of its {held} envelopes were still queued",
                        dev.unreceipted()
                    );
                    self.report.failures.push(failure);
                }
                tokio::time::sleep(self.opts.offline_for).await;
                self.device(d)?.set_online(true);
                self.offline.remove(d);
            }
            Step::Send { .. }
            | Step::Forge { .. }
            | Step::ReplayBytes { .. }
            | Step::ReuseSeq { .. } => self.send(step).await?,
        }
        Ok(())
    }

    /// Sends the envelope of a sending step and keeps its ticket for the next barrier.
    async fn send(&mut self, step: &Step) -> anyhow::Result<()> {
        let (label, dev, expect, ticket) = match step {
            Step::Send {
                device: d,
                label,
                events,
                expect,
            } => (
                label,
                d,
                expect,
                self.device(d)?.send(events.clone(), sent_at()).await?,
            ),
            Step::Forge {
                device: d,
                label,
                events,
                expect,
            } => {
                let dev = self.device(d)?;
                let seq = dev.next_seq();
                let forger = SigningKey::generate();
                let payload = envelope::seal(&forger, &body(d, seq, events.clone()));
                (label, d, expect, dev.send_raw(seq, payload).await?)
            }
            Step::ReplayBytes {
                device: d,
                label,
                of,
                expect,
            } => {
                let (seq, payload) = self
                    .sent
                    .get(of)
                    .cloned()
                    .with_context(|| format!("replay of {of:?}, which was not sent"))?;
                (
                    label,
                    d,
                    expect,
                    self.device(d)?.send_raw(seq, payload).await?,
                )
            }
            Step::ReuseSeq {
                device: d,
                label,
                seq,
                events,
                expect,
            } => {
                let dev = self.device(d)?;
                let payload = envelope::seal(&dev.identity().key, &body(d, *seq, events.clone()));
                (label, d, expect, dev.send_raw(*seq, payload).await?)
            }
            _ => return Ok(()),
        };
        self.sent
            .insert(label.clone(), (ticket.seq, ticket.payload.clone()));
        self.report.envelopes += 1;
        self.waiting.push(Waiting {
            label: label.clone(),
            device: dev.clone(),
            expect: expect.clone(),
            ticket,
        });
        Ok(())
    }

    /// Waits for the receipts of everything sent by online devices and checks them.
    async fn settle(&mut self) -> anyhow::Result<()> {
        settle(
            &mut self.waiting,
            &self.offline,
            self.opts,
            &mut self.report,
            &mut self.accepted,
            &mut self.checkpoints,
        )
        .await
    }

    /// With witnesses: waits, up to the receipt timeout in all, until every device has
    /// dropped every envelope because a cosigned checkpoint extends its receipt's tree, and
    /// reports each device that could not, or that was shown a fork.
    async fn devices_witnessed(&mut self) {
        let deadline = tokio::time::Instant::now() + self.opts.receipt_timeout;
        let mut ids: Vec<_> = self.devices.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let d = &self.devices[&id];
            // A device the broker refuses (revoked) keeps what it could not deliver.
            if d.refused() {
                continue;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = d.witnessed(left).await {
                self.report.failures.push(format!("{id}: {e}"));
            }
        }
    }

    /// Asks `verify` for every code the plan expects a verdict for.
    async fn check_verdicts(&mut self, plan: &Plan) {
        let verdicts = if self.opts.check_verdicts {
            &plan.verdicts[..]
        } else {
            &[]
        };
        say(
            self.opts,
            &format!("== checking {} verdicts", verdicts.len()),
        );
        let report = &mut self.report;
        for v in verdicts {
            report.verdicts_checked += 1;
            match self.api.verify(&v.code).await {
                Ok(answer) => {
                    let seen = report
                        .samples
                        .iter()
                        .any(|(_, verdict)| *verdict == answer.verdict);
                    if !seen && report.samples.len() < 6 {
                        report
                            .samples
                            .push((v.code.clone(), answer.verdict.clone()));
                    }
                    if let Err(e) = v.check(&answer) {
                        report
                            .failures
                            .push(format!("verify {} ({}): {e}", v.label, v.code));
                    }
                }
                Err(e) => report
                    .failures
                    .push(format!("verify {} ({}): {e}", v.label, v.code)),
            }
        }
    }

    /// Checks the log grew by exactly the accepted envelopes (`log_growth` counts the
    /// entries that hold events, not the log's own map roots and desk records) and that
    /// every device holds a receipt for everything, and stops the devices.
    async fn finish(self, log_growth: u64) -> anyhow::Result<ScenarioReport> {
        let mut report = self.report;
        report.log_growth = log_growth;
        if report.log_growth != self.accepted.len() as u64 {
            report.failures.push(format!(
                "the log gained {} entries holding events but {} envelopes were accepted (is another client writing to this log?)",
                report.log_growth,
                self.accepted.len()
            ));
        }
        for (id, d) in self.devices {
            // A device the broker refuses (revoked) keeps what it could not deliver.
            if d.unreceipted() > 0 && !d.refused() {
                report.failures.push(format!(
                    "{id} still holds {} envelopes without a receipt",
                    d.unreceipted()
                ));
            }
            d.shutdown().await?;
        }
        Ok(report)
    }
}

/// Waits for the receipts of everything sent by online devices and checks them.
async fn settle(
    waiting: &mut Vec<Waiting>,
    offline: &HashSet<String>,
    opts: &ScenarioOptions,
    report: &mut ScenarioReport,
    accepted: &mut HashSet<String>,
    checkpoints: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let (now, later): (Vec<_>, Vec<_>) = std::mem::take(waiting)
        .into_iter()
        .partition(|w| !offline.contains(&w.device));
    *waiting = later;
    for w in now {
        let hash = w.ticket.hash.clone();
        // Until the first receipt arrives nothing shows that a server listens on this broker
        // and topic root, so that wait is short and ends the run.
        let first = report.accepted + report.duplicate + report.rejected == 0;
        let wait = if first {
            opts.contact_timeout
        } else {
            opts.receipt_timeout
        };
        let receipt = w.ticket.receipt(wait).await;
        if first && receipt.is_err() {
            anyhow::bail!(
                "no receipt within {wait:?} for the first envelope ({} from {}): the broker took \
                 it, but no rxledger server answers on topic root {:?}; check that \
                 `rxledger serve` uses this broker and topic root",
                w.label,
                w.device,
                opts.topic_root
            );
        }
        match receipt {
            Ok(r) => {
                count(report, &r);
                if let Some(note) = &r.checkpoint {
                    checkpoints.insert(note.clone());
                }
                // A DUPLICATE answer to an envelope's first send is its original receipt: an
                // earlier delivery of these exact bytes was logged, and its receipt was lost
                // (a broker restart, say). For this envelope that is acceptance, once.
                let logged_earlier = r.status == "DUPLICATE"
                    && r.entry_index.is_some()
                    && matches!(w.expect, plan::Expect::Accepted);
                if r.status == "ACCEPTED" || logged_earlier {
                    accepted.insert(hash);
                }
                let status = if logged_earlier {
                    "ACCEPTED"
                } else {
                    r.status.as_str()
                };
                if let Err(e) = w.expect.check(status, r.code.as_deref()) {
                    let why = r.message.as_deref().unwrap_or("");
                    report
                        .failures
                        .push(format!("{} from {}: {e} {why}", w.label, w.device));
                }
            }
            Err(DeviceError::Refused) if w.expect == plan::Expect::Rejected("DEVICE_REVOKED") => {
                report.cut_off += 1;
            }
            Err(e) => report
                .failures
                .push(format!("{} from {}: {e}", w.label, w.device)),
        }
    }
    Ok(())
}

/// Waits, up to `wait`, for a checkpoint that `quorum` cosigned and that covers every receipt
/// checkpoint in `seen`. Returns the cosigned size and its cosigners, or why not. That each
/// receipt's tree is a prefix of a cosigned one (not a fork shown to one device alone) each
/// device has already proven before dropping its envelopes ([`Run::devices_witnessed`]).
async fn witnessed<A: Api>(
    api: &A,
    log: &LogVerifier,
    quorum: &Quorum,
    seen: &BTreeSet<String>,
    wait: Duration,
) -> Result<(u64, Vec<String>), String> {
    let mut need = 0;
    for note in seen {
        let cp = checkpoint::open_checkpoint(note, log)
            .map_err(|e| format!("a receipt's checkpoint does not verify: {e}"))?;
        need = need.max(cp.size);
    }
    let deadline = Instant::now() + wait;
    let mut last = "the server has no cosigned checkpoint".to_string();
    loop {
        let note = api
            .cosigned_checkpoint()
            .await
            .map_err(|e| format!("reading the cosigned checkpoint: {e}"))?;
        if let Some(note) = note {
            match cosignature::open_cosigned(&note, log, quorum) {
                Ok((cp, names)) if cp.size >= need => return Ok((cp.size, names)),
                Ok((cp, _)) => last = format!("the newest covers size {} only", cp.size),
                // Too few of these witnesses yet: a later checkpoint may carry more.
                Err(e @ CheckpointError::NoQuorum { .. }) => last = e.to_string(),
                Err(e) => return Err(format!("the cosigned checkpoint does not verify: {e}")),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no checkpoint cosigned by {} of the {} witnesses covers the receipts' size {need} \
                 within {wait:?} ({last}): the witnesses may be down, or may not have seen this log",
                quorum.need,
                quorum.witnesses.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn count(report: &mut ScenarioReport, r: &Receipt) {
    match r.status.as_str() {
        "ACCEPTED" => report.accepted += 1,
        "DUPLICATE" => report.duplicate += 1,
        _ => report.rejected += 1,
    }
}

fn body(device: &str, seq: u64, events: Vec<serde_json::Value>) -> Body {
    Body {
        v: envelope::VERSION,
        device_id: device.into(),
        seq,
        sent_at: sent_at(),
        events,
    }
}

fn sent_at() -> String {
    epcis::format_time(now_ms())
}

/// Milliseconds since 1970, from the system clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
