//! A bounded fuzzing run of every parser that reads untrusted bytes: the MQTT envelope, EPCIS
//! events (and their hash ID) and GS1 codes. Inputs are arbitrary, and mutations (byte flips,
//! truncations, insertions, splices) of valid seeds, so the runs reach deep into each parser.
//! The property: no input panics, and every refusal is an error value with a message.
//!
//! Runs in `cargo test` on stable Rust, 4,000 cases per parser by default; set
//! `PROPTEST_CASES` for a longer run.

use proptest::prelude::*;
use rxledger_core::envelope::{self, Body};
use rxledger_core::epcis;
use rxledger_core::gs1;
use rxledger_core::keys::SigningKey;
use serde_json::{Value, json};

const CODES: &[&str] = &[
    "]d2011061414107346417310630\u{1d}10L1\u{1d}211001",
    "(01)10614141073464(17)310630(10)L1(21)1001",
    "https://id.gs1.org/01/10614141073464/10/L1/21/1001?17=310630",
    "urn:epc:id:sgtin:0614141.107346.2017",
    "urn:epc:id:sscc:0614141.1234567890",
    "urn:epc:id:sgln:0614141.00001.0",
    "0110614141073464<GS>211001",
];

fn event_seed() -> Value {
    json!({
        "type": "ObjectEvent",
        "eventTime": "2026-11-25T10:00:00.000Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-06-30"},
        "sourceList": [{"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00000"}],
        "childEPCs": ["urn:epc:id:sgtin:0614141.107346.1"],
        "parentID": "urn:epc:id:sscc:0614141.1234567890"
    })
}

fn envelope_seed() -> Vec<u8> {
    let key = SigningKey::from_bytes(&[7u8; 32]).expect("a valid test key");
    envelope::seal(
        &key,
        &Body {
            v: 1,
            device_id: "line-1".into(),
            seq: 1,
            sent_at: "2026-11-25T10:00:00.000Z".into(),
            events: vec![event_seed()],
        },
    )
}

/// A mutation of `seed`: flip, delete, insert or splice bytes.
fn mutated(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    prop::collection::vec((0..4u8, 0..len, any::<u8>(), 0..8usize), 1..6).prop_map(move |ops| {
        let mut b = seed.clone();
        for (op, at, byte, n) in ops {
            let at = at.min(b.len());
            match op {
                0 if at < b.len() => b[at] ^= byte | 1,
                1 => {
                    let end = (at + n).min(b.len());
                    b.drain(at..end);
                }
                2 => b.insert(at, byte),
                _ => {
                    let copy: Vec<u8> = b[at..(at + n).min(b.len())].to_vec();
                    let to = (at * 7 + n) % (b.len() + 1);
                    b.splice(to..to, copy);
                }
            }
        }
        b
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(4_000)
}

fn check_code(input: &str) {
    if let Err(e) = gs1::parse_code(input) {
        assert!(!e.to_string().is_empty());
    }
    let _ = gs1::parse_epc(input);
}

fn check_event(v: &Value) {
    match epcis::parse_event(v) {
        Ok(_) => {
            // A parsed event always has a hash ID.
            let _ = epcis::event_hash_id(v);
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn gs1_codes_arbitrary(s in ".{0,120}") {
        check_code(&s);
    }

    #[test]
    fn gs1_codes_mutated(
        bytes in (0..CODES.len()).prop_flat_map(|i| mutated(CODES[i].as_bytes().to_vec()))
    ) {
        check_code(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn epcis_events_mutated(bytes in mutated(serde_json::to_vec(&event_seed()).unwrap())) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            check_event(&v);
        }
    }

    #[test]
    fn epcis_events_with_arbitrary_fields(
        key in prop::sample::select(vec!["type", "eventTime", "epcList", "action", "bizStep",
            "disposition", "readPoint", "ilmd", "sourceList", "childEPCs", "parentID",
            "quantityList", "eventTimeZoneOffset", "bizTransactionList"]),
        value in prop_oneof![
            Just(Value::Null), any::<bool>().prop_map(Value::from), any::<i64>().prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            prop::collection::vec(".{0,30}".prop_map(Value::from), 0..4).prop_map(Value::from),
            Just(json!({"id": 5})), Just(json!([{"epcClass": 1, "quantity": "x"}])),
        ],
    ) {
        let mut v = event_seed();
        v[key] = value;
        check_event(&v);
    }

    #[test]
    fn envelopes_mutated(bytes in mutated(envelope_seed())) {
        match envelope::open(&bytes, "line-1") {
            Ok(opened) => {
                // Whatever still verifies carries exactly the signed body (a mutation may only
                // touch the outer JSON's whitespace).
                let key = SigningKey::from_bytes(&[7u8; 32]).unwrap();
                if opened.verify(&key.public_key()).is_ok() {
                    let seed = envelope::read_body(&envelope_seed()).unwrap();
                    prop_assert_eq!(&opened.body.events, &seed.events);
                    prop_assert_eq!(opened.body.seq, seed.seq);
                    prop_assert_eq!(&opened.body.device_id, &seed.device_id);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = envelope::read_body(&bytes);
    }

    #[test]
    fn envelopes_arbitrary(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = envelope::open(&bytes, "line-1");
        let _ = envelope::read_body(&bytes);
    }
}
