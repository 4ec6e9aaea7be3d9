//! Bounded cost for every request, over real HTTP and WebSocket: query bombs are refused
//! before they run, every public route is rate limited by cost, WebSocket messages are capped
//! like HTTP bodies, photos are checked against a pixel budget before decoding, and the
//! server's memory stays within a stated bound while all of that is thrown at it.
//!
//! Also graphql-ws subscriptions as a real client makes them: an upgrade without a
//! Content-Length, the API key in the `connection_init` payload.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::futures_util::{SinkExt as _, StreamExt as _};
use common::*;
use rxledger::ratelimit::RateLimit;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const GTIN: &str = "10614141073464";

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// `n` aliases of `field`, as one query.
fn aliased(n: usize, field: &str) -> String {
    let body: String = (0..n).map(|i| format!("a{i}: {field} ")).collect();
    format!("{{ {body} }}")
}

/// A valid PNG that claims `w` x `h` 8-bit RGBA pixels and holds no image data.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (
            b"IHDR",
            [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 6, 0, 0, 0]].concat(),
        ),
        // An empty zlib stream: the decoder reads the header, allocates, then runs dry.
        (
            b"IDAT",
            vec![0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ),
        (b"IEND", Vec::new()),
    ] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(&data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Opens a graphql-transport-ws connection and sends `connection_init` with `payload`.
async fn ws_connect(http: SocketAddr, payload: Value) -> Ws {
    let mut req = format!("ws://{http}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("the upgrade is accepted without a Content-Length");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": payload}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

async fn ws_subscribe(ws: &mut Ws, id: &str, query: &str) {
    ws.send(Message::text(
        json!({"type": "subscribe", "id": id, "payload": {"query": query}}).to_string(),
    ))
    .await
    .unwrap();
}

/// The resident set and its peak, in KiB, of process `pid`.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A GET without any Content-Length header (what browsers send).
async fn bare_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// The peak memory of a separate `rxledger serve` while it is bombed: an aliased page bomb,
/// an aliased `verify` bomb, ten concurrent pixel bombs on `/scan`, an 11.5 MB WebSocket
/// document and an oversized HTTP body. Each is refused with its code, and the server's peak
/// resident set grows by less than 64 MiB (unguarded, the first took 4.2 GB and each PNG
/// 400 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_are_refused_and_the_servers_peak_memory_stays_bounded() {
    const BOUND_KIB: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let key = rxledger_core::keys::SigningKey::generate();
    enroll_acme_cli(data, &[], &[("line-1", &key)]);
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(serve_args(data, 5))
        // Rate limits are tested elsewhere: here every bomb must reach its own guard.
        .args(["--rate-limit", "100000"])
        .env("RXLEDGER_LOG", "warn")
        .stderr(std::process::Stdio::null());
    let mut served = spawn_serve(cmd);
    let pid = served.child.id();
    let http = served.http;

    // Entries worth mirroring: 50 envelopes of 20 packs each.
    let mut line = TestDevice::connect(
        ("127.0.0.1".into(), served.mqtt_port.unwrap()),
        rxledger_core::envelope::DEFAULT_TOPIC_ROOT,
        "line-1",
        key,
        &log_verifier_in(data),
    )
    .await;
    for e in 0..50 {
        let serials: Vec<String> = (0..20)
            .map(|i| format!("{}", 10_000 + e * 20 + i))
            .collect();
        let serials: Vec<&str> = serials.iter().map(String::as_str).collect();
        let r = line
            .send_events(vec![commission(&serials, "L1", "2031-06-30")])
            .await;
        assert_eq!(r.status, "ACCEPTED", "{r:?}");
    }
    let post = |query: String| async move {
        let body = serde_json::to_vec(&json!({ "query": query })).unwrap();
        let headers = [("Content-Type", "application/json".to_string())];
        let (status, body) = http_req(http, "POST", "/graphql", &headers, &body).await;
        (
            status,
            serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
        )
    };
    // Warm up with what the bombs ask for, once, legitimately.
    let (status, v) = post("{ entries(from: 0, count: 50) { index leafHash } }".into()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["entries"].as_array().unwrap().len(), 50, "{v}");
    let (_, v) = post("{ checkpoint { size } }".into()).await;
    let size = v["data"]["checkpoint"]["size"].as_i64();
    assert!(
        size >= Some(50),
        "the 50 envelopes and their map roots: {v}"
    );
    let (_, before) = rss_kib(pid);

    // Twice: the second time the parsed document comes from the query cache, and is priced
    // all the same.
    for _ in 0..2 {
        let (_, v) = post(aliased(
            1000,
            "entries(from: 0, count: 1000) { signer dataBase64 }",
        ))
        .await;
        assert_eq!(code(&v), "QUERY_TOO_COSTLY", "{v}");
        assert!(v["data"].is_null(), "nothing ran: {v}");
    }
    let (_, v) = post(aliased(
        999,
        &format!("verify(code: \"(01){GTIN}(21)10001\") {{ verdict }}"),
    ))
    .await;
    assert_eq!(code(&v), "QUERY_TOO_COSTLY", "{v}");

    let bomb = png_bomb(10_000, 10_000);
    assert!(bomb.len() < 100);
    let scans: Vec<_> = (0..10)
        .map(|_| {
            let bomb = bomb.clone();
            tokio::spawn(async move {
                http_req(
                    http,
                    "POST",
                    "/scan",
                    &[("Content-Type", "image/png".into())],
                    &bomb,
                )
                .await
            })
        })
        .collect();
    for s in scans {
        let (status, body) = s.await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (422, Some("IMAGE_TOO_LARGE")),
            "{v}"
        );
    }

    let mut ws = ws_connect(http, json!({})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    let huge = format!("{{ {} }}", "__typename ".repeat(1_150_000));
    let msg = json!({"type": "subscribe", "id": "1", "payload": {"query": huge}}).to_string();
    assert!(msg.len() > 11_000_000);
    let _ = ws.send(Message::text(msg)).await;
    let closed = ws_next(&mut ws).await;
    eprintln!("an 11.5 MB WebSocket document: {closed}");
    assert!(
        closed["close"] == 1009 || closed["close"] == -1,
        "closed, not parsed: {closed}"
    );

    let big = vec![b' '; 300 * 1024];
    let (status, _) = http_req(
        http,
        "POST",
        "/graphql",
        &[("Content-Type", "application/json".into())],
        &big,
    )
    .await;
    assert_eq!(status, 413);

    let (_, after) = rss_kib(pid);
    eprintln!("peak RSS {before} KiB before the bombs, {after} KiB after");
    assert!(
        after.saturating_sub(before) < BOUND_KIB,
        "peak RSS grew by {} KiB (from {before} to {after} KiB), more than {BOUND_KIB}",
        after.saturating_sub(before)
    );
    // Still serving, and the bombs appended nothing.
    let (status, v) = post("{ checkpoint { size } }".into()).await;
    assert_eq!(
        (status, v["data"]["checkpoint"]["size"].as_i64()),
        (200, size),
        "{v}"
    );
    served.child.kill().unwrap();
    served.child.wait().unwrap();
}

/// `common::http` under another name, so the closures above can borrow it.
async fn http_req(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    http(addr, method, path, headers, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_response_cap_is_replaced_by_one_error() {
    let app = spawn_app_with(Backends::Embedded, |c| c.limits.max_response_bytes = 4096).await;
    let mut line = app.acme_with_packs(&["1001"]).await;
    for i in 0..5 {
        let serials: Vec<String> = (0..20).map(|s| format!("{}", 2000 + i * 20 + s)).collect();
        let serials: Vec<&str> = serials.iter().map(String::as_str).collect();
        let r = line
            .send_events(vec![commission(&serials, "L1", "2031-06-30")])
            .await;
        assert_eq!(r.status, "ACCEPTED");
    }
    // The operator's key: raw entry bytes are not for everyone.
    let admin = app.app().first_admin_token.clone();
    let admin = admin.as_deref();
    let small = app
        .graphql_as(admin, "{ entries(from: 0, count: 2) { index } }", json!({}))
        .await;
    assert_eq!(
        small["data"]["entries"].as_array().map(Vec::len),
        Some(2),
        "{small}"
    );
    let q = "{ entries(from: 0, count: 6) { index signer dataBase64 } }";
    let v = app.graphql_as(admin, q, json!({})).await;
    assert_eq!(code(&v), "RESPONSE_TOO_LARGE", "{v}");
    assert_eq!(
        v["errors"].as_array().unwrap().len(),
        1,
        "one error, not one per field: {v}"
    );
    assert!(v["data"].is_null(), "{v}");
    app.stop().await;
}

/// A token bucket of `burst` that does not refill within a test.
fn tight(burst: f64) -> impl FnOnce(&mut rxledger::server::ServeConfig) {
    move |c| {
        c.rate_limit = RateLimit {
            per_second: 0.001,
            burst,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_requests_are_charged_by_cost_per_key_and_per_address() {
    let app = spawn_app_with(Backends::Embedded, tight(40.0)).await;
    app.acme_with_packs(&["1001"]).await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let post = |bearer: Option<&str>, query: &str| {
        let body = serde_json::to_vec(&json!({ "query": query })).unwrap();
        let mut headers = vec![("Content-Type", "application/json".to_string())];
        if let Some(t) = bearer {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        async move {
            let (status, resp) = http(app.http, "POST", "/graphql", &headers, &body).await;
            (status, serde_json::from_slice::<Value>(&resp).unwrap())
        }
    };
    // A full page of raw entries costs 5 + 1000 x 14 points: 29 tokens of 500.
    let page = "{ entries(from: 0, count: 1000) { index leafHash dataBase64 kind signer } }";
    let (status, v) = post(Some(&admin), page).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["errors"].is_null(), "{v}");
    // 11 tokens left: a second page is refused, eleven cheap requests pass, a twelfth not.
    let (status, v) = post(Some(&admin), page).await;
    assert_eq!((status, code(&v)), (429, "RATE_LIMITED"), "{v}");
    for _ in 0..11 {
        let (status, v) = post(Some(&admin), "{ checkpoint { size } }").await;
        assert_eq!(status, 200, "{v}");
        assert!(v["errors"].is_null(), "{v}");
    }
    let (status, v) = post(Some(&admin), "{ checkpoint { size } }").await;
    assert_eq!((status, code(&v)), (429, "RATE_LIMITED"), "{v}");
    // Anonymous callers are charged to their address, not to someone's key.
    let (status, v) = post(None, "{ checkpoint { size } }").await;
    assert_eq!(status, 200, "{v}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_qr_labels_and_scan_are_rate_limited() {
    let app = spawn_app_with(Backends::Embedded, tight(10.0)).await;
    app.acme_with_packs(&["1001"]).await;
    let json = [("Accept", "application/json".to_string())];
    let resolve = format!("/01/{GTIN}/21/1001");
    // Resolver 1 token, QR 2, scan 10: ten tokens go on 4 + 3 x 2, then all are refused.
    for _ in 0..4 {
        let (status, _) = http(app.http, "GET", &resolve, &json, b"").await;
        assert_eq!(status, 200);
    }
    for _ in 0..3 {
        let (status, _) = http(app.http, "GET", &format!("/qr/{GTIN}/1001.svg"), &json, b"").await;
        assert_eq!(status, 200);
    }
    for path in [
        resolve.as_str(),
        &format!("/qr/{GTIN}/1001.png"),
        &format!("/labels/{GTIN}/L1.svg"),
    ] {
        let (status, body) = http(app.http, "GET", path, &json, b"").await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (429, Some("RATE_LIMITED")),
            "{path}: {v}"
        );
    }
    let (status, body) = http(app.http, "POST", "/scan", &json, &png_bomb(10, 10)).await;
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (429, Some("RATE_LIMITED")),
        "{v}"
    );
    // The browser gets a page that says so, and Retry-After.
    let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
    let req = format!("GET {resolve} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    assert!(buf.starts_with("HTTP/1.1 429"), "{buf}");
    assert!(buf.to_ascii_lowercase().contains("retry-after:"), "{buf}");
    // The brand owner's key has its own bucket.
    let (token, _) = app
        .app()
        .api_keys
        .issue("acme", "MANUFACTURER", "labels", None)
        .await
        .unwrap();
    let (status, _) = http(
        app.http,
        "GET",
        &format!("/labels/{GTIN}/L1.svg"),
        &[("Authorization", format!("Bearer {token}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_operations_are_charged_one_by_one() {
    let app = spawn_app_with(Backends::Embedded, tight(20.0)).await;
    // The connection takes 1 token; 19 one-token operations pass and the 20th is refused,
    // as over HTTP.
    let mut ws = ws_connect(app.http, json!({})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    let mut answered = 0;
    let mut limited = 0;
    for i in 0..25 {
        ws_subscribe(&mut ws, &i.to_string(), "{ checkpoint { size } }").await;
        let v = ws_next(&mut ws).await;
        let errs = &v["payload"]["errors"];
        match (v["type"].as_str(), errs[0]["extensions"]["code"].as_str()) {
            (Some("next"), None) => answered += 1,
            (Some("next" | "error"), Some("RATE_LIMITED")) => limited += 1,
            (Some("error"), None) if errs.is_null() => {
                assert_eq!(v["payload"][0]["extensions"]["code"], "RATE_LIMITED", "{v}");
                limited += 1;
            }
            _ => panic!("unexpected {v}"),
        }
        if v["type"] == "next" {
            assert_eq!(ws_next(&mut ws).await["type"], "complete");
        }
    }
    assert_eq!((answered, limited), (19, 6));
    // Query bombs are refused over the WebSocket as over HTTP.
    let app2 = spawn_app().await;
    let mut ws = ws_connect(app2.http, json!({})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_subscribe(
        &mut ws,
        "b",
        &aliased(1000, "entries(from: 0, count: 1000) { signer }"),
    )
    .await;
    let v = ws_next(&mut ws).await;
    let err = if v["payload"].is_array() {
        &v["payload"][0]
    } else {
        &v["payload"]["errors"][0]
    };
    assert_eq!(err["extensions"]["code"], "QUERY_TOO_COSTLY", "{v}");
    app.stop().await;
    app2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_and_the_upgrade_need_no_content_length() {
    let app = spawn_app().await;
    let (status, page) = bare_get(app.http, "/graphql").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/assets/graphiql/graphiql.min.js"), "{page}");
    assert!(
        !page.contains("unpkg") && !page.contains("cdn"),
        "no CDN: {page}"
    );
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        let (status, body) = http(
            app.http,
            "GET",
            &format!("/assets/graphiql/{asset}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(status, 200, "{asset}");
        assert!(body.len() > 10_000, "{asset}");
    }
    // A chunked body over the cap is refused too (no Content-Length to check).
    let mut s = tokio::net::TcpStream::connect(app.http).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    s.write_all(
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let _ = s
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    // tungstenite's client sends no Content-Length: the upgrade must not get 411.
    let mut ws = ws_connect(app.http, json!({})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    ws_subscribe(&mut ws, "1", "{ checkpoint { size } }").await;
    let v = ws_next(&mut ws).await;
    assert_eq!(v["payload"]["data"]["checkpoint"]["size"], 0, "{v}");
    app.stop().await;
}

/// The API key in `connection_init`, in each spelling clients use; a regulator sees a live
/// alert arrive; a refused key closes the connection with 4403 and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regulator_key_in_connection_init_subscribes_to_alerts() {
    let app = spawn_app().await;
    let mut line = app.acme_with_packs(&["1001"]).await;
    let token = app.regulator_key().await;
    let spellings = [
        json!({"Authorization": format!("Bearer {token}")}),
        json!({"authorization": format!("Bearer {token}")}),
        json!({"headers": {"Authorization": format!("Bearer {token}")}}),
        json!({"apiKey": token}),
    ];
    let mut sockets = Vec::new();
    for (i, payload) in spellings.into_iter().enumerate() {
        let mut ws = ws_connect(app.http, payload.clone()).await;
        assert_eq!(
            ws_next(&mut ws).await["type"],
            "connection_ack",
            "{payload}"
        );
        ws_subscribe(
            &mut ws,
            &format!("s{i}"),
            "subscription { alerts { code subjects } }",
        )
        .await;
        sockets.push(ws);
    }
    // Without a key the subscription is refused, not silently empty.
    let mut anon = ws_connect(app.http, json!({})).await;
    assert_eq!(ws_next(&mut anon).await["type"], "connection_ack");
    ws_subscribe(&mut anon, "x", "subscription { alerts { code } }").await;
    let v = ws_next(&mut anon).await;
    let err = if v["payload"].is_array() {
        &v["payload"][0]
    } else {
        &v["payload"]["errors"][0]
    };
    assert_eq!(err["extensions"]["code"], "UNAUTHENTICATED", "{v}");

    // A subscription is live once the server has polled it, which the protocol does not
    // acknowledge: raise alerts until every socket has seen one (or 10 tries have passed).
    let mut seen = vec![false; sockets.len()];
    for _ in 0..10 {
        let r = line
            .send_events(vec![commission(&["1001"], "L1", "2031-06-30")])
            .await;
        assert_eq!(
            r.code.as_deref(),
            Some("SERIAL_ALREADY_COMMISSIONED"),
            "{r:?}"
        );
        for (ws, seen) in sockets.iter_mut().zip(seen.iter_mut()) {
            while let Ok(Some(Ok(Message::Text(t)))) =
                tokio::time::timeout(Duration::from_millis(500), ws.next()).await
            {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["type"], "next", "{v}");
                let alert = &v["payload"]["data"]["alerts"];
                assert_eq!(alert["code"], "SERIAL_ALREADY_COMMISSIONED", "{v}");
                *seen = true;
            }
        }
        if seen.iter().all(|s| *s) {
            break;
        }
    }
    assert!(
        seen.iter().all(|s| *s),
        "every spelling got the live alert: {seen:?}"
    );

    let mut bad = ws_connect(app.http, json!({"Authorization": "Bearer rxk_nonsense"})).await;
    let v = ws_next(&mut bad).await;
    assert_eq!(v["close"], 4403, "{v}");
    assert!(
        v["reason"].as_str().unwrap().starts_with("UNAUTHENTICATED"),
        "{v}"
    );
    app.stop().await;
}

/// Live operations per WebSocket and WebSockets per address are bounded, so an idle
/// subscriber cannot pile up streams or connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_holds_100_operations_and_an_address_32_websockets() {
    let app = spawn_app_with(Backends::Embedded, |c| {
        c.rate_limit = RateLimit {
            per_second: 1000.0,
            burst: 2000.0,
        }
    })
    .await;
    let mut ws = ws_connect(app.http, json!({})).await;
    assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
    const LIVE: &str = "subscription { checkpoints { size } }";
    for i in 0..99 {
        ws_subscribe(&mut ws, &i.to_string(), LIVE).await;
    }
    // A query is the 100th; it completes, and then no longer counts.
    ws_subscribe(&mut ws, "q", "{ checkpoint { size } }").await;
    let v = ws_next(&mut ws).await;
    assert_eq!(v["id"], "q", "{v}");
    assert_eq!(ws_next(&mut ws).await["type"], "complete");
    ws_subscribe(&mut ws, "99", LIVE).await;
    ws_subscribe(&mut ws, "100", LIVE).await;
    let v = ws_next(&mut ws).await;
    assert_eq!(v["close"], 4400, "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .starts_with("TOO_MANY_OPERATIONS"),
        "{v}"
    );

    let mut held = Vec::new();
    for _ in 0..32 {
        let mut ws = ws_connect(app.http, json!({})).await;
        assert_eq!(ws_next(&mut ws).await["type"], "connection_ack");
        held.push(ws);
    }
    let mut req = format!("ws://{}/graphql/ws", app.http)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
            assert!(body.contains("TOO_MANY_CONNECTIONS"), "{body}");
        }
        other => panic!("a 33rd WebSocket from one address: {other:?}"),
    }
    // Closing one makes room for another.
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut req = format!("ws://{}/graphql/ws", app.http)
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await {
            again = Some(ws);
            break;
        }
    }
    assert!(again.is_some(), "a closed WebSocket frees its place");
    app.stop().await;
}
