//! The EPCIS XML binding: 1.2 and 2.0 documents in, the same JSON-LD events and hashes as the
//! JSON binding, 1.2 and 2.0 documents out, and every hostile input refused with its error.
//! Schema validation with xmllint is in `xml_external.rs`; the structure checks here need no
//! external tool.

use std::path::PathBuf;

use rxledger_core::epcis::xml::{
    SbdhParty, XmlDocument, XmlError, XmlHeader, XmlLimits, XmlVersion, parse_xml_document,
    to_epcis12_xml, to_epcis20_xml,
};
use rxledger_core::epcis::{
    Action, BizStep, Disposition, EventKind, SourceDestType, event_hash_id, parse_event,
};
use rxledger_core::gs1::CalendarDate;
use serde_json::{Value, json};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/xml")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn parse(bytes: &[u8]) -> XmlDocument {
    parse_xml_document(bytes, &XmlLimits::default()).unwrap()
}

fn events(doc: &XmlDocument) -> Vec<Value> {
    doc.events
        .iter()
        .enumerate()
        .map(|(i, e)| e.clone().unwrap_or_else(|err| panic!("event {i}: {err}")))
        .collect()
}

/// Every vendored document: (file, events in it).
const FIXTURES: &[(&str, usize)] = &[
    ("us_hc_r13_shipment.xml", 4),
    ("gs1_1.2_ObjectEvent.xml", 2),
    ("gs1_1.2_AggregationEvent.xml", 1),
    ("gs1_1.2_TransactionEvent.xml", 2),
    ("gs1_1.2_TransformationEvent.xml", 1),
    ("ref_epcisDocWithVariousEventTypes.xml", 13),
    ("ref_epcisDocWithXMLstartTagAndErrorDeclaration.xml", 1),
    ("ref_TransformationEventWithUserExtensions.xml", 1),
];

#[test]
fn every_fixture_reads_completely() {
    for (name, n) in FIXTURES {
        let doc = parse(&read(name));
        assert_eq!(doc.events.len(), *n, "{name}");
        events(&doc);
    }
}

#[test]
fn us_healthcare_profile_reads_into_the_event_model() {
    let doc = parse(&read("us_hc_r13_shipment.xml"));
    assert_eq!(doc.version, XmlVersion::Epcis12);
    let h = &doc.header;
    assert_eq!(h.schema_version, "1.2");
    assert_eq!(h.creation_date.as_deref(), Some("2024-05-01T12:00:00.000Z"));
    assert_eq!(
        h.sender,
        Some(SbdhParty {
            identifier: "urn:epc:id:sgln:0614141.00001.0".into(),
            authority: Some("SGLN".into()),
        })
    );
    assert_eq!(
        h.receiver.as_ref().map(|r| r.identifier.as_str()),
        Some("urn:epc:id:sgln:0614141.00777.0")
    );
    let d = h.document.as_ref().unwrap();
    assert_eq!(d.instance_identifier.as_deref(), Some("SHIP-2024-0501-001"));
    assert_eq!(d.doc_type.as_deref(), Some("Events"));
    let md = h.master_data.as_ref().unwrap();
    assert_eq!(
        md["vocabularyList"][0]["vocabularyElementList"][0]["attributes"][3],
        json!({"id": "urn:epcglobal:cbv:mda#manufacturerOfTradeItemPartyName", "attribute": "Example Pharma & Co."})
    );
    assert_eq!(
        md["vocabularyList"][1]["type"],
        "urn:epcglobal:epcis:vtype:Location"
    );

    let ev = events(&doc);
    // Commissioning: the 1.2 extension wrapper is gone, ILMD is where 2.0 has it.
    assert_eq!(
        ev[0],
        json!({
            "type": "ObjectEvent",
            "eventTime": "2024-05-01T06:00:00.000-04:00",
            "eventTimeZoneOffset": "-04:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.1001", "urn:epc:id:sgtin:0614141.107346.1002"],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00001.0"},
            "bizLocation": {"id": "urn:epc:id:sgln:0614141.00001.0"},
            "ilmd": {"cbvmda:lotNumber": "LOT2024A", "cbvmda:itemExpirationDate": "2026-12-31"}
        })
    );
    let commissioning = parse_event(&ev[0]).unwrap();
    assert_eq!(commissioning.biz_step, Some(BizStep::Commissioning));
    assert_eq!(
        commissioning.lot.as_ref().map(|l| l.as_str()),
        Some("LOT2024A")
    );
    assert_eq!(
        commissioning.item_expiration,
        CalendarDate::new(2026, 12, 31)
    );

    let packing = parse_event(&ev[1]).unwrap();
    assert_eq!(packing.kind, EventKind::Aggregation);
    assert_eq!(packing.children.len(), 2);
    assert!(packing.parent.is_some());

    assert_eq!(
        ev[2]["eventID"],
        "urn:uuid:2b4a1c3e-6d1f-4d8e-9a52-0a4b1f0c7e11"
    );
    assert_eq!(
        ev[2]["bizTransactionList"],
        json!([
            {"type": "po", "bizTransaction": "urn:epcglobal:cbv:bt:0614141007770:PO-4711"},
            {"type": "desadv", "bizTransaction": "urn:epcglobal:cbv:bt:0614141000012:ASN-1152"},
            {"type": "inv", "bizTransaction": "urn:epcglobal:cbv:bt:0614141000012:INV-2024-77"}
        ])
    );
    let shipping = parse_event(&ev[2]).unwrap();
    assert_eq!(shipping.disposition, Some(Disposition::InTransit));
    assert_eq!(shipping.action, Action::Observe);
    assert_eq!(shipping.sources[0].kind, SourceDestType::OwningParty);
    assert_eq!(shipping.destinations[1].kind, SourceDestType::Location);
    assert_eq!(
        shipping.destinations[1].id,
        "urn:epc:id:sgln:0614141.00777.0"
    );

    let transaction = parse_event(&ev[3]).unwrap();
    assert_eq!(transaction.kind, EventKind::Transaction);
    assert_eq!(transaction.quantities[0].quantity, Some(2.0));
    assert_eq!(ev[3]["quantityList"][0]["quantity"], json!(2));
}

