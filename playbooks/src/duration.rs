//! Duration text (`100ms`, `30s`, `1h30m`, `7d`): parsing with readable errors, and a compact
//! format for plans.

use crate::{InvalidValue, ValueKind};

/// Parses duration text into milliseconds (sub-millisecond parts are dropped).
pub(crate) fn parse_ms(text: &str) -> Result<u64, InvalidValue> {
    let trimmed = text.trim();
    let duration = humantime::parse_duration(trimmed)
        .map_err(|error| InvalidValue::new(ValueKind::Duration, text, explain(&error)))?;
    u64::try_from(duration.as_millis())
        .map_err(|_| InvalidValue::new(ValueKind::Duration, text, "too large"))
}

fn explain(error: &humantime::DurationError) -> String {
    match error {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a unit is needed, e.g. `30s`".to_string()
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit `{unit}` (use ms, s, m, h or d)")
        }
        humantime::DurationError::NumberOverflow => "too large".to_string(),
        humantime::DurationError::Empty => "empty".to_string(),
        humantime::DurationError::InvalidCharacter(_)
        | humantime::DurationError::NumberExpected(_) => {
            "expected a positive number and a unit, e.g. `30s`, `5m` or `1h30m`".to_string()
        }
    }
}

/// Formats milliseconds compactly and in a form [`parse_ms`] reads back: `1h30m`, `100ms`.
pub(crate) fn format_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
        (1, "ms"),
    ];
    let mut rest = ms;
    let mut text = String::new();
    for (size, unit) in UNITS {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(parse_ms("100ms"), Ok(100));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_ms(" 7d "), Ok(604_800_000));
        assert_eq!(parse_ms("0s"), Ok(0));
    }

    #[test]
    fn explains_bad_text() {
        assert_eq!(
            parse_ms("10 parsecs").map_err(|e| e.to_string()),
            Err(
                "invalid duration `10 parsecs`: unknown unit `parsecs` (use ms, s, m, h or d)"
                    .into()
            )
        );
        assert!(parse_ms("-5s").is_err());
        assert!(parse_ms("5").is_err());
        assert!(parse_ms("").is_err());
    }

    #[test]
    fn format_reads_back() {
        for ms in [
            1, 100, 1000, 30_000, 90_000, 5_400_000, 86_400_000, 93_784_005,
        ] {
            assert_eq!(parse_ms(&format_ms(ms)), Ok(ms), "{}", format_ms(ms));
        }
        assert_eq!(format_ms(5_400_000), "1h30m");
        assert_eq!(format_ms(0), "0s");
    }
}
