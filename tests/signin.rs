//! Signing in from a browser, over real HTTP and WebSocket: the sign-in page opens a session
//! cookie (never the key), the cookie stands for the key on label sheets, the resolver and
//! GraphQL (HTTP and WebSocket), sign-out and revocation end it, a cross-site request carrying
//! it is refused, and wrong keys are refused and rate limited.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use async_graphql::futures_util::{SinkExt as _, StreamExt as _};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

const GTIN: &str = "10614141073464";

/// One raw HTTP/1.1 exchange, headers included (the shared client returns no headers).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The session cookie's value this answer sets, if it sets one.
    fn session(&self) -> Option<String> {
        let c = self.header("set-cookie")?;
        let v = c.strip_prefix("rxl_session=")?.split(';').next()?;
        (!v.is_empty()).then(|| v.to_string())
    }
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `POST /signin` from the node's own page.
async fn sign_in(app: &TestApp, key: &str, next: &str) -> Answer {
    let origin = format!("http://{}", app.http);
    send(
        app.http,
        "POST",
        "/signin",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", &origin),
        ],
        &format!("key={key}&next={}", next.replace('/', "%2F")),
    )
    .await
}

/// A GraphQL request sent by the page with the session cookie: same-origin `Origin`.
async fn graphql_cookie(app: &TestApp, cookie: &str, origin: Option<&str>, query: &str) -> Answer {
    let own = format!("http://{}", app.http);
    let cookie = format!("rxl_session={cookie}");
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Cookie", cookie.as_str()),
    ];
    headers.push(("Origin", origin.unwrap_or(&own)));
    send(
        app.http,
        "POST",
        "/graphql",
        &headers,
        &json!({ "query": query }).to_string(),
    )
    .await
}

