//! The scenario as data: who takes part, which envelopes each device sends in which order,
//! and what the server must answer. Building a plan is pure (no clock, no I/O: the caller
//! passes "now" and a seed), so it is unit-tested on its own.

use std::collections::BTreeSet;

use rxledger_core::epcis;
#[cfg(test)]
use rxledger_core::gs1::Gln;
use rxledger_core::gs1::{self, CalendarDate, Expiry, Gtin, Lot, ScannedCode, Serial, Sgtin, Sscc};
use serde_json::Value;

use crate::api::{Role, Verification};
use crate::events::{self, Where};

/// Which attacks and faults to mix into the supply chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injections {
    /// Cloned and never-commissioned serials, a foreign brand, mismatched lot and expiry.
    pub counterfeit: bool,
    /// An envelope signed with a key that is not the device's.
    pub forged: bool,
    /// An old envelope resent byte for byte, and a new one reusing an old sequence number.
    pub replay: bool,
    /// A device revoked by the administrator keeps sending.
    pub revoked: bool,
    /// A pharmacy's receiving event reaches the log before the wholesaler's shipping event.
    pub out_of_order: bool,
    /// A pharmacy's scanner loses its connection, keeps queueing, then reconnects.
    pub offline: bool,
}

impl Injections {
    pub const NAMES: [&'static str; 6] = [
        "counterfeit",
        "forged",
        "replay",
        "revoked",
        "out-of-order",
        "offline",
    ];

    /// Parses `counterfeit,forged,…` (or `all`).
    pub fn parse(list: &str) -> Result<Injections, String> {
        let mut i = Injections::default();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match name {
                "all" => i = Injections::all(),
                "counterfeit" => i.counterfeit = true,
                "forged" => i.forged = true,
                "replay" => i.replay = true,
                "revoked" => i.revoked = true,
                "out-of-order" => i.out_of_order = true,
                "offline" => i.offline = true,
                other => {
                    return Err(format!(
                        "unknown injection {other:?}; choose from {} or all",
                        Self::NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(i)
    }

    pub fn all() -> Injections {
        Injections {
            counterfeit: true,
            forged: true,
            replay: true,
            revoked: true,
            out_of_order: true,
            offline: true,
        }
    }
}

/// The size of the supply chain.
#[derive(Clone, Copy, Debug)]
pub struct PlanConfig {
    pub packs: usize,
    pub pharmacies: usize,
    pub seed: u64,
    pub inject: Injections,
}

/// What a receipt must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Accepted,
    Duplicate,
    Rejected(&'static str),
}

impl Expect {
    /// Compares with a receipt's status and code; `Err` says how they differ.
    pub fn check(&self, status: &str, code: Option<&str>) -> Result<(), String> {
        let ok = match self {
            Expect::Accepted => status == "ACCEPTED",
            Expect::Duplicate => status == "DUPLICATE",
            Expect::Rejected(c) => status == "REJECTED" && code == Some(c),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {self}, got {status}{}",
                code.map(|c| format!(" {c}")).unwrap_or_default()
            ))
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Accepted => f.write_str("ACCEPTED"),
            Expect::Duplicate => f.write_str("DUPLICATE"),
            Expect::Rejected(c) => write!(f, "REJECTED {c}"),
        }
    }
}

/// An organization with its sites.
#[derive(Clone, Debug)]
pub struct OrgSpec {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// A GS1 company prefix registered to it (brand ownership of GTINs).
    pub prefix: Option<String>,
    pub sites: Vec<SiteSpec>,
}

#[derive(Clone, Debug)]
pub struct SiteSpec {
    pub gln: String,
    pub name: String,
    pub lat_lon: (f64, f64),
}

#[derive(Clone, Debug)]
pub struct DeviceSpec {
    pub id: String,
    pub org: String,
    pub site_gln: String,
}

/// One thing the scenario does, in order.
#[derive(Clone, Debug)]
pub enum Step {
    /// Print a progress line.
    Phase(String),
    /// Sign `events` with the device's key and next sequence number, and send.
    Send {
        device: String,
        label: String,
        events: Vec<Value>,
        expect: Expect,
    },
    /// Sign with a key that is not the device's (a forger on the network).
    Forge {
        device: String,
        label: String,
        events: Vec<Value>,
        expect: Expect,
    },
    /// Resend the exact bytes of an earlier envelope.
    ReplayBytes {
        device: String,
        label: String,
        of: String,
        expect: Expect,
    },
    /// Sign new events with the device's key but an already used sequence number.
    ReuseSeq {
        device: String,
        label: String,
        seq: u64,
        events: Vec<Value>,
        expect: Expect,
    },
    Revoke {
        device: String,
    },
    /// Drop the device's connection; it keeps queueing.
    Offline {
        device: String,
    },
    /// Reconnect; `held` envelopes must still be waiting for receipts at that moment.
    Online {
        device: String,
        held: usize,
    },
    /// Wait for the receipts of everything sent so far by online devices.
    Barrier,
}

/// How a verification must come out.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictExpectation {
    pub label: String,
    pub code: String,
    pub verdict: &'static str,
    pub dispensable: Option<bool>,
    /// For genuine packs: the lot and expiry (YYMMDD) the answer must name.
    pub product: Option<(String, String, String, String)>,
}

impl VerdictExpectation {
    /// Compares with an answer; `Err` says how they differ.
    pub fn check(&self, v: &Verification) -> Result<(), String> {
        if v.verdict != self.verdict {
            let reasons: Vec<&str> = v.reasons.iter().map(|r| r.code.as_str()).collect();
            return Err(format!(
                "expected {}, got {} (reasons {reasons:?})",
                self.verdict, v.verdict
            ));
        }
        if let Some(d) = self.dispensable.filter(|d| *d != v.dispensable) {
            return Err(format!("expected dispensable={d}, got {}", v.dispensable));
        }
        if let Some((gtin, serial, lot, expiry)) = &self.product {
            let p = v.product.clone().unwrap_or_default();
            let iso = Expiry::parse(expiry).map(|e| e.to_iso(2000)).ok();
            let expiry_ok = p.expiry.as_deref() == Some(expiry.as_str())
                || p.expiry.is_some() && p.expiry == iso;
            if p.gtin.as_deref() != Some(gtin)
                || p.serial.as_deref() != Some(serial)
                || p.lot.as_deref() != Some(lot)
                || !expiry_ok
            {
                return Err(format!(
                    "expected product {gtin}/{serial} lot {lot} expiry {expiry}, got {p:?}"
                ));
            }
        }
        Ok(())
    }
}

/// A genuine pack.
#[derive(Clone, Debug)]
pub struct Pack {
    pub sgtin: Sgtin,
    pub epc: String,
    pub case: usize,
    pub pharmacy: usize,
    pub dispensed: bool,
}

/// The whole scenario.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Prefix of every id this run creates, so runs never collide on one server.
    pub tag: String,
    pub orgs: Vec<OrgSpec>,
    pub devices: Vec<DeviceSpec>,
    pub steps: Vec<Step>,
    pub verdicts: Vec<VerdictExpectation>,
    pub packs: Vec<Pack>,
    pub gtin: Gtin,
    pub lot: Lot,
    pub expiry: Expiry,
}

