//! Event builders shared by the unit tests of `pack` and `verdict`.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::LoggedEvent;
use crate::epcis::{format_time, parse_event, parse_time};
use crate::gs1::{EpcId, Gln, Gtin, Sgtin, Sscc, check_digit, parse_epc};

pub const GTIN: &str = "09506000134352";
pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 86_400_000;

pub fn t0() -> i64 {
    parse_time("2025-01-06T08:00:00Z").unwrap()
}

pub fn at(minutes: i64) -> i64 {
    t0() + minutes * MINUTE
}

pub fn gtin() -> Gtin {
    Gtin::parse(GTIN).unwrap()
}

pub fn sgtin(serial: &str) -> Sgtin {
    match parse_epc(&pack_uri(serial)).unwrap() {
        EpcId::Sgtin(s) => s,
        other => panic!("{other:?}"),
    }
}

pub fn pack_uri(serial: &str) -> String {
    format!("https://id.gs1.org/01/{GTIN}/21/{serial}")
}

pub fn with_cd(body: &str) -> String {
    format!("{body}{}", check_digit(body).unwrap())
}

pub fn sscc(n: u32) -> Sscc {
    Sscc::parse(&with_cd(&format!("09506000{n:09}"))).unwrap()
}

pub fn sscc_uri(n: u32) -> String {
    format!("https://id.gs1.org/00/{}", sscc(n))
}

pub fn gln(n: u32) -> Gln {
    Gln::parse(&with_cd(&format!("9506000{n:05}"))).unwrap()
}

pub fn pgln(n: u32) -> String {
    format!("urn:epc:id:pgln:9506000.{n:05}")
}

pub fn sgln(n: u32) -> String {
    format!("urn:epc:id:sgln:9506000.{n:05}.0")
}

/// Sites 1..=4: manufacturer (Paris), wholesaler (Lyon), pharmacy-a (Marseille),
/// pharmacy-b (Berlin).
pub fn directory() -> HashMap<String, (String, Option<(f64, f64)>)> {
    [
        (1, "mah", (48.85, 2.35)),
        (2, "wholesaler", (45.76, 4.84)),
        (3, "pharmacy-a", (43.30, 5.37)),
        (4, "pharmacy-b", (52.52, 13.40)),
    ]
    .into_iter()
    .map(|(n, org, c)| (gln(n).to_string(), (org.to_owned(), Some(c))))
    .collect()
}

pub fn org_site(org: &str) -> u32 {
    match org {
        "mah" => 1,
        "wholesaler" => 2,
        "pharmacy-a" => 3,
        "pharmacy-b" => 4,
        _ => 9,
    }
}

fn base(kind: &str, action: &str, time_ms: i64) -> Value {
    json!({
        "type": kind,
        "action": action,
        "eventTime": format_time(time_ms),
        "eventTimeZoneOffset": "+00:00",
    })
}

pub fn commission(serials: &[&str], time_ms: i64, lot: &str, expiry: &str) -> Value {
    let mut e = base("ObjectEvent", "ADD", time_ms);
    e["epcList"] = json!(serials.iter().map(|s| pack_uri(s)).collect::<Vec<_>>());
    e["bizStep"] = json!("commissioning");
    e["disposition"] = json!("active");
    e["bizLocation"] = json!({"id": sgln(1)});
    e["ilmd"] = json!({"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry});
    e
}

pub fn aggregate(action: &str, parent: &str, children: &[String], time_ms: i64) -> Value {
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

pub fn ship(epcs: &[String], time_ms: i64, from: u32, to: u32) -> Value {
    let mut e = base("ObjectEvent", "OBSERVE", time_ms);
    e["epcList"] = json!(epcs);
    e["bizStep"] = json!("shipping");
    e["disposition"] = json!("in_transit");
    e["readPoint"] = json!({"id": sgln(from)});
    e["sourceList"] = json!([
        {"type": "owning_party", "source": pgln(from)},
        {"type": "location", "source": sgln(from)},
    ]);
    e["destinationList"] = json!([
        {"type": "owning_party", "destination": pgln(to)},
        {"type": "location", "destination": sgln(to)},
    ]);
    e
}

pub fn receive(epcs: &[String], time_ms: i64, at_site: u32) -> Value {
    let mut e = base("ObjectEvent", "OBSERVE", time_ms);
    e["epcList"] = json!(epcs);
    e["bizStep"] = json!("receiving");
    e["disposition"] = json!("active");
    e["bizLocation"] = json!({"id": sgln(at_site)});
    e
}

pub fn observe(epcs: &[String], time_ms: i64, disposition: &str) -> Value {
    let mut e = base("ObjectEvent", "OBSERVE", time_ms);
    e["epcList"] = json!(epcs);
    e["disposition"] = json!(disposition);
    e
}

/// A ledger entry submitted by `org` from its own site.
pub fn logged(index: u64, json: &Value, org: &str) -> LoggedEvent {
    LoggedEvent {
        index,
        event: parse_event(json).unwrap_or_else(|e| panic!("{e}: {json}")),
        org: org.to_owned(),
        site: Some(gln(org_site(org)).to_string()),
    }
}
