//! The web side over real HTTP: QR codes, the Digital Link resolver (HTML, JSON and GS1
//! Lightweight Verification Messaging), label sheets, photo decoding and bad input.

mod common;

use common::*;
use serde_json::{Value, json};

const GTIN: &str = "10614141073464";

/// A server with a manufacturer that commissioned packs 1001 and 1002 of lot L1.
async fn app_with_packs() -> TestApp {
    let app = spawn_app().await;
    app.acme_with_packs(&["1001", "1002"]).await;
    app
}

async fn get(app: &TestApp, path: &str, accept: &str) -> (u16, Vec<u8>) {
    http(
        app.http,
        "GET",
        path,
        &[("Accept", accept.to_string())],
        b"",
    )
    .await
}

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let (status, body) = get(app, path, "application/json").await;
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("JSON from {path}: {}", String::from_utf8_lossy(&body)));
    (status, v)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_round_trip_then_verify_the_uri() {
    let app = app_with_packs().await;
    let (status, png) = get(&app, &format!("/qr/{GTIN}/1001.png"), "image/png").await;
    assert_eq!(status, 200);
    // rqrr is a decoder written independently of the qrcode crate that drew the code.
    let decoded = rxledger_web::qr::decode(&png).expect("the PNG holds a readable QR code");
    let expected = format!("http://{}/01/{GTIN}/10/L1/21/1001?17=310630", app.http);
    assert_eq!(decoded, vec![expected.clone()]);

    // The URI resolves on this server, as a phone camera would open it.
    let path = expected.split_once(&app.http.to_string()).unwrap().1;
    let (status, v) = get_json(&app, path).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verdict"], "AUTHENTIC", "{v}");
    assert_eq!(v["product"]["serial"], "1001");
    assert_eq!(v["timeline"][0]["bizStep"], "commissioning");

    let (status, svg) = get(&app, &format!("/qr/{GTIN}/1002.svg"), "image/svg+xml").await;
    assert_eq!(status, 200);
    assert!(text(&svg).contains("<svg"), "{}", text(&svg));
    // Lot and expiry given in the query win over the ledger's.
    let (_, png) = get(
        &app,
        &format!("/qr/{GTIN}/77.png?10=X9&17=300101"),
        "image/png",
    )
    .await;
    assert_eq!(
        rxledger_web::qr::decode(&png).unwrap()[0],
        format!("http://{}/01/{GTIN}/10/X9/21/77?17=300101", app.http)
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_page_json_and_verification_service() {
    let app = app_with_packs().await;
    let (status, page) = get(&app, &format!("/01/{GTIN}/21/1001"), "text/html").await;
    assert_eq!(status, 200);
    let page = text(&page);
    assert!(
        page.contains("Genuine pack") && page.contains("verdict ok"),
        "{page}"
    );
    assert!(
        page.contains("Serialised by the manufacturer"),
        "timeline in plain words: {page}"
    );
    assert!(
        page.contains("No product information registered for this GTIN"),
        "{page}"
    );
    assert!(
        !page.contains("acme"),
        "an anonymous page names no party: {page}"
    );
    // The page says which time zone its times are in, and that no witness holds this node's
    // evidence to account (tests/witness.rs has the witnessed case).
    assert!(page.contains("Times are in UTC"), "{page}");
    assert!(
        page.contains("No witnesses are configured for this ledger: the evidence rests on the operator&#39;s signature alone."),
        "{page}"
    );

    let (status, page) = get(&app, &format!("/01/{GTIN}/21/999"), "text/html").await;
    assert_eq!(status, 200);
    assert!(
        text(&page).contains("possible falsified pack") && !text(&page).contains("AUTHENTIC"),
        "{}",
        text(&page)
    );

    // GS1 Lightweight Verification Messaging, as a DSCSA VRS requester sends it.
    let lvm = |serial: &str, extra: &str| {
        format!(
            "/01/{GTIN}/10/L1/21/{serial}?17=310630&linkType=verificationService&context=dscsaSaleableReturn&reqGLN=0614141000029&corrUUID=7d6c2a1e-0000-4000-8000-000000000001{extra}"
        )
    };
    let (status, v) = get_json(&app, &lvm("1001", "")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"], json!({ "verified": true }), "{v}");
    assert_eq!(v["responderGLN"], "0614141000005");
    assert_eq!(v["corrUUID"], "7d6c2a1e-0000-4000-8000-000000000001");
    assert!(v["verificationTimestamp"].as_str().unwrap().ends_with('Z'));
    let (_, v) = get_json(&app, &lvm("999", "")).await;
    assert_eq!(v["data"]["verified"], false);
    assert_eq!(
        v["data"]["verificationFailureReason"],
        "No_match_GTIN_Serial"
    );
    let (_, v) = get_json(
        &app,
        &format!("/01/{GTIN}/10/L2/21/1001?linkType=gs1:verificationService"),
    )
    .await;
    assert_eq!(
        v["data"]["verificationFailureReason"],
        "No_match_GTIN_Serial_Lot"
    );
    // The older VRS path form with `exp`.
    let (status, v) = get_json(
        &app,
        &format!("/verify/gtin/{GTIN}/lot/L1/ser/1001?exp=310630&linkType=verificationService"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["verified"], true, "{v}");
    // A GTIN nobody registered: 404, as the standard answers it.
    let (status, _) = get(
        &app,
        "/01/09506000134352/21/1?linkType=verificationService",
        "application/json",
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_page_or_json_never_a_500() {
    let app = app_with_packs().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/no/such/page", 404, "NOT_FOUND"),
        ("GET", "/01/10614141073465/21/1001", 400, "INVALID_CODE"),
        (
            "GET",
            "/01/10614141073464/10/ABCDEFGHIJKLMNOPQRSTU/21/1",
            400,
            "INVALID_CODE",
        ),
        ("GET", "/01/10614141073464", 400, "NO_SERIAL"),
        ("GET", "/01/1061414107346x/21/1", 400, "INVALID_CODE"),
        ("GET", "/qr/10614141073465/1001.png", 400, "INVALID_CODE"),
        ("GET", "/qr/10614141073464/1001.gif", 404, "NOT_FOUND"),
        ("GET", "/assets/nothing.js", 404, "NOT_FOUND"),
        ("DELETE", "/01/10614141073464/21/1001", 405, "BAD_REQUEST"),
    ];
    for (method, path, want, code) in cases {
        let (status, body) = http(
            app.http,
            method,
            path,
            &[("Accept", "text/html".into())],
            b"",
        )
        .await;
        assert_eq!(status, *want, "{method} {path}: {}", text(&body));
        let page = text(&body);
        assert!(page.starts_with("<!doctype html>"), "{path}: {page}");
        let (status, v) = {
            let (s, b) = http(
                app.http,
                method,
                path,
                &[("Accept", "application/json".into())],
                b"",
            )
            .await;
            (
                s,
                serde_json::from_slice::<Value>(&b)
                    .unwrap_or_else(|_| panic!("{path}: {}", text(&b))),
            )
        };
        assert_eq!(status, *want, "{path}");
        assert_eq!(v["error"]["code"], *code, "{path}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The check-digit error says what was expected.
    let (_, v) = get_json(&app, "/01/10614141073465/21/1001").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("check digit"),
        "{v}"
    );
    let (_, v) = get_json(&app, "/01/10614141073464/10/ABCDEFGHIJKLMNOPQRSTU/21/1").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("10"),
        "{v}"
    );

    // Photos: not an image, an image without a code, a truncated PNG, and too large.
    let scan = |body: Vec<u8>| async move {
        let (s, b) = http(
            app.http,
            "POST",
            "/scan",
            &[("Content-Type", "image/png".into())],
            &body,
        )
        .await;
        (
            s,
            serde_json::from_slice::<Value>(&b).unwrap_or_else(|_| panic!("{}", text(&b))),
        )
    };
    let (s, v) = scan(b"this is not an image".to_vec()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("UNREADABLE_IMAGE")),
        "{v}"
    );
    let mut blank = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(200, 200, image::Luma([255]))
        .write_to(&mut blank, image::ImageFormat::Png)
        .unwrap();
    let (s, v) = scan(blank.into_inner()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("NO_CODE_FOUND")),
        "{v}"
    );
    let (_, png) = get(&app, &format!("/qr/{GTIN}/1001.png"), "image/png").await;
    let (s, v) = scan(png[..png.len() / 2].to_vec()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (422, Some("UNREADABLE_IMAGE")),
        "{v}"
    );
    let (s, v) = scan(png.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["codes"][0].as_str().unwrap(),
        format!("http://{}/01/{GTIN}/10/L1/21/1001?17=310630", app.http)
    );
    let (s, v) = scan(vec![0u8; rxledger_web::MAX_PHOTO_BYTES + 1]).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("TOO_LARGE")),
        "{v}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_labels_and_the_regulator_status() {
    let app = app_with_packs().await;
    let (status, page) = get(&app, "/", "text/html").await;
    assert_eq!(status, 200);
    let page = text(&page);
    assert!(
        page.contains("<label for=\"code\">") && page.contains("id=\"photo\""),
        "{page}"
    );
    for asset in ["/assets/app.js", "/assets/app.css"] {
        assert_eq!(get(&app, asset, "*/*").await.0, 200, "{asset}");
    }

    let admin = app.app().first_admin_token.clone().unwrap();
    let sheet = format!("/labels/{GTIN}/L1.svg");
    let (status, _) = get(&app, &sheet, "image/svg+xml").await;
    assert_eq!(status, 401);
    let (status, svg) = http(
        app.http,
        "GET",
        &sheet,
        &[("Authorization", format!("Bearer {admin}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", text(&svg));
    let svg = text(&svg);
    assert!(
        svg.contains("(21) 1001") && svg.contains("(21) 1002") && svg.contains("(17) 310630"),
        "{svg}"
    );

    // The regulator's ledger view: status, then an audit through the API.
    let r = app
        .graphql_as(
            Some(&admin),
            "mutation { runAudit { ok treeSize entriesChecked problems } }",
            json!({}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");
    assert_eq!(r["data"]["runAudit"]["ok"], true, "{r}");
    assert!(r["data"]["runAudit"]["entriesChecked"].as_i64().unwrap() >= 1);
    let r = app
        .graphql_as(
            Some(&admin),
            "{ me { orgId role } ledgerStatus { size lastAudit { ok } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        r["data"]["me"],
        json!({ "orgId": "admin", "role": "ADMIN" }),
        "{r}"
    );
    assert_eq!(r["data"]["ledgerStatus"]["lastAudit"]["ok"], true);
    let anon = app
        .graphql("{ me { orgId } ledgerStatus { size } }", json!({}))
        .await;
    assert_eq!(
        anon["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{anon}"
    );
    app.stop().await;
}

/// Product master data on every channel: the resolver page, its JSON, the LVM answer and the
/// label sheet show what the brand owner registered; a GTIN without any says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn product_master_data_on_every_channel() {
    let app = app_with_packs().await;
    let admin = app.app().first_admin_token.clone().unwrap();
    let r = app
        .graphql_as(
            Some(&admin),
            "mutation($i: TradeItemInput!) { registerProduct(input: $i) { gtin } }",
            json!({ "i": {
                "gtin": GTIN, "productName": "Amoxil <b>", "strength": "500 mg",
                "dosageForm": "capsule", "netContent": "21 capsules",
                "marketingAuthorisationHolder": "Acme Pharma Ltd"
            }}),
        )
        .await;
    assert!(r["errors"].is_null(), "{r}");

    let (status, page) = get(&app, &format!("/01/{GTIN}/21/1001"), "text/html").await;
    assert_eq!(status, 200);
    let page = text(&page);
    assert!(
        page.contains("Amoxil &lt;b&gt; 500 mg capsule")
            && page.contains("21 capsules")
            && page.contains("Acme Pharma Ltd"),
        "{page}"
    );
    assert!(!page.contains("No product information"), "{page}");

    let (_, v) = get_json(&app, &format!("/01/{GTIN}/21/1001")).await;
    assert_eq!(
        v["product"]["tradeItem"]["productName"], "Amoxil <b>",
        "{v}"
    );
    assert_eq!(
        v["product"]["tradeItem"]["netContent"], "21 capsules",
        "{v}"
    );

    let (_, v) = get_json(
        &app,
        &format!("/01/{GTIN}/21/1001?linkType=verificationService"),
    )
    .await;
    assert_eq!(v["data"], json!({ "verified": true }), "{v}");
    assert_eq!(
        v["productInformation"]["gs1:productName"], "Amoxil <b>",
        "{v}"
    );
    assert_eq!(
        v["productInformation"]["gs1:netContent"], "21 capsules",
        "{v}"
    );

    let (status, svg) = http(
        app.http,
        "GET",
        &format!("/labels/{GTIN}/L1.svg"),
        &[("Authorization", format!("Bearer {admin}"))],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let svg = text(&svg);
    assert!(
        svg.contains("Amoxil &lt;b&gt; 500 mg capsule  EXP 2031-06-30"),
        "{svg}"
    );

    // Another of acme's GTINs, with no master data: every channel says so.
    let other = "10614141073471";
    let (_, page) = get(&app, &format!("/01/{other}/21/1"), "text/html").await;
    assert!(
        text(&page).contains("No product information registered for this GTIN"),
        "{}",
        text(&page)
    );
    let (_, v) = get_json(&app, &format!("/01/{other}/21/1")).await;
    assert!(v["product"]["tradeItem"].is_null(), "{v}");
    let (_, v) = get_json(
        &app,
        &format!("/01/{other}/21/1?linkType=verificationService"),
    )
    .await;
    assert_eq!(
        v["productInformationStatus"], "No product information registered for this GTIN",
        "{v}"
    );
    app.stop().await;
}
