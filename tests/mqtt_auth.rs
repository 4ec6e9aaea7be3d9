//! Authenticated MQTT: who may connect, what each client may publish and subscribe to, and
//! why a forged receipt cannot make a device drop an envelope the log never took.
//!
//! The embedded broker (its gate) is tested in every run; Mosquitto with the configuration
//! `rxledger broker-acl` writes, and a forger on an open broker, need the mosquitto binary and
//! run with `--ignored external`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use firmware_sim::scenario;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode};
use rxledger_core::envelope::{self, Receipt};
use rxledger_core::keys::SigningKey;
use rxledger_core::mqttauth::{self, NODE_USERNAME};
use rxledger_ingest::{MqttTarget, MqttUrl};

const GLN: &str = "0614141000005";

/// What the broker did with a client's request.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Granted,
    /// SUBACK with the failure code (Mosquitto's answer).
    SubscribeRefused,
    /// CONNACK refusal, or the connection closed (the gate's answer).
    Closed(String),
}

fn client(
    mqtt: &(String, u16),
    id: &str,
    login: Option<(&str, String)>,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(format!("auth-test-{id}"), mqtt.0.clone(), mqtt.1);
    o.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = login {
        o.set_credentials(u, p);
    }
    AsyncClient::new(o, 100)
}

/// Connects and subscribes to `filter`; reports what the broker answered.
async fn subscribe(
    mqtt: &(String, u16),
    id: &str,
    login: Option<(&str, String)>,
    filter: &str,
) -> Outcome {
    let (c, mut el) = client(mqtt, id, login);
    c.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    return if a.return_codes.contains(&SubscribeReasonCode::Failure) {
                        Outcome::SubscribeRefused
                    } else {
                        Outcome::Granted
                    };
                }
                Ok(_) => {}
                Err(e) => return Outcome::Closed(e.to_string()),
            }
        }
    })
    .await
    .expect("the broker answers");
    let _ = c.try_disconnect();
    outcome
}

/// Connects and publishes `payload` on `topic` with QoS 1 (and `retain`); reports whether the
/// broker took it (PUBACK) or closed the connection.
async fn publish(
    mqtt: &(String, u16),
    id: &str,
    login: Option<(&str, String)>,
    topic: &str,
    retain: bool,
    payload: Vec<u8>,
) -> Outcome {
    let (c, mut el) = client(mqtt, id, login);
    c.publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => return Outcome::Granted,
                Ok(_) => {}
                Err(e) => return Outcome::Closed(e.to_string()),
            }
        }
    })
    .await
    .expect("the broker answers");
    let _ = c.try_disconnect();
    outcome
}

/// A REJECTED receipt for `payload_hash`, signed by a key that is not the log's.
fn forged_receipt(device: &str, payload_hash: &str, forger: &SigningKey) -> Vec<u8> {
    let mut r = Receipt {
        v: envelope::VERSION,
        status: envelope::ReceiptStatus::Rejected,
        device_id: device.into(),
        seq: None,
        payload_hash: payload_hash.into(),
        code: Some("BAD_SIGNATURE".into()),
        message: Some("forged".into()),
        entry_index: None,
        leaf_hash: None,
        event_ids: vec![],
        checkpoint: None,
        inclusion_proof: vec![],
        signature: None,
    };
    envelope::sign_receipts(std::slice::from_mut(&mut r), forger);
    serde_json::to_vec(&r).unwrap()
}

fn is_closed(o: &Outcome) -> bool {
    matches!(o, Outcome::Closed(_))
}