/// The same commissioning as a device would send it in the 2.0 JSON binding.
#[test]
fn the_same_event_in_xml_and_json_ld_has_the_same_hash_id() {
    let doc = parse(&read("us_hc_r13_shipment.xml"));
    let from_xml = events(&doc).remove(0);
    let json_ld = json!({
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T10:00:00Z",
        "eventTimeZoneOffset": "-04:00",
        "epcList": ["https://id.gs1.org/01/10614141073464/21/1002", "urn:epc:id:sgtin:0614141.107346.1001"],
        "action": "ADD",
        "bizStep": "https://ref.gs1.org/cbv/BizStep-commissioning",
        "disposition": "active",
        "readPoint": {"id": "https://id.gs1.org/414/0614141000012"},
        "bizLocation": {"id": "urn:epc:id:sgln:0614141.00001.0"},
        "ilmd": {"cbvmda:itemExpirationDate": "2026-12-31", "cbvmda:lotNumber": "LOT2024A"}
    });
    assert_eq!(
        event_hash_id(&from_xml).unwrap(),
        event_hash_id(&json_ld).unwrap()
    );
    // And a different lot is a different event.
    let mut other = json_ld.clone();
    other["ilmd"]["cbvmda:lotNumber"] = json!("LOT2024B");
    assert_ne!(
        event_hash_id(&from_xml).unwrap(),
        event_hash_id(&other).unwrap()
    );
}

/// The reference implementation hashes the XML itself; our XML → JSON-LD → hash must agree.
#[test]
fn reference_hashes_of_xml_documents_match() {
    for name in [
        "ref_epcisDocWithVariousEventTypes",
        "ref_epcisDocWithXMLstartTagAndErrorDeclaration",
        "ref_TransformationEventWithUserExtensions",
    ] {
        let doc = parse(&read(&format!("{name}.xml")));
        let expected: Vec<String> = String::from_utf8(read(&format!("{name}.hashes")))
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let got: Vec<String> = events(&doc)
            .iter()
            .map(|e| event_hash_id(e).unwrap())
            .collect();
        assert_eq!(got, expected, "{name}");
    }
}