/// Company prefix length used throughout (GS1 prefixes are 6 to 12 digits).
const CP_LEN: usize = 7;
/// Packs per case, at most.
const CASE_SIZE: usize = 10;
/// Most events per envelope (the protocol allows 100).
const EVENTS_PER_ENVELOPE: usize = 50;
/// Simulated time between consecutive events.
const TICK_MS: i64 = 100;

/// splitmix64: a tiny deterministic generator, enough to derive ids from a seed.
fn mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d4_9bb1_3311_10eb);
    z ^ (z >> 31)
}

/// Appends the mod-10 check digit.
pub fn with_check_digit(body: &str) -> String {
    // `body` is built from digits only here, so a check digit always exists.
    let c = gs1::check_digit(body).unwrap_or('0');
    format!("{body}{c}")
}

/// A party's GS1 company prefix and the identifiers built from it.
struct Ids {
    company: String,
}

impl Ids {
    fn gln(&self, location: u32) -> String {
        with_check_digit(&format!("{}{:05}", self.company, location))
    }
    fn sgln(&self, location: u32) -> String {
        format!("urn:epc:id:sgln:{}.{:05}.0", self.company, location)
    }
    fn pgln(&self) -> String {
        format!("urn:epc:id:pgln:{}.00000", self.company)
    }
    /// The GTIN-14 of the party's one product.
    fn gtin(&self) -> String {
        with_check_digit(&format!("0{}10001", self.company))
    }
}

/// Simulated event clock: strictly increasing, always in the past.
struct Clock(i64);

impl Clock {
    fn next(&mut self) -> String {
        self.0 += TICK_MS;
        epcis::format_time(self.0)
    }
}

/// The run's tag and the company prefixes of everyone in it, drawn from the seed.
struct Parties {
    tag: String,
    mfr: Ids,
    whs: Ids,
    pha: Ids,
    rogue: Ids,
    nobody: Ids,
}

impl Parties {
    fn draw(seed: u64) -> Parties {
        let mut rng = seed;
        let tag = format!("s{:06x}", mix(&mut rng) & 0xff_ffff);
        let mut company = |base: u64| -> Ids {
            Ids {
                company: format!("{:07}", base + mix(&mut rng) % 1_000_000),
            }
        };
        let (mfr, whs, pha, rogue, nobody) = (
            company(3_000_000),
            company(4_000_000),
            company(5_000_000),
            company(6_000_000),
            company(9_000_000),
        );
        Parties {
            tag,
            mfr,
            whs,
            pha,
            rogue,
            nobody,
        }
    }

    /// An id of this run: organizations and devices.
    fn org(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.tag)
    }
    fn ph_org(&self, k: usize) -> String {
        self.org(&format!("ph{}", k + 1))
    }
    fn ph_dev(&self, k: usize) -> String {
        format!("{}-counter", self.ph_org(k))
    }
    fn revoked_dev(&self) -> String {
        format!("{}-old", self.ph_org(0))
    }
    fn ph_at(&self, k: usize) -> String {
        self.pha.sgln(k as u32 + 1)
    }
    fn ph_party(&self, k: usize) -> String {
        format!("urn:epc:id:pgln:{}.{:05}", self.pha.company, k + 1)
    }
}

/// The batch every genuine pack belongs to: Acme's GTIN, one lot, one expiry.
struct Batch {
    gtin: Gtin,
    lot: Lot,
    expiry: Expiry,
    /// The expiry as EPCIS carries it, `YYYY-MM-DD`.
    expiry_iso: String,
    /// The expiry's year and month.
    year: i64,
    month: u32,
}

impl Batch {
    fn new(p: &Parties, now_ms: i64) -> Result<Batch, String> {
        let gtin = Gtin::parse(&p.mfr.gtin()).map_err(|e| e.to_string())?;
        let lot =
            Lot::parse(&format!("L{}", &p.tag[1..]).to_uppercase()).map_err(|e| e.to_string())?;
        // Expiry about two years ahead, on the 28th (valid in every month).
        let (year, month, _) = gs1::civil_from_days(now_ms.div_euclid(86_400_000) + 730);
        let expiry_iso = u16::try_from(year)
            .ok()
            .and_then(|y| CalendarDate::new(y, month as u8, 28))
            .ok_or_else(|| format!("no calendar date in year {year}"))?
            .to_string();
        let expiry =
            Expiry::parse(&format!("{:02}{month:02}28", year % 100)).map_err(|e| e.to_string())?;
        Ok(Batch {
            gtin,
            lot,
            expiry,
            expiry_iso,
            year,
            month,
        })
    }

    fn sgtin(&self, serial: &str) -> Result<Sgtin, String> {
        Ok(Sgtin {
            gtin: self.gtin.clone(),
            serial: Serial::parse(serial).map_err(|e| e.to_string())?,
        })
    }
}

/// The genuine packs, the cases they are packed in and the pallet the cases go on.
struct Stock {
    packs: Vec<Pack>,
    case_ids: Vec<String>,
    pallet: String,
}

