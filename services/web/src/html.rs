//! Server-rendered pages: the resolver's verification page and the error pages. Plain HTML
//! with one stylesheet, so a phone that scanned a QR code sees the answer without running any
//! script.

use rxledger_core::checkpoint::CheckpointError;
use rxledger_core::cosignature::{Quorum, open_cosigned};
use rxledger_core::keys::LogVerifier;
use rxledger_core::verdict::{Severity, VerdictCode};
use rxledger_graphql::product::TradeItem;
use rxledger_graphql::verify::{Product, ReasonOut, TimelineStep, Verification};

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · rxledger</title>
<link rel="stylesheet" href="/assets/app.css"></head>
<body><header class="bar"><a href="/" class="brand">rxledger</a> <span>medicine verification</span></header>
<main>{body}</main>
<footer><p>Answers are backed by a tamper-evident ledger: every cited entry comes with an
inclusion proof against a signed checkpoint. <a href="/">Verify another pack</a></p></footer>
</body></html>"#,
        title = esc(title)
    )
}

/// An error page: what went wrong, and what to do about it.
pub fn error_page(title: &str, message: &str, hint: &str) -> String {
    page(
        title,
        &format!(
            r#"<section class="verdict bad" role="alert"><h1>{}</h1><p>{}</p></section><p>{}</p>"#,
            esc(title),
            esc(message),
            esc(hint)
        ),
    )
}

/// Plain words for each verdict code, the page's main line.
pub fn headline(verdict: &str) -> &'static str {
    use VerdictCode as V;
    match verdict.parse::<VerdictCode>() {
        Ok(V::Authentic) => "Genuine pack",
        Ok(V::NotInYourCustody) => "Genuine pack, not shipped to you",
        Ok(V::UnknownProduct) => "Unknown product",
        Ok(V::UnknownSerial) => "Unknown serial number: possible falsified pack",
        Ok(V::BatchMismatch) => "Batch does not match: possible falsified pack",
        Ok(V::ExpiryMismatch) => "Expiry date does not match: possible falsified pack",
        Ok(V::Expired) => "Expired",
        Ok(V::AlreadyDispensed) => "Already dispensed",
        Ok(V::Recalled) => "Batch recalled",
        Ok(V::Quarantined) => "Quarantined: keep it apart",
        Ok(V::Stolen) => "Reported stolen",
        Ok(V::Destroyed) => "Recorded as destroyed",
        Ok(V::Decommissioned) => "Taken off the market",
        Ok(V::NoSerial) => "Cannot be verified: no serial number",
        _ => "See the reasons below",
    }
}

/// The worst severity among the reasons.
fn worst(v: &Verification) -> Severity {
    v.reasons
        .iter()
        .filter_map(|r| r.severity.parse::<Severity>().ok())
        .max()
        .unwrap_or(Severity::Ok)
}

/// The CSS class of a verification: ok (green), warn (amber) or bad (red).
pub fn tone(v: &Verification) -> &'static str {
    match (v.dispensable, worst(v)) {
        (true, Severity::Ok) => "ok",
        (true, _) => "warn",
        (false, _) => "bad",
    }
}

/// What to do, under the headline.
fn advice(v: &Verification) -> &'static str {
    match (v.dispensable, worst(v)) {
        (true, _) => "This pack may be dispensed.",
        (false, Severity::Alert) => {
            "Do not dispense or use this pack. Keep it apart and report it."
        }
        (false, _) => "Do not dispense or use this pack.",
    }
}

/// The reasons worth reading: everything but the "nothing wrong" ones, unless nothing else
/// holds (a red verdict never lists "genuine" under "Why").
pub fn reasons_shown(v: &Verification) -> Vec<&ReasonOut> {
    let ok = Severity::Ok.as_str();
    let problems: Vec<&ReasonOut> = v.reasons.iter().filter(|r| r.severity != ok).collect();
    if problems.is_empty() && v.dispensable {
        v.reasons.iter().collect()
    } else {
        problems
    }
}

/// The details line: the codes behind the plain words, for support calls and logs.
fn details(v: &Verification) -> String {
    let mut codes: Vec<&str> = vec![v.verdict.as_str()];
    for r in &v.reasons {
        if !codes.contains(&r.code.as_str()) {
            codes.push(&r.code);
        }
    }
    let mut out = format!("Codes: {}", codes.join(", "));
    if let Some(st) = &v.status {
        out.push_str(&format!(" · ledger status {st}"));
    }
    esc(&out)
}

/// The node's witnesses as a client must demand them (`serve --witness`, `--witness-quorum`),
/// and the log key the cosigned checkpoint must carry.
pub struct Witnesses<'a> {
    pub quorum: &'a Quorum,
    pub log: &'a LogVerifier,
}

