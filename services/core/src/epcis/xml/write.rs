//! EPCIS 2.0 JSON-LD events → an EPCIS 1.2 or 2.0 XML document.
//!
//! Each field goes where the version's schema has it: in 1.2 the later fields move into the
//! `extension` wrappers, `eventID` and `errorDeclaration` into `baseExtension`, and
//! TransformationEvent into `EventList/extension`, as the GS1 2.0→1.2 XSLT does. Prefixes are
//! stable (`epcis`, `sbdh`, `cbvmda` on the root; an event's own prefixes from its `@context`
//! on the event element), every text and attribute value is escaped, and a character XML 1.0
//! cannot carry is an error rather than a broken document.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::event::{BASE_EVENT_FIELDS, has_field, is_ncname};
use super::read::{NS_12, NS_20, SBDH};
use super::vocab::Vocab;
use super::{XmlError, XmlHeader, XmlVersion};

const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
const CBVMDA: &str = "urn:epcglobal:cbv:mda";
/// Prefixes the event hash knows without a context; a key using one needs no `@context`.
const DEFAULT_PREFIXES: &[(&str, &str)] = &[
    ("gs1", "https://ref.gs1.org/voc/"),
    ("cbv", "https://ref.gs1.org/cbv/"),
    ("epcis", "https://ref.gs1.org/epcis/"),
    ("cbvmda", CBVMDA),
    ("xsi", XSI),
];

/// Events as an EPCIS 1.2 document (`urn:epcglobal:epcis:xsd:1`). With a sender and receiver
/// in `header` it carries the SBDH of the GS1 US Healthcare profile, and the header's master
/// data; `header.creation_date` is required.
pub fn to_epcis12_xml(events: &[Value], header: &XmlHeader) -> Result<String, XmlError> {
    document(events, header, XmlVersion::Epcis12)
}

/// Events as an EPCIS 2.0 XML document (`urn:epcglobal:epcis:xsd:2`).
pub fn to_epcis20_xml(events: &[Value], header: &XmlHeader) -> Result<String, XmlError> {
    document(events, header, XmlVersion::Epcis20)
}

fn not_exportable(path: impl Into<String>, expected: &'static str) -> XmlError {
    XmlError::NotAnEvent {
        path: path.into(),
        expected,
    }
}

fn document(events: &[Value], header: &XmlHeader, version: XmlVersion) -> Result<String, XmlError> {
    let (ns, schema_version) = match version {
        XmlVersion::Epcis12 => (NS_12, "1.2"),
        XmlVersion::Epcis20 => (NS_20, "2.0"),
    };
    let creation = header
        .creation_date
        .as_deref()
        .ok_or_else(|| not_exportable("header.creationDate", "the document's creation date"))?;
    let mut x = Xml::new(events.len() * 1200 + 1024);
    x.s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.open_raw(
        "epcis:EPCISDocument",
        &[
            ("xmlns:epcis", ns),
            ("xmlns:sbdh", SBDH),
            ("xmlns:cbvmda", CBVMDA),
            ("xmlns:xsi", XSI),
            ("schemaVersion", schema_version),
            ("creationDate", creation),
        ],
        "header",
    )?;
    epcis_header(&mut x, header, version)?;
    x.open("EPCISBody");
    x.open("EventList");
    for (i, e) in events.iter().enumerate() {
        let mut w = EventWriter::new(e, i, version, x.depth)?;
        w.event()?;
        let kind = w.kind;
        let nested = match (version, kind) {
            (XmlVersion::Epcis12, "TransformationEvent") => 1,
            (XmlVersion::Epcis12, "AssociationEvent") => 2,
            _ => 0,
        };
        for _ in 0..nested {
            x.open("extension");
        }
        w.finish(&mut x, nested)?;
        for _ in 0..nested {
            x.close("extension");
        }
    }
    x.close("EventList");
    x.close("EPCISBody");
    x.close("epcis:EPCISDocument");
    Ok(x.s)
}