impl Stock {
    /// Packs into cases, cases onto one pallet, cases to pharmacies round-robin; half of each
    /// pharmacy's stock is dispensed, the rest stays on the shelf.
    fn new(cfg: &PlanConfig, p: &Parties, batch: &Batch) -> Result<Stock, String> {
        let cases = cfg.pharmacies.max(cfg.packs.div_ceil(CASE_SIZE));
        let mut packs = Vec::with_capacity(cfg.packs);
        for i in 0..cfg.packs {
            let s = batch.sgtin(&format!("{}{i:05}", p.tag.to_uppercase()))?;
            let epc = s.to_epc_urn(CP_LEN).map_err(|e| e.to_string())?;
            let case = i % cases;
            packs.push(Pack {
                sgtin: s,
                epc,
                case,
                pharmacy: case % cfg.pharmacies,
                dispensed: false,
            });
        }
        let sscc = |ext: u32, n: usize| -> Result<String, String> {
            let body = format!("{ext}{}{:09}", p.mfr.company, n);
            Sscc::parse(&with_check_digit(&body))
                .and_then(|s| s.to_epc_urn(CP_LEN))
                .map_err(|e| e.to_string())
        };
        let case_ids: Vec<String> = (0..cases)
            .map(|c| sscc(0, c + 1))
            .collect::<Result<_, _>>()?;
        let pallet = sscc(1, 1)?;
        let mut on_shelf: Vec<Vec<usize>> = vec![Vec::new(); cfg.pharmacies];
        for (i, p) in packs.iter().enumerate() {
            on_shelf[p.pharmacy].push(i);
        }
        for shelf in &on_shelf {
            for &i in shelf.iter().take(shelf.len() / 2) {
                packs[i].dispensed = true;
            }
        }
        Ok(Stock {
            packs,
            case_ids,
            pallet,
        })
    }

    fn cases(&self) -> usize {
        self.case_ids.len()
    }

    /// The `n`th pack still on a shelf (not dispensed), counting round.
    fn on_shelf(&self, n: usize) -> usize {
        let shelf: Vec<usize> = (0..self.packs.len())
            .filter(|&i| !self.packs[i].dispensed)
            .collect();
        shelf[n % shelf.len()]
    }

    /// The EPCs of the packs in case `c`.
    fn members(&self, c: usize) -> Vec<String> {
        self.packs
            .iter()
            .filter(|p| p.case == c)
            .map(|p| p.epc.clone())
            .collect()
    }

    /// The cases shipped to pharmacy `k`.
    fn cases_of(&self, k: usize, pharmacies: usize) -> Vec<String> {
        (0..self.cases())
            .filter(|c| c % pharmacies == k)
            .map(|c| self.case_ids[c].clone())
            .collect()
    }
}

impl Plan {
    /// Builds the scenario for `cfg`, with event times ending before `now_ms`.
    pub fn build(cfg: &PlanConfig, now_ms: i64) -> Result<Plan, String> {
        if cfg.pharmacies == 0 || cfg.packs < cfg.pharmacies {
            return Err(format!(
                "need at least one pharmacy and at least one pack per pharmacy (got {} packs, {} pharmacies)",
                cfg.packs, cfg.pharmacies
            ));
        }
        let p = Parties::draw(cfg.seed);
        let batch = Batch::new(&p, now_ms)?;
        let (orgs, devices) = participants(cfg, &p);
        let stock = Stock::new(cfg, &p, &batch)?;
        let mut s = Script {
            cfg,
            p: &p,
            batch: &batch,
            stock: &stock,
            clock: Clock(now_ms - 12 * 3_600_000),
            steps: Vec::new(),
        };
        s.commission();
        let mut unknown = s.counterfeit()?;
        s.palletise_and_ship();
        s.wholesaler_receives();
        let (offline, held) = s.pharmacies_receive();
        let last_dispense = s.dispense(offline, held);
        s.attacks(last_dispense);
        let steps = s.steps;
        let verdicts = verdicts(cfg, &p, &batch, &stock, &mut unknown)?;
        Ok(Plan {
            tag: p.tag,
            orgs,
            devices,
            steps,
            verdicts,
            packs: stock.packs,
            gtin: batch.gtin,
            lot: batch.lot,
            expiry: batch.expiry,
        })
    }
}

/// The organizations with their sites, and the devices that scan for them.
fn participants(cfg: &PlanConfig, p: &Parties) -> (Vec<OrgSpec>, Vec<DeviceSpec>) {
    let tag = &p.tag;
    let site = |ids: &Ids, location: u32, name: &str, lat_lon: (f64, f64)| SiteSpec {
        gln: ids.gln(location),
        name: name.into(),
        lat_lon,
    };
    let device = |id: String, org: String, ids: &Ids, location: u32| DeviceSpec {
        id,
        org,
        site_gln: ids.gln(location),
    };
    let mut orgs = vec![
        OrgSpec {
            id: p.org("mfr"),
            name: format!("Acme Pharma ({tag})"),
            role: Role::Manufacturer,
            prefix: Some(p.mfr.company.clone()),
            sites: vec![site(&p.mfr, 1, "Acme packaging plant", (50.11, 8.68))],
        },
        OrgSpec {
            id: p.org("whs"),
            name: format!("Central Wholesale ({tag})"),
            role: Role::Wholesaler,
            prefix: None,
            sites: vec![site(&p.whs, 1, "Central Wholesale DC", (51.23, 6.78))],
        },
    ];
    let mut devices = vec![
        device(p.org("mfr-line1"), p.org("mfr"), &p.mfr, 1),
        device(p.org("whs-dock1"), p.org("whs"), &p.whs, 1),
    ];
    for k in 0..cfg.pharmacies {
        let id = p.ph_org(k);
        let lat_lon = (48.0 + k as f64 * 0.01, 11.0 + k as f64 * 0.01);
        orgs.push(OrgSpec {
            id: id.clone(),
            name: format!("Pharmacy {} ({tag})", k + 1),
            role: Role::Pharmacy,
            prefix: None,
            sites: vec![site(
                &p.pha,
                k as u32 + 1,
                &format!("Pharmacy {}", k + 1),
                lat_lon,
            )],
        });
        devices.push(device(format!("{id}-counter"), id, &p.pha, k as u32 + 1));
    }
    if cfg.inject.counterfeit {
        orgs.push(OrgSpec {
            id: p.org("rogue"),
            name: format!("Rogue Labs ({tag})"),
            role: Role::Manufacturer,
            prefix: Some(p.rogue.company.clone()),
            sites: vec![site(&p.rogue, 1, "Rogue Labs", (0.0, 0.0))],
        });
        devices.push(device(p.org("rogue-line1"), p.org("rogue"), &p.rogue, 1));
    }
    if cfg.inject.revoked {
        devices.push(device(p.revoked_dev(), p.ph_org(0), &p.pha, 1));
    }
    (orgs, devices)
}

