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

/// The command failed and said `says` on stderr.
#[track_caller]
fn assert_refused(o: &Output, says: &str) {
    assert!(
        !o.status.success(),
        "it succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        stderr(o).contains(says),
        "expected {says:?} in: {}",
        stderr(o)
    );
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
    assert_refused(&o, "already exists");
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
    assert_refused(&o, "is not a secp256k1 secret key");
    let o = run(&[
        "audit",
        "--data-dir",
        d,
        "--key",
        dir.path().join("missing.key").to_str().unwrap(),
    ]);
    assert_refused(&o, "cannot read key file");
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
    assert_refused(&o, "not signed by this log key");
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
    assert_refused(&o, "holds the log");
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
    assert_refused(
        &o,
        "cannot open database postgres://nobody@127.0.0.1:9/nothing",
    );
}

#[test]
fn a_connection_count_of_zero_is_refused() {
    for bad in ["0", "many"] {
        let o = run(&["serve", "--mqtt-connections", bad]);
        assert_refused(&o, "--mqtt-connections");
    }
}

#[test]
fn a_device_window_outside_its_bounds_is_refused() {
    for bad in ["0", "65537", "-1", "many"] {
        let o = run(&["serve", &format!("--device-window={bad}")]);
        assert_refused(&o, "--device-window");
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
    assert_refused(&o, "corrupt database");
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
        assert_refused(&o, "--public-url");
        assert_refused(&o, says);
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
    assert_refused(&o, "`mysql://` is not a supported database");
    assert!(!data.exists(), "the data directory was created");
    assert!(
        !Path::new("mysql:").exists(),
        "the URL was taken for a file name"
    );
}

/// A start that cannot bind a port, or read its certificate, fails with a message that names
/// the flag, and creates nothing: no data directory, database, log key or admin key.
#[test]
fn a_start_that_fails_leaves_nothing_behind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let missing = dir.path().join("missing.pem");
    let m = missing.to_str().unwrap();
    let free = "127.0.0.1:0";
    for (args, says) in [
        (
            vec!["--mqtt-listen", &taken, "--http-listen", free],
            "--mqtt-listen",
        ),
        (
            vec!["--mqtt-listen", free, "--http-listen", &taken],
            "--http-listen",
        ),
        (
            vec![
                "--mqtt-listen",
                free,
                "--http-listen",
                free,
                "--tls-cert",
                m,
                "--tls-key",
                m,
            ],
            "missing.pem",
        ),
    ] {
        let o = run(&[&["serve", "--data-dir", d][..], &args[..]].concat());
        assert_refused(&o, says);
        assert!(!data.exists(), "{args:?}: the data directory was created");
    }
}

