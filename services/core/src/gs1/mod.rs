//! GS1 identifiers as types: "parse, don't validate".
//!
//! A pack reaches us in four spellings, and a pharmacist must get the same answer for all of
//! them: the raw DataMatrix element string a scanner types (`]d2` + AIs, GS after variable-length
//! fields), the human-readable interpretation printed under the code (`(01)…(21)…`), a GS1 Digital
//! Link URI (`https://…/01/…/21/…?17=…`) and the EPC URN used inside EPCIS events
//! (`urn:epc:id:sgtin:…`). [`parse_code`] accepts all four and returns one [`ScannedCode`]; the
//! identifier types inside it ([`Gtin`], [`Serial`], [`Lot`], [`Expiry`], [`Sscc`], [`Gln`]) can
//! only hold values that passed their checks (length, character set 82, mod-10 check digit,
//! calendar date), so the rules downstream never re-check them.
//!
//! Sources: AI formats from `gs1/gs1-syntax-engine` `gs1-syntax-dictionary.txt` (01/00 N14/N18
//! with check digit, 414 N13 with check digit, 17 `N6,yymmd0`, 10/21 `X..20`, the `*` marks for
//! predefined-length AIs that need no FNC1); EPC URN partitioning from the EPC Tag Data
//! Standard; the Digital Link path grammar (primary key, then qualifiers 22, 10, 21 in that order;
//! data attributes such as 17 in the query string) from the GS1 Digital Link standard.
//!
//! Scanners in keyboard-wedge mode cannot type the invisible GS (0x1D) separator, so they send a
//! substitute. We accept these spellings of GS, none of which can occur inside GS1 character
//! set 82 data except `<GS>`/`<FNC1>` (documented risk: `<`, `>` are legal data characters):
//! the byte 0x1D itself, `<GS>`, `{GS}`, `[GS]`, `<FNC1>`, `{FNC1}`, `^]` (caret notation),
//! the escapes `\x1d`, `\x1D`, `\u001d`, `\u001D`, `\035` and U+241D `␝`. A leading GS (FNC1 in
//! first position leaking through) is ignored. Symbology identifiers `]d2` (DataMatrix),
//! `]Q3` (QR), `]C1` (GS1-128), `]e0` (DataBar) and `]J1` (DotCode) are stripped.
//!
//!
//! The modules follow the spellings: `identifiers` holds the types and their checks,
//! `element_string` the DataMatrix and `(AI)` text forms (with the AI table in `ai`),
//! `digital_link` the URIs, `epc_urn` the Tag Data Standard URNs, and `calendar` the dates
//! (expiry, calendar days). Everything public is re-exported here, so there is one path for
//! each: `gs1::Gtin`, `gs1::parse_code` and so on.
//!
//! Positions in errors are 0-based character offsets into the element string after the
//! symbology identifier is stripped and each GS substitute is replaced by one GS character;
//! for Digital Link and URN input they are character offsets into the input.

mod ai;
mod calendar;
mod digital_link;
mod element_string;
mod epc_urn;
mod identifiers;

pub use calendar::{CalendarDate, Expiry, civil_from_days};
pub(crate) use calendar::{days_from_civil, days_in_month};
pub use digital_link::{percent_decode, percent_encode};
pub use epc_urn::{EpcId, lgtin_urn, parse_epc};
pub use identifiers::{Gln, Gtin, Lot, Serial, Sgln, Sgtin, Sscc, check_digit, is_cs82};

use digital_link::parse_digital_link;
use element_string::{parse_element_string, parse_human_readable};

/// ASCII group separator, the transmitted form of FNC1 after a variable-length field.
pub const GS: char = '\u{1d}';

