//! The custody matrix through `schema.execute`: every role, in custody or not, against every
//! state change, under both custody policies. Each case runs on a fresh pack commissioned by
//! the brand owner and shipped to its custodian.

use rxledger_core::keys::SigningKey;
use rxledger_graphql::{Caller, CustodyPolicy, Role, Services};
use rxledger_store::packs::append_state_change;
use rxledger_store::testdb::TempDb;
use serde_json::{Value, json};

/// (organization, role, site GLN, SGLN company prefix . location reference)
const ORGS: &[(&str, Role, &str, &str)] = &[
    ("acme", Role::Manufacturer, "0614141000005", "0614141.00000"),
    (
        "rival",
        Role::Manufacturer,
        "0614141000067",
        "0614141.00006",
    ),
    ("whole", Role::Wholesaler, "0614141000036", "0614141.00003"),
    ("pharm-a", Role::Pharmacy, "0614141000043", "0614141.00004"),
    ("pharm-b", Role::Pharmacy, "0614141000050", "0614141.00005"),
    ("nca", Role::Regulator, "0614141000074", "0614141.00007"),
];

const OK: &str = "OK";
const OUTSIDE: &str = "NOT_IN_YOUR_CUSTODY";
const ROLE: &str = "FORBIDDEN";

fn sgln(org: &str) -> &'static str {
    ORGS.iter().find(|o| o.0 == org).unwrap().3
}

fn now_rfc3339(offset_ms: i64) -> String {
    rxledger_core::epcis::format_time(rxledger_store::now_ms() + offset_ms)
}

fn commission(serial: &str) -> Value {
    json!({
        "type": "ObjectEvent", "eventTime": now_rfc3339(-60_000), "eventTimeZoneOffset": "+00:00",
        "epcList": [format!("urn:epc:id:sgtin:0614141.107346.{serial}")],
        "action": "ADD", "bizStep": "commissioning", "disposition": "active",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "ilmd": {"cbvmda:lotNumber": "L1", "cbvmda:itemExpirationDate": "2031-06-30"}
    })
}

fn ship(serial: &str, to: &str) -> Value {
    json!({
        "type": "ObjectEvent", "eventTime": now_rfc3339(-30_000), "eventTimeZoneOffset": "+00:00",
        "epcList": [format!("urn:epc:id:sgtin:0614141.107346.{serial}")],
        "action": "OBSERVE", "bizStep": "shipping", "disposition": "in_transit",
        "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
        "destinationList": [
            {"type": "owning_party", "destination": format!("urn:epc:id:pgln:{}", sgln(to))},
        ],
    })
}

struct World {
    services: Services,
    next: u32,
}

impl World {
    async fn new(t: &TempDb) -> World {
        let db = t.db.clone();
        let key = SigningKey::from_bytes(&[3u8; 32]).unwrap();
        let services = Services::open(db, key, "custody.test/log").await.unwrap();
        for (org, role, gln, _) in ORGS {
            let r = &services.registry;
            r.add_organization(org, org, role.as_str()).await.unwrap();
            r.add_site(gln, org, org).await.unwrap();
        }
        services
            .registry
            .add_company_prefix("acme", "0614141")
            .await
            .unwrap();
        World { services, next: 0 }
    }

    /// A fresh pack in `custodian`'s custody; its GS1 element string.
    async fn pack(&mut self, custodian: &str) -> String {
        self.next += 1;
        let serial = format!("S{}", self.next);
        let l = &self.services.ledger;
        for e in [commission(&serial), ship(&serial, custodian)] {
            append_state_change(l, "acme", e, None)
                .await
                .unwrap()
                .unwrap();
        }
        format!("(01)10614141073464(21){serial}")
    }
}

fn caller(org: &str) -> Caller {
    let role = ORGS.iter().find(|o| o.0 == org).unwrap().1;
    Caller::Key {
        key_id: format!("key-{org}"),
        org_id: org.into(),
        role,
    }
}

/// Runs a mutation as `org`: `OK` or the error code.
async fn run(schema: &rxledger_graphql::RxSchema, org: &str, query: String) -> String {
    let r = schema
        .execute(async_graphql::Request::new(query).data(caller(org)))
        .await;
    match r.errors.first() {
        None => OK.to_string(),
        Some(e) => e
            .extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .map(|c| c.to_string().trim_matches('"').to_string())
            .unwrap_or_else(|| format!("no code: {}", e.message)),
    }
}

fn mutation(field: &str, code: &str) -> String {
    format!("mutation {{ {field}(code: \"{code}\") {{ entryIndex }} }}")
}

