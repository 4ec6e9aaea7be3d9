//! The AI table: the subset of `gs1-syntax-dictionary.txt` that a medicine pack or its
//! shipment carries, with each AI's format and whether it is of predefined length.

use super::Gs1Error;
use super::calendar::{days_in_month, split_yymmdd};
use super::identifiers::{check_cs82, check_digits, verify_check_digit};

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
pub(super) struct AiSpec {
    pub(super) ai: &'static str,
    format: Format,
    /// In the GS1 predefined-length table (`*` in the dictionary): never followed by GS.
    predefined: bool,
}

impl AiSpec {
    pub(super) fn fixed_len(&self) -> bool {
        self.predefined
            || matches!(
                self.format,
                Format::Numeric { .. } | Format::Date { .. } | Format::DateTime
            )
    }

    pub(super) fn check(&self, v: &str) -> Result<(), Gs1Error> {
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
    pub(super) fn len(&self) -> Option<usize> {
        match self.format {
            Format::Numeric { len, .. } => Some(len),
            Format::Date { .. } => Some(6),
            Format::DateTime => Some(10),
            _ => None,
        }
    }

    pub(super) fn max(&self) -> usize {
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

pub(super) fn spec_for(ai: &str) -> Option<&'static AiSpec> {
    AI_TABLE.iter().find(|s| s.ai == ai)
}

/// The AI at the start of `s`, longest known match first (AIs are prefix-free in practice).
pub(super) fn ai_at(s: &[char]) -> Option<&'static AiSpec> {
    (2..=4).rev().filter(|&l| l <= s.len()).find_map(|l| {
        let cand: String = s[..l].iter().collect();
        spec_for(&cand)
    })
}

pub(super) fn len_str(len: usize) -> &'static str {
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