/// Whether the checkpoint a verification cites is held to account by the configured
/// witnesses, in plain words: `(witnessed, sentence)`. Witnessed means a checkpoint signed by
/// the log and cosigned by at least the quorum of configured witnesses, each cosignature
/// checked here with the witness's key (`cosignature::open_cosigned`), holds every cited
/// entry. The same rule as the pharmacist's page (`assets/app.js`, `witnessStatus`), which
/// also checks the cosignatures itself.
pub fn witness_status(v: &Verification, w: &Witnesses<'_>) -> (bool, String) {
    let newest = v.evidence.iter().map(|e| e.index).max();
    let q = w.quorum.need;
    let plural = if q == 1 { "" } else { "s" };
    let Some(c) = v.cosigned_checkpoint.as_ref().filter(|_| q > 0) else {
        return (
            false,
            if q == 0 {
                "No witnesses are configured for this ledger: the evidence rests on the operator's signature alone.".into()
            } else {
                format!(
                    "Not yet witnessed: no checkpoint has the {q} witness cosignature{plural} this ledger requires."
                )
            },
        );
    };
    let good = match open_cosigned(&c.note, w.log, w.quorum) {
        Ok((cp, names)) if cp.size == c.size as u64 => names,
        Err(CheckpointError::NoQuorum { got, .. }) => {
            return (
                false,
                format!(
                    "Not witnessed: the newest cosigned checkpoint carries {got} of the {q} required cosignatures."
                ),
            );
        }
        // The node checked every line as a witness sent it: only a bug gets here.
        _ => {
            return (
                false,
                "Not witnessed: the newest cosigned checkpoint does not verify with the log's and the witnesses' keys.".into(),
            );
        }
    };
    if let Some(n) = newest.filter(|n| *n >= c.size) {
        return (
            false,
            format!(
                "Not yet witnessed: ledger entry #{n} is newer than the last checkpoint the witnesses cosigned ({} entries). Verify again in a minute.",
                c.size
            ),
        );
    }
    let holds = if newest.is_some() {
        ", which holds every cited entry,"
    } else {
        ""
    };
    (
        true,
        format!(
            "Witnessed: the checkpoint of {} entries{holds} is cosigned by {} ({q} required).",
            c.size,
            good.join(", ")
        ),
    )
}

/// Whether a verification's completeness proof verifies, in plain words: `None` when it
/// carries none (the map is off, or no map root is committed yet), else `(complete,
/// sentence)`. The check is the core's (`map::answer::verify_answer`), the one
/// `rxledger verify-answer` and the pharmacist's page (`assets/app.js`, `completenessStatus`)
/// run, against the checkpoint the verdict cites and the log's key.
pub fn completeness_status(
    v: &Verification,
    log_key: &rxledger_core::keys::PublicKey,
) -> Option<(bool, String)> {
    v.completeness.as_ref()?;
    let checked = serde_json::to_value(v)
        .map_err(|e| e.to_string())
        .and_then(|answer| {
            let (text, _) = rxledger_core::checkpoint::split_note(&v.checkpoint_note)
                .map_err(|e| e.to_string())?;
            let cp = rxledger_core::checkpoint::Checkpoint::parse_body(text)
                .map_err(|e| e.to_string())?;
            rxledger_core::map::answer::verify_answer(&answer, &cp, Some(log_key))
        });
    Some(match checked {
        Ok(ok) => (
            true,
            format!(
                "Complete: the ledger's map proves that the {} entries shown are every entry about this pack, its cases and its batch (map root in entry #{}).",
                ok.entries, ok.map_entry
            ),
        ),
        Err(why) => (
            false,
            format!("Not proven complete: {why}. Verify again, and report it if this stays."),
        ),
    })
}

/// The resolver's page for one verification: verdict, reasons, product, journey, evidence,
/// whether the witnesses hold it to account and whether it is proven complete.
pub fn verification_page(
    v: &Verification,
    uri: &str,
    witnesses: &Witnesses<'_>,
    complete: Option<(bool, String)>,
) -> String {
    let verdict = v.verdict.as_str();
    let mut body = format!(
        r#"<section class="verdict {tone}" role="status" aria-live="polite"><h1>{head}</h1><p>{may}</p><p class="details">{details}</p></section>"#,
        tone = tone(v),
        head = headline(verdict),
        may = advice(v),
        details = details(v),
    );
    let shown = reasons_shown(v);
    if !shown.is_empty() {
        body.push_str("<h2>Why</h2><ul class=\"reasons\">");
        for r in shown {
            body.push_str(&format!(
                "<li><span class=\"sev sev-{}\">{}</span> {}</li>",
                esc(&r.severity.to_lowercase()),
                severity_word(&r.severity),
                esc(&r.message)
            ));
        }
        body.push_str("</ul>");
    }
    if let Some(p) = &v.product {
        body.push_str(&product(p));
    }
    if !v.timeline.is_empty() {
        body.push_str(&journey(&v.timeline));
    }
    let (witnessed, sentence) = witness_status(v, witnesses);
    body.push_str(&trust_line("witness-status", witnessed, &sentence));
    if let Some((complete, sentence)) = complete {
        body.push_str(&trust_line("completeness-status", complete, &sentence));
    }
    body.push_str(&format!(
        "<details><summary>Evidence</summary><p>Checkpoint of {} entries. Machine-readable: \
         <code>curl -H 'Accept: application/json' '{}'</code></p><pre>{}</pre></details>",
        v.checkpoint_size,
        esc(uri),
        esc(&v.checkpoint_note)
    ));
    page(headline(verdict), &body)
}

