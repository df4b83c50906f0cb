//! How single values read in the CLI's output, for tables and JSON alike: status words,
//! timestamps, durations, labels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use riposte_proto::v1::{RunStatus, StepStatus};

/// A run status as one lowercase word (`succeeded`).
pub fn run_status(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Unspecified => "unknown",
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
        RunStatus::Queued => "queued",
        RunStatus::Halted => "halted",
    }
}

/// A step status as one lowercase word (`waiting`).
pub fn step_status(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Unspecified => "unknown",
        StepStatus::Waiting => "waiting",
        StepStatus::Running => "running",
        StepStatus::Succeeded => "succeeded",
        StepStatus::Failed => "failed",
        StepStatus::Skipped => "skipped",
        StepStatus::Cancelled => "cancelled",
        StepStatus::AwaitingApproval => "awaiting_approval",
        StepStatus::Sleeping => "sleeping",
    }
}

/// Times are shown in this machine's zone (`--local`) instead of UTC.
static LOCAL: AtomicBool = AtomicBool::new(false);

/// Shows times in this machine's zone from now on (`--local`).
pub fn show_local_times(local: bool) {
    LOCAL.store(local, Ordering::Relaxed);
}

/// An instant in Unix epoch milliseconds as RFC 3339 with milliseconds: UTC
/// (`2025-03-01T12:00:00.250Z`), or with `--local` in this machine's zone
/// (`2025-03-01T13:00:00.250+01:00`); `None` when unset (zero or negative).
pub fn timestamp(at_ms: i64) -> Option<String> {
    let ms = u64::try_from(at_ms).ok().filter(|at_ms| *at_ms > 0)?;
    if LOCAL.load(Ordering::Relaxed) {
        let at = chrono::DateTime::from_timestamp_millis(at_ms)?.with_timezone(&chrono::Local);
        return Some(with_offset(at.fixed_offset()));
    }
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    Some(humantime::format_rfc3339_millis(at).to_string())
}

/// RFC 3339 with milliseconds and the offset.
fn with_offset(at: chrono::DateTime<chrono::FixedOffset>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, false)
}

/// The time of day of an instant, `HH:MM:SS.mmm` (UTC, or with `--local` this machine's),
/// for event lines.
pub fn clock(at_ms: i64) -> String {
    let offset_ms = match LOCAL.load(Ordering::Relaxed) {
        true => chrono::DateTime::from_timestamp_millis(at_ms).map_or(0, |at| {
            let local = at.with_timezone(&chrono::Local).fixed_offset();
            i64::from(local.offset().local_minus_utc()) * 1000
        }),
        false => 0,
    };
    let ms_of_day = (at_ms + offset_ms).rem_euclid(86_400_000);
    let (hours, rest) = (ms_of_day / 3_600_000, ms_of_day % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1000, rest % 1000);
    format!("{hours:02}:{minutes:02}:{seconds:02}.{millis:03}")
}

/// How long something took from `start_ms` to `end_ms`, or until `now_ms` while it is still
/// going (`end_ms` unset); `None` when it has not started.
pub fn elapsed_ms(start_ms: i64, end_ms: i64, now_ms: i64) -> Option<u64> {
    if start_ms <= 0 {
        return None;
    }
    let end_ms = if end_ms > 0 { end_ms } else { now_ms };
    Some(u64::try_from(end_ms - start_ms).unwrap_or(0))
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A duration for people, two units at most: `850ms`, `4.2s`, `3m05s`, `2h07m`, `3d04h`.
pub fn duration(ms: u64) -> String {
    match ms {
        ms if ms < SECOND => format!("{ms}ms"),
        ms if ms < MINUTE => format!("{}.{}s", ms / SECOND, ms % SECOND / 100),
        ms if ms < HOUR => format!("{}m{:02}s", ms / MINUTE, ms % MINUTE / SECOND),
        ms if ms < DAY => format!("{}h{:02}m", ms / HOUR, ms % HOUR / MINUTE),
        ms => format!("{}d{:02}h", ms / DAY, ms % DAY / HOUR),
    }
}

/// An instant seen from `now_ms`, for people: `in 23m`, `5m ago`, `now` within a second.
/// Seconds and minutes are whole (rounded down); from an hour on, two units (`in 2h07m`).
/// `None` when unset (zero or negative).
pub fn relative(at_ms: i64, now_ms: i64) -> Option<String> {
    if at_ms <= 0 {
        return None;
    }
    let distance = at_ms.abs_diff(now_ms);
    let span = match distance {
        ms if ms < SECOND => return Some("now".to_string()),
        ms if ms < MINUTE => format!("{}s", ms / SECOND),
        ms if ms < HOUR => format!("{}m", ms / MINUTE),
        ms => duration(ms),
    };
    Some(if at_ms > now_ms {
        format!("in {span}")
    } else {
        format!("{span} ago")
    })
}

/// Labels as `key=value` pairs sorted by key, comma-separated.
pub fn labels(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = labels.iter().collect();
    pairs.sort();
    let pairs: Vec<_> = pairs
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    pairs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instant_reads_with_its_offset() {
        let east = chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_000_250).unwrap();
        assert_eq!(
            with_offset(at.with_timezone(&east)),
            "2023-11-15T03:43:20.250+05:30"
        );
    }

    #[test]
    fn durations_use_two_units_at_most() {
        let cases = [
            (0, "0ms"),
            (850, "850ms"),
            (1_000, "1.0s"),
            (4_290, "4.2s"),
            (59_999, "59.9s"),
            (60_000, "1m00s"),
            (185_000, "3m05s"),
            (3_600_000, "1h00m"),
            (7_620_000, "2h07m"),
            (86_400_000, "1d00h"),
            (273_600_000, "3d04h"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text, "{ms} ms");
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(
            timestamp(1_700_000_000_250).as_deref(),
            Some("2023-11-14T22:13:20.250Z")
        );
        assert_eq!(timestamp(0), None);
        assert_eq!(timestamp(-5), None);
    }

    #[test]
    fn clock_is_the_utc_time_of_day() {
        assert_eq!(clock(1_700_000_000_250), "22:13:20.250");
        assert_eq!(clock(5), "00:00:00.005");
    }

    #[test]
    fn elapsed_runs_to_now_while_unfinished() {
        assert_eq!(elapsed_ms(1_000, 3_500, 9_000), Some(2_500));
        assert_eq!(elapsed_ms(1_000, 0, 9_000), Some(8_000));
        assert_eq!(elapsed_ms(0, 0, 9_000), None);
        assert_eq!(elapsed_ms(5_000, 0, 1_000), Some(0));
    }

    #[test]
    fn relative_times_look_ahead_and_back() {
        let now = 1_700_000_000_000;
        let cases = [
            (now + 23 * 60_000 + 59_000, "in 23m"),
            (now - 5 * 60_000, "5m ago"),
            (now + 42_500, "in 42s"),
            (now - 1_000, "1s ago"),
            (now + 999, "now"),
            (now - 400, "now"),
            (now + 2 * 3_600_000 + 7 * 60_000, "in 2h07m"),
            (now - 3 * 86_400_000, "3d00h ago"),
        ];
        for (at, text) in cases {
            assert_eq!(relative(at, now).as_deref(), Some(text), "{}", at - now);
        }
        assert_eq!(relative(0, now), None);
        assert_eq!(relative(-1, now), None);
    }

    #[test]
    fn labels_are_sorted_pairs() {
        let map = HashMap::from([
            ("zone".to_string(), "b".to_string()),
            ("os".into(), "linux".into()),
        ]);
        assert_eq!(labels(&map), "os=linux,zone=b");
    }
}
