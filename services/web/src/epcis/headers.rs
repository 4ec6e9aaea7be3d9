//! The GS1 headers of the EPCIS 2.0 REST binding: what every answer announces, the capture
//! limits, and the version negotiation a request may ask for.
//!
//! rxledger speaks EPCIS 2.0.0 with CBV 2.0.0, answers EPCs as they were captured
//! (`GS1-EPC-Format: Never_Translates`) and supports no extensions. EPCIS 1.2 travels as XML
//! only: a request that sends or accepts XML may ask for 1.2 (`GS1-EPCIS-Version: 1.2`, or a
//! `GS1-EPCIS-Max` below 2.0), and is then answered in EPCIS 1.2 XML ([`epcis12_answer`]). A
//! request whose `GS1-EPCIS-Version`, `GS1-EPCIS-Min`/`-Max` or `GS1-CBV-Min`/`-Max` exclude
//! what it can have, or that requires extensions (`GS1-Extensions`), is refused with 406
//! `NotAcceptableException`.

use poem::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::problem::{EpcisProblem, Exception};

pub const EPCIS_VERSION: &str = "2.0.0";
/// The version a DSCSA partner's XML is in (GS1 US Healthcare R1.3).
pub const EPCIS_12: &str = "1.2.0";
pub const CBV_VERSION: &str = "2.0.0";
/// Most events one capture document may hold (`GS1-EPCIS-Capture-Limit`).
pub const CAPTURE_LIMIT: usize = 10_000;
/// Largest capture body (`GS1-EPCIS-Capture-File-Size-Limit`): ample for 10,000 events of
/// the size trading partners send (a few hundred bytes to 2 KiB each).
pub const CAPTURE_FILE_SIZE_LIMIT: usize = 32 << 20;
/// Largest single event (`POST /epcis/events`).
pub const EVENT_SIZE_LIMIT: usize = 256 << 10;

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// The headers every EPCIS answer carries.
pub fn standard(h: &mut HeaderMap) {
    set(h, "gs1-epcis-version", EPCIS_VERSION);
    set(h, "gs1-epcis-min", EPCIS_VERSION);
    set(h, "gs1-epcis-max", EPCIS_VERSION);
    set(h, "gs1-cbv-version", CBV_VERSION);
    set(h, "gs1-cbv-min", CBV_VERSION);
    set(h, "gs1-cbv-max", CBV_VERSION);
    set(h, "gs1-extensions", "");
    set(h, "gs1-epc-format", "Never_Translates");
    set(
        h,
        "gs1-vendor-version",
        concat!("rxledger-", env!("CARGO_PKG_VERSION")),
    );
}

/// What `/epcis/capture` announces: its limits and default error behaviour.
pub fn capture_limits(h: &mut HeaderMap) {
    set(h, "gs1-epcis-capture-limit", &CAPTURE_LIMIT.to_string());
    set(
        h,
        "gs1-epcis-capture-file-size-limit",
        &CAPTURE_FILE_SIZE_LIMIT.to_string(),
    );
    set(h, "gs1-capture-error-behaviour", "rollback");
}

/// Whether a request asks for its answer in EPCIS 1.2 (`GS1-EPCIS-Version` 1.2, or a
/// `GS1-EPCIS-Max` below 2.0). [`negotiate`] has refused it unless the request speaks XML.
pub fn epcis12_answer(h: &HeaderMap) -> bool {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let v12 = version(EPCIS_12).unwrap_or_default();
    let v20 = version(EPCIS_VERSION).unwrap_or_default();
    get("gs1-epcis-version").and_then(|v| version(v).ok()) == Some(v12)
        || get("gs1-epcis-max")
            .and_then(|v| version(v).ok())
            .is_some_and(|max| max < v20)
}

