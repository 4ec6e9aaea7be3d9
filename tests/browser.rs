//! The pharmacist's page in real headless Chromium, driven over WebDriver (chromedriver):
//! type a DataMatrix scan, upload a photo of a QR code, dispense, scan again. And GraphiQL,
//! served from the binary, subscribing to live alerts over graphql-ws.
//!
//! Chromium resolves no name but 127.0.0.1 (`--host-resolver-rules`), so a page that needed
//! a CDN would fail here.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them and runs this
//! with `--ignored browser`. Screenshots go to `target/screenshots/`.
//!
//! Killing chromedriver does not end its browser: Chromium would live on with parent PID 1
//! (some 200 MB each, piling up on a CI machine). So a test ends its WebDriver session, which
//! closes Chromium, before it stops chromedriver ([`Driver::quit`]), and checks that no
//! process of that browser is left. A test that fails on the way still cleans up when its
//! `Driver` is dropped.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver key codes: Control, the modifier-release key, Enter.
const CTRL: &str = "\u{E009}";
const RELEASE: &str = "\u{E000}";
const ENTER: &str = "\u{E007}";

struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
    profile: tempfile::TempDir,
    /// Set once [`Driver::quit`] has ended the session and stopped chromedriver.
    quit: bool,
}

impl Drop for Driver {
    /// The clean-up of a test that panicked before [`Driver::quit`]: the same steps, best
    /// effort, without checks (a panic in a drop during unwinding would abort).
    fn drop(&mut self) {
        if self.quit {
            return;
        }
        let browser = browser_processes(self.child.id(), self.profile.path());
        if !self.session.is_empty() {
            // Drop cannot await, so the DELETE runs on a thread with a runtime of its own.
            let (addr, path) = (self.addr, format!("/session/{}", self.session));
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let delete = http_request(addr, "DELETE", &path);
                    let _ = tokio::time::timeout(Duration::from_secs(10), delete).await;
                });
                std::io::Result::Ok(())
            })
            .join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        wait_gone(&browser, Duration::from_secs(5));
        kill_all(&browser);
    }
}

/// A WebDriver request without a body.
async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    firmware_sim::http::request(addr, &addr.to_string(), method, path, &[], b"").await
}

impl Driver {
    async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: apt-get install chromium chromium-driver"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                drop(s);
                let (status, body) = http(addr, "GET", "/status", &[], b"").await;
                if status == 200
                    && serde_json::from_slice::<Value>(&body).unwrap()["value"]["ready"] == true
                {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=420,1400",
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
            profile,
            quit: false,
        };
        let v = d.call("POST", "/session", caps).await;
        d.session = v["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_string();
        d
    }

