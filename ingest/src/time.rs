//! Timestamps as vendors send them, to Unix epoch milliseconds. Pure: no clock is read.
//!
//! Accepted: RFC 3339 / ISO 8601 date-times (`2025-01-15T10:05:03.626Z`, `T` or a space,
//! any number of fraction digits, `Z`, `±hh:mm` or no zone, read as UTC as the `...Utc`
//! field names say) and epoch milliseconds as a number or a string of digits.

/// Parses an RFC 3339 date-time into epoch milliseconds; `None` if it is not one.
pub fn rfc3339_ms(text: &str) -> Option<i64> {
    let b = text.trim().as_bytes();
    if b.len() < 19 || b.len() > 40 {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let separators = b[4] == b'-' && b[7] == b'-' && b[13] == b':' && b[16] == b':';
    if !separators || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let (millis, rest) = fraction_ms(&b[19..])?;
    let offset_s = zone_offset_s(rest)?;
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_s;
    Some(seconds * 1_000 + millis)
}

/// Reads epoch milliseconds from a JSON number or a string of ASCII digits.
pub fn epoch_ms(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => epoch_ms_text(s),
        _ => None,
    }
}

/// Reads epoch milliseconds from a string of 1 to 15 ASCII digits.
pub fn epoch_ms_text(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.is_empty() || t.len() > 15 || !t.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// A date-time string (RFC 3339) or epoch milliseconds (number or digits).
pub fn any_ms(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(s) => rfc3339_ms(s).or_else(|| epoch_ms_text(s)),
        other => epoch_ms(other),
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |acc, d| acc * 10 + i64::from(d - b'0')))
}

/// `.123456789` → (123, rest after the digits); no fraction → (0, input).
fn fraction_ms(b: &[u8]) -> Option<(i64, &[u8])> {
    if b.first() != Some(&b'.') {
        return Some((0, b));
    }
    let n = b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let mut ms = 0;
    for i in 0..3 {
        let d = b
            .get(1 + i)
            .filter(|_| i < n)
            .map_or(0, |d| i64::from(d - b'0'));
        ms = ms * 10 + d;
    }
    Some((ms, &b[1 + n..]))
}

fn zone_offset_s(b: &[u8]) -> Option<i64> {
    match b {
        [] | [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let s = hours * 3_600 + minutes * 60;
            Some(if *sign == b'-' { -s } else { s })
        }
        _ => None,
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_forms() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("2025-01-15T10:00:00Z"), Some(1_736_935_200_000));
        assert_eq!(
            rfc3339_ms("2025-01-15T10:05:03.626Z"),
            Some(1_736_935_503_626)
        );
        assert_eq!(
            rfc3339_ms("2025-01-15T10:06:01.6158361Z"),
            Some(1_736_935_561_615)
        );
        assert_eq!(
            rfc3339_ms("2025-01-15T11:00:00+01:00"),
            Some(1_736_935_200_000)
        );
        assert_eq!(rfc3339_ms("2025-01-15 10:00:00"), Some(1_736_935_200_000));
        assert_eq!(rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
    }

    #[test]
    fn rfc3339_rejects() {
        for bad in [
            "",
            "2025-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-01-15T24:00:00Z",
            "2025-01-15X10:00:00Z",
            "2025-01-15T10:00:00.Z",
            "2025-01-15T10:00:00+1:00",
            "Jan 15 10:00:00",
            "3/22/2019 1:36:31 PM",
            "２025-01-15T10:00:00Z",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn epoch_forms() {
        assert_eq!(epoch_ms_text("1736935200000"), Some(1_736_935_200_000));
        assert_eq!(epoch_ms_text("12a"), None);
        assert_eq!(epoch_ms_text("9999999999999999"), None);
        assert_eq!(epoch_ms(&serde_json::json!(5)), Some(5));
        assert_eq!(
            any_ms(&serde_json::json!("1970-01-01T00:00:01Z")),
            Some(1000)
        );
    }
}
