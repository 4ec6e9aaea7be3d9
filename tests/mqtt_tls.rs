//! MQTT over TLS: the embedded broker's TLS listener (the gate's access rules inside the TLS
//! stream), client certificates for devices, the node's `mqtts://` client, firmware-sim over
//! `mqtts://`, and the open connection of a device revoked after it logged in. Every
//! authority is made inside the test (rcgen).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use firmware_sim::device::Broker;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use rxledger::tls::{MqttTls, TlsFiles};
use rxledger_core::envelope;
use rxledger_core::keys::SigningKey;
use rxledger_core::mqttauth;
use rxledger_ingest::MqttUrl;
use rxledger_ingest::revocation::SWEEP_EVERY;
use rxledger_keyfile::tls::ClientTls;
use serde_json::json;

const GLN: &str = "0614141000005";

/// A certificate authority made for the test, its certificate written to `dir/{name}.pem`.
struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} (rxledger test)"));
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            pem,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) with subject CN `cn`, and its
    /// key, written to `dir/{file}.crt` and `dir/{file}.key`.
    fn issue(&self, dir: &Path, file: &str, cn: &str, names: &[&str]) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{file}.crt")),
            key: dir.join(format!("{file}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }
}

/// The server's authority and certificate, another authority nobody trusts, and the
/// authority that issues devices' certificates.
struct Pki {
    dir: tempfile::TempDir,
    server_ca: Authority,
    server: TlsFiles,
    stranger: Authority,
    devices_ca: Authority,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = Authority::new(dir.path(), "server-ca");
    let server = server_ca.issue(
        dir.path(),
        "server",
        "rxledger",
        &["127.0.0.1", "localhost"],
    );
    Pki {
        stranger: Authority::new(dir.path(), "stranger"),
        devices_ca: Authority::new(dir.path(), "devices-ca"),
        server_ca,
        server,
        dir,
    }
}

/// A server whose embedded broker also listens in TLS (HTTP stays plain), requiring client
/// certificates from `client_ca` when given.
async fn spawn_tls_app(pki: &Pki, client_ca: Option<&Path>) -> TestApp {
    let tls = MqttTls {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        files: Some(pki.server.clone()),
        client_ca: client_ca.map(Path::to_path_buf),
        ca: None,
    };
    spawn_app_with(Backends::Embedded, |c| c.mqtt_tls = tls).await
}

fn mqtts_port(app: &TestApp) -> u16 {
    app.app().mqtts_addr.expect("a TLS listener").port()
}

/// Client options for the TLS listener with the trust (and identity) `tls` names.
fn tls_options(app: &TestApp, client_id: &str, tls: ClientTls<'_>) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", mqtts_port(app));
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(
        tls.config().unwrap(),
    )));
    o
}

/// Trusts the server's authority and presents `id`.
fn presenting<'a>(pki: &'a Pki, id: &'a TlsFiles) -> ClientTls<'a> {
    ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: Some((&id.cert, &id.key)),
    }
}

/// Connects as device `id` with `opts` and its derived password; why it failed otherwise.
async fn device(
    app: &TestApp,
    opts: MqttOptions,
    id: &str,
    key: &SigningKey,
) -> Result<TestDevice, String> {
    let log = app.log();
    let password = mqttauth::device_password(key, log.public_key(), id);
    TestDevice::try_connect_with(opts, &app.topic_root, id, key.clone(), &log, Some(password)).await
}

/// Connects with `opts` (credentials included) and subscribes to `filter`: the event loop
/// once the broker granted it, or why the broker refused or closed.
async fn subscribed(opts: MqttOptions, filter: &str) -> Result<(AsyncClient, EventLoop), String> {
    let (client, mut el) = AsyncClient::new(opts, 100);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::SubAck(a))) => {
                    return match a.return_codes.contains(&SubscribeReasonCode::Failure) {
                        true => Err("SUBACK failure".to_string()),
                        false => Ok(()),
                    };
                }
                Ok(_) => {}
                Err(e) => return Err(describe(&e)),
            }
        }
    })
    .await
    .expect("the broker answers within 10 s");
    answer.map(|()| (client, el))
}

/// A connection error with its causes (rumqttc's `Display` hides the TLS alert).
fn describe(e: &ConnectionError) -> String {
    format!("{e} ({e:?})")
}

fn commission_one(serial: &str) -> Vec<serde_json::Value> {
    vec![commission(&[serial], "L1", "2031-06-30")]
}

