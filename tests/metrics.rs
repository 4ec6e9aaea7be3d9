//! `/metrics` on its own listener: Prometheus text that moves with what the server did.

mod common;

use common::*;

/// One sample's value: `name` with exactly `labels` (`""` for none).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_receipts_by_status_the_log_and_alerts() {
    let app = spawn_app().await;
    let mut line = app.acme_with_packs(&["M1", "M2"]).await;
    // The same payload again: a DUPLICATE. Commissioning M1 again: REJECTED, with an alert.
    let again = line.envelope(vec![commission(&["M3"], "L1", "2031-06-30")]);
    assert_eq!(line.send(again.clone()).await.status, "ACCEPTED");
    assert_eq!(line.send(again).await.status, "DUPLICATE");
    let r = line
        .send_events(vec![commission(&["M1"], "L1", "2031-06-30")])
        .await;
    assert_eq!(r.status, "REJECTED", "{r:?}");

    // Two verifications over GraphQL, one through the resolver.
    for serial in ["M1", "M9"] {
        let r = app
            .graphql(
                "query($c: String!) { verify(code: $c) { verdict } }",
                serde_json::json!({ "c": format!("(01)10614141073464(21){serial}") }),
            )
            .await;
        assert!(r["errors"].is_null(), "{r}");
    }
    let (status, _) = http(app.http, "GET", "/01/10614141073464/21/M2", &[], b"").await;
    assert_eq!(status, 200);

    let bound = rxledger::metrics::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = bound.addr;
    let a = app.app();
    rxledger::metrics::serve(
        bound,
        rxledger::metrics::Sources::new(a.ingest_counters(), a.ledger.clone())
            .with_verify_latency(a.verify_latency.clone()),
    );
    let (status, body) = http(addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let receipts = |s: &str| {
        sample(
            &text,
            "rxledger_ingest_receipts_total",
            &format!("status=\"{s}\""),
        )
        .unwrap_or_else(|| panic!("no {s} in\n{text}"))
    };
    assert_eq!(receipts("ACCEPTED"), 2.0, "{text}");
    assert_eq!(receipts("DUPLICATE"), 1.0, "{text}");
    assert_eq!(receipts("REJECTED"), 1.0, "{text}");
    assert_eq!(
        sample(&text, "rxledger_ingest_envelopes_received_total", ""),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "rxledger_log_size", ""),
        Some(a.ledger.head().size as f64),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rxledger_alerts_total{code=\"SERIAL_ALREADY_COMMISSIONED\",")),
        "{text}"
    );
    assert!(sample(&text, "process_resident_memory_bytes", "").unwrap() > 1e6);
    assert!(sample(&text, "rxledger_checkpoint_age_seconds", "").unwrap() >= 0.0);
    // Verification latency, by channel: every verification counted once, in cumulative
    // buckets that end with +Inf at the count.
    for (channel, n) in [("graphql", 2.0), ("resolver", 1.0)] {
        let count = sample(
            &text,
            "rxledger_verify_seconds_count",
            &format!("channel=\"{channel}\""),
        );
        assert_eq!(count, Some(n), "{channel}: {text}");
        let inf = sample(
            &text,
            "rxledger_verify_seconds_bucket",
            &format!("channel=\"{channel}\",le=\"+Inf\""),
        );
        assert_eq!(inf, Some(n), "{text}");
        let le = |edge: &str| {
            sample(
                &text,
                "rxledger_verify_seconds_bucket",
                &format!("channel=\"{channel}\",le=\"{edge}\""),
            )
            .unwrap()
        };
        assert!(le("0.001") <= le("0.3") && le("0.3") <= n, "{text}");
        assert!(
            sample(
                &text,
                "rxledger_verify_seconds_sum",
                &format!("channel=\"{channel}\"")
            )
            .unwrap()
                > 0.0
        );
    }
    // The node's share of publish→receipt, one observation per receipted envelope (the
    // four above), and one append per batch; families without labels have bare `le`s.
    assert_eq!(
        sample(&text, "rxledger_ingest_receipt_seconds_count", ""),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "rxledger_ingest_receipt_seconds_bucket",
            "le=\"+Inf\""
        ),
        Some(4.0),
        "{text}"
    );
    assert!(sample(&text, "rxledger_ingest_receipt_seconds_sum", "").unwrap() > 0.0);
    let batches = sample(&text, "rxledger_ingest_batches_total", "").unwrap();
    assert_eq!(
        sample(&text, "rxledger_ingest_append_seconds_count", ""),
        Some(batches),
        "{text}"
    );
    assert!(
        sample(&text, "rxledger_ingest_append_seconds_bucket", "le=\"0.1\"").unwrap() <= batches
    );
    // Every family is declared before its samples, as the text format requires (a
    // histogram's samples carry suffixes of its name).
    for name in text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap())
    {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
            .unwrap_or(name);
        assert!(text.contains(&format!("# TYPE {family} ")), "{name}");
    }
    // Alert counts cost one query per 10 s however often Prometheus scrapes: a new rejection
    // (and its alert) shows in the counters at once, in the alert counts only after that.
    let alerts_of = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("rxledger_alerts_total{"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    let before = alerts_of(&text);
    let r = line
        .send_events(vec![commission(&["M2"], "L1", "2031-06-30")])
        .await;
    assert_eq!(r.status, "REJECTED", "{r:?}");
    let (_, body) = http(addr, "GET", "/metrics", &[], b"").await;
    let again = String::from_utf8(body).unwrap();
    assert_eq!(
        sample(
            &again,
            "rxledger_ingest_receipts_total",
            "status=\"REJECTED\""
        ),
        Some(2.0)
    );
    assert_eq!(
        alerts_of(&again),
        before,
        "alert counts are cached: {again}"
    );
    // The public port does not serve them.
    let (status, _) = http(app.http, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 404);
}
