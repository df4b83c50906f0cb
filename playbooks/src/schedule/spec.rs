//! A schedule definition and its YAML form, validated with every problem reported at once.
//!
//! ```yaml
//! name: nightly-sweep
//! cron: "30 2 * * mon-fri"      # 5 fields, or 6 with seconds first
//! timezone: Europe/Berlin        # IANA name; default UTC
//! playbook: sweep-stale-grants
//! version: 3                     # optional: the latest when left out
//! params: { dry_run: false }
//! overlap: skip                  # skip | queue_one | allow; default skip
//! catch_up: all                  # skip | latest | all; default skip
//! catch_up_max: 5                # only with `all`; default 10
//! windows:                       # optional; fire only inside one of these
//!   - { days: [mon, tue, wed, thu, fri], start: "22:00", end: "04:00" }
//! paused: false
//! ```

use crate::Diagnostic;
use chrono::Weekday;
use chrono_tz::Tz;
use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;
use serde_json::{Map, Value};

use super::expr::CronExpr;
use super::limits;
use super::window::{self, Window};
use super::yaml::{self, Sink};

const FIELDS: [&str; 12] = [
    "name",
    "description",
    "cron",
    "timezone",
    "playbook",
    "version",
    "params",
    "overlap",
    "catch_up",
    "catch_up_max",
    "windows",
    "paused",
];
const WINDOW_FIELDS: [&str; 3] = ["days", "start", "end"];

/// What happens to an occurrence due while a run of the schedule is still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Record it as skipped; start nothing.
    #[default]
    Skip,
    /// Hold at most one, started when the active run ends; any further one is skipped.
    QueueOne,
    /// Start it anyway, next to the active run.
    Allow,
}

/// What happens to occurrences missed while the orchestrator was down (or late by more than
/// the grace, [`super::GRACE_MS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUp {
    /// Record them as missed; start nothing.
    #[default]
    Skip,
    /// Start the latest one; record the others as missed.
    Latest,
    /// Start them oldest first, at most `max`; record the rest as missed.
    All { max: u32 },
}

/// A validated schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// `[a-z0-9][a-z0-9-]*`, at most [`limits::NAME_BYTES_MAX`] bytes; part of the ledger key.
    pub name: String,
    pub description: String,
    pub cron: CronExpr,
    pub timezone: Tz,
    /// The playbook each fire starts.
    pub playbook: String,
    /// Its version; `None` for the latest at fire time.
    pub version: Option<u32>,
    /// The run's parameters, coerced by the playbook when a run starts.
    pub params: Map<String, Value>,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    /// Empty means always open.
    pub windows: Vec<Window>,
    pub paused: bool,
}

/// Parses and validates a schedule; on error, every problem in source order.
pub fn parse(source: &str) -> Result<Schedule, Vec<Diagnostic>> {
    let mut sink = Sink::default();
    let schedule = yaml::load(source, &mut sink).and_then(|root| build(&root, &mut sink));
    match schedule {
        Some(schedule) if sink.is_empty() => Ok(schedule),
        _ => Err(sink.into_sorted()),
    }
}

fn build(root: &Node, sink: &mut Sink) -> Option<Schedule> {
    let map = root.as_mapping()?;
    check_fields(map, "", &FIELDS, sink);
    let name = require(map, "name", sink).and_then(|n| read_name(n, "name", sink));
    let description = map
        .get_node("description")
        .and_then(|n| yaml::string(n, "description", sink))
        .unwrap_or_default()
        .to_string();
    let cron = require(map, "cron", sink).and_then(|n| read_cron(n, sink));
    let timezone = match map.get_node("timezone") {
        Some(node) => read_zone(node, sink),
        None => Some(Tz::UTC),
    };
    let playbook = require(map, "playbook", sink).and_then(|n| read_name(n, "playbook", sink));
    let version = optional(map.get_node("version"), |n| {
        let v = yaml::int(n, "version", 1..=i64::from(u32::MAX), sink)?;
        u32::try_from(v).ok()
    });
    let params =
        optional(map.get_node("params"), |n| read_params(n, sink)).map(Option::unwrap_or_default);
    let overlap = optional(map.get_node("overlap"), |n| read_overlap(n, sink));
    let catch_up = read_catch_up(map, sink);
    let windows = optional(map.get_node("windows"), |n| read_windows(n, sink));
    let paused = optional(map.get_node("paused"), |n| yaml::boolean(n, "paused", sink));
    Some(Schedule {
        name: name?,
        description,
        cron: cron?,
        timezone: timezone?,
        playbook: playbook?,
        version: version?,
        params: params?,
        overlap: overlap?.unwrap_or_default(),
        catch_up: catch_up?,
        windows: windows?.unwrap_or_default(),
        paused: paused?.unwrap_or(false),
    })
}

