//! Content negotiation: one function per direction.
//!
//! - In: a document's bytes and its media type become the events as JSON values, the model
//!   the core parses and hashes ([`read_document`], [`read_event`]).
//! - Out: logged events become a document in the requested media type ([`write`]).
//!
//! JSON-LD (`application/ld+json`, `application/json`) is read and written here. EPCIS XML
//! (`application/xml`, `text/xml`: 1.2 with the GS1 US Healthcare profile, or 2.0) is read and
//! written by the core (`rxledger_core::epcis::xml`) into and from the same JSON events, so
//! everything after this module sees one event model.

use poem::http::{HeaderMap, StatusCode, header};
use rxledger_store::documents::LoggedJson;
use serde_json::Value;

use super::headers::CAPTURE_LIMIT;
use super::problem::{EpcisProblem, Exception};

/// The media types of EPCIS documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    JsonLd,
    Json,
    Xml,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match self {
            Media::JsonLd => "application/ld+json",
            Media::Json => "application/json",
            Media::Xml => "application/xml",
        }
    }

    fn of(essence: &str) -> Option<Media> {
        match essence {
            "application/ld+json" => Some(Media::JsonLd),
            "application/json" => Some(Media::Json),
            "application/xml" | "text/xml" => Some(Media::Xml),
            _ => None,
        }
    }
}

/// The media type of a request body (`Content-Type`; JSON when absent).
pub fn body_media(h: &HeaderMap) -> Result<Media, EpcisProblem> {
    let Some(ct) = h.get(header::CONTENT_TYPE) else {
        return Ok(Media::Json);
    };
    let essence = ct
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Media::of(&essence).ok_or_else(|| {
        EpcisProblem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Exception::UnsupportedMediaType,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type {essence:?}: send application/ld+json or application/json"),
        )
    })
}

/// The media type to answer in (`Accept`, in the client's order of preference; JSON-LD when
/// absent or anything goes).
pub fn answer_media(h: &HeaderMap) -> Result<Media, EpcisProblem> {
    let Some(accept) = h.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Media::JsonLd);
    };
    let mut ranges: Vec<(f32, String)> = accept
        .split(',')
        .map(|r| {
            let mut parts = r.split(';');
            let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (q, essence)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    // Stable: equal weights keep the client's order.
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, essence) in &ranges {
        if let Some(m) = Media::of(essence) {
            return Ok(m);
        }
        if essence == "*/*" || essence == "application/*" || essence == "application/problem+json" {
            return Ok(Media::JsonLd);
        }
    }
    Err(EpcisProblem::new(
        StatusCode::NOT_ACCEPTABLE,
        Exception::NotAcceptable,
        "NOT_ACCEPTABLE",
        format!("Accept {accept:?}: this server answers application/ld+json or application/json"),
    ))
}

/// The events of an EPCIS XML document (1.2, the GS1 US Healthcare profile included, or
/// 2.0), read by the core into the same 2.0 JSON-LD events a JSON capture carries. A
/// document-level refusal (DOCTYPE, size, depth, not EPCIS) and an event that cannot be read
/// both refuse the whole document with the XML reader's code and position: an event that
/// could not even be read has no hash to report per event (docs/EPCIS.md).
fn xml_events(bytes: &[u8]) -> Result<Vec<Value>, EpcisProblem> {
    use rxledger_core::epcis::xml::{XmlLimits, parse_xml_document};
    let limits = XmlLimits {
        max_events: CAPTURE_LIMIT + 1,
        ..XmlLimits::default()
    };
    let doc = parse_xml_document(bytes, &limits)
        .map_err(|e| EpcisProblem::validation(e.code(), format!("EPCIS XML: {e}")))?;
    doc.events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            e.map_err(|e| {
                EpcisProblem::validation(e.code(), format!("EPCIS XML, event {}: {e}", i + 1))
            })
        })
        .collect()
}

/// The events of an `EPCISDocument` (or `EPCISQueryDocument`, as the binding allows), each
/// made self-contained: it carries the document's `@context` when that defines namespaces,
/// so its CBV hash and its extensions read the same once it is logged alone.
pub fn read_document(bytes: &[u8], media: Media) -> Result<Vec<Value>, EpcisProblem> {
    let doc = match media {
        Media::Xml => {
            let events = xml_events(bytes)?;
            if events.is_empty() {
                return Err(invalid("the EPCIS XML document holds no event"));
            }
            if events.len() > CAPTURE_LIMIT {
                return Err(too_many(events.len()));
            }
            return Ok(events);
        }
        Media::Json | Media::JsonLd => json(bytes)?,
    };
    // The core's reader: the partner-signature verifier finds the same events with it.
    let events =
        rxledger_core::epcis::json_document_events(doc).map_err(|e| invalid(e.to_string()))?;
    if events.len() > CAPTURE_LIMIT {
        return Err(too_many(events.len()));
    }
    Ok(events)
}

fn too_many(n: usize) -> EpcisProblem {
    EpcisProblem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        Exception::CaptureLimitExceeded,
        "TOO_MANY_EVENTS",
        format!(
            "the document holds {n} events; at most {CAPTURE_LIMIT} are captured at once (GS1-EPCIS-Capture-Limit): split it"
        ),
    )
}

/// One event (`POST /epcis/events`), possibly with its own `@context`.
pub fn read_event(bytes: &[u8], media: Media) -> Result<Value, EpcisProblem> {
    match media {
        // The binding's single-event XML is a document holding that one event.
        Media::Xml => {
            let mut events = xml_events(bytes)?;
            match events.len() {
                1 => Ok(events.remove(0)),
                n => Err(invalid(format!(
                    "the XML body holds {n} events; POST /epcis/events takes one (send several to /epcis/capture)"
                ))),
            }
        }
        Media::Json | Media::JsonLd => match json(bytes)? {
            v @ Value::Object(_) => Ok(v),
            _ => Err(invalid("the body is not a JSON object (one EPCIS event)")),
        },
    }
}

