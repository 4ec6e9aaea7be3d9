//! The one helper for end-to-end tests: `spawn_app()` starts the real server on port 0 with
//! a fresh database and an embedded broker, and talks to it over real MQTT and HTTP.
//!
//! Backends come from the environment so one test body runs on every combination:
//! `RXLEDGER_TEST_POSTGRES_URL` switches the database to a fresh PostgreSQL database and
//! `RXLEDGER_TEST_MQTT_URL` switches to an external broker (each app then gets its own topic
//! root, so tests sharing one broker never see each other's devices). Tests that need them
//! are `#[ignore]`d with that reason and CI runs them with `--ignored`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use firmware_sim::events::Where;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use rxledger::server::{self, App, ServeConfig};
use rxledger_core::envelope::{self, Body, Receipt};
use rxledger_core::keys::{LogVerifier, SigningKey};
use rxledger_core::mqttauth;
use rxledger_ingest::{IngestConfig, MqttTarget, MqttUrl};
use rxledger_store::testdb::TempDb;
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const MQTT_ENV: &str = "RXLEDGER_TEST_MQTT_URL";

/// The test product: acme's GTIN (company prefix 0614141, item reference 107346).
pub const GTIN: &str = "10614141073464";
/// Its packs as EPC URNs, less the serial.
pub const PACK_URN: &str = "urn:epc:id:sgtin:0614141.107346.";
/// acme's plant (GLN 0614141000005) as an SGLN.
pub const PLANT: &str = "urn:epc:id:sgln:0614141.00000.0";
/// acme as a party and its plant, for source and destination lists.
pub const ACME: (&str, &str) = ("urn:epc:id:pgln:0614141.00000", PLANT);
/// `corner`'s site, 0614141000029, as a party and a location.
pub const CORNER: (&str, &str) = (
    "urn:epc:id:pgln:0614141.00002",
    "urn:epc:id:sgln:0614141.00002.0",
);

/// Which backends a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backends {
    /// SQLite file and embedded rumqttd: what a fresh clone has.
    Embedded,
    /// PostgreSQL and the external broker named by the environment.
    External,
}

pub struct TestApp {
    pub app: Option<App>,
    pub cfg: ServeConfig,
    pub http: SocketAddr,
    pub mqtt: (String, u16),
    pub topic_root: String,
    pub dir: tempfile::TempDir,
    pg: Option<TempDb>,
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backends::Embedded, |_| {}).await
}

/// Starts a server; `tweak` may adjust the configuration first.
pub async fn spawn_app_with(backends: Backends, tweak: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (database, pg, mqtt) = match backends {
        Backends::Embedded => (
            dir.path().join("rxledger.db").display().to_string(),
            None,
            MqttTarget::Embedded {
                listen: "127.0.0.1:0".parse().unwrap(),
            },
        ),
        Backends::External => {
            let url = std::env::var(MQTT_ENV).unwrap_or_else(|_| {
                panic!("{MQTT_ENV} is not set, e.g. {MQTT_ENV}=mqtt://127.0.0.1:1883")
            });
            let pg = TempDb::postgres().await.unwrap();
            (
                pg.url.clone(),
                Some(pg),
                MqttTarget::External(MqttUrl::parse(&url).unwrap()),
            )
        }
    };
    let topic_root = format!("rxledger-test/{}", unique());
    let mut cfg = ServeConfig {
        database,
        origin: Some("test.rxledger.local/log".into()),
        mqtt,
        node_id: format!("rxledger-test-{}", unique()),
        ingest: IngestConfig {
            batch_wait: Duration::from_millis(10),
            topic_root: topic_root.clone(),
            ..IngestConfig::default()
        },
        ..ServeConfig::local(dir.path())
    };
    tweak(&mut cfg);
    let app = server::start(cfg.clone()).await.expect("server starts");
    TestApp {
        http: app.http_addr,
        mqtt: app.mqtt_addr.clone(),
        app: Some(app),
        cfg,
        topic_root,
        dir,
        pg,
    }
}

impl TestApp {
    pub fn app(&self) -> &App {
        self.app.as_ref().expect("app is running")
    }

