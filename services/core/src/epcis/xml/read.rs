//! The document around the events: limits, the root, the SBDH header, master data and the
//! event list. Each event is handed to [`super::event`].

use roxmltree::{Document, Node, ParsingOptions};
use serde_json::{Map, Value, json};

use super::event::{self, Prefixes, pos};
use super::{
    DocumentIdentification, SbdhParty, XmlDocument, XmlError, XmlHeader, XmlLimits, XmlVersion,
};

pub(super) const NS_12: &str = "urn:epcglobal:epcis:xsd:1";
pub(super) const NS_20: &str = "urn:epcglobal:epcis:xsd:2";
const NS_QUERY_12: &str = "urn:epcglobal:epcis-query:xsd:1";
const NS_QUERY_20: &str = "urn:epcglobal:epcis-query:xsd:2";
pub(super) const SBDH: &str =
    "http://www.unece.org/cefact/namespaces/StandardBusinessDocumentHeader";

pub(super) fn document(bytes: &[u8], limits: &XmlLimits) -> Result<XmlDocument, XmlError> {
    if bytes.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| XmlError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // No DTD means no entity declarations; no resolver means no external entity is fetched.
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        entity_resolver: None,
    };
    let doc =
        Document::parse_with_options(text, options).map_err(|e| parse_error(text, e, limits))?;
    check_depth(&doc, limits.max_depth)?;

    let root = doc.root_element();
    let (version, query) = match (root.tag_name().namespace(), root.tag_name().name()) {
        (Some(NS_12), "EPCISDocument") => (XmlVersion::Epcis12, false),
        (Some(NS_20), "EPCISDocument") => (XmlVersion::Epcis20, false),
        (Some(NS_QUERY_12), "EPCISQueryDocument") => (XmlVersion::Epcis12, true),
        (Some(NS_QUERY_20), "EPCISQueryDocument") => (XmlVersion::Epcis20, true),
        (ns, name) => {
            let (line, column) = pos(root);
            return Err(XmlError::NotEpcis {
                found: match ns {
                    Some(ns) => format!("{{{ns}}}{name}"),
                    None => name.to_owned(),
                },
                line,
                column,
            });
        }
    };
    let header = header(root);
    let nodes = event_nodes(root, query, limits.max_events)?;
    let events = nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| event::convert(node, i))
        .collect();
    Ok(XmlDocument {
        version,
        header,
        events,
    })
}

fn parse_error(text: &str, e: roxmltree::Error, limits: &XmlLimits) -> XmlError {
    let p = e.pos();
    match e {
        roxmltree::Error::DtdDetected => {
            // roxmltree stops at the DOCTYPE without a position; point at it.
            let at = text.find("<!DOCTYPE").unwrap_or(0);
            let before = &text[..at];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            XmlError::Doctype {
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            }
        }
        roxmltree::Error::NodesLimitReached => XmlError::TooManyNodes {
            max: limits.max_nodes,
        },
        roxmltree::Error::UnknownEntityReference(name, p) => XmlError::UnknownEntity {
            name,
            line: p.row,
            column: p.col,
        },
        other => XmlError::Malformed {
            reason: other.to_string(),
            line: p.row,
            column: p.col,
        },
    }
}

/// Refuses documents nested deeper than `max`, walking the tree without recursion: nodes come
/// in document order, so a node's parent has its depth already.
fn check_depth(doc: &Document, max: usize) -> Result<(), XmlError> {
    let mut depth = vec![0u16; doc.descendants().len()];
    for n in doc.descendants().filter(|n| n.is_element()) {
        let d = n
            .parent()
            .map_or(0, |p| depth[p.id().get_usize()])
            .saturating_add(1);
        if usize::from(d) > max {
            let (line, column) = pos(n);
            return Err(XmlError::TooDeep { max, line, column });
        }
        depth[n.id().get_usize()] = d;
    }
    Ok(())
}

/// Child elements in no namespace named `name`.
pub(super) fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().namespace().is_none() && c.tag_name().name() == name
    })
}

fn child_ns<'a, 'i>(node: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == name
    })
}

