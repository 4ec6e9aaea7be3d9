//! The simple event query of the REST binding: URI query parameters to the store's filter,
//! and pages.
//!
//! Values of a parameter are separated by `|` (the binding's `pipeDelimited` style). A
//! parameter this server does not support is refused (`QueryParameterException`), never
//! ignored: a filter silently dropped would answer more than was asked.
//!
//! `nextPageToken` is the position after the last event of the page (entry index, position)
//! and a digest of the other parameters. It is harmless rather than secret: visibility is
//! applied to every page, so a token edited by hand can only skip within what the caller may
//! see anyway; one used with other parameters, or altered at all, is refused.

use std::collections::BTreeMap;

use rxledger_core::epcis::{self, BizStep, Disposition};
use rxledger_core::gs1;
use rxledger_store::packs::{AnyOf, EventFilter};

use super::problem::EpcisProblem;

/// Events per page when `perPage` is not given (the binding's default).
pub const DEFAULT_PER_PAGE: u64 = 30;
/// Most events per page.
pub const MAX_PER_PAGE: u64 = 1_000;
/// Most values one parameter may list.
pub const MAX_VALUES: usize = 100;

/// A parsed query: the filter (without the caller's visibility yet) and the page.
#[derive(Debug)]
pub struct Parsed {
    pub filter: EventFilter,
    pub per_page: u64,
    pub after: Option<(i64, i32)>,
    /// The parameters that define the result set, for the next page's link and token.
    pub defining: BTreeMap<String, String>,
}

/// Parses the query string's parameters. `fixed` are set by the resource itself
/// (`/epcis/bizSteps/shipping/events` is `EQ_bizStep=shipping`).
pub fn parse(
    params: &[(String, String)],
    fixed: &[(&str, String)],
) -> Result<Parsed, EpcisProblem> {
    let mut defining: BTreeMap<String, String> = BTreeMap::new();
    let mut per_page = DEFAULT_PER_PAGE;
    let mut token = None;
    for (k, v) in params {
        match k.as_str() {
            "perPage" => {
                per_page = v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (1..=MAX_PER_PAGE).contains(n))
                    .ok_or_else(|| {
                        EpcisProblem::parameter(format!("perPage must be 1 to {MAX_PER_PAGE}"))
                    })?;
            }
            "nextPageToken" => token = Some(v.clone()),
            _ => {
                if defining.insert(k.clone(), v.clone()).is_some() {
                    return Err(EpcisProblem::parameter(format!(
                        "{k} is given twice; list values as {k}=a|b"
                    )));
                }
            }
        }
    }
    for (k, v) in fixed {
        defining.insert(k.to_string(), v.clone());
    }
    let mut filter = EventFilter::default();
    for (k, v) in &defining {
        apply(&mut filter.any_of, k, v)?;
    }
    let after = token.map(|t| read_token(&t, &defining)).transpose()?;
    Ok(Parsed {
        filter,
        per_page,
        after,
        defining,
    })
}

fn values(v: &str, name: &str) -> Result<Vec<String>, EpcisProblem> {
    let out: Vec<String> = v.split('|').map(|s| s.trim().to_string()).collect();
    if out.iter().any(String::is_empty) {
        return Err(EpcisProblem::parameter(format!("{name}: an empty value")));
    }
    if out.len() > MAX_VALUES {
        return Err(EpcisProblem::parameter(format!(
            "{name}: at most {MAX_VALUES} values"
        )));
    }
    Ok(out)
}

/// A time parameter. A `+` offset that arrived unencoded reads as a space: put it back.
pub fn time(v: &str, name: &str) -> Result<i64, EpcisProblem> {
    epcis::parse_time(&v.trim().replace(' ', "+"))
        .map_err(|e| EpcisProblem::parameter(format!("{name}: {e}")))
}

fn epcs(v: &str, name: &str) -> Result<Vec<gs1::EpcId>, EpcisProblem> {
    values(v, name)?
        .iter()
        .map(|e| {
            gs1::parse_epc(e).map_err(|err| EpcisProblem::parameter(format!("{name}: {e}: {err}")))
        })
        .collect()
}

/// A location as the index keys it (a GLN, or GLN.extension): an SGLN URN or Digital Link.
fn locations(v: &str, name: &str) -> Result<Vec<String>, EpcisProblem> {
    values(v, name)?
        .iter()
        .map(|l| {
            epcis::Location::parse(l, name)
                .map(|loc| loc.key())
                .map_err(|e| EpcisProblem::parameter(format!("{name}: {l}: {e}")))
        })
        .collect()
}

