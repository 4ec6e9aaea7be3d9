//! One lot's life, as the real world would write it to the ledger, and the verdicts a
//! pharmacist gets at the end.
//!
//! Acme Pharma commissions 1,000 packs of lot L1, packs them into 10 cases and one pallet, and
//! ships the pallet to Euro Wholesale, which unpacks it and ships the cases to three
//! pharmacies. The pharmacies dispense. Along the way: a case is stolen at the wholesaler, a
//! clone of a dispensed serial is dispensed again elsewhere, a fake serial is scanned, the lot
//! is recalled midway, an old pack of another lot expires, and one pharmacy's receiving event
//! reaches the ledger before the wholesaler's shipping event.
//!
//! Every event is EPCIS 2.0 JSON run through `epcis::parse_event`; a small in-memory "store"
//! selects each pack's events the way the real store does (the pack, its containers up to
//! `MAX_NESTING` levels via `containers_of`, its classes via `classes_of`).

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Instant;

use rxledger_core::epcis::{format_time, parse_event, parse_time};
use rxledger_core::gs1::{EpcId, Gln, Gtin, Lot, Sgtin, Sscc, check_digit, parse_code};
use rxledger_core::pack::{
    DeriveOptions, LoggedEvent, MAX_NESTING, PackState, PackStatus, Suspicion, classes_of,
    containers_of, derive_with, named_ids,
};
use rxledger_core::verdict::{
    Role, VerdictCode, Viewer, dispense_event, recall_lot_event, stolen_event, verdict,
};
use serde_json::{Value, json};

const GTIN: &str = "09506000134352";
const PREFIX_LEN: usize = 7;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

const ACME: &str = "acme-pharma";
const WHOLESALER: &str = "euro-wholesale";
const PHARMACIES: [&str; 3] = ["pharmacy-1", "pharmacy-2", "pharmacy-3"];

fn with_cd(body: &str) -> String {
    format!("{body}{}", check_digit(body).unwrap())
}

/// Sites: 1 Acme (Paris), 2 Euro Wholesale (Lyon), 3..=5 the pharmacies (Marseille, Nice,
/// Toulouse).
fn gln(n: u32) -> Gln {
    Gln::parse(&with_cd(&format!("9506000{n:05}"))).unwrap()
}

fn site_of(org: &str) -> u32 {
    match org {
        ACME => 1,
        WHOLESALER => 2,
        _ => 3 + PHARMACIES.iter().position(|p| *p == org).unwrap() as u32,
    }
}

fn sscc(n: u32) -> Sscc {
    Sscc::parse(&with_cd(&format!("09506000{n:09}"))).unwrap()
}

fn case_uri(case: u32) -> String {
    format!("https://id.gs1.org/00/{}", sscc(case + 1))
}

fn pallet_uri() -> String {
    format!("https://id.gs1.org/00/{}", sscc(1000))
}

fn serial(i: usize) -> String {
    format!("S{i:04}")
}

fn pack_uri(serial: &str) -> String {
    format!("https://id.gs1.org/01/{GTIN}/21/{serial}")
}

fn sgtin(serial: &str) -> Sgtin {
    match rxledger_core::gs1::parse_epc(&pack_uri(serial)).unwrap() {
        EpcId::Sgtin(s) => s,
        other => panic!("{other:?}"),
    }
}

fn base(kind: &str, action: &str, time_ms: i64) -> Value {
    json!({
        "type": kind,
        "action": action,
        "eventTime": format_time(time_ms),
        "eventTimeZoneOffset": "+01:00",
    })
}

