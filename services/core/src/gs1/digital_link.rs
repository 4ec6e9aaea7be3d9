//! GS1 Digital Link URIs (`https://…/01/{gtin}/10/{lot}/21/{serial}?17={yymmdd}`): parsing
//! on any domain, and writing them for a code or a pack.

use super::ai::spec_for;
use super::{Expiry, Gs1Error, Lot, ScannedCode, Sgtin};

impl ScannedCode {
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
}

impl Sgtin {
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

/// Parses an uncompressed GS1 Digital Link URI on any domain. The primary key (01, 00 or 414,
/// or the legacy short names gtin/sscc/gln) may follow any path prefix; key qualifiers follow
/// in the standard's order (22, 10, 21 for 01; 254 for 414). Numeric query parameters are data
/// attributes (17, 11, …); others such as `linkType` are ignored.
pub(super) fn parse_digital_link(input: &str) -> Result<ScannedCode, Gs1Error> {
    let (path, query) = split_uri(input)?;
    let mut code = ScannedCode::default();
    let (key, key_idx) = path.primary_key(&mut code)?;
    path.qualifiers(key, key_idx + 2, &mut code)?;
    data_attributes(input, query, &mut code)?;
    Ok(code)
}

/// The path segments of a Digital Link URI, with the character offset of the first one.
struct PathSegments<'a> {
    segs: Vec<&'a str>,
    base_pos: usize,
}

/// Splits a URI into its path segments (after the domain) and its query string.
fn split_uri(input: &str) -> Result<(PathSegments<'_>, &str), Gs1Error> {
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
    let segments = PathSegments {
        segs: path.split('/').collect(),
        base_pos: after_scheme + path_start + 1,
    };
    Ok((segments, query))
}

impl PathSegments<'_> {
    /// The character offset of segment `i`.
    fn pos(&self, i: usize) -> usize {
        self.base_pos
            + self.segs[..i]
                .iter()
                .map(|s| s.chars().count() + 1)
                .sum::<usize>()
    }

    /// Finds the primary key and stores its value; returns the key's AI and segment index.
    fn primary_key(&self, code: &mut ScannedCode) -> Result<(&'static str, usize), Gs1Error> {
        let segs = &self.segs;
        let key_code = |s: &str| match s {
            "01" | "gtin" => Some("01"),
            "00" | "sscc" => Some("00"),
            "414" | "gln" => Some("414"),
            _ => None,
        };
        // The first key segment followed by a digit string: a path prefix (/foo/01/...) is
        // allowed, and qualifier values such as a lot "00" come after the key, so they never
        // shadow it.
        let key_idx = (0..segs.len())
            .find(|&i| {
                key_code(segs[i]).is_some()
                    && i + 1 < segs.len()
                    && !segs[i + 1].is_empty()
                    && segs[i + 1].bytes().all(|b| b.is_ascii_digit())
            })
            .ok_or(Gs1Error::BadDigitalLink {
                position: self.base_pos,
                reason: "no primary key: expected /01/, /00/ or /414/",
            })?;
        let key = key_code(segs[key_idx]).unwrap_or("01");
        code.set(
            key,
            &percent_decode(segs[key_idx + 1], self.pos(key_idx + 1))?,
            self.pos(key_idx + 1),
        )?;
        Ok((key, key_idx))
    }

    /// Stores the key qualifiers from segment `from` on, which must come in the standard's
    /// order for `key`.
    fn qualifiers(&self, key: &str, from: usize, code: &mut ScannedCode) -> Result<(), Gs1Error> {
        let segs = &self.segs;
        let order: &[&'static str] = match key {
            "01" => &["22", "10", "21"],
            "414" => &["254"],
            _ => &[],
        };
        let mut next_allowed = 0;
        let mut i = from;
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
                position: self.pos(i),
                reason: "unexpected path segment after the primary key (qualifiers are 22, 10, 21 for a GTIN)",
            })?;
            if idx < next_allowed {
                return Err(Gs1Error::BadDigitalLink {
                    position: self.pos(i),
                    reason: "key qualifiers out of order (must be 22, then 10, then 21)",
                });
            }
            next_allowed = idx + 1;
            let value =
                segs.get(i + 1)
                    .filter(|v| !v.is_empty())
                    .ok_or(Gs1Error::BadDigitalLink {
                        position: self.pos(i),
                        reason: "key qualifier without a value",
                    })?;
            let decoded = percent_decode(value, self.pos(i + 1))?;
            code.set(order[idx], &decoded, self.pos(i + 1))?;
            i += 2;
        }
        Ok(())
    }
}

/// Stores the numeric query parameters (data attributes such as 17) of `query`, the query
/// string of `input`.
fn data_attributes(input: &str, query: &str, code: &mut ScannedCode) -> Result<(), Gs1Error> {
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
    Ok(())
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