/// XML → JSON-LD → 1.2 and 2.0 XML → JSON-LD gives back the very same events, so an event
/// exported and captured again is recognised as the same one.
#[test]
fn export_and_read_again_is_the_identity_on_events() {
    for (name, _) in FIXTURES {
        let doc = parse(&read(name));
        let ev = events(&doc);
        let header = XmlHeader {
            creation_date: Some("2024-05-02T00:00:00Z".into()),
            ..doc.header.clone()
        };
        for (version, xml) in [
            (XmlVersion::Epcis12, to_epcis12_xml(&ev, &header)),
            (XmlVersion::Epcis20, to_epcis20_xml(&ev, &header)),
        ] {
            // The one 1.2 example with an extension outside any namespace (`myField` in
            // `extension/extension`): EPCIS 2.0 XML has no place for it.
            if *name == "gs1_1.2_ObjectEvent.xml" && version == XmlVersion::Epcis20 {
                assert!(
                    matches!(&xml, Err(XmlError::NotAnEvent { path, .. }) if path == "events[1].myField")
                );
                continue;
            }
            let xml = xml.unwrap_or_else(|e| panic!("{name} {version:?}: {e}"));
            let again = parse(xml.as_bytes());
            assert_eq!(again.version, version);
            assert_eq!(events(&again), ev, "{name} {version:?}\n{xml}");
            for (a, b) in events(&again).iter().zip(&ev) {
                assert_eq!(event_hash_id(a).unwrap(), event_hash_id(b).unwrap());
            }
            if doc.header.sender.is_some() {
                assert_eq!(again.header.sender, doc.header.sender);
                assert_eq!(again.header.receiver, doc.header.receiver);
                assert_eq!(again.header.document, doc.header.document);
                assert_eq!(again.header.master_data, doc.header.master_data);
            }
        }
    }
}

/// Where each field lands in an exported 1.2 document: the 1.2 schema's wrappers.
#[test]
fn export_puts_fields_in_the_1_2_wrappers() {
    let doc = parse(&read("us_hc_r13_shipment.xml"));
    let mut ev = events(&doc);
    ev.extend(events(&parse(&read("gs1_1.2_TransformationEvent.xml"))));
    let xml = to_epcis12_xml(&ev, &doc.header).unwrap();
    let tree = roxmltree::Document::parse(&xml).unwrap();
    let root = tree.root_element();
    assert_eq!(
        root.tag_name().namespace(),
        Some("urn:epcglobal:epcis:xsd:1")
    );
    assert_eq!(root.attribute("schemaVersion"), Some("1.2"));
    let path = |n: roxmltree::Node| {
        n.ancestors()
            .filter(|a| a.is_element())
            .map(|a| a.tag_name().name().to_owned())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("/")
    };
    let paths: Vec<String> = tree
        .descendants()
        .filter(|n| {
            n.is_element()
                && matches!(
                    n.tag_name().name(),
                    "ilmd"
                        | "sourceList"
                        | "eventID"
                        | "TransformationEvent"
                        | "quantityList"
                        | "lotNumber"
                        | "Identifier"
                        | "EPCISMasterData"
                )
        })
        .map(path)
        .collect();
    for expected in [
        "EPCISDocument/EPCISHeader/StandardBusinessDocumentHeader/Sender/Identifier",
        "EPCISDocument/EPCISHeader/extension/EPCISMasterData",
        "EPCISDocument/EPCISBody/EventList/ObjectEvent/extension/ilmd",
        "EPCISDocument/EPCISBody/EventList/ObjectEvent/extension/ilmd/lotNumber",
        "EPCISDocument/EPCISBody/EventList/ObjectEvent/baseExtension/eventID",
        "EPCISDocument/EPCISBody/EventList/ObjectEvent/extension/sourceList",
        "EPCISDocument/EPCISBody/EventList/TransactionEvent/extension/quantityList",
        "EPCISDocument/EPCISBody/EventList/extension/TransformationEvent",
        "EPCISDocument/EPCISBody/EventList/extension/TransformationEvent/ilmd",
    ] {
        assert!(
            paths.iter().any(|p| p == expected),
            "{expected} not in {paths:#?}"
        );
    }
    // CBV values go back to their 1.2 URNs; cbvmda keeps its US Healthcare namespace.
    assert!(xml.contains("<bizStep>urn:epcglobal:cbv:bizstep:commissioning</bizStep>"));
    assert!(xml.contains("<bizTransaction type=\"urn:epcglobal:cbv:btt:desadv\">"));
    assert!(xml.contains("<source type=\"urn:epcglobal:cbv:sdt:owning_party\">"));
    assert!(xml.contains("xmlns:cbvmda=\"urn:epcglobal:cbv:mda\""));
    assert!(xml.contains("Example Pharma &amp; Co."));

    // 2.0: no wrappers.
    let xml20 = to_epcis20_xml(&ev, &doc.header).unwrap();
    let t20 = roxmltree::Document::parse(&xml20).unwrap();
    assert!(
        t20.descendants()
            .filter(|n| n.tag_name().name() == "extension")
            .all(|n| n
                .parent()
                .is_some_and(|p| p.tag_name().name() == "EPCISHeader"))
    );
    assert_eq!(
        t20.root_element().tag_name().namespace(),
        Some("urn:epcglobal:epcis:xsd:2")
    );
}