fn commission(serials: &[String], time_ms: i64, lot: &str, expiry: &str) -> Value {
    let mut e = base("ObjectEvent", "ADD", time_ms);
    e["epcList"] = json!(serials.iter().map(|s| pack_uri(s)).collect::<Vec<_>>());
    e["bizStep"] = json!("commissioning");
    e["disposition"] = json!("active");
    e["readPoint"] = json!({"id": format!("urn:epc:id:sgln:9506000.00001.0")});
    e["ilmd"] = json!({"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry});
    e
}

fn aggregate(action: &str, parent: &str, children: &[String], time_ms: i64) -> Value {
    let mut e = base("AggregationEvent", action, time_ms);
    e["parentID"] = json!(parent);
    e["childEPCs"] = json!(children);
    e["bizStep"] = json!(if action == "DELETE" {
        "unpacking"
    } else {
        "packing"
    });
    e
}

fn ship(epcs: &[String], time_ms: i64, from: u32, to: u32) -> Value {
    let mut e = base("ObjectEvent", "OBSERVE", time_ms);
    e["epcList"] = json!(epcs);
    e["bizStep"] = json!("shipping");
    e["disposition"] = json!("in_transit");
    e["readPoint"] = json!({"id": format!("urn:epc:id:sgln:9506000.{from:05}.0")});
    e["bizTransactionList"] = json!([{"type": "desadv", "bizTransaction": format!("urn:epcglobal:cbv:bt:{}:{time_ms}", gln(from))}]);
    e["sourceList"] = json!([
        {"type": "owning_party", "source": format!("urn:epc:id:pgln:9506000.{from:05}")},
        {"type": "location", "source": format!("urn:epc:id:sgln:9506000.{from:05}.0")},
    ]);
    e["destinationList"] = json!([
        {"type": "owning_party", "destination": format!("urn:epc:id:pgln:9506000.{to:05}")},
        {"type": "location", "destination": format!("urn:epc:id:sgln:9506000.{to:05}.0")},
    ]);
    e
}

fn receive(epcs: &[String], time_ms: i64, at: u32) -> Value {
    let mut e = base("ObjectEvent", "OBSERVE", time_ms);
    e["epcList"] = json!(epcs);
    e["bizStep"] = json!("receiving");
    e["disposition"] = json!("active");
    e["bizLocation"] = json!({"id": format!("urn:epc:id:sgln:9506000.{at:05}.0")});
    e
}

/// The ledger, plus the index the store keeps (identifier → entries naming it).
#[derive(Default, Clone)]
struct Ledger {
    entries: Vec<LoggedEvent>,
    by_id: HashMap<EpcId, Vec<usize>>,
}

impl Ledger {
    fn append(&mut self, json: &Value, org: &str) -> u64 {
        let event = parse_event(json).unwrap_or_else(|e| panic!("{e}: {json}"));
        let index = self.entries.len() as u64;
        for id in named_ids(&event) {
            let list = self.by_id.entry(id.clone()).or_default();
            if list.last() != Some(&(index as usize)) {
                list.push(index as usize);
            }
        }
        self.entries.push(LoggedEvent {
            index,
            event,
            org: org.to_owned(),
            site: Some(gln(site_of(org)).to_string()),
        });
        index
    }

    fn naming(&self, id: &EpcId) -> Vec<LoggedEvent> {
        self.by_id
            .get(id)
            .into_iter()
            .flatten()
            .map(|&i| self.entries[i].clone())
            .collect()
    }

    /// What the store hands `derive` for one pack.
    fn events_for(&self, pack: &Sgtin) -> Vec<LoggedEvent> {
        let mut seen: Vec<EpcId> = vec![EpcId::Sgtin(pack.clone())];
        let mut frontier = seen.clone();
        let mut picked = BTreeSet::new();
        for _ in 0..=MAX_NESTING {
            let mut next = Vec::new();
            for id in &frontier {
                let events = self.naming(id);
                picked.extend(events.iter().map(|e| e.index as usize));
                for c in containers_of(id, &events) {
                    if !seen.contains(&c) {
                        seen.push(c.clone());
                        next.push(c);
                    }
                }
            }
            frontier = next;
        }
        let own: Vec<LoggedEvent> = picked.iter().map(|&i| self.entries[i].clone()).collect();
        for class in classes_of(pack, &own) {
            picked.extend(self.by_id.get(&class).into_iter().flatten().copied());
        }
        picked.iter().map(|&i| self.entries[i].clone()).collect()
    }
}

#[derive(Clone)]
struct World {
    ledger: Ledger,
    directory: HashMap<String, (String, Option<(f64, f64)>)>,
    now: i64,
    stolen_case_entry: u64,
    recall_entry: u64,
    clone_entries: (u64, u64),
}

impl World {
    fn state(&self, serial: &str) -> Option<PackState> {
        let events = self.ledger.events_for(&sgtin(serial));
        if events.is_empty() {
            return None;
        }
        let opts = DeriveOptions {
            directory: &self.directory,
            ..DeriveOptions::default()
        };
        Some(derive_with(&sgtin(serial), &events, &opts))
    }

    fn scan(
        &self,
        serial: &str,
        lot: &str,
        expiry: &str,
        viewer: Viewer<'_>,
    ) -> (rxledger_core::verdict::Verdict, Option<PackState>) {
        let code = parse_code(&format!("]d201{GTIN}17{expiry}10{lot}\u{1d}21{serial}")).unwrap();
        let state = self.state(serial);
        (
            verdict(&code, state.as_ref(), true, self.now, viewer),
            state,
        )
    }
}

/// Built once and shared by the tests (each test only reads it, or clones it).
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(build_world)
}

fn build_world() -> World {
    let t0 = parse_time("2025-03-03T06:00:00Z").unwrap();
    let mut l = Ledger::default();
    let serials: Vec<String> = (0..1000).map(serial).collect();
    let packs_of = |case: u32| -> Vec<String> {
        serials[case as usize * 100..(case as usize + 1) * 100]
            .iter()
            .map(|s| pack_uri(s))
            .collect()
    };

    // An old pack of lot L0, expired at the end of February, sitting at pharmacy-1.
    l.append(
        &commission(&["OLD1".into()], t0 - 700 * DAY, "L0", "2025-02-28"),
        ACME,
    );
    l.append(&ship(&[pack_uri("OLD1")], t0 - 690 * DAY, 1, 3), ACME);
    l.append(
        &receive(&[pack_uri("OLD1")], t0 - 689 * DAY, 3),
        PHARMACIES[0],
    );

    // Manufacturing: commission in batches of 100, pack 10 cases, build one pallet.
    for (b, chunk) in serials.chunks(100).enumerate() {
        l.append(
            &commission(chunk, t0 + b as i64 * 60_000, "L1", "2027-06-30"),
            ACME,
        );
    }
    for case in 0..10 {
        l.append(
            &aggregate(
                "ADD",
                &case_uri(case),
                &packs_of(case),
                t0 + HOUR + case as i64 * 60_000,
            ),
            ACME,
        );
    }
    let cases: Vec<String> = (0..10).map(case_uri).collect();
    l.append(
        &aggregate("ADD", &pallet_uri(), &cases, t0 + 2 * HOUR),
        ACME,
    );

    // Pallet to the wholesaler, who unpacks it.
    l.append(&ship(&[pallet_uri()], t0 + DAY, 1, 2), ACME);
    l.append(&receive(&[pallet_uri()], t0 + 2 * DAY, 2), WHOLESALER);
    l.append(
        &aggregate("DELETE", &pallet_uri(), &[], t0 + 2 * DAY + HOUR),
        WHOLESALER,
    );

    // Case 9 is stolen from the wholesaler's warehouse.
    let stolen_case_entry = l.append(
        &stolen_event(&[EpcId::Sscc(sscc(10))], &gln(2), t0 + 2 * DAY + 3 * HOUR).unwrap(),
        WHOLESALER,
    );

    // Cases 0-2 to pharmacy-1, 3-5 to pharmacy-2, 6-8 to pharmacy-3. Pharmacy-3's receiving
    // reaches the ledger before the wholesaler's shipping (the wholesaler uploads late).
    let ship_at = t0 + 3 * DAY;
    let recv_at = t0 + 4 * DAY;
    for (p, chunk) in cases[..9].chunks(3).enumerate() {
        let site = 3 + p as u32;
        if p == 2 {
            l.append(&receive(chunk, recv_at, site), PHARMACIES[p]);
            l.append(&ship(chunk, ship_at, 2, site), WHOLESALER);
        } else {
            l.append(&ship(chunk, ship_at, 2, site), WHOLESALER);
            l.append(&receive(chunk, recv_at, site), PHARMACIES[p]);
        }
    }
    // Pharmacies 1 and 2 open their cases; pharmacy-3 opens cases 6 and 7, case 8 stays sealed.
    for case in 0..8u32 {
        let p = PHARMACIES[case as usize / 3];
        l.append(
            &aggregate("DELETE", &case_uri(case), &[], recv_at + HOUR),
            p,
        );
    }

    // Dispensing: cases 0-2 at pharmacy-1, 3-4 at pharmacy-2, 6 at pharmacy-3.
    for case in [0u32, 1, 2, 3, 4, 6] {
        let p = PHARMACIES[case as usize / 3];
        for i in 0..100 {
            let s = &serials[case as usize * 100 + i];
            let when = recv_at + DAY + (i as i64) * 5 * 60_000;
            l.append(&dispense_event(&sgtin(s), &gln(site_of(p)), when), p);
        }
    }

    // A clone of S0005 (dispensed at pharmacy-1) is dispensed again at pharmacy-2.
    let first = l
        .entries
        .iter()
        .find(|e| e.event.epcs == [EpcId::Sgtin(sgtin("S0005"))] && e.org == PHARMACIES[0]);
    let first = first.unwrap().index;
    let second = l.append(
        &dispense_event(&sgtin("S0005"), &gln(4), t0 + 8 * DAY),
        PHARMACIES[1],
    );

    // Midway, Acme recalls lot L1.
    let lot = Lot::parse("L1").unwrap();
    let gtin = Gtin::parse(GTIN).unwrap();
    let recall_entry = l.append(
        &recall_lot_event(&gtin, &lot, PREFIX_LEN, &gln(1), t0 + 10 * DAY).unwrap(),
        ACME,
    );

    let directory = [
        (1, ACME, (48.85, 2.35)),
        (2, WHOLESALER, (45.76, 4.84)),
        (3, PHARMACIES[0], (43.30, 5.37)),
        (4, PHARMACIES[1], (43.70, 7.27)),
        (5, PHARMACIES[2], (43.60, 1.44)),
    ]
    .into_iter()
    .map(|(n, org, c)| (gln(n).to_string(), (org.to_owned(), Some(c))))
    .collect();

    World {
        ledger: l,
        directory,
        now: t0 + 12 * DAY,
        stolen_case_entry,
        recall_entry,
        clone_entries: (first, second),
    }
}

fn pharmacy(i: usize) -> Viewer<'static> {
    Viewer::org(PHARMACIES[i], Role::Pharmacy)
}

