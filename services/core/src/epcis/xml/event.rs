//! One XML event element → one EPCIS 2.0 JSON-LD event object.
//!
//! The wrappers of 1.2 (`extension`, `baseExtension`) are unwrapped wherever they appear, so a
//! 1.2 and a 2.0 spelling of an event give the same object. Standard fields (no namespace) are
//! typed by name and anything unknown there is refused; elements in a namespace are user
//! extensions and are kept whole, with their namespace in the event's `@context`.

use std::collections::BTreeMap;

use roxmltree::Node;
use serde_json::{Map, Number, Value};

use super::XmlError;
use super::read::is_event;
use super::vocab::Vocab;

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// (line, column) of a node, 1-based.
pub(super) fn pos(node: Node) -> (u32, u32) {
    let p = node.document().text_pos_at(node.range().start);
    (p.row, p.col)
}

/// The element's own text (CDATA included), trimmed.
pub(super) fn text(node: Node) -> String {
    let mut out = String::new();
    for c in node.children().filter(Node::is_text) {
        out.push_str(c.text().unwrap_or(""));
    }
    let t = out.trim();
    if t.len() == out.len() {
        out
    } else {
        t.to_owned()
    }
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(Node::is_element)
}

fn is_wrapper(node: Node) -> bool {
    node.tag_name().namespace().is_none()
        && matches!(node.tag_name().name(), "extension" | "baseExtension")
}

/// Children with the 1.2 `extension` / `baseExtension` wrappers unwrapped (at any depth),
/// each with whether it was inside one.
fn wrapped_fields<'a, 'i>(node: Node<'a, 'i>) -> Vec<(Node<'a, 'i>, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![node.children()];
    while let Some(iter) = stack.last_mut() {
        match iter.next() {
            None => {
                stack.pop();
            }
            Some(c) if !c.is_element() => {}
            Some(c) if is_wrapper(c) => stack.push(c.children()),
            Some(c) => out.push((c, stack.len() > 1)),
        }
    }
    out
}

fn fields<'a, 'i>(node: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    wrapped_fields(node).into_iter().map(|(n, _)| n).collect()
}

/// Namespace prefixes for the JSON keys of one event (or of the master data).
///
/// While an event is built its extension keys are written `{namespace}local`; [`Self::finish`]
/// then gives each namespace a prefix and rewrites the keys. Prefixes are assigned over the
/// namespaces in sorted order, each taking the prefix the document used for it when that is
/// free, so the choice depends only on which namespaces (and document prefixes) the event
/// uses, not on the order of its fields: an event exported and read again gets its prefixes
/// back.
#[derive(Debug, Default)]
pub(super) struct Prefixes {
    /// namespace → the prefix the document first used for it.
    seen: BTreeMap<String, String>,
}

/// Prefixes whose meaning the event hash fixes without a context (hash.rs
/// `DEFAULT_NAMESPACES`); `gs1` cannot even be redefined there.
const FIXED: &[(&str, &str)] = &[
    ("gs1", "https://ref.gs1.org/voc/"),
    ("cbv", "https://ref.gs1.org/cbv/"),
    ("epcis", "https://ref.gs1.org/epcis/"),
    ("cbvmda", "urn:epcglobal:cbv:mda"),
];

impl Prefixes {
    /// The provisional key `{ns}local` (or `local` without a namespace).
    fn key(&mut self, ns: Option<&str>, local: &str, node: Node) -> String {
        match ns {
            None => local.to_owned(),
            Some(ns) => {
                if !self.seen.contains_key(ns) {
                    let suggested = node.lookup_prefix(ns).unwrap_or("").to_owned();
                    self.seen.insert(ns.to_owned(), suggested);
                }
                format!("{{{ns}}}{local}")
            }
        }
    }

