//! The identifier types: each holds only a value that passed its checks (digits, length,
//! mod-10 check digit, character set 82), so code that receives one never checks it again.

use std::fmt;

use super::Gs1Error;

/// GTIN normalised to 14 digits, check digit verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin(pub(super) String);

impl Gtin {
    /// Accepts GTIN-8, -12, -13 or -14 and left-pads to 14 digits.
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        Self::parse_ai(s, "01")
    }

    pub(super) fn parse_ai(s: &str, ai: &'static str) -> Result<Self, Gs1Error> {
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
pub struct Sscc(pub(super) String);

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
}

/// Global Location Number: 13 digits, check digit verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gln(pub(super) String);

impl Gln {
    pub fn parse(s: &str) -> Result<Self, Gs1Error> {
        Self::parse_ai(s, "414")
    }

    pub(super) fn parse_ai(s: &str, ai: &'static str) -> Result<Self, Gs1Error> {
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

/// A serialised trade item: GTIN + serial number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sgtin {
    pub gtin: Gtin,
    pub serial: Serial,
}

/// A location: GLN plus optional extension (SGLN).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sgln {
    pub gln: Gln,
    pub extension: Option<String>,
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

pub(super) fn with_check_digit(body: &str) -> String {
    // Only called on strings already checked to be all digits, so a check digit exists.
    let c = check_digit(body).unwrap_or('0');
    format!("{body}{c}")
}

pub(super) fn check_digits(s: &str, ai: &'static str) -> Result<(), Gs1Error> {
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

pub(super) fn verify_check_digit(s: &str, ai: &'static str) -> Result<(), Gs1Error> {
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

pub(super) fn check_cs82(s: &str, ai: &'static str, offset: usize) -> Result<(), Gs1Error> {
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
}
