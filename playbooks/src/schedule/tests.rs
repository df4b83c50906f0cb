//! Schedule tests: spec diagnostics, DST in real zones, and plan transcripts (entries and
//! fires as text), plus property tests over random expressions and time ranges.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

use chrono::DateTime;
use chrono_tz::Tz;
use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;

fn ms(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid timestamp")
        .timestamp_millis()
}

fn show(at: i64) -> String {
    DateTime::from_timestamp_millis(at)
        .expect("in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn schedule(extra: &str) -> Schedule {
    let source = format!("name: s\nplaybook: p\n{extra}");
    parse(&source).unwrap_or_else(|d| panic!("test schedule parses: {d:?}"))
}

fn diagnostics(source: &str) -> String {
    let problems = parse(source).expect_err("schedule should be refused");
    problems.iter().map(|d| format!("{d}\n")).collect()
}

/// Occurrences after `from` up to `to` (inclusive), as UTC text.
fn occurrences(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    let to = ms(to);
    occur::after(&s.cron, s.timezone, ms(from))
        .take_while(|at| *at <= to)
        .map(show)
        .collect()
}

fn transcript(plan: &Plan) -> String {
    let mut out = String::new();
    for e in &plan.entries {
        let manual = if e.manual { " manual" } else { "" };
        let through = e
            .through_ms
            .map(|t| format!(" through {}", show(t)))
            .unwrap_or_default();
        writeln!(
            out,
            "{}{manual} {:?}{through}",
            show(e.scheduled_ms),
            e.fate
        )
        .unwrap();
    }
    for f in &plan.starts {
        let how = if f.caught_up { " (caught up)" } else { "" };
        writeln!(out, "start {}{how}", show(f.scheduled_ms)).unwrap();
    }
    if let Some(f) = plan.queued {
        writeln!(out, "queue {}", show(f.scheduled_ms)).unwrap();
    }
    writeln!(out, "cursor {}", show(plan.cursor_ms)).unwrap();
    out
}

fn check_plan(s: &Schedule, cursor: &str, now: &str, activity: Activity, expected: Expect) {
    let first = plan(s, ms(cursor), ms(now), activity);
    expected.assert_eq(&transcript(&first));
    // Idempotent: from the new cursor at the same `now`, nothing more.
    let again = plan(s, first.cursor_ms, ms(now), activity);
    assert_eq!(again.entries, Vec::new());
    assert_eq!(again.starts, Vec::new());
}

// ---- spec -----------------------------------------------------------------------------

#[test]
fn a_full_schedule_parses_with_its_defaults_and_values() {
    let s = parse(
        "name: nightly-sweep\ncron: \"30 2 * * mon-fri\"\ntimezone: Europe/Berlin\n\
         playbook: sweep\nversion: 3\nparams: { dry_run: false, hosts: [a, b] }\n\
         overlap: queue_one\ncatch_up: all\ncatch_up_max: 5\nwindows:\n  - { days: [fri, mon], \
         start: \"22:00\", end: \"04:00\" }\npaused: true\n",
    )
    .expect("valid schedule");
    assert_eq!(s.name, "nightly-sweep");
    assert_eq!(s.cron.source(), "30 2 * * mon-fri");
    assert_eq!(s.timezone, chrono_tz::Europe::Berlin);
    assert_eq!((s.playbook.as_str(), s.version), ("sweep", Some(3)));
    assert_eq!(
        serde_json::Value::Object(s.params.clone()),
        serde_json::json!({"dry_run": false, "hosts": ["a", "b"]})
    );
    assert_eq!(s.overlap, Overlap::QueueOne);
    assert_eq!(s.catch_up, CatchUp::All { max: 5 });
    assert_eq!(
        s.windows,
        vec![Window {
            days: vec![chrono::Weekday::Mon, chrono::Weekday::Fri],
            start_minute: 22 * 60,
            end_minute: 4 * 60,
        }]
    );
    assert!(s.paused);

    let minimal = schedule("cron: \"*/5 * * * *\"\n");
    assert_eq!(minimal.timezone, Tz::UTC);
    assert_eq!(minimal.overlap, Overlap::Skip);
    assert_eq!(minimal.catch_up, CatchUp::Skip);
    assert_eq!((minimal.version, minimal.paused), (None, false));
    assert!(minimal.windows.is_empty() && minimal.params.is_empty());
    let all = schedule("cron: \"* * * * * *\"\ncatch_up: all\n");
    assert_eq!(
        all.catch_up,
        CatchUp::All {
            max: limits::CATCH_UP_MAX_DEFAULT
        }
    );
}

#[test]
fn every_problem_is_reported_with_its_position() {
    let source = "\
name: Bad_Name
cron: \"61 * * * *\"
timezone: Europe/Berlln
playbook: p
params: [1]
overlap: sometimes
catch_up: all
catch_up_max: 1000
windows:
  - { days: [mon, moon], start: \"25:00\", end: \"04:60\" }
  - { days: [tue], start: \"22:00\", end: \"22:00\", extra: 1 }
pausd: true
";
    expect![[r#"
        1:7: name: invalid name: use lowercase letters, digits and `-`, starting with a letter or digit, at most 64 bytes
        2:7: cron: invalid cron expression: minutes must be less than 59. ('61' specified)
        3:11: timezone: unknown time zone `Europe/Berlln`: use an IANA name like `Europe/Berlin` or `UTC`
        5:9: params: expected a mapping, found a list
        6:10: overlap: unknown overlap `sometimes` (expected skip, queue_one or allow)
        8:15: catch_up_max: must be between 1 and 100, found 1000
        10:19: windows[0].days[1]: unknown day `moon` (expected mon..sun)
        10:33: windows[0].start: invalid time `25:00`: expected "HH:MM", 00:00 to 23:59
        10:47: windows[0].end: invalid time `04:60`: expected "HH:MM", 00:00 to 24:00
        11:41: windows[1].end: a window must not start and end at the same time
        11:50: windows[1].extra: unknown field `extra` (expected one of days, start, end)
        12:1: pausd: unknown field `pausd` (expected one of name, description, cron, timezone, playbook, version, params, overlap, catch_up, catch_up_max, windows, paused)
    "#]]
    .assert_eq(&diagnostics(source));
}

#[test]
fn missing_fields_and_misplaced_catch_up_max_are_reported() {
    expect![[r#"
        1:1: cron: missing required field `cron`
        1:1: playbook: missing required field `playbook`
        3:11: catch_up: unknown catch_up `never` (expected skip, latest or all)
    "#]]
    .assert_eq(&diagnostics("name: s\ncatch_up_max: 3\ncatch_up: never\n"));
    expect![[r#"
        1:1: name: missing required field `name`
        1:1: playbook: missing required field `playbook`
        1:7: cron: expected 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), found 4
    "#]]
    .assert_eq(&diagnostics("cron: \"* * * *\"\n"));
    expect![[r#"
        5:15: catch_up_max: catch_up_max applies only to `catch_up: all`
    "#]]
    .assert_eq(&diagnostics(
        "name: s\nplaybook: p\ncron: \"* * * * *\"\ncatch_up: latest\ncatch_up_max: 3\n",
    ));
}

#[test]
fn a_bad_day_of_week_and_bad_yaml_are_reported() {
    expect![[r#"
        3:7: cron: invalid day of week `8`: use 0-7 (0 and 7 are sunday) or sun..sat
    "#]]
    .assert_eq(&diagnostics("name: s\nplaybook: p\ncron: \"0 0 * * 8\"\n"));
    expect![[r#"
        2:1: a schedule must be a single YAML document
    "#]]
    .assert_eq(&diagnostics("name: s\n---\nname: t\n"));
    let deep = format!("name: s\nparams: {}{}\n", "{a: ".repeat(40), "}".repeat(40));
    assert!(diagnostics(&deep).contains("nesting deeper than"));
    let big = format!("name: s\nparams: {{ a: \"{}\" }}\n", "x".repeat(20_000));
    assert!(diagnostics(&big).contains("params are 20008 bytes as JSON"));
}

// ---- occurrences and DST --------------------------------------------------------------

#[test]
fn berlin_spring_forward_fires_a_skipped_time_once_at_the_gap_end() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00 UTC).
    let daily = schedule("cron: \"30 2 * * *\"\ntimezone: Europe/Berlin\n");
    assert_eq!(
        occurrences(&daily, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
        [
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ]
    );
    let hourly = schedule("cron: \"0 * * * *\"\ntimezone: Europe/Berlin\n");
    assert_eq!(
        occurrences(&hourly, "2026-03-28T23:30:00Z", "2026-03-29T02:00:00Z"),
        [
            "2026-03-29T00:00:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T02:00:00Z"
        ],
        "01:00 CET, 03:00 CEST (02:00 does not exist and folds into it), 04:00 CEST"
    );
}

#[test]
fn berlin_fall_back_fires_a_repeated_time_once_at_its_first_instant() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:xx happens twice.
    let daily = schedule("cron: \"30 2 * * *\"\ntimezone: Europe/Berlin\n");
    assert_eq!(
        occurrences(&daily, "2026-10-24T12:00:00Z", "2026-10-26T12:00:00Z"),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    let hourly = schedule("cron: \"0 * * * *\"\ntimezone: Europe/Berlin\n");
    assert_eq!(
        occurrences(&hourly, "2026-10-24T23:30:00Z", "2026-10-25T03:00:00Z"),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z"
        ],
        "02:00 CEST, then 03:00 CET: the repeated 02:00 CET does not fire"
    );
}

#[test]
fn new_york_spring_forward_and_fall_back() {
    // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC).
    let spring = schedule("cron: \"30 2 * * *\"\ntimezone: America/New_York\n");
    assert_eq!(
        occurrences(&spring, "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z"),
        [
            "2026-03-07T07:30:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-09T06:30:00Z"
        ]
    );
    // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:xx happens twice.
    let fall = schedule("cron: \"30 1 * * *\"\ntimezone: America/New_York\n");
    assert_eq!(
        occurrences(&fall, "2026-10-31T00:00:00Z", "2026-11-02T12:00:00Z"),
        [
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z"
        ]
    );
    let hourly = schedule("cron: \"0 * * * *\"\ntimezone: America/New_York\n");
    assert_eq!(
        occurrences(&hourly, "2026-11-01T04:30:00Z", "2026-11-01T08:00:00Z"),
        [
            "2026-11-01T05:00:00Z",
            "2026-11-01T07:00:00Z",
            "2026-11-01T08:00:00Z"
        ],
        "01:00 EDT, 02:00 EST, 03:00 EST: the repeated 01:00 EST does not fire"
    );
    assert_eq!(
        occurrences(&hourly, "2026-03-08T05:30:00Z", "2026-03-08T08:00:00Z"),
        [
            "2026-03-08T06:00:00Z",
            "2026-03-08T07:00:00Z",
            "2026-03-08T08:00:00Z"
        ],
        "01:00 EST, 03:00 EDT (02:00 folds into it), 04:00 EDT"
    );
}

#[test]
fn next_due_starts_after_a_repeated_hour_from_inside_its_second_pass() {
    let every_10 = schedule("cron: \"*/10 * * * *\"\ntimezone: Europe/Berlin\n");
    // 02:05 CET, the second pass: 02:10 already fired at 00:10 UTC.
    assert_eq!(
        next_due(&every_10, ms("2026-10-25T01:05:00Z"))
            .map(show)
            .as_deref(),
        Some("2026-10-25T02:00:00Z")
    );
    let back: Vec<String> = occur::before(
        &every_10.cron,
        every_10.timezone,
        ms("2026-10-25T01:05:00Z"),
    )
    .take(2)
    .map(show)
    .collect();
    assert_eq!(back, ["2026-10-25T00:50:00Z", "2026-10-25T00:40:00Z"]);
}

#[test]
fn classic_day_of_week_numbering_is_used() {
    // 2026-12-07 is a Monday: `1-5` is Monday to Friday, `0` and `7` are Sunday.
    let weekdays = schedule("cron: \"0 9 * * 1-5\"\n");
    assert_eq!(
        occurrences(&weekdays, "2026-12-05T00:00:00Z", "2026-12-08T23:00:00Z"),
        ["2026-12-07T09:00:00Z", "2026-12-08T09:00:00Z"]
    );
    let sunday = schedule("cron: \"0 9 * * 7\"\n");
    assert_eq!(
        occurrences(&sunday, "2026-12-01T00:00:00Z", "2026-12-14T00:00:00Z"),
        ["2026-12-06T09:00:00Z", "2026-12-13T09:00:00Z"]
    );
}

// ---- plan -----------------------------------------------------------------------------

const EVERY_5: &str = "cron: \"*/5 * * * *\"\n";
const IDLE: Activity = Activity {
    running: false,
    queued: false,
};
const BUSY: Activity = Activity {
    running: true,
    queued: false,
};

/// Every 5 minutes, last processed at T = 09:59, now = T + 16 min = 10:15: 10:00, 10:05 and
/// 10:10 are late by more than the grace, 10:15 is due.
const T: &str = "2026-12-01T09:59:00Z";
const NOW: &str = "2026-12-01T10:15:00Z";

#[test]
fn downtime_with_catch_up_skip() {
    let s = schedule(EVERY_5);
    check_plan(
        &s,
        T,
        NOW,
        IDLE,
        expect![[r#"
            2026-12-01T10:00:00Z Missed { caught_up: false }
            2026-12-01T10:05:00Z Missed { caught_up: false }
            2026-12-01T10:10:00Z Missed { caught_up: false }
            2026-12-01T10:15:00Z Fired
            start 2026-12-01T10:15:00Z
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn downtime_with_catch_up_latest() {
    let s = schedule(&format!("{EVERY_5}catch_up: latest\noverlap: allow\n"));
    check_plan(
        &s,
        T,
        NOW,
        IDLE,
        expect![[r#"
            2026-12-01T10:00:00Z Missed { caught_up: false }
            2026-12-01T10:05:00Z Missed { caught_up: false }
            2026-12-01T10:10:00Z Missed { caught_up: true }
            2026-12-01T10:15:00Z Fired
            start 2026-12-01T10:10:00Z (caught up)
            start 2026-12-01T10:15:00Z
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn downtime_with_catch_up_all_up_to_max() {
    let s = schedule(&format!(
        "{EVERY_5}catch_up: all\ncatch_up_max: 2\noverlap: allow\n"
    ));
    check_plan(
        &s,
        T,
        NOW,
        IDLE,
        expect![[r#"
            2026-12-01T10:00:00Z Missed { caught_up: true }
            2026-12-01T10:05:00Z Missed { caught_up: true }
            2026-12-01T10:10:00Z Missed { caught_up: false }
            2026-12-01T10:15:00Z Fired
            start 2026-12-01T10:00:00Z (caught up)
            start 2026-12-01T10:05:00Z (caught up)
            start 2026-12-01T10:15:00Z
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn grace_is_inclusive_of_sixty_seconds() {
    let s = schedule(EVERY_5);
    // 10:15 is exactly 60 s late at 10:16: still due; at 10:16:00.001 it is missed.
    let due = plan(&s, ms(NOW) - 60_000, ms("2026-12-01T10:16:00Z"), IDLE);
    assert_eq!(due.entries[0].fate, Fate::Fired);
    let late = plan(&s, ms(NOW) - 60_000, ms("2026-12-01T10:16:00Z") + 1, IDLE);
    assert_eq!(late.entries[0].fate, Fate::Missed { caught_up: false });
}

#[test]
fn overlap_skip_with_an_active_run() {
    let s = schedule(&format!("{EVERY_5}catch_up: all\noverlap: skip\n"));
    check_plan(
        &s,
        T,
        NOW,
        BUSY,
        expect![[r#"
            2026-12-01T10:00:00Z SkippedOverlap
            2026-12-01T10:05:00Z SkippedOverlap
            2026-12-01T10:10:00Z SkippedOverlap
            2026-12-01T10:15:00Z SkippedOverlap
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
    // Idle: the first start makes a run active, so the rest are skipped.
    check_plan(
        &s,
        T,
        NOW,
        IDLE,
        expect![[r#"
            2026-12-01T10:00:00Z Missed { caught_up: true }
            2026-12-01T10:05:00Z SkippedOverlap
            2026-12-01T10:10:00Z SkippedOverlap
            2026-12-01T10:15:00Z SkippedOverlap
            start 2026-12-01T10:00:00Z (caught up)
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn overlap_queue_one_with_an_active_run() {
    let s = schedule(&format!("{EVERY_5}catch_up: all\noverlap: queue_one\n"));
    check_plan(
        &s,
        T,
        NOW,
        BUSY,
        expect![[r#"
            2026-12-01T10:00:00Z Queued
            2026-12-01T10:05:00Z SkippedOverlap
            2026-12-01T10:10:00Z SkippedOverlap
            2026-12-01T10:15:00Z SkippedOverlap
            queue 2026-12-01T10:00:00Z
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
    let queued = Activity {
        running: true,
        queued: true,
    };
    check_plan(
        &s,
        T,
        NOW,
        queued,
        expect![[r#"
            2026-12-01T10:00:00Z SkippedOverlap
            2026-12-01T10:05:00Z SkippedOverlap
            2026-12-01T10:10:00Z SkippedOverlap
            2026-12-01T10:15:00Z SkippedOverlap
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn overlap_allow_with_an_active_run() {
    let s = schedule(&format!("{EVERY_5}catch_up: all\noverlap: allow\n"));
    check_plan(
        &s,
        T,
        NOW,
        BUSY,
        expect![[r#"
            2026-12-01T10:00:00Z Missed { caught_up: true }
            2026-12-01T10:05:00Z Missed { caught_up: true }
            2026-12-01T10:10:00Z Missed { caught_up: true }
            2026-12-01T10:15:00Z Fired
            start 2026-12-01T10:00:00Z (caught up)
            start 2026-12-01T10:05:00Z (caught up)
            start 2026-12-01T10:10:00Z (caught up)
            start 2026-12-01T10:15:00Z
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
}

#[test]
fn a_window_across_midnight_gates_fires() {
    // Hourly; the window opens Tuesday 22:00 and closes Wednesday 02:00 (Berlin).
    let s = schedule(
        "cron: \"0 * * * *\"\ntimezone: Europe/Berlin\ncatch_up: all\noverlap: allow\n\
         windows: [{ days: [tue], start: \"22:00\", end: \"02:00\" }]\n",
    );
    // Stepped hour by hour, as a timer would: 21:00 to 03:00 local (20:00 to 02:00 UTC).
    let mut cursor = ms("2026-12-01T19:30:00Z");
    let mut log = String::new();
    while let Some(at) = next_due(&s, cursor).filter(|at| *at <= ms("2026-12-02T02:00:00Z")) {
        let step = plan(&s, cursor, at, IDLE);
        log.push_str(&transcript(&step));
        cursor = step.cursor_ms;
    }
    expect![[r#"
        2026-12-01T20:00:00Z OutsideWindow
        cursor 2026-12-01T20:00:00Z
        2026-12-01T21:00:00Z Fired
        start 2026-12-01T21:00:00Z
        cursor 2026-12-01T21:00:00Z
        2026-12-01T22:00:00Z Fired
        start 2026-12-01T22:00:00Z
        cursor 2026-12-01T22:00:00Z
        2026-12-01T23:00:00Z Fired
        start 2026-12-01T23:00:00Z
        cursor 2026-12-01T23:00:00Z
        2026-12-02T00:00:00Z Fired
        start 2026-12-02T00:00:00Z
        cursor 2026-12-02T00:00:00Z
        2026-12-02T01:00:00Z OutsideWindow
        cursor 2026-12-02T01:00:00Z
        2026-12-02T02:00:00Z OutsideWindow
        cursor 2026-12-02T02:00:00Z
    "#]]
    .assert_eq(&log);
    // Down through the window and back after it closed: nothing is caught up.
    check_plan(
        &s,
        "2026-12-01T19:30:00Z",
        "2026-12-02T01:30:00Z",
        IDLE,
        expect![[r#"
            2026-12-01T20:00:00Z OutsideWindow
            2026-12-01T21:00:00Z Missed { caught_up: false }
            2026-12-01T22:00:00Z Missed { caught_up: false }
            2026-12-01T23:00:00Z Missed { caught_up: false }
            2026-12-02T00:00:00Z Missed { caught_up: false }
            2026-12-02T01:00:00Z OutsideWindow
            cursor 2026-12-02T01:30:00Z
        "#]],
    );
}

#[test]
fn a_paused_schedule_records_paused_entries() {
    let s = schedule(&format!("{EVERY_5}catch_up: all\npaused: true\n"));
    check_plan(
        &s,
        T,
        NOW,
        IDLE,
        expect![[r#"
            2026-12-01T10:00:00Z Paused
            2026-12-01T10:05:00Z Paused
            2026-12-01T10:10:00Z Paused
            2026-12-01T10:15:00Z Paused
            cursor 2026-12-01T10:15:00Z
        "#]],
    );
    assert_eq!(next_due(&s, ms(NOW)), Some(ms("2026-12-01T10:20:00Z")));
}

#[test]
fn trigger_now_is_a_manual_fire_through_the_overlap_policy() {
    let s = schedule(&format!("{EVERY_5}overlap: queue_one\npaused: true\n"));
    let idle = trigger_now(&s, ms("2026-12-01T10:02:03Z"), ms(T), IDLE);
    expect![[r#"
        2026-12-01T10:02:03Z manual Fired
        start 2026-12-01T10:02:03Z
        cursor 2026-12-01T09:59:00Z
    "#]]
    .assert_eq(&transcript(&idle));
    let busy = trigger_now(&s, ms("2026-12-01T10:02:03Z"), ms(T), BUSY);
    expect![[r#"
        2026-12-01T10:02:03Z manual Queued
        queue 2026-12-01T10:02:03Z
        cursor 2026-12-01T09:59:00Z
    "#]]
    .assert_eq(&transcript(&busy));
    assert_eq!(
        fire_key("s", &idle.starts[0]),
        format!("schedule:s:manual:{}", ms("2026-12-01T10:02:03Z"))
    );
    let scheduled = Fire {
        scheduled_ms: 5,
        manual: false,
        caught_up: false,
    };
    assert_eq!(fire_key("s", &scheduled), "schedule:s:5");
}

#[test]
fn a_year_down_with_a_per_second_cron_is_bounded() {
    let s = schedule("cron: \"* * * * * *\"\ncatch_up: latest\n");
    let cursor = ms("2025-12-01T00:00:00Z");
    let now = ms("2026-12-01T00:00:00Z");
    let first = plan(&s, cursor, now, IDLE);
    assert_eq!(first.entries.len(), MISSED_LISTED_MAX + 1 + 1 + 61);
    let summary = first.entries[MISSED_LISTED_MAX];
    assert_eq!(
        summary.scheduled_ms,
        cursor + (MISSED_LISTED_MAX as i64 + 1) * 1000
    );
    assert_eq!(summary.fate, Fate::Missed { caught_up: false });
    // The summary ends before the latest missed one, which is caught up on its own.
    assert_eq!(summary.through_ms, Some(now - GRACE_MS - 2000));
    let latest = first.entries[MISSED_LISTED_MAX + 1];
    assert_eq!(
        (latest.scheduled_ms, latest.fate),
        (now - GRACE_MS - 1000, Fate::Missed { caught_up: true })
    );
    // The catch-up starts a run, so overlap `skip` skips the 61 due (the grace, both ends).
    assert_eq!(first.starts.len(), 1);
    let skipped = first
        .entries
        .iter()
        .filter(|e| e.fate == Fate::SkippedOverlap)
        .count();
    assert_eq!(skipped, 61);
    assert!(plan(&s, first.cursor_ms, now, IDLE).entries.is_empty());
}

// ---- properties -----------------------------------------------------------------------

const ZONES: [Tz; 5] = [
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::America::Santiago,
    chrono_tz::UTC,
];

fn cron_text() -> impl Strategy<Value = String> {
    let minute = prop_oneof![
        Just("*".to_string()),
        Just("*/7".to_string()),
        (0u32..60).prop_map(|m| m.to_string()),
        Just("0,30".to_string())
    ];
    let hour = prop_oneof![
        Just("*".to_string()),
        (0u32..24).prop_map(|h| h.to_string()),
        Just("1-3".to_string()),
        Just("*/5".to_string())
    ];
    let dom = prop_oneof![
        Just("*".to_string()),
        Just("1-7".to_string()),
        (1u32..29).prop_map(|d| d.to_string())
    ];
    let dow = prop_oneof![
        Just("*".to_string()),
        Just("0".to_string()),
        Just("1-5".to_string()),
        Just("sat,sun".to_string())
    ];
    let second = prop_oneof![
        Just(None),
        Just(Some("0".to_string())),
        Just(Some("*/20".to_string()))
    ];
    (second, minute, hour, dom, dow).prop_map(|(s, m, h, dom, dow)| match s {
        Some(s) => format!("{s} {m} {h} {dom} * {dow}"),
        None => format!("{m} {h} {dom} * {dow}"),
    })
}

/// Around 2026's DST changes in the zones above.
fn instant() -> impl Strategy<Value = i64> {
    let anchors = [
        "2026-03-08T00:00:00Z",
        "2026-03-29T00:00:00Z",
        "2026-04-04T12:00:00Z",
        "2026-09-05T12:00:00Z",
        "2026-10-25T00:00:00Z",
        "2026-11-01T00:00:00Z",
    ];
    (0..anchors.len(), 0i64..2 * 24 * 60 * 60 * 1000).prop_map(move |(i, off)| ms(anchors[i]) + off)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn occurrences_increase_and_each_is_a_real_match(
        text in cron_text(), zone in 0..ZONES.len(), from in instant(), span_h in 1i64..30,
    ) {
        let expr = CronExpr::parse(&text).expect("generated expressions are valid");
        let tz = ZONES[zone];
        let to = from + span_h * 60 * 60 * 1000;
        let list: Vec<i64> = occur::after(&expr, tz, from).take_while(|at| *at <= to).take(2000).collect();
        let mut walls = HashSet::new();
        for pair in list.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        for &at in &list {
            prop_assert!(at > from);
            prop_assert!(occur::matches(&expr, tz, at), "{} is not a match of {text} in {tz}", show(at));
            prop_assert!(walls.insert(occur::wall_at(tz, at)), "a wall time fired twice");
        }
        // Backwards yields the same occurrences, reversed.
        let mut back: Vec<i64> = occur::before(&expr, tz, to + 1).take_while(|at| *at > from).take(2000).collect();
        back.reverse();
        if list.len() < 2000 {
            prop_assert_eq!(&back, &list);
        }
    }

    #[test]
    fn replanning_from_any_intermediate_point_never_fires_twice(
        text in cron_text(), zone in 0..ZONES.len(), from in instant(),
        steps in prop::collection::vec(1i64..6 * 60 * 60 * 1000, 1..8),
        policy in 0usize..3, overlap in 0usize..3, running in any::<bool>(),
    ) {
        let catch_up = ["skip", "latest", "all"][policy];
        let overlap = ["skip", "queue_one", "allow"][overlap];
        let tz = ZONES[zone].name();
        let s = schedule(&format!("cron: \"{text}\"\ntimezone: {tz}\ncatch_up: {catch_up}\noverlap: {overlap}\n"));
        let mut cursor = from;
        let mut now = from;
        let mut keys = BTreeSet::new();
        let mut fired = BTreeSet::new();
        for step in steps {
            now += step;
            let activity = Activity { running, queued: false };
            let out = plan(&s, cursor, now, activity);
            prop_assert!(out.cursor_ms >= cursor);
            for e in &out.entries {
                prop_assert!(e.scheduled_ms > cursor && e.scheduled_ms <= now);
                prop_assert!(keys.insert((e.scheduled_ms, e.manual)), "entry {} twice", show(e.scheduled_ms));
            }
            for f in out.starts.iter().chain(out.queued.iter()) {
                prop_assert!(fired.insert(f.scheduled_ms), "fire {} twice", show(f.scheduled_ms));
            }
            // Planning again at the same instant adds nothing.
            prop_assert!(plan(&s, out.cursor_ms, now, activity).entries.is_empty());
            cursor = out.cursor_ms;
        }
    }
}