    fn assign(&self) -> BTreeMap<&str, String> {
        let mut taken: Vec<String> = Vec::new();
        let mut out = BTreeMap::new();
        for (ns, suggested) in &self.seen {
            let wanted = match ns.as_str() {
                // The US Healthcare (1.2) and the 2.0 spelling of the CBV master data namespace:
                // the core reads ILMD as `cbvmda:…` whatever prefix the document used.
                "urn:epcglobal:cbv:mda" | "urn:epcglobal:cbv:mda:" => "cbvmda",
                XSI => "xsi",
                _ if is_ncname(suggested) => suggested.as_str(),
                _ => "ext",
            };
            // A context cannot redefine `gs1` for the hash, and `gs1:`/`cbv:` values are
            // expanded by fixed rules: neither prefix may name another namespace.
            let free = |p: &str| {
                !taken.iter().any(|t| t == p)
                    && (p != "gs1" || ns == FIXED[0].1)
                    && (p != "cbv" || ns == FIXED[1].1)
            };
            let mut p = wanted.to_owned();
            let mut n = 2;
            while !free(&p) {
                p = format!("{wanted}{n}");
                n += 1;
            }
            taken.push(p.clone());
            out.insert(ns.as_str(), p);
        }
        out
    }

    /// Rewrites the provisional keys of `v` and returns the `@context` it needs:
    /// `[{prefix: namespace, …}]` for the prefixes the hash would not already expand the same
    /// way, `None` when there are none.
    pub(super) fn finish(&self, m: &mut Map<String, Value>) -> Option<Value> {
        if self.seen.is_empty() {
            return None;
        }
        let assigned = self.assign();
        rewrite_map(m, &assigned);
        let mut m = Map::new();
        for (ns, p) in &assigned {
            if !FIXED.iter().any(|(fp, fns)| fp == p && fns == ns) {
                m.insert(p.clone(), Value::String((*ns).to_owned()));
            }
        }
        (!m.is_empty()).then(|| Value::Array(vec![Value::Object(m)]))
    }
}

fn rewrite_map(m: &mut Map<String, Value>, assigned: &BTreeMap<&str, String>) {
    if m.keys().any(|k| k.starts_with('{')) {
        for (k, mut val) in std::mem::take(m) {
            rewrite(&mut val, assigned);
            let key = match k.strip_prefix('{').and_then(|r| r.split_once('}')) {
                Some((ns, local)) => match assigned.get(ns) {
                    Some(p) => format!("{p}:{local}"),
                    None => k,
                },
                None => k,
            };
            m.insert(key, val);
        }
    } else {
        m.values_mut().for_each(|x| rewrite(x, assigned));
    }
}

fn rewrite(v: &mut Value, assigned: &BTreeMap<&str, String>) {
    match v {
        Value::Object(m) => rewrite_map(m, assigned),
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite(x, assigned)),
        _ => {}
    }
}

/// An XML NCName (XML 1.0 fifth edition `Name` without `:`).
pub(super) fn is_ncname(s: &str) -> bool {
    let start = |c: char| {
        matches!(c, 'A'..='Z' | 'a'..='z' | '_' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
            | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
            | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
            | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
            | '\u{10000}'..='\u{EFFFF}')
    };
    let rest = |c: char| {
        start(c)
            || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
    };
    let mut chars = s.chars();
    chars.next().is_some_and(start) && chars.all(rest)
}

/// A user extension element as JSON: its text when it has neither attributes nor children,
/// else an object of its attributes and children (`#text` for text beside them).
pub(super) fn generic(node: Node, prefixes: &mut Prefixes, with_attributes: bool) -> Value {
    let attrs: Vec<_> = if with_attributes {
        node.attributes().collect()
    } else {
        Vec::new()
    };
    let kids: Vec<Node> = elements(node).collect();
    let t = text(node);
    if attrs.is_empty() && kids.is_empty() {
        return Value::String(t);
    }
    let mut m = Map::new();
    for a in attrs {
        let k = prefixes.key(a.namespace(), a.name(), node);
        push(&mut m, k, Value::String(a.value().trim().to_owned()));
    }
    for k in kids {
        let key = prefixes.key(k.tag_name().namespace(), k.tag_name().name(), k);
        let v = generic(k, prefixes, true);
        push(&mut m, key, v);
    }
    if !t.is_empty() {
        m.insert("#text".into(), Value::String(t));
    }
    Value::Object(m)
}

/// Inserts, turning a repeated key into an array (values from XML are never arrays
/// themselves, so an array found under a key is such a repeat list).
fn push(m: &mut Map<String, Value>, key: String, v: Value) {
    match m.get_mut(&key) {
        None => {
            m.insert(key, v);
        }
        Some(Value::Array(a)) => a.push(v),
        Some(old) => {
            let first = old.take();
            *old = Value::Array(vec![first, v]);
        }
    }
}

