//! docs/CODES.md quotes the core's code tables: every row rendered from
//! `rxledger_core::eucodes` must be in the document verbatim, and the document has no row
//! for a code the tables lack.

use rxledger_core::eucodes::{Lvm, REFUSALS, VERDICTS};

fn doc() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/CODES.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cell(v: Option<&str>) -> &str {
    v.unwrap_or("—")
}

fn lvm(l: Lvm) -> String {
    match l {
        Lvm::NotFound => "HTTP 404 (unknown GTIN)".into(),
        Lvm::Failure(f) => format!("`verified: false`, `{f}`"),
        Lvm::Verified(Some(i)) => format!("`verified: true`, additionalInfo `{i}`"),
        Lvm::Verified(None) => "`verified: true`".into(),
        Lvm::NotApplicable => "— (no serial to ask about)".into(),
    }
}

/// The rows of the table under `heading`: the lines starting with "| `".
fn rows_under(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/CODES.md has no {heading:?}"));
    doc[start..]
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| l.starts_with("| `"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_verdict_table_is_the_cores() {
    let expected: Vec<String> = VERDICTS
        .iter()
        .map(|m| {
            format!(
                "| `{}` | {} | {} | {} |",
                m.code,
                cell(m.eu_alert),
                cell(m.nmvs),
                lvm(m.lvm)
            )
        })
        .collect();
    assert_eq!(rows_under(&doc(), "## Verdict reasons"), expected);
}

#[test]
fn the_refusal_table_is_the_cores() {
    let expected: Vec<String> = REFUSALS
        .iter()
        .map(|m| format!("| `{}` | {} | {} |", m.code, cell(m.eu_alert), cell(m.nmvs)))
        .collect();
    assert_eq!(rows_under(&doc(), "## State-change refusals"), expected);
}