/// (change, custodian, caller, expected under warn, expected under refuse)
const MATRIX: &[(&str, &str, &str, &str, &str)] = &[
    ("dispense", "pharm-a", "pharm-a", OK, OK),
    ("dispense", "pharm-a", "pharm-b", OK, OUTSIDE),
    ("dispense", "whole", "pharm-a", OK, OUTSIDE),
    ("dispense", "pharm-a", "whole", ROLE, ROLE),
    ("dispense", "pharm-a", "acme", ROLE, ROLE),
    ("dispense", "pharm-a", "nca", ROLE, ROLE),
    ("reportStolen", "pharm-a", "pharm-a", OK, OK),
    ("reportStolen", "pharm-a", "pharm-b", OUTSIDE, OUTSIDE),
    ("reportStolen", "whole", "whole", OK, OK),
    ("reportStolen", "pharm-a", "whole", OUTSIDE, OUTSIDE),
    ("reportStolen", "pharm-a", "acme", OK, OK),
    ("reportStolen", "pharm-a", "rival", OUTSIDE, OUTSIDE),
    ("reportStolen", "pharm-a", "nca", OK, OK),
    ("destroy", "pharm-a", "pharm-a", OK, OK),
    ("destroy", "pharm-a", "pharm-b", OUTSIDE, OUTSIDE),
    ("destroy", "whole", "whole", OK, OK),
    ("destroy", "whole", "pharm-a", OUTSIDE, OUTSIDE),
    ("destroy", "pharm-a", "acme", OK, OK),
    ("destroy", "pharm-a", "rival", OUTSIDE, OUTSIDE),
    ("destroy", "pharm-a", "nca", OK, OK),
];

async fn alerts_about(w: &World, code: &str) -> Vec<String> {
    let key = code.rsplit(')').next().unwrap();
    w.services
        .alerts
        .list(Some("DISPENSED_OUTSIDE_CUSTODY"), 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.subject.contains(&format!(".{key} ")))
        .map(|a| a.subject)
        .collect()
}

#[tokio::test]
async fn every_role_in_and_out_of_custody_against_every_change() {
    let mut wrong = Vec::new();
    for policy in [CustodyPolicy::Warn, CustodyPolicy::Refuse] {
        let t = TempDb::sqlite().await.unwrap();
        let mut w = World::new(&t).await;
        let schema = rxledger_graphql::schema_with(w.services.clone(), Default::default(), policy);
        for (change, custodian, who, warn, refuse) in MATRIX {
            let expected = if policy == CustodyPolicy::Warn {
                warn
            } else {
                refuse
            };
            let code = w.pack(custodian).await;
            let got = run(&schema, who, mutation(change, &code)).await;
            if got != *expected {
                wrong.push(format!(
                    "{policy:?}: {change} by {who} of a pack held by {custodian}: expected {expected}, got {got}"
                ));
            }
            // Every dispense outside custody raises one alert naming both parties and the
            // brand owner, allowed or refused; no other change does.
            let alerts = alerts_about(&w, &code).await;
            let outside = *change == "dispense" && who != custodian && *expected != ROLE;
            match alerts.as_slice() {
                [] if !outside => {}
                [s] if outside
                    && s.contains(&format!("org:{who}"))
                    && s.contains(&format!("org:{custodian}"))
                    && s.contains("brand:acme") => {}
                other => wrong.push(format!(
                    "{policy:?}: {change} by {who} of a pack held by {custodian}: alerts {other:?}"
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "custody matrix:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn undo_and_recall() {
    let t = TempDb::sqlite().await.unwrap();
    let mut w = World::new(&t).await;
    let schema = rxledger_graphql::schema(w.services.clone());
    let code = w.pack("pharm-a").await;
    assert_eq!(
        run(&schema, "pharm-a", mutation("dispense", &code)).await,
        OK
    );
    assert_eq!(
        run(&schema, "pharm-b", mutation("undoDispense", &code)).await,
        "UNDO_OTHER_PARTY"
    );
    assert_eq!(
        run(&schema, "pharm-a", mutation("undoDispense", &code)).await,
        OK
    );
    assert_eq!(
        run(&schema, "pharm-a", mutation("undoDispense", &code)).await,
        "UNDO_STATUS_MISMATCH"
    );
    assert_eq!(
        run(&schema, "pharm-a", mutation("dispense", &code)).await,
        OK
    );
    assert_eq!(
        run(&schema, "pharm-a", mutation("dispense", &code)).await,
        "ALREADY_DISPENSED"
    );
    let recall = "mutation { recallLot(gtin: \"10614141073464\", lot: \"L1\") { entryIndex } }";
    for (who, expected) in [
        ("rival", ROLE),
        ("pharm-a", ROLE),
        ("whole", ROLE),
        ("acme", OK),
        ("nca", OK),
    ] {
        assert_eq!(
            run(&schema, who, recall.to_string()).await,
            expected,
            "{who}"
        );
    }
}