/// Each value of the list `v` of parameter `k`, as `parse` reads it; one it cannot read is
/// refused as not being `what`.
fn each<T>(
    v: &str,
    k: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, EpcisProblem> {
    values(v, k)?
        .iter()
        .map(|x| {
            parse(x).ok_or_else(|| EpcisProblem::parameter(format!("{k}: {x:?} is not {what}")))
        })
        .collect()
}

fn apply(f: &mut AnyOf, k: &str, v: &str) -> Result<(), EpcisProblem> {
    let own = |x: &str| Some(x.to_string());
    match k {
        "eventType" => {
            f.event_types = each(v, k, "an EPCIS event type", |t| {
                own(t).filter(|t| rxledger_core::epcis::EVENT_TYPES.contains(&t.as_str()))
            })?;
        }
        "EQ_action" => {
            f.actions = each(v, k, "ADD, OBSERVE or DELETE", |a| {
                own(a).filter(|a| matches!(a.as_str(), "ADD" | "OBSERVE" | "DELETE"))
            })?;
        }
        "EQ_bizStep" => {
            f.biz_steps = each(v, k, "a CBV 2.0 business step", |b| {
                BizStep::parse(b).map(|x| x.as_str().to_string())
            })?;
        }
        "EQ_disposition" => {
            f.dispositions = each(v, k, "a CBV 2.0 disposition", |d| {
                Disposition::parse(d).map(|x| x.as_str().to_string())
            })?;
        }
        "EQ_bizLocation" => f.biz_locations = locations(v, k)?,
        "EQ_readPoint" => f.read_points = locations(v, k)?,
        "MATCH_epc" => f.epcs = epcs(v, k)?,
        "MATCH_parentID" => f.parents = epcs(v, k)?,
        "MATCH_anyEPC" => f.any_epcs = epcs(v, k)?,
        "EQ_eventID" => {
            f.hashes = each(
                v,
                k,
                "a CBV 2.0 event hash ID (ni:///sha-256;…?ver=CBV2.0), which is how this repository identifies events",
                epcis::hash_of_id,
            )?;
        }
        "GE_eventTime" => f.event_from_ms = Some(time(v, k)?),
        "LT_eventTime" => f.event_until_ms = Some(time(v, k)?),
        "GE_recordTime" => f.record_from_ms = Some(time(v, k)?),
        "LT_recordTime" => f.record_until_ms = Some(time(v, k)?),
        other => {
            return Err(EpcisProblem::parameter(format!(
                "{other} is not a query parameter this server supports (eventType, EQ_action, EQ_bizStep, EQ_disposition, EQ_bizLocation, EQ_readPoint, MATCH_epc, MATCH_parentID, MATCH_anyEPC, EQ_eventID, GE_/LT_eventTime, GE_/LT_recordTime, perPage, nextPageToken)"
            )));
        }
    }
    Ok(())
}

/// A named query's `query` object (the binding's query schema: a list parameter as an array
/// of strings, a time as a string) as the parameters of `GET /epcis/events`, for [`parse`]:
/// one parser for both. `@context` is allowed and means nothing to the filter; paging is
/// given when the query runs, not in its definition.
pub fn from_json(query: &serde_json::Value) -> Result<Vec<(String, String)>, EpcisProblem> {
    use serde_json::Value;
    let Value::Object(fields) = query else {
        return Err(EpcisProblem::parameter("query must be a JSON object"));
    };
    let mut out = Vec::with_capacity(fields.len());
    for (k, v) in fields {
        let text = match (k.as_str(), v) {
            ("@context", _) => continue,
            ("perPage" | "nextPageToken", _) => {
                return Err(EpcisProblem::parameter(format!(
                    "{k} is not part of a query: give it when the query runs (GET /epcis/queries/{{name}}/events?{k}=…)"
                )));
            }
            (_, Value::String(s)) => s.clone(),
            (_, Value::Array(items)) if items.len() <= MAX_VALUES => {
                let mut values = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) if !s.contains('|') => values.push(s),
                        _ => {
                            return Err(EpcisProblem::parameter(format!(
                                "{k}: each value is a string without '|'"
                            )));
                        }
                    }
                }
                values.join("|")
            }
            (_, Value::Array(_)) => {
                return Err(EpcisProblem::parameter(format!(
                    "{k}: at most {MAX_VALUES} values"
                )));
            }
            _ => {
                return Err(EpcisProblem::parameter(format!(
                    "{k}: a list of strings, or a string for a time"
                )));
            }
        };
        out.push((k.clone(), text));
    }
    Ok(out)
}

/// Parameters as [`parse`] takes those the resource fixes (a named query's own).
pub fn fixed(pairs: &[(String, String)]) -> Vec<(&str, String)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