/// A device with the authority's trust gets signed receipts over TLS, under the same access
/// rules as in plain TCP; a client that trusts another authority, and plain MQTT on the TLS
/// port, do not connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_reach_the_broker_over_tls_and_nothing_else_does() {
    let pki = pki();
    let app = spawn_tls_app(&pki, None).await;
    let key = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    let trust = ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: None,
    };

    let mut line = device(
        &app,
        tls_options(&app, "line-1-tls", trust.clone()),
        "line-1",
        &key,
    )
    .await
    .unwrap();
    // `send` checks the receipt as a device must: signature, checkpoint, inclusion proof.
    let r = line.send_events(commission_one("1")).await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");

    // The gate's rules inside the TLS stream: the device's own login may not read `#`.
    let password = mqttauth::device_password(&key, app.log().public_key(), "line-1");
    let mut snoop = tls_options(&app, "line-1-snoop", trust.clone());
    snoop.set_credentials("line-1", password.clone());
    let err = subscribed(snoop, "#").await.err().expect("`#` is refused");
    assert!(
        !err.contains("SUBACK"),
        "the gate closes the connection: {err}"
    );
    // And no login, no connection.
    let anonymous = tls_options(&app, "anonymous", trust.clone());
    let own_acks = envelope::acks_topic(&app.topic_root, "line-1");
    let err = subscribed(anonymous, &own_acks).await.err().unwrap();
    assert!(err.contains("NotAuthorized"), "{err}");

    let stranger = ClientTls {
        ca: Some(&pki.stranger.pem),
        identity: None,
    };
    let err = device(
        &app,
        tls_options(&app, "line-1-s", stranger),
        "line-1",
        &key,
    )
    .await
    .err()
    .expect("a client that trusts another authority does not connect");
    assert!(err.contains("certificate"), "{err}");

    let mut plain = MqttOptions::new("line-1-plain", "127.0.0.1", mqtts_port(&app));
    plain.set_credentials("line-1", password);
    let err = subscribed(plain, &own_acks).await.err();
    assert!(err.is_some(), "plain MQTT on the TLS port was answered");

    // The plain listener is still there, with the same rules.
    let mut plain_line = app.device("line-1", key).await;
    plain_line.seq = line.seq;
    let r = plain_line.send_events(commission_one("2")).await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    app.stop().await;
}

/// With --mqtt-client-ca, only a certificate from that authority that names the device, plus
/// the device's password, gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_must_come_from_the_authority_and_name_the_device() {
    let pki = pki();
    let dir = pki.dir.path();
    let app = spawn_tls_app(&pki, Some(&pki.devices_ca.pem)).await;
    let key = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    let own = pki.devices_ca.issue(dir, "line-1", "line-1", &[]);
    let by_dns_name = pki
        .devices_ca
        .issue(dir, "line-1-dns", "scanner", &["line-1"]);
    let other_device = pki.devices_ca.issue(dir, "line-2", "line-2", &["line-2"]);
    let rogue = pki.stranger.issue(dir, "rogue", "line-1", &["line-1"]);
    let with = |id| presenting(&pki, id);
    let options = |name: &str, tls: ClientTls<'_>| tls_options(&app, name, tls);

    let no_cert = ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: None,
    };
    let err = device(&app, options("no-cert", no_cert), "line-1", &key).await;
    let err = err.err().expect("no client certificate");
    assert!(
        !err.contains("NotAuthorized"),
        "refused in the handshake: {err}"
    );

    let err = device(&app, options("rogue", with(&rogue)), "line-1", &key).await;
    let err = err.err().expect("a certificate of another authority");
    assert!(
        !err.contains("NotAuthorized"),
        "refused in the handshake: {err}"
    );

    let err = device(&app, options("other", with(&other_device)), "line-1", &key).await;
    let err = err.err().expect("another device's certificate");
    assert!(err.contains("NotAuthorized"), "CONNACK 5: {err}");

    // The certificate alone is not a login: the password stays required.
    let mut wrong_password = options("no-password", with(&own));
    wrong_password.set_credentials("line-1", "not the password");
    let own_acks = envelope::acks_topic(&app.topic_root, "line-1");
    let err = subscribed(wrong_password, &own_acks).await.err().unwrap();
    assert!(err.contains("BadUserNamePassword"), "{err}");

    let mut line = device(&app, options("own", with(&own)), "line-1", &key)
        .await
        .unwrap();
    let r = line.send_events(commission_one("1")).await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    let mut by_name = device(&app, options("dns", with(&by_dns_name)), "line-1", &key)
        .await
        .unwrap();
    by_name.seq = line.seq;
    let r = by_name.send_events(commission_one("2")).await;
    assert_eq!(r.status, "ACCEPTED", "{r:?}");
    app.stop().await;
}

