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

/// Weekly maintenance windows in one zone, written as text (a rollout's `waves.window`):
/// `DAYS HH:MM-HH:MM[; DAYS HH:MM-HH:MM]... [ZONE]`, days as `sat,sun`, `mon-fri` or `daily`,
/// the zone an IANA name (UTC by default): `"sat,sun 22:00-04:00 Europe/Berlin"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub windows: Vec<Window>,
    pub zone: chrono_tz::Tz,
}

/// Windows a text may hold.
pub const WINDOWS_MAX: usize = 16;

/// Why a maintenance window text does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidWindows(String);

impl Windows {
    /// Reads the text form; the problem in words when it does not read.
    pub fn parse(text: &str) -> Result<Windows, InvalidWindows> {
        Windows::read(text).map_err(InvalidWindows)
    }

    fn read(text: &str) -> Result<Windows, String> {
        let mut windows = Vec::new();
        let mut zone = None;
        for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let words: Vec<&str> = item.split_whitespace().collect();
            let (days, span, tz) = match words.as_slice() {
                [days, span] => (*days, *span, None),
                [days, span, tz] => (*days, *span, Some(*tz)),
                _ => return Err(format!("`{item}` is not `DAYS HH:MM-HH:MM [ZONE]`")),
            };
            if let Some(tz) = tz {
                let tz: chrono_tz::Tz = tz
                    .parse()
                    .map_err(|_| format!("unknown time zone `{tz}` (an IANA name)"))?;
                if zone.is_some_and(|z| z != tz) {
                    return Err("every window of a rollout is in one time zone".into());
                }
                zone = Some(tz);
            }
            let (start, end) = span
                .split_once('-')
                .ok_or_else(|| format!("`{span}` is not `HH:MM-HH:MM`"))?;
            let start_minute = parse_hhmm(start, false)
                .ok_or_else(|| format!("`{start}` is not a time `HH:MM`"))?;
            let end_minute =
                parse_hhmm(end, true).ok_or_else(|| format!("`{end}` is not a time `HH:MM`"))?;
            if start_minute == end_minute {
                return Err(format!("`{span}` opens and closes at the same time"));
            }
            windows.push(Window {
                days: parse_days(days)?,
                start_minute,
                end_minute,
            });
        }
        if windows.is_empty() {
            return Err("no window: write `DAYS HH:MM-HH:MM`, e.g. `sat,sun 22:00-04:00`".into());
        }
        if windows.len() > WINDOWS_MAX {
            return Err(format!(
                "{} windows, more than {WINDOWS_MAX}",
                windows.len()
            ));
        }
        Ok(Windows {
            windows,
            zone: zone.unwrap_or(chrono_tz::UTC),
        })
    }

    /// Whether a window is open at `at_ms`.
    pub fn open_at(&self, at_ms: i64) -> bool {
        open(&self.windows, super::occur::wall_at(self.zone, at_ms))
    }

    /// The next instant after `at_ms` at which a window opens (within the next 8 days).
    pub fn next_open(&self, at_ms: i64) -> Option<i64> {
        let today = super::occur::wall_at(self.zone, at_ms).date();
        (0..=8)
            .filter_map(|d| today.checked_add_days(chrono::Days::new(d)))
            .flat_map(|date| {
                self.windows
                    .iter()
                    .filter(move |w| w.days.contains(&date.weekday()))
                    .filter_map(move |w| {
                        let (h, m) = (w.start_minute / 60, w.start_minute % 60);
                        date.and_hms_opt(h, m, 0)
                    })
            })
            .map(|wall| super::occur::place(self.zone, wall))
            .filter(|at| *at > at_ms)
            .min()
    }
}

/// `sat,sun`, `mon-fri`, `daily` (or `*`).
fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    if matches!(text, "daily" | "*") {
        return Ok(ALL_DAYS.to_vec());
    }
    let mut days = Vec::new();
    for part in text.split(',') {
        let day = |t: &str| parse_day(t).ok_or_else(|| format!("`{t}` is not a day name"));
        match part.split_once('-') {
            Some((from, to)) => {
                let (mut at, to) = (day(from)?, day(to)?);
                days.push(at);
                while at != to {
                    at = at.succ();
                    days.push(at);
                }
            }
            None => days.push(day(part)?),
        }
    }
    days.sort_by_key(Weekday::num_days_from_monday);
    days.dedup();
    Ok(days)
}

const ALL_DAYS: [Weekday; 7] = [
    Weekday::Mon,
    Weekday::Tue,
    Weekday::Wed,
    Weekday::Thu,
    Weekday::Fri,
    Weekday::Sat,
    Weekday::Sun,
];

/// Reads a day name (`mon`, `monday`, any case).
pub fn parse_day(text: &str) -> Option<Weekday> {
    text.parse::<Weekday>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_text_reads_and_finds_the_next_opening() {
        let w = Windows::parse("sat,sun 22:00-04:00; mon-wed 01:00-02:00 Europe/Berlin").unwrap();
        assert_eq!(w.zone, chrono_tz::Europe::Berlin);
        assert_eq!(
            w.windows[1].days,
            [Weekday::Mon, Weekday::Tue, Weekday::Wed]
        );
        // Monday 2026-01-05 00:30 UTC is 01:30 in Berlin: open; 04:00 UTC is 05:00, after
        // Sunday night's window and Monday's: closed, next opening Tuesday 01:00 Berlin,
        // 00:00 UTC.
        let monday = 1_767_571_200_000;
        assert!(w.open_at(monday + 30 * 60_000));
        assert!(!w.open_at(monday + 4 * 3_600_000));
        let next = w.next_open(monday + 4 * 3_600_000);
        assert_eq!(next, Some(monday + 24 * 3_600_000));
        for bad in [
            "",
            "sat 22:00",
            "sat 25:00-26:00",
            "xyz 01:00-02:00",
            "sat 01:00-01:00",
        ] {
            assert!(Windows::parse(bad).is_err(), "{bad}");
        }
        assert!(Windows::parse("daily 00:00-24:00 Mars/Olympus").is_err());
    }

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