/// The digest that ties a token to the parameters it pages through.
fn digest(defining: &BTreeMap<String, String>) -> [u8; 8] {
    let mut text = String::from("rxledger epcis page\n");
    for (k, v) in defining {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    let h = rxledger_core::merkle::leaf_hash(text.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h[..8]);
    out
}

/// The token of the page after `(entry, position)`.
pub fn token(after: (i64, i32), defining: &BTreeMap<String, String>) -> String {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&after.0.to_be_bytes());
    bytes.extend_from_slice(&after.1.to_be_bytes());
    bytes.extend_from_slice(&digest(defining));
    hex::encode(bytes)
}

fn read_token(t: &str, defining: &BTreeMap<String, String>) -> Result<(i64, i32), EpcisProblem> {
    let bad = || {
        EpcisProblem::parameter(
            "nextPageToken is not one this server gave for these query parameters",
        )
    };
    let bytes = hex::decode(t).map_err(|_| bad())?;
    if bytes.len() != 20 || bytes[12..] != digest(defining) {
        return Err(bad());
    }
    let entry = i64::from_be_bytes(bytes[..8].try_into().map_err(|_| bad())?);
    let position = i32::from_be_bytes(bytes[8..12].try_into().map_err(|_| bad())?);
    if entry < 0 || position < 0 {
        return Err(bad());
    }
    Ok((entry, position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_become_the_filter() {
        let p = parse(
            &params(&[
                ("EQ_bizStep", "shipping|urn:epcglobal:cbv:bizstep:receiving"),
                ("MATCH_anyEPC", "urn:epc:id:sgtin:0614141.107346.2017"),
                ("GE_eventTime", "2024-01-01T00:00:00 01:00"),
                ("perPage", "100"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(p.filter.any_of.biz_steps, ["shipping", "receiving"]);
        assert_eq!(p.filter.any_of.any_epcs.len(), 1);
        assert_eq!(
            p.filter.any_of.event_from_ms,
            Some(epcis::parse_time("2023-12-31T23:00:00Z").unwrap())
        );
        assert_eq!(p.per_page, 100);
    }

    #[test]
    fn bad_parameters_are_refused() {
        for bad in [
            ("EQ_bizStep", "teleporting"),
            ("perPage", "0"),
            ("perPage", "1001"),
            ("EQ_quantity", "3"),
            ("MATCH_epc", "not-an-epc"),
            ("EQ_eventID", "urn:uuid:1"),
            ("GE_recordTime", "yesterday"),
        ] {
            assert!(parse(&params(&[bad]), &[]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_named_query_reads_as_its_parameters() {
        let q = serde_json::json!({
            "@context": "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            "eventType": ["ObjectEvent"],
            "EQ_bizStep": ["shipping", "receiving"],
            "GE_eventTime": "2024-01-01T00:00:00Z",
        });
        let pairs = from_json(&q).unwrap();
        let p = parse(&pairs, &[]).unwrap();
        assert_eq!(p.filter.any_of.biz_steps, ["shipping", "receiving"]);
        assert_eq!(p.filter.any_of.event_types, ["ObjectEvent"]);
        assert!(p.filter.any_of.event_from_ms.is_some());
        assert!(!p.defining.contains_key("@context"));
        for bad in [
            serde_json::json!([]),
            serde_json::json!({"EQ_bizStep": ["shipping|receiving"]}),
            serde_json::json!({"EQ_bizStep": [1]}),
            serde_json::json!({"EQ_bizStep": {"x": 1}}),
            serde_json::json!({"perPage": "10"}),
            serde_json::json!({"EQ_bizStep": vec!["shipping"; MAX_VALUES + 1]}),
        ] {
            assert!(from_json(&bad).is_err(), "{bad}");
        }
        // What the parser refuses is refused the same way.
        let unknown = from_json(&serde_json::json!({"EQ_quantity": ["3"]})).unwrap();
        assert!(parse(&unknown, &[]).is_err());
    }

    #[test]
    fn tokens_are_tied_to_their_query() {
        let p = parse(&params(&[("EQ_bizStep", "shipping")]), &[]).unwrap();
        let t = token((42, 3), &p.defining);
        let next = parse(
            &params(&[("EQ_bizStep", "shipping"), ("nextPageToken", &t)]),
            &[],
        )
        .unwrap();
        assert_eq!(next.after, Some((42, 3)));
        // Another query, or any edit, is refused.
        assert!(
            parse(
                &params(&[("EQ_bizStep", "receiving"), ("nextPageToken", &t)]),
                &[]
            )
            .is_err()
        );
        let mut edited = t.clone().into_bytes();
        // The digest's half: the cursor's half may be edited (it is harmless), this not.
        edited[30] = if edited[30] == b'0' { b'1' } else { b'0' };
        let edited = String::from_utf8(edited).unwrap();
        assert!(
            parse(
                &params(&[("EQ_bizStep", "shipping"), ("nextPageToken", &edited)]),
                &[]
            )
            .is_err()
        );
        assert!(parse(&params(&[("nextPageToken", "zz")]), &[]).is_err());
    }
}