/// A line saying whether the answer is held to account (witnessed, proven complete): green
/// when it is, amber when not.
fn trust_line(id: &str, ok: bool, sentence: &str) -> String {
    format!(
        r#"<p class="witness {}" id="{id}">{}</p>"#,
        if ok { "witness-ok" } else { "witness-warn" },
        esc(sentence)
    )
}

/// A severity in words.
fn severity_word(severity: &str) -> &'static str {
    match severity.parse::<Severity>() {
        Ok(Severity::Alert) => "Alert",
        Ok(Severity::Blocked) => "Stop",
        Ok(Severity::Warning) => "Check",
        _ => "OK",
    }
}

/// Said wherever a GTIN has no registered master data.
pub const NO_PRODUCT_DATA: &str = "No product information registered for this GTIN.";

/// The trade item's name line: "Amoxil 500 mg film-coated tablet".
pub fn trade_name(t: &TradeItem) -> String {
    [
        Some(t.product_name.as_str()),
        t.strength.as_deref(),
        t.dosage_form.as_deref(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}

/// What the pack is: its master data, then the identifiers printed on it.
fn product(p: &Product) -> String {
    let mut out = String::from("<h2>Product</h2>");
    match &p.trade_item {
        Some(t) => {
            out.push_str("<div class=\"trade-item\">");
            if let Some(img) = &t.image_url {
                out.push_str(&format!(
                    "<img src=\"{}\" alt=\"Picture of the pack\" width=\"96\" height=\"96\" loading=\"lazy\">",
                    esc(img)
                ));
            }
            out.push_str(&format!(
                "<p class=\"trade-name\">{}</p></div>",
                esc(&trade_name(t))
            ));
        }
        None => out.push_str(&format!("<p class=\"no-data\">{NO_PRODUCT_DATA}</p>")),
    }
    out.push_str("<dl class=\"product\">");
    let t = p.trade_item.as_ref();
    for (label, value) in [
        ("Pack size", t.and_then(|t| t.net_content.as_ref())),
        (
            "Authorisation holder",
            t.and_then(|t| t.marketing_authorisation_holder.as_ref()),
        ),
        ("GTIN", Some(&p.gtin)),
        ("Serial", p.serial.as_ref()),
        ("Batch", p.lot.as_ref()),
        ("Expiry", p.expiry.as_ref()),
    ] {
        if let Some(x) = value {
            out.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(x)));
        }
    }
    out.push_str("</dl>");
    out
}

