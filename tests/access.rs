//! Who may call, over real HTTP: the `Authorization` header on `/graphql` and the resolver.

mod common;

use common::*;
use serde_json::{Value, json};

fn code_of(r: &Value) -> Option<&str> {
    r["errors"][0]["extensions"]["code"].as_str()
}

/// POST /graphql with a raw `Authorization` header value.
async fn graphql_with_header(app: &TestApp, authorization: &str, query: &str) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "query": query })).unwrap();
    let headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("Authorization", authorization.to_string()),
    ];
    let (status, body) = http(app.http, "POST", "/graphql", &headers, &body).await;
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive_and_anything_else_is_refused() {
    let app = spawn_app().await;
    let token = app.app().first_admin_token.clone().expect("an admin key");
    for good in [
        format!("Bearer {token}"),
        format!("BEARER {token}"),
        format!("bearer {token}"),
        format!("bEaReR   {token}  "),
        format!("Bearer\t{token}"),
    ] {
        let (status, r) = graphql_with_header(&app, &good, "{ me { role } }").await;
        assert_eq!(status, 200, "{good:?}: {r}");
        assert_eq!(r["data"]["me"]["role"], "ADMIN", "{good:?}: {r}");
    }
    for bad in [
        format!("Basic {token}"),
        format!("Token {token}"),
        format!("Bearer{token}"),
        token.clone(),
        "Bearer".to_string(),
        "Bearer   ".to_string(),
        format!("Bearer {token} extra"),
        "Bearer not-a-key".to_string(),
    ] {
        let (_, r) = graphql_with_header(&app, &bad, "{ me { role } }").await;
        assert_eq!(code_of(&r), Some("UNAUTHENTICATED"), "{bad:?}: {r}");
        assert!(r["data"].is_null(), "{bad:?} must not run the query: {r}");
    }
    // Without the header the caller is anonymous, as before.
    let r = app.graphql("{ me { role } }", json!({})).await;
    assert!(r["errors"].is_null(), "{r}");
    assert!(r["data"]["me"].is_null(), "{r}");

    // The resolver pages share the rule: a malformed header is 401, never an anonymous page.
    let accept = ("Accept", "application/json".to_string());
    for bad in ["Basic abc", "Bearer", "Bearer a b"] {
        let headers = vec![accept.clone(), ("Authorization", bad.to_string())];
        let (status, body) = http(app.http, "GET", "/01/10614141073464/21/1", &headers, b"").await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 401, "{bad:?}: {body}");
        assert!(body.contains("UNAUTHENTICATED"), "{bad:?}: {body}");
    }
    let headers = vec![accept, ("Authorization", format!("BEARER {token}"))];
    let (status, _) = http(app.http, "GET", "/01/10614141073464/21/1", &headers, b"").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A trading partner or authority in the visibility scenario.
struct Party {
    org: &'static str,
    role: &'static str,
    /// Its site: the 13-digit GLN and the SGLN URN's company-prefix.location-reference part.
    gln: &'static str,
    sgln: &'static str,
    device: Option<&'static str>,
}

const GTIN: &str = "10614141073464";

const PARTIES: &[Party] = &[
    Party {
        org: "org-acme",
        role: "MANUFACTURER",
        gln: "0614141000005",
        sgln: "0614141.00000",
        device: Some("dev-acme-line"),
    },
    Party {
        org: "org-rival",
        role: "MANUFACTURER",
        gln: "0614141000067",
        sgln: "0614141.00006",
        device: Some("dev-rival-line"),
    },
    Party {
        org: "org-whole",
        role: "WHOLESALER",
        gln: "0614141000036",
        sgln: "0614141.00003",
        device: Some("dev-whole-dock"),
    },
    Party {
        org: "org-pharm-a",
        role: "PHARMACY",
        gln: "0614141000043",
        sgln: "0614141.00004",
        device: Some("dev-pharm-a-till"),
    },
    Party {
        org: "org-pharm-b",
        role: "PHARMACY",
        gln: "0614141000050",
        sgln: "0614141.00005",
        device: None,
    },
    Party {
        org: "org-nca",
        role: "REGULATOR",
        gln: "0614141000074",
        sgln: "0614141.00007",
        device: None,
    },
];