/// `--log-format json` writes one JSON object per line, and a normal start and stop logs no
/// line from the embedded broker (it used to print an ERROR per connection at shutdown). The
/// first start prints the first admin key with the ways to more keys and back in.
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
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .env_remove("RXLEDGER_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while out.read_line(&mut printed).unwrap() > 0 && !printed.contains("listening on") {}
    assert!(printed.contains("listening on"), "the server did not start");
    assert!(
        printed.contains("metrics:      http://127.0.0.1:"),
        "{printed}"
    );
    let data = format!("--data-dir {}", dir.path().display());
    for hint in [
        "first admin API key (shown once, keep it safe): rxl_",
        "Authorization: Bearer rxl_",
        &format!("rxledger key issue {data} --org ORG"),
        &format!("rxledger admin-key {data}"),
    ] {
        assert!(printed.contains(hint), "no {hint:?} in: {printed}");
    }
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

/// `backup` of a database that a process holds open with commits still in the WAL, then
/// `restore` into an empty data directory: the same log, audited; and neither overwrites.
#[tokio::test]
async fn backup_of_a_live_database_restores_to_the_same_audited_log() {
    use rxledger_store::ledger::EntryKind;
    use rxledger_store::{Ledger, NewEntry};
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let db = log_in(&live, "cli.test/log").await;
    let key = rxledger::keyfile::load(&live.join("log.key")).unwrap();
    let ledger = Ledger::open(db.clone(), key, "cli.test/log").await.unwrap();
    for b in 0..3u8 {
        let batch: Vec<NewEntry> = (0..40u8)
            .map(|i| NewEntry {
                data: vec![b, i, 7, 7],
                kind: EntryKind::ApiStateChange,
                signer: "api".into(),
                seq: None,
                events: vec![],
            })
            .collect();
        ledger.append(batch).await.unwrap();
    }
    let live_dir = live.to_str().unwrap();
    let file = dir.path().join("rx.backup");
    // The pool above is still open: the last commits are in the WAL, not yet in the file.
    assert!(
        std::fs::metadata(live.join("rxledger.db-wal"))
            .unwrap()
            .len()
            > 0
    );
    let o = run(&["backup", "--data-dir", live_dir, file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("log size 120"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&["backup", "--data-dir", live_dir, file.to_str().unwrap()]);
    assert_refused(&o, "already exists");

    let fresh = dir.path().join("fresh");
    let fresh_dir = fresh.to_str().unwrap();
    let key_arg = live.join("log.key");
    let restore = |into: &str, from: &Path| {
        run(&[
            "restore",
            "--data-dir",
            into,
            "--key",
            key_arg.to_str().unwrap(),
            from.to_str().unwrap(),
        ])
    };
    let o = restore(fresh_dir, &file);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("log size 120"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let checkpoint = |d: &str| run(&["checkpoint", "--data-dir", d]).stdout;
    let restored = checkpoint(fresh_dir);
    assert_eq!(
        String::from_utf8_lossy(&restored)
            .lines()
            .take(3)
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&checkpoint(live_dir))
            .lines()
            .take(3)
            .collect::<Vec<_>>(),
        "origin, size and root"
    );
    let o = restore(fresh_dir, &file);
    assert_refused(&o, "a restore never overwrites");

    // A backup whose entries were changed fails the audit and is not restored.
    let tampered = dir.path().join("tampered.backup");
    std::fs::copy(&file, &tampered).unwrap();
    {
        use sea_orm::{ConnectionTrait, Statement};
        let t = rxledger_store::connect(tampered.to_str().unwrap())
            .await
            .unwrap();
        for sql in [
            "UPDATE entries SET data = X'00' WHERE idx = 5",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ] {
            let sql = Statement::from_string(t.backend(), sql.to_string());
            t.conn.execute_raw(sql).await.unwrap();
        }
        t.conn.close().await.unwrap();
    }
    let other = dir.path().join("other");
    let o = restore(other.to_str().unwrap(), &tampered);
    assert_refused(&o, "fails the audit");
    assert!(
        std::fs::read_dir(&other).unwrap().next().is_none(),
        "something was left behind"
    );

    let o = run(&[
        "backup",
        "--database",
        "postgres://nobody@127.0.0.1:9/nothing",
        dir.path().join("pg.backup").to_str().unwrap(),
    ]);
    assert_refused(&o, "pg_dump");
}

#[tokio::test]
async fn api_keys_are_issued_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    ok(&[
        "org",
        "add",
        "--data-dir",
        d,
        "--id",
        "pharm-1",
        "--name",
        "Apotheke",
        "--role",
        "pharmacy",
    ]);
    let out = ok(&[
        "key",
        "issue",
        "--data-dir",
        d,
        "--org",
        "pharm-1",
        "--label",
        "till 2",
    ]);
    assert!(out.contains("for pharm-1 (PHARMACY)"), "{out}");
    let token = out.split_whitespace().last().unwrap().to_string();
    let id = out.split_whitespace().nth(2).unwrap().to_string();

    for (args, says) in [
        (vec!["--org", "nobody"], "no organization \"nobody\""),
        (vec!["--org", "pharm-1", "--role", "king"], "unknown role"),
        (
            vec!["--org", "pharm-1", "--expires-in-days", "0"],
            "--expires-in-days",
        ),
    ] {
        let o = run(&[&["key", "issue", "--data-dir", d][..], &args[..]].concat());
        assert_refused(&o, says);
    }

    let listed = ok(&["key", "list", "--data-dir", d, "--org", "pharm-1"]);
    assert_eq!(listed.lines().count(), 2, "a header and one key: {listed}");
    let row = listed.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&format!("{id}\tpharm-1\tPHARMACY\t")),
        "{row}"
    );
    assert!(row.ends_with("\t-\t-\ttill 2"), "{row}");
    assert!(!listed.contains(&token), "a list never shows a token");

    let db = rxledger_store::connect(&dir.path().join("rxledger.db").display().to_string())
        .await
        .unwrap();
    let keys = rxledger_store::ApiKeys::new(db);
    let who = keys.authenticate(&token).await.unwrap().unwrap();
    assert_eq!(
        (who.org_id.as_str(), who.role.as_str()),
        ("pharm-1", "PHARMACY")
    );

    ok(&["key", "revoke", "--data-dir", d, &id]);
    assert_eq!(
        keys.authenticate(&token).await.unwrap(),
        Err(rxledger_store::apikeys::TokenProblem::Revoked)
    );
    let row = ok(&["key", "list", "--data-dir", d]);
    assert!(
        !row.contains("\t-\t-\ttill 2"),
        "the revocation is listed: {row}"
    );
    let o = run(&["key", "revoke", "--data-dir", d, "0000000000000000"]);
    assert_refused(&o, "0000000000000000");
}

/// `rxledger product set|list`: the operator registers a GTIN's master data; a bad GTIN or an
/// image URL that is not https is refused with the reason, and nothing is stored.
#[test]
fn product_master_data_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let set = |extra: &[&str]| {
        let mut args = vec!["product", "set", "--data-dir", data, "--name", "Amoxil"];
        args.extend_from_slice(extra);
        run(&args)
    };
    assert_refused(&set(&["--gtin", "10614141073465"]), "--gtin");
    assert_refused(
        &set(&[
            "--gtin",
            "10614141073464",
            "--image-url",
            "http://a.org/x.png",
        ]),
        "imageUrl must be an https:// URL",
    );
    let list = || run(&["product", "list", "--data-dir", data]);
    assert_eq!(String::from_utf8_lossy(&list().stdout), "");
    let ok = set(&[
        "--gtin",
        "10614141073464",
        "--strength",
        "500 mg",
        "--pack-size",
        "21 capsules",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(
        String::from_utf8_lossy(&list().stdout),
        "10614141073464\tAmoxil\t500 mg\t\t21 capsules\t\n"
    );
}

mod postgres {
    use super::*;

    /// A PostgreSQL server without the database: a message that says how to create it, and
    /// none of the driver's internal text.
    #[test]
    #[ignore = "needs PostgreSQL: set RXLEDGER_TEST_POSTGRES_URL and run with --ignored (CI does)"]
    fn a_missing_database_says_how_to_create_it() {
        let admin = std::env::var("RXLEDGER_TEST_POSTGRES_URL").unwrap();
        let (server, _) = admin.rsplit_once('/').unwrap();
        let url = format!("{server}/rxl_missing_{}", std::process::id());
        let o = run(&["checkpoint", "--database", &url]);
        assert_refused(
            &o,
            &format!("no database named \"rxl_missing_{}\"", std::process::id()),
        );
        assert_refused(&o, "createdb -h ");
        let e = stderr(&o);
        assert!(!e.contains("line") && !e.contains("3D000"), "{e}");
    }
}
