//! Server-rendered pages: the resolver's verification page and the error pages. Plain HTML
//! with one stylesheet, so a phone that scanned a QR code sees the answer without running any
//! script.

use rxledger_core::verdict::{Severity, VerdictCode};
use rxledger_graphql::verify::{Product, TimelineStep, Verification};

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

/// Words a patient understands, for each verdict code.
pub fn headline(verdict: &str) -> &'static str {
    use VerdictCode as V;
    match verdict.parse::<VerdictCode>() {
        Ok(V::Authentic) => "Genuine pack",
        Ok(V::NotInYourCustody) => "Genuine pack (not shipped to you)",
        Ok(V::UnknownProduct) => "Unknown product",
        Ok(V::UnknownSerial) => "Unknown serial number: possible counterfeit",
        Ok(V::BatchMismatch) => "Batch does not match: possible counterfeit",
        Ok(V::ExpiryMismatch) => "Expiry date does not match: possible counterfeit",
        Ok(V::Expired) => "Expired",
        Ok(V::AlreadyDispensed) => "Already dispensed",
        Ok(V::Recalled) => "Recalled",
        Ok(V::Stolen) => "Reported stolen",
        Ok(V::Destroyed) => "Destroyed",
        Ok(V::Decommissioned) => "Taken off the market",
        Ok(V::NoSerial) => "Cannot be verified: no serial number",
        _ => "See the reasons below",
    }
}

/// The CSS class of a verification: ok (green), warn (amber) or bad (red).
pub fn tone(v: &Verification) -> &'static str {
    let warnings = v
        .reasons
        .iter()
        .any(|r| r.severity == Severity::Warning.as_str());
    match (v.dispensable, warnings) {
        (true, false) => "ok",
        (true, true) => "warn",
        (false, _) => "bad",
    }
}

/// The resolver's page for one verification: verdict, reasons, product, journey, evidence.
pub fn verification_page(v: &Verification, uri: &str) -> String {
    let verdict = v.verdict.as_str();
    let mut body = format!(
        r#"<section class="verdict {tone}" role="status"><p class="code">{code}</p><h1>{head}</h1><p>{may}</p></section>"#,
        tone = tone(v),
        code = esc(verdict),
        head = headline(verdict),
        may = if v.dispensable {
            "This pack may be dispensed."
        } else {
            "Do not dispense or use this pack. Ask your pharmacist."
        }
    );
    if !v.reasons.is_empty() {
        body.push_str("<h2>Why</h2><ul class=\"reasons\">");
        for r in &v.reasons {
            body.push_str(&format!(
                "<li><strong>{}</strong> ({}) {}</li>",
                esc(&r.code),
                esc(&r.severity.to_lowercase()),
                esc(&r.message)
            ));
        }
        body.push_str("</ul>");
    }
    if let Some(p) = &v.product {
        body.push_str(&product(p, v.status.as_deref()));
    }
    if !v.timeline.is_empty() {
        body.push_str(&journey(&v.timeline));
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

/// What the pack is, and its status.
fn product(p: &Product, status: Option<&str>) -> String {
    let mut out = String::from("<h2>Product</h2><dl class=\"product\">");
    for (label, value) in [
        ("GTIN", Some(&p.gtin)),
        ("Serial", p.serial.as_ref()),
        ("Batch", p.lot.as_ref()),
        ("Expiry", p.expiry.as_ref()),
    ] {
        if let Some(x) = value {
            out.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(x)));
        }
    }
    if let Some(st) = status {
        out.push_str(&format!("<dt>Status</dt><dd>{}</dd>", esc(st)));
    }
    out.push_str("</dl>");
    out
}

/// The public timeline, oldest first.
fn journey(steps: &[TimelineStep]) -> String {
    let mut out = String::from("<h2>Journey</h2><ol class=\"timeline\">");
    for t in steps {
        let step = t
            .biz_step
            .clone()
            .unwrap_or_else(|| format!("{} {}", t.event_type, t.action));
        out.push_str(&format!(
            "<li><time>{}</time> {}{} <span class=\"idx\">ledger #{}</span></li>",
            esc(&t.event_time),
            esc(&step.replace('_', " ")),
            if t.inherited {
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
}
