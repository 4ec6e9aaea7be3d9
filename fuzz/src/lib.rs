//! The properties the fuzz targets check, shared so each target in `fuzz_targets/` is one line.
//!
//! Base property everywhere: no input panics, and every refusal is an error with a message.
//! On top of that, where a parse succeeds, round trips that hold for every accepted input:
//!
//! * any scan that parses re-renders as a GS1 Digital Link that parses back to the same
//!   identifiers (the ones a Digital Link carries: the primary key and its qualifiers, and 17);
//! * a scan typed as an element string re-renders as an element string that parses back to the
//!   same code (only for element-string input: a lot that came from a URI may legally hold the
//!   text `<GS>` or end in something that looks like a swallowed `17…` field, which cannot be
//!   written as an element string without ambiguity);
//! * an EPC URN that parses re-renders, for every company prefix length 6..=12, as a URN that
//!   parses back to the same EPC;
//! * a Digital Link is accepted by `parse_epc` exactly when `parse_code` accepts it;
//! * an envelope that `open` accepts is also read by `read_body` with the same body; an envelope
//!   whose signature verifies with the test-vector device key carries the test-vector body;
//! * an EPCIS XML document that reads exports, as 1.2 and as 2.0, to documents that read back
//!   to exactly the same events (when the export is possible at all), and every event it reads
//!   goes through `parse_event` and the hash like a JSON one.

use rxledger_core::envelope;
use rxledger_core::epcis;
use rxledger_core::epcis::xml;
use rxledger_core::gs1::{self, EpcId, Gtin, ScannedCode};
use rxledger_core::keys::SigningKey;
use serde_json::Value;

/// Base of the Digital Links the round trips render.
const DL_BASE: &str = "https://id.example.com";

// ---------------------------------------------------------------------------------------------
// scan
// ---------------------------------------------------------------------------------------------

/// `gs1::parse_code` on arbitrary bytes (lossy UTF-8), with both round trips.
pub fn check_scan(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let code = match gs1::parse_code(&input) {
        Ok(code) => code,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    digital_link_round_trip(&code);
    if is_element_string(&input) {
        element_string_round_trip(&code);
    }
    // Rendering the other spellings never panics.
    let _ = code.to_human_readable();
    let _ = code.sgtin();
}

/// The branch `parse_code` takes for an element string (not URN, URI or `(AI)` text).
fn is_element_string(input: &str) -> bool {
    let t = input.trim_matches(|c: char| c.is_whitespace() && c != gs1::GS);
    let head = t.chars().take(8).collect::<String>().to_ascii_lowercase();
    !head.starts_with("urn:epc:")
        && !head.starts_with("http://")
        && !head.starts_with("https://")
        && !t.starts_with('(')
}

/// What `ScannedCode::to_digital_link` carries: the GTIN with lot and serial, else the SSCC,
/// else the GLN with its extension; and the expiry in the query string.
fn digital_link_view(c: &ScannedCode) -> ScannedCode {
    let mut v = ScannedCode {
        expiry: c.expiry.clone(),
        ..ScannedCode::default()
    };
    if c.gtin.is_some() {
        v.gtin = c.gtin.clone();
        v.lot = c.lot.clone();
        v.serial = c.serial.clone();
    } else if c.sscc.is_some() {
        v.sscc = c.sscc.clone();
    } else {
        v.gln = c.gln.clone();
        v.gln_extension = c.gln_extension.clone();
    }
    v
}

fn digital_link_round_trip(code: &ScannedCode) {
    let Some(uri) = code.to_digital_link(DL_BASE) else {
        assert!(code.gtin.is_none() && code.sscc.is_none() && code.gln.is_none());
        return;
    };
    let back = gs1::parse_code(&uri)
        .unwrap_or_else(|e| panic!("rendered Digital Link {uri:?} of {code:?} fails: {e}"));
    assert_eq!(
        back,
        digital_link_view(code),
        "Digital Link {uri:?} does not round-trip"
    );
}

fn element_string_round_trip(code: &ScannedCode) {
    let es = code.to_element_string();
    let mut back = gs1::parse_code(&es)
        .unwrap_or_else(|e| panic!("rendered element string {es:?} of {code:?} fails: {e}"));
    // Rendering puts fixed-length AIs first, so `other` may come back in another order.
    let mut want = code.clone();
    want.other.sort();
    back.other.sort();
    assert_eq!(back, want, "element string {es:?} does not round-trip");
}

// ---------------------------------------------------------------------------------------------
// digital_link
// ---------------------------------------------------------------------------------------------

/// The Digital Link parser, through `parse_code` and `parse_epc`. Input that is not already a
/// URI is also tried as the path of one, so the fuzzer spends its time inside the path grammar.
pub fn check_digital_link(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    check_uri(&input);
    let head = input.get(..8).unwrap_or("").to_ascii_lowercase();
    if !head.starts_with("http") {
        check_uri(&format!("{DL_BASE}/{input}"));
    }
}

fn check_uri(uri: &str) {
    let code = gs1::parse_code(uri);
    let epc = gs1::parse_epc(uri);
    if let Err(e) = &code {
        assert!(!e.to_string().is_empty());
    }
    if let Err(e) = &epc {
        assert!(!e.to_string().is_empty());
    }
    let t = uri.trim();
    let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        // Both read a URI with the same Digital Link parser; a Digital Link always has a key.
        assert_eq!(
            code.is_ok(),
            epc.is_ok(),
            "parse_code and parse_epc disagree on {uri:?}: {code:?} vs {epc:?}"
        );
        if let (Ok(c), Ok(EpcId::Sgtin(s))) = (&code, &epc) {
            assert_eq!(c.sgtin().as_ref(), Some(s));
        }
    }
    if let Ok(c) = &code {
        digital_link_round_trip(c);
    }
}

