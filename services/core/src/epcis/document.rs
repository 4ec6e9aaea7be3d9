//! The events of an EPCIS 2.0 JSON-LD document, as a capture logs them.
//!
//! One reader for the REST capture (which logs what it returns) and for the partner-signature
//! verifier ([`super::attestation`], which must find the same events again in the signed bytes
//! and so hash them exactly as the capture did). XML documents are read by [`super::xml`].

use serde_json::Value;

/// Why a JSON value is not an EPCIS document a capture takes; the message is for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

fn invalid(detail: impl Into<String>) -> DocumentError {
    DocumentError(detail.into())
}

/// The events of an `EPCISDocument` (or `EPCISQueryDocument`, as the REST binding allows),
/// in document order, each made self-contained: it carries the document's `@context` when
/// that defines namespaces and the event has none of its own, so its CBV hash and its
/// extensions read the same once it is logged alone.
///
/// Checked: `type`, `epcisBody.eventList` (a non-empty array), `@context`, and for an
/// `EPCISDocument` `schemaVersion` and `creationDate` (strings). The events themselves are
/// not checked here; the capture checks each one.
pub fn json_document_events(doc: Value) -> Result<Vec<Value>, DocumentError> {
    let Value::Object(mut doc) = doc else {
        return Err(invalid("the document is not a JSON object"));
    };
    let kind = doc
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let list = match kind.as_str() {
        "EPCISDocument" => doc
            .get_mut("epcisBody")
            .and_then(|b| b.get_mut("eventList")),
        "EPCISQueryDocument" => doc
            .get_mut("epcisBody")
            .and_then(|b| b.pointer_mut("/queryResults/resultsBody/eventList")),
        other => {
            return Err(invalid(format!(
                "type {other:?}: a capture takes an EPCISDocument or an EPCISQueryDocument"
            )));
        }
    };
    let events = match list.map(Value::take) {
        Some(Value::Array(events)) => events,
        Some(_) => return Err(invalid("epcisBody.eventList is not an array")),
        None => return Err(invalid("epcisBody.eventList is missing")),
    };
    if !doc.contains_key("@context") {
        return Err(invalid("@context is missing (EPCIS 2.0 JSON-LD)"));
    }
    if kind == "EPCISDocument" {
        for field in ["schemaVersion", "creationDate"] {
            if !doc.get(field).is_some_and(Value::is_string) {
                return Err(invalid(format!("{field} is missing or not a string")));
            }
        }
    }
    if events.is_empty() {
        return Err(invalid("epcisBody.eventList holds no event"));
    }
    let context = doc.get("@context").filter(|c| defines_namespaces(c));
    Ok(events
        .into_iter()
        .map(|mut e| {
            if let (Some(ctx), Value::Object(o)) = (context, &mut e)
                && !o.contains_key("@context")
            {
                o.insert("@context".into(), ctx.clone());
            }
            e
        })
        .collect())
}

/// Whether a JSON-LD `@context` defines prefixes (an object somewhere in it), rather than
/// only naming the standard context.
fn defines_namespaces(c: &Value) -> bool {
    match c {
        Value::Object(o) => !o.is_empty(),
        Value::Array(items) => items.iter().any(defines_namespaces),
        _ => false,
    }
}