/// A document of logged events in `media`: its body text. `epcis12`: XML is written as
/// EPCIS 1.2 (the DSCSA's documents), else as EPCIS 2.0; JSON is always EPCIS 2.0.
pub fn write(
    events: &[LoggedJson],
    media: Media,
    kind: Document,
    now_ms: i64,
    epcis12: bool,
) -> Result<String, EpcisProblem> {
    use rxledger_core::epcis::xml::{XmlHeader, to_epcis12_xml, to_epcis20_xml};
    use rxledger_graphql::epcis_doc;
    match media {
        // EPCIS XML, written by the core from the same logged JSON events.
        Media::Xml => {
            let _ = kind;
            let events: Vec<Value> = events.iter().map(|e| e.json.clone()).collect();
            let version = if epcis12 { "1.2" } else { "2.0" };
            let header = XmlHeader {
                schema_version: version.into(),
                creation_date: Some(rxledger_core::epcis::format_time(now_ms)),
                ..Default::default()
            };
            let written = if epcis12 {
                to_epcis12_xml(&events, &header)
            } else {
                to_epcis20_xml(&events, &header)
            };
            written.map_err(|e| {
                EpcisProblem::new(
                    StatusCode::NOT_ACCEPTABLE,
                    Exception::NotAcceptable,
                    "NOT_ACCEPTABLE",
                    format!("these events cannot be written as EPCIS {version} XML ({e}); accept application/ld+json"),
                )
            })
        }
        Media::Json | Media::JsonLd => Ok(match kind {
            Document::Query => epcis_doc::query_document(events, now_ms),
            Document::Capture => epcis_doc::epcis_document(events, now_ms),
        }
        .to_string()),
    }
}

/// Which document [`write`] makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// `EPCISQueryDocument`: a query's answer.
    Query,
    /// `EPCISDocument`: an export, to be captured elsewhere.
    Capture,
}

/// A JSON body, or 400 `MALFORMED_JSON`.
pub fn json(bytes: &[u8]) -> Result<Value, EpcisProblem> {
    // serde_json refuses nesting deeper than 128 before it allocates for it.
    serde_json::from_slice(bytes).map_err(|e| {
        EpcisProblem::validation("MALFORMED_JSON", format!("the body is not valid JSON: {e}"))
    })
}

fn invalid(detail: impl Into<String>) -> EpcisProblem {
    EpcisProblem::validation("INVALID_DOCUMENT", detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::http::HeaderValue;
    use serde_json::json;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn answers_follow_the_clients_preference() {
        assert_eq!(answer_media(&HeaderMap::new()).unwrap(), Media::JsonLd);
        assert_eq!(
            answer_media(&accept("application/json")).unwrap(),
            Media::Json
        );
        assert_eq!(
            answer_media(&accept("application/xml;q=0.5, application/ld+json")).unwrap(),
            Media::JsonLd
        );
        assert_eq!(
            answer_media(&accept("application/xml")).unwrap(),
            Media::Xml
        );
        assert_eq!(answer_media(&accept("*/*")).unwrap(), Media::JsonLd);
        let refused = answer_media(&accept("text/csv")).unwrap_err();
        assert_eq!(refused.status, StatusCode::NOT_ACCEPTABLE);
    }

    #[test]
    fn documents_give_their_events_self_contained() {
        let doc = json!({
            "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                         {"ex": "https://example.org/"}],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": "2026-01-01T00:00:00Z",
            "epcisBody": {"eventList": [{"type": "ObjectEvent"}, {"type": "ObjectEvent", "@context": "x"}]}
        });
        let events = read_document(doc.to_string().as_bytes(), Media::JsonLd).unwrap();
        assert_eq!(events[0]["@context"], doc["@context"]);
        assert_eq!(events[1]["@context"], "x", "an event's own context is kept");
        let plain = json!({
            "@context": "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            "type": "EPCISDocument", "schemaVersion": "2.0", "creationDate": "2026-01-01T00:00:00Z",
            "epcisBody": {"eventList": [{"type": "ObjectEvent"}]}
        });
        let events = read_document(plain.to_string().as_bytes(), Media::Json).unwrap();
        assert!(events[0].get("@context").is_none());
    }

    #[test]
    fn bad_documents_are_named() {
        for (body, code) in [
            ("{", "MALFORMED_JSON"),
            ("[]", "INVALID_DOCUMENT"),
            (
                r#"{"type":"EPCISDocument","@context":"x","schemaVersion":"2.0","creationDate":"x","epcisBody":{}}"#,
                "INVALID_DOCUMENT",
            ),
            (r#"{"type":"Nope"}"#, "INVALID_DOCUMENT"),
        ] {
            let p = read_document(body.as_bytes(), Media::Json).unwrap_err();
            assert_eq!(p.code, code, "{body}");
            assert_eq!(p.exception, Exception::Validation);
        }
        let deep = "[".repeat(10_000);
        assert_eq!(
            read_document(deep.as_bytes(), Media::Json)
                .unwrap_err()
                .code,
            "MALFORMED_JSON"
        );
        // XML goes through the core's reader: a root that is no EPCIS document is named.
        let not_epcis = read_document(b"<x/>", Media::Xml).unwrap_err();
        assert_eq!(not_epcis.status, StatusCode::BAD_REQUEST);
        assert_eq!(not_epcis.exception, Exception::Validation);
    }
}