// ---------------------------------------------------------------------------------------------
// epc_urn
// ---------------------------------------------------------------------------------------------

/// `gs1::parse_epc` on arbitrary bytes; URNs that parse round-trip for every prefix length.
pub fn check_epc_urn(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    match gs1::parse_epc(&input) {
        Ok(id) => {
            // A Digital Link given to parse_epc is covered by the digital_link target; its SGLN
            // extension "0" is kept as given, while the URN form reads "0" as "no extension".
            if input
                .trim()
                .get(..8)
                .is_some_and(|h| h.eq_ignore_ascii_case("urn:epc:"))
            {
                epc_round_trip(&id);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let _ = gs1::parse_code(&input);
}

fn epc_round_trip(id: &EpcId) {
    for cpl in 6..=12 {
        let urn = match id {
            EpcId::Sgtin(s) => s.to_epc_urn(cpl),
            EpcId::Sscc(s) => s.to_epc_urn(cpl),
            EpcId::Sgln(s) => s.gln.to_sgln_urn(cpl, s.extension.as_deref()),
            EpcId::Lgtin { gtin, lot } => gs1::lgtin_urn(gtin, lot, cpl),
            EpcId::GtinClass(g) => Ok(idpat_urn(g, cpl)),
        }
        .unwrap_or_else(|e| panic!("{id:?} does not render with prefix length {cpl}: {e}"));
        let back = gs1::parse_epc(&urn)
            .unwrap_or_else(|e| panic!("rendered URN {urn:?} of {id:?} fails: {e}"));
        assert_eq!(&back, id, "URN {urn:?} does not round-trip");
        // parse_code reads the same URN too.
        let code = gs1::parse_code(&urn)
            .unwrap_or_else(|e| panic!("parse_code refuses rendered URN {urn:?}: {e}"));
        if let EpcId::Sgtin(s) = id {
            assert_eq!(code.sgtin().as_ref(), Some(s));
        }
    }
}

/// `urn:epc:idpat:sgtin:CompanyPrefix.IndicatorItemRef.*` (no public renderer exists).
fn idpat_urn(g: &Gtin, cpl: usize) -> String {
    let g = g.as_str();
    format!(
        "urn:epc:idpat:sgtin:{}.{}{}.*",
        &g[1..1 + cpl],
        &g[..1],
        &g[1 + cpl..13]
    )
}

// ---------------------------------------------------------------------------------------------
// envelope_epcis
// ---------------------------------------------------------------------------------------------

/// Secret key of the device in docs/PROTOCOL.md §16.1 (the seed envelope is signed with it).
const VECTOR_DEVICE_KEY: &str = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
/// The body text signed in docs/PROTOCOL.md §16.2.
const VECTOR_BODY: &str = r#"{"v":1,"deviceId":"acme-line-1","seq":1,"sentAt":"2026-01-15T09:30:00.000Z","events":[{"type":"ObjectEvent","eventTime":"2026-01-15T09:29:30.000Z","eventTimeZoneOffset":"+01:00","epcList":["urn:epc:id:sgtin:0614141.107346.1001","urn:epc:id:sgtin:0614141.107346.1002"],"action":"ADD","bizStep":"commissioning","disposition":"active","readPoint":{"id":"urn:epc:id:sgln:0614141.00000.0"},"bizLocation":{"id":"urn:epc:id:sgln:0614141.00000.0"},"ilmd":{"cbvmda:lotNumber":"L2026A","cbvmda:itemExpirationDate":"2028-12-31"}}]}"#;

/// An MQTT payload through `envelope::open`/`read_body`, then each event through EPCIS parsing
/// and hashing. The bytes are also read as a bare event or EPCIS document, so the fuzzer can
/// reach the EPCIS code without getting through the envelope's escaped string first.
pub fn check_envelope_epcis(data: &[u8]) {
    let read = envelope::read_body(data);
    let topic_device = read
        .as_ref()
        .map_or("acme-line-1", |b| b.device_id.as_str());
    match envelope::open(data, topic_device) {
        Ok(opened) => {
            let events = &opened.body.events;
            assert!(!events.is_empty() && events.len() <= envelope::MAX_EVENTS);
            assert_eq!(
                read.as_ref().ok(),
                Some(&opened.body),
                "open and read_body disagree"
            );
            let key = SigningKey::from_hex(VECTOR_DEVICE_KEY).expect("the test-vector key");
            if opened.verify(&key.public_key()).is_ok() {
                assert_eq!(opened.signed, VECTOR_BODY, "a forged body verifies");
            }
            for event in events {
                check_event(event);
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        check_event(&value);
        let _ = epcis::document_hash_ids(&value);
    }
}

fn check_event(event: &Value) {
    match epcis::parse_event(event) {
        Ok(_) => {
            let id = epcis::event_hash_id(event)
                .unwrap_or_else(|e| panic!("a parsed event has no hash ID: {e}"));
            assert!(id.starts_with("ni:///sha-256;"), "{id}");
        }
        Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
    }
    // Refused events are still hashed (the hash is over any JSON object); it must not panic.
    let _ = epcis::event_hash_id(event);
}

// ---------------------------------------------------------------------------------------------
// xml_document
// ---------------------------------------------------------------------------------------------

/// `epcis::xml::parse_xml_document` on arbitrary bytes; what reads is exported as 1.2 and 2.0
/// and must read back to the same events.
pub fn check_xml_document(data: &[u8]) {
    let limits = xml::XmlLimits::default();
    let doc = match xml::parse_xml_document(data, &limits) {
        Ok(doc) => doc,
        Err(e) => {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
            return;
        }
    };
    let mut good = Vec::new();
    for e in &doc.events {
        match e {
            Ok(v) => {
                check_event(v);
                good.push(v.clone());
            }
            Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
        }
    }
    let header = xml::XmlHeader {
        creation_date: Some("2024-01-01T00:00:00Z".into()),
        ..xml::XmlHeader::default()
    };
    for export in [xml::to_epcis12_xml, xml::to_epcis20_xml] {
        match export(&good, &header) {
            Ok(text) => {
                let again = xml::parse_xml_document(text.as_bytes(), &limits)
                    .unwrap_or_else(|e| panic!("an exported document does not read: {e}\n{text}"));
                let events: Vec<Value> = again
                    .events
                    .into_iter()
                    .map(|e| {
                        e.unwrap_or_else(|e| panic!("an exported event does not read: {e}\n{text}"))
                    })
                    .collect();
                assert_eq!(
                    events, good,
                    "export and read again changed the events\n{text}"
                );
            }
            Err(e) => assert!(!e.code().is_empty() && !e.to_string().is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! `cargo test` in fuzz/ (stable, no libFuzzer run): every committed seed and regression
    //! input passes its target's checks, and the valid seeds really parse, so the round trips
    //! above are exercised from the first run.
    use super::*;
    use std::path::Path;

    fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut v: Vec<_> = entries
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn seeds_and_regressions_pass() {
        let targets: [(&str, fn(&[u8])); 5] = [
            ("scan", check_scan),
            ("digital_link", check_digital_link),
            ("epc_urn", check_epc_urn),
            ("envelope_epcis", check_envelope_epcis),
            ("xml_document", check_xml_document),
        ];
        for (name, check) in targets {
            for sub in ["corpus", "regressions"] {
                for (path, bytes) in inputs(&format!("{sub}/{name}")) {
                    eprintln!("{path}");
                    check(&bytes);
                }
            }
        }
    }

    #[test]
    fn valid_seeds_parse() {
        for (path, bytes) in inputs("corpus/scan") {
            let s = String::from_utf8(bytes).unwrap();
            let c = gs1::parse_code(&s).unwrap_or_else(|e| panic!("{path}: {e}"));
            eprintln!(
                "{path}: {c:?}\n  DL {:?}\n  ES {:?}",
                c.to_digital_link(DL_BASE),
                c.to_element_string()
            );
        }
        // Seeds named `invalid_*` are there to lead the fuzzer to near-misses: each must be
        // refused; every other seed must parse.
        for (path, bytes) in inputs("corpus/digital_link") {
            let s = String::from_utf8(bytes).unwrap();
            let s = if s.starts_with("http") {
                s
            } else {
                format!("{DL_BASE}/{s}")
            };
            let parsed = gs1::parse_code(&s);
            if path.rsplit('/').next().is_some_and(|f| f.starts_with("invalid_")) {
                assert!(parsed.is_err(), "{path}: an invalid seed parsed: {parsed:?}");
            } else {
                parsed.unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
        for (path, bytes) in inputs("corpus/epc_urn") {
            gs1::parse_epc(std::str::from_utf8(&bytes).unwrap())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let key = SigningKey::from_hex(VECTOR_DEVICE_KEY).unwrap();
        for (path, bytes) in inputs("corpus/envelope_epcis") {
            if path.ends_with("_envelope") {
                let opened = envelope::open(&bytes, "acme-line-1").unwrap();
                opened.verify(&key.public_key()).unwrap();
                assert_eq!(opened.signed, VECTOR_BODY);
                for e in &opened.body.events {
                    epcis::parse_event(e).unwrap_or_else(|e| panic!("{path}: {e}"));
                }
            } else if path.ends_with("_event") {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                epcis::parse_event(&v).unwrap_or_else(|e| panic!("{path}: {e}"));
            } else {
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                epcis::document_hash_ids(&v).unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
        for (path, bytes) in inputs("corpus/xml_document") {
            let doc = xml::parse_xml_document(&bytes, &xml::XmlLimits::default())
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(!doc.events.is_empty(), "{path}");
            for e in doc.events {
                e.unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
    }
}