/// `Some(None)` when absent, `Some(Some(v))` when valid, `None` when given but invalid.
fn optional<T>(node: Option<&Node>, read: impl FnOnce(&Node) -> Option<T>) -> Option<Option<T>> {
    match node {
        Some(node) => read(node).map(Some),
        None => Some(None),
    }
}

fn check_fields(map: &MarkedMappingNode, path: &str, allowed: &[&str], sink: &mut Sink) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let full = if path.is_empty() {
                key.as_str().to_string()
            } else {
                format!("{path}.{}", key.as_str())
            };
            let message = format!(
                "unknown field `{}` (expected one of {})",
                key.as_str(),
                allowed.join(", ")
            );
            sink.push(yaml::span_pos(key.span()), &full, message);
        }
    }
}

fn require<'a>(map: &'a MarkedMappingNode, name: &str, sink: &mut Sink) -> Option<&'a Node> {
    let node = map.get_node(name);
    if node.is_none() {
        let at = map
            .keys()
            .next()
            .map_or((1, 1), |k| yaml::span_pos(k.span()));
        sink.push(at, name, format!("missing required field `{name}`"));
    }
    node
}

/// A schedule or playbook name: `[a-z0-9][a-z0-9-]*`, at most [`limits::NAME_BYTES_MAX`].
fn read_name(node: &Node, path: &str, sink: &mut Sink) -> Option<String> {
    let name = yaml::string(node, path, sink)?;
    let valid = name.len() <= limits::NAME_BYTES_MAX
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        let message = format!(
            "invalid name: use lowercase letters, digits and `-`, starting with a letter or \
             digit, at most {} bytes",
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    Some(name.to_string())
}

fn read_cron(node: &Node, sink: &mut Sink) -> Option<CronExpr> {
    let text = yaml::string(node, "cron", sink)?;
    match CronExpr::parse(text) {
        Ok(expr) => Some(expr),
        Err(error) => {
            sink.push(yaml::pos(node), "cron", error.to_string());
            None
        }
    }
}

fn read_zone(node: &Node, sink: &mut Sink) -> Option<Tz> {
    let text = yaml::string(node, "timezone", sink)?;
    match text.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            let message = format!(
                "unknown time zone `{text}`: use an IANA name like `Europe/Berlin` or `UTC`"
            );
            sink.push(yaml::pos(node), "timezone", message);
            None
        }
    }
}

fn read_params(node: &Node, sink: &mut Sink) -> Option<Map<String, Value>> {
    let Value::Object(params) = yaml::to_json(node) else {
        let message = format!("expected a mapping, found {}", yaml::describe(node));
        sink.push(yaml::pos(node), "params", message);
        return None;
    };
    let size = Value::Object(params.clone()).to_string().len();
    if size > limits::PARAMS_BYTES_MAX {
        let message = format!(
            "params are {size} bytes as JSON, more than the {} allowed",
            limits::PARAMS_BYTES_MAX
        );
        sink.push(yaml::pos(node), "params", message);
        return None;
    }
    Some(params)
}

fn read_overlap(node: &Node, sink: &mut Sink) -> Option<Overlap> {
    match yaml::string(node, "overlap", sink)? {
        "skip" => Some(Overlap::Skip),
        "queue_one" => Some(Overlap::QueueOne),
        "allow" => Some(Overlap::Allow),
        other => {
            let message = format!("unknown overlap `{other}` (expected skip, queue_one or allow)");
            sink.push(yaml::pos(node), "overlap", message);
            None
        }
    }
}

