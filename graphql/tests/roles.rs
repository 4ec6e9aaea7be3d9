//! The role matrix: every role against every guarded field, through `schema.execute`.
//! Each cell is either allowed (the resolver ran; it may still answer NOT_FOUND or a rule
//! code) or refused with FORBIDDEN (UNAUTHENTICATED for anonymous callers).

use rxledger_core::keys::SigningKey;
use rxledger_graphql::{Caller, Role, Services};
use rxledger_store::testdb::TempDb;

const A: bool = true; // allowed
const F: bool = false; // FORBIDDEN / UNAUTHENTICATED

/// Field, then anonymous, PHARMACY, WHOLESALER, MANUFACTURER, REGULATOR, ADMIN.
const MATRIX: &[(&str, [bool; 6])] = &[
    ("{ checkpoint { size } }", [A, A, A, A, A, A]),
    ("{ ledgerPublicKey { origin } }", [A, A, A, A, A, A]),
    ("{ inclusionProof(index: 0) { index } }", [A, A, A, A, A, A]),
    (
        "{ verify(code: \"(01)10614141073464(21)1\") { verdict } }",
        [A, A, A, A, A, A],
    ),
    (
        "{ provenance(code: \"(01)10614141073464(21)1\") { status } }",
        [F, A, A, A, A, A],
    ),
    ("{ events { hasNextPage } }", [F, A, A, A, A, A]),
    ("{ organizations { id } }", [F, A, A, A, A, A]),
    (
        "{ lot(gtin: \"10614141073464\", lot: \"L1\") { packs } }",
        [F, F, F, A, A, A],
    ),
    ("{ alerts { id } }", [F, F, F, A, A, A]),
    ("{ alertCases { id } }", [F, F, F, A, A, A]),
    ("{ alertCase(id: 0) { id } }", [F, F, F, A, A, A]),
    (
        "mutation { answerCase(id: 0, text: \"x\") { id } }",
        [F, F, F, A, A, F],
    ),
    (
        "mutation { requestCaseInformation(id: 0, text: \"x\") { id } }",
        [F, F, F, A, A, F],
    ),
    (
        "mutation { closeCase(id: 0, rootCause: PROCESS_ERROR) { id } }",
        [F, F, F, A, A, F],
    ),
    (
        "{ product(gtin: \"10614141073464\") { productName } }",
        [A, A, A, A, A, A],
    ),
    (
        "mutation { registerProduct(input: {gtin: \"10614141073464\", productName: \"X\"}) { gtin } }",
        [F, F, F, A, A, A],
    ),
    ("{ apiKeys { id } }", [F, F, F, F, F, A]),
    (
        "mutation { dispense(code: \"(01)10614141073464(21)1\") { entryIndex } }",
        [F, A, F, F, F, F],
    ),
    (
        "mutation { undoDispense(code: \"(01)10614141073464(21)1\") { entryIndex } }",
        [F, A, F, F, F, F],
    ),
    (
        "mutation { reportStolen(code: \"(01)10614141073464(21)1\") { entryIndex } }",
        [F, A, A, A, A, F],
    ),
    (
        "mutation { destroy(code: \"(01)10614141073464(21)1\") { entryIndex } }",
        [F, A, A, A, A, F],
    ),
    (
        "mutation { recallLot(gtin: \"10614141073464\", lot: \"L1\") { entryIndex } }",
        [F, F, F, A, A, F],
    ),
    (
        "mutation { createOrganization(input: {id: \"x\", name: \"X\", role: PHARMACY}) { id } }",
        [F, F, F, F, F, A],
    ),
    (
        "mutation { revokeDevice(id: \"nope\") { id } }",
        [F, F, F, F, F, A],
    ),
    (
        "mutation { issueApiKey(orgId: \"nope\", label: \"l\") { token } }",
        [F, F, F, F, F, A],
    ),
];

/// The real services on a fresh SQLite database.
async fn services(t: &TempDb) -> Services {
    let db = t.db.clone();
    let key = SigningKey::from_bytes(&[1u8; 32]).unwrap();
    Services::open(db, key, "roles.test/log").await.unwrap()
}

#[tokio::test]
async fn every_role_against_every_field() {
    let t = TempDb::sqlite().await.unwrap();
    let services = services(&t).await;
    // Every caller's organization "o" owns the GTIN's company prefix, so brand-owner checks
    // do not hide what the role allows.
    services
        .registry
        .add_organization("o", "O", "MANUFACTURER")
        .await
        .unwrap();
    services
        .registry
        .add_company_prefix("o", "0614141")
        .await
        .unwrap();
    let schema = rxledger_graphql::schema(services);
    let callers: Vec<(&str, Caller)> = std::iter::once(("anonymous", Caller::Anonymous))
        .chain(
            [
                Role::Pharmacy,
                Role::Wholesaler,
                Role::Manufacturer,
                Role::Regulator,
                Role::Admin,
            ]
            .into_iter()
            .map(|role| {
                (
                    role.as_str(),
                    Caller::Key {
                        key_id: "k".into(),
                        org_id: "o".into(),
                        role,
                    },
                )
            }),
        )
        .collect();
    let mut wrong = Vec::new();
    for (query, row) in MATRIX {
        for ((who, caller), allowed) in callers.iter().zip(row) {
            let resp = schema
                .execute(async_graphql::Request::new(*query).data(caller.clone()))
                .await;
            let codes: Vec<String> = resp
                .errors
                .iter()
                .filter_map(|e| {
                    e.extensions
                        .as_ref()
                        .and_then(|x| x.get("code"))
                        .map(|c| c.to_string())
                })
                .collect();
            let refused = codes
                .iter()
                .any(|c| c.contains("FORBIDDEN") || c.contains("UNAUTHENTICATED"));
            if refused == *allowed {
                wrong.push(format!(
                    "{who} on {query}: expected {}, got {codes:?}",
                    if *allowed { "allowed" } else { "refused" }
                ));
            }
            if !*allowed {
                let expected = if *who == "anonymous" {
                    "UNAUTHENTICATED"
                } else {
                    "FORBIDDEN"
                };
                if !codes.iter().any(|c| c.contains(expected)) {
                    wrong.push(format!(
                        "{who} on {query}: expected {expected}, got {codes:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "role matrix mismatches:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn depth_and_complexity_bombs_are_refused() {
    let t = TempDb::sqlite().await.unwrap();
    let schema = rxledger_graphql::schema(services(&t).await);
    let deep = format!(
        "{{ __schema {{ types {}name{} }} }}",
        "{ fields { type { ofType ".repeat(4),
        " } } }".repeat(4)
    );
    let r = schema.execute(deep.as_str()).await;
    assert!(
        r.errors
            .iter()
            .any(|e| e.message.contains("nested too deep")),
        "{:?}",
        r.errors
    );
    let wide = format!(
        "{{ {} }}",
        (0..3000)
            .map(|i| format!("a{i}: checkpoint {{ size }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let r = schema.execute(wide.as_str()).await;
    assert!(
        r.errors.iter().any(|e| e.message.contains("too complex")),
        "{:?}",
        r.errors
    );
}
