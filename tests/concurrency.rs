//! Exactly one state change wins: concurrent dispenses of one pack over HTTP give one success
//! and ALREADY_DISPENSED for every other, on SQLite (one node) and on PostgreSQL with two nodes
//! sequencing into one log.

mod common;

use common::*;
use serde_json::{Value, json};

const RACERS: usize = 50;
const PACK: &str = "(01)10614141073464(21)1";

/// Two pharmacies with a key each; returns their tokens.
async fn pharmacies(app: &TestApp) -> Vec<String> {
    let mut tokens = Vec::new();
    for (org, gln) in [("pharm-a", "0614141000043"), ("pharm-b", "0614141000050")] {
        let r = &app.app().registry;
        r.add_organization(org, org, "PHARMACY").await.unwrap();
        r.add_site(gln, org, org).await.unwrap();
        let (token, _) = app
            .app()
            .api_keys
            .issue(org, "PHARMACY", "till", None)
            .await
            .unwrap();
        tokens.push(token);
    }
    tokens
}

/// Fires `RACERS` dispenses of one pack at once, spread over `nodes` and both pharmacies, and
/// checks that exactly one was appended.
async fn race(app: &TestApp, nodes: &[std::net::SocketAddr]) {
    let tokens = pharmacies(app).await;
    let body = serde_json::to_vec(&json!({
        "query": "mutation($c: String!) { dispense(code: $c) { entryIndex } }",
        "variables": { "c": PACK },
    }))
    .unwrap();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (node, token, body, start) = (
                nodes[i % nodes.len()],
                tokens[i % tokens.len()].clone(),
                body.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                let headers = vec![
                    ("Content-Type", "application/json".to_string()),
                    ("Authorization", format!("Bearer {token}")),
                ];
                start.wait().await;
                let (status, resp) = http(node, "POST", "/graphql", &headers, &body).await;
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
                serde_json::from_slice::<Value>(&resp).unwrap()
            })
        })
        .collect();
    let mut won = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r["errors"].is_null() {
            won.push(r["data"]["dispense"]["entryIndex"].as_u64().unwrap());
        } else {
            assert_eq!(
                r["errors"][0]["extensions"]["code"], "ALREADY_DISPENSED",
                "{r}"
            );
            refused += 1;
        }
    }
    assert_eq!(won.len(), 1, "winners at entries {won:?}");
    assert_eq!(refused, RACERS - 1);
    // The log holds that one dispense and no other.
    let sgtin = rxledger_core::gs1::parse_code(PACK)
        .unwrap()
        .sgtin()
        .unwrap();
    let events = app.app().packs.events(&sgtin).await.unwrap();
    let dispenses: Vec<u64> = events
        .iter()
        .filter(|e| e.event.biz_step.map(|b| b.as_str()) == Some("dispensing"))
        .map(|e| e.index)
        .collect();
    assert_eq!(dispenses, won);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispenses_have_one_winner() {
    let app = spawn_app().await;
    app.acme_with_packs(&["1"]).await;
    race(&app, &[app.http]).await;
    app.stop().await;
}

mod postgres {
    use super::*;
    use rxledger::server;
    use rxledger_ingest::MqttTarget;
    use rxledger_store::testdb::TempDb;

    /// Two in-process nodes on one PostgreSQL database and one log key, each with its own
    /// HTTP listener and embedded broker; the dispenses alternate between them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: RXLEDGER_TEST_POSTGRES_URL"]
    async fn concurrent_dispenses_on_two_nodes_have_one_winner() {
        let pg = TempDb::postgres()
            .await
            .expect("RXLEDGER_TEST_POSTGRES_URL names a PostgreSQL server");
        let url = pg.url.clone();
        let app = spawn_app_with(Backends::Embedded, |c| c.database = url).await;
        app.acme_with_packs(&["1"]).await;
        let mut cfg = app.cfg.clone();
        cfg.node_id = format!("{}-b", cfg.node_id);
        cfg.http_listen = "127.0.0.1:0".parse().unwrap();
        cfg.mqtt = MqttTarget::Embedded {
            listen: "127.0.0.1:0".parse().unwrap(),
        };
        let b = server::start(cfg).await.expect("second node starts");
        race(&app, &[app.http, b.http_addr]).await;
        b.shutdown().await;
        app.stop().await;
        pg.drop_now().await;
    }
}