/// The steps of the scenario, written in the order they happen, on one event clock.
struct Script<'a> {
    cfg: &'a PlanConfig,
    p: &'a Parties,
    batch: &'a Batch,
    stock: &'a Stock,
    clock: Clock,
    steps: Vec<Step>,
}

impl Script<'_> {
    fn send(&mut self, device: &str, label: String, events: Vec<Value>, expect: Expect) {
        self.steps.push(Step::Send {
            device: device.into(),
            label,
            events,
            expect,
        });
    }

    /// Sends `events` in envelopes of at most [`EVENTS_PER_ENVELOPE`], all accepted.
    fn send_chunks(&mut self, device: &str, label: impl Fn(usize) -> String, events: &[Value]) {
        for (n, chunk) in events.chunks(EVENTS_PER_ENVELOPE).enumerate() {
            self.send(device, label(n), chunk.to_vec(), Expect::Accepted);
        }
    }

    fn phase(&mut self, what: String) {
        self.steps.push(Step::Phase(what));
    }

    fn mfr_dev(&self) -> String {
        self.p.org("mfr-line1")
    }

    fn whs_dev(&self) -> String {
        self.p.org("whs-dock1")
    }

    /// A commissioning event at `at` with the batch's lot (or `lot`) and expiry.
    fn commissioning(&mut self, epcs: &[String], at: &str, lot: Option<&str>) -> Value {
        let lot = lot.unwrap_or(self.batch.lot.as_str());
        events::commissioning(
            &self.clock.next(),
            epcs,
            Where::Site(at),
            lot,
            &self.batch.expiry_iso,
        )
    }

    /// Acme's line commissions every pack, a case's worth per event.
    fn commission(&mut self) {
        let pr = self.batch;
        self.phase(format!(
            "commissioning {} packs of GTIN {}, lot {}, expiry {}",
            self.cfg.packs, pr.gtin, pr.lot, pr.expiry_iso
        ));
        let (at, stock) = (self.p.mfr.sgln(1), self.stock);
        let events: Vec<Value> = (0..stock.cases())
            .map(|c| self.commissioning(&stock.members(c), &at, None))
            .collect();
        self.send_chunks(
            &self.mfr_dev(),
            |n| format!("commission #{}", n + 1),
            &events,
        );
        self.steps.push(Step::Barrier);
    }

    /// A rogue manufacturer commissions under Acme's GTIN, and Acme's own line commissions
    /// an existing serial again (a cloned label run). Returns the serials no one commissioned.
    fn counterfeit(&mut self) -> Result<Vec<Sgtin>, String> {
        if !self.cfg.inject.counterfeit {
            return Ok(Vec::new());
        }
        self.phase("counterfeiters: a foreign brand and a cloned serial".into());
        let fake = self
            .batch
            .sgtin(&format!("{}X0001", self.p.tag.to_uppercase()))?;
        let epc = fake.to_epc_urn(CP_LEN).map_err(|e| e.to_string())?;
        let rogue_at = self.p.rogue.sgln(1);
        let e = self.commissioning(&[epc], &rogue_at, None);
        self.send(
            &self.p.org("rogue-line1"),
            "rogue commissions Acme's GTIN".into(),
            vec![e],
            Expect::Rejected("NOT_BRAND_OWNER"),
        );
        let (first, mfr_at) = (self.stock.packs[0].epc.clone(), self.p.mfr.sgln(1));
        let e = self.commissioning(&[first], &mfr_at, Some("CLONE1"));
        self.send(
            &self.mfr_dev(),
            "serial commissioned twice".into(),
            vec![e],
            Expect::Rejected("SERIAL_ALREADY_COMMISSIONED"),
        );
        self.steps.push(Step::Barrier);
        Ok(vec![fake])
    }

    /// The pallet's `shipping` or `receiving` at `at`, from Acme to the wholesaler under one
    /// despatch advice.
    fn pallet_transfer(&mut self, step: &str, at: &str) -> Value {
        let p = self.p;
        let (mfr_at, whs_at) = (p.mfr.sgln(1), p.whs.sgln(1));
        events::transfer(
            &self.clock.next(),
            step,
            std::slice::from_ref(&self.stock.pallet),
            at,
            (&p.mfr.pgln(), &mfr_at),
            (&p.whs.pgln(), &whs_at),
            &format!("urn:epcglobal:cbv:bt:{}:{}-1", p.mfr.gln(1), p.tag),
        )
    }

    /// Acme packs the cases, puts them on the pallet and ships it to the wholesaler.
    fn palletise_and_ship(&mut self) {
        let (p, stock) = (self.p, self.stock);
        self.phase(format!(
            "packing {} cases onto a pallet and shipping it",
            stock.cases()
        ));
        let mfr_at = p.mfr.sgln(1);
        let packing: Vec<Value> = (0..stock.cases())
            .map(|c| {
                let time = self.clock.next();
                events::aggregation(&time, "ADD", &stock.case_ids[c], &stock.members(c), &mfr_at)
            })
            .collect();
        self.send_chunks(
            &self.mfr_dev(),
            |n| format!("pack cases #{}", n + 1),
            &packing,
        );
        let palletise = events::aggregation(
            &self.clock.next(),
            "ADD",
            &stock.pallet,
            &stock.case_ids,
            &mfr_at,
        );
        let ship = self.pallet_transfer("shipping", &mfr_at);
        self.send(
            &self.mfr_dev(),
            "palletise and ship".into(),
            vec![palletise, ship],
            Expect::Accepted,
        );
        self.steps.push(Step::Barrier);
    }

    /// The wholesaler receives the pallet and unpacks it.
    fn wholesaler_receives(&mut self) {
        let (p, stock) = (self.p, self.stock);
        self.phase("wholesaler receives and unpacks the pallet".into());
        let whs_at = p.whs.sgln(1);
        let receive = self.pallet_transfer("receiving", &whs_at);
        let unpack = events::aggregation(
            &self.clock.next(),
            "DELETE",
            &stock.pallet,
            &stock.case_ids,
            &whs_at,
        );
        self.send(
            &self.whs_dev(),
            "receive and unpack pallet".into(),
            vec![receive, unpack],
            Expect::Accepted,
        );
        self.steps.push(Step::Barrier);
    }

    /// The wholesaler's shipment to each pharmacy, and each pharmacy's receiving and
    /// unpacking of its cases, in the order they happen.
    fn case_events(&mut self) -> (Vec<Value>, Vec<Vec<Value>>) {
        let (cfg, p, stock) = (self.cfg, self.p, self.stock);
        let whs_at = p.whs.sgln(1);
        let advice =
            |k: usize| format!("urn:epcglobal:cbv:bt:{}:{}-{}", p.whs.gln(1), p.tag, k + 2);
        // Pharmacy `k`'s cases, shipped or received at `at`.
        let transfer = |clock: &mut Clock, k: usize, step: &str, at: &str| {
            events::transfer(
                &clock.next(),
                step,
                &stock.cases_of(k, cfg.pharmacies),
                at,
                (&p.whs.pgln(), &whs_at),
                (&p.ph_party(k), &p.ph_at(k)),
                &advice(k),
            )
        };
        let ship_events: Vec<Value> = (0..cfg.pharmacies)
            .map(|k| transfer(&mut self.clock, k, "shipping", &whs_at))
            .collect();
        let mut receive_events = Vec::new();
        for k in 0..cfg.pharmacies {
            let mut evs = vec![transfer(&mut self.clock, k, "receiving", &p.ph_at(k))];
            for c in (0..stock.cases()).filter(|c| c % cfg.pharmacies == k) {
                let time = self.clock.next();
                let case = &stock.case_ids[c];
                evs.push(events::aggregation(
                    &time,
                    "DELETE",
                    case,
                    &stock.members(c),
                    &p.ph_at(k),
                ));
            }
            receive_events.push(evs);
        }
        (ship_events, receive_events)
    }

    /// Per pharmacy: the wholesaler's shipment, then the pharmacy's receipt and unpacking.
    /// Returns the pharmacy that goes offline, if any, and the envelopes it queues meanwhile.
    fn pharmacies_receive(&mut self) -> (Option<usize>, usize) {
        let (cfg, p) = (self.cfg, self.p);
        let (ship_events, receive_events) = self.case_events();
        let offline = cfg.inject.offline.then_some(cfg.pharmacies - 1);
        if cfg.inject.out_of_order {
            self.phase(
                "out of order: pharmacy 1 reports receiving before the wholesaler reports shipping"
                    .into(),
            );
            let early = receive_events[0].clone();
            self.send(
                &p.ph_dev(0),
                "pharmacy 1 receives (early)".into(),
                early,
                Expect::Accepted,
            );
            self.steps.push(Step::Barrier);
        }
        self.phase(format!(
            "wholesaler ships cases to {} pharmacies",
            cfg.pharmacies
        ));
        self.send_chunks(&self.whs_dev(), |_| "ship cases".into(), &ship_events);
        self.steps.push(Step::Barrier);
        if let Some(k) = offline {
            self.phase(format!(
                "pharmacy {} goes offline and keeps scanning",
                k + 1
            ));
            self.steps.push(Step::Offline {
                device: p.ph_dev(k),
            });
        }
        self.phase("pharmacies receive and unpack".into());
        let mut held = 0;
        for (k, evs) in receive_events.iter().enumerate() {
            if k == 0 && cfg.inject.out_of_order {
                continue;
            }
            self.send_chunks(
                &p.ph_dev(k),
                |_| format!("pharmacy {} receives", k + 1),
                evs,
            );
            if Some(k) == offline {
                held += evs.chunks(EVENTS_PER_ENVELOPE).count();
            }
        }
        self.steps.push(Step::Barrier);
        (offline, held)
    }

    /// A dispensing event for `epc` at pharmacy `k`.
    fn dispensing(&mut self, epc: &str, k: usize) -> Value {
        events::object_event(
            &self.clock.next(),
            "OBSERVE",
            "dispensing",
            "dispensed",
            &[epc.to_owned()],
            &self.p.ph_at(k),
        )
    }

    /// The pharmacies dispense half their packs; the offline one reconnects afterwards and
    /// forwards what it queued. Returns the last dispense sent online (pharmacy, label).
    fn dispense(&mut self, offline: Option<usize>, mut held: usize) -> Option<(usize, String)> {
        let (p, stock) = (self.p, self.stock);
        self.phase(format!(
            "dispensing {} packs",
            stock.packs.iter().filter(|p| p.dispensed).count()
        ));
        let mut last_dispense = None;
        for (i, pack) in stock.packs.iter().enumerate().filter(|(_, p)| p.dispensed) {
            let k = pack.pharmacy;
            let e = self.dispensing(&pack.epc, k);
            let label = format!("dispense pack {i}");
            self.send(&p.ph_dev(k), label.clone(), vec![e], Expect::Accepted);
            if Some(k) == offline {
                held += 1;
            } else {
                last_dispense = Some((k, label));
            }
        }
        self.steps.push(Step::Barrier);
        if let Some(k) = offline {
            self.phase(format!(
                "pharmacy {} reconnects and forwards {held} queued envelopes",
                k + 1
            ));
            self.steps.push(Step::Online {
                device: p.ph_dev(k),
                held,
            });
            self.steps.push(Step::Barrier);
        }
        last_dispense
    }

    /// Attacks on packs still on the shelf: none of them may change a verdict.
    fn attacks(&mut self, last_dispense: Option<(usize, String)>) {
        let (cfg, p, stock) = (self.cfg, self.p, self.stock);
        let target = |n: usize| stock.on_shelf(n);
        if cfg.inject.forged {
            self.phase("a forger signs a dispensing event with its own key".into());
            let i = target(0);
            let k = stock.packs[i].pharmacy;
            let e = self.dispensing(&stock.packs[i].epc, k);
            self.steps.push(Step::Forge {
                device: p.ph_dev(k),
                label: format!("forged dispense of pack {i}"),
                events: vec![e],
                expect: Expect::Rejected("BAD_SIGNATURE"),
            });
        }
        if cfg.inject.replay {
            self.replays(last_dispense, target(1));
        }
        if cfg.inject.revoked {
            self.phase("a revoked scanner keeps sending".into());
            self.steps.push(Step::Revoke {
                device: p.revoked_dev(),
            });
            let i = target(2);
            let e = self.dispensing(&stock.packs[i].epc, 0);
            self.send(
                &p.revoked_dev(),
                format!("dispense of pack {i} by a revoked scanner"),
                vec![e],
                Expect::Rejected("DEVICE_REVOKED"),
            );
        }
        self.steps.push(Step::Barrier);
    }

    /// An old envelope resent byte for byte (answered `DUPLICATE`), and a new one, a dispense
    /// of pack `i`, reusing sequence number 1.
    fn replays(&mut self, last_dispense: Option<(usize, String)>, i: usize) {
        let (cfg, p, stock) = (self.cfg, self.p, self.stock);
        self.phase("replays: an old envelope resent, an old sequence number reused".into());
        let (k, of) = last_dispense.unwrap_or_else(|| {
            (
                1 % cfg.pharmacies,
                format!("pharmacy {} receives", 1 % cfg.pharmacies + 1),
            )
        });
        let k = if of.starts_with("dispense") {
            k
        } else {
            1 % cfg.pharmacies
        };
        self.steps.push(Step::ReplayBytes {
            device: p.ph_dev(k),
            label: format!("replay of {of}"),
            of,
            expect: Expect::Duplicate,
        });
        let kk = stock.packs[i].pharmacy;
        let e = self.dispensing(&stock.packs[i].epc, kk);
        self.steps.push(Step::ReuseSeq {
            device: p.ph_dev(kk),
            label: format!("dispense of pack {i} with sequence number 1"),
            seq: 1,
            events: vec![e],
            expect: Expect::Rejected("REPLAY"),
        });
    }
}