/// Builds one event; `index` is its position in the document.
pub(super) fn convert(node: Node, index: usize) -> Result<Value, XmlError> {
    let name = node.tag_name().name();
    let path = format!("EventList/{name}[{index}]");
    if !is_event(node) {
        let (line, column) = pos(node);
        if node.tag_name().namespace().is_none() && name == "QuantityEvent" {
            return Err(XmlError::UnsupportedEvent {
                event_type: name.to_owned(),
                line,
                column,
            });
        }
        return Err(XmlError::UnexpectedElement {
            path: "EventList".into(),
            name: qualified(node),
            line,
            column,
        });
    }
    let kind = crate::epcis::EVENT_TYPES
        .iter()
        .copied()
        .find(|k| *k == name)
        .unwrap_or("ObjectEvent");
    let mut b = Builder {
        kind,
        out: Map::new(),
        prefixes: Prefixes::default(),
        path,
    };
    b.out.insert("type".into(), Value::String(name.to_owned()));
    for (f, wrapped) in wrapped_fields(node) {
        b.field(f, wrapped)?;
    }
    let mut body = b.out;
    let context = b.prefixes.finish(&mut body);
    let mut out = Map::new();
    if let Some(ctx) = context {
        out.insert("@context".into(), ctx);
    }
    out.extend(body);
    Ok(Value::Object(out))
}

fn qualified(node: Node) -> String {
    match node.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", node.tag_name().name()),
        None => node.tag_name().name().to_owned(),
    }
}

/// The fields of the EPCIS 2.0 event types, all without a namespace.
const STANDARD: &[&str] = &[
    "eventTime",
    "recordTime",
    "eventTimeZoneOffset",
    "eventID",
    "errorDeclaration",
    "certificationInfo",
    "epcList",
    "parentID",
    "childEPCs",
    "childQuantityList",
    "quantityList",
    "inputEPCList",
    "inputQuantityList",
    "outputEPCList",
    "outputQuantityList",
    "transformationID",
    "action",
    "bizStep",
    "disposition",
    "persistentDisposition",
    "readPoint",
    "bizLocation",
    "bizTransactionList",
    "sourceList",
    "destinationList",
    "sensorElementList",
    "ilmd",
];

/// The fields of the EPCIS base event, which every event type has.
pub(super) const BASE_EVENT_FIELDS: &[&str] = &[
    "eventTime",
    "recordTime",
    "eventTimeZoneOffset",
    "eventID",
    "errorDeclaration",
    "certificationInfo",
];

/// Whether the EPCIS 2.0 event type `kind` has the standard field `name`.
pub(super) fn has_field(kind: &str, name: &str) -> bool {
    const SHARED: &[&str] = &[
        "action",
        "bizStep",
        "disposition",
        "readPoint",
        "bizLocation",
        "bizTransactionList",
        "sourceList",
        "destinationList",
        "sensorElementList",
        "persistentDisposition",
    ];
    BASE_EVENT_FIELDS.contains(&name)
        || (SHARED.contains(&name) && !(kind == "TransformationEvent" && name == "action"))
        || match kind {
            "ObjectEvent" => matches!(name, "epcList" | "quantityList" | "ilmd"),
            "AggregationEvent" | "AssociationEvent" => {
                matches!(name, "parentID" | "childEPCs" | "childQuantityList")
            }
            "TransactionEvent" => matches!(name, "parentID" | "epcList" | "quantityList"),
            "TransformationEvent" => matches!(
                name,
                "inputEPCList"
                    | "inputQuantityList"
                    | "outputEPCList"
                    | "outputQuantityList"
                    | "transformationID"
                    | "ilmd"
            ),
            _ => false,
        }
}

struct Builder {
    kind: &'static str,
    out: Map<String, Value>,
    prefixes: Prefixes,
    path: String,
}

impl Builder {
    fn err_unexpected(&self, at: &str, node: Node) -> XmlError {
        let (line, column) = pos(node);
        XmlError::UnexpectedElement {
            path: format!("{}{at}", self.path),
            name: qualified(node),
            line,
            column,
        }
    }

    fn err_missing(&self, at: &str, node: Node) -> XmlError {
        let (line, column) = pos(node);
        XmlError::MissingElement {
            path: format!("{}/{at}", self.path),
            line,
            column,
        }
    }

    fn err_invalid(&self, at: &str, node: Node, expected: &'static str, got: &str) -> XmlError {
        let (line, column) = pos(node);
        XmlError::InvalidValue {
            path: format!("{}/{at}", self.path),
            expected,
            got: got.to_owned(),
            line,
            column,
        }
    }

