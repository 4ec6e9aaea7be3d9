//! What the ledger indexes about an event, decided without I/O.
//!
//! Device envelopes and API state changes both pass through [`index_event`]: it parses and
//! validates an EPCIS event, computes its CBV 2.0 hash and lists the rows the store keeps for
//! it (the identifiers it names, the serials it commissions). The store only writes those rows
//! and reads them back; the keys are spelled here, once, so a query and the rows it looks for
//! cannot disagree.

use crate::epcis::{self, EpcisError, Event};
use crate::gs1::{EpcId, Gtin, Sgtin};
use crate::pack;

/// One event's index rows: what the store records beside the entry that carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexedEvent {
    /// SHA-256 digest of the CBV 2.0 pre-hash string ([`epcis::id_of_hash`] renders it).
    pub hash: [u8; 32],
    pub event_time_ms: i64,
    pub event_type: String,
    pub action: Option<String>,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    pub read_point: Option<String>,
    pub biz_location: Option<String>,
    /// Keys of every identifier the event names ([`epc_key`]), with their role: 0 epcList,
    /// 1 parentID, 2 childEPCs, 3 quantity class.
    pub ids: Vec<(String, i16)>,
    /// Serials this event commissions.
    pub commissions: Vec<Commission>,
}

/// A serial being commissioned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commission {
    /// [`sgtin_key`] of the serial.
    pub sgtin: String,
    pub gtin: String,
    /// The commissioning organization.
    pub org: String,
    pub lot: Option<String>,
    /// ISO date of the last valid day.
    pub expiry: Option<String>,
}

/// Validates one EPCIS event (parse, time sanity, CBV hash) and builds its index rows, for an
/// event submitted by `org` at `now_ms`. Returns the rows and the parsed event.
pub fn index_event(
    json: &serde_json::Value,
    org: &str,
    now_ms: i64,
    max_skew_ms: i64,
) -> Result<(IndexedEvent, Event), EpcisError> {
    let ev = epcis::parse_event(json)?;
    ev.validate_time(now_ms, max_skew_ms)?;
    Ok((rows_of(json, &ev, org)?, ev))
}

/// The index rows of an event already in the log, rebuilt from its bytes: exactly what
/// [`index_event`] gave when it was appended. The time check is not repeated, because "now"
/// was the moment of the append; the auditor compares these rows with the stored ones.
pub fn reindex_event(json: &serde_json::Value, org: &str) -> Result<IndexedEvent, EpcisError> {
    let ev = epcis::parse_event(json)?;
    rows_of(json, &ev, org)
}

/// The organization an entry's events are attributed to: `org:<id>` signers are the API
/// acting for `<id>`; a device's organization comes from the registry (`device_org`).
pub fn org_of_signer(
    signer: &str,
    device_org: impl FnOnce(&str) -> Option<String>,
) -> Option<String> {
    match signer.strip_prefix("org:") {
        Some(org) => Some(org.to_string()),
        None => device_org(signer),
    }
}

fn rows_of(json: &serde_json::Value, ev: &Event, org: &str) -> Result<IndexedEvent, EpcisError> {
    Ok(IndexedEvent {
        hash: epcis::event_hash(json)?,
        event_time_ms: ev.event_time_ms,
        event_type: ev.kind.as_str().to_string(),
        action: Some(ev.action.as_str().to_string()),
        biz_step: ev.biz_step.map(|b| b.as_str().to_string()),
        disposition: ev.disposition.map(|d| d.as_str().to_string()),
        read_point: ev.read_point.as_ref().map(|l| l.key()),
        biz_location: ev.biz_location.as_ref().map(|l| l.key()),
        ids: index_keys(ev),
        commissions: pack::commissioned_sgtins(ev)
            .iter()
            .map(|s| Commission {
                sgtin: sgtin_key(s),
                gtin: s.gtin.to_string(),
                org: org.to_string(),
                lot: ev.lot.as_ref().map(|l| l.as_str().to_string()),
                // `CalendarDate` displays as the ISO date.
                expiry: ev.item_expiration.map(|d| d.to_string()),
            })
            .collect(),
    })
}

