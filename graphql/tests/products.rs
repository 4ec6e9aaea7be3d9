//! Product master data through `schema.execute`: who may register a GTIN's trade item, that
//! anyone may read it, that every field is bounded, and that verdicts carry it (or say that
//! none is registered).

use rxledger_core::keys::SigningKey;
use rxledger_graphql::{Caller, Role, RxSchema, Services};
use rxledger_store::packs::append_state_change;
use rxledger_store::testdb::TempDb;
use serde_json::{Value, json};

const GTIN: &str = "10614141073464";
/// A GTIN under a company prefix nobody registered.
const ORPHAN: &str = "10812345000013";

const REGISTER: &str = "mutation($i: TradeItemInput!) { registerProduct(input: $i) { gtin \
    productName strength dosageForm netContent marketingAuthorisationHolder imageUrl } }";
const READ: &str = "query($g: String!) { product(gtin: $g) { gtin productName strength \
    dosageForm netContent marketingAuthorisationHolder imageUrl } }";

async fn schema(t: &TempDb) -> RxSchema {
    let key = SigningKey::from_bytes(&[7u8; 32]).unwrap();
    let s = Services::open(t.db.clone(), key, "products.test/log")
        .await
        .unwrap();
    for (org, role) in [
        ("acme", "MANUFACTURER"),
        ("rival", "MANUFACTURER"),
        ("pharm", "PHARMACY"),
        ("nca", "REGULATOR"),
        ("root", "ADMIN"),
    ] {
        s.registry.add_organization(org, org, role).await.unwrap();
    }
    s.registry
        .add_company_prefix("acme", "0614141")
        .await
        .unwrap();
    s.registry
        .add_company_prefix("rival", "0614142")
        .await
        .unwrap();
    s.registry
        .add_site("0614141000005", "acme", "Acme plant")
        .await
        .unwrap();
    commission(&s, "1").await;
    rxledger_graphql::schema(s)
}

async fn commission(s: &Services, serial: &str) {
    let e = json!({
        "type": "ObjectEvent",
        "eventTime": rxledger_core::epcis::format_time(rxledger_store::now_ms() - 60_000),
        "eventTimeZoneOffset": "+00:00",
        "epcList": [format!("urn:epc:id:sgtin:0614141.107346.{serial}")],
        "action": "ADD", "bizStep": "commissioning", "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-06-30"}
    });
    append_state_change(&s.ledger, "acme", e, None)
        .await
        .unwrap()
        .unwrap();
}

fn key(org: &str, role: Role) -> Caller {
    Caller::Key {
        key_id: format!("k-{org}"),
        org_id: org.into(),
        role,
    }
}