    /// Inserts a standard field once.
    fn set(&mut self, key: &str, v: Value, node: Node) -> Result<(), XmlError> {
        if self.out.contains_key(key) {
            let (line, column) = pos(node);
            return Err(XmlError::Repeated {
                path: format!("{}/{key}", self.path),
                line,
                column,
            });
        }
        self.out.insert(key.to_owned(), v);
        Ok(())
    }

    /// A leaf: text only, no child elements.
    fn leaf(&self, node: Node, at: &str) -> Result<String, XmlError> {
        match elements(node).next() {
            Some(c) => Err(self.err_unexpected(&format!("/{at}"), c)),
            None => Ok(text(node)),
        }
    }

    /// One field; `wrapped` when it sat in a 1.2 `extension`, where the schema allows
    /// extensions without a namespace (`##local`).
    fn field(&mut self, f: Node, wrapped: bool) -> Result<(), XmlError> {
        let standard =
            f.tag_name().namespace().is_none() && STANDARD.contains(&f.tag_name().name());
        if standard && !has_field(self.kind, f.tag_name().name()) {
            return Err(self.err_unexpected("", f));
        }
        let Some(name) = standard.then(|| f.tag_name().name()) else {
            if f.tag_name().namespace().is_none() && !wrapped {
                return Err(self.err_unexpected("", f));
            }
            let key = self
                .prefixes
                .key(f.tag_name().namespace(), f.tag_name().name(), f);
            let v = generic(f, &mut self.prefixes, true);
            push(&mut self.out, key, v);
            return Ok(());
        };
        let v = match name {
            "eventTime"
            | "recordTime"
            | "eventTimeZoneOffset"
            | "eventID"
            | "parentID"
            | "transformationID"
            | "action"
            | "certificationInfo" => Value::String(self.leaf(f, name)?),
            "bizStep" => Value::String(Vocab::BizStep.to_json(&self.leaf(f, name)?)),
            "disposition" => Value::String(Vocab::Disposition.to_json(&self.leaf(f, name)?)),
            "epcList" | "childEPCs" | "inputEPCList" | "outputEPCList" => {
                let epcs = self.epcs(f, name, "epc")?;
                if epcs.is_empty() {
                    return Ok(());
                }
                Value::Array(epcs)
            }
            "quantityList" | "childQuantityList" | "inputQuantityList" | "outputQuantityList" => {
                let q = self.quantities(f, name)?;
                if q.is_empty() {
                    return Ok(());
                }
                Value::Array(q)
            }
            "readPoint" | "bizLocation" => self.location(f, name)?,
            "bizTransactionList" => {
                self.typed_list(f, name, "bizTransaction", Vocab::BizTransactionType)?
            }
            "sourceList" => self.typed_list(f, name, "source", Vocab::SourceDestType)?,
            "destinationList" => self.typed_list(f, name, "destination", Vocab::SourceDestType)?,
            "persistentDisposition" => self.persistent_disposition(f)?,
            "ilmd" => self.ilmd(f),
            "errorDeclaration" => self.error_declaration(f)?,
            "sensorElementList" => self.sensor_elements(f)?,
            _ => return Err(self.err_unexpected("", f)),
        };
        self.set(name, v, f)
    }

    /// `<list><item>…</item>…</list>` as an array of the items' texts.
    fn epcs(&self, f: Node, list: &str, item: &str) -> Result<Vec<Value>, XmlError> {
        elements(f)
            .map(|c| {
                if c.tag_name().namespace().is_some() || c.tag_name().name() != item {
                    return Err(self.err_unexpected(&format!("/{list}"), c));
                }
                Ok(Value::String(self.leaf(c, &format!("{list}/{item}"))?))
            })
            .collect()
    }