#[test]
fn a_lot_from_factory_to_counter() {
    let started = Instant::now();
    let w = world();

    // Every pack of L1: what a pharmacist at pharmacy-2 would be told.
    let mut counts: HashMap<VerdictCode, usize> = HashMap::new();
    for i in 0..1000 {
        let s = serial(i);
        let case = i / 100;
        let (v, state) = w.scan(&s, "L1", "270630", pharmacy(1));
        let state = state.unwrap();
        *counts.entry(v.primary).or_default() += 1;
        assert!(v.has(VerdictCode::Authentic), "{s}: {v:?}");
        assert!(!v.dispensable, "{s}: the lot is recalled");
        match case {
            0..=4 | 6 => {
                assert_eq!(v.primary, VerdictCode::AlreadyDispensed, "{s}");
                assert_eq!(state.status, PackStatus::Dispensed);
            }
            5 | 7 | 8 => {
                assert_eq!(v.primary, VerdictCode::Recalled, "{s}: {v:?}");
                assert_eq!(state.status, PackStatus::Recalled);
                assert_eq!(state.recalled.as_ref().unwrap().index, w.recall_entry);
            }
            _ => {
                assert_eq!(v.primary, VerdictCode::Stolen, "{s}");
                assert!(v.has(VerdictCode::Recalled));
                assert_eq!(state.stolen.as_ref().unwrap().index, w.stolen_case_entry);
            }
        }
        // Sealed case 8 is still a case: the recall reached its packs through their class.
        if case == 8 {
            assert_eq!(state.container, Some(EpcId::Sscc(sscc(9))));
        }
        // Pharmacy-2 received cases 3-5 only.
        assert_eq!(
            v.has(VerdictCode::NotInYourCustody),
            !(3..=5).contains(&case),
            "{s}"
        );
        // No suspicion anywhere but the clone, including pharmacy-3's early receipt.
        let expected: &[&str] = if s == "S0005" {
            &[Suspicion::DISPENSED_TWICE]
        } else {
            &[]
        };
        let got: Vec<&str> = state.suspicions.iter().map(|x| x.code).collect();
        assert_eq!(got, expected, "{s}: {:?}", state.suspicions);
    }
    assert_eq!(counts[&VerdictCode::AlreadyDispensed], 600);
    assert_eq!(counts[&VerdictCode::Recalled], 300);
    assert_eq!(counts[&VerdictCode::Stolen], 100);

    // Custody followed the pallet, then the case: pack S0750 is at pharmacy-3, received
    // through case 6 although its receipt reached the ledger before the shipping.
    let s = w.state("S0750").unwrap();
    assert_eq!(s.custody.owner.as_deref(), Some(PHARMACIES[2]));
    assert_eq!(s.custody.location, Some(gln(5).to_string()));
    assert!(s.was_sent_to(PHARMACIES[2], None));
    assert!(s.was_sent_to(WHOLESALER, None));
    eprintln!("1,000 packs derived and judged in {:?}", started.elapsed());
}