#[test]
fn export_escapes_everything_and_refuses_what_xml_cannot_carry() {
    let header = XmlHeader {
        creation_date: Some("2024-05-02T00:00:00Z".into()),
        ..XmlHeader::default()
    };
    let tricky = "a<b>&c\"d'e]]>\u{e9}\u{1F48A}\ttab";
    let mut e = json!({
        "@context": [{"ex": "https://example.com/ns/"}],
        "type": "ObjectEvent",
        "eventTime": "2024-05-01T10:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.1001"],
        "action": "OBSERVE",
        "bizStep": "shipping",
        "bizTransactionList": [{"type": format!("urn:example:{tricky}"), "bizTransaction": tricky}],
        "ex:note": tricky,
        "ilmd": {"cbvmda:lotNumber": tricky}
    });
    for xml in [
        to_epcis12_xml(&[e.clone()], &header).unwrap(),
        to_epcis20_xml(&[e.clone()], &header).unwrap(),
    ] {
        assert!(!xml.contains("a<b>"));
        let back = events(&parse(xml.as_bytes())).remove(0);
        assert_eq!(back, e, "{xml}");
    }
    e["ex:note"] = json!("bell\u{7}");
    assert_eq!(
        to_epcis12_xml(&[e.clone()], &header),
        Err(XmlError::NotXmlText {
            path: "events[0]".into(),
            code: 7
        })
    );
    e["ex:note"] = json!("ok");
    // A prefix beginning with "xml" is XML Namespaces' own, even when the @context declares
    // it (a fuzzer's document did): `<xml:x>` would not read again, so it is refused, at the
    // event and nested.
    let mut reserved = e.clone();
    reserved["@context"] =
        json!([{"ex": "https://example.com/ns/", "xml": "http://www.w3.org/XML/1998/namespace"}]);
    reserved["xml:x"] = json!("1");
    assert!(matches!(
        to_epcis12_xml(&[reserved.clone()], &header),
        Err(XmlError::NotAnEvent { path, .. }) if path == "events[0].xml:x"
    ));
    reserved.as_object_mut().unwrap().remove("xml:x");
    reserved["ex:note"] = json!({"xml:y": "1"});
    assert!(matches!(
        to_epcis20_xml(&[reserved], &header),
        Err(XmlError::NotAnEvent { path, .. }) if path.ends_with("xml:y")
    ));
    e["undeclared:x"] = json!("1");
    assert!(matches!(
        to_epcis20_xml(&[e], &header),
        Err(XmlError::NotAnEvent { path, .. }) if path == "events[0].undeclared:x"
    ));
    assert!(matches!(
        to_epcis12_xml(&[json!({"type": "QuantityEvent"})], &header),
        Err(XmlError::NotAnEvent { .. })
    ));
    assert!(matches!(
        to_epcis12_xml(&[], &XmlHeader::default()),
        Err(XmlError::NotAnEvent { path, .. }) if path == "header.creationDate"
    ));
}

// ---------------------------------------------------------------------------------------------
// Hostile and broken input
// ---------------------------------------------------------------------------------------------