    fn quantities(&self, f: Node, list: &str) -> Result<Vec<Value>, XmlError> {
        let mut out = Vec::new();
        for (i, q) in elements(f).enumerate() {
            let at = format!("{list}/quantityElement[{i}]");
            if q.tag_name().namespace().is_some() || q.tag_name().name() != "quantityElement" {
                return Err(self.err_unexpected(&format!("/{list}"), q));
            }
            let mut m = Map::new();
            for c in fields(q) {
                let key = c.tag_name().name();
                if c.tag_name().namespace().is_some()
                    || !matches!(key, "epcClass" | "quantity" | "uom")
                {
                    return Err(self.err_unexpected(&format!("/{at}"), c));
                }
                if m.contains_key(key) {
                    let (line, column) = pos(c);
                    return Err(XmlError::Repeated {
                        path: format!("{}/{at}/{key}", self.path),
                        line,
                        column,
                    });
                }
                let t = self.leaf(c, &format!("{at}/{key}"))?;
                let v = match key {
                    "quantity" if c.attribute((XSI, "nil")) == Some("true") => continue,
                    "quantity" => Value::Number(decimal(&t).ok_or_else(|| {
                        self.err_invalid(
                            &format!("{at}/quantity"),
                            c,
                            "an xsd:decimal with at most 15 significant digits",
                            &t,
                        )
                    })?),
                    _ => Value::String(t),
                };
                m.insert(key.to_owned(), v);
            }
            if !m.contains_key("epcClass") {
                return Err(self.err_missing(&format!("{at}/epcClass"), q));
            }
            out.push(Value::Object(m));
        }
        Ok(out)
    }

    fn location(&mut self, f: Node, name: &str) -> Result<Value, XmlError> {
        let mut m = Map::new();
        for c in fields(f) {
            match c.tag_name().namespace() {
                None if c.tag_name().name() == "id" && !m.contains_key("id") => {
                    m.insert(
                        "id".into(),
                        Value::String(self.leaf(c, &format!("{name}/id"))?),
                    );
                }
                None => return Err(self.err_unexpected(&format!("/{name}"), c)),
                Some(ns) => {
                    let key = self.prefixes.key(Some(ns), c.tag_name().name(), c);
                    let v = generic(c, &mut self.prefixes, true);
                    push(&mut m, key, v);
                }
            }
        }
        if !m.contains_key("id") {
            return Err(self.err_missing(&format!("{name}/id"), f));
        }
        Ok(Value::Object(m))
    }

    /// bizTransactionList / sourceList / destinationList: `[{type, <item>}]`.
    fn typed_list(&self, f: Node, list: &str, item: &str, vocab: Vocab) -> Result<Value, XmlError> {
        let mut out = Vec::new();
        for c in elements(f) {
            if c.tag_name().namespace().is_some() || c.tag_name().name() != item {
                return Err(self.err_unexpected(&format!("/{list}"), c));
            }
            let mut m = Map::new();
            if let Some(t) = c.attribute("type") {
                m.insert("type".into(), Value::String(vocab.to_json(t.trim())));
            }
            m.insert(
                item.to_owned(),
                Value::String(self.leaf(c, &format!("{list}/{item}"))?),
            );
            out.push(Value::Object(m));
        }
        Ok(Value::Array(out))
    }

    fn persistent_disposition(&self, f: Node) -> Result<Value, XmlError> {
        let mut set = Vec::new();
        let mut unset = Vec::new();
        for c in elements(f) {
            let target = match (c.tag_name().namespace(), c.tag_name().name()) {
                (None, "set") => &mut set,
                (None, "unset") => &mut unset,
                _ => return Err(self.err_unexpected("/persistentDisposition", c)),
            };
            let t = self.leaf(c, "persistentDisposition")?;
            target.push(Value::String(Vocab::Disposition.to_json(&t)));
        }
        let mut m = Map::new();
        if !set.is_empty() {
            m.insert("set".into(), Value::Array(set));
        }
        if !unset.is_empty() {
            m.insert("unset".into(), Value::Array(unset));
        }
        Ok(Value::Object(m))
    }

    /// ILMD: every child is master data, namespaced (`cbvmda:lotNumber`) or, inside the 1.2
    /// `extension`, local.
    fn ilmd(&mut self, f: Node) -> Value {
        let mut m = Map::new();
        for c in fields(f) {
            let key = self
                .prefixes
                .key(c.tag_name().namespace(), c.tag_name().name(), c);
            let v = generic(c, &mut self.prefixes, true);
            push(&mut m, key, v);
        }
        Value::Object(m)
    }