/// The index key of an identifier.
pub fn epc_key(id: &EpcId) -> String {
    match id {
        EpcId::Sgtin(s) => sgtin_key(s),
        EpcId::Sscc(s) => format!("sscc:{s}"),
        EpcId::Sgln(s) => format!("sgln:{}.{}", s.gln, s.extension.as_deref().unwrap_or("0")),
        EpcId::Lgtin { gtin, lot } => format!("lgtin:{gtin}.{}", lot.as_str()),
        EpcId::GtinClass(g) => format!("gtin:{g}"),
    }
}

/// The index key of a serialised pack.
pub fn sgtin_key(s: &Sgtin) -> String {
    format!("sgtin:{}.{}", s.gtin, s.serial.as_str())
}

/// Index rows for one parsed event: (key, role) with role 0 = epcList, 1 = parent,
/// 2 = child, 3 = class.
pub fn index_keys(e: &Event) -> Vec<(String, i16)> {
    let mut out: Vec<(String, i16)> = Vec::new();
    out.extend(e.epcs.iter().map(|id| (epc_key(id), 0)));
    out.extend(e.parent.iter().map(|id| (epc_key(id), 1)));
    out.extend(e.children.iter().map(|id| (epc_key(id), 2)));
    out.extend(e.quantities.iter().map(|q| (epc_key(&q.class), 3)));
    out
}

/// The brand owner of a GTIN among registered (prefix, owner) pairs (longest match).
pub fn owner_of(prefixes: &[(String, String)], gtin: &Gtin) -> Option<String> {
    owning_prefix(prefixes, gtin).map(|(_, o)| o.to_string())
}

/// The registered (prefix, owner) that a GTIN falls under: the longest prefix matching the
/// GTIN without its indicator digit.
pub fn owning_prefix<'a>(
    prefixes: &'a [(String, String)],
    gtin: &Gtin,
) -> Option<(&'a str, &'a str)> {
    let body = gtin.as_str().get(1..).unwrap_or("");
    prefixes
        .iter()
        .filter(|(p, _)| body.starts_with(p.as_str()))
        .max_by_key(|(p, _)| p.len())
        .map(|(p, o)| (p.as_str(), o.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn commissioning() -> serde_json::Value {
        json!({
            "type": "ObjectEvent",
            "eventTime": "2024-05-01T10:00:00.000Z",
            "eventTimeZoneOffset": "+00:00",
            "epcList": ["urn:epc:id:sgtin:0614141.107346.1001"],
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active"
        })
    }

    #[test]
    fn an_event_is_indexed_by_its_hash_and_identifiers() {
        let json = commissioning();
        let now = epcis::parse_time("2024-05-01T10:00:01Z").unwrap();
        let (row, ev) = index_event(&json, "acme", now, 60_000).unwrap();
        assert_eq!(
            epcis::id_of_hash(&row.hash),
            epcis::event_hash_id(&json).unwrap()
        );
        assert_eq!(row.ids, vec![("sgtin:10614141073464.1001".to_string(), 0)]);
        assert_eq!(row.commissions.len(), 1);
        assert_eq!(row.commissions[0].sgtin, "sgtin:10614141073464.1001");
        assert_eq!(row.commissions[0].org, "acme");
        assert_eq!(ev.event_time_ms, row.event_time_ms);
    }

    #[test]
    fn a_logged_event_reindexes_to_the_rows_it_was_appended_with() {
        let json = commissioning();
        let now = epcis::parse_time("2024-05-01T10:00:01Z").unwrap();
        let (row, _) = index_event(&json, "acme", now, 60_000).unwrap();
        // Years later the time check would refuse nothing either way: it is not repeated.
        assert_eq!(reindex_event(&json, "acme").unwrap(), row);
        assert_eq!(org_of_signer("org:acme", |_| None).as_deref(), Some("acme"));
        assert_eq!(
            org_of_signer("line-1", |d| Some(format!("owner-of-{d}"))).as_deref(),
            Some("owner-of-line-1")
        );
    }

    #[test]
    fn the_longest_registered_prefix_owns_a_gtin() {
        let prefixes = vec![
            ("0614".to_string(), "short".to_string()),
            ("0614141".to_string(), "acme".to_string()),
        ];
        let gtin = Gtin::parse("10614141073464").unwrap();
        assert_eq!(owner_of(&prefixes, &gtin).as_deref(), Some("acme"));
        let other = Gtin::parse("10999999073461").unwrap();
        assert_eq!(owner_of(&prefixes, &other), None);
    }
}