fn party(org: &str) -> &'static Party {
    PARTIES.iter().find(|p| p.org == org).unwrap()
}

fn ship(serials: &[&str], from: &Party, to: &Party) -> Value {
    json!({
        "type": "ObjectEvent",
        "eventTime": now_rfc3339(),
        "eventTimeZoneOffset": "+00:00",
        "epcList": serials.iter().map(|s| format!("urn:epc:id:sgtin:0614141.107346.{s}")).collect::<Vec<_>>(),
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "readPoint": {"id": format!("urn:epc:id:sgln:{}.0", from.sgln)},
        "sourceList": [{"type": "owning_party", "source": format!("urn:epc:id:pgln:{}", from.sgln)}],
        "destinationList": [
            {"type": "owning_party", "destination": format!("urn:epc:id:pgln:{}", to.sgln)},
            {"type": "location", "destination": format!("urn:epc:id:sgln:{}.0", to.sgln)},
        ],
    })
}

fn receive(serials: &[&str], at: &Party) -> Value {
    json!({
        "type": "ObjectEvent",
        "eventTime": now_rfc3339(),
        "eventTimeZoneOffset": "+00:00",
        "epcList": serials.iter().map(|s| format!("urn:epc:id:sgtin:0614141.107346.{s}")).collect::<Vec<_>>(),
        "action": "OBSERVE",
        "bizStep": "receiving",
        "disposition": "active",
        "readPoint": {"id": format!("urn:epc:id:sgln:{}.0", at.sgln)},
        "bizLocation": {"id": format!("urn:epc:id:sgln:{}.0", at.sgln)},
    })
}

/// Registers every party, runs the supply chain over MQTT and the API, and returns an API key
/// per party. Packs: 1 dispensed by pharm-a (its custodian); 2 held by pharm-a; 3 held by
/// the wholesaler and dispensed by pharm-b outside custody (an alert); 4 still at acme.
async fn supply_chain(app: &TestApp) -> Vec<(&'static str, String)> {
    let r = &app.app().registry;
    let mut keys = Vec::new();
    let mut devices = std::collections::HashMap::new();
    for p in PARTIES {
        r.add_organization(p.org, p.org, p.role).await.unwrap();
        r.add_site(p.gln, p.org, &format!("{} site", p.org))
            .await
            .unwrap();
        if let Some(d) = p.device {
            let key = rxledger_core::keys::SigningKey::generate();
            r.enroll_device(d, &key.public_key(), p.org, p.gln)
                .await
                .unwrap();
            devices.insert(p.org, app.device(d, key).await);
        }
        let (token, _) = app
            .app()
            .api_keys
            .issue(p.org, p.role, "test", None)
            .await
            .unwrap();
        keys.push((p.org, token));
    }
    r.add_company_prefix("org-acme", "0614141").await.unwrap();
    let (acme, whole, pa) = (party("org-acme"), party("org-whole"), party("org-pharm-a"));
    let mut send = async |org: &str, events: Vec<Value>| {
        let rc = devices.get_mut(org).unwrap().send_events(events).await;
        assert_eq!(rc.status, "ACCEPTED", "{org}: {rc:?}");
    };
    send(
        "org-acme",
        vec![commission(&["1", "2", "3", "4"], "L1", "2031-06-30")],
    )
    .await;
    send("org-acme", vec![ship(&["1", "2", "3"], acme, whole)]).await;
    send("org-whole", vec![receive(&["1", "2", "3"], whole)]).await;
    send("org-whole", vec![ship(&["1", "2"], whole, pa)]).await;
    send("org-pharm-a", vec![receive(&["1", "2"], pa)]).await;
    // A rival manufacturer's own line, so its entries exist too.
    send("org-rival", vec![receive(&["4"], party("org-rival"))]).await;
    let token = |org: &str| keys.iter().find(|(o, _)| *o == org).unwrap().1.clone();
    let dispense = "mutation($c: String!) { dispense(code: $c) { entryIndex } }";
    for (org, serial) in [("org-pharm-a", "1"), ("org-pharm-b", "3")] {
        let d = app
            .graphql_as(
                Some(&token(org)),
                dispense,
                json!({ "c": format!("(01){GTIN}(21){serial}") }),
            )
            .await;
        assert!(d["errors"].is_null(), "{org} dispenses {serial}: {d}");
    }
    keys.push(("admin", app.app().first_admin_token.clone().unwrap()));
    keys
}