/// The event elements in document order, 1.2 `extension` wrappers unwrapped; anything else
/// in the list is handed on too, to become that position's error.
fn event_nodes<'a, 'i>(
    root: Node<'a, 'i>,
    query: bool,
    max: usize,
) -> Result<Vec<Node<'a, 'i>>, XmlError> {
    let Some(body) = child(root, "EPCISBody") else {
        let (line, column) = pos(root);
        return Err(XmlError::MissingElement {
            path: "EPCISBody".into(),
            line,
            column,
        });
    };
    let list = if query {
        body.children()
            .find(|c| c.is_element() && c.tag_name().name() == "QueryResults")
            .and_then(|r| child(r, "resultsBody"))
            .and_then(|r| child(r, "EventList"))
    } else {
        child(body, "EventList")
    };
    let mut out = Vec::new();
    let Some(list) = list else { return Ok(out) };
    let mut stack = vec![list.children()];
    // At most two levels of 1.2 wrappers: EventList/extension/extension/AssociationEvent.
    while let Some(iter) = stack.last_mut() {
        let Some(n) = iter.next() else {
            stack.pop();
            continue;
        };
        if !n.is_element() {
            continue;
        }
        if n.tag_name().namespace().is_none()
            && n.tag_name().name() == "extension"
            && stack.len() < 3
        {
            stack.push(n.children());
            continue;
        }
        if out.len() == max {
            return Err(XmlError::TooManyEvents { max });
        }
        out.push(n);
    }
    Ok(out)
}

/// Whether `node` is one of the event elements.
pub(super) fn is_event(node: Node) -> bool {
    node.tag_name().namespace().is_none()
        && crate::epcis::EVENT_TYPES.contains(&node.tag_name().name())
}

fn header(root: Node) -> XmlHeader {
    let mut h = XmlHeader {
        schema_version: root.attribute("schemaVersion").unwrap_or("").to_owned(),
        creation_date: root.attribute("creationDate").map(str::to_owned),
        ..XmlHeader::default()
    };
    let Some(eh) = child(root, "EPCISHeader") else {
        return h;
    };
    if let Some(sbdh) = child_ns(eh, SBDH, "StandardBusinessDocumentHeader") {
        let party = |name: &str| {
            child_ns(sbdh, SBDH, name).map(|p| {
                let id = child_ns(p, SBDH, "Identifier");
                SbdhParty {
                    identifier: id.map(event::text).unwrap_or_default(),
                    authority: id.and_then(|i| i.attribute("Authority")).map(str::to_owned),
                }
            })
        };
        h.sender = party("Sender");
        h.receiver = party("Receiver");
        h.document = child_ns(sbdh, SBDH, "DocumentIdentification").map(|d| {
            let field = |name: &str| child_ns(d, SBDH, name).map(event::text);
            DocumentIdentification {
                standard: field("Standard"),
                type_version: field("TypeVersion"),
                instance_identifier: field("InstanceIdentifier"),
                doc_type: field("Type"),
                creation_date_and_time: field("CreationDateAndTime"),
            }
        });
    }
    let md = child(eh, "EPCISMasterData")
        .or_else(|| child(eh, "extension").and_then(|x| child(x, "EPCISMasterData")));
    h.master_data = md.map(master_data);
    h
}

/// `EPCISMasterData` in the 2.0 JSON-LD form.
fn master_data(md: Node) -> Value {
    let mut prefixes = Prefixes::default();
    let mut vocabularies = Vec::new();
    for v in child(md, "VocabularyList")
        .into_iter()
        .flat_map(|l| l.children())
        .filter(|c| c.is_element() && c.tag_name().name() == "Vocabulary")
    {
        let mut elements = Vec::new();
        for e in child(v, "VocabularyElementList")
            .into_iter()
            .flat_map(|l| l.children())
            .filter(|c| c.is_element() && c.tag_name().name() == "VocabularyElement")
        {
            let mut el = Map::new();
            el.insert("id".into(), json!(e.attribute("id").unwrap_or("")));
            let attributes: Vec<Value> = e
                .children()
                .filter(|c| c.is_element() && c.tag_name().name() == "attribute")
                .map(|a| {
                    json!({
                        "id": a.attribute("id").unwrap_or(""),
                        "attribute": event::generic(a, &mut prefixes, false),
                    })
                })
                .collect();
            if !attributes.is_empty() {
                el.insert("attributes".into(), Value::Array(attributes));
            }
            if let Some(children) = child(e, "children") {
                let ids: Vec<Value> = children
                    .children()
                    .filter(|c| c.is_element())
                    .map(|c| json!(event::text(c)))
                    .collect();
                el.insert("children".into(), Value::Array(ids));
            }
            elements.push(Value::Object(el));
        }
        vocabularies.push(json!({
            "type": v.attribute("type").unwrap_or(""),
            "vocabularyElementList": elements,
        }));
    }
    let mut body = Map::new();
    body.insert("vocabularyList".into(), Value::Array(vocabularies));
    let mut out = Map::new();
    if let Some(ctx) = prefixes.finish(&mut body) {
        out.insert("@context".into(), ctx);
    }
    out.extend(body);
    Value::Object(out)
}