fn doc_with(events: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<epcis:EPCISDocument xmlns:epcis=\"urn:epcglobal:epcis:xsd:1\" schemaVersion=\"1.2\" creationDate=\"2024-01-01T00:00:00Z\"><EPCISBody><EventList>{events}</EventList></EPCISBody></epcis:EPCISDocument>"
    )
}

const GOOD_EVENT: &str = "<ObjectEvent><eventTime>2024-01-01T00:00:00Z</eventTime><eventTimeZoneOffset>+00:00</eventTimeZoneOffset><epcList><epc>urn:epc:id:sgtin:0614141.107346.1</epc></epcList><action>OBSERVE</action></ObjectEvent>";

#[test]
fn billion_laughs_and_external_entities_are_refused_at_the_doctype() {
    let laughs = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n]>\n<epcis:EPCISDocument xmlns:epcis=\"urn:epcglobal:epcis:xsd:1\">&lol3;</epcis:EPCISDocument>";
    assert_eq!(
        parse_xml_document(laughs.as_bytes(), &XmlLimits::default()),
        Err(XmlError::Doctype { line: 2, column: 1 })
    );
    let external =
        "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><d>&x;</d>";
    assert_eq!(
        parse_xml_document(external.as_bytes(), &XmlLimits::default()),
        Err(XmlError::Doctype {
            line: 1,
            column: 22
        })
    );
    let bare = "<!DOCTYPE project><d/>";
    assert!(matches!(
        parse_xml_document(bare.as_bytes(), &XmlLimits::default()),
        Err(XmlError::Doctype { .. })
    ));
    // Without a DTD an entity can only be undeclared.
    let undeclared = doc_with("<ObjectEvent><eventTime>&x;</eventTime></ObjectEvent>");
    assert!(matches!(
        parse_xml_document(undeclared.as_bytes(), &XmlLimits::default()),
        Err(XmlError::UnknownEntity { name, line: 2, .. }) if name == "x"
    ));
}

#[test]
fn deep_nesting_is_refused_without_recursion() {
    for depth in [10_000usize, 200_000] {
        let doc = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert!(matches!(
            parse_xml_document(doc.as_bytes(), &XmlLimits::default()),
            Err(XmlError::TooDeep {
                max: 48,
                line: 1,
                column: 145
            })
        ));
    }
    // Inside an event's extension too.
    let ext = format!(
        "<ObjectEvent xmlns:x=\"urn:x\"><x:a>{}{}</x:a></ObjectEvent>",
        "<x:b>".repeat(60),
        "</x:b>".repeat(60)
    );
    assert!(matches!(
        parse_xml_document(doc_with(&ext).as_bytes(), &XmlLimits::default()),
        Err(XmlError::TooDeep { .. })
    ));
}

#[test]
fn size_node_and_event_limits_hold() {
    let doc = doc_with(&GOOD_EVENT.repeat(20));
    let limits = XmlLimits {
        max_bytes: 100,
        ..XmlLimits::default()
    };
    assert_eq!(
        parse_xml_document(doc.as_bytes(), &limits),
        Err(XmlError::TooLarge {
            size: doc.len(),
            max: 100
        })
    );
    let limits = XmlLimits {
        max_events: 19,
        ..XmlLimits::default()
    };
    assert_eq!(
        parse_xml_document(doc.as_bytes(), &limits),
        Err(XmlError::TooManyEvents { max: 19 })
    );
    let limits = XmlLimits {
        max_nodes: 50,
        ..XmlLimits::default()
    };
    assert_eq!(
        parse_xml_document(doc.as_bytes(), &limits),
        Err(XmlError::TooManyNodes { max: 50 })
    );
    assert_eq!(parse(doc.as_bytes()).events.len(), 20);
    // The default refuses 100 MB before looking at a byte of it.
    let big = vec![b' '; 100_000_000];
    assert_eq!(
        parse_xml_document(&big, &XmlLimits::default()),
        Err(XmlError::TooLarge {
            size: 100_000_000,
            max: 64 << 20
        })
    );
}