/// Every query field, with a query selecting everything it can reveal. The test fails when the
/// schema has a query field this table does not name.
const ROUTES: &[(&str, &str)] = &[
    ("checkpoint", "{ checkpoint { origin size rootHash note } }"),
    (
        "inclusionProof",
        "{ inclusionProof(index: 1) { index treeSize leafHash hashes } }",
    ),
    (
        "consistencyProof",
        "{ consistencyProof(fromSize: 1) { fromSize toSize hashes } }",
    ),
    (
        "entries",
        "{ entries(from: 0, count: 100) { index leafHash dataBase64 kind signer } }",
    ),
    (
        "ledgerPublicKey",
        "{ ledgerPublicKey { origin publicKey verifierKey ed25519VerifierKey witnessQuorum witnesses witnessVerifierKeys } }",
    ),
    (
        "verify",
        "{ p1: verify(code: \"(01)10614141073464(21)1\") { ...V } p2: verify(code: \"(01)10614141073464(21)2\") { ...V } p3: verify(code: \"(01)10614141073464(21)3\") { ...V } } fragment V on Verification { verdict dispensable reasons { code severity message evidence } product { gtin serial lot expiry tradeItem { productName } } status evidence { index leafHash treeSize proof } checkpointSize checkpointNote timeline { index eventTime eventType action bizStep disposition inherited } }",
    ),
    (
        "provenance",
        "{ p1: provenance(code: \"(01)10614141073464(21)1\") { ...P } p2: provenance(code: \"(01)10614141073464(21)2\") { ...P } p3: provenance(code: \"(01)10614141073464(21)3\") { ...P } p4: provenance(code: \"(01)10614141073464(21)4\") { ...P } } fragment P on Provenance { gtin serial status lot expiry custodian location parent history { index eventTime eventType action bizStep disposition organization location via evidence { index leafHash } } }",
    ),
    (
        "lot",
        "{ lot(gtin: \"10614141073464\", lot: \"L1\") { gtin lot packs byStatus { key count } byCustodian { key count } } }",
    ),
    (
        "events",
        "{ events(first: 1000) { nodes { eventId entryIndex position eventType action bizStep disposition eventTime readPoint bizLocation } endCursor hasNextPage } }",
    ),
    (
        "organizations",
        "{ organizations { id name role companyPrefixes } }",
    ),
    ("sites", "{ sites { gln orgId name latitude longitude } }"),
    (
        "devices",
        "{ devices { id publicKey orgId siteGln status lastSeq } }",
    ),
    ("apiKeys", "{ apiKeys { id orgId role label revoked } }"),
    (
        "alerts",
        "{ alerts(first: 1000) { id code severity subjects message evidence rawBase64 createdAt } }",
    ),
    ("me", "{ me { orgId role } }"),
    (
        "product",
        "{ product(gtin: \"10614141073464\") { gtin productName strength dosageForm netContent marketingAuthorisationHolder imageUrl } }",
    ),
    (
        "ledgerStatus",
        "{ ledgerStatus { origin size rootHash checkpointNote indexCheck { state problems } } }",
    ),
    (
        "traceRequests",
        "{ traceRequests { entryIndex requester subject scope reason incidentNumber test parties askedAt } }",
    ),
    (
        "alertCases",
        "{ alertCases { id alertCode pack brandOwner status records { actor text alertMessage } } }",
    ),
    ("alertCase", "{ alertCase(id: 0) { id brandOwner } }"),
];

