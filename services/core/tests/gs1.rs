//! GS1 identifier parsing: known answers from GS1 documents and round trips through all four
//! input forms (element string, (AI) text, Digital Link, EPC URN).

use proptest::prelude::*;
use rxledger_core::gs1::{
    CalendarDate, Expiry, Gs1Error, Gtin, Lot, ScannedCode, Serial, check_digit, lgtin_urn,
    parse_code,
};

#[test]
fn known_answers() {
    // GS1 General Specifications example GTIN and the TDS SGTIN example.
    assert_eq!(check_digit("0950600013435"), Some('2'));
    let c = parse_code("urn:epc:id:sgtin:0614141.107346.2017").unwrap();
    assert_eq!(c.gtin.unwrap().as_str(), "10614141073464");
    assert_eq!(c.serial.unwrap().as_str(), "2017");
    let c = parse_code("https://id.gs1.org/01/10614141073464/21/2017").unwrap();
    assert_eq!(
        c.sgtin().unwrap().to_epc_urn(7).unwrap(),
        "urn:epc:id:sgtin:0614141.107346.2017"
    );
}

#[test]
fn all_forms_of_one_pack_agree() {
    let forms = [
        "]d2010950600013435217201225\u{1d}10ABC123\u{1d}21XYZ".replace("\u{1d}10", "10"),
        "010950600013435217201225".to_owned() + "10ABC123<GS>21XYZ",
        "(01)09506000134352(17)201225(10)ABC123(21)XYZ".to_owned(),
        "https://example.com/01/09506000134352/10/ABC123/21/XYZ?17=201225&linkType=gs1:pip"
            .to_owned(),
    ];
    let first = parse_code(&forms[0]).unwrap();
    assert_eq!(
        first.expiry.as_ref().unwrap().last_valid_day(2020),
        CalendarDate::new(2020, 12, 25).unwrap()
    );
    for f in &forms[1..] {
        assert_eq!(parse_code(f).unwrap(), first, "{f}");
    }
}

#[test]
fn wedge_substitutes_are_accepted() {
    for sep in [
        "\u{1d}", "<GS>", "{GS}", "[GS]", "^]", "\\x1d", "\\u001d", "\u{241d}", "<FNC1>",
    ] {
        let s = format!("]d2010950600013435210ABC{sep}21XYZ");
        let c = parse_code(&s).unwrap_or_else(|e| panic!("{sep:?}: {e}"));
        assert_eq!(c.lot.unwrap().as_str(), "ABC", "{sep:?}");
    }
}

#[test]
fn precise_errors() {
    assert_eq!(
        parse_code("0109506000134353"),
        Err(Gs1Error::BadCheckDigit {
            ai: "01",
            expected: '2',
            got: '3'
        })
    );
    // GS dropped after the serial: it swallowed the expiry date.
    assert_eq!(
        parse_code("010950600013435221XYZ17261231"),
        Err(Gs1Error::MissingSeparator {
            ai: "21",
            position: 21
        })
    );
    // A value longer than the AI's maximum is a dropped separator too.
    assert!(matches!(
        parse_code("010950600013435221ABCDEFGHIJKLMNOPQRSTUVW"),
        Err(Gs1Error::MissingSeparator {
            ai: "21",
            position: 38
        })
    ));
    // A `%` must be followed by two hex digits; `%+4` used to be read as byte 0x04.
    assert!(matches!(
        parse_code("https://id.gs1.org/01/09506000134352/21/A%+4B"),
        Err(Gs1Error::BadPercentEncoding { .. })
    ));
    assert_eq!(
        parse_code("https://id.gs1.org/01/09506000134352/21/A%2DB")
            .unwrap()
            .sgtin()
            .unwrap()
            .serial
            .as_str(),
        "A-B"
    );
    assert_eq!(
        parse_code("21XYZ"),
        Err(Gs1Error::MissingGtin {
            what: "a serial number (21)"
        })
    );
    assert!(matches!(
        parse_code("9912345"),
        Err(Gs1Error::UnknownAi { position: 0, .. })
    ));
    assert!(matches!(
        parse_code("010950600013435221X~Z"),
        Err(Gs1Error::InvalidCharacter {
            ai: "21",
            position: 19,
            ch: '~',
            ..
        })
    ));
    assert!(matches!(
        parse_code("0109506000134352171313"),
        Err(Gs1Error::WrongLength { .. } | Gs1Error::BadDate { .. })
    ));
    assert!(matches!(
        parse_code("https://id.gs1.org/01/09506000134352/21/X/10/L"),
        Err(Gs1Error::BadDigitalLink { .. })
    ));
    assert_eq!(
        parse_code("0109506000134352\u{1d}10A\u{1d}10B"),
        Err(Gs1Error::DuplicateAi {
            ai: "10",
            position: 21
        })
    );
}

