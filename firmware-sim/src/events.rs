//! EPCIS 2.0 events as a scanner reports them, built as JSON.
//!
//! The one builder for the scenario, the load generator, the benchmarks and the end-to-end
//! tests, so they all send the same shapes. Fields come in one fixed order (the event's JSON
//! bytes are signed as they are, so the order is part of what a test or benchmark sends);
//! the server parses and checks every event with `rxledger_core::epcis`, so nothing here
//! needs to be valid by construction.

use serde_json::{Value, json};

/// Where an event happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where<'a> {
    /// No location: the rules accept an event without one.
    Unrecorded,
    /// Only the read point (an SGLN URN).
    ReadPoint(&'a str),
    /// A site (an SGLN URN) as both the read point and the business location.
    Site(&'a str),
}

/// An `ObjectEvent` of `epcs` at a site.
pub fn object_event(
    time: &str,
    action: &str,
    biz_step: &str,
    disposition: &str,
    epcs: &[String],
    site: &str,
) -> Value {
    object(time, action, biz_step, disposition, epcs, Where::Site(site))
}

/// The commissioning of `epcs` (action `ADD`, disposition `active`) with their lot and expiry
/// (`YYYY-MM-DD`) as instance master data.
pub fn commissioning(time: &str, epcs: &[String], at: Where, lot: &str, expiry: &str) -> Value {
    let mut e = object(time, "ADD", "commissioning", "active", epcs, at);
    e["ilmd"] = json!({"cbvmda:lotNumber": lot, "cbvmda:itemExpirationDate": expiry});
    e
}

/// Packing (`ADD`) or unpacking (`DELETE`) of `children` into or out of `parent` at a site.
pub fn aggregation(
    time: &str,
    action: &str,
    parent: &str,
    children: &[String],
    site: &str,
) -> Value {
    let step = if action == "ADD" {
        "packing"
    } else {
        "unpacking"
    };
    json!({
        "type": "AggregationEvent",
        "eventTime": time,
        "eventTimeZoneOffset": "+00:00",
        "parentID": parent,
        "childEPCs": children,
        "action": action,
        "bizStep": step,
        "disposition": "in_progress",
        "readPoint": {"id": site},
        "bizLocation": {"id": site},
    })
}

/// An owning party (a PGLN URN) and its location (an SGLN URN).
pub type Party<'a> = (&'a str, &'a str);

/// `shipping` or `receiving` of `epcs` at `site` between two parties, under a despatch advice.
pub fn transfer(
    time: &str,
    step: &str,
    epcs: &[String],
    site: &str,
    from: Party,
    to: Party,
    despatch_advice: &str,
) -> Value {
    let disposition = if step == "shipping" {
        "in_transit"
    } else {
        "in_progress"
    };
    let mut e = object_event(time, "OBSERVE", step, disposition, epcs, site);
    e["bizTransactionList"] = json!([{ "type": "desadv", "bizTransaction": despatch_advice }]);
    e["sourceList"] = json!([
        { "type": "owning_party", "source": from.0 },
        { "type": "location", "source": from.1 },
    ]);
    e["destinationList"] = json!([
        { "type": "owning_party", "destination": to.0 },
        { "type": "location", "destination": to.1 },
    ]);
    e
}

fn object(
    time: &str,
    action: &str,
    biz_step: &str,
    disposition: &str,
    epcs: &[String],
    at: Where,
) -> Value {
    let mut e = json!({
        "type": "ObjectEvent",
        "eventTime": time,
        "eventTimeZoneOffset": "+00:00",
        "epcList": epcs,
        "action": action,
        "bizStep": biz_step,
        "disposition": disposition,
    });
    match at {
        Where::Unrecorded => {}
        Where::ReadPoint(p) => e["readPoint"] = json!({ "id": p }),
        Where::Site(s) => {
            e["readPoint"] = json!({ "id": s });
            e["bizLocation"] = json!({ "id": s });
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use rxledger_core::epcis;

    const SITE: &str = "urn:epc:id:sgln:0614141.00000.0";
    const TIME: &str = "2026-01-15T09:29:30.000Z";

    fn epcs() -> Vec<String> {
        vec!["urn:epc:id:sgtin:0614141.107346.1001".to_string()]
    }

    #[test]
    fn fields_come_in_one_order() {
        let e = commissioning(TIME, &epcs(), Where::Site(SITE), "L1", "2030-01-31");
        assert_eq!(
            e.to_string(),
            r#"{"type":"ObjectEvent","eventTime":"2026-01-15T09:29:30.000Z","eventTimeZoneOffset":"+00:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001"],"action":"ADD","bizStep":"commissioning","disposition":"active","readPoint":{"id":"urn:epc:id:sgln:0614141.00000.0"},"bizLocation":{"id":"urn:epc:id:sgln:0614141.00000.0"},"ilmd":{"cbvmda:lotNumber":"L1","cbvmda:itemExpirationDate":"2030-01-31"}}"#
        );
        let bare = commissioning(TIME, &epcs(), Where::Unrecorded, "L1", "2030-01-31");
        assert!(bare.get("readPoint").is_none() && bare.get("bizLocation").is_none());
        let rp = commissioning(TIME, &epcs(), Where::ReadPoint(SITE), "L1", "2030-01-31");
        assert!(rp.get("readPoint").is_some() && rp.get("bizLocation").is_none());
    }

    #[test]
    fn every_shape_parses() {
        let sscc = "urn:epc:id:sscc:0614141.0000000001";
        let from = ("urn:epc:id:pgln:0614141.00000", SITE);
        let to = (
            "urn:epc:id:pgln:0614141.00002",
            "urn:epc:id:sgln:0614141.00002.0",
        );
        let desadv = "urn:epcglobal:cbv:bt:0614141000005:D1";
        for e in [
            commissioning(TIME, &epcs(), Where::Unrecorded, "L1", "2030-01-31"),
            object_event(TIME, "OBSERVE", "dispensing", "dispensed", &epcs(), SITE),
            aggregation(TIME, "ADD", sscc, &epcs(), SITE),
            aggregation(TIME, "DELETE", sscc, &epcs(), SITE),
            transfer(TIME, "shipping", &epcs(), SITE, from, to, desadv),
            transfer(TIME, "receiving", &epcs(), to.1, from, to, desadv),
        ] {
            epcis::parse_event(&e).unwrap_or_else(|err| panic!("{err}: {e}"));
        }
        let t = transfer(TIME, "shipping", &epcs(), SITE, from, to, desadv);
        assert_eq!(t["disposition"], "in_transit");
        assert_eq!(t["sourceList"][1]["source"], SITE);
    }
}
