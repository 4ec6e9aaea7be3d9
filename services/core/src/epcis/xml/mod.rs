//! EPCIS documents in XML: EPCIS 1.2 (`urn:epcglobal:epcis:xsd:1`, with the GS1 US Healthcare
//! Implementation Guideline R1.3 profile that DSCSA trading partners exchange) and EPCIS 2.0
//! (`urn:epcglobal:epcis:xsd:2`), in and out.
//!
//! Everything downstream of this module speaks one model: the EPCIS 2.0 JSON-LD event that
//! [`super::parse_event`] types and [`super::event_hash`] hashes. So an XML document is turned
//! into 2.0 JSON-LD events here ([`parse_xml_document`]), and exported from them
//! ([`to_epcis12_xml`], [`to_epcis20_xml`]); there is no second event model to drift.
//!
//! The conversion follows the GS1 1.2↔2.0 XSLT (`gs1/EPCIS` `XSL/`): 1.2 wraps the fields that
//! came after 1.0 in `extension` (and `baseExtension` for `eventID` and `errorDeclaration`), and
//! TransformationEvent sits in `EventList/extension`; 2.0 drops the wrappers. Reading unwraps
//! both, as the CBV 2.0 event hash reference does, and writing 1.2 puts each field back in the
//! wrapper the 1.2 schema has for it. Vocabulary values move between CBV URNs (XML) and bare
//! words (JSON-LD) in [`vocab`]. User extensions keep their namespace: an element `ex:foo` in
//! namespace `N` becomes the key `ex:foo` with `ex` → `N` in the event's own `@context`, so the
//! event hash (which expands keys through that context) sees the same `{N}foo` as it would in
//! the XML. docs/EPCIS-XML.md has the mapping table.
//!
//! Outside input is parsed with `roxmltree`, never by hand, and bounded before anything is
//! built from it: the size ([`XmlLimits::max_bytes`]), the number of XML nodes, the nesting
//! depth (checked without recursion, so 10,000 levels are refused, not a stack overflow) and
//! the number of events. A DOCTYPE is refused outright, so no entity can be declared: no
//! billion laughs, no external entities. Only the five predefined entities and character
//! references are read.

mod event;
mod read;
mod vocab;
mod write;

use serde_json::Value;

pub use write::{to_epcis12_xml, to_epcis20_xml};

/// Bounds on an XML document, checked before and while it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Bytes in the document (default 64 MiB: a 10,000-event DSCSA shipment is about 15 MiB).
    pub max_bytes: usize,
    /// XML nodes (elements, attributes, texts) in the document (default 8,000,000).
    pub max_nodes: u32,
    /// Element nesting depth (default 48; the deepest standard path, a sensor report's
    /// extension in a 1.2 document, is 9).
    pub max_depth: usize,
    /// Events in the document (default 100,000).
    pub max_events: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 64 << 20,
            max_nodes: 8_000_000,
            max_depth: 48,
            max_events: 100_000,
        }
    }
}

/// The EPCIS version of an XML document, from its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XmlVersion {
    /// `urn:epcglobal:epcis:xsd:1` (1.0 to 1.2).
    Epcis12,
    /// `urn:epcglobal:epcis:xsd:2`.
    Epcis20,
}

/// A party named in the Standard Business Document Header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SbdhParty {
    /// `sbdh:Identifier`, e.g. an SGLN or a GLN.
    pub identifier: String,
    /// Its `Authority` attribute (`SGLN`, `GLN`, …).
    pub authority: Option<String>,
}

/// The SBDH `DocumentIdentification`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentIdentification {
    pub standard: Option<String>,
    pub type_version: Option<String>,
    pub instance_identifier: Option<String>,
    pub doc_type: Option<String>,
    pub creation_date_and_time: Option<String>,
}

/// What an EPCIS document says about itself, outside its events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XmlHeader {
    /// The root's `schemaVersion` attribute as sent (`1.2`, `2.0`, …).
    pub schema_version: String,
    /// The root's `creationDate`.
    pub creation_date: Option<String>,
    /// SBDH `Sender` (the US Healthcare profile requires one).
    pub sender: Option<SbdhParty>,
    /// SBDH `Receiver`.
    pub receiver: Option<SbdhParty>,
    /// SBDH `DocumentIdentification`.
    pub document: Option<DocumentIdentification>,
    /// Header master data in its EPCIS 2.0 JSON-LD form (`{"vocabularyList": [...]}`): the
    /// US Healthcare profile's product (`EPCClass`) and location master data.
    pub master_data: Option<Value>,
}

/// An XML document read: its version, header and events.
#[derive(Debug, Clone, PartialEq)]
pub struct XmlDocument {
    pub version: XmlVersion,
    pub header: XmlHeader,
    /// Each event in document order, as an EPCIS 2.0 JSON-LD event object, or why that one
    /// event could not be read (the others are unaffected).
    pub events: Vec<Result<Value, XmlError>>,
}

