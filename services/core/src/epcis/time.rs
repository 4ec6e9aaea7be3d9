//! RFC 3339 / ISO 8601 timestamps as UTC milliseconds, without a date-time dependency.
//!
//! EPCIS times carry their own offset (`2020-03-04T11:00:30.999+01:00`); rules compare instants,
//! and the event hash needs the canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` form. Fractions beyond
//! microseconds are truncated and microseconds round half-up to milliseconds, as the CBV hash
//! reference does (`.1415` → `.142`).

use crate::gs1::{civil_from_days, days_from_civil, days_in_month};

/// Why a timestamp was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeError {
    Syntax,
    Range,
}

impl TimeError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TimeError::Syntax => "expected YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)",
            TimeError::Range => "a date or time component is out of range",
        }
    }
}

/// Parses a timestamp with zone designator into milliseconds since 1970-01-01T00:00:00Z. A
/// missing zone is read as UTC.
pub(crate) fn parse_ms(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = s.get(r).ok_or(TimeError::Syntax)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(TimeError::Syntax);
        }
        part.parse().map_err(|_| TimeError::Syntax)
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(TimeError::Syntax);
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        let start = i + 1;
        let len = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(TimeError::Syntax);
        }
        let frac = &s[start..start + len];
        let six: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        micros = six.parse().map_err(|_| TimeError::Syntax)?;
        i = start + len;
    }
    let offset_min = match &s[i..] {
        "" | "Z" | "z" => 0,
        tz => {
            let sign = match tz.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(TimeError::Syntax),
            };
            let (hh, mm) = match tz.len() {
                6 if tz.as_bytes()[3] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                5 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                3 => (num(i + 1..i + 3)?, 0),
                _ => return Err(TimeError::Syntax),
            };
            if hh > 23 || mm > 59 {
                return Err(TimeError::Range);
            }
            sign * (hh * 60 + mm)
        }
    };
    let month_ok = (1..=12).contains(&mo);
    let max_day = if month_ok {
        i64::from(days_in_month(y as u16, mo as u8))
    } else {
        0
    };
    if !month_ok || d < 1 || d > max_day || h > 23 || mi > 59 || sec > 59 {
        return Err(TimeError::Range);
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3_600 + mi * 60 + sec - offset_min * 60;
    // Round half-up from microseconds to milliseconds.
    Ok(secs * 1_000 + (micros + 500) / 1_000)
}

/// `±hh:mm` → minutes east of UTC.
pub(crate) fn parse_offset_minutes(s: &str) -> Option<i16> {
    let b = s.as_bytes();
    if b.len() != 6 || b[3] != b':' {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hh: i16 = s.get(1..3)?.parse().ok()?;
    let mm: i16 = s.get(4..6)?.parse().ok()?;
    (s[1..3].bytes().all(|c| c.is_ascii_digit())
        && s[4..6].bytes().all(|c| c.is_ascii_digit())
        && hh <= 14
        && mm < 60)
        .then_some(sign * (hh * 60 + mm))
}

/// `YYYY-MM-DDThh:mm:ss.mmmZ` for an instant.
pub(crate) fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1_000);
    let millis = ms.rem_euclid(1_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

/// The CBV hash form of a time value; unparseable input is returned unchanged, as the
/// reference does.
pub(crate) fn canonical(s: &str) -> String {
    parse_ms(s).map(format_ms).unwrap_or_else(|_| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_rounds_to_millis() {
        assert_eq!(
            canonical("2020-04-01T15:00:00+01:00"),
            "2020-04-01T14:00:00.000Z"
        );
        assert_eq!(
            canonical("2023-02-02T11:04:03.1415Z"),
            "2023-02-02T11:04:03.142Z"
        );
        assert_eq!(
            canonical("2023-02-02T11:04:03.1414Z"),
            "2023-02-02T11:04:03.141Z"
        );
        assert_eq!(
            canonical("2023-12-31T23:59:59.9996Z"),
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ms("2000-01-01T00:00:00Z"), Ok(946_684_800_000));
        assert_eq!(parse_ms("2021-02-29T00:00:00Z"), Err(TimeError::Range));
        assert_eq!(parse_ms("yesterday"), Err(TimeError::Syntax));
        assert_eq!(canonical("not a time"), "not a time");
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset_minutes("+01:00"), Some(60));
        assert_eq!(parse_offset_minutes("-06:30"), Some(-390));
        assert_eq!(parse_offset_minutes("01:00"), None);
    }
}