async fn run(schema: &RxSchema, c: &Caller, query: &str, vars: Value) -> Value {
    let req = async_graphql::Request::new(query)
        .variables(async_graphql::Variables::from_json(vars))
        .data(c.clone());
    serde_json::to_value(schema.execute(req).await).unwrap()
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

fn amoxil(gtin: &str) -> Value {
    json!({ "i": {
        "gtin": gtin, "productName": " Amoxil ", "strength": "500 mg",
        "dosageForm": "film-coated tablet", "netContent": "28 tablets",
        "marketingAuthorisationHolder": "Acme Pharma Ltd",
        "imageUrl": "https://cdn.example.org/amoxil.png"
    }})
}

#[tokio::test]
async fn the_brand_owner_registers_and_anyone_reads() {
    let t = TempDb::sqlite().await.unwrap();
    let schema = schema(&t).await;
    let acme = key("acme", Role::Manufacturer);
    let r = run(&schema, &acme, REGISTER, amoxil(GTIN)).await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(
        r["data"]["registerProduct"]["productName"], "Amoxil",
        "trimmed"
    );

    let read = run(&schema, &Caller::Anonymous, READ, json!({ "g": GTIN })).await;
    assert_eq!(
        read["data"]["product"],
        json!({
            "gtin": GTIN, "productName": "Amoxil", "strength": "500 mg",
            "dosageForm": "film-coated tablet", "netContent": "28 tablets",
            "marketingAuthorisationHolder": "Acme Pharma Ltd",
            "imageUrl": "https://cdn.example.org/amoxil.png"
        })
    );
    // The verdict carries it, for a known pack and for an unknown serial of the GTIN alike.
    for serial in ["1", "999"] {
        let v = run(
            &schema,
            &Caller::Anonymous,
            "query($c: String!) { verify(code: $c) { verdict product { tradeItem { productName netContent } } } }",
            json!({ "c": format!("(01){GTIN}(21){serial}") }),
        )
        .await;
        assert_eq!(
            v["data"]["verify"]["product"]["tradeItem"],
            json!({ "productName": "Amoxil", "netContent": "28 tablets" }),
            "{v}"
        );
    }
    // Registering again replaces the row: a field left out is cleared.
    let r = run(
        &schema,
        &acme,
        REGISTER,
        json!({ "i": { "gtin": GTIN, "productName": "Amoxil Forte" } }),
    )
    .await;
    assert!(r["errors"].is_null(), "{r}");
    let read = run(&schema, &Caller::Anonymous, READ, json!({ "g": GTIN })).await;
    assert_eq!(read["data"]["product"]["productName"], "Amoxil Forte");
    assert!(read["data"]["product"]["strength"].is_null(), "{read}");
}

#[tokio::test]
async fn only_the_brand_owner_a_regulator_or_an_admin_may_write() {
    let t = TempDb::sqlite().await.unwrap();
    let schema = schema(&t).await;
    let cases = [
        (Caller::Anonymous, GTIN, "UNAUTHENTICATED"),
        (key("rival", Role::Manufacturer), GTIN, "FORBIDDEN"),
        (key("pharm", Role::Pharmacy), GTIN, "FORBIDDEN"),
        // A key of the owning organization, but not a manufacturer's.
        (key("acme", Role::Wholesaler), GTIN, "FORBIDDEN"),
        // Nobody owns this GTIN's prefix, so no manufacturer may describe it.
        (key("acme", Role::Manufacturer), ORPHAN, "FORBIDDEN"),
        (key("nca", Role::Regulator), GTIN, ""),
        (key("root", Role::Admin), ORPHAN, ""),
    ];
    for (c, gtin, want) in cases {
        let r = run(&schema, &c, REGISTER, amoxil(gtin)).await;
        assert_eq!(code(&r), want, "{c:?} on {gtin}: {r}");
    }
    let read = run(&schema, &Caller::Anonymous, READ, json!({ "g": ORPHAN })).await;
    assert_eq!(read["data"]["product"]["productName"], "Amoxil");
}

#[tokio::test]
async fn every_field_is_bounded_and_refusals_store_nothing() {
    let t = TempDb::sqlite().await.unwrap();
    let schema = schema(&t).await;
    let acme = key("acme", Role::Manufacturer);
    let with = |field: &str, value: Value| {
        let mut v = amoxil(GTIN);
        v["i"][field] = value;
        v
    };
    let cases = [
        (with("productName", json!("")), "BAD_REQUEST"),
        (with("productName", json!("x".repeat(201))), "BAD_REQUEST"),
        (with("strength", json!("5".repeat(81))), "BAD_REQUEST"),
        (with("dosageForm", json!("tab\u{7}let")), "BAD_REQUEST"),
        (with("netContent", json!("n".repeat(81))), "BAD_REQUEST"),
        (
            with("marketingAuthorisationHolder", json!("m".repeat(201))),
            "BAD_REQUEST",
        ),
        (with("imageUrl", json!("http://a.org/x.png")), "BAD_REQUEST"),
        (
            with("imageUrl", json!("https://a.org/\"onerror=\"x")),
            "BAD_REQUEST",
        ),
        (with("gtin", json!("10614141073465")), "INVALID_CODE"),
    ];
    for (vars, want) in cases {
        let r = run(&schema, &acme, REGISTER, vars.clone()).await;
        assert_eq!(code(&r), want, "{vars}: {r}");
    }
    let read = run(&schema, &Caller::Anonymous, READ, json!({ "g": GTIN })).await;
    assert!(read["data"]["product"].is_null(), "{read}");
    // And a GTIN without master data says so in the verdict: null, not an empty item.
    let v = run(
        &schema,
        &Caller::Anonymous,
        "{ verify(code: \"(01)10614141073464(21)1\") { verdict product { gtin tradeItem { productName } } } }",
        json!({}),
    )
    .await;
    assert_eq!(v["data"]["verify"]["verdict"], "AUTHENTIC", "{v}");
    assert!(v["data"]["verify"]["product"]["tradeItem"].is_null(), "{v}");
}