    fn error_declaration(&mut self, f: Node) -> Result<Value, XmlError> {
        let mut m = Map::new();
        for c in fields(f) {
            let name = c.tag_name().name();
            match c.tag_name().namespace() {
                None => {
                    let v = match name {
                        "declarationTime" => Value::String(self.leaf(c, name)?),
                        "reason" => Value::String(Vocab::ErrorReason.to_json(&self.leaf(c, name)?)),
                        "correctiveEventIDs" => Value::Array(self.epcs(
                            c,
                            "errorDeclaration/correctiveEventIDs",
                            "correctiveEventID",
                        )?),
                        _ => return Err(self.err_unexpected("/errorDeclaration", c)),
                    };
                    m.insert(name.to_owned(), v);
                }
                Some(ns) => {
                    let key = self.prefixes.key(Some(ns), name, c);
                    let v = generic(c, &mut self.prefixes, true);
                    push(&mut m, key, v);
                }
            }
        }
        Ok(Value::Object(m))
    }

    fn sensor_elements(&mut self, f: Node) -> Result<Value, XmlError> {
        let mut out = Vec::new();
        for se in elements(f) {
            if se.tag_name().namespace().is_some() || se.tag_name().name() != "sensorElement" {
                return Err(self.err_unexpected("/sensorElementList", se));
            }
            let mut m = Map::new();
            let mut reports = Vec::new();
            for c in fields(se) {
                match (c.tag_name().namespace(), c.tag_name().name()) {
                    (None, "sensorMetadata") if !m.contains_key("sensorMetadata") => {
                        let v = self.sensor_attributes(c)?;
                        m.insert("sensorMetadata".into(), v);
                    }
                    (None, "sensorReport") => reports.push(self.sensor_attributes(c)?),
                    (None, _) => {
                        return Err(self.err_unexpected("/sensorElementList/sensorElement", c));
                    }
                    (Some(ns), name) => {
                        let key = self.prefixes.key(Some(ns), name, c);
                        let v = generic(c, &mut self.prefixes, true);
                        push(&mut m, key, v);
                    }
                }
            }
            if !reports.is_empty() {
                m.insert("sensorReport".into(), Value::Array(reports));
            }
            out.push(Value::Object(m));
        }
        Ok(Value::Array(out))
    }

    /// sensorMetadata / sensorReport carry their data in attributes; the numeric ones become
    /// JSON numbers and `booleanValue` a boolean, as in the 2.0 JSON binding. They have no
    /// child elements; sensorMetadata's text (its simple content) is kept as `#text`.
    fn sensor_attributes(&mut self, node: Node) -> Result<Value, XmlError> {
        if let Some(c) = elements(node).next() {
            return Err(self.err_unexpected("/sensorElementList/sensorElement", c));
        }
        let mut m = Map::new();
        for a in node.attributes() {
            let key = self.prefixes.key(a.namespace(), a.name(), node);
            let raw = a.value().trim();
            let v = match key.as_str() {
                "value" | "minValue" | "maxValue" | "meanValue" | "sDev" | "percRank"
                | "percValue" => {
                    decimal(raw).map_or_else(|| Value::String(raw.to_owned()), Value::Number)
                }
                "booleanValue" if raw == "true" || raw == "false" => Value::Bool(raw == "true"),
                _ => Value::String(raw.to_owned()),
            };
            m.insert(key, v);
        }
        let t = text(node);
        if !t.is_empty() {
            m.insert("#text".into(), Value::String(t));
        }
        Ok(Value::Object(m))
    }
}

/// An xsd:decimal (`[+-]digits[.digits]`, also `.5`) as a JSON number, integral ones as
/// integers; `None` beyond 15 significant digits, which an f64 would not keep exactly.
fn decimal(s: &str) -> Option<Number> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{int}{frac}");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    if significant > 15 {
        return None;
    }
    if frac.trim_end_matches('0').is_empty() {
        let int = int.trim_start_matches('0');
        let n: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let n = if s.starts_with('-') { -n } else { n };
        return Some(Number::from(n));
    }
    Number::from_f64(s.parse::<f64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(decimal("200"), Some(Number::from(200)));
        assert_eq!(decimal("200.000"), Some(Number::from(200)));
        assert_eq!(decimal("-3"), Some(Number::from(-3)));
        assert_eq!(decimal("0.5"), Number::from_f64(0.5));
        assert_eq!(decimal(".5"), Number::from_f64(0.5));
        assert_eq!(decimal("1e3"), None);
        assert_eq!(decimal("."), None);
        assert_eq!(decimal("abc"), None);
        assert_eq!(decimal("0.1234567890123456"), None);
    }
}