/// What a pharmacist's scan must say afterwards, in all four spellings of a code: every
/// genuine pack, and with counterfeits, serials never commissioned (`unknown` and one more),
/// a foreign product and Acme's codes with a wrong lot or expiry.
fn verdicts(
    cfg: &PlanConfig,
    p: &Parties,
    batch: &Batch,
    stock: &Stock,
    unknown: &mut Vec<Sgtin>,
) -> Result<Vec<VerdictExpectation>, String> {
    let Batch {
        gtin, lot, expiry, ..
    } = batch;
    let mut verdicts = Vec::new();
    for (i, pack) in stock.packs.iter().enumerate() {
        let code = spell(i, &pack.sgtin, lot, expiry);
        let (verdict, dispensable) = if pack.dispensed {
            ("ALREADY_DISPENSED", false)
        } else {
            ("AUTHENTIC", true)
        };
        verdicts.push(VerdictExpectation {
            label: format!("pack {i}"),
            code,
            verdict,
            dispensable: Some(dispensable),
            product: (!pack.dispensed).then(|| {
                (
                    gtin.to_string(),
                    pack.sgtin.serial.as_str().to_owned(),
                    lot.as_str().to_owned(),
                    expiry.as_str().to_owned(),
                )
            }),
        });
    }
    if cfg.inject.counterfeit {
        verdicts.extend(counterfeit_verdicts(p, batch, stock, unknown)?);
    }
    Ok(verdicts)
}