    /// How many entries of the log hold events (kinds 1 and 2: device envelopes, API state
    /// changes and captures), not the map roots and desk records the log writes itself.
    pub async fn event_entries(&self) -> u64 {
        let ledger = &self.app().ledger;
        let entries = ledger.entries(0, ledger.head().size).await.unwrap();
        entries.iter().filter(|e| matches!(e.kind, 1 | 2)).count() as u64
    }

    /// Restarts on the same database and key (and, for the embedded broker, a new port).
    pub async fn restart(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        let app = server::start(self.cfg.clone())
            .await
            .expect("server restarts");
        self.http = app.http_addr;
        self.mqtt = app.mqtt_addr.clone();
        self.app = Some(app);
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_now().await;
        }
    }

    /// POSTs a GraphQL request and returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_as(None, query, variables).await
    }

    pub async fn graphql_as(&self, bearer: Option<&str>, query: &str, variables: Value) -> Value {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables })).unwrap();
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(t) = bearer {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        let (status, body) = http(self.http, "POST", "/graphql", &headers, &body).await;
        assert!(
            status == 200 || status == 400,
            "GraphQL HTTP status {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// Creates an organization with a company prefix, a site and an enrolled device.
    pub async fn enroll(
        &self,
        org: &str,
        role: &str,
        prefix: Option<&str>,
        gln: &str,
        device: &str,
    ) -> SigningKey {
        let r = &self.app().registry;
        if r.organization(org).await.unwrap().is_none() {
            r.add_organization(org, org, role).await.unwrap();
        }
        if let Some(p) = prefix {
            r.add_company_prefix(org, p).await.unwrap();
        }
        if r.site(gln).await.unwrap().is_none() {
            r.add_site(gln, org, &format!("{org} site")).await.unwrap();
        }
        let key = SigningKey::generate();
        r.enroll_device(device, &key.public_key(), org, gln)
            .await
            .unwrap();
        key
    }

    /// The manufacturer `acme` (prefix 0614141, site 0614141000005) with its line `line-1`,
    /// which has commissioned `serials` of GTIN 10614141073464, lot L1, expiry 2031-06-30.
    pub async fn acme_with_packs(&self, serials: &[&str]) -> TestDevice {
        let key = self
            .enroll(
                "acme",
                "MANUFACTURER",
                Some("0614141"),
                "0614141000005",
                "line-1",
            )
            .await;
        let mut line = self.device("line-1", key).await;
        let r = line
            .send_events(vec![commission(serials, "L1", "2031-06-30")])
            .await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
        line
    }

    pub async fn device(&self, id: &str, key: SigningKey) -> TestDevice {
        TestDevice::connect(self.mqtt.clone(), &self.topic_root, id, key, &self.log()).await
    }

    /// Like [`device`](Self::device), but returns why the broker refused it.
    pub async fn try_device(&self, id: &str, key: SigningKey) -> Result<TestDevice, String> {
        let log = self.log();
        let password = mqttauth::device_password(&key, log.public_key(), id);
        TestDevice::try_connect(
            self.mqtt.clone(),
            &self.topic_root,
            id,
            key,
            &log,
            Some(password),
        )
        .await
    }

    /// What a device pins: the log's name and public key.
    pub fn log(&self) -> LogVerifier {
        self.app().ledger.verifier().clone()
    }
}

/// The verifier of the log a spawned `rxledger serve` keeps in `data` (default origin).
pub fn log_verifier_in(data: &std::path::Path) -> LogVerifier {
    let key = rxledger::keyfile::load(&data.join("log.key")).unwrap();
    let origin = server::default_origin(&key.public_sec1_compressed());
    LogVerifier::new(&origin, key.public_key()).unwrap()
}

/// One HTTP/1.1 request with `Connection: close`, through firmware-sim's client (which also
/// reads what a server answered before it took the whole body, a 413 say).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    firmware_sim::http::request(addr, &addr.to_string(), method, path, &headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"))
}