/// Routes where a brand owner also sees other parties (organizations and sites, never their
/// devices or bytes) of its own products: the lot view (where every pack is, for a recall)
/// and alerts about its products, and those alerts' cases.
const BRAND_OWNER_SEES_PARTIES: &[&str] = &["lot", "alerts", "alertCases", "alertCase"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_reveals_only_what_each_role_may_see() {
    let app = spawn_app_with(Backends::Embedded, |c| c.cases.enabled = true).await;
    let keys = supply_chain(&app).await;
    let admin = keys.iter().find(|(o, _)| *o == "admin").unwrap().1.clone();
    // The suspicion monitor judges committed events after their receipts, in commit order:
    // once it has raised the alert of the last scanned event (the rival's receiving of pack 4),
    // every alert of the supply chain is recorded.
    for waited in 0.. {
        let r = app
            .graphql_as(
                Some(&admin),
                "{ alerts(code: \"RECEIVED_WITHOUT_SHIPMENT\") { subjects } }",
                json!({}),
            )
            .await;
        if r.to_string().contains("sgtin:10614141073464.4") {
            break;
        }
        assert!(waited < 200, "the monitor raised no alert for pack 4: {r}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // And every alert has its case (the timer task may have opened some already).
    app.app().cases.sweep().await.unwrap();

    // Every query field is in the table.
    let fields = app
        .graphql("{ __schema { queryType { fields { name } } } }", json!({}))
        .await;
    for f in fields["data"]["__schema"]["queryType"]["fields"]
        .as_array()
        .unwrap()
    {
        let name = f["name"].as_str().unwrap();
        assert!(
            ROUTES.iter().any(|(n, _)| *n == name),
            "query field {name} is not in the visibility table: add it with what it reveals"
        );
    }

    // What each party's secrets look like: its ids, sites, devices and its entries' bytes.
    let all = app.graphql_as(Some(&admin), ROUTES[3].1, json!({})).await;
    let entries = all["data"]["entries"].as_array().unwrap().clone();
    assert!(entries.len() >= 8, "{all}");
    // Map-root entries (signer `log:map`) name no party: they are everyone's to read.
    let org_of_signer = |signer: &str| -> &'static str {
        if signer == rxledger_store::map::MAP_SIGNER {
            return "public";
        }
        // The node's own alert-case records: regulators' and admins' only.
        if signer == rxledger_store::cases::NODE_SIGNER {
            return "desk";
        }
        let org = signer.strip_prefix("org:");
        PARTIES
            .iter()
            .find(|p| Some(p.org) == org || p.device == Some(signer))
            .map(|p| p.org)
            .unwrap_or_else(|| panic!("unknown signer {signer}"))
    };
    let details = |p: &Party| -> Vec<String> {
        let mut v: Vec<String> = p.device.iter().map(|d| d.to_string()).collect();
        v.extend(
            entries
                .iter()
                .filter(|e| org_of_signer(e["signer"].as_str().unwrap()) == p.org)
                .map(|e| e["dataBase64"].as_str().unwrap().to_string()),
        );
        v
    };
    let names = |p: &Party| vec![p.org.to_string(), p.gln.to_string(), p.sgln.to_string()];

    let callers: Vec<(&str, Option<&str>)> = std::iter::once(("anonymous", None))
        .chain(keys.iter().map(|(o, t)| (*o, Some(t.as_str()))))
        .collect();
    let mut leaks = Vec::new();
    for (route, query) in ROUTES {
        for (who, token) in &callers {
            let r = app.graphql_as(*token, query, json!({})).await;
            let text = r.to_string();
            let sees_all = matches!(*who, "admin" | "org-nca");
            for p in PARTIES {
                if sees_all || p.org == *who {
                    continue;
                }
                let brand = *who == "org-acme" && BRAND_OWNER_SEES_PARTIES.contains(route);
                let mut secret = details(p);
                if !brand {
                    secret.extend(names(p));
                }
                for s in secret {
                    if text.contains(&s) {
                        leaks.push(format!("{route} shows {who} {s:?} of {}", p.org));
                    }
                }
            }
        }
    }
    assert!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));

    // And the rule is not vacuous: each caller gets exactly its own entries' bytes, and
    // everyone gets every leaf hash. The log may have grown since `entries` was read (an
    // ingest alert recorded after its receipt opens a case in the background), so each caller
    // reads the same prefix, which an append-only log never changes.
    let prefix = format!(
        "{{ entries(from: 0, count: {}) {{ index leafHash dataBase64 kind signer }} }}",
        entries.len()
    );
    for (who, token) in &callers {
        let r = app.graphql_as(*token, &prefix, json!({})).await;
        let mine = r["data"]["entries"].as_array().unwrap();
        assert_eq!(mine.len(), entries.len());
        for (e, full) in mine.iter().zip(&entries) {
            assert_eq!(e["leafHash"], full["leafHash"]);
            let owner = org_of_signer(full["signer"].as_str().unwrap());
            let shown = matches!(*who, "admin" | "org-nca") || owner == *who || owner == "public";
            assert_eq!(!e["dataBase64"].is_null(), shown, "{who} on entry {e}");
            assert_eq!(!e["signer"].is_null(), shown, "{who} on entry {e}");
        }
    }
    // The brand owner and the regulator see the dispense outside custody, naming both parties.
    for who in ["org-acme", "org-nca"] {
        let token = &keys.iter().find(|(o, _)| *o == who).unwrap().1;
        let r = app
            .graphql_as(
                Some(token),
                "{ alerts(code: \"DISPENSED_OUTSIDE_CUSTODY\") { subjects message } }",
                json!({}),
            )
            .await;
        let a = &r["data"]["alerts"][0];
        let subjects = a["subjects"].to_string();
        assert!(
            subjects.contains("org:org-pharm-b") && subjects.contains("org:org-whole"),
            "{who}: {r}"
        );
    }
    // The rival brand owner sees none of it.
    let rival = &keys.iter().find(|(o, _)| *o == "org-rival").unwrap().1;
    let r = app
        .graphql_as(
            Some(rival),
            "{ alerts { code } lot(gtin: \"10614141073464\", lot: \"L1\") { packs } }",
            json!({}),
        )
        .await;
    assert_eq!(code_of(&r), Some("FORBIDDEN"), "{r}");
    let r = app
        .graphql_as(Some(rival), "{ alerts { code } }", json!({}))
        .await;
    assert_eq!(r["data"]["alerts"], json!([]), "{r}");
    // The alert's case too: the brand owner's and the regulator's, not the rival's.
    let cases = |who: &str| {
        let token = keys.iter().find(|(o, _)| *o == who).unwrap().1.clone();
        let app = &app;
        async move {
            let r = app
                .graphql_as(Some(&token), "{ alertCases { brandOwner } }", json!({}))
                .await;
            r["data"]["alertCases"].clone()
        }
    };
    let nca = cases("org-nca").await;
    assert!(!nca.as_array().unwrap().is_empty(), "{nca}");
    assert_eq!(cases("org-acme").await, nca, "every case here is acme's");
    assert_eq!(cases("org-rival").await, json!([]));

    // The resolver pages run the same verify: nothing of any party reaches an anonymous page.
    for path in ["/01/10614141073464/21/1", "/01/10614141073464/21/3"] {
        for accept in ["application/json", "text/html"] {
            let (status, body) = http(
                app.http,
                "GET",
                path,
                &[("Accept", accept.to_string())],
                b"",
            )
            .await;
            assert_eq!(status, 200);
            let body = String::from_utf8_lossy(&body);
            for p in PARTIES {
                for s in details(p).into_iter().chain(names(p)) {
                    assert!(
                        !body.contains(&s),
                        "{path} ({accept}) shows {s:?} of {}",
                        p.org
                    );
                }
            }
        }
    }
    app.stop().await;
}