fn counterfeit_verdicts(
    p: &Parties,
    batch: &Batch,
    stock: &Stock,
    unknown: &mut Vec<Sgtin>,
) -> Result<Vec<VerdictExpectation>, String> {
    let Batch {
        lot,
        expiry,
        year: y,
        month: m,
        ..
    } = batch;
    let mut verdicts = Vec::new();
    let never = batch.sgtin(&format!("{}Z9999", p.tag.to_uppercase()))?;
    unknown.push(never);
    for (n, s) in unknown.iter().enumerate() {
        verdicts.push(VerdictExpectation {
            label: format!("never-commissioned serial {}", s.serial.as_str()),
            code: spell(n, s, lot, expiry),
            verdict: "UNKNOWN_SERIAL",
            dispensable: Some(false),
            product: None,
        });
    }
    let foreign = Sgtin {
        gtin: Gtin::parse(&p.nobody.gtin()).map_err(|e| e.to_string())?,
        serial: Serial::parse("FAKE0001").map_err(|e| e.to_string())?,
    };
    verdicts.push(VerdictExpectation {
        label: "unknown product".into(),
        code: foreign.to_digital_link("https://id.gs1.org", None, None),
        verdict: "UNKNOWN_PRODUCT",
        dispensable: Some(false),
        product: None,
    });
    let i = stock.on_shelf(3);
    let sgtin = &stock.packs[i].sgtin;
    let wrong_lot = Lot::parse("BADLOT").map_err(|e| e.to_string())?;
    verdicts.push(VerdictExpectation {
        label: format!("pack {i} with a mismatched lot"),
        code: sgtin.to_digital_link("https://id.gs1.org", Some(&wrong_lot), Some(expiry)),
        verdict: "BATCH_MISMATCH",
        dispensable: Some(false),
        product: None,
    });
    let wrong_expiry =
        Expiry::parse(&format!("{:02}{m:02}28", (y + 3) % 100)).map_err(|e| e.to_string())?;
    verdicts.push(VerdictExpectation {
        label: format!("pack {i} with a mismatched expiry"),
        code: sgtin.to_digital_link("https://id.gs1.org", Some(lot), Some(&wrong_expiry)),
        verdict: "EXPIRY_MISMATCH",
        dispensable: Some(false),
        product: None,
    });
    Ok(verdicts)
}

