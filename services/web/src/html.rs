//! Server-rendered pages: the resolver's verification page and the error pages. Plain HTML
//! with one stylesheet, so a phone that scanned a QR code sees the answer without running any
//! script.

use serde_json::Value;

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
    match verdict {
        "AUTHENTIC" => "Genuine pack",
        "NOT_IN_YOUR_CUSTODY" => "Genuine pack (not shipped to you)",
        "UNKNOWN_PRODUCT" => "Unknown product",
        "UNKNOWN_SERIAL" => "Unknown serial number: possible counterfeit",
        "BATCH_MISMATCH" => "Batch does not match: possible counterfeit",
        "EXPIRY_MISMATCH" => "Expiry date does not match: possible counterfeit",
        "EXPIRED" => "Expired",
        "ALREADY_DISPENSED" => "Already dispensed",
        "RECALLED" => "Recalled",
        "STOLEN" => "Reported stolen",
        "DESTROYED" => "Destroyed",
        "DECOMMISSIONED" => "Taken off the market",
        "NO_SERIAL" => "Cannot be verified: no serial number",
        _ => "See the reasons below",
    }
}

/// The CSS class of a verification: ok (green), warn (amber) or bad (red).
pub fn tone(v: &Value) -> &'static str {
    let dispensable = v["dispensable"].as_bool().unwrap_or(false);
    let warnings = v["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|x| x["severity"] == "WARNING"));
    match (dispensable, warnings) {
        (true, false) => "ok",
        (true, true) => "warn",
        (false, _) => "bad",
    }
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// The resolver's page for one verification (the JSON of GraphQL's `verify`).
pub fn verification_page(v: &Value, uri: &str) -> String {
    let verdict = s(v, "verdict");
    let dispensable = v["dispensable"].as_bool().unwrap_or(false);
    let mut body = format!(
        r#"<section class="verdict {tone}" role="status"><p class="code">{code}</p><h1>{head}</h1><p>{may}</p></section>"#,
        tone = tone(v),
        code = esc(verdict),
        head = headline(verdict),
        may = if dispensable {
            "This pack may be dispensed."
        } else {
            "Do not dispense or use this pack. Ask your pharmacist."
        }
    );
    if let Some(reasons) = v["reasons"].as_array().filter(|r| !r.is_empty()) {
        body.push_str("<h2>Why</h2><ul class=\"reasons\">");
        for r in reasons {
            body.push_str(&format!(
                "<li><strong>{}</strong> ({}) {}</li>",
                esc(s(r, "code")),
                esc(&s(r, "severity").to_lowercase()),
                esc(s(r, "message"))
            ));
        }
        body.push_str("</ul>");
    }
    let p = &v["product"];
    if p.is_object() {
        body.push_str("<h2>Product</h2><dl class=\"product\">");
        for (label, key) in [
            ("GTIN", "gtin"),
            ("Serial", "serial"),
            ("Batch", "lot"),
            ("Expiry", "expiry"),
        ] {
            if let Some(x) = p[key].as_str() {
                body.push_str(&format!("<dt>{label}</dt><dd>{}</dd>", esc(x)));
            }
        }
        if let Some(st) = v["status"].as_str() {
            body.push_str(&format!("<dt>Status</dt><dd>{}</dd>", esc(st)));
        }
        body.push_str("</dl>");
    }
    if let Some(steps) = v["timeline"].as_array().filter(|t| !t.is_empty()) {
        body.push_str("<h2>Journey</h2><ol class=\"timeline\">");
        for t in steps {
            let step = t["bizStep"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{} {}", s(t, "eventType"), s(t, "action")));
            body.push_str(&format!(
                "<li><time>{}</time> {}{} <span class=\"idx\">ledger #{}</span></li>",
                esc(s(t, "eventTime")),
                esc(&step.replace('_', " ")),
                if t["inherited"] == true {
                    " (with its case or pallet)"
                } else {
                    ""
                },
                t["index"]
            ));
        }
        body.push_str("</ol>");
    }
    body.push_str(&format!(
        "<details><summary>Evidence</summary><p>Checkpoint of {} entries. Machine-readable: \
         <code>curl -H 'Accept: application/json' '{}'</code></p><pre>{}</pre></details>",
        v["checkpointSize"],
        esc(uri),
        esc(s(v, "checkpointNote"))
    ));
    page(headline(verdict), &body)
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