#[test]
fn epc_urns_with_escapes_and_classes() {
    let c = parse_code("urn:epc:id:sgtin:0614141.107346.A%2FB").unwrap();
    assert_eq!(c.serial.unwrap().as_str(), "A/B");
    let c = parse_code("urn:epc:class:lgtin:4012345.012345.998877").unwrap();
    assert_eq!(c.lot.unwrap().as_str(), "998877");
    let c = parse_code("urn:epc:id:sscc:0614141.1234567890").unwrap();
    assert_eq!(c.sscc.unwrap().as_str(), "106141412345678908");
    let c = parse_code("urn:epc:id:sgln:0614141.00777.0").unwrap();
    assert_eq!(c.gln.unwrap().as_str(), "0614141007776");
    assert!(matches!(
        parse_code("urn:epc:id:grai:4012345.66666.87"),
        Err(Gs1Error::UnsupportedEpcScheme { .. })
    ));
}

fn gtin_strategy() -> impl Strategy<Value = Gtin> {
    proptest::collection::vec(0u8..10, 13).prop_map(|d| {
        let body: String = d.iter().map(|x| char::from(b'0' + x)).collect();
        let cd = check_digit(&body).unwrap();
        Gtin::parse(&format!("{body}{cd}")).unwrap()
    })
}

fn cs82_strategy() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9!\"%&'()*+,./:;<=>?_-]{1,20}").unwrap()
}

fn expiry_strategy() -> impl Strategy<Value = Expiry> {
    (0u8..100, 1u8..13, 0u8..29)
        .prop_map(|(y, m, d)| Expiry::parse(&format!("{y:02}{m:02}{d:02}")).unwrap())
}

proptest! {
    #[test]
    fn round_trips_through_all_forms(
        gtin in gtin_strategy(),
        serial in cs82_strategy(),
        lot in cs82_strategy(),
        expiry in expiry_strategy(),
        cpl in 6usize..=12,
    ) {
        let code = ScannedCode {
            gtin: Some(gtin.clone()),
            serial: Some(Serial::parse(&serial).unwrap()),
            lot: Some(Lot::parse(&lot).unwrap()),
            expiry: Some(expiry),
            ..ScannedCode::default()
        };
        let element = code.to_element_string();
        prop_assert_eq!(&parse_code(&format!("]d2{element}")).unwrap(), &code);
        prop_assert_eq!(&parse_code(&element.replace('\u{1d}', "<GS>")).unwrap(), &code);
        prop_assert_eq!(&parse_code(&code.to_human_readable()).unwrap(), &code);
        prop_assert_eq!(&parse_code(&code.to_digital_link("https://id.gs1.org").unwrap()).unwrap(), &code);
        let sgtin = code.sgtin().unwrap();
        let urn = sgtin.to_epc_urn(cpl).unwrap();
        let back = parse_code(&urn).unwrap();
        prop_assert_eq!(back.sgtin().unwrap(), sgtin);
        let lgtin = lgtin_urn(&gtin, code.lot.as_ref().unwrap(), cpl).unwrap();
        prop_assert_eq!(parse_code(&lgtin).unwrap().lot, code.lot.clone());
    }

    #[test]
    fn any_single_digit_change_is_detected(gtin in gtin_strategy(), pos in 0usize..14, delta in 1u8..10) {
        let mut digits: Vec<u8> = gtin.as_str().bytes().map(|b| b - b'0').collect();
        digits[pos] = (digits[pos] + delta) % 10;
        let s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        let rejected = matches!(Gtin::parse(&s), Err(Gs1Error::BadCheckDigit { .. }));
        prop_assert!(rejected, "{} accepted", s);
    }
}

/// Found by `cargo fuzz` (digital_link): a numeric query key without a value was accepted as
/// an empty GLN extension, which then rendered as a Digital Link that does not parse.
#[test]
fn data_attributes_need_a_value() {
    for uri in [
        "https://id.gs1.org/414/0614141000005?254",
        "https://id.gs1.org/414/0614141000005?254=",
        "https://id.gs1.org/01/09506000134352/21/X?10=",
    ] {
        assert!(
            matches!(
                parse_code(uri),
                Err(Gs1Error::BadDigitalLink {
                    reason: "data attribute without a value",
                    ..
                })
            ),
            "{uri}: {:?}",
            parse_code(uri)
        );
    }
    // Other query parameters (not AIs) may be bare, and real attributes still parse.
    let c = parse_code("https://id.gs1.org/01/09506000134352/21/X?linkType&17=261231").unwrap();
    assert_eq!(c.serial.unwrap().as_str(), "X");
}