impl Plan {
    /// Envelopes the plan sends, and how many of them must be appended to the log.
    pub fn envelope_counts(&self) -> (usize, usize) {
        let mut sent = 0;
        let mut accepted = 0;
        for s in &self.steps {
            let expect = match s {
                Step::Send { expect, .. }
                | Step::Forge { expect, .. }
                | Step::ReplayBytes { expect, .. }
                | Step::ReuseSeq { expect, .. } => expect,
                _ => continue,
            };
            sent += 1;
            accepted += usize::from(*expect == Expect::Accepted);
        }
        (sent, accepted)
    }

    /// Every device id that sends something.
    pub fn senders(&self) -> BTreeSet<&str> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Send { device, .. }
                | Step::Forge { device, .. }
                | Step::ReplayBytes { device, .. }
                | Step::ReuseSeq { device, .. } => Some(device.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// One of the four ways a pack's code reaches the server, chosen by `n`.
fn spell(n: usize, s: &Sgtin, lot: &Lot, expiry: &Expiry) -> String {
    let code = ScannedCode {
        gtin: Some(s.gtin.clone()),
        serial: Some(s.serial.clone()),
        lot: Some(lot.clone()),
        expiry: Some(expiry.clone()),
        ..ScannedCode::default()
    };
    match n % 4 {
        0 => s.to_digital_link("https://id.gs1.org", Some(lot), Some(expiry)),
        1 => s
            .to_epc_urn(CP_LEN)
            .unwrap_or_else(|_| code.to_human_readable()),
        2 => code.to_human_readable(),
        _ => code.to_element_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Product, Reason};
    use rxledger_core::envelope;
    use rxledger_core::gs1::{EpcId, parse_code, parse_epc};
    use rxledger_core::keys::SigningKey;

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn plan(packs: usize, pharmacies: usize, inject: Injections) -> Plan {
        Plan::build(
            &PlanConfig {
                packs,
                pharmacies,
                seed: 42,
                inject,
            },
            NOW,
        )
        .unwrap()
    }

    fn sent_events(p: &Plan) -> Vec<(&str, &Value)> {
        p.steps
            .iter()
            .flat_map(|s| match s {
                Step::Send { device, events, .. }
                | Step::Forge { device, events, .. }
                | Step::ReuseSeq { device, events, .. } => {
                    events.iter().map(|e| (device.as_str(), e)).collect()
                }
                _ => vec![],
            })
            .collect()
    }

    #[test]
    fn every_event_is_valid_epcis_in_the_past_and_fits_an_envelope() {
        // Without out-of-order delivery, events are sent in the order they happened.
        let mut last = 0;
        for (_, e) in sent_events(&plan(30, 3, Injections::default())) {
            let t = epcis::parse_event(e).unwrap().event_time_ms;
            assert!(t > last, "event times strictly increase");
            last = t;
        }
        let p = plan(95, 4, Injections::all());
        let mut times = BTreeSet::new();
        let mut steps = std::collections::HashMap::new();
        for (device, e) in sent_events(&p) {
            let ev = epcis::parse_event(e).unwrap_or_else(|err| panic!("{err}: {e}"));
            ev.validate_time(NOW, 0).unwrap();
            assert!(times.insert(ev.event_time_ms), "event times are distinct");
            *steps.entry(ev.biz_step.unwrap().as_str()).or_insert(0usize) += 1;
            assert!(
                p.devices.iter().any(|d| d.id == device),
                "{device} is declared"
            );
        }
        for step in [
            "commissioning",
            "packing",
            "shipping",
            "receiving",
            "unpacking",
            "dispensing",
        ] {
            assert!(steps.contains_key(step), "{step} missing: {steps:?}");
        }
        // Every envelope is well under the server's 64 KiB limit and opens cleanly.
        let key = SigningKey::generate();
        for s in &p.steps {
            if let Step::Send { device, events, .. } = s {
                let body = envelope::Body {
                    v: 1,
                    device_id: device.clone(),
                    seq: 1,
                    sent_at: epcis::format_time(NOW),
                    events: events.clone(),
                };
                let bytes = envelope::seal(&key, &body);
                assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
                envelope::open(&bytes, device).unwrap();
            }
        }
    }

    #[test]
    fn commissioning_carries_lot_and_expiry_and_identifiers_check() {
        let p = plan(23, 2, Injections::default());
        let commissioned: Vec<&Value> = sent_events(&p)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e["bizStep"] == "commissioning")
            .collect();
        let mut serials = BTreeSet::new();
        for e in commissioned {
            let ev = epcis::parse_event(e).unwrap();
            assert_eq!(ev.lot.as_ref().unwrap(), &p.lot);
            assert!(ev.item_expiration.is_some());
            for epc in &ev.epcs {
                let EpcId::Sgtin(s) = epc else {
                    panic!("{epc:?}")
                };
                assert_eq!(s.gtin, p.gtin);
                assert!(
                    serials.insert(s.serial.as_str().to_owned()),
                    "unique serials"
                );
            }
        }
        assert_eq!(serials.len(), 23);
        for o in &p.orgs {
            for s in &o.sites {
                Gln::parse(&s.gln).unwrap();
            }
        }
        // Cases and the pallet are SSCCs with valid check digits (parse_epc checks them).
        let agg: Vec<&Value> = sent_events(&p)
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e["type"] == "AggregationEvent")
            .collect();
        for e in agg {
            assert!(matches!(
                parse_epc(e["parentID"].as_str().unwrap()).unwrap(),
                EpcId::Sscc(_)
            ));
        }
        // Shipping and receiving name both parties and both locations.
        for (_, e) in sent_events(&p) {
            if e["bizStep"] == "shipping" || e["bizStep"] == "receiving" {
                let ev = epcis::parse_event(e).unwrap();
                assert_eq!(ev.sources.len(), 2);
                assert_eq!(ev.destinations.len(), 2);
            }
        }
    }

