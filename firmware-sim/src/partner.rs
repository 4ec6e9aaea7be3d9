//! Partner mode: the scenario's supply chain sent as EPCIS 2.0 JSON-LD over the REST binding,
//! the way a trading partner's ERP (SAP ATTP, TraceLink) sends it, instead of by scanners over
//! MQTT.
//!
//! The plan is the scenario's own ([`Plan::build`], without injections: forgeries, replays
//! and revocations are attacks on the MQTT envelope, which REST does not have). Each
//! organization gets an API key. Its events are posted to `POST /epcis/capture` as documents
//! in the order the supply chain makes them, one document for each run of consecutive steps
//! by one organization: for the wholesaler that is the pallet received and unpacked and
//! every shipment to the pharmacies. A partner sends a shipment's events after the goods left
//! the sender, not before, so a pharmacy's document never reaches the ledger ahead of the
//! wholesaler's shipment to it.
//!
//! The documents go as EPCIS 2.0 JSON-LD or, with [`PartnerFormat::Epcis12Xml`], as the EPCIS
//! 1.2 XML files a US DSCSA partner exchanges, written by the core's own XML writer. Each
//! document is signed by its organization's own key, as a partner that wants its signature in
//! the ledger signs it: the organization's first device of the plan is enrolled with a fresh
//! k256 key, and every document goes with `RxLedger-Signature` over its exact bytes
//! (docs/EPCIS.md, "Partner signatures"). Every capture job must succeed with every event
//! appended under the partner's signature, then the plan's verdicts are checked
//! with `verify` exactly as the MQTT scenario checks them: the same supply chain must give
//! the same verdicts whichever way it reached the ledger.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::{Value, json};

use rxledger_core::epcis::attestation;
use rxledger_core::keys::SigningKey;

use crate::api::{Api, GraphQl};
use crate::scenario::{self, Expect, Injections, Plan, PlanConfig, Step};

/// The syntax of the documents a partner sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum PartnerFormat {
    /// EPCIS 2.0 JSON-LD (`application/ld+json`), as the REST binding's newer clients send.
    #[default]
    JsonLd,
    /// EPCIS 1.2 XML (`application/xml`), as DSCSA trading partners exchange files.
    Epcis12Xml,
}

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
    pub format: PartnerFormat,
    pub progress: bool,
}

/// What one partner run did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartnerReport {
    pub tag: String,
    pub format: PartnerFormat,
    /// Per document, in the order sent: its organization, the events it held and how many
    /// the job appended.
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
            "partner {}: {} {} documents over EPCIS REST, {} verdicts checked, log grew by {}, {:.1} s\n",
            self.tag,
            self.documents.len(),
            match self.format {
                PartnerFormat::JsonLd => "EPCIS 2.0 JSON-LD",
                PartnerFormat::Epcis12Xml => "EPCIS 1.2 XML",
            },
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
        format: opts.format,
        ..PartnerReport::default()
    };
    let mut tokens: BTreeMap<String, String> = BTreeMap::new();
    let mut signers: BTreeMap<String, Signer> = BTreeMap::new();
    for (org, events) in documents(&plan)? {
        if !tokens.contains_key(&org) {
            tokens.insert(org.clone(), issue_key(&api, &org).await?);
            signers.insert(org.clone(), enroll_signer(&api, &plan, &org).await?);
        }
        let n = events.len();
        let appended = capture(&api, &tokens[&org], &signers[&org], events, opts.format)
            .await
            .with_context(|| format!("capturing a document of {org}'s"))?;
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

/// The plan's events as documents in the order the supply chain makes them: each run of
/// consecutive steps by one organization is one document, as its ERP would send it.
pub fn documents(plan: &Plan) -> anyhow::Result<Vec<(String, Vec<Value>)>> {
    let org_of: BTreeMap<&str, &str> = plan
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.org.as_str()))
        .collect();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
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
            match out.last_mut() {
                Some((last, doc)) if last == org => doc.extend(events.iter().cloned()),
                _ => out.push((org.to_string(), events.clone())),
            }
        }
    }
    Ok(out)
}

/// The device whose key signs an organization's documents.
struct Signer {
    id: String,
    key: SigningKey,
}

/// Enrolls the organization's first device of the plan with a fresh key: its signer.
async fn enroll_signer(api: &GraphQl, plan: &Plan, org: &str) -> anyhow::Result<Signer> {
    let d = plan
        .devices
        .iter()
        .find(|d| d.org == org)
        .with_context(|| format!("the plan has no device of {org}'s to sign with"))?;
    let key = SigningKey::generate();
    api.enroll_device(&d.id, &key.public_hex(), org, &d.site_gln)
        .await
        .with_context(|| format!("enrolling {org}'s signing device {}", d.id))?;
    Ok(Signer {
        id: d.id.clone(),
        key,
    })
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

/// Posts one document, signed by `signer`, and returns how many events its job appended
/// (under the partner's signature: anything else is an error).
async fn capture(
    api: &GraphQl,
    token: &str,
    signer: &Signer,
    events: Vec<Value>,
    format: PartnerFormat,
) -> anyhow::Result<u64> {
    let created = rxledger_core::epcis::format_time(scenario::now_ms());
    let (content_type, doc) = match format {
        PartnerFormat::JsonLd => (
            "application/ld+json",
            json!({
                "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
                "type": "EPCISDocument",
                "schemaVersion": "2.0",
                "creationDate": created,
                "epcisBody": { "eventList": events },
            })
            .to_string(),
        ),
        PartnerFormat::Epcis12Xml => {
            let header = rxledger_core::epcis::xml::XmlHeader {
                schema_version: "1.2".into(),
                creation_date: Some(created),
                ..Default::default()
            };
            let xml = rxledger_core::epcis::xml::to_epcis12_xml(&events, &header)
                .map_err(|e| anyhow::anyhow!("writing the EPCIS 1.2 document: {e}"))?;
            ("application/xml", xml)
        }
    };
    let sig = attestation::sign_document(&signer.key, doc.as_bytes());
    let signature = attestation::header_value(&signer.id, &sig);
    let (status, _, body) = api
        .request(
            "POST",
            "/epcis/capture",
            token,
            &[
                ("Content-Type", content_type),
                (attestation::HEADER, &signature),
            ],
            doc.as_bytes(),
        )
        .await?;
    let job: Value = serde_json::from_slice(&body)
        .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?;
    anyhow::ensure!(
        status == 202 && job["success"] == true && job["signedBy"] == "partner-key",
        "HTTP {status}: {job}"
    );
    job["appendedCount"]
        .as_u64()
        .with_context(|| format!("the job has no appendedCount: {job}"))
}
