//! The pharmacist's page in real headless Chromium, driven over WebDriver (chromedriver):
//! type a DataMatrix scan, upload a photo of a QR code, dispense, scan again. And GraphiQL,
//! served from the binary, subscribing to live alerts over graphql-ws.
//!
//! Chromium resolves no name but 127.0.0.1 (`--host-resolver-rules`), so a page that needed
//! a CDN would fail here.
//!
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them and runs this
//! with `--ignored browser`. Screenshots go to `screenshots/` in the target directory
//! (`$CARGO_TARGET_DIR`, else `target/`); the tests print the path.
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
use rxledger_core::ed25519::{Ed25519Key, Ed25519Verifier, EdKind};
use rxledger_witness::{WitnessClient, WitnessConfig, WitnessServer};
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
        let (status, v) = self.try_call(method, path, body).await;
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    /// One WebDriver command: the HTTP status and the whole answer, for callers that handle
    /// an error themselves.
    async fn try_call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
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
        (status, v)
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

    /// The text of the element `css` matches. A page that re-renders can replace the element
    /// between finding and reading it ("stale element reference"): find it again.
    async fn text(&self, css: &str) -> String {
        for _ in 0..20 {
            let e = self.find(css).await;
            let path = format!("/session/{}/element/{e}/text", self.session);
            let (status, v) = self.try_call("GET", &path, Value::Null).await;
            if status == 200 {
                return v["value"].as_str().unwrap_or("").to_string();
            }
            assert_eq!(
                v["value"]["error"], "stale element reference",
                "WebDriver GET {path}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{css} was re-rendered 20 times while being read");
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
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        println!("screenshot {}", path.display());
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn script(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// Runs an async script with `args`: the script calls its last argument with the result.
    async fn script_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.session(
            "POST",
            "/execute/async",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.session(
            "GET",
            &format!("/element/{e}/attribute/{name}"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    async fn displayed(&self, css: &str) -> bool {
        let e = self.find(css).await;
        self.session("GET", &format!("/element/{e}/displayed"), Value::Null)
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// Waits until the verdict box shows verdict `code` (its `data-verdict`).
    async fn wait_verdict(&self, code: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.attribute("#verdict-box", "data-verdict").await == code {
                return;
            }
            if Instant::now() > deadline {
                let (headline, error) = (self.text("#headline").await, self.text("#error").await);
                panic!("no {code} verdict: the page shows {headline:?} (error box: {error:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Makes the page's viewport `width` CSS pixels wide (and tall enough for a whole
    /// verdict), whatever the browser's frame takes.
    async fn viewport(&self, width: i64, height: i64) {
        let mut outer = width;
        for _ in 0..3 {
            self.session(
                "POST",
                "/window/rect",
                json!({ "width": outer, "height": height }),
            )
            .await;
            let inner = self
                .script("return window.innerWidth")
                .await
                .as_i64()
                .unwrap();
            if inner == width {
                return;
            }
            outer += width - inner;
        }
        panic!("cannot make the viewport {width} px wide");
    }

    /// Scans `code` as a keyboard-wedge scanner would, into an emptied field.
    async fn scan(&self, code: &str) {
        let e = self.find("#code").await;
        self.session("POST", &format!("/element/{e}/clear"), json!({}))
            .await;
        self.type_into("#code", &format!("{code}{ENTER}")).await;
    }

    /// Screenshots of the page at desktop and phone width, checking that nothing runs off
    /// a 390 px phone's screen.
    async fn both_widths(&self, name: &str) {
        self.viewport(1280, 1400).await;
        self.screenshot(&format!("{name}-1280")).await;
        self.viewport(PHONE, 2000).await;
        let widths = self
            .script("return [document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
            .await;
        let w: Vec<i64> = widths
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert!(
            w[0] <= PHONE && w[1] <= PHONE && w[2] == PHONE,
            "{name}: the page is wider than a {PHONE} px phone (document, body, viewport: {w:?})"
        );
        self.screenshot(&format!("{name}-{PHONE}")).await;
    }
}

/// A phone's viewport width, in CSS pixels (an iPhone 12 to 15).
const PHONE: i64 = 390;

/// Where screenshots go: `screenshots/` in the target directory.
fn screenshot_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("screenshots")
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

/// A shipment of acme's packs `serials` to the pharmacy whose company-prefix location is
/// `to` (`00002`: Corner, `00003`: Hill).
fn ship_to(serials: &[&str], to: &str) -> Value {
    let epcs: Vec<String> = serials
        .iter()
        .map(|s| format!("urn:epc:id:sgtin:0614141.107346.{s}"))
        .collect();
    json!({
        "type": "ObjectEvent",
        "eventTime": now_rfc3339(),
        "eventTimeZoneOffset": "+00:00",
        "epcList": epcs,
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
            {"type": "owning_party", "destination": format!("urn:epc:id:pgln:0614141.{to}")},
            {"type": "location", "destination": format!("urn:epc:id:sgln:0614141.{to}.0")}
        ]
    })
}

/// Acme's packs 1001 to 1004 (lot L1), 2001 (lot L2) and 3001 (lot L3, expired); Corner
/// Pharmacy holds 1001, 1002 and 2001, Hill Pharmacy 1004. Returns the line and Corner's key.
async fn pharmacy_scene(app: &TestApp) -> (TestDevice, String) {
    let mut line = app.acme_with_packs(&["1001", "1002", "1003", "1004"]).await;
    let a = app.app();
    for (id, name, gln) in [
        ("corner", "Corner Pharmacy", "0614141000029"),
        ("hill", "Hill Pharmacy", "0614141000036"),
    ] {
        a.registry
            .add_organization(id, name, "PHARMACY")
            .await
            .unwrap();
        a.registry
            .add_site(gln, id, &format!("{name}, High Street"))
            .await
            .unwrap();
    }
    for events in [
        vec![commission(&["2001"], "L2", "2031-06-30")],
        vec![commission(&["3001"], "L3", "2025-01-31")],
        vec![ship_to(&["1001", "1002", "2001"], "00002")],
        vec![ship_to(&["1004"], "00003")],
    ] {
        let r = line.send_events(events).await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
    }
    let (pharmacy, _) = a
        .api_keys
        .issue("corner", "PHARMACY", "till 1", None)
        .await
        .unwrap();
    (line, pharmacy)
}

/// `query` as the holder of `key`; fails on any GraphQL error.
async fn graphql_ok(app: &TestApp, key: &str, query: &str, vars: Value) -> Value {
    let r = app.graphql_as(Some(key), query, vars).await;
    assert!(r["errors"].is_null(), "{query}: {r}");
    r["data"].clone()
}

async fn verdict_for(app: &TestApp, key: &str, code: &str) -> String {
    let d = graphql_ok(
        app,
        key,
        "query($c: String!) { verify(code: $c) { verdict } }",
        json!({ "c": code }),
    )
    .await;
    d["verify"]["verdict"].as_str().unwrap().to_string()
}

/// Each verdict a pharmacy meets, scanned on the page: plain words, and both widths.
async fn every_verdict(app: &TestApp, d: &Driver, pharmacy: &str) {
    let cases = [
        ("authentic", "(01)10614141073464(21)1001", "AUTHENTIC"),
        (
            "unknown-serial",
            "(01)10614141073464(21)9999",
            "UNKNOWN_SERIAL",
        ),
        (
            "unknown-product",
            "(01)09506000134352(21)1",
            "UNKNOWN_PRODUCT",
        ),
        (
            "not-in-custody",
            "(01)10614141073464(21)1003",
            "NOT_IN_YOUR_CUSTODY",
        ),
        (
            "dispensed-elsewhere",
            "(01)10614141073464(21)1004",
            "ALREADY_DISPENSED",
        ),
        ("recalled", "(01)10614141073464(21)2001", "RECALLED"),
        ("expired", "(01)10614141073464(21)3001", "EXPIRED"),
    ];
    for (name, code, want) in cases {
        assert_eq!(verdict_for(app, pharmacy, code).await, want, "{name}");
        d.scan(code).await;
        d.wait_verdict(want).await;
        let main_line = format!("{}\n{}", d.text("#headline").await, d.text("#may").await);
        assert!(
            !main_line.contains(want) && !main_line.contains('_'),
            "{name}: a code on the main line: {main_line:?}"
        );
        let page = d.text("main").await;
        assert!(
            !page.contains("pharmacist"),
            "{name}: patient wording: {page}"
        );
        let class = d.attribute("#verdict-box", "class").await;
        if class.contains("bad") {
            let why = d.text("#reasons").await;
            assert!(
                !why.contains("Genuine") && !why.contains("AUTHENTIC"),
                "{name}: a red verdict lists the pack as genuine: {why}"
            );
        }
        d.both_widths(&format!("verdict-{name}")).await;
    }
}

/// A regulator signed in on the page sees organization and site names, not ids and bare GLNs.
async fn regulator_sees_names(app: &TestApp, d: &Driver) {
    let regulator = app.regulator_key().await;
    // Signing in reloads the page, so the sign-in panel is closed again: open it.
    d.click("#signed-in").await;
    d.type_into("#key", &format!("{regulator}{ENTER}")).await;
    d.wait_text("#signed-in", "Signed in as Medicines Agency (regulator)")
        .await;
    d.scan("(01)10614141073464(21)1004").await;
    d.wait_verdict("ALREADY_DISPENSED").await;
    d.click("#provenance").await;
    d.wait_for("#provenance-list li").await;
    let history = d.text("#provenance-list").await;
    assert!(
        history.contains("Hill Pharmacy, High Street") && !history.contains("0614141000036"),
        "{history}"
    );
    d.type_into("#lot-gtin", "10614141073464").await;
    d.type_into("#lot-lot", &format!("L1{ENTER}")).await;
    d.wait_for("#lot-view table").await;
    let lot = d.text("#lot-view").await;
    assert!(
        lot.contains("Corner Pharmacy") && !lot.contains("corner"),
        "{lot}"
    );
    d.both_widths("regulator-names").await;
}

/// The regulator sends a tracing request from the page: the owners come back with names,
/// and the evidence bundle the page offers for download verifies with the core's
/// `verify_bundle` against the log's key, as `rxledger verify-bundle` checks it offline.
async fn regulator_traces_a_pack(app: &TestApp, d: &Driver) {
    d.type_into("#trace-code", "(01)10614141073464(21)1004")
        .await;
    d.type_into("#trace-incident", "INC-2026-0042").await;
    d.click("#trace-send").await;
    d.wait_for("#trace-bundle").await;
    let view = d.text("#trace-view").await;
    assert!(
        view.contains("Serialised by")
            && view.contains("Hill Pharmacy")
            && view.contains("recorded as ledger entry #"),
        "{view}"
    );
    d.both_widths("regulator-trace").await;
    let bundle = d
        .script_async(
            "const done = arguments[0]; fetch(document.getElementById('trace-bundle').href)
               .then((r) => r.text()).then(done, (e) => done('ERROR ' + e));",
            vec![],
        )
        .await;
    let bundle: rxledger_core::trace::Bundle =
        serde_json::from_str(bundle.as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("the downloaded bundle is not a bundle: {e}: {bundle}"));
    let cp = rxledger_core::trace::verify_bundle(&bundle, &app.log())
        .unwrap_or_else(|e| panic!("the downloaded bundle does not verify: {e}"));
    assert!(cp.size > 0);
    let file = d.attribute("#trace-bundle", "download").await;
    assert!(file.ends_with("-bundle.json"), "{file}");
}

/// The admin signs in on the sign-in page (the key is posted once; the browser keeps a
/// session cookie, which no script can read), opens the admin page, issues a pharmacy key
/// there and sees it once; screenshots at both widths.
async fn admin_page(app: &TestApp, d: &Driver) {
    let admin = app.app().first_admin_token.clone().unwrap();
    d.goto(&format!("http://{}/signin?next=/admin", app.http))
        .await;
    d.type_into("#signin-key", &format!("{admin}{ENTER}")).await;
    d.wait_for("#organizations").await;
    let cookies = d.script("return document.cookie").await;
    assert_eq!(cookies, json!(""), "the session cookie is httpOnly");
    let listed = d.text("#keys").await;
    assert!(listed.contains("first admin key"), "{listed}");
    d.both_widths("admin-page").await;
    d.type_into("#key-label", "till 3").await;
    d.script("document.getElementById('key-org').value = 'corner'; return null")
        .await;
    d.click("#issue-key").await;
    d.wait_for("#new-key-token").await;
    let token = d.text("#new-key-token").await;
    assert!(token.starts_with("rxl_"), "{token}");
    let me = app
        .graphql_as(Some(&token), "{ me { orgId role } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["me"],
        json!({ "orgId": "corner", "role": "PHARMACY" })
    );
    d.both_widths("admin-new-key").await;
}

/// The log's keys in `dir` (the node's `key_path` is `dir/log.key`); returns the Ed25519
/// verifier that witnesses pin. As tests/witness.rs does.
fn log_keys(dir: &std::path::Path) -> Ed25519Verifier {
    rxledger::keyfile::generate(&dir.join("log.key"), false).unwrap();
    let ed: Ed25519Key = rxledger::keyfile::generate_key(
        &rxledger::keyfile::ed25519_path(&dir.join("log.key")),
        false,
    )
    .unwrap();
    ed.verifier("test.rxledger.local/log", EdKind::Note)
        .unwrap()
}

/// A real `rxledger witness` server on port 0, named `witness.test/w<n>`, pinning `log`.
async fn witness(dir: &std::path::Path, log: &Ed25519Verifier, n: u8) -> WitnessServer {
    rxledger_witness::server::start(WitnessConfig {
        data: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        name: Some(format!("witness.test/w{n}")),
        logs: vec![log.clone()],
    })
    .await
    .unwrap()
}

/// `serve --witness <vkey>=<url>` for `w`.
fn witness_spec(w: &WitnessServer) -> WitnessClient {
    WitnessClient::parse(&format!("{}=http://{}", w.verifier.to_vkey(), w.addr)).unwrap()
}

/// Waits until the node publishes a checkpoint that its witnesses cosigned, of `size` or more.
async fn cosigned_at(app: &TestApp, size: u64) -> u64 {
    let mut rx = app.app().ledger.witnesses().subscribe();
    let wait = async {
        loop {
            if let Some(c) = rx.borrow_and_update().clone().filter(|c| c.size >= size) {
                return c.size;
            }
            rx.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("no cosigned checkpoint of size {size}"))
}

/// `note` with one bit of `name`'s signature flipped (in the signature itself, past the key
/// ID and, for a cosignature, the timestamp).
fn flip_signature(note: &str, name: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let prefix = format!("\u{2014} {name} ");
    note.split_inclusive('\n')
        .map(|line| match line.strip_prefix(&prefix) {
            Some(sig) => {
                let mut raw = b64.decode(sig.trim_end()).unwrap();
                raw[4 + 8 + 3] ^= 0x01;
                format!("{prefix}{}\n", b64.encode(raw))
            }
            None => line.to_string(),
        })
        .collect()
}

impl Driver {
    /// Waits until the page has checked the witnesses (`data-witnessed` on the status line);
    /// returns whether it found the evidence witnessed, and its sentence.
    async fn witnessed(&self) -> (bool, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = self.attribute("#witness-status", "data-witnessed").await;
            if !done.is_empty() {
                return (done == "yes", self.text("#witness-status").await);
            }
            assert!(
                Instant::now() < deadline,
                "the page never finished checking the witnesses: {:?}",
                self.text("#witness-status").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's own verification answer for `code` (its `VERIFICATION` selection), from
    /// the node as the page would get it.
    async fn page_answer(&self, app: &TestApp, code: &str) -> Value {
        let selection = self.script("return VERIFICATION").await;
        let r = app
            .graphql(
                &format!(
                    "query($c: String!) {{ verify(code: $c) {{ {} }} }}",
                    selection.as_str().unwrap()
                ),
                json!({ "c": code }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
        r["data"]["verify"].clone()
    }

    /// Renders `v` as the page renders an answer from the node, and waits for its witness
    /// check.
    async fn render(&self, v: Value) -> (bool, String) {
        self.script_async(
            "const [v, done] = arguments; render(v, false, {}); done(null);",
            vec![v],
        )
        .await;
        self.witnessed().await
    }
}

mod browser {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn scan_upload_confirm_dispense_and_scan_again() {
        // Boxed: the whole test as one future would overflow a test thread's stack.
        let app = Box::pin(spawn_app()).await;
        let (_line, pharmacy) = Box::pin(pharmacy_scene(&app)).await;

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.click("#signed-in").await;
        d.type_into("#key", &format!("{pharmacy}{ENTER}")).await;
        d.wait_text("#signed-in", "Signed in as Corner Pharmacy (pharmacy)")
            .await;

        // 1. A keyboard-wedge scanner types the DataMatrix: GS arrives as Ctrl+].
        let gs = format!("{CTRL}]{RELEASE}");
        let scan = format!("]d2011061414107346417310630{gs}10L1{gs}211001{ENTER}");
        d.type_into("#code", &scan).await;
        d.wait_verdict("AUTHENTIC").await;
        d.wait_text("#product-serial", "1001").await;
        assert_eq!(d.text("#headline").await, "Genuine pack");
        assert_eq!(
            d.text("#product-name").await,
            "No product information registered for this GTIN."
        );
        // The journey names the pharmacy's own site, in plain steps.
        let journey = d.text("#timeline").await;
        assert!(
            journey.contains("Serialised by the manufacturer") && journey.contains("Shipped"),
            "{journey}"
        );
        d.screenshot("1-scan-authentic").await;

        // 2. A photo of pack 1002's QR code.
        let (status, png) = http(app.http, "GET", "/qr/10614141073464/1002.png", &[], b"").await;
        assert_eq!(status, 200);
        let photo = app.dir.path().join("qr-1002.png");
        std::fs::write(&photo, png).unwrap();
        d.type_into("#photo", &photo.display().to_string()).await;
        d.wait_text("#product-serial", "1002").await;
        d.wait_verdict("AUTHENTIC").await;
        d.screenshot("2-photo-authentic").await;

        // 3. Dispense it: the button asks first, and Cancel dispenses nothing.
        let code = "(01)10614141073464(21)1002";
        d.click("#dispense").await;
        assert!(d.displayed("#confirm").await, "a confirmation step");
        assert!(
            d.text("#confirm-text").await.contains("serial 1002"),
            "the confirmation names the pack"
        );
        d.screenshot("3-confirm").await;
        d.click("#cancel-dispense").await;
        assert!(!d.displayed("#confirm").await);
        assert_eq!(verdict_for(&app, &pharmacy, code).await, "AUTHENTIC");
        d.click("#dispense").await;
        d.click("#confirm-dispense").await;
        d.wait_text("#headline", "Supplied").await;
        let class = d.attribute("#verdict-box", "class").await;
        assert!(
            class.contains("done") && !class.contains("bad"),
            "a neutral state: {class}"
        );
        assert!(d.displayed("#undo").await, "the pharmacy may undo");
        assert!(!d.displayed("#dispense").await);
        assert_eq!(
            verdict_for(&app, &pharmacy, code).await,
            "ALREADY_DISPENSED"
        );
        d.screenshot("4-supplied").await;

        // 4. Scan it again, with a scanner configured to send `<GS>`: still this pharmacy's
        // own supply, not an alarm.
        d.scan("]d2011061414107346417310630<GS>10L1<GS>211002")
            .await;
        d.wait_text("#product-serial", "1002").await;
        d.wait_verdict("ALREADY_DISPENSED").await;
        d.wait_text("#headline", "Supplied").await;
        assert!(
            d.displayed("#undo").await,
            "the pharmacy that dispensed may undo"
        );
        d.screenshot("5-scan-again").await;
        d.quit().await;
        app.stop().await;
    }

    /// Every verdict a pharmacist meets, at desktop and phone width: screenshots, nothing
    /// wider than a 390 px phone, no codes on the main line, no "genuine" under a red one,
    /// and no patient wording.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn every_verdict_at_desktop_and_phone_width() {
        // Boxed: the whole test as one future would overflow a test thread's stack.
        let app = Box::pin(spawn_app()).await;
        let (_line, pharmacy) = Box::pin(pharmacy_scene(&app)).await;
        let admin = app.app().first_admin_token.clone().unwrap();
        let (brand_owner, _) = app
            .app()
            .api_keys
            .issue("acme", "MANUFACTURER", "recalls", None)
            .await
            .unwrap();
        graphql_ok(
            &app,
            &admin,
            "mutation($i: TradeItemInput!) { registerProduct(input: $i) { gtin } }",
            json!({ "i": {
                "gtin": "10614141073464", "productName": "Amoxil", "strength": "500 mg",
                "dosageForm": "capsules", "netContent": "21 capsules",
                "marketingAuthorisationHolder": "Acme Pharma Ltd"
            }}),
        )
        .await;
        graphql_ok(
            &app,
            &brand_owner,
            "mutation { recallLot(gtin: \"10614141073464\", lot: \"L2\") { entryIndex } }",
            json!({}),
        )
        .await;
        let (hill, _) = app
            .app()
            .api_keys
            .issue("hill", "PHARMACY", "till", None)
            .await
            .unwrap();
        graphql_ok(
            &app,
            &hill,
            "mutation { dispense(code: \"(01)10614141073464(21)1004\") { entryIndex } }",
            json!({}),
        )
        .await;

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.click("#signed-in").await;
        d.type_into("#key", &format!("{pharmacy}{ENTER}")).await;
        d.wait_text("#signed-in", "Signed in as Corner Pharmacy (pharmacy)")
            .await;
        Box::pin(every_verdict(&app, &d, &pharmacy)).await;
        // The supplied state, after the confirmation.
        d.viewport(1280, 1400).await;
        d.scan("(01)10614141073464(21)1002").await;
        d.wait_verdict("AUTHENTIC").await;
        assert_eq!(
            d.text("#product-name").await,
            "Amoxil 500 mg capsules",
            "master data on the page"
        );
        d.click("#dispense").await;
        d.both_widths("verdict-confirm").await;
        d.click("#confirm-dispense").await;
        d.wait_text("#headline", "Supplied").await;
        d.both_widths("verdict-supplied").await;

        Box::pin(regulator_sees_names(&app, &d)).await;
        Box::pin(regulator_traces_a_pack(&app, &d)).await;
        Box::pin(admin_page(&app, &d)).await;
        println!("screenshots in {}", screenshot_dir().display());
        d.quit().await;
        app.stop().await;
    }

    /// With the completeness map on, the page checks in the browser (WebCrypto) that the
    /// verdict saw every entry about the pack, and says so; an answer with the dispensing
    /// left out is refused by the same code, naming the pack.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn the_page_proves_a_verdict_complete_and_catches_a_hidden_event() {
        let app = Box::pin(spawn_app_with(Backends::Embedded, |c| c.map = true)).await;
        let (_line, _pharmacy) = Box::pin(pharmacy_scene(&app)).await;
        let (hill, _) = app
            .app()
            .api_keys
            .issue("hill", "PHARMACY", "till", None)
            .await
            .unwrap();
        let code = "(01)10614141073464(21)1004";
        graphql_ok(
            &app,
            &hill,
            "mutation($c: String!) { dispense(code: $c) { entryIndex } }",
            json!({ "c": code }),
        )
        .await;

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.scan(code).await;
        d.wait_verdict("ALREADY_DISPENSED").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while d
            .attribute("#completeness-status", "data-complete")
            .await
            .is_empty()
        {
            assert!(
                Instant::now() < deadline,
                "the page never finished its check"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let sentence = d.text("#completeness-status").await;
        assert_eq!(
            d.attribute("#completeness-status", "data-complete").await,
            "yes",
            "{sentence}"
        );
        assert!(sentence.starts_with("Complete:"), "{sentence}");
        d.both_widths("verdict-complete").await;

        // The same answer with the pack's dispensing left out, checked by the page's code.
        let r = app
            .graphql(
                "query($c: String!) { verify(code: $c) { verdict reasons { evidence }
                  checkpointSize checkpointNote completeness { mapEntry { index dataBase64 proof }
                  identifiers { identifier entries { index leafHash } siblings
                  leaf { key count head } } } } }",
                json!({ "c": code }),
            )
            .await;
        let v = r["data"]["verify"].clone();
        assert!(v["completeness"].is_object(), "{r}");
        let check = "const [v, done] = arguments; completenessStatus(v).then(done);";
        let honest = d.script_async(check, vec![v.clone()]).await;
        assert_eq!(honest[0], json!(true), "{honest}");
        let mut hidden = v.clone();
        let pack = hidden["completeness"]["identifiers"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|i| i["identifier"] == "sgtin:10614141073464.1004")
            .expect("the pack is among the identifiers");
        let dispensing = pack["entries"].as_array_mut().unwrap().pop().unwrap();
        for r in hidden["reasons"].as_array_mut().unwrap() {
            r["evidence"]
                .as_array_mut()
                .unwrap()
                .retain(|i| *i != dispensing["index"]);
        }
        let caught = d.script_async(check, vec![hidden]).await;
        assert_eq!(caught[0], json!(false), "{caught}");
        let why = caught[1].as_str().unwrap_or_default();
        assert!(
            why.contains("sgtin:10614141073464.1004") && why.contains("the ledger's map holds"),
            "{why}"
        );
        d.quit().await;
        app.stop().await;
    }

    /// With two real `rxledger witness` servers and a quorum of two, the page checks the
    /// cosigned checkpoint itself (WebCrypto Ed25519: the log's line and each witness's
    /// `cosignature/v1`) and links the checkpoint the answer cites to it with a consistency
    /// proof, before it says "Witnessed". An answer whose cosignature or cited checkpoint was
    /// altered on the way is refused with what failed, and a browser without Ed25519 says it
    /// cannot check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn the_page_checks_the_witnesses_cosignatures_itself() {
        let keys = tempfile::tempdir().unwrap();
        let log = log_keys(keys.path());
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let w1 = witness(d1.path(), &log, 1).await;
        let w2 = witness(d2.path(), &log, 2).await;
        let (key_path, specs) = (
            keys.path().join("log.key"),
            vec![witness_spec(&w1), witness_spec(&w2)],
        );
        let app = Box::pin(spawn_app_with(Backends::Embedded, move |cfg| {
            cfg.key_path = key_path;
            cfg.witnesses = specs;
            cfg.witness_quorum = 2;
        }))
        .await;
        let (_line, pharmacy) = Box::pin(pharmacy_scene(&app)).await;
        let cosigned = cosigned_at(&app, app.app().ledger.head().size).await;

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        d.scan("(01)10614141073464(21)1001").await;
        d.wait_verdict("AUTHENTIC").await;
        let (witnessed, sentence) = d.witnessed().await;
        assert!(witnessed, "{sentence}");
        assert!(
            sentence.starts_with("Witnessed: the checkpoint of ")
                && sentence.ends_with(
                    "entries, which holds every cited entry, is cosigned by witness.test/w1, witness.test/w2 (2 required)."
                ),
            "{sentence}"
        );
        d.both_widths("verdict-witnessed").await;

        // The same answer with one bit of w1's cosignature flipped: refused, naming w1.
        let code = "(01)10614141073464(21)1001";
        let honest = d.page_answer(&app, code).await;
        let mut forged = honest.clone();
        let note = forged["cosignedCheckpoint"]["note"].as_str().unwrap();
        forged["cosignedCheckpoint"]["note"] = flip_signature(note, "witness.test/w1").into();
        let (witnessed, sentence) = d.render(forged).await;
        assert!(!witnessed, "{sentence}");
        assert_eq!(
            sentence,
            "Not witnessed: the cosignature of witness.test/w1 does not verify."
        );
        d.screenshot("verdict-witness-forged").await;
        // The log's own line altered instead: refused too.
        let mut forged = honest.clone();
        let note = forged["cosignedCheckpoint"]["note"].as_str().unwrap();
        forged["cosignedCheckpoint"]["note"] =
            flip_signature(note, "test.rxledger.local/log").into();
        let (witnessed, sentence) = d.render(forged).await;
        assert!(!witnessed, "{sentence}");
        assert_eq!(
            sentence,
            "Not witnessed: the log's signature on the cosigned checkpoint does not verify."
        );
        // A cited checkpoint of another tree (its root changed) is not the witnessed log.
        let mut fork = honest.clone();
        let cited = fork["checkpointNote"].as_str().unwrap().to_string();
        let root = cited.lines().nth(2).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut other = b64.decode(root).unwrap();
        other[0] ^= 0x01;
        let other = b64.encode(other);
        fork["checkpointNote"] = cited.replacen(root, &other, 1).into();
        let (witnessed, sentence) = d.render(fork).await;
        assert!(!witnessed, "{sentence}");
        assert!(
            sentence.starts_with("Not witnessed: the checkpoint the answer cites (")
                && sentence.contains("is not consistent with the cosigned one ("),
            "{sentence}"
        );
        // A browser whose WebCrypto has no Ed25519 says it cannot check, and never "Witnessed".
        let no_ed25519 = d
            .script_async(
                "const [v, done] = arguments;
                 crypto.subtle.importKey = () => Promise.reject(new DOMException('no', 'NotSupportedError'));
                 witnessStatus(v).then((r) => { delete crypto.subtle.importKey; done(r); });",
                vec![honest.clone()],
            )
            .await;
        assert_eq!(no_ed25519[0], json!(false), "{no_ed25519}");
        assert!(
            no_ed25519[1]
                .as_str()
                .unwrap()
                .contains("cannot check witness cosignatures in this browser"),
            "{no_ed25519}"
        );
        let (witnessed, sentence) = d.render(honest).await;
        assert!(witnessed, "{sentence}");

        // The witnesses go down and the log grows: the cosigned checkpoint stays behind the
        // cited one. A pack whose entries it holds is still witnessed, through a real
        // consistency proof; the dispense the witnesses never saw is not yet witnessed.
        w1.stop().await;
        w2.stop().await;
        let behind = app.app().ledger.witnesses().cosigned().unwrap().size;
        assert!(behind >= cosigned);
        graphql_ok(
            &app,
            &pharmacy,
            "mutation { dispense(code: \"(01)10614141073464(21)1002\") { entryIndex } }",
            json!({}),
        )
        .await;
        d.scan("(01)10614141073464(21)1002").await;
        d.wait_verdict("ALREADY_DISPENSED").await;
        let (witnessed, sentence) = d.witnessed().await;
        assert!(!witnessed, "{sentence}");
        assert!(
            sentence.starts_with("Not yet witnessed: ledger entry #")
                && sentence.contains(&format!(
                    "is newer than the last checkpoint the witnesses cosigned ({behind} entries)"
                )),
            "{sentence}"
        );
        d.screenshot("verdict-not-yet-witnessed").await;
        let v = d.page_answer(&app, code).await;
        assert_eq!(v["cosignedCheckpoint"]["size"], json!(behind), "{v}");
        assert!(v["checkpointSize"].as_u64().unwrap() > behind, "{v}");
        d.scan(code).await;
        d.wait_verdict("AUTHENTIC").await;
        let (witnessed, sentence) = d.witnessed().await;
        assert!(witnessed, "{sentence}");
        assert!(
            sentence.starts_with(&format!("Witnessed: the checkpoint of {behind} entries")),
            "{sentence}"
        );
        d.quit().await;
        app.stop().await;
    }

    /// With alert cases on, a pharmacy's dispense outside its custody becomes a case for the
    /// brand owner. The regulator requests information from the page's inbox, and the brand
    /// owner, signed in on the same page, answers; both steps show as the case's records.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Debian's chromium and chromium-driver; .ci/run installs them"]
    async fn the_regulator_and_the_brand_owner_work_an_alert_case_from_the_page() {
        let app = Box::pin(spawn_app_with(Backends::Embedded, |c| {
            c.cases.enabled = true
        }))
        .await;
        let (_line, pharmacy) = Box::pin(pharmacy_scene(&app)).await;
        graphql_ok(
            &app,
            &pharmacy,
            "mutation { dispense(code: \"(01)10614141073464(21)1003\") { entryIndex } }",
            json!({}),
        )
        .await;
        let regulator = app.regulator_key().await;
        let (acme, _) = app
            .app()
            .api_keys
            .issue("acme", "MANUFACTURER", "desk", None)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            let d = graphql_ok(
                &app,
                &regulator,
                "{ alertCases { id alertCode } }",
                json!({}),
            )
            .await;
            if let Some(id) = d["alertCases"][0]["id"].as_i64() {
                assert_eq!(
                    d["alertCases"][0]["alertCode"], "DISPENSED_OUTSIDE_CUSTODY",
                    "{d}"
                );
                break id;
            }
            assert!(Instant::now() < deadline, "no case was opened: {d}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let d = Driver::start().await;
        d.goto(&format!("http://{}/", app.http)).await;
        for (key, who, action, button, done) in [
            (
                &regulator,
                "Medicines Agency (regulator)",
                "Please send the packing records.",
                "#case-request",
                "Information requested",
            ),
            (
                &acme,
                "acme (manufacturer)",
                "Serial 1003 was shipped to Hill Pharmacy.",
                "#case-answer",
                "Answered",
            ),
        ] {
            d.click("#signed-in").await;
            d.type_into("#key", &format!("{key}{ENTER}")).await;
            d.wait_text("#signed-in", &format!("Signed in as {who}"))
                .await;
            d.wait_for(&format!("#case-{id}")).await;
            d.click(&format!("#case-{id}")).await;
            d.wait_for("#case-text").await;
            d.type_into("#case-text", action).await;
            d.click(button).await;
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // Read by script: the page renders the case again after each action, so an
                // element found a moment ago may be gone.
                let records = d
                    .script("const e = document.getElementById('case-records'); return e ? e.textContent : '';")
                    .await;
                let records = records.as_str().unwrap_or_default().to_string();
                if records.contains(done) && records.contains(action) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{who}: the case shows {records:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        d.both_widths("alert-case").await;
        let c = graphql_ok(
            &app,
            &regulator,
            "query($id: Int!) { alertCase(id: $id) { status records { action actor } } }",
            json!({ "id": id }),
        )
        .await;
        let actions: Vec<&str> = c["alertCase"]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        assert_eq!(
            actions,
            ["OPENED", "INFORMATION_REQUESTED", "ANSWERED"],
            "{c}"
        );
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
        d.wait_text("#signed-in", "Signed in as Medicines Agency (regulator)")
            .await;
        // Same browser: GraphiQL's requests and its WebSocket carry the session cookie set by
        // signing in on the pharmacist's page.
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
