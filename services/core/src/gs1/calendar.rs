//! Dates: the expiry date of AI (17), whose century the caller resolves, and calendar days.
//!
//! One implementation of the proleptic Gregorian calendar for the whole crate (and for
//! firmware-sim): day counts since 1970-01-01 and back (H. Hinnant's algorithms), month
//! lengths, and [`CalendarDate`], whose `Display` is the ISO 8601 `YYYY-MM-DD` form.

use std::fmt;

use super::Gs1Error;
use super::identifiers::check_digits;

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

pub(super) fn split_yymmdd(s: &str) -> (u8, u8, u8) {
    let two = |i: usize| {
        s.get(i..i + 2)
            .and_then(|v| v.parse::<u8>().ok())
            .unwrap_or(0)
    };
    (two(0), two(2), two(4))
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

/// The proleptic Gregorian date (year, month 1..=12, day 1..=31) of a day count since
/// 1970-01-01, the inverse of `days_from_civil` (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

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
