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

#[test]
fn a_public_url_without_a_scheme_or_host_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for (bad, says) in [
        ("verify.example.org", "https://verify.example.org"),
        ("https://", "has no host"),
        ("https://verify.example.org/?x=1", "without a query"),
    ] {
        let o = run(&["serve", "--data-dir", d, "--public-url", bad]);
        assert!(!o.status.success(), "{bad}");
        assert!(stderr(&o).contains("--public-url"), "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
        assert!(!data.exists(), "{bad}: the data directory was created");
    }
}

#[test]
fn an_unsupported_database_scheme_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--database",
        "mysql://root@127.0.0.1/rx",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`mysql://` is not a supported database"),
        "{}",
        stderr(&o)
    );
    assert!(!data.exists(), "the data directory was created");
    assert!(
        !Path::new("mysql:").exists(),
        "the URL was taken for a file name"
    );
}

/// `--log-format json` writes one JSON object per line, and a normal start and stop logs no
/// line from the embedded broker (it used to print an ERROR per connection at shutdown).
#[cfg(unix)]
#[test]
fn json_logs_and_a_quiet_shutdown() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--http-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env_remove("RXLEDGER_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {}
    assert!(line.contains("listening on"), "the server did not start");
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "no log lines: {err}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    assert!(
        !err.contains("rumqttd"),
        "broker lines at a normal stop: {err}"
    );
    assert!(!err.contains("ERROR"), "errors at a normal stop: {err}");
}