#[test]
fn malformed_and_foreign_documents_say_where() {
    let cases: &[(&[u8], XmlError)] = &[
        (
            b"<a>\n  <b></a>",
            XmlError::Malformed {
                reason: "expected 'b' tag, not 'a' at 2:6".into(),
                line: 2,
                column: 6,
            },
        ),
        (b"\xff\xfe<a/>", XmlError::NotUtf8 { offset: 0 }),
        (
            b"<EPCISDocument/>",
            XmlError::NotEpcis {
                found: "EPCISDocument".into(),
                line: 1,
                column: 1,
            },
        ),
        (
            b"<x:EPCISDocument xmlns:x=\"urn:epcglobal:epcis:xsd:3\"/>",
            XmlError::NotEpcis {
                found: "{urn:epcglobal:epcis:xsd:3}EPCISDocument".into(),
                line: 1,
                column: 1,
            },
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            parse_xml_document(input, &XmlLimits::default()).as_ref(),
            Err(expected),
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

/// A mixed document: each bad event is its own error, at its own position, and the good ones
/// around it are read.
#[test]
fn one_bad_event_does_not_spoil_the_others() {
    let bad_field = "<ObjectEvent>\n<eventTime>2024-01-01T00:00:00Z</eventTime><bizstep>x</bizstep></ObjectEvent>";
    let quantity_event = "<QuantityEvent/>";
    let bad_quantity = "<ObjectEvent><extension><quantityList><quantityElement><epcClass>urn:epc:class:lgtin:0614141.107346.L1</epcClass><quantity>lots</quantity></quantityElement></quantityList></extension></ObjectEvent>";
    let twice = "<ObjectEvent><action>ADD</action><action>ADD</action></ObjectEvent>";
    let foreign = "<x:Thing xmlns:x=\"urn:x\"/>";
    let doc = doc_with(
        &[
            GOOD_EVENT,
            bad_field,
            quantity_event,
            bad_quantity,
            twice,
            foreign,
            GOOD_EVENT,
        ]
        .concat(),
    );
    let got = parse(doc.as_bytes());
    assert_eq!(got.events.len(), 7);
    assert!(got.events[0].is_ok() && got.events[6].is_ok());
    assert_eq!(
        got.events[1],
        Err(XmlError::UnexpectedElement {
            path: "EventList/ObjectEvent[1]".into(),
            name: "bizstep".into(),
            line: 3,
            column: 44
        })
    );
    assert!(
        matches!(&got.events[2], Err(XmlError::UnsupportedEvent { event_type, .. }) if event_type == "QuantityEvent")
    );
    assert!(matches!(
        &got.events[3],
        Err(XmlError::InvalidValue { path, got, .. })
            if path == "EventList/ObjectEvent[3]/quantityList/quantityElement[0]/quantity" && got == "lots"
    ));
    assert!(
        matches!(&got.events[4], Err(XmlError::Repeated { path, .. }) if path == "EventList/ObjectEvent[4]/action")
    );
    assert!(
        matches!(&got.events[5], Err(XmlError::UnexpectedElement { name, .. }) if name == "{urn:x}Thing")
    );
    assert_eq!(
        got.events[3].as_ref().unwrap_err().code(),
        "XML_INVALID_VALUE"
    );
}

#[test]
fn namespaces_of_extensions_survive_in_the_context() {
    let doc = parse(&read("ref_TransformationEventWithUserExtensions.xml"));
    let e = events(&doc).remove(0);
    assert_eq!(
        e["@context"],
        json!([{
            "example3": "http://ns.example.com/epcis-3/",
            "example": "http://ns.example.com/epcis/",
            "example2": "http://ns.example.com/epcis-2/",
            "example4": "http://ns.example.com/epcis-4/"
        }])
    );
    assert_eq!(e["ilmd"]["cbvmda:lotNumber"], "LOTABC");
    assert_eq!(
        e["example2:furtherData"],
        json!({"example2:assemblyLine": "2", "example2:workingShift": "1"})
    );
    assert_eq!(
        e["sensorElementList"][0]["sensorReport"][0]["type"],
        "gs1:Temperature"
    );
    assert_eq!(
        e["sensorElementList"][0]["sensorReport"][0]["minValue"],
        json!(12.4)
    );
    // The 2.0 namespace of cbvmda (with its colon) is kept apart from the 1.2 one.
    let various = events(&parse(&read("ref_epcisDocWithVariousEventTypes.xml")));
    assert_eq!(
        various[3]["@context"],
        json!([{"cbvmda": "urn:epcglobal:cbv:mda:"}])
    );
}
