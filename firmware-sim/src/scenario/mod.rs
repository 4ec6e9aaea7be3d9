//! Scenario mode: set up a manufacturer, a wholesaler and K pharmacies through the API, play a
//! supply chain through store-and-forward devices, inject attacks and faults, then check
//! every receipt and every verdict against the [`Plan`]'s expectations.
//!
//! The plan ([`plan`]) is pure data; this module only executes it, so what the scenario
//! *means* can be read and tested without a server.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rxledger_core::envelope::{self, Body, Receipt};
use rxledger_core::epcis;
use rxledger_core::keys::SigningKey;
use serde::Serialize;

use crate::api::{Api, GraphQl};
use crate::device::{Broker, Device, DeviceOptions, Ticket};
use crate::identity::Identity;
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
    /// How long an offline device stays offline after its last queued scan.
    pub offline_for: Duration,
    /// Print progress and the summary on stdout.
    pub progress: bool,
    /// Check final verdicts with `verify`; off only where the server has no verdict API.
    pub check_verdicts: bool,
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
            offline_for: Duration::from_secs(2),
            progress: false,
            check_verdicts: true,
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
    pub verdicts_checked: usize,
    /// How much the log grew; must equal `accepted`.
    pub log_growth: u64,
    pub failures: Vec<String>,
    pub elapsed_ms: u128,
    /// A few checked codes and the verdict each gave, to try by hand (README tour).
    pub samples: Vec<(String, String)>,
}

impl ScenarioReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "scenario {}: {} envelopes ({} accepted, {} duplicate, {} rejected), {} verdicts checked, log grew by {}, {:.1} s\n",
            self.tag,
            self.envelopes,
            self.accepted,
            self.duplicate,
            self.rejected,
            self.verdicts_checked,
            self.log_growth,
            self.elapsed_ms as f64 / 1000.0
        );
        for (code, verdict) in &self.samples {
            s.push_str(&format!("  try verify(code: {code:?})  -> {verdict}\n"));
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

/// Runs a scenario with any [`Api`] implementation.
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
    let say = |s: &str| {
        if opts.progress {
            println!("{s}");
        }
    };
    let temp;
    let state_dir = match &opts.state_dir {
        Some(d) => d.join(&plan.tag),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut report = ScenarioReport {
        tag: plan.tag.clone(),
        ..ScenarioReport::default()
    };
    let size_before = api.log_size().await.context("reading the log size")?;
    let log = api
        .log_verifier()
        .await
        .context("reading the log's verifier key")?;

    say(&format!(
        "scenario {}: {} organizations, {} devices, {} packs",
        plan.tag,
        plan.orgs.len(),
        plan.devices.len(),
        plan.packs.len()
    ));
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
    let mut devices: HashMap<String, Device> = HashMap::new();
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
        devices.insert(d.id.clone(), Device::start(o)?);
    }
    let device = |id: &str| {
        devices
            .get(id)
            .with_context(|| format!("the plan uses device {id} but does not declare it"))
    };

    let mut waiting: Vec<Waiting> = Vec::new();
    let mut sent: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    let mut offline: HashSet<String> = HashSet::new();
    let mut accepted_hashes: HashSet<String> = HashSet::new();
    for step in &plan.steps {
        let (label, dev, expect, ticket) = match step {
            Step::Phase(p) => {
                say(&format!("== {p}"));
                continue;
            }
            Step::Barrier => {
                settle(
                    &mut waiting,
                    &offline,
                    &opts,
                    &mut report,
                    &mut accepted_hashes,
                )
                .await;
                continue;
            }
            Step::Revoke { device } => {
                api.revoke_device(device)
                    .await
                    .with_context(|| format!("revoking {device}"))?;
                continue;
            }
            Step::Offline { device: d } => {
                device(d)?.set_online(false);
                offline.insert(d.clone());
                continue;
            }
            Step::Online { device: d, held } => {
                let dev = device(d)?;
                if dev.unreceipted() < *held as u64 {
                    report.failures.push(format!(
                        "{d} was offline but only {} of its {held} envelopes were still queued",
                        dev.unreceipted()
                    ));
                }
                tokio::time::sleep(opts.offline_for).await;
                dev.set_online(true);
                offline.remove(d);
                continue;
            }
            Step::Send {
                device: d,
                label,
                events,
                expect,
            } => (
                label,
                d,
                expect,
                device(d)?.send(events.clone(), sent_at()).await?,
            ),
            Step::Forge {
                device: d,
                label,
                events,
                expect,
            } => {
                let dev = device(d)?;
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
                let (seq, payload) = sent
                    .get(of)
                    .cloned()
                    .with_context(|| format!("replay of {of:?}, which was not sent"))?;
                (label, d, expect, device(d)?.send_raw(seq, payload).await?)
            }
            Step::ReuseSeq {
                device: d,
                label,
                seq,
                events,
                expect,
            } => {
                let dev = device(d)?;
                let payload = envelope::seal(&dev.identity().key, &body(d, *seq, events.clone()));
                (label, d, expect, dev.send_raw(*seq, payload).await?)
            }
        };
        sent.insert(label.clone(), (ticket.seq, ticket.payload.clone()));
        report.envelopes += 1;
        waiting.push(Waiting {
            label: label.clone(),
            device: dev.clone(),
            expect: expect.clone(),
            ticket,
        });
    }
    for d in offline.drain() {
        device(&d)?.set_online(true);
    }
    settle(
        &mut waiting,
        &HashSet::new(),
        &opts,
        &mut report,
        &mut accepted_hashes,
    )
    .await;

    let verdicts = if opts.check_verdicts {
        &plan.verdicts[..]
    } else {
        &[]
    };
    say(&format!("== checking {} verdicts", verdicts.len()));
    for v in verdicts {
        report.verdicts_checked += 1;
        match api.verify(&v.code).await {
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
    let size_after = api.log_size().await.context("reading the log size")?;
    report.log_growth = size_after.saturating_sub(size_before);
    if report.log_growth != accepted_hashes.len() as u64 {
        report.failures.push(format!(
            "the log grew by {} entries but {} envelopes were accepted (is another client writing to this log?)",
            report.log_growth,
            accepted_hashes.len()
        ));
    }
    for (id, d) in devices {
        if d.unreceipted() > 0 {
            report.failures.push(format!(
                "{id} still holds {} envelopes without a receipt",
                d.unreceipted()
            ));
        }
        d.shutdown().await?;
    }
    report.elapsed_ms = started.elapsed().as_millis();
    say(&report.summary());
    Ok(report)
}

/// Waits for the receipts of everything sent by online devices and checks them.
async fn settle(
    waiting: &mut Vec<Waiting>,
    offline: &HashSet<String>,
    opts: &ScenarioOptions,
    report: &mut ScenarioReport,
    accepted: &mut HashSet<String>,
) {
    let (now, later): (Vec<_>, Vec<_>) = std::mem::take(waiting)
        .into_iter()
        .partition(|w| !offline.contains(&w.device));
    *waiting = later;
    for w in now {
        let hash = w.ticket.hash.clone();
        match w.ticket.receipt(opts.receipt_timeout).await {
            Ok(r) => {
                count(report, &r);
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
            Err(e) => report
                .failures
                .push(format!("{} from {}: {e}", w.label, w.device)),
        }
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
