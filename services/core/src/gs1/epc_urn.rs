//! EPC URNs as EPCIS events carry them (Tag Data Standard): `sgtin`, `sscc`, `sgln`, the
//! `lgtin` class and the `idpat:sgtin` pattern, parsed into [`EpcId`] and written from the
//! identifier types given the length of the GS1 Company Prefix.

use super::digital_link::{parse_digital_link, percent_decode};
use super::identifiers::{check_cs82, with_check_digit};
use super::{Gln, Gs1Error, Gtin, Lot, ScannedCode, Serial, Sgln, Sgtin, Sscc};

impl Sscc {
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

impl Gln {
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
}

/// `urn:epc:class:lgtin:CompanyPrefix.IndicatorItemRef.Lot` for a GTIN + lot.
pub fn lgtin_urn(gtin: &Gtin, lot: &Lot, company_prefix_len: usize) -> Result<String, Gs1Error> {
    let (cp, ir) = gtin_partition(gtin, company_prefix_len)?;
    Ok(format!(
        "urn:epc:class:lgtin:{cp}.{ir}.{}",
        tds_escape(lot.as_str())
    ))
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
    pub(super) fn into_scanned(self) -> ScannedCode {
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

    pub(super) fn from_scanned(c: ScannedCode) -> Result<Self, Gs1Error> {
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