/// No credentials, wrong ones, an unknown or revoked device: refused. The device's own and
/// the node's credentials: admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enrolled_devices_and_nodes_may_connect() {
    let app = spawn_app().await;
    let key = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    let log = app.log();
    let acks = envelope::acks_topic(&app.topic_root, "line-1");
    let good = mqttauth::device_password(&key, log.public_key(), "line-1");

    assert!(is_closed(&subscribe(&app.mqtt, "anon", None, &acks).await));
    let wrong = mqttauth::device_password(&SigningKey::generate(), log.public_key(), "line-1");
    assert!(is_closed(
        &subscribe(&app.mqtt, "wrong", Some(("line-1", wrong)), &acks).await
    ));
    let other_log = SigningKey::generate().public_key();
    let stale = mqttauth::device_password(&key, &other_log, "line-1");
    assert!(is_closed(
        &subscribe(&app.mqtt, "stale", Some(("line-1", stale)), &acks).await
    ));
    let k2 = SigningKey::generate();
    let stranger = mqttauth::device_password(&k2, log.public_key(), "nobody");
    assert!(is_closed(
        &subscribe(&app.mqtt, "stranger", Some(("nobody", stranger)), &acks).await
    ));
    // Someone else's password for this id.
    assert!(is_closed(
        &subscribe(&app.mqtt, "swap", Some(("line-2", good.clone())), &acks).await
    ));

    assert_eq!(
        subscribe(&app.mqtt, "ok", Some(("line-1", good.clone())), &acks).await,
        Outcome::Granted
    );
    let node = mqttauth::node_password(app.app().ledger.key());
    let shared = envelope::shared_events_filter(&app.topic_root);
    assert_eq!(
        subscribe(&app.mqtt, "node", Some((NODE_USERNAME, node)), &shared).await,
        Outcome::Granted
    );

    app.app().registry.revoke_device("line-1").await.unwrap();
    assert!(is_closed(
        &subscribe(&app.mqtt, "revoked", Some(("line-1", good)), &acks).await
    ));
    app.stop().await;
}