/// Checks what the request says it can take: versions and extensions. `xml`: the request
/// sends or accepts EPCIS XML, so EPCIS 1.2 is on offer too.
pub fn negotiate(h: &HeaderMap, xml: bool) -> Result<(), EpcisProblem> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let refuse = |what: String| {
        Err(EpcisProblem::new(
            StatusCode::NOT_ACCEPTABLE,
            Exception::NotAcceptable,
            "VERSION_NOT_SUPPORTED",
            what,
        ))
    };
    if let Some(v) = get("gs1-epcis-version")
        && version(v)? != version(EPCIS_VERSION)?
        && !(xml && version(v)? == version(EPCIS_12)?)
    {
        return refuse(format!(
            "GS1-EPCIS-Version {v}: this server speaks EPCIS {EPCIS_VERSION} (JSON-LD); EPCIS 1.2 travels as XML"
        ));
    }
    for (min, max, ours, what) in [
        ("gs1-epcis-min", "gs1-epcis-max", EPCIS_VERSION, "EPCIS"),
        ("gs1-cbv-min", "gs1-cbv-max", CBV_VERSION, "CBV"),
    ] {
        let ours_v = version(ours)?;
        if let Some(lo) = get(min)
            && version(lo)? > ours_v
        {
            return refuse(format!(
                "{what} {lo} or later is asked for; this server speaks {ours}"
            ));
        }
        let lowest = if xml && what == "EPCIS" {
            version(EPCIS_12)?
        } else {
            ours_v.clone()
        };
        if let Some(hi) = get(max)
            && version(hi)? < lowest
        {
            return refuse(format!(
                "{what} {hi} or earlier is asked for; this server speaks {ours}"
            ));
        }
    }
    if let Some(ext) = get("gs1-extensions")
        && !ext.is_empty()
    {
        return refuse(format!(
            "GS1-Extensions {ext:?}: this server supports no EPCIS or CBV extensions"
        ));
    }
    Ok(())
}

/// `2.0.0` as comparable numbers (`2` and `2.0` are the same version).
fn version(v: &str) -> Result<Vec<u32>, EpcisProblem> {
    let mut parts = v
        .split('.')
        .map(|p| p.parse::<u32>())
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|_| {
            EpcisProblem::validation(
                "BAD_VERSION",
                format!("{v:?} is not a version (digits and dots, e.g. 2.0.0)"),
            )
        })?;
    while parts.len() > 1 && parts.last() == Some(&0) {
        parts.pop();
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn versions_are_negotiated() {
        assert!(negotiate(&HeaderMap::new(), false).is_ok());
        assert!(negotiate(&with(&[("gs1-epcis-version", "2.0")]), false).is_ok());
        assert!(
            negotiate(
                &with(&[("gs1-epcis-min", "1.2.0"), ("gs1-epcis-max", "2.0.0")]),
                false
            )
            .is_ok()
        );
        let refused = negotiate(&with(&[("gs1-epcis-version", "1.2.0")]), false).unwrap_err();
        assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
        assert!(negotiate(&with(&[("gs1-epcis-max", "1.2")]), false).is_err());
        assert!(negotiate(&with(&[("gs1-cbv-min", "2.1")]), false).is_err());
        assert!(negotiate(&with(&[("gs1-extensions", "x=http://x.example/")]), false).is_err());
        let bad = negotiate(&with(&[("gs1-epcis-version", "two")]), false).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn epcis_12_is_on_offer_in_xml_only() {
        for h in [
            with(&[("gs1-epcis-version", "1.2")]),
            with(&[("gs1-epcis-version", "1.2.0")]),
            with(&[("gs1-epcis-max", "1.2")]),
        ] {
            assert!(negotiate(&h, true).is_ok());
            assert!(negotiate(&h, false).is_err());
            assert!(epcis12_answer(&h));
        }
        for h in [
            HeaderMap::new(),
            with(&[("gs1-epcis-version", "2.0.0")]),
            with(&[("gs1-epcis-min", "1.2"), ("gs1-epcis-max", "2.0")]),
        ] {
            assert!(!epcis12_answer(&h));
        }
        assert!(negotiate(&with(&[("gs1-epcis-version", "1.1")]), true).is_err());
        assert!(negotiate(&with(&[("gs1-epcis-max", "1.1")]), true).is_err());
    }
}
