//! Faults: the database goes away for 30 s, the SQLite disk fills up, slow-loris HTTP clients
//! and oversized HTTP bodies. (A broker restart is `scenario::external_broker_outage_during_scenario`;
//! a process kill is `crash.rs` and `scale.rs`; skewed device clocks are in `ingest.rs`.)

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rxledger_core::envelope;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// A TCP proxy that can cut every connection and refuse new ones: a database that "goes
/// away" for the node, while the real server keeps running for everyone else.
struct Proxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if !up.load(Ordering::SeqCst) {
                        continue; // dropped: connection refused, as by a dead server
                    }
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.lock().await.push(task);
                }
            })
        };
        Proxy {
            addr,
            up,
            conns,
            accept,
        }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().await.drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

mod external {
    use super::*;

    /// PostgreSQL unreachable for 30 s: ingest pauses without acknowledging anything, then
    /// resumes, and every envelope is in the ledger exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and an MQTT broker: set RXLEDGER_TEST_POSTGRES_URL and RXLEDGER_TEST_MQTT_URL"]
    async fn database_unavailable_for_30_s() {
        let pg_url =
            std::env::var("RXLEDGER_TEST_POSTGRES_URL").expect("RXLEDGER_TEST_POSTGRES_URL");
        let hostport = pg_url
            .split_once('@')
            .map(|(_, r)| r)
            .unwrap_or(&pg_url)
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let proxy = Proxy::start(hostport.clone()).await;
        let via = proxy.addr.to_string();
        let app = spawn_app_with(Backends::External, |cfg| {
            cfg.database = cfg.database.replacen(&hostport, &via, 1);
        })
        .await;
        assert!(
            app.cfg.database.contains(&via),
            "the node talks through the proxy"
        );
        let mut line = app.acme_with_packs(&["P0"]).await;

        proxy.cut().await;
        let mut sent = Vec::new();
        for i in 1..=50 {
            let e = line.envelope(vec![commission(&[&format!("P{i}")], "L1", "2031-06-30")]);
            sent.push(envelope::payload_hash(&e));
            line.publish(e).await;
        }
        // 30 s without a database: not one receipt, because nothing can be made durable.
        let outage_end = Instant::now() + Duration::from_secs(30);
        if let Ok(r) = tokio::time::timeout_at(outage_end.into(), line.try_next_receipt()).await {
            panic!("a receipt during the outage: {r:?}");
        }
        proxy.restore();
        let mut waiting: HashSet<String> = sent.iter().cloned().collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !waiting.is_empty() {
            let r = tokio::time::timeout_at(deadline.into(), line.try_next_receipt())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "{} envelopes without a receipt 60 s after the database came back",
                        waiting.len()
                    )
                })
                .expect("receipt channel open");
            assert!(r.status == "ACCEPTED" || r.status == "DUPLICATE", "{r:?}");
            waiting.remove(&r.payload_hash);
        }
        assert_eq!(app.event_entries().await, 51, "each envelope once");
        app.stop().await;
    }
}

