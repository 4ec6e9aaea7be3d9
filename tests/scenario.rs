//! The supply chain, end to end: firmware-sim plays a realistic scenario (commissioning,
//! packing, shipping, receiving, unpacking, dispensing, plus every counterfeit and fault
//! injection) against the real server, and checks every receipt and every verdict.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use firmware_sim::scenario;
use rxledger_core::envelope;
use rxledger_ingest::{MqttTarget, MqttUrl};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_with_every_injection_meets_every_expectation() {
    let app = spawn_app().await;
    let report = scenario::run_scenario(app.scenario_options(30, 3))
        .await
        .unwrap();
    assert!(report.ok(), "{}", report.summary());
    let audit = rxledger_store::audit::audit_ledger(&app.app().ledger)
        .await
        .unwrap();
    assert!(audit.ok(), "{:?}", audit.problems);
    app.stop().await;
}

/// A private Mosquitto on a free port, so the test may stop it without disturbing anyone.
fn mosquitto(port: u16, dir: &std::path::Path) -> Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 200000\nmax_inflight_messages 1000\n"),
    )
    .unwrap();
    let mut child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("mosquitto did not start on port {port}");
}

/// The broker is stopped for 10 s in the middle of a scenario: nothing is lost and nothing is
/// in the ledger twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the mosquitto binary, as on the CI machine: run with --ignored external"]
async fn external_broker_outage_during_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut broker = mosquitto(port, dir.path());
    let app = spawn_app_with(Backends::Embedded, |cfg| {
        cfg.mqtt =
            MqttTarget::External(MqttUrl::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap());
    })
    .await;
    let mut opts = app.scenario_options(30, 3);
    opts.packs = 60;
    let run = tokio::spawn(scenario::run_scenario(opts));
    // Stop the broker once the chain is under way, for 10 s.
    let ledger = app.app().ledger.clone();
    tokio::time::timeout(Duration::from_secs(60), async {
        while ledger.head().size < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the scenario starts appending");
    broker.kill().unwrap();
    broker.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut broker = mosquitto(port, dir.path());
    let report = run.await.unwrap().unwrap();
    broker.kill().ok();
    broker.wait().ok();
    assert!(report.ok(), "{}", report.summary());

    let rows = app.app().ledger.entries(0, 1_000_000).await.unwrap();
    let distinct: HashSet<String> = rows
        .iter()
        .map(|r| envelope::payload_hash(&r.data))
        .collect();
    assert_eq!(
        distinct.len(),
        rows.len(),
        "no envelope is in the ledger twice"
    );
    let audit = rxledger_store::audit::audit_ledger(&app.app().ledger)
        .await
        .unwrap();
    assert!(audit.ok(), "{:?}", audit.problems);
    app.stop().await;
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// firmware-sim pointed at a broker that is not there stops with an error that names the
/// address and the flag, instead of waiting for receipts one envelope after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_sim_stops_with_a_clear_error_when_the_broker_is_unreachable() {
    let app = spawn_app().await;
    let mut opts = app.scenario_options(4, 1);
    let port = free_port();
    opts.mqtt.port = port;
    opts.contact_timeout = Duration::from_secs(2);
    let e = scenario::run_scenario(opts).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains(&format!(
            "could not connect to the MQTT broker at 127.0.0.1:{port}"
        )) && e.contains("--mqtt"),
        "{e}"
    );
    app.stop().await;
}

/// firmware-sim pointed at a server that is not there says so and names `--server`.
#[tokio::test]
async fn firmware_sim_stops_with_a_clear_error_when_the_server_is_unreachable() {
    let app = spawn_app().await;
    let mut opts = app.scenario_options(4, 1);
    opts.server = format!("http://127.0.0.1:{}", free_port());
    let e = format!("{:#}", scenario::run_scenario(opts).await.unwrap_err());
    assert!(
        e.contains("cannot reach the rxledger server") && e.contains("--server"),
        "{e}"
    );
    app.stop().await;
}

/// A broker that takes the envelopes but has no rxledger server behind it: the run stops at
/// the first receipt that does not come, naming the topic root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the mosquitto binary, as on the CI machine: run with --ignored external"]
async fn external_firmware_sim_stops_when_no_server_answers_on_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut broker = mosquitto(port, dir.path());
    let app = spawn_app().await;
    let mut opts = app.scenario_options(4, 1);
    opts.mqtt.port = port;
    opts.contact_timeout = Duration::from_secs(2);
    let e = format!("{:#}", scenario::run_scenario(opts).await.unwrap_err());
    broker.kill().ok();
    broker.wait().ok();
    assert!(
        e.contains("no rxledger server answers on topic root"),
        "{e}"
    );
    app.stop().await;
}

/// A trading partner's ERP sends the same supply chain as EPCIS documents over REST instead of
/// scanners over MQTT: once as EPCIS 2.0 JSON-LD and once as the DSCSA's EPCIS 1.2 XML. Every
/// event is appended, in documents sent in the order the goods move, and every verdict is the
/// one the MQTT scenario expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_documents_give_the_scenario_verdicts_as_json_ld_and_as_epcis_12_xml() {
    use firmware_sim::partner::{PartnerFormat, PartnerOptions, run_partner};
    let app = spawn_app().await;
    let admin = app.app().first_admin_token.clone().unwrap();
    for (seed, format) in [(11, PartnerFormat::JsonLd), (12, PartnerFormat::Epcis12Xml)] {
        let report = run_partner(PartnerOptions {
            server: format!("http://{}", app.http),
            admin_key: admin.clone(),
            packs: 20,
            pharmacies: 3,
            seed,
            format,
            progress: false,
        })
        .await
        .unwrap();
        assert!(report.ok(), "{format:?}: {}", report.summary());
        assert!(report.verdicts_checked >= 20, "{}", report.summary());
        let sent: usize = report.documents.iter().map(|d| d.1).sum();
        let appended: u64 = report.documents.iter().map(|d| d.2).sum();
        assert_eq!(appended, sent as u64, "{}", report.summary());
        // A capture seals its events into envelopes of up to 10 (docs/EPCIS.md): at least
        // one entry per document, never more than one per event.
        let docs = report.documents.len() as u64;
        assert!(
            (docs..=appended).contains(&report.log_growth),
            "{}",
            report.summary()
        );
        // Documents follow the goods, not the organizations: a pharmacy's receipt and its
        // dispensing are apart, with the other pharmacies' documents between them.
        let orgs: HashSet<&str> = report.documents.iter().map(|d| d.0.as_str()).collect();
        assert!(report.documents.len() > orgs.len(), "{}", report.summary());
    }
    app.stop().await;
}
