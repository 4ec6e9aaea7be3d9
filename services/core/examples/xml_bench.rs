//! Reading a DSCSA-sized EPCIS 1.2 XML document: 10,000 events (a manufacturer's day of
//! commissioning, packing and shipping in the GS1 US Healthcare profile's shape) through
//! `parse_xml_document`, then each event through `parse_event` and its CBV 2.0 hash ID, the
//! work capture does per event before the ledger.
//!
//! `cargo run --release -p rxledger-core --example xml_bench` prints five rounds; quote the
//! fastest (the machine is noisy). The document is built once, by the 1.2 exporter, from
//! events written here as JSON.
use std::time::Instant;

use rxledger_core::epcis::xml::{XmlHeader, XmlLimits, parse_xml_document, to_epcis12_xml};
use rxledger_core::epcis::{event_hash, parse_event};
use serde_json::{Value, json};

const EVENTS: usize = 10_000;

fn events() -> Vec<Value> {
    (0..EVENTS)
        .map(|i| match i % 4 {
            0 => json!({
                "type": "ObjectEvent", "eventTime": "2024-05-01T06:00:00.000-04:00",
                "eventTimeZoneOffset": "-04:00",
                "epcList": [format!("urn:epc:id:sgtin:0614141.107346.{i}"), format!("urn:epc:id:sgtin:0614141.107346.{i}A")],
                "action": "ADD", "bizStep": "commissioning", "disposition": "active",
                "readPoint": {"id": "urn:epc:id:sgln:0614141.00001.0"},
                "bizLocation": {"id": "urn:epc:id:sgln:0614141.00001.0"},
                "ilmd": {"cbvmda:lotNumber": "LOT2024A", "cbvmda:itemExpirationDate": "2026-12-31"}
            }),
            1 => json!({
                "type": "AggregationEvent", "eventTime": "2024-05-01T07:00:00.000-04:00",
                "eventTimeZoneOffset": "-04:00",
                "parentID": format!("urn:epc:id:sscc:0614141.{:010}", i),
                "childEPCs": [format!("urn:epc:id:sgtin:0614141.107346.{}", i - 1), format!("urn:epc:id:sgtin:0614141.107346.{}A", i - 1)],
                "action": "ADD", "bizStep": "packing", "disposition": "in_progress",
                "readPoint": {"id": "urn:epc:id:sgln:0614141.00001.0"}
            }),
            2 => json!({
                "type": "ObjectEvent", "eventTime": "2024-05-01T08:00:00.000-04:00",
                "eventTimeZoneOffset": "-04:00",
                "epcList": [format!("urn:epc:id:sscc:0614141.{:010}", i - 1)],
                "action": "OBSERVE", "bizStep": "shipping", "disposition": "in_transit",
                "readPoint": {"id": "urn:epc:id:sgln:0614141.00001.0"},
                "bizTransactionList": [
                    {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141007770:PO-4711"},
                    {"type": "desadv", "bizTransaction": format!("urn:epcglobal:cbv:bt:0614141000012:ASN-{i}")}
                ],
                "sourceList": [{"type": "owning_party", "source": "urn:epc:id:sgln:0614141.00001.0"}],
                "destinationList": [{"type": "owning_party", "destination": "urn:epc:id:sgln:0614141.00777.0"}]
            }),
            _ => json!({
                "type": "TransactionEvent", "eventTime": "2024-05-01T08:00:00.000-04:00",
                "eventTimeZoneOffset": "-04:00",
                "bizTransactionList": [{"type": "inv", "bizTransaction": format!("urn:epcglobal:cbv:bt:0614141000012:INV-{i}")}],
                "epcList": [format!("urn:epc:id:sscc:0614141.{:010}", i - 2)],
                "action": "ADD"
            }),
        })
        .collect()
}

fn main() {
    let header = XmlHeader {
        creation_date: Some("2024-05-01T12:00:00.000Z".into()),
        ..XmlHeader::default()
    };
    let xml = to_epcis12_xml(&events(), &header).expect("the benchmark's events export");
    println!(
        "document: {EVENTS} events, {} bytes of EPCIS 1.2 XML",
        xml.len()
    );
    let limits = XmlLimits::default();
    let mut best = f64::MAX;
    for round in 0..5 {
        let t = Instant::now();
        let doc = parse_xml_document(xml.as_bytes(), &limits).expect("the document reads");
        let read = t.elapsed().as_secs_f64();
        let mut hashes = 0usize;
        for e in &doc.events {
            let e = e.as_ref().expect("every event reads");
            parse_event(e).expect("every event is valid");
            std::hint::black_box(event_hash(e).expect("hashes"));
            hashes += 1;
        }
        let all = t.elapsed().as_secs_f64();
        best = best.min(all);
        println!(
            "round {round}: read {:.1} ms, read+validate+hash {:.1} ms = {:.0} events/s ({hashes} hashed)",
            read * 1e3,
            all * 1e3,
            EVENTS as f64 / all
        );
    }
    println!("fastest round: {:.0} events/s", EVENTS as f64 / best);
}