    #[test]
    fn expectations_cover_every_injection() {
        let p = plan(12, 3, Injections::all());
        let mut codes = BTreeSet::new();
        let mut duplicates = 0;
        for s in &p.steps {
            match s {
                Step::Send { expect, .. }
                | Step::Forge { expect, .. }
                | Step::ReplayBytes { expect, .. }
                | Step::ReuseSeq { expect, .. } => match expect {
                    Expect::Rejected(c) => {
                        codes.insert(*c);
                    }
                    Expect::Duplicate => duplicates += 1,
                    Expect::Accepted => {}
                },
                _ => {}
            }
        }
        assert_eq!(
            codes,
            BTreeSet::from([
                "BAD_SIGNATURE",
                "DEVICE_REVOKED",
                "NOT_BRAND_OWNER",
                "REPLAY",
                "SERIAL_ALREADY_COMMISSIONED"
            ])
        );
        assert_eq!(duplicates, 1);
        let verdicts: BTreeSet<&str> = p.verdicts.iter().map(|v| v.verdict).collect();
        for v in [
            "AUTHENTIC",
            "ALREADY_DISPENSED",
            "UNKNOWN_SERIAL",
            "UNKNOWN_PRODUCT",
            "BATCH_MISMATCH",
            "EXPIRY_MISMATCH",
        ] {
            assert!(verdicts.contains(v), "{v}");
        }
        // The replayed envelope was sent before it is replayed.
        let labels: Vec<&str> = p
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Send { label, .. } => Some(label.as_str()),
                _ => None,
            })
            .collect();
        let Some(Step::ReplayBytes { of, .. }) = p
            .steps
            .iter()
            .find(|s| matches!(s, Step::ReplayBytes { .. }))
        else {
            panic!("no replay");
        };
        assert!(labels.contains(&of.as_str()), "{of}");
        // The offline device holds its receiving and dispensing envelopes.
        let Some(Step::Online { held, .. }) =
            p.steps.iter().find(|s| matches!(s, Step::Online { .. }))
        else {
            panic!("no offline period");
        };
        assert!(*held >= 2, "{held}");
        let (sent, accepted) = p.envelope_counts();
        assert!(sent > accepted && accepted > 0);
    }

    #[test]
    fn out_of_order_sends_receiving_before_shipping() {
        let p = plan(6, 2, Injections::parse("out-of-order").unwrap());
        let pos = |pred: &dyn Fn(&Step) -> bool| p.steps.iter().position(pred).unwrap();
        let receive = pos(&|s| matches!(s, Step::Send { label, .. } if label.contains("(early)")));
        let ship = pos(&|s| matches!(s, Step::Send { label, .. } if label == "ship cases"));
        assert!(receive < ship);
        assert!(
            p.steps[receive + 1..ship]
                .iter()
                .any(|s| matches!(s, Step::Barrier))
        );
    }

    #[test]
    fn verdict_codes_name_the_right_pack_in_every_spelling() {
        let p = plan(8, 2, Injections::default());
        for (i, v) in p.verdicts.iter().enumerate() {
            let code = parse_code(&v.code).unwrap_or_else(|e| panic!("{}: {e}", v.code));
            assert_eq!(code.sgtin().unwrap(), p.packs[i].sgtin, "{}", v.code);
            assert_eq!(v.verdict == "ALREADY_DISPENSED", p.packs[i].dispensed);
        }
        assert_eq!(p.packs.iter().filter(|x| x.dispensed).count(), 4);
    }

    #[test]
    fn seeds_make_runs_distinct_and_repeatable() {
        let a = plan(4, 2, Injections::default());
        let b = plan(4, 2, Injections::default());
        assert_eq!(a.tag, b.tag);
        assert_eq!(a.gtin, b.gtin);
        let c = Plan::build(
            &PlanConfig {
                packs: 4,
                pharmacies: 2,
                seed: 43,
                inject: Injections::default(),
            },
            NOW,
        )
        .unwrap();
        assert_ne!(a.tag, c.tag);
        assert_ne!(a.orgs[0].prefix, c.orgs[0].prefix);
        assert!(
            Plan::build(
                &PlanConfig {
                    packs: 1,
                    pharmacies: 2,
                    seed: 1,
                    inject: Injections::default()
                },
                NOW
            )
            .is_err()
        );
        assert!(Injections::parse("forged,bogus").is_err());
        assert_eq!(Injections::parse("all").unwrap(), Injections::all());
    }

    #[test]
    fn receipt_and_verdict_bookkeeping() {
        assert!(Expect::Accepted.check("ACCEPTED", None).is_ok());
        assert!(Expect::Duplicate.check("ACCEPTED", None).is_err());
        assert!(
            Expect::Rejected("REPLAY")
                .check("REJECTED", Some("REPLAY"))
                .is_ok()
        );
        let e = Expect::Rejected("REPLAY")
            .check("REJECTED", Some("BAD_SIGNATURE"))
            .unwrap_err();
        assert!(
            e.contains("expected REJECTED REPLAY, got REJECTED BAD_SIGNATURE"),
            "{e}"
        );

        let p = plan(2, 1, Injections::default());
        let v = p
            .verdicts
            .iter()
            .find(|v| v.verdict == "AUTHENTIC")
            .unwrap();
        let (gtin, serial, lot, expiry) = v.product.clone().unwrap();
        let mut answer = Verification {
            verdict: "AUTHENTIC".into(),
            dispensable: true,
            reasons: vec![],
            product: Some(Product {
                gtin: Some(gtin),
                serial: Some(serial),
                lot: Some(lot),
                expiry: Some(expiry.clone()),
            }),
        };
        assert_eq!(v.check(&answer), Ok(()));
        // The expiry may also come back as an ISO date.
        answer.product.as_mut().unwrap().expiry =
            Some(Expiry::parse(&expiry).unwrap().to_iso(2000));
        assert_eq!(v.check(&answer), Ok(()));
        answer.product.as_mut().unwrap().lot = Some("OTHER".into());
        assert!(v.check(&answer).is_err());
        answer.verdict = "RECALLED".into();
        answer.reasons = vec![Reason {
            code: "RECALLED".into(),
            message: None,
        }];
        assert!(v.check(&answer).unwrap_err().contains("got RECALLED"));
    }
}
