//! Occurrences of a cron expression in an IANA time zone, as UTC instants (epoch ms).
//!
//! The expression is matched against wall-clock time in the zone: the `cron` crate walks wall
//! times (given to it as if they were UTC, where no time is missing or repeated) and each
//! matching wall time is then placed in the zone:
//!
//! - a wall time that exists once is that instant;
//! - a wall time that occurs twice (the hour repeated when clocks fall back) is its **first**
//!   instant: the repeat is never fired, so `30 1 * * *` fires once on the fall-back day;
//! - a wall time that does not exist (skipped when clocks spring forward) is the **first
//!   instant after the gap**: `30 2 * * *` fires once at 03:00 local time on that day. Several
//!   wall times in the same gap (`*/15` between 02:00 and 03:00) and the first time after it
//!   all land on that instant and count as one occurrence.
//!
//! Left alone, the `cron` crate skips a wall time in a gap (no fire that day) and yields both
//! instants of a repeated one (two fires), which is why it is only asked for wall times here.
//! Occurrences are strictly increasing; the crate knows years 1970 to 2100.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::expr::CronExpr;

/// Widest distance between wall time and UTC in any zone, with margin (UTC-12 to UTC+14).
const OFFSET_SPAN_S: i64 = 26 * 60 * 60;

/// The wall time at `instant_ms` in `tz`, to whole milliseconds.
pub fn wall_at(tz: Tz, instant_ms: i64) -> NaiveDateTime {
    utc(instant_ms).with_timezone(&tz).naive_local()
}

fn utc(instant_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(instant_ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The instant a matching wall time stands for (see the module doc).
pub fn place(tz: Tz, wall: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => at.timestamp_millis(),
        LocalResult::Ambiguous(first, _) => first.timestamp_millis(),
        LocalResult::None => gap_end(tz, wall),
    }
}

/// The first instant whose wall time is later than `wall`, a wall time inside a gap: a binary
/// search over whole seconds, bounded by the widest offset (about 18 steps).
fn gap_end(tz: Tz, wall: NaiveDateTime) -> i64 {
    let centre = wall.and_utc().timestamp();
    let (mut lo, mut hi) = (centre - OFFSET_SPAN_S, centre + OFFSET_SPAN_S);
    let later = |s: i64| wall_at(tz, s * 1000) > wall;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if later(mid) { hi = mid } else { lo = mid }
    }
    hi * 1000
}

/// Whether `instant_ms` lies right after a gap: the wall time one second earlier is more than
/// one second before its own wall time.
pub fn after_gap(tz: Tz, instant_ms: i64) -> bool {
    wall_at(tz, instant_ms) - wall_at(tz, instant_ms - 1000) > Duration::seconds(1)
}

/// Occurrences strictly after `after_ms`, increasing.
pub fn after(expr: &CronExpr, tz: Tz, after_ms: i64) -> impl Iterator<Item = i64> + '_ {
    // No wall time earlier than the one at `after_ms` can stand for a later instant.
    let start = wall_at(tz, after_ms).and_utc();
    let mut last = after_ms;
    expr.inner().after(&start).filter_map(move |wall| {
        let at = place(tz, wall.naive_utc());
        (at > last).then(|| {
            last = at;
            at
        })
    })
}

/// Occurrences strictly before `before_ms`, decreasing.
pub fn before(expr: &CronExpr, tz: Tz, before_ms: i64) -> impl Iterator<Item = i64> + '_ {
    // A wall time up to one offset change later may stand for an earlier instant (the repeated
    // hour): start from the wall time under the larger of now's offset and a day ago's.
    let offset_s = |ms: i64| i64::from(utc(ms).with_timezone(&tz).offset().fix().local_minus_utc());
    let widest = offset_s(before_ms).max(offset_s(before_ms - 24 * 60 * 60 * 1000));
    let start = utc(before_ms) + Duration::seconds(widest) + Duration::seconds(1);
    let start = start.naive_utc().and_utc();
    let mut last = before_ms;
    expr.inner().after(&start).rev().filter_map(move |wall| {
        let at = place(tz, wall.naive_utc());
        (at < last).then(|| {
            last = at;
            at
        })
    })
}

/// The first occurrence strictly after `after_ms`: when a durable timer should wake the
/// caller for this schedule. `None` when the expression never matches again.
pub fn next_due(expr: &CronExpr, tz: Tz, after_ms: i64) -> Option<i64> {
    after(expr, tz, after_ms).next()
}

/// Whether `instant_ms` is an occurrence: its wall time matches, or it ends a gap in which a
/// matching wall time was skipped. (The repeat of a repeated wall time matches the expression
/// but is not an occurrence: see [`is_repeat`].)
pub fn matches(expr: &CronExpr, tz: Tz, instant_ms: i64) -> bool {
    let wall = wall_at(tz, instant_ms);
    if instant_ms % 1000 != 0 {
        return false;
    }
    if expr.inner().includes(wall.and_utc()) && !is_repeat(tz, instant_ms) {
        return true;
    }
    if !after_gap(tz, instant_ms) {
        return false;
    }
    // A match skipped in the gap just before: between the wall time a second earlier and now.
    let gap_start = wall_at(tz, instant_ms - 1000).and_utc();
    expr.inner()
        .after(&gap_start)
        .next()
        .is_some_and(|first| first.naive_utc() <= wall)
}

/// Whether the wall time at `instant_ms` already occurred earlier (the second pass through a
/// repeated hour).
pub fn is_repeat(tz: Tz, instant_ms: i64) -> bool {
    place(tz, wall_at(tz, instant_ms)) < instant_ms - instant_ms.rem_euclid(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("valid timestamp")
            .timestamp_millis()
    }

    #[test]
    fn a_wall_time_in_a_gap_is_placed_at_the_gap_end() {
        let wall = NaiveDateTime::parse_from_str("2026-03-29 02:30:00", "%Y-%m-%d %H:%M:%S")
            .expect("valid");
        assert_eq!(
            place(chrono_tz::Europe::Berlin, wall),
            ms("2026-03-29T01:00:00Z")
        );
        assert!(after_gap(
            chrono_tz::Europe::Berlin,
            ms("2026-03-29T01:00:00Z")
        ));
        assert!(!after_gap(
            chrono_tz::Europe::Berlin,
            ms("2026-03-29T01:00:01Z")
        ));
    }

    #[test]
    fn a_repeated_wall_time_is_placed_at_its_first_instant() {
        let tz = chrono_tz::Europe::Berlin;
        let wall = NaiveDateTime::parse_from_str("2026-10-25 02:30:00", "%Y-%m-%d %H:%M:%S")
            .expect("valid");
        assert_eq!(place(tz, wall), ms("2026-10-25T00:30:00Z"));
        assert!(is_repeat(tz, ms("2026-10-25T01:30:00Z")));
        assert!(!is_repeat(tz, ms("2026-10-25T00:30:00Z")));
    }
}
