//! Maintenance windows: weekly spans of wall time in the schedule's zone, outside which an
//! occurrence does not fire.
//!
//! A window opens on each of its `days` at `start` and closes at `end`, the same day when
//! `end` is later than `start` and the next day when it is not (`22:00` to `04:00` on `fri`
//! is Friday 22:00 to Saturday 04:00). `start` is inside, `end` is not; `end` may be `24:00`.
//! A window is judged on the wall time of the instant (after placing a DST gap's wall time at
//! the gap end, see `occur`).

use chrono::{Datelike, NaiveDateTime, Timelike, Weekday};

/// Minutes in a day; `24:00` is this many minutes.
pub const DAY_MINUTES: u32 = 24 * 60;

/// One weekly maintenance window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The days it opens on, Monday first, each at most once.
    pub days: Vec<Weekday>,
    /// Minute of the day it opens, `0..DAY_MINUTES`.
    pub start_minute: u32,
    /// Minute of the day it closes, `1..=DAY_MINUTES`, different from `start_minute`; not later
    /// than `start_minute` means the next day.
    pub end_minute: u32,
}

impl Window {
    /// Whether the window is open at `wall` (minute resolution: seconds do not matter).
    pub fn contains(&self, wall: NaiveDateTime) -> bool {
        let minute = wall.hour() * 60 + wall.minute();
        let today = self.days.contains(&wall.weekday());
        if self.start_minute < self.end_minute {
            return today && (self.start_minute..self.end_minute).contains(&minute);
        }
        let yesterday = self.days.contains(&wall.weekday().pred());
        (today && minute >= self.start_minute) || (yesterday && minute < self.end_minute)
    }
}

/// Whether an occurrence at `wall` may fire: no windows, or inside at least one.
pub fn open(windows: &[Window], wall: NaiveDateTime) -> bool {
    windows.is_empty() || windows.iter().any(|w| w.contains(wall))
}

/// Reads `HH:MM` (24-hour, two digits each) as minutes of the day; `24:00` only when
/// `allow_end_of_day`.
pub fn parse_hhmm(text: &str, allow_end_of_day: bool) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let minute = h * 60 + m;
    match (h, m) {
        (24, 0) if allow_end_of_day => Some(DAY_MINUTES),
        (0..=23, 0..=59) => Some(minute),
        _ => None,
    }
}

/// Reads a day name (`mon`, `monday`, any case).
pub fn parse_day(text: &str) -> Option<Weekday> {
    text.parse::<Weekday>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").expect("valid wall time")
    }

    #[test]
    fn a_window_across_midnight_belongs_to_the_day_it_opens() {
        // 2026-12-04 is a Friday.
        let w = Window {
            days: vec![Weekday::Fri],
            start_minute: 22 * 60,
            end_minute: 4 * 60,
        };
        assert!(!w.contains(at("2026-12-04 21:59")));
        assert!(w.contains(at("2026-12-04 22:00")));
        assert!(w.contains(at("2026-12-05 03:59")));
        assert!(!w.contains(at("2026-12-05 04:00")));
        assert!(
            !w.contains(at("2026-12-05 22:30")),
            "saturday is not listed"
        );
        assert!(
            !w.contains(at("2026-12-04 03:00")),
            "thursday night is not listed"
        );
    }

    #[test]
    fn a_same_day_window_ends_before_end() {
        let w = Window {
            days: vec![Weekday::Mon, Weekday::Tue],
            start_minute: 9 * 60,
            end_minute: DAY_MINUTES,
        };
        assert!(w.contains(at("2026-11-30 23:59")));
        assert!(!w.contains(at("2026-12-01 08:59")));
        assert!(!w.contains(at("2026-12-02 09:00")), "wednesday");
        assert!(open(&[], at("2026-12-02 09:00")));
    }

    #[test]
    fn times_are_strict() {
        assert_eq!(parse_hhmm("22:00", false), Some(1320));
        assert_eq!(parse_hhmm("24:00", true), Some(DAY_MINUTES));
        for bad in ["24:00", "7:00", "07:60", "25:00", "07:00:00", "ab:cd", ""] {
            assert_eq!(parse_hhmm(bad, false), None, "{bad}");
        }
        assert_eq!(parse_day("Mon"), Some(Weekday::Mon));
        assert_eq!(parse_day("moon"), None);
    }
}
