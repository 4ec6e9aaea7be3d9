//! `rxledger audit --url`: an audit through the node's public API, as far as the caller's
//! role may see, against the real server over HTTP.

mod common;

use std::process::Output;

use common::*;
use sea_orm::{ConnectionTrait, Statement};

/// Runs `rxledger audit --url http://ADDR ARGS…` off the runtime's threads.
async fn audit(app: &TestApp, args: &[&str]) -> (Output, String) {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("audit")
        .arg("--url")
        .arg(format!("http://{}", app.http))
        .args(args)
        .env("RXLEDGER_LOG", "error");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_through_the_api_as_far_as_the_role_allows() {
    let app = spawn_app().await;
    let mut line = app.acme_with_packs(&["R1", "R2"]).await;
    let (status, saved) = http(app.http, "GET", "/checkpoint", &[], b"").await;
    assert_eq!(status, 200);
    let cp = app.dir.path().join("saved-checkpoint.txt");
    std::fs::write(&cp, &saved).unwrap();
    for serial in ["R3", "R4", "R5"] {
        let r = line
            .send_events(vec![commission(&[serial], "L1", "2031-06-30")])
            .await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
    }
    let size = app.app().ledger.head().size;
    let vkey = app.app().ledger.verifier().to_vkey();
    let cp_arg = cp.display().to_string();

    // Anonymous, with the log's key pinned: the tree and the growth are checked, the
    // entries are not, and the report says so.
    let (out, text) = audit(&app, &["--verifier-key", &vkey, "--checkpoint", &cp_arg]).await;
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("size:         {size}")), "{text}");
    assert!(text.contains(&format!("{size} leaf hashes")), "{text}");
    assert!(
        text.contains("consistent with the saved checkpoint"),
        "{text}"
    );
    assert!(text.contains("NOT CHECKED:  entry bytes"), "{text}");
    assert!(text.contains("NOT CHECKED:  the derived index"), "{text}");
    assert!(
        !text.contains("taken from the node itself"),
        "pinned: {text}"
    );
    assert!(
        text.contains("AUDIT PASSED (as far as this caller may see)"),
        "{text}"
    );

    // A regulator's key reads every entry and rehashes it; the key comes from the node.
    let regulator = app.regulator_key().await;
    let (out, text) = audit(&app, &["--api-key", &regulator]).await;
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("entries:      {size} rehashed")),
        "{text}"
    );
    assert!(!text.contains("NOT CHECKED:  entry bytes"), "{text}");
    assert!(
        text.contains("taken from the node itself"),
        "trust on first use is said: {text}"
    );

    // Another log's key: the checkpoint does not verify, and nothing passes.
    let other = rxledger_core::keys::LogVerifier::new(
        app.app().ledger.origin(),
        rxledger_core::keys::SigningKey::generate().public_key(),
    )
    .unwrap()
    .to_vkey();
    let (out, text) = audit(&app, &["--verifier-key", &other]).await;
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("does not verify"), "{text}");

    // An entry changed in the database: its leaf no longer matches, and the regulator's
    // audit names it.
    let db = app.app().ledger.database();
    db.conn
        .execute_raw(Statement::from_string(
            db.backend(),
            "UPDATE entries SET data = X'00' WHERE idx = 3",
        ))
        .await
        .unwrap();
    let (out, text) = audit(&app, &["--api-key", &regulator]).await;
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("PROBLEM: ENTRY 3: its bytes do not hash to its leaf"),
        "{text}"
    );
    app.stop().await;
}
