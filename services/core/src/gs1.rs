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
//! Positions in errors are 0-based character offsets into the element string after the
//! symbology identifier is stripped and each GS substitute is replaced by one GS character;
//! for Digital Link and URN input they are character offsets into the input.

use std::fmt;

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

    /// Element string as a DataMatrix carries it (without `]d2`): fixed-length AIs first, GS
    /// only between variable-length fields.
    pub fn to_element_string(&self) -> String {
        let mut fields = self.fields();
        // Fixed-length fields need no separator, so putting them first saves GS characters.
        fields.sort_by_key(|(ai, _)| spec_for(ai).is_some_and(|s| !s.fixed_len()));
        let mut out = String::new();
        let mut need_gs = false;
        for (ai, value) in fields {
            if need_gs {
                out.push(GS);
            }
            out.push_str(ai);
            out.push_str(&value);
            need_gs = spec_for(ai).is_some_and(|s| !s.fixed_len());
        }
        out
    }

    /// Human-readable interpretation: `(01)09506000134352(17)201225(10)ABC123(21)XYZ`.
    pub fn to_human_readable(&self) -> String {
        self.fields()
            .into_iter()
            .map(|(ai, v)| format!("({ai}){v}"))
            .collect()
    }

    /// GS1 Digital Link URI on `base` (e.g. `https://id.gs1.org`). Uses the GTIN as primary key,
    /// else the SSCC, else the GLN; `None` when there is no key at all.
    pub fn to_digital_link(&self, base: &str) -> Option<String> {
        let base = base.trim_end_matches('/');
        let mut uri = if let Some(gtin) = &self.gtin {
            let mut u = format!("{base}/01/{gtin}");
            if let Some(lot) = &self.lot {
                u.push_str("/10/");
                u.push_str(&percent_encode(lot.as_str()));
            }
            if let Some(serial) = &self.serial {
                u.push_str("/21/");
                u.push_str(&percent_encode(serial.as_str()));
            }
            u
        } else if let Some(sscc) = &self.sscc {
            format!("{base}/00/{sscc}")
        } else if let Some(gln) = &self.gln {
            let mut u = format!("{base}/414/{gln}");
            if let Some(ext) = &self.gln_extension {
                u.push_str("/254/");
                u.push_str(&percent_encode(ext));
            }
            u
        } else {
            return None;
        };
        if let Some(expiry) = &self.expiry {
            uri.push_str("?17=");
            uri.push_str(expiry.as_str());
        }
        Some(uri)
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut f = Vec::new();
        if let Some(s) = &self.sscc {
            f.push(("00", s.to_string()));
        }
        if let Some(g) = &self.gtin {
            f.push(("01", g.to_string()));
        }
        if let Some(e) = &self.expiry {
            f.push(("17", e.as_str().to_owned()));
        }
        if let Some(l) = &self.lot {
            f.push(("10", l.as_str().to_owned()));
        }
        if let Some(s) = &self.serial {
            f.push(("21", s.as_str().to_owned()));
        }
        if let Some(g) = &self.gln {
            f.push(("414", g.to_string()));
        }
        if let Some(e) = &self.gln_extension {
            f.push(("254", e.clone()));
        }
        f.extend(self.other.iter().cloned());
        f
    }

    /// Stores one AI value, rejecting conflicting duplicates.
    fn set(&mut self, ai: &'static str, value: &str, position: usize) -> Result<(), Gs1Error> {
        fn put<T: PartialEq>(
            slot: &mut Option<T>,
            v: T,
            ai: &'static str,
            position: usize,
        ) -> Result<(), Gs1Error> {
            match slot {
                Some(old) if *old != v => Err(Gs1Error::DuplicateAi { ai, position }),
                _ => {
                    *slot = Some(v);
                    Ok(())
                }
            }
        }
        match ai {
            "01" => put(&mut self.gtin, Gtin::parse_ai(value, "01")?, ai, position),
            "00" => put(&mut self.sscc, Sscc::parse(value)?, ai, position),
            "414" => put(&mut self.gln, Gln::parse_ai(value, "414")?, ai, position),
            "21" => put(&mut self.serial, Serial::parse(value)?, ai, position),
            "10" => put(&mut self.lot, Lot::parse(value)?, ai, position),
            "17" => put(&mut self.expiry, Expiry::parse(value)?, ai, position),
            "254" => {
                check_cs82(value, "254", 0)?;
                put(&mut self.gln_extension, value.to_owned(), ai, position)
            }
            _ => {
                if let Some(spec) = spec_for(ai) {
                    spec.check(value)?;
                }
                if let Some((_, old)) = self.other.iter().find(|(a, _)| *a == ai) {
                    if old != value {
                        return Err(Gs1Error::DuplicateAi { ai, position });
                    }
                    return Ok(());
                }
                self.other.push((ai, value.to_owned()));
                Ok(())
            }
        }
    }

    fn require_gtin(self) -> Result<Self, Gs1Error> {
        if self.gtin.is_none() {
            let what = if self.serial.is_some() {
                "a serial number (21)"
            } else if self.lot.is_some() {
                "a lot (10)"
            } else if self.expiry.is_some() {
                "an expiry date (17)"
            } else if self.sscc.is_none() && self.gln.is_none() {
                "no GS1 key at all"
            } else {
                return Ok(self);
            };
            return Err(Gs1Error::MissingGtin { what });
        }
        Ok(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Identifier types
// ---------------------------------------------------------------------------------------------

/// GTIN normalised to 14 digits, check digit verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin(String);

impl Gtin {
    /// Accepts GTIN-8, -12, -13 or -14 and left-pads to 14 digits.
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        Self::parse_ai(s, "01")
    }

    fn parse_ai(s: &str, ai: &'static str) -> Result<Self, Gs1Error> {
        check_digits(s, ai)?;
        if ![8, 12, 13, 14].contains(&s.len()) {
            return Err(Gs1Error::WrongLength {
                ai,
                expected: "8, 12, 13 or 14",
                got: s.len(),
            });
        }
        let padded = format!("{s:0>14}");
        verify_check_digit(&padded, ai)?;
        Ok(Gtin(padded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Serial Shipping Container Code: 18 digits, check digit verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sscc(String);

impl Sscc {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        check_digits(s, "00")?;
        if s.len() != 18 {
            return Err(Gs1Error::WrongLength {
                ai: "00",
                expected: "18",
                got: s.len(),
            });
        }
        verify_check_digit(s, "00")?;
        Ok(Sscc(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `urn:epc:id:sscc:CompanyPrefix.SerialReference` (extension digit moved to the front of
    /// the serial reference, check digit dropped).
    pub fn to_epc_urn(&self, company_prefix_len: usize) -> Result<String, Gs1Error> {
        check_prefix_len(company_prefix_len)?;
        let d = &self.0;
        let cp = &d[1..1 + company_prefix_len];
        let sr = format!("{}{}", &d[..1], &d[1 + company_prefix_len..17]);
        Ok(format!("urn:epc:id:sscc:{cp}.{sr}"))
    }
}

/// Global Location Number: 13 digits, check digit verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gln(String);

impl Gln {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        Self::parse_ai(s, "414")
    }

    fn parse_ai(s: &str, ai: &'static str) -> Result<Self, Gs1Error> {
        check_digits(s, ai)?;
        if s.len() != 13 {
            return Err(Gs1Error::WrongLength {
                ai,
                expected: "13",
                got: s.len(),
            });
        }
        verify_check_digit(s, ai)?;
        Ok(Gln(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `urn:epc:id:sgln:CompanyPrefix.LocationRef.Extension` (`0` = no extension).
    pub fn to_sgln_urn(
        &self,
        company_prefix_len: usize,
        extension: Option<&str>,
    ) -> Result<String, Gs1Error> {
        check_prefix_len(company_prefix_len)?;
        let cp = &self.0[..company_prefix_len];
        let lr = &self.0[company_prefix_len..12];
        let ext = extension.map_or_else(|| "0".to_owned(), tds_escape);
        Ok(format!("urn:epc:id:sgln:{cp}.{lr}.{ext}"))
    }
}

macro_rules! x20_type {
    ($(#[$doc:meta])* $name:ident, $ai:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// 1..=20 characters of GS1 AI encodable character set 82.
            pub fn parse(s: &str) -> Result<Self, Gs1Error> {
                let n = s.chars().count();
                if n == 0 || n > 20 {
                    return Err(Gs1Error::WrongLength { ai: $ai, expected: "1 to 20", got: n });
                }
                check_cs82(s, $ai, 0)?;
                Ok($name(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

x20_type!(
    /// Serial number, AI (21).
    Serial,
    "21"
);
x20_type!(
    /// Batch or lot number, AI (10).
    Lot,
    "10"
);

/// A calendar date (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CalendarDate {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl CalendarDate {
    /// Builds a date, checking month and day ranges.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        ((1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month))
            .then_some(CalendarDate { year, month, day })
    }

    /// Days since 1970-01-01 (negative before), for comparisons with "today".
    pub fn days_since_epoch(&self) -> i64 {
        days_from_civil(
            i64::from(self.year),
            u32::from(self.month),
            u32::from(self.day),
        )
    }
}

impl fmt::Display for CalendarDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Expiry date, AI (17): YYMMDD where day `00` means "end of that month".
///
/// The century is not in the data; GS1 General Specifications §7.12 resolves it with a sliding
/// window around the current year, so callers pass the reference year (no clock in the core).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expiry(String);

impl Expiry {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        let bad = |reason| Gs1Error::BadDate {
            ai: "17",
            value: s.to_owned(),
            reason,
        };
        check_digits(s, "17")?;
        if s.len() != 6 {
            return Err(Gs1Error::WrongLength {
                ai: "17",
                expected: "6 (YYMMDD)",
                got: s.len(),
            });
        }
        let (yy, mm, dd) = split_yymmdd(s);
        if !(1..=12).contains(&mm) {
            return Err(bad("month must be 01 to 12"));
        }
        // Without the century, 29 February is allowed whenever YY is a multiple of 4.
        let max = days_in_month(2000 + u16::from(yy), mm);
        if dd > max {
            return Err(bad("day is past the end of the month"));
        }
        Ok(Expiry(s.to_owned()))
    }

    /// The six digits as encoded.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Full year per the GS1 §7.12 sliding window: a YY more than 50 years ahead of the
    /// reference year belongs to the previous century, one 50 or more years behind to the next.
    pub fn year(&self, reference_year: u16) -> u16 {
        let (yy, _, _) = split_yymmdd(&self.0);
        let century = reference_year / 100 * 100;
        let diff = i32::from(yy) - i32::from(reference_year % 100);
        let c = if diff >= 51 {
            century.saturating_sub(100)
        } else if diff <= -50 {
            century + 100
        } else {
            century
        };
        c + u16::from(yy)
    }

    /// The last day on which the pack may be dispensed (day 00 → last day of the month).
    pub fn last_valid_day(&self, reference_year: u16) -> CalendarDate {
        let (_, mm, dd) = split_yymmdd(&self.0);
        let year = self.year(reference_year);
        let last = days_in_month(year, mm);
        // `parse` allowed 29 Feb for every YY divisible by 4; a century year that is not leap
        // (2100) clamps to 28 Feb.
        let day = if dd == 0 { last } else { dd.min(last) };
        CalendarDate {
            year,
            month: mm,
            day,
        }
    }

    /// ISO 8601 form of [`Expiry::last_valid_day`].
    pub fn to_iso(&self, reference_year: u16) -> String {
        self.last_valid_day(reference_year).to_string()
    }
}

/// A serialised trade item: GTIN + serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sgtin {
    pub gtin: Gtin,
    pub serial: Serial,
}

impl Sgtin {
    /// `urn:epc:id:sgtin:CompanyPrefix.IndicatorItemRef.Serial`. The GTIN alone does not say
    /// where the company prefix ends, so the caller supplies its length (6..=12).
    pub fn to_epc_urn(&self, company_prefix_len: usize) -> Result<String, Gs1Error> {
        let (cp, ir) = gtin_partition(&self.gtin, company_prefix_len)?;
        Ok(format!(
            "urn:epc:id:sgtin:{cp}.{ir}.{}",
            tds_escape(self.serial.as_str())
        ))
    }

    /// `{base}/01/{gtin}[/10/{lot}]/21/{serial}[?17={yymmdd}]`, percent-encoded.
    pub fn to_digital_link(
        &self,
        base: &str,
        lot: Option<&Lot>,
        expiry: Option<&Expiry>,
    ) -> String {
        let code = ScannedCode {
            gtin: Some(self.gtin.clone()),
            serial: Some(self.serial.clone()),
            lot: lot.cloned(),
            expiry: expiry.cloned(),
            ..ScannedCode::default()
        };
        let base = base.trim_end_matches('/');
        let mut uri = format!("{base}/01/{}", self.gtin);
        if let Some(lot) = &code.lot {
            uri.push_str("/10/");
            uri.push_str(&percent_encode(lot.as_str()));
        }
        uri.push_str("/21/");
        uri.push_str(&percent_encode(self.serial.as_str()));
        if let Some(e) = &code.expiry {
            uri.push_str("?17=");
            uri.push_str(e.as_str());
        }
        uri
    }
}

/// `urn:epc:class:lgtin:CompanyPrefix.IndicatorItemRef.Lot` for a GTIN + lot.
pub fn lgtin_urn(gtin: &Gtin, lot: &Lot, company_prefix_len: usize) -> Result<String, Gs1Error> {
    let (cp, ir) = gtin_partition(gtin, company_prefix_len)?;
    Ok(format!(
        "urn:epc:class:lgtin:{cp}.{ir}.{}",
        tds_escape(lot.as_str())
    ))
}

/// A location: GLN plus optional extension (SGLN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sgln {
    pub gln: Gln,
    pub extension: Option<String>,
}

/// An identifier that can appear in an EPCIS event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EpcId {
    Sgtin(Sgtin),
    Sscc(Sscc),
    Sgln(Sgln),
    /// A GTIN + lot class (`urn:epc:class:lgtin`, or Digital Link `/01/…/10/…`).
    Lgtin {
        gtin: Gtin,
        lot: Lot,
    },
    /// A whole GTIN class (`urn:epc:idpat:sgtin:….*`, or Digital Link `/01/…`).
    GtinClass(Gtin),
}

impl EpcId {
    fn into_scanned(self) -> ScannedCode {
        let mut c = ScannedCode::default();
        match self {
            EpcId::Sgtin(s) => {
                c.gtin = Some(s.gtin);
                c.serial = Some(s.serial);
            }
            EpcId::Sscc(s) => c.sscc = Some(s),
            EpcId::Sgln(s) => {
                c.gln = Some(s.gln);
                c.gln_extension = s.extension;
            }
            EpcId::Lgtin { gtin, lot } => {
                c.gtin = Some(gtin);
                c.lot = Some(lot);
            }
            EpcId::GtinClass(g) => c.gtin = Some(g),
        }
        c
    }

    fn from_scanned(c: ScannedCode) -> Result<Self, Gs1Error> {
        Ok(match c {
            ScannedCode {
                gtin: Some(gtin),
                serial: Some(serial),
                ..
            } => EpcId::Sgtin(Sgtin { gtin, serial }),
            ScannedCode {
                gtin: Some(gtin),
                lot: Some(lot),
                ..
            } => EpcId::Lgtin { gtin, lot },
            ScannedCode { gtin: Some(g), .. } => EpcId::GtinClass(g),
            ScannedCode { sscc: Some(s), .. } => EpcId::Sscc(s),
            ScannedCode {
                gln: Some(gln),
                gln_extension,
                ..
            } => EpcId::Sgln(Sgln {
                gln,
                extension: gln_extension,
            }),
            _ => {
                return Err(Gs1Error::MissingGtin {
                    what: "no GS1 key at all",
                });
            }
        })
    }
}

/// Parses an EPC as EPCIS carries it: an EPC URN (`sgtin`, `sscc`, `sgln`, class `lgtin`,
/// pattern `idpat:sgtin:….*`) or a GS1 Digital Link URI.
pub fn parse_epc(input: &str) -> Result<EpcId, Gs1Error> {
    let s = input.trim();
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return EpcId::from_scanned(parse_digital_link(s)?);
    }
    let (kind, body) = if let Some(rest) = strip_prefix_ci(s, "urn:epc:id:") {
        ("id", rest)
    } else if let Some(rest) = strip_prefix_ci(s, "urn:epc:class:") {
        ("class", rest)
    } else if let Some(rest) = strip_prefix_ci(s, "urn:epc:idpat:") {
        ("idpat", rest)
    } else {
        return Err(Gs1Error::UnrecognisedFormat);
    };
    let (scheme, value) = body.split_once(':').ok_or(Gs1Error::BadEpcUrn {
        reason: "missing scheme",
    })?;
    let scheme_l = scheme.to_ascii_lowercase();
    // Serials and lots may contain '.', so only the first two dots separate fields.
    let parts: Vec<&str> = value.splitn(3, '.').collect();
    match (kind, scheme_l.as_str()) {
        ("id", "sgtin") => {
            let [cp, ir, ser] = parts[..] else {
                return Err(Gs1Error::BadEpcUrn {
                    reason: "sgtin needs CompanyPrefix.ItemRef.Serial",
                });
            };
            let gtin = gtin_from_partition(cp, ir)?;
            let serial = Serial::parse(&tds_unescape(ser)?)?;
            Ok(EpcId::Sgtin(Sgtin { gtin, serial }))
        }
        ("class", "lgtin") => {
            let [cp, ir, lot] = parts[..] else {
                return Err(Gs1Error::BadEpcUrn {
                    reason: "lgtin needs CompanyPrefix.ItemRef.Lot",
                });
            };
            let gtin = gtin_from_partition(cp, ir)?;
            let lot = Lot::parse(&tds_unescape(lot)?)?;
            Ok(EpcId::Lgtin { gtin, lot })
        }
        ("idpat", "sgtin") => {
            let [cp, ir, "*"] = parts[..] else {
                return Err(Gs1Error::BadEpcUrn {
                    reason: "sgtin pattern must be CompanyPrefix.ItemRef.*",
                });
            };
            Ok(EpcId::GtinClass(gtin_from_partition(cp, ir)?))
        }
        ("id", "sscc") => {
            let [cp, sr] = parts[..] else {
                return Err(Gs1Error::BadEpcUrn {
                    reason: "sscc needs CompanyPrefix.SerialReference",
                });
            };
            check_partition(cp, sr, 17)?;
            let body = format!("{}{cp}{}", &sr[..1], &sr[1..]);
            Ok(EpcId::Sscc(Sscc(with_check_digit(&body))))
        }
        ("id", "sgln") => {
            let [cp, lr, ext] = parts[..] else {
                return Err(Gs1Error::BadEpcUrn {
                    reason: "sgln needs CompanyPrefix.LocationRef.Extension",
                });
            };
            check_partition(cp, lr, 12)?;
            let gln = Gln(with_check_digit(&format!("{cp}{lr}")));
            let ext = tds_unescape(ext)?;
            check_cs82(&ext, "254", 0)?;
            let extension = (ext != "0" && !ext.is_empty()).then_some(ext);
            Ok(EpcId::Sgln(Sgln { gln, extension }))
        }
        _ => Err(Gs1Error::UnsupportedEpcScheme {
            scheme: scheme.to_owned(),
        }),
    }
}

/// Mod-10 check digit (GS1 General Specifications §7.9) for the digits *before* the check
/// digit. `None` if `body` contains a non-digit.
pub fn check_digit(body: &str) -> Option<char> {
    let mut sum = 0u32;
    // Weights alternate 3,1,3,… starting from the rightmost data digit.
    for (i, c) in body.chars().rev().enumerate() {
        let d = c.to_digit(10)?;
        sum += if i % 2 == 0 { d * 3 } else { d };
    }
    char::from_digit((10 - sum % 10) % 10, 10)
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for Sscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for Gln {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Display for Sgtin {
    /// Human-readable `(01)…(21)…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(01){}(21){}", self.gtin, self.serial)
    }
}

// ---------------------------------------------------------------------------------------------
// AI table (subset of gs1-syntax-dictionary.txt that a medicine pack or its shipment carries)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Format {
    /// Exactly n digits; `csum` = last digit is a mod-10 check digit.
    Numeric { len: usize, csum: bool },
    /// YYMMDD; `day_zero` allows day 00.
    Date { day_zero: bool },
    /// 1..=max digits.
    NumericVar { max: usize },
    /// 1..=max characters of set 82.
    AlnumVar { max: usize },
    /// N6 date + N4 time (7003).
    DateTime,
}

#[derive(Clone, Copy)]
struct AiSpec {
    ai: &'static str,
    format: Format,
    /// In the GS1 predefined-length table (`*` in the dictionary): never followed by GS.
    predefined: bool,
}

impl AiSpec {
    fn fixed_len(&self) -> bool {
        self.predefined
            || matches!(
                self.format,
                Format::Numeric { .. } | Format::Date { .. } | Format::DateTime
            )
    }

    fn check(&self, v: &str) -> Result<(), Gs1Error> {
        let ai = self.ai;
        match self.format {
            Format::Numeric { len, csum } => {
                check_digits(v, ai)?;
                if v.len() != len {
                    return Err(Gs1Error::WrongLength {
                        ai,
                        expected: len_str(len),
                        got: v.len(),
                    });
                }
                if csum {
                    verify_check_digit(v, ai)?;
                }
            }
            Format::Date { day_zero } => {
                check_digits(v, ai)?;
                if v.len() != 6 {
                    return Err(Gs1Error::WrongLength {
                        ai,
                        expected: "6 (YYMMDD)",
                        got: v.len(),
                    });
                }
                let (yy, mm, dd) = split_yymmdd(v);
                let ok = (1..=12).contains(&mm)
                    && dd <= days_in_month(2000 + u16::from(yy), mm)
                    && (day_zero || dd > 0);
                if !ok {
                    return Err(Gs1Error::BadDate {
                        ai,
                        value: v.to_owned(),
                        reason: "not a calendar date",
                    });
                }
            }
            Format::DateTime => {
                check_digits(v, ai)?;
                if v.len() != 10 {
                    return Err(Gs1Error::WrongLength {
                        ai,
                        expected: "10 (YYMMDDhhmm)",
                        got: v.len(),
                    });
                }
            }
            Format::NumericVar { max } => {
                check_digits(v, ai)?;
                if v.is_empty() || v.len() > max {
                    return Err(Gs1Error::WrongLength {
                        ai,
                        expected: var_len_str(max),
                        got: v.len(),
                    });
                }
            }
            Format::AlnumVar { max } => {
                let n = v.chars().count();
                if n == 0 || n > max {
                    return Err(Gs1Error::WrongLength {
                        ai,
                        expected: var_len_str(max),
                        got: n,
                    });
                }
                check_cs82(v, ai, 0)?;
            }
        }
        Ok(())
    }

    /// Number of characters of a fixed-length value.
    fn len(&self) -> Option<usize> {
        match self.format {
            Format::Numeric { len, .. } => Some(len),
            Format::Date { .. } => Some(6),
            Format::DateTime => Some(10),
            _ => None,
        }
    }

    fn max(&self) -> usize {
        match self.format {
            Format::NumericVar { max } | Format::AlnumVar { max } => max,
            _ => self.len().unwrap_or(0),
        }
    }
}

const fn n(ai: &'static str, len: usize, csum: bool, predefined: bool) -> AiSpec {
    AiSpec {
        ai,
        format: Format::Numeric { len, csum },
        predefined,
    }
}
const fn x(ai: &'static str, max: usize) -> AiSpec {
    AiSpec {
        ai,
        format: Format::AlnumVar { max },
        predefined: false,
    }
}
const fn d(ai: &'static str, day_zero: bool) -> AiSpec {
    AiSpec {
        ai,
        format: Format::Date { day_zero },
        predefined: true,
    }
}

static AI_TABLE: &[AiSpec] = &[
    n("00", 18, true, true),
    n("01", 14, true, true),
    n("02", 14, true, true),
    x("10", 20),
    d("11", false),
    d("13", false),
    d("15", true),
    d("16", true),
    d("17", true),
    n("20", 2, false, true),
    x("21", 20),
    x("22", 20),
    x("235", 28),
    x("240", 30),
    x("241", 30),
    x("250", 30),
    x("251", 30),
    x("254", 20),
    AiSpec {
        ai: "30",
        format: Format::NumericVar { max: 8 },
        predefined: false,
    },
    AiSpec {
        ai: "37",
        format: Format::NumericVar { max: 8 },
        predefined: false,
    },
    x("400", 30),
    n("410", 13, true, true),
    n("411", 13, true, true),
    n("412", 13, true, true),
    n("413", 13, true, true),
    n("414", 13, true, true),
    n("415", 13, true, true),
    n("416", 13, true, true),
    n("417", 13, true, true),
    AiSpec {
        ai: "7003",
        format: Format::DateTime,
        predefined: false,
    },
    x("710", 20),
    x("711", 20),
    x("712", 20),
    x("713", 20),
    x("714", 20),
    x("715", 20),
];

fn spec_for(ai: &str) -> Option<&'static AiSpec> {
    AI_TABLE.iter().find(|s| s.ai == ai)
}

/// The AI at the start of `s`, longest known match first (AIs are prefix-free in practice).
fn ai_at(s: &[char]) -> Option<&'static AiSpec> {
    (2..=4).rev().filter(|&l| l <= s.len()).find_map(|l| {
        let cand: String = s[..l].iter().collect();
        spec_for(&cand)
    })
}

// ---------------------------------------------------------------------------------------------
// Element strings
// ---------------------------------------------------------------------------------------------

const SYMBOLOGY_IDS: &[&str] = &["]d2", "]Q3", "]C1", "]e0", "]J1"];
const GS_SUBSTITUTES: &[&str] = &[
    "<GS>", "{GS}", "[GS]", "<FNC1>", "{FNC1}", "^]", "\\x1d", "\\x1D", "\\u001d", "\\u001D",
    "\\035", "\u{241d}",
];

/// Strips the symbology identifier and rewrites every GS substitute to the GS character.
fn normalise_element_string(input: &str) -> String {
    let mut s = input;
    for id in SYMBOLOGY_IDS {
        if let Some(rest) = s.strip_prefix(id) {
            s = rest;
            break;
        }
    }
    let mut out = s.to_owned();
    for sub in GS_SUBSTITUTES {
        if out.contains(sub) {
            out = out.replace(sub, "\u{1d}");
        }
    }
    out
}

fn parse_element_string(input: &str) -> Result<ScannedCode, Gs1Error> {
    let chars: Vec<char> = normalise_element_string(input).chars().collect();
    let mut code = ScannedCode::default();
    let mut pos = 0;
    while pos < chars.len() {
        if chars[pos] == GS {
            pos += 1;
            continue;
        }
        let spec = ai_at(&chars[pos..]).ok_or_else(|| Gs1Error::UnknownAi {
            position: pos,
            found: chars[pos..].iter().take(4).collect(),
        })?;
        let ai_pos = pos;
        let start = pos + spec.ai.len();
        let value: String;
        if let Some(len) = spec.len() {
            if start + len > chars.len() {
                let got = chars.len().saturating_sub(start);
                return Err(Gs1Error::WrongLength {
                    ai: spec.ai,
                    expected: len_str(len),
                    got,
                });
            }
            value = chars[start..start + len].iter().collect();
            pos = start + len;
        } else {
            let end = chars[start..]
                .iter()
                .position(|&c| c == GS)
                .map_or(chars.len(), |e| start + e);
            if end - start > spec.max() {
                return Err(Gs1Error::MissingSeparator {
                    ai: spec.ai,
                    position: start + spec.max(),
                });
            }
            if let Some(swallowed) = swallowed_field(&chars[start..end], &code) {
                return Err(Gs1Error::MissingSeparator {
                    ai: spec.ai,
                    position: start + swallowed,
                });
            }
            value = chars[start..end].iter().collect();
            pos = end;
        }
        // Character errors are reported at their position in the whole string.
        if let Err(e) = spec.check(&value) {
            return Err(shift_position(e, start));
        }
        code.set(spec.ai, &value, ai_pos)?;
    }
    code.require_gtin()
}

/// Heuristic for a dropped GS after a variable-length field: the value ends with a complete,
/// valid fixed-length field (17 + a real date, 01/00 + a correct check digit) that the code does
/// not have yet, optionally followed by further valid fields. Random serials rarely do that,
/// while `21XYZ17261231` (GS lost before 17) always does. Returns the offset in `value`.
fn swallowed_field(value: &[char], so_far: &ScannedCode) -> Option<usize> {
    (1..value.len()).find(|&i| {
        let rest = &value[i..];
        let Some(spec) = ai_at(rest) else {
            return false;
        };
        let already = match spec.ai {
            "17" => so_far.expiry.is_some(),
            "01" => so_far.gtin.is_some(),
            "00" => so_far.sscc.is_some(),
            _ => return false,
        };
        if already {
            return false;
        }
        let tail: String = rest.iter().collect();
        parse_element_string(&tail).is_ok()
            || (tail.len() == spec.ai.len() + spec.len().unwrap_or(0)
                && spec.check(&tail[spec.ai.len()..]).is_ok())
    })
}

fn shift_position(e: Gs1Error, by: usize) -> Gs1Error {
    match e {
        Gs1Error::InvalidCharacter {
            ai,
            position,
            ch,
            expected,
        } => Gs1Error::InvalidCharacter {
            ai,
            position: position + by,
            ch,
            expected,
        },
        other => other,
    }
}

/// `(01)09506000134352(17)201225(10)ABC123(21)XYZ`. A `(` starts the next AI only when it is
/// followed by 2–4 digits and `)`, because `(` and `)` are legal inside serials and lots.
fn parse_human_readable(input: &str) -> Result<ScannedCode, Gs1Error> {
    let chars: Vec<char> = input.chars().filter(|c| *c != GS).collect();
    let ai_open = |i: usize| -> Option<(String, usize)> {
        if chars.get(i) != Some(&'(') {
            return None;
        }
        let digits: String = chars[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        let close = i + 1 + digits.len();
        ((2..=4).contains(&digits.len()) && chars.get(close) == Some(&')'))
            .then_some((digits, close + 1))
    };
    let mut code = ScannedCode::default();
    let mut pos = 0;
    while pos < chars.len() {
        if chars[pos] == ' ' {
            pos += 1;
            continue;
        }
        let (ai, start) = ai_open(pos).ok_or_else(|| Gs1Error::UnknownAi {
            position: pos,
            found: chars[pos..].iter().take(4).collect(),
        })?;
        let spec = spec_for(&ai).ok_or(Gs1Error::UnknownAi {
            position: pos + 1,
            found: ai.clone(),
        })?;
        let end = (start..chars.len())
            .find(|&i| ai_open(i).is_some())
            .unwrap_or(chars.len());
        let value: String = chars[start..end].iter().collect();
        let value = value.trim_end_matches(' ');
        if let Err(e) = spec.check(value) {
            return Err(shift_position(e, start));
        }
        code.set(spec.ai, value, pos)?;
        pos = end;
    }
    code.require_gtin()
}

// ---------------------------------------------------------------------------------------------
// GS1 Digital Link
// ---------------------------------------------------------------------------------------------

/// Parses an uncompressed GS1 Digital Link URI on any domain. The primary key (01, 00 or 414,
/// or the legacy short names gtin/sscc/gln) may follow any path prefix; key qualifiers follow
/// in the standard's order (22, 10, 21 for 01; 254 for 414). Numeric query parameters are data
/// attributes (17, 11, …); others such as `linkType` are ignored.
fn parse_digital_link(input: &str) -> Result<ScannedCode, Gs1Error> {
    let scheme_end = input.find("://").ok_or(Gs1Error::BadDigitalLink {
        position: 0,
        reason: "missing ://",
    })?;
    let after_scheme = scheme_end + 3;
    let rest = &input[after_scheme..];
    let (rest, _fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (path_part, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path_start = path_part.find('/').ok_or(Gs1Error::BadDigitalLink {
        position: input.len(),
        reason: "no path: expected /01/{gtin}",
    })?;
    if path_start == 0 {
        return Err(Gs1Error::BadDigitalLink {
            position: after_scheme,
            reason: "missing domain name",
        });
    }
    let path = &path_part[path_start + 1..];
    let base_pos = after_scheme + path_start + 1;
    let segs: Vec<&str> = path.split('/').collect();
    let seg_pos = |i: usize| {
        base_pos
            + segs[..i]
                .iter()
                .map(|s| s.chars().count() + 1)
                .sum::<usize>()
    };
    let key_code = |s: &str| match s {
        "01" | "gtin" => Some("01"),
        "00" | "sscc" => Some("00"),
        "414" | "gln" => Some("414"),
        _ => None,
    };
    // The first key segment followed by a digit string: a path prefix (/foo/01/...) is allowed,
    // and qualifier values such as a lot "00" come after the key, so they never shadow it.
    let key_idx = (0..segs.len())
        .find(|&i| {
            key_code(segs[i]).is_some()
                && i + 1 < segs.len()
                && !segs[i + 1].is_empty()
                && segs[i + 1].bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or(Gs1Error::BadDigitalLink {
            position: base_pos,
            reason: "no primary key: expected /01/, /00/ or /414/",
        })?;
    let key = key_code(segs[key_idx]).unwrap_or("01");
    let mut code = ScannedCode::default();
    code.set(
        key,
        &percent_decode(segs[key_idx + 1], seg_pos(key_idx + 1))?,
        seg_pos(key_idx + 1),
    )?;
    let order: &[&str] = match key {
        "01" => &["22", "10", "21"],
        "414" => &["254"],
        _ => &[],
    };
    let mut next_allowed = 0;
    let mut i = key_idx + 2;
    while i < segs.len() {
        if segs[i].is_empty() && i + 1 == segs.len() {
            break; // trailing slash
        }
        let ai = match segs[i] {
            "cpv" => "22",
            "lot" => "10",
            "ser" => "21",
            other => other,
        };
        let idx = order.iter().position(|q| *q == ai).ok_or(Gs1Error::BadDigitalLink {
            position: seg_pos(i),
            reason: "unexpected path segment after the primary key (qualifiers are 22, 10, 21 for a GTIN)",
        })?;
        if idx < next_allowed {
            return Err(Gs1Error::BadDigitalLink {
                position: seg_pos(i),
                reason: "key qualifiers out of order (must be 22, then 10, then 21)",
            });
        }
        next_allowed = idx + 1;
        let value = segs
            .get(i + 1)
            .filter(|v| !v.is_empty())
            .ok_or(Gs1Error::BadDigitalLink {
                position: seg_pos(i),
                reason: "key qualifier without a value",
            })?;
        let ai_static = order[idx];
        let decoded = percent_decode(value, seg_pos(i + 1))?;
        code.set(ai_static, &decoded, seg_pos(i + 1))?;
        i += 2;
    }
    let mut qpos = input.len() - query.len();
    for param in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = param.split_once('=').unwrap_or((param, ""));
        if k.chars().all(|c| c.is_ascii_digit()) && !k.is_empty() {
            let spec = spec_for(k).ok_or(Gs1Error::UnknownAi {
                position: qpos,
                found: k.to_owned(),
            })?;
            if v.is_empty() {
                // `?254` or `?10=` would otherwise set an empty value that no Digital Link,
                // element string or EPC URN can carry.
                return Err(Gs1Error::BadDigitalLink {
                    position: qpos,
                    reason: "data attribute without a value",
                });
            }
            let decoded = percent_decode(v, qpos + k.len() + 1)?;
            code.set(spec.ai, &decoded, qpos)?;
        }
        qpos += param.len() + 1;
    }
    Ok(code)
}

/// Percent-encodes everything outside RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `position` is the offset of `s` in the input, for errors.
pub fn percent_decode(s: &str, position: usize) -> Result<String, Gs1Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // Exactly two hex digits: `from_str_radix` alone would also take "+4".
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(b) = hex else {
                return Err(Gs1Error::BadPercentEncoding {
                    position: position + i,
                });
            };
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Gs1Error::BadPercentEncoding { position })
}

// ---------------------------------------------------------------------------------------------
// EPC URN helpers (Tag Data Standard)
// ---------------------------------------------------------------------------------------------

/// TDS §6: in URN serials these characters must be `%`-escaped.
fn tds_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' | '%' | '&' | '/' | '<' | '>' | '?' => out.push_str(&format!("%{:02X}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

fn tds_unescape(s: &str) -> Result<String, Gs1Error> {
    percent_decode(s, 0).map_err(|_| Gs1Error::BadEpcUrn {
        reason: "bad %-escape in serial/lot",
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix))
    .then(|| &s[prefix.len()..])
}

fn check_prefix_len(len: usize) -> Result<(), Gs1Error> {
    if (6..=12).contains(&len) {
        Ok(())
    } else {
        Err(Gs1Error::BadCompanyPrefixLength { len })
    }
}

/// Company prefix + reference must be all digits, the prefix 6..=12 long, together `total`.
fn check_partition(cp: &str, reference: &str, total: usize) -> Result<(), Gs1Error> {
    if !cp.bytes().all(|b| b.is_ascii_digit()) || !reference.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Gs1Error::BadEpcUrn {
            reason: "company prefix and reference must be digits",
        });
    }
    check_prefix_len(cp.len())?;
    if cp.len() + reference.len() != total || reference.is_empty() && total == cp.len() + 1 {
        return Err(Gs1Error::BadEpcUrn {
            reason: "company prefix and reference have the wrong total length",
        });
    }
    Ok(())
}

fn gtin_from_partition(cp: &str, ir: &str) -> Result<Gtin, Gs1Error> {
    check_partition(cp, ir, 13)?;
    // Indicator digit leads the item reference in the URN but the GTIN in AI 01.
    Ok(Gtin(with_check_digit(&format!(
        "{}{cp}{}",
        &ir[..1],
        &ir[1..]
    ))))
}

fn gtin_partition(gtin: &Gtin, cpl: usize) -> Result<(String, String), Gs1Error> {
    check_prefix_len(cpl)?;
    let g = gtin.as_str();
    Ok((
        g[1..1 + cpl].to_owned(),
        format!("{}{}", &g[..1], &g[1 + cpl..13]),
    ))
}

fn with_check_digit(body: &str) -> String {
    // Only called on strings already checked to be all digits, so a check digit exists.
    let c = check_digit(body).unwrap_or('0');
    format!("{body}{c}")
}

// ---------------------------------------------------------------------------------------------
// Small checks
// ---------------------------------------------------------------------------------------------

fn check_digits(s: &str, ai: &'static str) -> Result<(), Gs1Error> {
    match s.chars().position(|c| !c.is_ascii_digit()) {
        Some(position) => {
            let ch = s.chars().nth(position).unwrap_or('?');
            Err(Gs1Error::InvalidCharacter {
                ai,
                position,
                ch,
                expected: "a digit",
            })
        }
        None => Ok(()),
    }
}

fn verify_check_digit(s: &str, ai: &'static str) -> Result<(), Gs1Error> {
    let (body, got) = s.split_at(s.len() - 1);
    let expected = check_digit(body).unwrap_or('?');
    let got = got.chars().next().unwrap_or('?');
    if expected == got {
        Ok(())
    } else {
        Err(Gs1Error::BadCheckDigit { ai, expected, got })
    }
}

/// GS1 AI encodable character set 82 (General Specifications Figure 7.11-1).
pub fn is_cs82(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c)
}

fn check_cs82(s: &str, ai: &'static str, offset: usize) -> Result<(), Gs1Error> {
    match s.chars().enumerate().find(|(_, c)| !is_cs82(*c)) {
        Some((i, ch)) => Err(Gs1Error::InvalidCharacter {
            ai,
            position: offset + i,
            ch,
            expected: "GS1 character set 82 (letters, digits, !\"%&'()*+,-./:;<=>?_)",
        }),
        None => Ok(()),
    }
}

fn split_yymmdd(s: &str) -> (u8, u8, u8) {
    let two = |i: usize| {
        s.get(i..i + 2)
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0)
    };
    (two(0), two(2), two(4))
}

fn len_str(len: usize) -> &'static str {
    match len {
        2 => "2",
        6 => "6",
        10 => "10",
        13 => "13",
        14 => "14",
        18 => "18",
        _ => "a fixed number of",
    }
}

fn var_len_str(max: usize) -> &'static str {
    match max {
        8 => "1 to 8",
        20 => "1 to 20",
        28 => "1 to 28",
        30 => "1 to 30",
        _ => "a bounded number of",
    }
}

pub(crate) fn is_leap(y: u16) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

pub(crate) fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digit_known_answers() {
        assert_eq!(check_digit("0950600013435"), Some('2'));
        assert_eq!(check_digit("1061414107346"), Some('4'));
        assert_eq!(check_digit("x"), None);
    }

    #[test]
    fn gtin_normalises_short_forms() {
        assert_eq!(
            Gtin::parse("9506000134352").unwrap().as_str(),
            "09506000134352"
        );
        assert_eq!(Gtin::parse("96385074").unwrap().as_str(), "00000096385074");
    }

    #[test]
    fn expiry_century_window_and_day_zero() {
        let e = Expiry::parse("260200").unwrap();
        assert_eq!(
            e.last_valid_day(2026),
            CalendarDate {
                year: 2026,
                month: 2,
                day: 28
            }
        );
        assert_eq!(Expiry::parse("990101").unwrap().year(2026), 1999);
        assert_eq!(Expiry::parse("750101").unwrap().year(2026), 2075);
        assert_eq!(Expiry::parse("760101").unwrap().year(2026), 2076);
        assert_eq!(Expiry::parse("770101").unwrap().year(2026), 1977);
        assert_eq!(Expiry::parse("000101").unwrap().year(2080), 2100);
        assert!(matches!(
            Expiry::parse("251301"),
            Err(Gs1Error::BadDate { .. })
        ));
        assert!(matches!(
            Expiry::parse("250230"),
            Err(Gs1Error::BadDate { .. })
        ));
    }

    #[test]
    fn days_from_civil_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
