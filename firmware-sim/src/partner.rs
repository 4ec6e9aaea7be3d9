//! Partner mode: the scenario's supply chain sent as EPCIS 2.0 JSON-LD over the REST binding,
//! the way a trading partner's ERP (SAP ATTP, TraceLink) sends it, instead of by scanners over
//! MQTT.
//!
//! The plan is the scenario's own ([`Plan::build`], without injections: forgeries, replays
//! and revocations are attacks on the MQTT envelope, which REST does not have). Each
//! organization gets an API key, and all of its events become one `EPCISDocument` posted to
//! `POST /epcis/capture`: for the wholesaler that is its whole day, the pallet received and
//! unpacked and every shipment to the pharmacies. Every capture job must succeed with every
//! event appended, then the plan's verdicts are checked with `verify` exactly as the MQTT
//! scenario checks them: the same supply chain must give the same verdicts whichever way it
//! reached the ledger.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::api::{Api, GraphQl};
use crate::scenario::{self, Expect, Injections, Plan, PlanConfig, Step};

/// What `firmware-sim partner` takes.
#[derive(Clone, Debug)]
pub struct PartnerOptions {
    /// `http://host:port` of the server.
    pub server: String,
    /// An ADMIN key: it registers the organizations and issues their API keys.
    pub admin_key: String,
    pub packs: usize,
    pub pharmacies: usize,
    pub seed: u64,
    pub progress: bool,
}

/// What one partner run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartnerReport {
    pub tag: String,
    /// Per organization: the events its document held and how many the job appended.
    pub documents: Vec<(String, usize, u64)>,
    pub verdicts_checked: usize,
    pub log_growth: u64,
    pub failures: Vec<String>,
    pub elapsed_ms: u128,
}

impl PartnerReport {
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "partner {}: {} documents over EPCIS REST, {} verdicts checked, log grew by {}, {:.1} s\n",
            self.tag,
            self.documents.len(),
            self.verdicts_checked,
            self.log_growth,
            self.elapsed_ms as f64 / 1000.0
        );
        for (org, events, appended) in &self.documents {
            s.push_str(&format!("  {org}: {events} events, {appended} appended\n"));
        }
        if self.ok() {
            s.push_str("every expectation held\n");
        } else {
            for f in &self.failures {
                s.push_str(&format!("  - {f}\n"));
            }
        }
        s
    }
}

/// Plays the scenario's supply chain over EPCIS REST and checks its verdicts.
pub async fn run_partner(opts: PartnerOptions) -> anyhow::Result<PartnerReport> {
    let started = Instant::now();
    let api = GraphQl::new(&opts.server, Some(opts.admin_key.clone()))?;
    let plan = Plan::build(
        &PlanConfig {
            packs: opts.packs,
            pharmacies: opts.pharmacies,
            seed: opts.seed,
            inject: Injections::default(),
        },
        scenario::now_ms(),
    )
    .map_err(anyhow::Error::msg)?;
    let before = api
        .log_size()
        .await
        .with_context(|| format!("cannot reach the rxledger server at {}", opts.server))?;
    scenario::register(&api, &plan).await?;
    let mut report = PartnerReport {
        tag: plan.tag.clone(),
        ..PartnerReport::default()
    };
    for (org, events) in documents(&plan)? {
        let token = issue_key(&api, &org).await?;
        let n = events.len();
        let appended = capture(&api, &token, events)
            .await
            .with_context(|| format!("capturing {org}'s document"))?;
        if appended != n as u64 {
            report
                .failures
                .push(format!("{org}: {n} events sent, {appended} appended"));
        }
        if opts.progress {
            println!("== {org}: {n} events captured over EPCIS REST");
        }
        report.documents.push((org, n, appended));
    }
    for v in &plan.verdicts {
        report.verdicts_checked += 1;
        match api.verify(&v.code).await {
            Ok(answer) => {
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
    let after = api.log_size().await?;
    report.log_growth = after.saturating_sub(before);
    report.elapsed_ms = started.elapsed().as_millis();
    if opts.progress {
        print!("{}", report.summary());
    }
    Ok(report)
}

/// Each organization's events, in the plan's order: what its ERP would send.
fn documents(plan: &Plan) -> anyhow::Result<BTreeMap<String, Vec<Value>>> {
    let org_of: BTreeMap<&str, &str> = plan
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.org.as_str()))
        .collect();
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for step in &plan.steps {
        if let Step::Send {
            device,
            events,
            expect,
            label,
        } = step
        {
            anyhow::ensure!(
                *expect == Expect::Accepted,
                "step {label} expects {expect}: only plain supply chains are sent as documents"
            );
            let org = org_of
                .get(device.as_str())
                .with_context(|| format!("the plan's device {device} has no organization"))?;
            out.entry(org.to_string())
                .or_default()
                .extend(events.iter().cloned());
        }
    }
    Ok(out)
}

async fn issue_key(api: &GraphQl, org: &str) -> anyhow::Result<String> {
    let data = api
        .execute(
            "mutation($org: String!) { issueApiKey(orgId: $org, label: \"epcis partner\") { token } }",
            json!({ "org": org }),
        )
        .await
        .with_context(|| format!("issuing an API key for {org}"))?;
    data["issueApiKey"]["token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("issueApiKey answered {data}"))
}

/// Posts one document and returns how many events its job appended.
async fn capture(api: &GraphQl, token: &str, events: Vec<Value>) -> anyhow::Result<u64> {
    let doc = json!({
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": rxledger_core::epcis::format_time(scenario::now_ms()),
        "epcisBody": { "eventList": events },
    });
    let (status, _, body) = api
        .request(
            "POST",
            "/epcis/capture",
            token,
            &[("Content-Type", "application/ld+json")],
            doc.to_string().as_bytes(),
        )
        .await?;
    let job: Value = serde_json::from_slice(&body)
        .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?;
    anyhow::ensure!(
        status == 202 && job["success"] == true,
        "HTTP {status}: {job}"
    );
    job["appendedCount"]
        .as_u64()
        .with_context(|| format!("the job has no appendedCount: {job}"))
}