fn epcis_header(x: &mut Xml, h: &XmlHeader, version: XmlVersion) -> Result<(), XmlError> {
    let sbdh = match (&h.sender, &h.receiver) {
        (Some(s), Some(r)) => Some((s, r)),
        _ => None,
    };
    if sbdh.is_none() && h.master_data.is_none() {
        return Ok(());
    }
    if sbdh.is_none() && version == XmlVersion::Epcis12 {
        return Err(not_exportable(
            "header",
            "a sender and receiver (EPCIS 1.2 master data needs the SBDH)",
        ));
    }
    x.open("EPCISHeader");
    if let Some((sender, receiver)) = sbdh {
        let doc = h.document.clone().unwrap_or_default();
        let instance = doc.instance_identifier.as_deref().ok_or_else(|| {
            not_exportable(
                "header.document.instanceIdentifier",
                "the SBDH document identifier",
            )
        })?;
        let creation = doc
            .creation_date_and_time
            .as_deref()
            .or(h.creation_date.as_deref())
            .unwrap_or_default();
        x.open("sbdh:StandardBusinessDocumentHeader");
        x.leaf("sbdh:HeaderVersion", &[], "1.0", "header")?;
        for (tag, p) in [("sbdh:Sender", sender), ("sbdh:Receiver", receiver)] {
            x.open(tag);
            let attrs: Vec<(&str, &str)> = p
                .authority
                .as_deref()
                .map(|a| ("Authority", a))
                .into_iter()
                .collect();
            x.leaf("sbdh:Identifier", &attrs, &p.identifier, "header.sender")?;
            x.close(tag);
        }
        x.open("sbdh:DocumentIdentification");
        for (tag, v, default) in [
            ("sbdh:Standard", &doc.standard, "EPCglobal"),
            ("sbdh:TypeVersion", &doc.type_version, "1.0"),
            ("sbdh:InstanceIdentifier", &Some(instance.to_owned()), ""),
            ("sbdh:Type", &doc.doc_type, "Events"),
            ("sbdh:CreationDateAndTime", &Some(creation.to_owned()), ""),
        ] {
            x.leaf(tag, &[], v.as_deref().unwrap_or(default), "header.document")?;
        }
        x.close("sbdh:DocumentIdentification");
        x.close("sbdh:StandardBusinessDocumentHeader");
    }
    if let Some(md) = &h.master_data {
        x.open("extension");
        master_data(x, md)?;
        x.close("extension");
    }
    x.close("EPCISHeader");
    Ok(())
}

fn master_data(x: &mut Xml, md: &Value) -> Result<(), XmlError> {
    let path = "header.masterData";
    let prefixes = context_prefixes(md.get("@context"));
    let list = md
        .get("vocabularyList")
        .and_then(Value::as_array)
        .ok_or_else(|| not_exportable(path, "{\"vocabularyList\": [...]}"))?;
    // Attribute values may hold namespaced elements: declare the master data's prefixes here.
    let decls: Vec<(String, String)> = prefixes
        .iter()
        .filter(|(p, _)| !matches!(p.as_str(), "cbvmda" | "sbdh" | "xsi" | "epcis"))
        .map(|(p, ns)| (format!("xmlns:{p}"), ns.clone()))
        .collect();
    let decl_refs: Vec<(&str, &str)> = decls
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    x.open_raw("EPCISMasterData", &decl_refs, path)?;
    x.open("VocabularyList");
    for v in list {
        let t = v.get("type").and_then(Value::as_str).unwrap_or_default();
        x.open_raw("Vocabulary", &[("type", t)], path)?;
        x.open("VocabularyElementList");
        for el in v
            .get("vocabularyElementList")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = el.get("id").and_then(Value::as_str).unwrap_or_default();
            x.open_raw("VocabularyElement", &[("id", id)], path)?;
            for a in el
                .get("attributes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let aid = a.get("id").and_then(Value::as_str).unwrap_or_default();
                let mut used = BTreeMap::new();
                generic_value(
                    x,
                    "attribute",
                    &[("id", aid)],
                    a.get("attribute").unwrap_or(&Value::Null),
                    &prefixes,
                    &mut used,
                    path,
                )?;
            }
            if let Some(children) = el.get("children").and_then(Value::as_array) {
                x.open("children");
                for c in children {
                    x.leaf("id", &[], c.as_str().unwrap_or_default(), path)?;
                }
                x.close("children");
            }
            x.close("VocabularyElement");
        }
        x.close("VocabularyElementList");
        x.close("Vocabulary");
    }
    x.close("VocabularyList");
    x.close("EPCISMasterData");
    Ok(())
}