fn json_of(a: &Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn a_session_stands_for_its_key_until_sign_out() {
    let app = spawn_app().await;
    let _line = app.acme_with_packs(&["1001", "1002"]).await;
    let (brand_owner, _) = app
        .app()
        .api_keys
        .issue("acme", "MANUFACTURER", "packaging line", None)
        .await
        .unwrap();

    // The page and its form.
    let page = send(app.http, "GET", "/signin?next=%2Flabels%2F1", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"name="key" type="password""#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"value="/labels/1""#));

    // A browser that is not signed in is sent to sign in, and back afterwards.
    let sheet = format!("/labels/{GTIN}/L1.svg?page=1");
    let anon = send(app.http, "GET", &sheet, &[("Accept", "text/html")], "").await;
    assert_eq!(anon.status, 303);
    assert_eq!(
        anon.header("location"),
        Some(format!("/signin?next=/labels/{GTIN}/L1.svg%3Fpage%3D1").as_str())
    );

    let signed = sign_in(&app, &brand_owner, &sheet).await;
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location"), Some(sheet.as_str()));
    let set = signed.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = signed.session().unwrap();
    assert!(
        cookie.starts_with("rxs_") && !set.contains(&brand_owner),
        "the cookie is not the key"
    );
    let with_cookie = format!("rxl_session={cookie}");

    // The label sheet, with the cookie alone.
    let svg = send(app.http, "GET", &sheet, &[("Cookie", &with_cookie)], "").await;
    assert_eq!(svg.status, 200, "{}", svg.body);
    assert!(svg.body.contains("(21) 1001") && svg.body.contains("(21) 1002"));

    // GraphQL over HTTP: the same caller as the Bearer key.
    let me = json_of(&graphql_cookie(&app, &cookie, None, "{ me { orgId role } }").await);
    assert_eq!(
        me["data"]["me"],
        json!({ "orgId": "acme", "role": "MANUFACTURER" })
    );
    // ... and the same role checks: a manufacturer may not list API keys.
    let keys = json_of(&graphql_cookie(&app, &cookie, None, "{ apiKeys { id } }").await);
    assert_eq!(code(&keys), "FORBIDDEN", "{keys}");

    // The resolver's JSON answer sees what the brand owner may see.
    let resolved = send(
        app.http,
        "GET",
        &format!("/01/{GTIN}/21/1001"),
        &[("Cookie", &with_cookie), ("Accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(resolved.status, 200, "{}", resolved.body);

    // The sign-in page knows who is signed in.
    let page = send(app.http, "GET", "/signin", &[("Cookie", &with_cookie)], "").await;
    assert!(
        page.body.contains("Signed in as acme (manufacturer)"),
        "{}",
        page.body
    );

    // GraphQL over a WebSocket opened by the page: the cookie, no key in connection_init.
    let mut ws = ws_connect(app.http, &cookie, &format!("http://{}", app.http)).await;
    ws.send(Message::text(
        json!({"type": "subscribe", "id": "1", "payload": {"query": "{ me { orgId role } }"}})
            .to_string(),
    ))
    .await
    .unwrap();
    let next = ws_until(&mut ws, "next").await;
    assert_eq!(next["payload"]["data"]["me"]["orgId"], "acme", "{next}");

    // Sign out: the session is gone, and so is the cookie.
    let out = send(
        app.http,
        "POST",
        "/signout",
        &[
            ("Cookie", &with_cookie),
            ("Origin", &format!("http://{}", app.http)),
        ],
        "",
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let after = json_of(&graphql_cookie(&app, &cookie, None, "{ me { orgId } }").await);
    assert_eq!(code(&after), "SESSION_ENDED", "{after}");
    let svg = send(
        app.http,
        "GET",
        &sheet,
        &[("Cookie", &with_cookie), ("Accept", "application/json")],
        "",
    )
    .await;
    assert_eq!(svg.status, 401, "{}", svg.body);
    assert!(
        svg.header("set-cookie").unwrap().contains("Max-Age=0"),
        "an ended session's cookie is cleared"
    );
    app.stop().await;
}

#[tokio::test]
async fn revoking_the_key_ends_its_sessions() {
    let app = spawn_app().await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let regulator = app.regulator_key().await;
    let cookie = sign_in(&app, &regulator, "/").await.session().unwrap();
    let me = json_of(&graphql_cookie(&app, &cookie, None, "{ me { role } }").await);
    assert_eq!(me["data"]["me"]["role"], "REGULATOR");

    let listed = app
        .graphql_as(Some(&admin), "{ apiKeys { id orgId } }", json!({}))
        .await;
    let id = listed["data"]["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["orgId"] == "emvo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .graphql_as(
            Some(&admin),
            "mutation($id: String!) { revokeApiKey(id: $id) }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r["data"]["revokeApiKey"], true, "{r}");
    let after = json_of(&graphql_cookie(&app, &cookie, None, "{ me { role } }").await);
    assert_ne!(
        after["errors"],
        Value::Null,
        "a revoked key's session is refused: {after}"
    );
    assert!(after["data"]["me"].is_null());
    // Signing in again with the revoked key is refused.
    let again = sign_in(&app, &regulator, "/").await;
    assert_eq!(again.status, 401);
    assert!(again.body.contains("was revoked"), "{}", again.body);
    assert!(again.session().is_none());
    app.stop().await;
}

#[tokio::test]
async fn cross_site_requests_with_the_cookie_are_refused() {
    let app = spawn_app().await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let cookie = sign_in(&app, &admin, "/").await.session().unwrap();
    let with_cookie = format!("rxl_session={cookie}");
    let mutation = r#"mutation { createOrganization(input: {id: "evil", name: "Evil", role: PHARMACY}) { id } }"#;

    // Another site's page posts to /graphql: the browser adds its Origin.
    let forged = graphql_cookie(&app, &cookie, Some("http://evil.example"), mutation).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(code(&json_of(&forged)), "CSRF_REFUSED");
    // Neither Origin nor Referer: refused too.
    let bare = send(
        app.http,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &with_cookie),
        ],
        &json!({ "query": mutation }).to_string(),
    )
    .await;
    assert_eq!(bare.status, 403, "{}", bare.body);
    assert!(!org_exists(&app, "evil").await);
    // A same-site Referer is enough when there is no Origin.
    let referred = send(
        app.http,
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &with_cookie),
            ("Referer", &format!("http://{}/admin", app.http)),
        ],
        &json!({ "query": "{ me { role } }" }).to_string(),
    )
    .await;
    assert_eq!(
        json_of(&referred)["data"]["me"]["role"],
        "ADMIN",
        "{}",
        referred.body
    );

    // A cross-site WebSocket with the cookie is refused before the upgrade.
    let mut req = format!("ws://{}/graphql/ws", app.http)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    req.headers_mut()
        .insert("cookie", with_cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!(
            "a cross-site WebSocket was upgraded: {:?}",
            other.map(|(_, r)| r.status())
        ),
    }

    // Sign-out and sign-in from another site: refused (no logout or login CSRF).
    let out = send(
        app.http,
        "POST",
        "/signout",
        &[("Cookie", &with_cookie), ("Origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(out.status, 403);
    assert!(out.header("set-cookie").is_none());
    let login = send(
        app.http,
        "POST",
        "/signin",
        &[
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &format!("key={admin}"),
    )
    .await;
    assert_eq!(login.status, 403);
    assert!(login.session().is_none());
    // The session survived all of that; GET requests need no Origin (SameSite covers them).
    let still = json_of(&graphql_cookie(&app, &cookie, None, "{ me { role } }").await);
    assert_eq!(still["data"]["me"]["role"], "ADMIN");
    // A Bearer key needs no Origin: a browser never adds that header by itself.
    let r = app
        .graphql_as(Some(&admin), "{ me { role } }", json!({}))
        .await;
    assert_eq!(r["data"]["me"]["role"], "ADMIN");
    app.stop().await;
}

#[tokio::test]
async fn wrong_keys_are_refused_then_rate_limited() {
    let app = spawn_app().await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let wrong = format!("rxl_{}", "0".repeat(64));
    let mut limited = None;
    for attempt in 1..=20 {
        let a = sign_in(&app, &wrong, "/").await;
        assert!(a.session().is_none());
        if a.status == 429 {
            limited = Some(attempt);
            assert!(a.header("retry-after").is_some());
            break;
        }
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(a.body.contains("unknown API key"), "{}", a.body);
        assert!(!a.body.contains(&wrong), "the page does not echo the key");
    }
    assert_eq!(limited, Some(11), "ten attempts, then 429");
    // The right key from the same address waits its turn too.
    assert_eq!(sign_in(&app, &admin, "/").await.status, 429);
    // A malformed or foreign cookie is refused, never taken as anonymous.
    let r = json_of(&graphql_cookie(&app, "rxs_nonsense", None, "{ me { role } }").await);
    assert_eq!(code(&r), "SESSION_ENDED", "{r}");
    app.stop().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(http: SocketAddr, cookie: &str, origin: &str) -> Ws {
    let mut req = format!("ws://{http}/graphql/ws")
        .into_client_request()
        .unwrap();
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    h.insert("cookie", format!("rxl_session={cookie}").parse().unwrap());
    h.insert("origin", origin.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {}}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

/// The next message of type `kind`, skipping the others.
async fn ws_until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a WebSocket message within 20 s")
            .expect("the connection stays open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
            assert_ne!(v["type"], "error", "{v}");
        }
    }
}

/// A form POST from the node's own page, with the session cookie.
async fn post_form(app: &TestApp, cookie: &str, path: &str, body: &str) -> Answer {
    let origin = format!("http://{}", app.http);
    let cookie = format!("rxl_session={cookie}");
    send(
        app.http,
        "POST",
        path,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &cookie),
            ("Origin", &origin),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn the_admin_page_manages_the_registry_and_keys() {
    let app = spawn_app().await;
    let admin = app.app().first_admin_token.clone().unwrap();

    // Not signed in: to the sign-in page and back.
    let anon = send(app.http, "GET", "/admin", &[("Accept", "text/html")], "").await;
    assert_eq!(anon.status, 303);
    assert_eq!(anon.header("location"), Some("/signin?next=/admin"));

    let cookie = sign_in(&app, &admin, "/admin").await.session().unwrap();
    let with_cookie = format!("rxl_session={cookie}");
    let page = send(app.http, "GET", "/admin", &[("Cookie", &with_cookie)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("rxledger operator") && page.body.contains("first admin key"));

    // An organization, its prefix and a site; names are escaped.
    let r = post_form(
        &app,
        &cookie,
        "/admin/organization",
        "id=corner&name=Corner+%3Cb%3EPharmacy%3C%2Fb%3E&role=PHARMACY",
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, Some("/admin")),
        "{}",
        r.body
    );
    let r = post_form(
        &app,
        &cookie,
        "/admin/site",
        "gln=0614141000036&org=corner&name=High+Street",
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = send(app.http, "GET", "/admin", &[("Cookie", &with_cookie)], "").await;
    assert!(
        page.body.contains("Corner &lt;b&gt;Pharmacy&lt;/b&gt;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>Pharmacy"));
    assert!(page.body.contains("0614141000036") && page.body.contains("High Street"));
    // The same rules as the GraphQL mutation: a GLN with a wrong check digit is refused.
    let r = post_form(
        &app,
        &cookie,
        "/admin/site",
        "gln=0614141000037&org=corner&name=Back",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains(r#"id="admin-error""#) && r.body.contains("gln:"),
        "{}",
        r.body
    );

    // A device, enrolled and revoked.
    let hex_key = rxledger_core::keys::SigningKey::generate().public_hex();
    let r = post_form(
        &app,
        &cookie,
        "/admin/device",
        &format!("id=till-1&public_key={hex_key}&org=corner&site=0614141000036"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let d = app.app().registry.device("till-1").await.unwrap().unwrap();
    assert_eq!(d.status, "active");
    let r = post_form(&app, &cookie, "/admin/revoke-device", "id=till-1").await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        app.app()
            .registry
            .device("till-1")
            .await
            .unwrap()
            .unwrap()
            .status,
        "revoked"
    );

    // A key, shown once, that works at once; then revoked.
    let r = post_form(
        &app,
        &cookie,
        "/admin/key",
        "org=corner&role=&label=till+2&expires_days=30",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let token = r
        .body
        .split(r#"<pre id="new-key-token">"#)
        .nth(1)
        .unwrap()
        .split("</pre>")
        .next()
        .unwrap()
        .to_string();
    assert!(token.starts_with("rxl_"), "{token}");
    let me = app
        .graphql_as(Some(&token), "{ me { orgId role } }", json!({}))
        .await;
    assert_eq!(
        me["data"]["me"],
        json!({ "orgId": "corner", "role": "PHARMACY" })
    );
    let page = send(app.http, "GET", "/admin", &[("Cookie", &with_cookie)], "").await;
    assert!(
        !page.body.contains(&token),
        "the token is never shown again"
    );
    let id = app.app().api_keys.list(Some("corner")).await.unwrap()[0]
        .id
        .clone();
    let r = post_form(&app, &cookie, "/admin/revoke-key", &format!("id={id}")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let me = app
        .graphql_as(Some(&token), "{ me { orgId } }", json!({}))
        .await;
    assert_eq!(code(&me), "KEY_REVOKED", "{me}");

    // Another role may not use the page, signed in or with a Bearer key.
    let regulator = app.regulator_key().await;
    let reg_cookie = sign_in(&app, &regulator, "/").await.session().unwrap();
    let r = send(
        app.http,
        "GET",
        "/admin",
        &[("Cookie", &format!("rxl_session={reg_cookie}"))],
        "",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post_form(
        &app,
        &reg_cookie,
        "/admin/organization",
        "id=x&name=X&role=ADMIN",
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!org_exists(&app, "x").await);
    // A forged cross-site form with the admin's cookie changes nothing.
    let forged = send(
        app.http,
        "POST",
        "/admin/organization",
        &[
            ("Cookie", &with_cookie),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        "id=evil&name=Evil&role=ADMIN",
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(!org_exists(&app, "evil").await);
    app.stop().await;
}

/// Whether the registry holds organization `id`: what a refused change must not have made.
async fn org_exists(app: &TestApp, id: &str) -> bool {
    app.app().registry.organization(id).await.unwrap().is_some()
}