/// A scanner: signs envelopes with the core crate and waits for receipts.
pub struct TestDevice {
    pub id: String,
    /// Signs envelopes (a test may swap it for another key after connecting).
    pub key: SigningKey,
    /// The pinned log: every receipt `send` returns has been checked against it.
    pub log: LogVerifier,
    pub seq: u64,
    pub topic_root: String,
    pub client: AsyncClient,
    receipts: mpsc::UnboundedReceiver<Receipt>,
}

impl TestDevice {
    /// Connects with the credentials derived from `key` and the log, and subscribes to the
    /// device's receipts.
    pub async fn connect(
        mqtt: (String, u16),
        topic_root: &str,
        id: &str,
        key: SigningKey,
        log: &LogVerifier,
    ) -> TestDevice {
        let password = mqttauth::device_password(&key, log.public_key(), id);
        Self::try_connect(mqtt, topic_root, id, key, log, Some(password))
            .await
            .unwrap_or_else(|e| panic!("device {id} connects: {e}"))
    }

    /// Connects with the given password (none: no credentials); the error says why the
    /// broker refused the connection or the subscription.
    pub async fn try_connect(
        mqtt: (String, u16),
        topic_root: &str,
        id: &str,
        key: SigningKey,
        log: &LogVerifier,
        password: Option<String>,
    ) -> Result<TestDevice, String> {
        let opts = MqttOptions::new(format!("dev-{id}-{}", unique()), mqtt.0, mqtt.1);
        Self::try_connect_with(opts, topic_root, id, key, log, password).await
    }