/// prefix → namespace from a JSON-LD `@context` (objects in an array, or one object).
fn context_prefixes(ctx: Option<&Value>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = DEFAULT_PREFIXES
        .iter()
        .map(|(p, n)| ((*p).to_owned(), (*n).to_owned()))
        .collect();
    let objects: Vec<&Map<String, Value>> = match ctx {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(o)) => vec![o],
        _ => vec![],
    };
    for o in objects {
        for (k, v) in o {
            if let Some(ns) = v.as_str()
                && k != "gs1"
            {
                out.insert(k.clone(), ns.to_owned());
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

enum Slot {
    Field(&'static str),
    /// A field 1.2 requires even when empty.
    Required(&'static str),
    /// 1.2 `extension` wrapper.
    Ext(&'static [Slot]),
}
use Slot::{Ext, Field, Required};

const OBJECT_12: &[Slot] = &[
    Required("epcList"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Ext(&[
        Field("quantityList"),
        Field("sourceList"),
        Field("destinationList"),
        Field("ilmd"),
        Ext(&[Field("sensorElementList"), Field("persistentDisposition")]),
    ]),
];
const OBJECT_20: &[Slot] = &[
    Field("epcList"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Field("quantityList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("sensorElementList"),
    Field("persistentDisposition"),
    Field("ilmd"),
];
const AGGREGATION_12: &[Slot] = &[
    Field("parentID"),
    Required("childEPCs"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Ext(&[
        Field("childQuantityList"),
        Field("sourceList"),
        Field("destinationList"),
        Ext(&[Field("sensorElementList"), Field("persistentDisposition")]),
    ]),
];
const AGGREGATION_20: &[Slot] = &[
    Field("parentID"),
    Field("childEPCs"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Field("childQuantityList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("sensorElementList"),
    Field("persistentDisposition"),
];
const TRANSACTION_12: &[Slot] = &[
    Field("bizTransactionList"),
    Field("parentID"),
    Required("epcList"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Ext(&[
        Field("quantityList"),
        Field("sourceList"),
        Field("destinationList"),
        Ext(&[Field("sensorElementList"), Field("persistentDisposition")]),
    ]),
];
const TRANSACTION_20: &[Slot] = &[
    Field("bizTransactionList"),
    Field("parentID"),
    Field("epcList"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("quantityList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("sensorElementList"),
    Field("persistentDisposition"),
];
const TRANSFORMATION_12: &[Slot] = &[
    Field("inputEPCList"),
    Field("inputQuantityList"),
    Field("outputEPCList"),
    Field("outputQuantityList"),
    Field("transformationID"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("ilmd"),
    Ext(&[Field("sensorElementList"), Field("persistentDisposition")]),
];
const TRANSFORMATION_20: &[Slot] = &[
    Field("inputEPCList"),
    Field("inputQuantityList"),
    Field("outputEPCList"),
    Field("outputQuantityList"),
    Field("transformationID"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("sensorElementList"),
    Field("persistentDisposition"),
    Field("ilmd"),
];
/// 2.0's layout; in 1.2 it sits in `EventList/extension/extension`, which the schema leaves open.
const ASSOCIATION: &[Slot] = &[
    Field("parentID"),
    Field("childEPCs"),
    Field("childQuantityList"),
    Field("action"),
    Field("bizStep"),
    Field("disposition"),
    Field("readPoint"),
    Field("bizLocation"),
    Field("bizTransactionList"),
    Field("sourceList"),
    Field("destinationList"),
    Field("sensorElementList"),
    Field("persistentDisposition"),
];

/// Fields of the EPCIS base event, written by [`EventWriter::base`].
const BASE: &[&str] = BASE_EVENT_FIELDS;

struct EventWriter<'a> {
    event: &'a Map<String, Value>,
    kind: &'static str,
    version: XmlVersion,
    path: String,
    prefixes: BTreeMap<String, String>,
    /// prefix → namespace actually written, declared on the event element.
    used: BTreeMap<String, String>,
    body: Xml,
}

impl<'a> EventWriter<'a> {
    fn new(
        e: &'a Value,
        index: usize,
        version: XmlVersion,
        depth: usize,
    ) -> Result<Self, XmlError> {
        let path = format!("events[{index}]");
        let event = e
            .as_object()
            .ok_or_else(|| not_exportable(path.clone(), "an EPCIS event object"))?;
        let kind = match event.get("type").and_then(Value::as_str) {
            Some("ObjectEvent") => "ObjectEvent",
            Some("AggregationEvent") => "AggregationEvent",
            Some("TransactionEvent") => "TransactionEvent",
            Some("TransformationEvent") => "TransformationEvent",
            Some("AssociationEvent") => "AssociationEvent",
            _ => {
                return Err(not_exportable(
                    format!("{path}.type"),
                    "ObjectEvent, AggregationEvent, TransactionEvent, TransformationEvent or AssociationEvent",
                ));
            }
        };
        let nested = match (version, kind) {
            (XmlVersion::Epcis12, "TransformationEvent") => 1,
            (XmlVersion::Epcis12, "AssociationEvent") => 2,
            _ => 0,
        };
        let mut body = Xml::new(1024);
        body.depth = depth + nested + 1;
        Ok(EventWriter {
            event,
            kind,
            version,
            path,
            prefixes: context_prefixes(event.get("@context")),
            used: BTreeMap::new(),
            body,
        })
    }

    fn event(&mut self) -> Result<(), XmlError> {
        let slots = match (self.version, self.kind) {
            (XmlVersion::Epcis12, "ObjectEvent") => OBJECT_12,
            (XmlVersion::Epcis20, "ObjectEvent") => OBJECT_20,
            (XmlVersion::Epcis12, "AggregationEvent") => AGGREGATION_12,
            (XmlVersion::Epcis20, "AggregationEvent") => AGGREGATION_20,
            (XmlVersion::Epcis12, "TransactionEvent") => TRANSACTION_12,
            (XmlVersion::Epcis20, "TransactionEvent") => TRANSACTION_20,
            (XmlVersion::Epcis12, "TransformationEvent") => TRANSFORMATION_12,
            (XmlVersion::Epcis20, "TransformationEvent") => TRANSFORMATION_20,
            _ => ASSOCIATION,
        };
        if self.kind != "TransformationEvent" && !self.event.contains_key("action") {
            return Err(not_exportable(
                format!("{}.action", self.path),
                "ADD, OBSERVE or DELETE",
            ));
        }
        if self.kind == "TransactionEvent" && !self.event.contains_key("bizTransactionList") {
            return Err(not_exportable(
                format!("{}.bizTransactionList", self.path),
                "at least one business transaction",
            ));
        }
        if let Some(k) = self
            .event
            .keys()
            .find(|k| (is_standard(k) || BASE.contains(&k.as_str())) && !has_field(self.kind, k))
        {
            return Err(not_exportable(
                format!("{}.{k}", self.path),
                "only the fields of its event type",
            ));
        }
        self.base()?;
        self.slots(slots)?;
        if !slots.iter().any(|s| matches!(s, Ext(_))) {
            match self.version {
                // 2.0 has no place for an extension outside a namespace.
                XmlVersion::Epcis20 => {
                    if let Some((k, _)) = self.local_keys().next() {
                        return Err(not_exportable(
                            format!("{}.{k}", self.path),
                            "a standard field or a prefix:name extension",
                        ));
                    }
                }
                // AssociationEvent sits in a wrapper the 1.2 schema leaves open; its local
                // extensions go in an `extension` of their own, as in the other types.
                XmlVersion::Epcis12 => {
                    if self.local_keys().next().is_some() {
                        self.body.open("extension");
                        self.local_extensions()?;
                        self.body.close("extension");
                    }
                }
            }
        }
        self.user_extensions()
    }

    fn local_extensions(&mut self) -> Result<(), XmlError> {
        let path = self.path.clone();
        for (k, v) in self.local_keys() {
            check_name(k, &path)?;
            self.generic(k, &[], v, &path)?;
        }
        Ok(())
    }

    /// Whether any field of `slots` is present (the innermost wrapper also holds the local
    /// extensions).
    fn any(&self, slots: &[Slot]) -> bool {
        (innermost(slots) && self.local_keys().next().is_some())
            || slots.iter().any(|s| match s {
                Field(f) | Required(f) => self.event.contains_key(*f),
                Ext(inner) => self.any(inner),
            })
    }

    /// Extension keys without a prefix: 1.2 allows them in its `extension` wrappers only.
    fn local_keys(&self) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
        let event: &'a Map<String, Value> = self.event;
        event.iter().filter(|(k, _)| {
            !k.contains(':')
                && !BASE.contains(&k.as_str())
                && !is_standard(k)
                && !matches!(k.as_str(), "type" | "@context")
        })
    }

    fn slots(&mut self, slots: &[Slot]) -> Result<(), XmlError> {
        let event = self.event;
        for s in slots {
            match s {
                Field(f) => {
                    if let Some(v) = event.get(*f) {
                        self.field(f, v)?;
                    }
                }
                Required(f) => match event.get(*f) {
                    Some(v) => self.field(f, v)?,
                    None => self.body.empty(f),
                },
                Ext(inner) if self.any(inner) => {
                    self.body.open("extension");
                    self.slots(inner)?;
                    if innermost(inner) {
                        self.local_extensions()?;
                    }
                    self.body.close("extension");
                }
                Ext(_) => {}
            }
        }
        Ok(())
    }

    fn base(&mut self) -> Result<(), XmlError> {
        let event = self.event;
        for f in ["eventTime", "recordTime", "eventTimeZoneOffset"] {
            if let Some(v) = event.get(f) {
                self.field(f, v)?;
            }
        }
        let later = ["eventID", "errorDeclaration"];
        match self.version {
            XmlVersion::Epcis20 => {
                for f in ["eventID", "errorDeclaration", "certificationInfo"] {
                    if let Some(v) = event.get(f) {
                        self.field(f, v)?;
                    }
                }
            }
            XmlVersion::Epcis12 => {
                let cert = event.get("certificationInfo");
                if later.iter().any(|f| event.contains_key(*f)) || cert.is_some() {
                    self.body.open("baseExtension");
                    for f in later {
                        if let Some(v) = event.get(f) {
                            self.field(f, v)?;
                        }
                    }
                    if let Some(v) = cert {
                        self.body.open("extension");
                        self.field("certificationInfo", v)?;
                        self.body.close("extension");
                    }
                    self.body.close("baseExtension");
                }
            }
        }
        Ok(())
    }

    fn str_of<'v>(&self, key: &str, v: &'v Value) -> Result<&'v str, XmlError> {
        v.as_str()
            .ok_or_else(|| not_exportable(format!("{}.{key}", self.path), "a string"))
    }

    fn array_of<'v>(&self, key: &str, v: &'v Value) -> Result<&'v [Value], XmlError> {
        v.as_array()
            .map(Vec::as_slice)
            .ok_or_else(|| not_exportable(format!("{}.{key}", self.path), "an array"))
    }

    fn field(&mut self, key: &str, v: &Value) -> Result<(), XmlError> {
        let path = format!("{}.{key}", self.path);
        match key {
            "eventTime"
            | "recordTime"
            | "eventTimeZoneOffset"
            | "eventID"
            | "parentID"
            | "transformationID"
            | "action"
            | "certificationInfo" => {
                let s = self.str_of(key, v)?;
                self.body.leaf(key, &[], s, &path)
            }
            "bizStep" | "disposition" => {
                let vocab = if key == "bizStep" {
                    Vocab::BizStep
                } else {
                    Vocab::Disposition
                };
                let s = vocab.to_xml(self.str_of(key, v)?);
                self.body.leaf(key, &[], &s, &path)
            }
            "epcList" | "childEPCs" | "inputEPCList" | "outputEPCList" => self.list(key, "epc", v),
            "quantityList" | "childQuantityList" | "inputQuantityList" | "outputQuantityList" => {
                self.quantities(key, v)
            }
            "readPoint" | "bizLocation" => self.location(key, v),
            "bizTransactionList" => self.typed(key, "bizTransaction", Vocab::BizTransactionType, v),
            "sourceList" => self.typed(key, "source", Vocab::SourceDestType, v),
            "destinationList" => self.typed(key, "destination", Vocab::SourceDestType, v),
            "persistentDisposition" => self.persistent(v),
            "ilmd" => self.ilmd(v),
            "errorDeclaration" => self.error_declaration(v),
            "sensorElementList" => self.sensors(v),
            _ => Err(not_exportable(path, "a standard EPCIS field")),
        }
    }

    fn list(&mut self, key: &str, item: &str, v: &Value) -> Result<(), XmlError> {
        let items = self.array_of(key, v)?;
        if items.is_empty() {
            self.body.empty(key);
            return Ok(());
        }
        self.body.open(key);
        for (i, e) in items.iter().enumerate() {
            let s = self.str_of(&format!("{key}[{i}]"), e)?;
            self.body
                .leaf(item, &[], s, &format!("{}.{key}[{i}]", self.path))?;
        }
        self.body.close(key);
        Ok(())
    }

    fn quantities(&mut self, key: &str, v: &Value) -> Result<(), XmlError> {
        let items = self.array_of(key, v)?;
        self.body.open(key);
        for (i, q) in items.iter().enumerate() {
            let at = format!("{}.{key}[{i}]", self.path);
            let q = q
                .as_object()
                .ok_or_else(|| not_exportable(at.clone(), "a quantity element object"))?;
            self.body.open("quantityElement");
            let class = q
                .get("epcClass")
                .and_then(Value::as_str)
                .ok_or_else(|| not_exportable(format!("{at}.epcClass"), "an EPC class URI"))?;
            self.body.leaf("epcClass", &[], class, &at)?;
            if let Some(n) = q.get("quantity") {
                let text = match n {
                    Value::Number(n) => n.to_string(),
                    _ => return Err(not_exportable(format!("{at}.quantity"), "a number")),
                };
                self.body.leaf("quantity", &[], &text, &at)?;
            }
            if let Some(u) = q.get("uom") {
                let u = u
                    .as_str()
                    .ok_or_else(|| not_exportable(format!("{at}.uom"), "a string"))?;
                self.body.leaf("uom", &[], u, &at)?;
            }
            self.body.close("quantityElement");
        }
        self.body.close(key);
        Ok(())
    }

    fn location(&mut self, key: &str, v: &Value) -> Result<(), XmlError> {
        let at = format!("{}.{key}", self.path);
        let o = v
            .as_object()
            .ok_or_else(|| not_exportable(at.clone(), "{\"id\": …}"))?;
        let id = o
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| not_exportable(format!("{at}.id"), "a location URI"))?;
        self.body.open(key);
        self.body.leaf("id", &[], id, &at)?;
        for (k, v) in o.iter().filter(|(k, _)| *k != "id") {
            self.namespaced(k, v, &at)?;
        }
        self.body.close(key);
        Ok(())
    }

    fn typed(&mut self, key: &str, item: &str, vocab: Vocab, v: &Value) -> Result<(), XmlError> {
        let items = self.array_of(key, v)?;
        self.body.open(key);
        for (i, e) in items.iter().enumerate() {
            let at = format!("{}.{key}[{i}]", self.path);
            let value = e
                .get(item)
                .and_then(Value::as_str)
                .ok_or_else(|| not_exportable(format!("{at}.{item}"), "a string"))?;
            let t = match e.get("type") {
                None => None,
                Some(Value::String(t)) => Some(vocab.to_xml(t)),
                Some(_) => return Err(not_exportable(format!("{at}.type"), "a string")),
            };
            let attrs: Vec<(&str, &str)> = t.as_deref().map(|t| ("type", t)).into_iter().collect();
            self.body.leaf(item, &attrs, value, &at)?;
        }
        self.body.close(key);
        Ok(())
    }

    fn persistent(&mut self, v: &Value) -> Result<(), XmlError> {
        self.body.open("persistentDisposition");
        for k in ["unset", "set"] {
            for (i, d) in v
                .get(k)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("{}.persistentDisposition.{k}[{i}]", self.path);
                let s = d
                    .as_str()
                    .ok_or_else(|| not_exportable(at.clone(), "a string"))?;
                self.body.leaf(k, &[], &Vocab::Disposition.to_xml(s), &at)?;
            }
        }
        self.body.close("persistentDisposition");
        Ok(())
    }

    /// ILMD: local names in its `extension` (1.2 and 2.0 alike), namespaced ones after.
    fn ilmd(&mut self, v: &Value) -> Result<(), XmlError> {
        let at = format!("{}.ilmd", self.path);
        let o = v
            .as_object()
            .ok_or_else(|| not_exportable(at.clone(), "an object"))?;
        self.body.open("ilmd");
        let (local, namespaced): (Vec<_>, Vec<_>) = o.iter().partition(|(k, _)| !k.contains(':'));
        if !local.is_empty() {
            self.body.open("extension");
            for (k, v) in local {
                check_name(k, &at)?;
                self.generic(k, &[], v, &at)?;
            }
            self.body.close("extension");
        }
        for (k, v) in namespaced {
            self.namespaced(k, v, &at)?;
        }
        self.body.close("ilmd");
        Ok(())
    }

    fn error_declaration(&mut self, v: &Value) -> Result<(), XmlError> {
        let at = format!("{}.errorDeclaration", self.path);
        let o = v
            .as_object()
            .ok_or_else(|| not_exportable(at.clone(), "an object"))?;
        self.body.open("errorDeclaration");
        let time = o
            .get("declarationTime")
            .and_then(Value::as_str)
            .ok_or_else(|| not_exportable(format!("{at}.declarationTime"), "a timestamp"))?;
        self.body.leaf("declarationTime", &[], time, &at)?;
        if let Some(r) = o.get("reason") {
            let r = r
                .as_str()
                .ok_or_else(|| not_exportable(format!("{at}.reason"), "a string"))?;
            self.body
                .leaf("reason", &[], &Vocab::ErrorReason.to_xml(r), &at)?;
        }
        if let Some(ids) = o.get("correctiveEventIDs") {
            self.list_at("correctiveEventIDs", "correctiveEventID", ids, &at)?;
        }
        for (k, v) in o.iter().filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "declarationTime" | "reason" | "correctiveEventIDs"
            )
        }) {
            self.namespaced(k, v, &at)?;
        }
        self.body.close("errorDeclaration");
        Ok(())
    }

    fn list_at(&mut self, key: &str, item: &str, v: &Value, at: &str) -> Result<(), XmlError> {
        let items = v
            .as_array()
            .ok_or_else(|| not_exportable(format!("{at}.{key}"), "an array"))?;
        self.body.open(key);
        for e in items {
            let s = e
                .as_str()
                .ok_or_else(|| not_exportable(format!("{at}.{key}"), "strings"))?;
            self.body.leaf(item, &[], s, at)?;
        }
        self.body.close(key);
        Ok(())
    }

    fn sensors(&mut self, v: &Value) -> Result<(), XmlError> {
        let items = self.array_of("sensorElementList", v)?;
        self.body.open("sensorElementList");
        for (i, se) in items.iter().enumerate() {
            let at = format!("{}.sensorElementList[{i}]", self.path);
            let o = se
                .as_object()
                .ok_or_else(|| not_exportable(at.clone(), "an object"))?;
            self.body.open("sensorElement");
            if let Some(m) = o.get("sensorMetadata") {
                self.sensor_attributes("sensorMetadata", m, &at)?;
            }
            let reports: &[Value] = match o.get("sensorReport") {
                Some(Value::Array(a)) => a,
                Some(other) => std::slice::from_ref(other),
                None => &[],
            };
            for r in reports {
                self.sensor_attributes("sensorReport", r, &at)?;
            }
            for (k, v) in o
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "sensorMetadata" | "sensorReport"))
            {
                self.namespaced(k, v, &at)?;
            }
            self.body.close("sensorElement");
        }
        self.body.close("sensorElementList");
        Ok(())
    }

    fn sensor_attributes(&mut self, tag: &str, v: &Value, at: &str) -> Result<(), XmlError> {
        let o = v
            .as_object()
            .ok_or_else(|| not_exportable(format!("{at}.{tag}"), "an object"))?;
        let mut attrs = Vec::new();
        for (k, v) in o.iter().filter(|(k, _)| *k != "#text") {
            let name = self.xml_name(k, at)?;
            let text = scalar(v).ok_or_else(|| {
                not_exportable(format!("{at}.{tag}.{k}"), "a string, number or boolean")
            })?;
            attrs.push((name, text));
        }
        let text = match o.get("#text") {
            None => String::new(),
            Some(t) => {
                scalar(t).ok_or_else(|| not_exportable(format!("{at}.{tag}.#text"), "text"))?
            }
        };
        let refs: Vec<(&str, &str)> = attrs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        self.body.leaf(tag, &refs, &text, at)
    }

    /// Event-level user extensions (`prefix:name`), after the standard fields.
    fn user_extensions(&mut self) -> Result<(), XmlError> {
        let path = self.path.clone();
        let event = self.event;
        for (k, v) in event
            .iter()
            .filter(|(k, _)| k.contains(':') && *k != "@context")
        {
            self.namespaced(k, v, &path)?;
        }
        Ok(())
    }

    /// Writes `prefix:local` (an extension outside the EPCIS namespace).
    fn namespaced(&mut self, key: &str, v: &Value, at: &str) -> Result<(), XmlError> {
        if !key.contains(':') {
            return Err(not_exportable(
                format!("{at}.{key}"),
                "a standard field or a prefix:name extension",
            ));
        }
        let name = self.xml_name(key, at)?;
        self.generic(&name, &[], v, at)
    }

    /// The XML name for a JSON key, recording the prefix's namespace for declaration.
    fn xml_name(&mut self, key: &str, at: &str) -> Result<String, XmlError> {
        match key.split_once(':') {
            None => {
                check_name(key, at)?;
                Ok(key.to_owned())
            }
            Some((p, local)) => {
                check_prefix(p, key, at)?;
                check_name(local, at)?;
                let ns = self.prefixes.get(p).ok_or_else(|| {
                    not_exportable(
                        format!("{at}.{key}"),
                        "a prefix declared in the event's @context",
                    )
                })?;
                if ns == NS_12 || ns == NS_20 {
                    return Err(not_exportable(
                        format!("{at}.{key}"),
                        "an extension outside the EPCIS namespace",
                    ));
                }
                self.used.insert(p.to_owned(), ns.clone());
                Ok(key.to_owned())
            }
        }
    }

    fn generic(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        v: &Value,
        at: &str,
    ) -> Result<(), XmlError> {
        let mut used = std::mem::take(&mut self.used);
        let r = generic_value(
            &mut self.body,
            name,
            attrs,
            v,
            &self.prefixes,
            &mut used,
            at,
        );
        self.used = used;
        r
    }

    /// Writes the event element around its body into `x`.
    fn finish(self, x: &mut Xml, _nested: usize) -> Result<(), XmlError> {
        let root_ns = |p: &str, ns: &str| {
            matches!((p, ns), ("cbvmda", CBVMDA) | ("xsi", XSI) | ("sbdh", SBDH))
        };
        let decls: Vec<(String, String)> = self
            .used
            .iter()
            .filter(|(p, ns)| !root_ns(p, ns))
            .map(|(p, ns)| (format!("xmlns:{p}"), ns.clone()))
            .collect();
        let refs: Vec<(&str, &str)> = decls
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        x.open_raw(self.kind, &refs, &self.path)?;
        x.s.push_str(&self.body.s);
        x.close(self.kind);
        Ok(())
    }
}

/// A wrapper with no wrapper inside.
fn innermost(slots: &[Slot]) -> bool {
    !slots.is_empty() && !slots.iter().any(|s| matches!(s, Ext(_)))
}

fn is_standard(k: &str) -> bool {
    matches!(
        k,
        "epcList"
            | "childEPCs"
            | "inputEPCList"
            | "outputEPCList"
            | "quantityList"
            | "childQuantityList"
            | "inputQuantityList"
            | "outputQuantityList"
            | "parentID"
            | "transformationID"
            | "action"
            | "bizStep"
            | "disposition"
            | "readPoint"
            | "bizLocation"
            | "bizTransactionList"
            | "sourceList"
            | "destinationList"
            | "persistentDisposition"
            | "ilmd"
            | "sensorElementList"
    )
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A user extension value: text, an element per array item, or an element whose children are
/// the object's keys (`#text` its text).
fn generic_value(
    x: &mut Xml,
    name: &str,
    attrs: &[(&str, &str)],
    v: &Value,
    prefixes: &BTreeMap<String, String>,
    used: &mut BTreeMap<String, String>,
    at: &str,
) -> Result<(), XmlError> {
    match v {
        Value::Array(items) => {
            for item in items {
                generic_value(x, name, attrs, item, prefixes, used, at)?;
            }
            Ok(())
        }
        Value::Object(o) => {
            x.open_raw(name, attrs, at)?;
            if let Some(t) = o.get("#text") {
                let t = scalar(t)
                    .ok_or_else(|| not_exportable(format!("{at}.{name}.#text"), "text"))?;
                x.text(&t, at)?;
            }
            for (k, v) in o.iter().filter(|(k, _)| *k != "#text") {
                if let Some((p, local)) = k.split_once(':') {
                    check_prefix(p, k, at)?;
                    check_name(local, at)?;
                    let ns = prefixes.get(p).ok_or_else(|| {
                        not_exportable(format!("{at}.{k}"), "a prefix declared in the @context")
                    })?;
                    used.insert(p.to_owned(), ns.clone());
                } else {
                    check_name(k, at)?;
                }
                generic_value(x, k, &[], v, prefixes, used, at)?;
            }
            x.close(name);
            Ok(())
        }
        Value::Null => x.leaf(name, attrs, "", at),
        other => x.leaf(name, attrs, &scalar(other).unwrap_or_default(), at),
    }
}

/// An XML NCName (no colon).
/// A namespace prefix an extension may be written with: an XML name that does not begin with
/// "xml" in any case, which XML Namespaces reserves (`xml:` is bound without a declaration,
/// and a reader refuses an element named with it, so the document would not read again).
fn check_prefix(p: &str, key: &str, at: &str) -> Result<(), XmlError> {
    check_name(p, at)?;
    if p.get(..3).is_some_and(|x| x.eq_ignore_ascii_case("xml")) {
        return Err(not_exportable(
            format!("{at}.{key}"),
            "a prefix that does not begin with \"xml\" (reserved by XML Namespaces)",
        ));
    }
    Ok(())
}

fn check_name(s: &str, at: &str) -> Result<(), XmlError> {
    if is_ncname(s) {
        Ok(())
    } else {
        Err(not_exportable(
            format!("{at}.{s}"),
            "a key that is an XML name",
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// An indented XML writer that escapes every value.
struct Xml {
    s: String,
    depth: usize,
}

impl Xml {
    fn new(capacity: usize) -> Self {
        Xml {
            s: String::with_capacity(capacity),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.s.push_str("  ");
        }
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)], at: &str) -> Result<(), XmlError> {
        self.indent();
        self.s.push('<');
        self.s.push_str(name);
        for (k, v) in attrs {
            self.s.push(' ');
            self.s.push_str(k);
            self.s.push_str("=\"");
            escape(&mut self.s, v, true, at)?;
            self.s.push('"');
        }
        Ok(())
    }

    fn open_raw(&mut self, name: &str, attrs: &[(&str, &str)], at: &str) -> Result<(), XmlError> {
        self.start(name, attrs, at)?;
        self.s.push_str(">\n");
        self.depth += 1;
        Ok(())
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.s.push('<');
        self.s.push_str(name);
        self.s.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        self.s.push_str("</");
        self.s.push_str(name);
        self.s.push_str(">\n");
    }

    fn empty(&mut self, name: &str) {
        self.indent();
        self.s.push('<');
        self.s.push_str(name);
        self.s.push_str("/>\n");
    }

    fn text(&mut self, t: &str, at: &str) -> Result<(), XmlError> {
        self.indent();
        escape(&mut self.s, t, false, at)?;
        self.s.push('\n');
        Ok(())
    }

    fn leaf(
        &mut self,
        name: &str,
        attrs: &[(&str, &str)],
        text: &str,
        at: &str,
    ) -> Result<(), XmlError> {
        self.start(name, attrs, at)?;
        if text.is_empty() {
            self.s.push_str("/>\n");
        } else {
            self.s.push('>');
            escape(&mut self.s, text, false, at)?;
            self.s.push_str("</");
            self.s.push_str(name);
            self.s.push_str(">\n");
        }
        Ok(())
    }
}

/// Escapes markup characters; in attributes also quotes and the whitespace a parser would
/// normalise. Characters outside XML 1.0's `Char` production are refused.
fn escape(out: &mut String, s: &str, attribute: bool, at: &str) -> Result<(), XmlError> {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                return Err(XmlError::NotXmlText {
                    path: at.to_owned(),
                    code: c as u32,
                });
            }
            c => out.push(c),
        }
    }
    Ok(())
}
