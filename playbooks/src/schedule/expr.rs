//! Cron expressions: classic 5-field (`m h dom mon dow`) or 6-field with seconds first
//! (`s m h dom mon dow`), checked and handed to the `cron` crate.
//!
//! The `cron` crate numbers days of the week 1 (Sunday) to 7 (Saturday), Quartz style, and
//! refuses 0; classic cron numbers them 0 (Sunday) to 6 (Saturday), with 7 also Sunday. A
//! schedule written `1-5` means Monday to Friday in classic cron but Sunday to Thursday in the
//! crate. Riposte uses the classic numbering in both forms: the day-of-week field is read
//! here (numbers 0-7, names `sun`..`sat`, lists, ranges, steps) and handed to the crate as
//! names, so the crate's numbering never shows.
//!
//! When both day of month and day of week are restricted, an occurrence must match both (the
//! crate's rule: `0 9 1-7 * mon` is the first Monday of the month), unlike classic cron which
//! fires when either matches.

use std::str::FromStr;

/// Names of the days, classic numbering (index 0 is Sunday).
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Length of a cron expression's text.
pub const CRON_BYTES_MAX: usize = 256;

/// Why a cron expression is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found {0}"
    )]
    FieldCount(usize),
    #[error("cron expression is longer than {CRON_BYTES_MAX} bytes")]
    TooLong,
    #[error("invalid day of week `{0}`: use 0-7 (0 and 7 are sunday) or sun..sat")]
    DayOfWeek(String),
    #[error("invalid cron expression: {0}")]
    Invalid(String),
}

/// A checked cron expression.
#[derive(Debug, Clone)]
pub struct CronExpr {
    source: String,
    schedule: cron::Schedule,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl CronExpr {
    /// Reads a 5- or 6-field expression (classic day-of-week numbering).
    pub fn parse(source: &str) -> Result<CronExpr, CronError> {
        if source.len() > CRON_BYTES_MAX {
            return Err(CronError::TooLong);
        }
        let fields: Vec<&str> = source.split_whitespace().collect();
        let mut six: Vec<String> = match fields.len() {
            5 => std::iter::once("0")
                .chain(fields.iter().copied())
                .map(str::to_string)
                .collect(),
            6 => fields.iter().map(|f| f.to_string()).collect(),
            n => return Err(CronError::FieldCount(n)),
        };
        six[5] = day_of_week_field(&six[5])?;
        let crate_form = six.join(" ");
        let schedule = cron::Schedule::from_str(&crate_form)
            .map_err(|e| CronError::Invalid(crate_message(&e.to_string())))?;
        Ok(CronExpr {
            source: source.trim().to_string(),
            schedule,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The crate's schedule (its day-of-week field already translated).
    pub(crate) fn inner(&self) -> &cron::Schedule {
        &self.schedule
    }
}

/// The crate's message without the echoed expression (its own field numbering) and caret:
/// the last line, lowercase first, without the final period.
fn crate_message(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text);
    let line = line.trim().replace(".)", ")");
    let mut chars = line.trim_end_matches('.').chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Translates a classic day-of-week field into the crate's form: `*` stays, anything else
/// becomes the list of day names it selects.
fn day_of_week_field(field: &str) -> Result<String, CronError> {
    if field == "*" || field == "?" {
        return Ok("*".to_string());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        for day in day_item(item).ok_or_else(|| CronError::DayOfWeek(item.to_string()))? {
            days[day] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_string());
    }
    let names: Vec<&str> = (0..7).filter(|d| days[*d]).map(|d| DAY_NAMES[d]).collect();
    Ok(names.join(","))
}

/// The days (0 = Sunday) one list item selects: `*`, `n`, `a-b`, each with an optional `/step`.
fn day_item(item: &str) -> Option<Vec<usize>> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, step.parse::<usize>().ok().filter(|s| *s > 0)?),
        None => (item, 1),
    };
    let (start, end) = match range {
        "*" => (0, 6),
        _ => match range.split_once('-') {
            Some((a, b)) => (day_number(a)?, day_number(b)?),
            // `5/2` means from 5 to the end, as in classic cron.
            None if item.contains('/') => (day_number(range)?, 6),
            None => (day_number(range)?, day_number(range)?),
        },
    };
    if start > end {
        return None;
    }
    // 7 is Sunday again: `5-7` is Friday to Sunday.
    Some((start..=end).step_by(step).map(|d| d % 7).collect())
}

fn day_number(text: &str) -> Option<usize> {
    if let Ok(n) = text.parse::<usize>() {
        return (n <= 7).then_some(n);
    }
    let lower = text.to_ascii_lowercase();
    DAY_NAMES.iter().position(|name| *name == lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cron::TimeUnitSpec;

    fn crate_form(field: &str) -> String {
        day_of_week_field(field).expect("valid field")
    }

    #[test]
    fn classic_day_numbers_become_names() {
        assert_eq!(crate_form("1-5"), "mon,tue,wed,thu,fri");
        assert_eq!(crate_form("0"), "sun");
        assert_eq!(crate_form("7"), "sun");
        assert_eq!(crate_form("5-7"), "sun,fri,sat");
        assert_eq!(crate_form("mon-fri/2"), "mon,wed,fri");
        assert_eq!(crate_form("SAT,sun"), "sun,sat");
        assert_eq!(crate_form("*/1"), "*");
        assert_eq!(crate_form("0-7"), "*");
    }

    #[test]
    fn bad_day_fields_are_refused() {
        for bad in ["8", "fri-mon", "x", "1/0", "", "1,,2", "L", "1#2"] {
            assert!(day_of_week_field(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn five_fields_get_zero_seconds_and_six_are_kept() {
        let five = CronExpr::parse("30 2 * * 1-5").expect("valid");
        assert!(five.inner().seconds().includes(0));
        assert!(!five.inner().seconds().includes(1));
        let six = CronExpr::parse("*/10 * * * * *").expect("valid");
        assert!(six.inner().seconds().includes(10));
        // Monday in classic numbering is the crate's 2.
        assert!(five.inner().days_of_week().includes(2));
        assert!(!five.inner().days_of_week().includes(1));
    }

    #[test]
    fn wrong_shapes_are_refused() {
        assert_eq!(CronExpr::parse("* * * *"), Err(CronError::FieldCount(4)));
        assert_eq!(
            CronExpr::parse("0 0 * * * * 2030").map(|_| ()),
            Err(CronError::FieldCount(7))
        );
        assert!(matches!(
            CronExpr::parse("61 * * * *"),
            Err(CronError::Invalid(_))
        ));
        assert!(matches!(
            CronExpr::parse("0 25 * * *"),
            Err(CronError::Invalid(_))
        ));
    }
}
