//! RFC 3339 timestamps (`2026-12-01T02:00:00Z`, `2026-12-01T03:00:00.250+01:00`) read as Unix
//! epoch milliseconds, for `until` steps. Pure arithmetic: no clock and no time zone database,
//! so a timestamp must carry its own offset.

use crate::{InvalidValue, ValueKind, yaml};

/// Parses an RFC 3339 timestamp into milliseconds since 1970-01-01T00:00:00Z (negative
/// before). Fractions of a second past the millisecond are dropped; a leap second (`:60`) is
/// read as the start of the next minute, as Unix time has no room for it.
pub(crate) fn parse_ms(text: &str) -> Result<i64, InvalidValue> {
    read(text.trim()).map_err(|why| InvalidValue::new(ValueKind::Timestamp, text, why))
}

const SHAPE: &str = "expected a date and time with a time zone, e.g. `2026-12-01T02:00:00Z` \
                     or `2026-12-01T03:00:00+01:00`";

fn read(text: &str) -> Result<i64, String> {
    let mut at = Cursor { text, at: 0 };
    let year = at.number(4)?;
    at.expect(b"-")?;
    let month = at.number(2)?;
    at.expect(b"-")?;
    let day = at.number(2)?;
    at.expect(b"Tt ")?;
    let hour = at.number(2)?;
    at.expect(b":")?;
    let minute = at.number(2)?;
    at.expect(b":")?;
    let second = at.number(2)?;
    let millis = at.fraction_ms()?;
    let offset_minutes = at.offset()?;
    if let Some(rest) = at.rest() {
        return Err(format!(
            "unexpected `{}` after the time zone",
            yaml::shorten(rest)
        ));
    }
    if !(1..=12).contains(&month) {
        return Err(format!("month must be 01 to 12, found {month:02}"));
    }
    let days_in_month = days_in_month(year, month);
    if !(1..=days_in_month).contains(&day) {
        return Err(format!(
            "day must be 01 to {days_in_month} in {year:04}-{month:02}, found {day:02}"
        ));
    }
    check_range("hour", hour, 23)?;
    check_range("minute", minute, 59)?;
    check_range("second", second, 60)?;
    let days = days_from_civil(i64::from(year), month, day);
    let seconds = i64::from(hour * 3600 + minute * 60 + second);
    Ok(days * 86_400_000 + seconds * 1000 + i64::from(millis) - offset_minutes * 60_000)
}

fn check_range(what: &str, value: u32, max: u32) -> Result<(), String> {
    if value > max {
        return Err(format!("{what} must be 00 to {max}, found {value:02}"));
    }
    Ok(())
}

/// Reads the timestamp left to right.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    /// Exactly `count` ASCII digits.
    fn number(&mut self, count: usize) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + count)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| SHAPE.to_string())?;
        self.at += count;
        digits.parse().map_err(|_| SHAPE.to_string())
    }

    /// One of `allowed`.
    fn expect(&mut self, allowed: &[u8]) -> Result<(), String> {
        match self.peek() {
            Some(b) if allowed.contains(&b) => {
                self.at += 1;
                Ok(())
            }
            _ => Err(SHAPE.to_string()),
        }
    }

    /// `.` and at least one digit, as milliseconds (digits past the third dropped); 0 when
    /// there is no fraction.
    fn fraction_ms(&mut self) -> Result<u32, String> {
        if self.peek() != Some(b'.') {
            return Ok(0);
        }
        self.at += 1;
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = &self.text[start..self.at];
        if digits.is_empty() {
            return Err("expected digits after the decimal point".to_string());
        }
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        padded.parse().map_err(|_| SHAPE.to_string())
    }

    /// `Z` (0) or `+HH:MM` / `-HH:MM`, in minutes east of UTC.
    fn offset(&mut self) -> Result<i64, String> {
        let sign = match self.peek() {
            Some(b'Z' | b'z') => {
                self.at += 1;
                return Ok(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            None => {
                return Err("a time zone is needed: `Z` or an offset like `+02:00`".to_string());
            }
            Some(_) => return Err(SHAPE.to_string()),
        };
        self.at += 1;
        let bad_offset = |_| "expected an offset like `+02:00`".to_string();
        let hours = self.number(2).map_err(bad_offset)?;
        self.expect(b":").map_err(bad_offset)?;
        let minutes = self.number(2).map_err(bad_offset)?;
        check_range("offset hour", hours, 23)?;
        check_range("offset minute", minutes, 59)?;
        Ok(sign * i64::from(hours * 60 + minutes))
    }

    /// What is left, if anything.
    fn rest(&self) -> Option<&str> {
        Some(&self.text[self.at..]).filter(|rest| !rest.is_empty())
    }
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (Howard
/// Hinnant's `days_from_civil`: years counted from March, in 400-year eras).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_civil_knows_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(0, 1, 1), -719_528);
    }

    #[test]
    fn leap_years_follow_the_gregorian_rule() {
        assert!(is_leap(2024) && is_leap(2000) && !is_leap(1900) && !is_leap(2026));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(1900, 2), 28);
    }
}