/// `catch_up` with its `catch_up_max`, which only `all` takes.
fn read_catch_up(map: &MarkedMappingNode, sink: &mut Sink) -> Option<CatchUp> {
    let max_node = map.get_node("catch_up_max");
    let bound = i64::from(limits::CATCH_UP_MAX_BOUND);
    let max = optional(max_node, |n| yaml::int(n, "catch_up_max", 1..=bound, sink));
    let policy = match map.get_node("catch_up") {
        None => "skip",
        Some(node) => yaml::string(node, "catch_up", sink)?,
    };
    let read = match policy {
        "skip" => CatchUp::Skip,
        "latest" => CatchUp::Latest,
        "all" => {
            let max = max?.map_or(limits::CATCH_UP_MAX_DEFAULT, |m| m as u32);
            return Some(CatchUp::All { max });
        }
        other => {
            let message = format!("unknown catch_up `{other}` (expected skip, latest or all)");
            let at = map.get_node("catch_up").map_or((0, 0), yaml::pos);
            sink.push(at, "catch_up", message);
            return None;
        }
    };
    if let Some(node) = max_node {
        sink.push(
            yaml::pos(node),
            "catch_up_max",
            "catch_up_max applies only to `catch_up: all`",
        );
        return None;
    }
    Some(read)
}

fn read_windows(node: &Node, sink: &mut Sink) -> Option<Vec<Window>> {
    let Some(list) = node.as_sequence() else {
        let message = format!("expected a list, found {}", yaml::describe(node));
        sink.push(yaml::pos(node), "windows", message);
        return None;
    };
    if list.len() > limits::WINDOWS_MAX {
        let message = format!("more than {} windows", limits::WINDOWS_MAX);
        sink.push(yaml::pos(node), "windows", message);
        return None;
    }
    let read: Vec<Option<Window>> = list
        .iter()
        .enumerate()
        .map(|(i, item)| read_window(item, &format!("windows[{i}]"), sink))
        .collect();
    read.into_iter().collect()
}

fn read_window(node: &Node, path: &str, sink: &mut Sink) -> Option<Window> {
    let Some(map) = node.as_mapping() else {
        let message = format!(
            "expected a mapping like `{{ days: [mon], start: \"22:00\", end: \"04:00\" }}`, found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    check_fields(map, path, &WINDOW_FIELDS, sink);
    let days = require_in(map, path, "days", sink)
        .and_then(|n| read_days(n, &format!("{path}.days"), sink));
    let start = require_in(map, path, "start", sink)
        .and_then(|n| read_time(n, &format!("{path}.start"), false, sink));
    let end = require_in(map, path, "end", sink)
        .and_then(|n| read_time(n, &format!("{path}.end"), true, sink));
    let (start, end) = (start?, end?);
    if start == end % window::DAY_MINUTES {
        let at = map.get_node("end").map_or((0, 0), yaml::pos);
        sink.push(
            at,
            &format!("{path}.end"),
            "a window must not start and end at the same time",
        );
        return None;
    }
    Some(Window {
        days: days?,
        start_minute: start,
        end_minute: end,
    })
}

fn require_in<'a>(
    map: &'a MarkedMappingNode,
    path: &str,
    name: &str,
    sink: &mut Sink,
) -> Option<&'a Node> {
    let node = map.get_node(name);
    if node.is_none() {
        let at = yaml::span_pos(map.span());
        let at = map.keys().next().map_or(at, |k| yaml::span_pos(k.span()));
        sink.push(
            at,
            &format!("{path}.{name}"),
            format!("missing required field `{name}`"),
        );
    }
    node
}

fn read_days(node: &Node, path: &str, sink: &mut Sink) -> Option<Vec<Weekday>> {
    let Some(list) = node.as_sequence().filter(|l| !l.is_empty()) else {
        let message = format!(
            "expected a list of days like [mon, tue], found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    let mut days = Vec::new();
    let mut valid = true;
    for (i, item) in list.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        match item.as_scalar().and_then(|s| window::parse_day(s.as_str())) {
            Some(day) if !days.contains(&day) => days.push(day),
            Some(_) => {
                sink.push(yaml::pos(item), &item_path, "day listed twice");
                valid = false;
            }
            None => {
                let message = format!("unknown day {} (expected mon..sun)", yaml::describe(item));
                sink.push(yaml::pos(item), &item_path, message);
                valid = false;
            }
        }
    }
    days.sort_by_key(|d| d.num_days_from_monday());
    valid.then_some(days)
}

fn read_time(node: &Node, path: &str, end: bool, sink: &mut Sink) -> Option<u32> {
    let text = yaml::string(node, path, sink)?;
    let minute = window::parse_hhmm(text, end);
    if minute.is_none() {
        let range = if end {
            "00:00 to 24:00"
        } else {
            "00:00 to 23:59"
        };
        let message = format!("invalid time `{text}`: expected \"HH:MM\", {range}");
        sink.push(yaml::pos(node), path, message);
    }
    minute
}
