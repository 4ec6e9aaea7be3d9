//! The one verdict path: what the web renders (`verify::verification`, serialized) is exactly
//! what GraphQL `verify` answers, for every kind of caller; and what a state change answers
//! with (its replay, with its own event applied) is exactly what a fresh `verify` says after it.

use rxledger_core::keys::SigningKey;
use rxledger_graphql::verify::{self, Wanted};
use rxledger_graphql::{Caller, Role, Services};
use rxledger_store::packs::append_state_change;
use rxledger_store::testdb::TempDb;
use serde_json::{Value, json};

const VERIFICATION: &str = "verdict dispensable euAlert reasons { code severity message evidence euAlert nmvsCode } \
    product { gtin serial lot expiry tradeItem { gtin productName strength dosageForm netContent \
    marketingAuthorisationHolder imageUrl } } status evidence { index leafHash treeSize proof } \
    checkpointSize checkpointNote cosignedCheckpoint { size note cosigners } \
    timeline { index eventTime eventType action bizStep disposition inherited } \
    completeness { mapEntry { index dataBase64 proof } identifiers { identifier \
    entries { index leafHash } siblings leaf { key count head } } }";

/// (organization, role, site GLN)
const ORGS: &[(&str, Role, &str)] = &[
    ("acme", Role::Manufacturer, "0614141000005"),
    ("pharm-a", Role::Pharmacy, "0614141000043"),
    ("pharm-b", Role::Pharmacy, "0614141000050"),
    ("nca", Role::Regulator, "0614141000074"),
];

fn at(offset_ms: i64) -> String {
    rxledger_core::epcis::format_time(rxledger_store::now_ms() + offset_ms)
}

async fn services(t: &TempDb) -> Services {
    let db = t.db.clone();
    let key = SigningKey::from_bytes(&[5u8; 32]).unwrap();
    let services = Services::open(db, key, "verify.test/log").await.unwrap();
    for (org, role, gln) in ORGS {
        let r = &services.registry;
        r.add_organization(org, org, role.as_str()).await.unwrap();
        r.add_site(gln, org, org).await.unwrap();
    }
    services
        .registry
        .add_company_prefix("acme", "0614141")
        .await
        .unwrap();
    let item = rxledger_store::TradeItem {
        product_name: "Amoxil".into(),
        strength: Some("500 mg".into()),
        ..Default::default()
    };
    let gtin = rxledger_core::gs1::Gtin::parse("10614141073464").unwrap();
    services.products.set(&gtin, item, "acme").await.unwrap();
    services
}

/// Pack `serial`, commissioned by acme and shipped to pharm-a; its element string.
async fn pack(s: &Services, serial: &str) -> String {
    let epc = format!("urn:epc:id:sgtin:0614141.107346.{serial}");
    let events = [
        json!({
            "type": "ObjectEvent", "eventTime": at(-60_000), "eventTimeZoneOffset": "+00:00",
            "epcList": [epc], "action": "ADD", "bizStep": "commissioning",
            "disposition": "active", "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
            "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-06-30"}
        }),
        json!({
            "type": "ObjectEvent", "eventTime": at(-30_000), "eventTimeZoneOffset": "+00:00",
            "epcList": [epc], "action": "OBSERVE", "bizStep": "shipping",
            "disposition": "in_transit", "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
            "destinationList": [
                {"type": "owning_party", "destination": "urn:epc:id:pgln:0614141.00004"},
            ],
        }),
    ];
    for e in events {
        append_state_change(&s.ledger, "acme", e, None)
            .await
            .unwrap()
            .unwrap();
    }
    format!("(01)10614141073464(21){serial}")
}

fn caller(org: &str) -> Caller {
    match ORGS.iter().find(|o| o.0 == org) {
        Some((org, role, _)) => Caller::Key {
            key_id: format!("key-{org}"),
            org_id: org.to_string(),
            role: *role,
        },
        None => Caller::Anonymous,
    }
}

async fn execute(schema: &rxledger_graphql::RxSchema, c: &Caller, query: String) -> Value {
    let mut req = async_graphql::Request::new(query);
    if *c != Caller::Anonymous {
        req = req.data(c.clone());
    }
    let r = schema.execute(req).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.data.into_json().unwrap()
}

#[tokio::test]
async fn the_typed_answer_is_the_graphql_answer() {
    let t = TempDb::sqlite().await.unwrap();
    let s = services(&t).await;
    let schema = rxledger_graphql::schema(s.clone());
    let known = pack(&s, "1").await;
    let codes = [
        known.clone(),
        "(01)10614141073464(21)999".to_string(),
        "(01)10614141073464(17)310630(10)L2(21)1".to_string(),
        "(01)10614141073464".to_string(),
    ];
    for org in ["anonymous", "pharm-a", "pharm-b", "nca"] {
        let c = caller(org);
        for code in &codes {
            let query = format!("{{ verify(code: \"{code}\") {{ {VERIFICATION} }} }}");
            let graphql = execute(&schema, &c, query).await["verify"].clone();
            let typed = verify::verification(&s, &c, code, Wanted::ALL)
                .await
                .unwrap();
            assert_eq!(
                serde_json::to_value(&typed).unwrap(),
                graphql,
                "{org}: {code}"
            );
            // Serialized in the order GraphQL writes the fields, so the bytes are the same.
            assert_eq!(
                serde_json::to_string(&typed).unwrap(),
                graphql.to_string(),
                "{org}: {code}"
            );
        }
    }
    assert!(
        verify::verification(&s, &Caller::Anonymous, "(01)123", Wanted::ALL)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_change_answers_with_what_a_fresh_verify_says_after_it() {
    let t = TempDb::sqlite().await.unwrap();
    let s = services(&t).await;
    let schema = rxledger_graphql::schema(s.clone());
    let cases = [
        ("pharm-a", vec!["dispense", "undoDispense", "dispense"]),
        ("pharm-b", vec!["dispense"]),
        ("pharm-a", vec!["reportStolen"]),
        ("acme", vec!["destroy"]),
        ("nca", vec!["destroy"]),
    ];
    for (n, (org, changes)) in cases.into_iter().enumerate() {
        let code = pack(&s, &format!("C{n}")).await;
        let c = caller(org);
        for change in changes {
            let mutation = format!(
                "mutation {{ {change}(code: \"{code}\") {{ verification {{ {VERIFICATION} }} }} }}"
            );
            let answered = execute(&schema, &c, mutation).await[change]["verification"].clone();
            let query = format!("{{ verify(code: \"{code}\") {{ {VERIFICATION} }} }}");
            let fresh = execute(&schema, &c, query).await["verify"].clone();
            assert_eq!(answered, fresh, "{change} by {org}");
        }
    }
}