    /// Like [`try_connect`](Self::try_connect), with the broker, client id and transport
    /// (TLS, say) already in `opts`.
    pub async fn try_connect_with(
        mut opts: MqttOptions,
        topic_root: &str,
        id: &str,
        key: SigningKey,
        log: &LogVerifier,
        password: Option<String>,
    ) -> Result<TestDevice, String> {
        opts.set_max_packet_size(4 << 20, 4 << 20)
            .set_keep_alive(Duration::from_secs(30));
        if let Some(p) = password {
            opts.set_credentials(id, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        client
            .subscribe(envelope::acks_topic(topic_root, id), QoS::AtLeastOnce)
            .await
            .unwrap();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        let ok = ack
                            .return_codes
                            .iter()
                            .all(|c| !matches!(c, rumqttc::SubscribeReasonCode::Failure));
                        if let Some(r) = ready.take() {
                            let _ = r.send(if ok {
                                Ok(())
                            } else {
                                Err("SUBACK failure".into())
                            });
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let receipt = serde_json::from_slice::<Receipt>(&p.payload);
                        if receipt.is_ok_and(|r| tx.send(r).is_err()) {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(e.to_string()));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .map_err(|_| "no SUBACK within 10 s".to_string())?
            .map_err(|_| "the connection task ended".to_string())??;
        Ok(TestDevice {
            id: id.into(),
            key,
            log: log.clone(),
            seq: 0,
            topic_root: topic_root.into(),
            client,
            receipts: rx,
        })
    }

    /// Builds the next signed envelope for `events`.
    pub fn envelope(&mut self, events: Vec<Value>) -> Vec<u8> {
        self.seq += 1;
        let body = Body {
            v: 1,
            device_id: self.id.clone(),
            seq: self.seq,
            sent_at: now_rfc3339(),
            events,
        };
        envelope::seal(&self.key, &body)
    }

    pub async fn publish(&self, payload: Vec<u8>) {
        self.client
            .publish(
                envelope::events_topic(&self.topic_root, &self.id),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    /// Publishes and waits for the receipt of exactly this payload, and checks it as a
    /// device must (signature, checkpoint, inclusion proof).
    pub async fn send(&mut self, payload: Vec<u8>) -> Receipt {
        let hash = envelope::payload_hash(&payload);
        self.publish(payload.clone()).await;
        let r = self.receipt_for(&hash).await;
        if let Err(e) = envelope::check_receipt(&r, &payload, &self.log) {
            panic!("the receipt does not verify: {e}: {r:?}");
        }
        r
    }

    pub async fn send_events(&mut self, events: Vec<Value>) -> Receipt {
        let payload = self.envelope(events);
        self.send(payload).await
    }

    pub async fn receipt_for(&mut self, payload_hash: &str) -> Receipt {
        loop {
            let r = self.next_receipt().await;
            if r.payload_hash == payload_hash {
                return r;
            }
        }
    }

    /// The next receipt if one arrives, `None` if the connection's task ended.
    pub async fn try_next_receipt(&mut self) -> Option<Receipt> {
        self.receipts.recv().await
    }

    pub async fn next_receipt(&mut self) -> Receipt {
        tokio::time::timeout(Duration::from_secs(20), self.receipts.recv())
            .await
            .expect("a receipt within 20 s")
            .expect("receipt channel open")
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339(rxledger_store::now_ms())
}

pub fn rfc3339(ms: i64) -> String {
    rxledger_core::epcis::format_time(ms)
}

/// An EPCIS 2.0 commissioning ObjectEvent for SGTINs of GTIN 10614141073464.
pub fn commission(serials: &[&str], lot: &str, expiry: &str) -> Value {
    let epcs: Vec<String> = serials
        .iter()
        .map(|s| format!("urn:epc:id:sgtin:0614141.107346.{s}"))
        .collect();
    let plant = Where::Site("urn:epc:id:sgln:0614141.00000.0");
    firmware_sim::events::commissioning(&now_rfc3339(), &epcs, plant, lot, expiry)
}

/// The `rxledger` binary, for tests that run it as a separate process.
pub const BIN: &str = env!("CARGO_BIN_EXE_rxledger");

/// Runs `rxledger ARGS --data-dir DATA [EXTRA…]` and asserts it succeeded.
pub fn rxledger_cli(data: &std::path::Path, extra: &[&str], args: &[&str]) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rxledger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `rxledger audit [EXTRA…] --data-dir DATA` and asserts it passed.
pub fn assert_audit_passes(data: &std::path::Path, extra: &[&str]) {
    let out = std::process::Command::new(BIN)
        .arg("audit")
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("AUDIT PASSED"),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Through the CLI: the manufacturer `acme` (prefix 0614141, site 0614141000005) and one
/// device per `(id, key)`. `extra` is passed to every command (e.g. `--database URL`).
pub fn enroll_acme_cli(data: &std::path::Path, extra: &[&str], devices: &[(&str, &SigningKey)]) {
    let acme = ["--org", "acme"];
    rxledger_cli(
        data,
        extra,
        &[
            "org",
            "add",
            "--id",
            "acme",
            "--name",
            "Acme",
            "--role",
            "MANUFACTURER",
        ],
    );
    rxledger_cli(
        data,
        extra,
        &["org", "prefix", acme[0], acme[1], "--prefix", "0614141"],
    );
    rxledger_cli(
        data,
        extra,
        &[
            "site",
            "add",
            "--gln",
            "0614141000005",
            acme[0],
            acme[1],
            "--name",
            "Plant",
        ],
    );
    for (id, key) in devices {
        let hex = key.public_hex();
        rxledger_cli(
            data,
            extra,
            &[
                "device",
                "enroll",
                "--id",
                id,
                "--key",
                &hex,
                acme[0],
                acme[1],
                "--site",
                "0614141000005",
            ],
        );
    }
}

/// The arguments of `rxledger serve` on free ports over the data directory `data`, with
/// batches closed after `batch_wait_ms`.
pub fn serve_args(data: &std::path::Path, batch_wait_ms: u32) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "serve",
        "--http-listen",
        "127.0.0.1:0",
        "--mqtt-listen",
        "127.0.0.1:0",
        "--batch-wait-ms",
        &batch_wait_ms.to_string(),
        "--data-dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(data.into());
    args
}

/// A `rxledger serve` child process and the addresses it printed.
pub struct Served {
    pub child: std::process::Child,
    pub http: SocketAddr,
    /// The embedded broker's port, when it runs one.
    pub mqtt_port: Option<u16>,
}

/// Spawns `cmd` (which runs `rxledger serve`, possibly through a shell) with stdout piped,
/// reads its start-up lines up to "listening on", then keeps draining stdout so the child
/// never blocks on a full pipe.
pub fn spawn_serve(mut cmd: std::process::Command) -> Served {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut http, mut mqtt_port) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("mqtt:") {
            mqtt_port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
        }
        if let Some(rest) = line.strip_prefix("listening on http://") {
            http = Some(rest.trim().parse().unwrap());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Served {
        child,
        http: http.expect("serve printed its HTTP address"),
        mqtt_port,
    }
}

impl TestApp {
    /// A regulator, `emvo` ("Medicines Agency"), and an API key for it.
    pub async fn regulator_key(&self) -> String {
        let a = self.app();
        a.registry
            .add_organization("emvo", "Medicines Agency", "REGULATOR")
            .await
            .unwrap();
        let (token, _) = a
            .api_keys
            .issue("emvo", "REGULATOR", "monitor", None)
            .await
            .unwrap();
        token
    }

    /// firmware-sim's scenario against this server, with every injection: `packs` packs,
    /// `pharmacies` pharmacies, the first admin key, short offline spells.
    pub fn scenario_options(
        &self,
        packs: usize,
        pharmacies: usize,
    ) -> firmware_sim::scenario::ScenarioOptions {
        let token = self
            .app()
            .first_admin_token
            .clone()
            .expect("a fresh server has an admin key");
        let mut opts = firmware_sim::scenario::ScenarioOptions::new(
            &format!("http://{}", self.http),
            firmware_sim::device::Broker {
                host: self.mqtt.0.clone(),
                port: self.mqtt.1,
                tls: None,
            },
            Some(token),
        );
        opts.packs = packs;
        opts.pharmacies = pharmacies;
        opts.inject = firmware_sim::scenario::Injections::all();
        opts.topic_root = self.topic_root.clone();
        opts.offline_for = Duration::from_millis(500);
        opts.receipt_timeout = Duration::from_secs(60);
        opts
    }
}

/// A WebSocket client connection, as the tests open them.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message on `ws`: JSON text, or `{"close": code, "reason": …}` when the server
/// closes; waits at most 20 s.
pub async fn ws_next(ws: &mut Ws) -> Value {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a WebSocket message within 20 s");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(Some(f)))) => {
                return json!({"close": u16::from(f.code), "reason": f.reason.to_string()});
            }
            Some(Ok(Message::Close(None))) | None => return json!({"close": 0}),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return json!({"close": -1, "reason": e.to_string()}),
        }
    }
}

/// An HTTP answer from the EPCIS REST routes, as the tests read it.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A refusal: its status, problem+json content type, GS1 exception type and code; the
    /// problem's `detail`.
    pub fn problem(&self, status: u16, exception: &str, code: &str) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "{body}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{body}"
        );
        assert_eq!(
            body["type"],
            format!("epcisException:{exception}"),
            "{body}"
        );
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["status"], status, "{body}");
        body["detail"].as_str().unwrap().to_string()
    }
}

/// An organization with a site (and a company prefix), and an API key for it: an EPCIS
/// partner.
pub async fn partner(
    app: &TestApp,
    org: &str,
    role: &str,
    prefix: Option<&str>,
    gln: &str,
) -> String {
    let r = &app.app().registry;
    r.add_organization(org, org, role).await.unwrap();
    if let Some(p) = prefix {
        r.add_company_prefix(org, p).await.unwrap();
    }
    r.add_site(gln, org, &format!("{org} site")).await.unwrap();
    epcis_key(app, org, role).await
}

/// An API key (label `epcis`) for `org` with `role`.
pub async fn epcis_key(app: &TestApp, org: &str, role: &str) -> String {
    app.app()
        .api_keys
        .issue(org, role, "epcis", None)
        .await
        .unwrap()
        .0
}

/// A request to the test server with an optional API key and extra headers.
pub async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = extra.to_vec();
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    let (status, headers, body) = firmware_sim::http::request_with_head(
        app.http,
        &app.http.to_string(),
        method,
        path,
        &headers,
        body,
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET path` with an optional API key.
pub async fn get(app: &TestApp, path: &str, token: Option<&str>) -> Answer {
    call(app, "GET", path, token, &[], b"").await
}