/// Why an XML document, or one event in it, was refused. `line` and `column` are 1-based and
/// point at the offending node.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("the document is {size} bytes, more than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("the document is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error(
        "{line}:{column}: a DOCTYPE is not allowed in an EPCIS document (no DTDs, no entity declarations)"
    )]
    Doctype { line: u32, column: u32 },
    #[error(
        "{line}:{column}: unknown entity reference &{name}; (only the five XML entities and character references are read)"
    )]
    UnknownEntity {
        name: String,
        line: u32,
        column: u32,
    },
    #[error("the document has more than {max} XML nodes")]
    TooManyNodes { max: u32 },
    #[error("{line}:{column}: elements nest deeper than {max} levels")]
    TooDeep { max: usize, line: u32, column: u32 },
    #[error("the document has more than {max} events")]
    TooManyEvents { max: usize },
    #[error("{line}:{column}: malformed XML: {reason}")]
    Malformed {
        reason: String,
        line: u32,
        column: u32,
    },
    #[error(
        "{line}:{column}: the root element is {found}, expected EPCISDocument or EPCISQueryDocument in an EPCIS 1.2 or 2.0 namespace"
    )]
    NotEpcis {
        found: String,
        line: u32,
        column: u32,
    },
    #[error("{line}:{column}: {path}: unexpected element {name}")]
    UnexpectedElement {
        path: String,
        name: String,
        line: u32,
        column: u32,
    },
    #[error("{line}:{column}: {path}: required element is missing")]
    MissingElement {
        path: String,
        line: u32,
        column: u32,
    },
    #[error("{line}:{column}: {path}: may appear only once")]
    Repeated {
        path: String,
        line: u32,
        column: u32,
    },
    #[error("{line}:{column}: {path}: {got:?} is not valid, expected {expected}")]
    InvalidValue {
        path: String,
        expected: &'static str,
        got: String,
        line: u32,
        column: u32,
    },
    #[error(
        "{line}:{column}: {event_type} is not an EPCIS 2.0 event type (QuantityEvent was deprecated in 1.1 and removed in 2.0)"
    )]
    UnsupportedEvent {
        event_type: String,
        line: u32,
        column: u32,
    },
    /// Export only: a value holds a character XML 1.0 cannot carry, even escaped.
    #[error("{path}: holds a character XML 1.0 cannot represent (U+{code:04X})")]
    NotXmlText { path: String, code: u32 },
    /// Export only: the event is not an EPCIS 2.0 JSON-LD event this module can write.
    #[error("{path}: expected {expected}")]
    NotAnEvent {
        path: String,
        expected: &'static str,
    },
}

impl XmlError {
    /// A stable code for API answers (docs/EPCIS-XML.md lists them).
    pub fn code(&self) -> &'static str {
        match self {
            XmlError::TooLarge { .. } => "XML_TOO_LARGE",
            XmlError::NotUtf8 { .. } => "XML_NOT_UTF8",
            XmlError::Doctype { .. } => "XML_DOCTYPE",
            XmlError::UnknownEntity { .. } => "XML_ENTITY",
            XmlError::TooManyNodes { .. } => "XML_TOO_MANY_NODES",
            XmlError::TooDeep { .. } => "XML_TOO_DEEP",
            XmlError::TooManyEvents { .. } => "XML_TOO_MANY_EVENTS",
            XmlError::Malformed { .. } => "XML_MALFORMED",
            XmlError::NotEpcis { .. } => "XML_NOT_EPCIS",
            XmlError::UnexpectedElement { .. } => "XML_UNEXPECTED_ELEMENT",
            XmlError::MissingElement { .. } => "XML_MISSING_ELEMENT",
            XmlError::Repeated { .. } => "XML_REPEATED_ELEMENT",
            XmlError::InvalidValue { .. } => "XML_INVALID_VALUE",
            XmlError::UnsupportedEvent { .. } => "XML_UNSUPPORTED_EVENT",
            XmlError::NotXmlText { .. } => "XML_NOT_XML_TEXT",
            XmlError::NotAnEvent { .. } => "XML_NOT_AN_EVENT",
        }
    }
}

/// Reads an EPCIS 1.2 or 2.0 XML document (`EPCISDocument`, or the `EPCISQueryDocument` of a
/// query answer) into EPCIS 2.0 JSON-LD events.
///
/// A document-level problem (size, malformed XML, a DOCTYPE, depth, too many events, not EPCIS)
/// refuses the whole document; a problem inside one event is that event's error in
/// [`XmlDocument::events`], and the other events are still read.
pub fn parse_xml_document(bytes: &[u8], limits: &XmlLimits) -> Result<XmlDocument, XmlError> {
    read::document(bytes, limits)
}