/// A CBV business step (or, without one, a disposition) in plain words.
pub fn step_name(t: &TimelineStep) -> String {
    let plain = match (t.biz_step.as_deref(), t.disposition.as_deref()) {
        (_, Some("recalled")) => "Batch recalled",
        (_, Some("stolen")) => "Reported stolen",
        (Some("holding"), Some("non_sellable_other")) => "Held back (quarantine)",
        (Some("inspecting"), Some("active")) => "Inspected and released",
        (Some("commissioning"), _) => "Serialised by the manufacturer",
        (Some("packing"), _) => "Packed into a case",
        (Some("unpacking"), _) => "Taken out of its case",
        (Some("shipping" | "departing"), _) => "Shipped",
        (Some("receiving" | "arriving" | "accepting"), _) => "Received",
        (Some("storing" | "stocking"), _) => "Put in stock",
        (Some("dispensing" | "retail_selling"), _) => "Dispensed to a patient",
        (Some("decommissioning"), _) => "Taken off the market",
        (Some("destroying"), _) => "Destroyed",
        (Some("inspecting"), _) => "Inspected",
        (Some("holding"), _) => "Put on hold",
        (Some("void_shipping"), _) => "Shipment cancelled",
        (None, Some("active")) => "Returned to stock (dispense undone)",
        (Some(other), _) => return capitalised(&other.replace('_', " ")),
        (None, _) => return format!("Recorded ({} {})", t.event_type, t.action),
    };
    plain.to_string()
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An RFC 3339 UTC time as people read it: `2026-12-06 19:15 UTC`.
pub fn readable_time(t: &str) -> String {
    match (t.get(..10), t.get(11..16), t.ends_with('Z')) {
        (Some(day), Some(hm), true) => format!("{day} {hm} UTC"),
        _ => t.to_string(),
    }
}

/// The public timeline, in the order things happened.
fn journey(steps: &[TimelineStep]) -> String {
    let mut ordered: Vec<&TimelineStep> = steps.iter().collect();
    ordered.sort_by(|a, b| (&a.event_time, a.index).cmp(&(&b.event_time, b.index)));
    // A page without script cannot know the reader's time zone: it says which one it uses.
    let mut out = String::from(
        "<h2>Journey</h2><p class=\"help\">Times are in UTC (Coordinated Universal Time).</p><ol class=\"timeline\">",
    );
    for t in ordered {
        out.push_str(&format!(
            "<li><time datetime=\"{}\">{}</time> <span class=\"step\">{}{}</span> <span class=\"idx\">ledger #{}</span></li>",
            esc(&t.event_time),
            esc(&readable_time(&t.event_time)),
            esc(&step_name(t)),
            if t.inherited && t.disposition.as_deref() != Some("recalled") {
                " (with its case or pallet)"
            } else {
                ""
            },
            t.index
        ));
    }
    out.push_str("</ol>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(
            esc("<a href=\"x\">&'\u{1d}"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;\u{fffd}"
        );
    }

    /// A verification citing no entry, with `note` as its cosigned checkpoint of `size`, whose
    /// board names both witnesses whatever the note carries.
    fn cosigned(size: i64, note: String) -> Verification {
        Verification {
            verdict: "AUTHENTIC".into(),
            dispensable: true,
            eu_alert: None,
            reasons: Vec::new(),
            product: None,
            status: None,
            evidence: Vec::new(),
            checkpoint_size: size,
            checkpoint_note: note.clone(),
            cosigned_checkpoint: Some(rxledger_graphql::CosignedCheckpoint {
                size,
                note,
                cosigners: vec!["witness.example/w1".into(), "witness.example/w2".into()],
            }),
            timeline: Vec::new(),
            completeness: None,
        }
    }

    /// The page without script checks the cosigned note with the keys, not the names the
    /// board lists: a forged cosignature is refused, a missing one counted.
    #[test]
    fn witness_status_checks_the_cosignatures() {
        use rxledger_core::checkpoint::{Checkpoint, sign_checkpoint_with};
        use rxledger_core::cosignature::{cosign, with_lines};
        use rxledger_core::ed25519::{Ed25519Key, EdKind};
        use rxledger_core::keys::SigningKey;

        let origin = "example.com/rxledger";
        let cp = Checkpoint {
            origin: origin.into(),
            size: 8,
            root: [8; 32],
        };
        let k256 = SigningKey::from_bytes(&[3; 32]).unwrap();
        let log = LogVerifier::new(origin, k256.public_key()).unwrap();
        let note = sign_checkpoint_with(&cp, &k256, None).unwrap();
        let witness = |n: u8| {
            let key = Ed25519Key::from_bytes(&[n; 32]);
            let name = format!("witness.example/w{n}");
            let v = key.verifier(&name, EdKind::Cosignature).unwrap();
            (key, v)
        };
        let ((k1, w1), (k2, w2)) = (witness(1), witness(2));
        let l1 = cosign(&cp.body(), &w1, &k1, 10).unwrap();
        let l2 = cosign(&cp.body(), &w2, &k2, 10).unwrap();
        let other = Checkpoint {
            size: 9,
            ..cp.clone()
        };
        let forged = cosign(&other.body(), &w2, &k2, 10).unwrap();
        let quorum = Quorum {
            witnesses: vec![w1, w2],
            need: 2,
        };
        let w = Witnesses {
            quorum: &quorum,
            log: &log,
        };
        let status = |lines: &[String]| witness_status(&cosigned(8, with_lines(&note, lines)), &w);
        assert_eq!(
            status(&[l1.clone(), l2]),
            (
                true,
                "Witnessed: the checkpoint of 8 entries is cosigned by witness.example/w1, witness.example/w2 (2 required).".into()
            )
        );
        assert_eq!(
            status(std::slice::from_ref(&l1)).1,
            "Not witnessed: the newest cosigned checkpoint carries 1 of the 2 required cosignatures."
        );
        assert_eq!(
            status(&[l1, forged]),
            (
                false,
                "Not witnessed: the newest cosigned checkpoint does not verify with the log's and the witnesses' keys.".into()
            )
        );
    }

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(
            readable_time("2026-12-06T19:15:42.123Z"),
            "2026-12-06 19:15 UTC"
        );
        assert_eq!(readable_time("garbage"), "garbage");
    }
}