#[test]
fn the_clone_is_caught() {
    let w = world();
    let (v, state) = w.scan("S0005", "L1", "270630", pharmacy(1));
    assert_eq!(v.primary, VerdictCode::AlreadyDispensed);
    let r = &v.reasons[0];
    assert!(r.message.contains("another pharmacy"), "{}", r.message);
    assert!(!r.message.contains(PHARMACIES[0]));
    let state = state.unwrap();
    let twice = &state.suspicions[0];
    assert_eq!(twice.code, Suspicion::DISPENSED_TWICE);
    assert_eq!(twice.evidence, [w.clone_entries.0, w.clone_entries.1]);
    assert_eq!(state.dispensed.as_ref().unwrap().org, PHARMACIES[0]);
}

#[test]
fn a_fake_serial_is_unknown() {
    let w = world();
    let (v, state) = w.scan("FAKE1", "L1", "270630", pharmacy(1));
    assert!(state.is_none());
    assert_eq!(v.primary, VerdictCode::UnknownSerial);
    assert_eq!(v.reasons.len(), 1);
    assert!(!v.dispensable);
}

#[test]
fn an_old_pack_has_expired() {
    let w = world();
    let (v, state) = w.scan("OLD1", "L0", "250228", pharmacy(0));
    assert_eq!(v.primary, VerdictCode::Expired);
    assert_eq!(
        v.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        [VerdictCode::Expired, VerdictCode::Authentic]
    );
    assert!(v.reasons[0].message.contains("2025-02-28"));
    assert!(!v.dispensable);
    // Another lot: the L1 recall does not touch it.
    assert!(state.unwrap().recalled.is_none());
}

