//! Element strings, as a DataMatrix carries them (`]d2`, AIs, GS after variable-length
//! fields), and their human-readable `(AI)value` text; and the AI-keyed view of a
//! [`ScannedCode`] that both spellings and the Digital Link parser fill.

use super::ai::{ai_at, len_str, spec_for};
use super::identifiers::check_cs82;
use super::{Expiry, GS, Gln, Gs1Error, Gtin, Lot, ScannedCode, Serial, Sscc};

impl ScannedCode {
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

    pub(super) fn fields(&self) -> Vec<(&'static str, String)> {
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
    pub(super) fn set(
        &mut self,
        ai: &'static str,
        value: &str,
        position: usize,
    ) -> Result<(), Gs1Error> {
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

    pub(super) fn require_gtin(self) -> Result<Self, Gs1Error> {
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

pub(super) fn parse_element_string(input: &str) -> Result<ScannedCode, Gs1Error> {
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
pub(super) fn parse_human_readable(input: &str) -> Result<ScannedCode, Gs1Error> {
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