/// The access rules, asked of the broker at `mqtt` for the enrolled devices `line-1` (key
/// `k1`) and `line-2`: every refused request is refused, every allowed one granted.
async fn devices_reach_only_their_own_topics(
    mqtt: &(String, u16),
    root: &str,
    k1: &SigningKey,
    log: &rxledger_core::keys::LogVerifier,
) {
    let login = || {
        Some((
            "line-1",
            mqttauth::device_password(k1, log.public_key(), "line-1"),
        ))
    };
    let refused = |o: &Outcome| matches!(o, Outcome::Closed(_) | Outcome::SubscribeRefused);
    for filter in [
        "#".to_string(),
        format!("{root}/#"),
        format!("{root}/devices/+/acks"),
        envelope::acks_topic(root, "line-2"),
        envelope::events_topic(root, "line-2"),
        envelope::events_topic(root, "line-1"),
        envelope::shared_events_filter(root),
        format!("$share/x/{}", envelope::acks_topic(root, "line-2")),
    ] {
        let o = subscribe(mqtt, "sub", login(), &filter).await;
        assert!(refused(&o), "line-1 subscribing to {filter}: {o:?}");
    }
    assert_eq!(
        subscribe(mqtt, "own", login(), &envelope::acks_topic(root, "line-1")).await,
        Outcome::Granted
    );
    {
        // Another device's events, any acks topic (retained or not): the connection closes.
        for (topic, retain) in [
            (envelope::events_topic(root, "line-2"), false),
            (envelope::acks_topic(root, "line-2"), true),
            (envelope::acks_topic(root, "line-1"), false),
        ] {
            let forged = forged_receipt("line-2", &"0".repeat(64), k1);
            let o = publish(mqtt, "pub", login(), &topic, retain, forged).await;
            assert!(is_closed(&o), "line-1 publishing on {topic}: {o:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_enforces_the_access_rules() {
    let app = spawn_app().await;
    let k1 = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    app.enroll("acme", "MANUFACTURER", None, GLN, "line-2")
        .await;
    devices_reach_only_their_own_topics(&app.mqtt, &app.topic_root, &k1, &app.log()).await;
    // And the device's own topic works end to end.
    let mut dev = app.device("line-1", k1).await;
    let r = dev
        .send_events(vec![commission(&["1"], "L1", "2031-06-30")])
        .await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    app.stop().await;
}

/// Runs the scenario while `forger` (a task that publishes forged receipts and counts them
/// in `forged`) runs; the scenario meets every expectation, the log audits clean and the
/// forger did try.
async fn scenario_survives(app: &TestApp, forger: tokio::task::JoinHandle<()>, forged: &AtomicU64) {
    let report = scenario::run_scenario(app.scenario_options(20, 2))
        .await
        .unwrap();
    forger.abort();
    assert!(report.ok(), "{}", report.summary());
    let audit = rxledger_store::audit::audit_ledger(&app.app().ledger)
        .await
        .unwrap();
    assert!(audit.ok(), "{:?}", audit.problems);
    assert!(
        forged.load(Ordering::Relaxed) > 0,
        "the forger never got to try"
    );
}

/// On the embedded broker a forger, even an enrolled device, cannot publish on anyone's acks
/// topic: every attempt closes its connection, and the scenario loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forger_on_embedded_broker_is_shut_out_and_nothing_is_lost() {
    let app = spawn_app().await;
    let fk = app
        .enroll("forgers", "WHOLESALER", None, "0614141000029", "forger-1")
        .await;
    let (mqtt, root, log) = (app.mqtt.clone(), app.topic_root.clone(), app.log());
    let refused = Arc::new(AtomicU64::new(0));
    let count = refused.clone();
    let registry = app.app().registry.clone();
    let forger = tokio::spawn(async move {
        let login = || {
            Some((
                "forger-1",
                mqttauth::device_password(&fk, log.public_key(), "forger-1"),
            ))
        };
        loop {
            // Every enrolled device's acks topic, retained and not.
            for (i, victim) in registry.devices().await.unwrap().iter().enumerate() {
                let forged = forged_receipt(&victim.id, &"0".repeat(64), &fk);
                let topic = envelope::acks_topic(&root, &victim.id);
                let o = publish(&mqtt, "forger", login(), &topic, i % 2 == 0, forged).await;
                assert!(is_closed(&o), "{o:?}");
                count.fetch_add(1, Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    scenario_survives(&app, forger, &refused).await;
    app.stop().await;
}

/// A private Mosquitto on a free port with `conf` (its listener line is added).
fn mosquitto(dir: &std::path::Path, conf: &str) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("mosquitto.conf");
    std::fs::write(
        &path,
        format!("listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\nmax_queued_messages 200000\nmax_inflight_messages 1000\n{conf}"),
    )
    .unwrap();
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .expect("mosquitto is installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (child, port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("mosquitto did not start on port {port}");
}

/// On a broker without rxledger's ACL anyone can publish receipts: the forger sees every
/// envelope and answers it at once with a forged REJECTED receipt, retained or not. The
/// devices check every receipt against the log key, so none drops an envelope the log has not
/// taken, and the scenario loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the mosquitto binary, as on the CI machine: run with --ignored external"]
async fn forger_on_open_external_broker_cannot_make_devices_drop_envelopes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut broker, port) = mosquitto(dir.path(), "allow_anonymous true\n");
    let app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.mqtt =
            MqttTarget::External(MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap());
    })
    .await;
    let (mqtt, root) = (app.mqtt.clone(), app.topic_root.clone());
    let count = Arc::new(AtomicU64::new(0));
    let forged = count.clone();
    let forger = tokio::spawn(async move {
        let key = SigningKey::generate();
        let (c, mut el) = client(&mqtt, "forger", None);
        c.subscribe(format!("{root}/devices/+/events"), QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Ok(Event::Incoming(Packet::Publish(p))) = el.poll().await {
                let Some(device) = envelope::device_of_topic(&root, &p.topic) else {
                    continue;
                };
                let receipt = forged_receipt(device, &envelope::payload_hash(&p.payload), &key);
                let topic = envelope::acks_topic(&root, device);
                let n = forged.fetch_add(1, Ordering::Relaxed);
                let _ = c.try_publish(topic, QoS::AtLeastOnce, n.is_multiple_of(2), receipt);
            }
        }
    });
    scenario_survives(&app, forger, &count).await;
    app.stop().await;
    broker.kill().ok();
    broker.wait().ok();
}

/// `rxledger broker-acl --format mosquitto` writes a password file and ACL with which
/// Mosquitto admits the node and the enrolled devices, refuses everyone else, and keeps each
/// device to its own topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the mosquitto binary, as on the CI machine: run with --ignored external"]
async fn external_mosquitto_with_generated_acl() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let key_path = data.join("log.key");
    let log_key = rxledger::keyfile::generate(&key_path, false).unwrap();
    let root = format!("rxledger-acl/{}", std::process::id());
    // First only the node may log in: its entry needs nothing but the log key.
    let conf_dir = dir.path().join("mq");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let node_only = rxledger_ingest::brokeracl::mosquitto(&[], &log_key, &root).unwrap();
    std::fs::write(conf_dir.join("passwd"), &node_only.passwd).unwrap();
    std::fs::write(conf_dir.join("acl"), &node_only.acl).unwrap();
    let (mut broker, port) = mosquitto(
        dir.path(),
        &format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            conf_dir.join("passwd").display(),
            conf_dir.join("acl").display()
        ),
    );
    let db = data.join("rxledger.db");
    let app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.mqtt =
            MqttTarget::External(MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap());
        cfg.key_path = key_path.clone();
        cfg.database = db.display().to_string();
        cfg.ingest.topic_root = root.clone();
    })
    .await;
    let k1 = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    app.enroll("acme", "MANUFACTURER", None, GLN, "line-2")
        .await;
    let revoked = app
        .enroll("acme", "MANUFACTURER", None, GLN, "line-3")
        .await;
    app.app().registry.revoke_device("line-3").await.unwrap();

    // The operator regenerates the files and reloads Mosquitto.
    rxledger_cli(
        &data,
        &["--database", &db.display().to_string()],
        &[
            "broker-acl",
            "--topic-root",
            &root,
            "--out",
            &conf_dir.display().to_string(),
        ],
    );
    // The files are written with mode 0600; Mosquitto started as root reads them as the
    // `mosquitto` user, so the operator hands them over (DEPLOY.md). Here: world-readable.
    for f in ["passwd", "acl"] {
        use std::os::unix::fs::PermissionsExt as _;
        let path = conf_dir.join(f);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let passwd = std::fs::read_to_string(conf_dir.join("passwd")).unwrap();
    assert!(
        passwd.contains("\nline-1:$6$") && !passwd.contains("line-3"),
        "{passwd}"
    );
    // SAFETY: kill only sends SIGHUP (reload) to the child this test started.
    assert_eq!(unsafe { libc::kill(broker.id() as i32, libc::SIGHUP) }, 0);

    let mqtt = ("127.0.0.1".to_string(), port);
    let log = app.log();
    // Mosquitto reloads asynchronously: wait until line-1's new login is accepted.
    let login1 = || {
        Some((
            "line-1",
            mqttauth::device_password(&k1, log.public_key(), "line-1"),
        ))
    };
    let own = envelope::acks_topic(&root, "line-1");
    let mut admitted = false;
    for _ in 0..100 {
        if subscribe(&mqtt, "probe", login1(), &own).await == Outcome::Granted {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        admitted,
        "line-1 is admitted after the reload: {}",
        std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default()
    );
    assert!(is_closed(&subscribe(&mqtt, "anon", None, &own).await));
    let wrong = mqttauth::device_password(&SigningKey::generate(), log.public_key(), "line-1");
    assert!(is_closed(
        &subscribe(&mqtt, "wrong", Some(("line-1", wrong)), &own).await
    ));
    let gone = mqttauth::device_password(&revoked, log.public_key(), "line-3");
    let own3 = envelope::acks_topic(&root, "line-3");
    assert!(is_closed(
        &subscribe(&mqtt, "revoked", Some(("line-3", gone)), &own3).await
    ));
    // Mosquitto grants a SUBSCRIBE to `#` and then filters each delivery by the read ACL, so
    // the refusals are not visible as SUBACK codes; only the embedded gate's test asserts them.

    // The server, logged in as the node, still takes envelopes and answers them.
    let mut dev = TestDevice::connect(mqtt.clone(), &root, "line-1", k1, &log).await;
    let r = dev
        .send_events(vec![commission(&["1"], "L1", "2031-06-30")])
        .await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    app.stop().await;
    broker.kill().ok();
    broker.wait().ok();
}