#[test]
fn before_the_recall_an_undispensed_pack_was_fine() {
    let mut w = world().clone();
    w.now = parse_time("2025-03-11T06:00:00Z").unwrap();
    w.ledger.entries.truncate(w.recall_entry as usize);
    w.ledger
        .by_id
        .values_mut()
        .for_each(|v| v.retain(|&i| (i as u64) < w.recall_entry));
    let (v, _) = w.scan("S0550", "L1", "270630", pharmacy(1));
    assert_eq!(
        v.reasons.iter().map(|r| r.code).collect::<Vec<_>>(),
        [VerdictCode::Authentic]
    );
    assert!(v.dispensable);
}

#[test]
fn a_twenty_event_history_through_case_and_pallet_gives_the_recall() {
    let w = world();
    // S0550: commissioning, packing, pallet, shipping, receiving, unpacking, case shipping,
    // receiving, unpacking, recall… padded to 20 with repeated observations.
    let mut events = w.ledger.events_for(&sgtin("S0550"));
    let mut next = w.ledger.entries.len() as u64;
    while events.len() < 20 {
        let json = receive(&[pack_uri("S0550")], w.now - DAY, 4);
        let mut le = events[0].clone();
        le.event = parse_event(&json).unwrap();
        le.index = next;
        le.org = PHARMACIES[1].into();
        le.site = Some(gln(4).to_string());
        events.push(le);
        next += 1;
    }
    let code = parse_code(&format!("01{GTIN}21S0550")).unwrap();
    let opts = DeriveOptions {
        directory: &w.directory,
        ..DeriveOptions::default()
    };
    // Timing lives in the verdict benchmark (BENCHMARKS.md), never in a test.
    let state = derive_with(&sgtin("S0550"), &events, &opts);
    let v = verdict(&code, Some(&state), true, w.now, pharmacy(1));
    assert_eq!(v.primary, VerdictCode::Recalled);
    assert!(events.len() >= 20);
}