/// The SQLite disk fills up (simulated with a file-size limit, `ulimit -f`, so it needs no
/// root): the node says so clearly and acknowledges nothing it could not write; after a
/// restart with space, the device's resends all land exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let key = rxledger_core::keys::SigningKey::generate();
    enroll_acme_cli(data, &[], &[("line-1", &key)]);
    let db_size = std::fs::metadata(data.join("rxledger.db")).unwrap().len();
    let log = data.join("node.log");
    // Files may grow to the database's size plus 1 MiB; SIGXFSZ is ignored so that writes
    // past the limit fail with EFBIG instead of killing the process.
    let limit_kib = db_size / 1024 + 1024;
    let serve = |limited: bool| {
        let script = if limited {
            format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"")
        } else {
            "exec \"$0\" \"$@\"".to_string()
        };
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script, BIN])
            .args(serve_args(data, 20))
            .env("RXLEDGER_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap());
        let s = spawn_serve(cmd);
        (s.child, s.mqtt_port.expect("serve printed its MQTT port"))
    };

    let (mut node, port) = serve(true);
    let mut dev = TestDevice::connect(
        ("127.0.0.1".into(), port),
        envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key.clone(),
        &log_verifier_in(data),
    )
    .await;
    // Envelopes of ~8 KiB (40 packs each) until the disk is full and receipts stop.
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut receipted: std::collections::HashMap<String, u64> = Default::default();
    let mut full = false;
    for round in 0..400 {
        let serials: Vec<String> = (0..40).map(|i| format!("F{round}x{i}")).collect();
        let refs: Vec<&str> = serials.iter().map(String::as_str).collect();
        let e = dev.envelope(vec![commission(&refs, "L1", "2031-06-30")]);
        sent.push(e.clone());
        dev.publish(e).await;
        match tokio::time::timeout(Duration::from_secs(5), dev.try_next_receipt()).await {
            Ok(Some(r)) => {
                assert_eq!(r.status, "ACCEPTED", "{r:?}");
                receipted.insert(r.payload_hash.clone(), r.entry_index.unwrap());
            }
            Ok(None) => panic!("receipt channel closed"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the file-size limit was reached");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("nothing was acked")
            && (stderr.contains("disk I/O error") || stderr.contains("disk is full")),
        "a clear error in the node's log:\n{}",
        stderr.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    node.kill().unwrap();
    node.wait().unwrap();
    // Nothing was acknowledged that was not written.
    {
        use rxledger_entities::entry;
        use sea_orm::EntityTrait;
        let db = rxledger_store::connect(&data.join("rxledger.db").display().to_string())
            .await
            .unwrap();
        let rows = entry::Entity::find().all(&db.conn).await.unwrap();
        let logged: std::collections::HashMap<String, u64> = rows
            .iter()
            .map(|e| (envelope::payload_hash(&e.data), e.idx as u64))
            .collect();
        let order: Vec<(u64, Option<u64>)> = sent
            .iter()
            .map(|e| {
                let h = envelope::payload_hash(e);
                (
                    receipted.get(&h).copied().unwrap_or(u64::MAX),
                    logged.get(&h).copied(),
                )
            })
            .collect();
        for (h, index) in &receipted {
            assert_eq!(
                logged.get(h),
                Some(index),
                "receipted envelope in the log at its index; (receipt, log) per envelope: {order:?}"
            );
        }
    }

    // Restart with room; what had a receipt is there; the device resends the rest.
    let (mut node, port) = serve(false);
    let mut dev = TestDevice::connect(
        ("127.0.0.1".into(), port),
        envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key,
        &log_verifier_in(data),
    )
    .await;
    for e in &sent {
        dev.publish(e.clone()).await;
    }
    let mut waiting: HashSet<String> = sent.iter().map(|e| envelope::payload_hash(e)).collect();
    while !waiting.is_empty() {
        let r = dev.next_receipt().await;
        assert!(r.status == "ACCEPTED" || r.status == "DUPLICATE", "{r:?}");
        if let Some(index) = receipted.get(&r.payload_hash) {
            assert_eq!(
                r.entry_index,
                Some(*index),
                "a receipted envelope kept its index"
            );
        }
        waiting.remove(&r.payload_hash);
    }
    node.kill().unwrap();
    node.wait().unwrap();
    assert_audit_passes(data, &[]);
    let db = rxledger_store::connect(&data.join("rxledger.db").display().to_string())
        .await
        .unwrap();
    let size = rxledger_store::ledger::read_head(&db).await.unwrap().size;
    let envelopes = rxledger_entities::entry::Entity::find()
        .filter(rxledger_entities::entry::Column::Kind.eq(1))
        .filter(rxledger_entities::entry::Column::Idx.lt(size as i64))
        .count(&db.conn)
        .await
        .unwrap();
    assert_eq!(envelopes, sent.len() as u64, "each envelope once");
}

/// Slow-loris clients that open connections and never finish their headers do not keep
/// others out, and an oversized GraphQL body is refused with 413.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_oversized_bodies() {
    let app = spawn_app().await;
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(app.http).await.unwrap();
        s.write_all(b"POST /graphql HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(s);
    }
    let (status, body) = http(
        app.http,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json".into())],
        br#"{"query":"{ checkpoint { size } }"}"#,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let huge = vec![b' '; rxledger::server::MAX_API_BODY + 1];
    let (status, body) = http(
        app.http,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json".into())],
        &huge,
    )
    .await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "TOO_LARGE", "{v}");
    drop(slow);
    app.stop().await;
}