/// Everything that can be wrong with a scanned or typed GS1 code.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    /// Nothing (or only whitespace) was scanned.
    #[error("the code is empty")]
    Empty,
    /// The input is none of: element string, (AI) text, Digital Link URI, EPC URN.
    #[error(
        "not a GS1 code: expected a DataMatrix element string, (01)… text, a GS1 Digital Link URI or an EPC URN"
    )]
    UnrecognisedFormat,
    /// The mod-10 check digit does not match the other digits.
    #[error(
        "AI ({ai}): check digit is {got} but the other digits require {expected}; the number was mistyped or misread"
    )]
    BadCheckDigit {
        ai: &'static str,
        expected: char,
        got: char,
    },
    /// A field is too short or too long.
    #[error("AI ({ai}): expected {expected} characters, got {got}")]
    WrongLength {
        ai: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// A character outside the field's character set.
    #[error(
        "AI ({ai}): character {ch:?} at position {position} is not allowed (expected {expected})"
    )]
    InvalidCharacter {
        ai: &'static str,
        position: usize,
        ch: char,
        expected: &'static str,
    },
    /// No known Application Identifier starts here.
    #[error(
        "unknown or unsupported Application Identifier at position {position} (starts with {found:?})"
    )]
    UnknownAi { position: usize, found: String },
    /// A variable-length field ran into the next field: the scanner dropped the GS separator.
    #[error(
        "AI ({ai}) has no GS separator before position {position}: the scanner probably dropped FNC1/GS; check its keyboard-wedge settings"
    )]
    MissingSeparator { ai: &'static str, position: usize },
    /// The same AI twice with different values.
    #[error("AI ({ai}) occurs twice with different values (second at position {position})")]
    DuplicateAi { ai: &'static str, position: usize },
    /// Serial, lot or expiry without the GTIN they qualify.
    #[error("the code has no GTIN (AI 01) although it carries {what}")]
    MissingGtin { what: &'static str },
    /// Not a calendar date in YYMMDD form.
    #[error("AI ({ai}): {value:?} is not a valid YYMMDD date ({reason})")]
    BadDate {
        ai: &'static str,
        value: String,
        reason: &'static str,
    },
    /// A Digital Link URI that breaks the path grammar.
    #[error("Digital Link URI at position {position}: {reason}")]
    BadDigitalLink {
        position: usize,
        reason: &'static str,
    },
    /// A `%` escape that is not two hex digits or not UTF-8.
    #[error("bad percent-encoding at position {position}")]
    BadPercentEncoding { position: usize },
    /// An EPC URN that breaks the Tag Data Standard grammar.
    #[error("EPC URN: {reason}")]
    BadEpcUrn { reason: &'static str },
    /// An EPC scheme we do not accept here (e.g. `grai`).
    #[error("EPC scheme {scheme:?} is not supported here (expected sgtin, sscc, sgln or lgtin)")]
    UnsupportedEpcScheme { scheme: String },
    /// A GS1 Company Prefix length outside 6..=12 or too long for the key.
    #[error("GS1 Company Prefix length {len} is invalid (expected 6..=12)")]
    BadCompanyPrefixLength { len: usize },
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// What one scan (or one typed/printed code) identifies.
///
/// `gtin` is optional because a logistic label (SSCC alone) or a location (GLN alone) is also a
/// valid scan; [`Gs1Error::MissingGtin`] is raised when serial, lot or expiry appear without it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScannedCode {
    pub gtin: Option<Gtin>,
    pub serial: Option<Serial>,
    pub lot: Option<Lot>,
    pub expiry: Option<Expiry>,
    pub sscc: Option<Sscc>,
    pub gln: Option<Gln>,
    /// AI 254 / SGLN extension, when present and not "0".
    pub gln_extension: Option<String>,
    /// Other AIs we know the format of (e.g. 11, 22, 30, 710..715), in input order.
    pub other: Vec<(&'static str, String)>,
}

/// Parses any of the four accepted forms: element string (with or without symbology id),
/// `(AI)value` text, GS1 Digital Link URI, or EPC URN (`sgtin`, `sscc`, `sgln`, `lgtin` class).
pub fn parse_code(input: &str) -> Result<ScannedCode, Gs1Error> {
    let trimmed = input.trim_matches(|c: char| c.is_whitespace() && c != GS);
    if trimmed.is_empty() {
        return Err(Gs1Error::Empty);
    }
    let lower_head: String = trimmed
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower_head.starts_with("urn:epc:") {
        return parse_epc(trimmed).map(EpcId::into_scanned);
    }
    if lower_head.starts_with("http://") || lower_head.starts_with("https://") {
        return parse_digital_link(trimmed);
    }
    if trimmed.starts_with('(') {
        return parse_human_readable(trimmed);
    }
    parse_element_string(trimmed)
}

impl ScannedCode {
    /// The serialised pack, when both GTIN and serial are present.
    pub fn sgtin(&self) -> Option<Sgtin> {
        Some(Sgtin {
            gtin: self.gtin.clone()?,
            serial: self.serial.clone()?,
        })
    }
}