    /// Ends the WebDriver session (chromedriver closes Chromium), stops chromedriver, and
    /// checks that every process of the browser has exited.
    async fn quit(mut self) {
        let browser = browser_processes(self.child.id(), self.profile.path());
        assert!(
            !browser.is_empty(),
            "no Chromium process found under chromedriver"
        );
        self.call("DELETE", &format!("/session/{}", self.session), Value::Null)
            .await;
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.quit = true;
        let left = wait_gone(&browser, Duration::from_secs(10));
        kill_all(&left);
        assert!(left.is_empty(), "Chromium processes left behind: {left:?}");
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(&body).unwrap()
        };
        let (status, resp) = http(
            self.addr,
            method,
            path,
            &[("Content-Type", "application/json".into())],
            &body,
        )
        .await;
        let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    async fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    async fn goto(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url })).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .session(
                "POST",
                "/element",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.session(
            "POST",
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.session("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.session("GET", &format!("/element/{e}/text"), Value::Null)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits until `css`'s text is `want`; fails with what the page shows instead.
    async fn wait_text(&self, css: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.text(css).await;
            if got == want {
                return;
            }
            if Instant::now() > deadline {
                let error = self.text("#error").await;
                panic!("{css} shows {got:?}, not {want:?} (error box: {error:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css` matches an element, for pages that render after loading.
    async fn wait_for(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self
                .session(
                    "POST",
                    "/elements",
                    json!({ "using": "css selector", "value": css }),
                )
                .await;
            if v.as_array().is_some_and(|a| !a.is_empty()) {
                return;
            }
            assert!(Instant::now() < deadline, "{css} never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let b64 = self.session("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// The processes of the browser a chromedriver started: its descendants, and any process
/// started with the test's profile directory (which no other browser uses).
fn browser_processes(driver: u32, profile: &std::path::Path) -> Vec<u32> {
    let marker = profile.display().to_string();
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            Some((
                pid,
                ppid,
                String::from_utf8_lossy(&cmdline).replace('\0', " "),
            ))
        })
        .collect();
    let mut found: Vec<u32> = Vec::new();
    let mut frontier = vec![driver];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid, _) in &procs {
            if *ppid == parent && !found.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    for (pid, _, cmdline) in &procs {
        if cmdline.contains(&marker) && *pid != driver && !found.contains(pid) {
            found.push(*pid);
        }
    }
    found
}

/// Whether `pid` still runs (a zombie has freed its memory and counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

/// Waits up to `within` for `pids` to exit; returns those still running.
fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills what is left of a browser this test started.
fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
}

mod browser {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn scan_upload_dispense_and_scan_again() {
        let app = spawn_app().await;
        let mut line = app.acme_with_packs(&["1001", "1002"]).await;
        let a = app.app();
        a.registry
            .add_organization("corner", "Corner Pharmacy", "PHARMACY")
            .await
            .unwrap();
        a.registry
            .add_site("0614141000029", "corner", "Corner")
            .await
            .unwrap();
        // Ship both packs to the pharmacy, so its scan finds them in its custody.
        let ship = json!({
            "type": "ObjectEvent",
            "eventTime": now_rfc3339(),
            "eventTimeZoneOffset": "+00:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.1001", "urn:epc:id:sgtin:0614141.107346.1002"],
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": {"id": "urn:epc:id:sgln:0614141.00000.0"},
            "bizLocation": {"id": "urn:epc:id:sgln:0614141.00000.0"},
            "sourceList": [
                {"type": "owning_party", "source": "urn:epc:id:pgln:0614141.00000"},
                {"type": "location", "source": "urn:epc:id:sgln:0614141.00000.0"}
            ],
            "destinationList": [
                {"type": "owning_party", "destination": "urn:epc:id:pgln:0614141.00002"},
                {"type": "location", "destination": "urn:epc:id:sgln:0614141.00002.0"}
            ]
        });
        let r = line.send_events(vec![ship]).await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
        let (pharmacy, _) = a
            .api_keys
            .issue("corner", "PHARMACY", "till 1", None)
            .await
            .unwrap();

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.click("#signed-in").await;
        d.type_into("#key", &format!("{pharmacy}{ENTER}")).await;
        d.wait_text("#signed-in", "Signed in as corner (PHARMACY)")
            .await;

        // 1. A keyboard-wedge scanner types the DataMatrix: GS arrives as Ctrl+].
        let gs = format!("{CTRL}]{RELEASE}");
        let scan = format!("]d2011061414107346417310630{gs}10L1{gs}211001{ENTER}");
        d.type_into("#code", &scan).await;
        d.wait_text("#verdict", "AUTHENTIC").await;
        d.wait_text("#product-serial", "1001").await;
        d.screenshot("1-scan-authentic").await;

        // 2. A photo of pack 1002's QR code.
        let (status, png) = http(app.http, "GET", "/qr/10614141073464/1002.png", &[], b"").await;
        assert_eq!(status, 200);
        let photo = app.dir.path().join("qr-1002.png");
        std::fs::write(&photo, png).unwrap();
        d.type_into("#photo", &photo.display().to_string()).await;
        d.wait_text("#product-serial", "1002").await;
        d.wait_text("#verdict", "AUTHENTIC").await;
        d.screenshot("2-photo-authentic").await;

        // 3. Dispense it.
        d.click("#dispense").await;
        d.wait_text("#verdict", "ALREADY_DISPENSED").await;
        d.screenshot("3-dispensed").await;

        // 4. Scan it again, with a scanner configured to send `<GS>` for the separator.
        let e = d.find("#code").await;
        d.session("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
        d.type_into(
            "#code",
            &format!("]d2011061414107346417310630<GS>10L1<GS>211002{ENTER}"),
        )
        .await;
        d.wait_text("#product-serial", "1002").await;
        d.wait_text("#verdict", "ALREADY_DISPENSED").await;
        assert!(
            !d.text("#undo").await.is_empty(),
            "the pharmacy that dispensed may undo"
        );
        d.screenshot("4-scan-again").await;

        // The ledger agrees with the page.
        let v = app
            .graphql(
                "query($c: String!) { verify(code: $c) { verdict } }",
                json!({ "c": "(01)10614141073464(21)1002" }),
            )
            .await;
        assert_eq!(v["data"]["verify"]["verdict"], "ALREADY_DISPENSED", "{v}");
        d.quit().await;
        app.stop().await;
    }

    /// GraphiQL, offline, as a regulator signed in on the pharmacist's page: run
    /// `subscription { alerts { code } }` and see an alert arrive while the page is open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn graphiql_subscribes_to_live_alerts() {
        let app = spawn_app().await;
        let mut line = app.acme_with_packs(&["1001"]).await;
        let regulator = app.regulator_key().await;

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.click("#signed-in").await;
        d.type_into("#key", &format!("{regulator}{ENTER}")).await;
        d.wait_text("#signed-in", "Signed in as emvo (REGULATOR)")
            .await;
        // Same tab: GraphiQL picks up the key signed in on the pharmacist's page.
        d.goto(&format!(
            "http://{}/graphql?query=subscription%20%7B%20alerts%20%7B%20code%20%7D%20%7D",
            app.http
        ))
        .await;
        d.wait_for(".graphiql-execute-button").await;
        d.click(".graphiql-execute-button").await;
        d.screenshot("5-graphiql-subscribed").await;
        // The subscription is live once the server has polled it, which graphql-ws does not
        // acknowledge: raise alerts (a serial commissioned again) until one shows.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = line
                .send_events(vec![commission(&["1001"], "L1", "2031-06-30")])
                .await;
            assert_eq!(r.code.as_deref(), Some("SERIAL_ALREADY_COMMISSIONED"));
            tokio::time::sleep(Duration::from_millis(500)).await;
            let shown = d.text(".graphiql-response").await;
            if shown.contains("SERIAL_ALREADY_COMMISSIONED") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no live alert in GraphiQL; the response pane shows {shown:?}"
            );
        }
        d.screenshot("6-graphiql-live-alert").await;
        d.quit().await;
        app.stop().await;
    }
}