/// The node's client for an external `mqtts://` broker (here another node's TLS gate, which
/// speaks for the same log key): it trusts the authority named by --mqtt-ca, and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_mqtts_client_trusts_the_named_authority() {
    let pki = pki();
    let app = spawn_tls_app(&pki, None).await;
    let log_key = rxledger::keyfile::load(&app.cfg.key_path).unwrap();
    let url = MqttUrl::parse(&format!("mqtts://127.0.0.1:{}", mqtts_port(&app))).unwrap();
    assert!(
        url.options("node-2", &log_key, None).is_err(),
        "mqtts:// needs a trust"
    );
    let filter = envelope::shared_events_filter(&app.topic_root);

    let trust = ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: None,
    };
    let opts = url
        .options("node-2", &log_key, Some(trust.config().unwrap()))
        .unwrap();
    let (client, _el) = subscribed(opts, &filter).await.unwrap();
    let _ = client.try_disconnect();

    let stranger = ClientTls {
        ca: Some(&pki.stranger.pem),
        identity: None,
    };
    let opts = url
        .options("node-3", &log_key, Some(stranger.config().unwrap()))
        .unwrap();
    let err = subscribed(opts, &filter).await.err().unwrap();
    assert!(err.contains("certificate"), "{err}");
    app.stop().await;
}

/// firmware-sim's scenario, every injection included, with all its devices on `mqtts://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_sim_plays_its_scenario_over_mqtts() {
    let pki = pki();
    let app = spawn_tls_app(&pki, None).await;
    let mut opts = app.scenario_options(12, 2);
    let trust = ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: None,
    };
    let url = format!("mqtts://127.0.0.1:{}", mqtts_port(&app));
    opts.mqtt = Broker::parse_with(&url, &trust).unwrap();
    assert_eq!(opts.mqtt.to_string(), url);
    let report = firmware_sim::scenario::run_scenario(opts).await.unwrap();
    assert!(report.ok(), "{}", report.summary());
    assert!(report.accepted > 0, "{}", report.summary());
    app.stop().await;
}

/// Revoking a device (GraphQL, as an admin) closes its open connections, plain and TLS,
/// within the sweep period, and its next login is refused; other devices stay connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_open_connections_are_closed() {
    let pki = pki();
    let app = spawn_tls_app(&pki, None).await;
    let key = app
        .enroll("acme", "MANUFACTURER", Some("0614141"), GLN, "line-1")
        .await;
    let other_key = app
        .enroll("acme", "MANUFACTURER", None, GLN, "line-2")
        .await;
    let mut other = app.device("line-2", other_key).await;
    let password = mqttauth::device_password(&key, app.log().public_key(), "line-1");
    let acks = envelope::acks_topic(&app.topic_root, "line-1");
    let trust = ClientTls {
        ca: Some(&pki.server_ca.pem),
        identity: None,
    };
    let mut over_tls = tls_options(&app, "line-1-tls", trust.clone());
    over_tls.set_credentials("line-1", password.clone());
    let (host, port) = app.mqtt.clone();
    let mut plain = MqttOptions::new("line-1-plain", host, port);
    plain.set_credentials("line-1", password.clone());
    let mut open = Vec::new();
    for opts in [over_tls, plain] {
        let mut opts = opts;
        opts.set_keep_alive(Duration::from_secs(60));
        open.push(subscribed(opts, &acks).await.unwrap());
    }

    let admin = app.app().first_admin_token.clone().unwrap();
    let revoked = app
        .graphql_as(
            Some(&admin),
            "mutation($id: String!) { revokeDevice(id: $id) { id status } }",
            json!({ "id": "line-1" }),
        )
        .await;
    assert_eq!(
        revoked["data"]["revokeDevice"]["status"], "revoked",
        "{revoked}"
    );
    let at = Instant::now();
    let bound = SWEEP_EVERY * 5;
    for (_client, mut el) in open {
        let closed = tokio::time::timeout(bound, async {
            loop {
                if let Err(e) = el.poll().await {
                    return e;
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!("the revoked device's connection is still open after {bound:?}")
        });
        eprintln!("closed after {:?}: {}", at.elapsed(), describe(&closed));
    }

    let mut again = tls_options(&app, "line-1-again", trust);
    again.set_credentials("line-1", password);
    let err = subscribed(again, &acks).await.err().unwrap();
    assert!(err.contains("BadUserNamePassword"), "{err}");
    let r = other.send_events(commission_one("3")).await;
    assert_eq!(
        r.status, "ACCEPTED",
        "the other device is still connected: {r:?}"
    );
    app.stop().await;
}
