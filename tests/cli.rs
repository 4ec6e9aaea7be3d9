//! The command line on bad input: a clear error naming the problem, a non-zero exit, and
//! nothing written.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rxledger");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RXLEDGER_LOG", "error")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A data directory holding a log of a few entries, as `serve` would leave it.
async fn log_in(dir: &Path, origin: &str) -> rxledger_store::Database {
    let key = rxledger::keyfile::generate(&dir.join("log.key"), false).unwrap();
    let db = rxledger_store::connect(&dir.join("rxledger.db").display().to_string())
        .await
        .unwrap();
    rxledger_store::Ledger::open(db.clone(), key, origin)
        .await
        .unwrap();
    db
}

#[test]
fn keygen_writes_mode_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.key");
    let k = key.to_str().unwrap();
    let o = run(&["keygen", "--out", k]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("public key: 0"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let before = std::fs::read(&key).unwrap();
    let o = run(&["keygen", "--out", k]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key was not touched"
    );
}

#[tokio::test]
async fn a_wrong_or_unreadable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    log_in(dir.path(), "cli.test/log").await;
    let d = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("garbage.key"), "not a key\n").unwrap();
    let o = run(&[
        "audit",
        "--data-dir",
        d,
        "--key",
        dir.path().join("garbage.key").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is not a secp256k1 secret key"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "audit",
        "--data-dir",
        d,
        "--key",
        dir.path().join("missing.key").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read key file"),
        "{}",
        stderr(&o)
    );
    // The cause is said once, though the message already quotes it.
    assert_eq!(
        stderr(&o).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&o)
    );
    // Another log's key: serve refuses to sign for this log with it.
    let other = dir.path().join("other.key");
    assert!(
        run(&["keygen", "--out", other.to_str().unwrap()])
            .status
            .success()
    );
    let o = run(&[
        "serve",
        "--data-dir",
        d,
        "--key",
        other.to_str().unwrap(),
        "--origin",
        "cli.test/log",
        "--http-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not signed by this log key"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn a_checkpoint_from_another_log_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    log_in(a.path(), "cli.test/a").await;
    log_in(b.path(), "cli.test/b").await;
    let cp = run(&["checkpoint", "--data-dir", b.path().to_str().unwrap()]);
    assert!(cp.status.success(), "{}", stderr(&cp));
    let file = a.path().join("foreign.cp");
    std::fs::write(&file, &cp.stdout).unwrap();
    let o = run(&[
        "audit",
        "--data-dir",
        a.path().to_str().unwrap(),
        "--checkpoint",
        file.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds the log"), "{}", stderr(&o));
    // Its own checkpoint is fine.
    let own = run(&["checkpoint", "--data-dir", a.path().to_str().unwrap()]);
    std::fs::write(&file, &own.stdout).unwrap();
    let o = run(&[
        "audit",
        "--data-dir",
        a.path().to_str().unwrap(),
        "--checkpoint",
        file.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    let o = run(&[
        "checkpoint",
        "--database",
        "postgres://nobody@127.0.0.1:9/nothing",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot open database postgres://nobody@127.0.0.1:9/nothing"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_connection_count_of_zero_is_refused() {
    for bad in ["0", "many"] {
        let o = run(&["serve", "--mqtt-connections", bad]);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("--mqtt-connections"),
            "{bad}: {}",
            stderr(&o)
        );
    }
}

#[tokio::test]
async fn corrupt_rows_stop_the_server_before_it_writes() {
    use sea_orm::{ConnectionTrait, Statement};
    let dir = tempfile::tempdir().unwrap();
    let db = log_in(dir.path(), "cli.test/log").await;
    db.conn
        .execute_raw(Statement::from_string(
            db.backend(),
            "UPDATE head SET root = X'00'".to_string(),
        ))
        .await
        .unwrap();
    let before = std::fs::metadata(dir.path().join("rxledger.db"))
        .unwrap()
        .len();
    let o = run(&[
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--origin",
        "cli.test/log",
        "--http-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt database"), "{}", stderr(&o));
    assert_eq!(
        std::fs::metadata(dir.path().join("rxledger.db"))
            .unwrap()
            .len(),
        before
    );
}

#[test]
fn admin_key_prints_a_new_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["admin-key", "--data-dir", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let token = out.split_whitespace().last().unwrap();
    assert!(token.starts_with("rxl_") && token.len() == 68, "{out}");
}
