//! Riposte's language: playbooks, alert rules and schedules. Parse YAML, validate (every
//! diagnostic at once, with line and column), plan the DAG, render templates, decide which
//! rule an alert matches and when a schedule fires. Pure: no IO, no async, no clock.
//!
//! Entry points:
//! - [`compile`]: YAML source to a validated [`Playbook`], or every [`Diagnostic`].
//! - [`Playbook::coerce_params`]: checks and types the parameters of a run.
//! - [`Playbook::plan`]: the DAG as stable text, layer by layer.
//! - [`Renderer`]: evaluates `when`, `for_each` and renders `with` and `labels` for one task,
//!   and the other templates of a run ([`Renderer::text`], [`Renderer::tree`]).
//! - [`parse_duration_ms`], [`parse_timestamp_ms`]: read what a sleep, a grant's TTL or an
//!   `until` renders to.
//! - [`load_json`]: another kind of YAML document (a playbook's tests) read through the same
//!   bounded front end.
//! - [`actions::CATALOG`]: the actions the language knows.
//! - [`platform`]: the platform's approval rules above every playbook, [`platform::unmet`].
//! - [`rules`]: alert rules (YAML to [`rules::Rule`]) and [`rules::decide`], the first rule an
//!   alert matches with its rendered params and dedup key.
//! - [`schedule`]: cron schedules (YAML to [`schedule::Schedule`]), their occurrences in IANA
//!   zones and [`schedule::plan`], the fate of every occurrence since a cursor.
//!
//! Codemap: `yaml` (source to a positioned tree, with the pre-parse bounds), `compile` (the
//! top level, with the run's `concurrency` and `timeout`) with `step` and `params` (one reader
//! each) and `controls` (a step's approval, undo, grant and waves), `graph` (order, cycles,
//! ancestors), `template` (how strings are read, and the reference checks), `render` (the
//! sandboxed runtime), `plan` (the text form), `duration`, `timestamp`, `limits`, `actions`.

pub mod actions;
mod compile;
mod controls;
mod diagnostic;
mod duration;
mod graph;
pub mod limits;
mod model;
mod params;
mod plan;
pub mod platform;
mod render;
pub mod rules;
pub mod schedule;
mod step;
mod template;
mod timestamp;
mod yaml;

pub use compile::compile;
pub use diagnostic::Diagnostic;
pub use model::*;
pub use render::{Context, RenderError, Renderer, Scope};
pub use yaml::load_json;

/// Text that does not read as the value it stands for (a duration, a timestamp), and why.
/// Displays as ``invalid duration `90x`: unknown unit `x` (use ms, s, m, h or d)``.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} `{text}`: {why}")]
pub struct InvalidValue {
    pub kind: ValueKind,
    /// The text read, shortened when long (rendered text may be).
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

/// What a text was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Duration,
    Timestamp,
}

impl std::fmt::Display for ValueKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueKind::Duration => "duration",
            ValueKind::Timestamp => "timestamp",
        })
    }
}

impl InvalidValue {
    pub(crate) fn new(kind: ValueKind, text: &str, why: impl Into<String>) -> InvalidValue {
        InvalidValue {
            kind,
            text: yaml::shorten(text),
            why: why.into(),
        }
    }
}

/// Reads duration text ("15m" is 900 000; `ms`, `s`, `m`, `h`, `d` and their combinations like
/// "1h30m"), with the same syntax and errors as literal durations in playbooks. Zero is read
/// as 0: the caller checks the bounds (e.g. [`limits::SLEEP_MS_MAX`], refusing 0).
pub fn parse_duration_ms(text: &str) -> Result<u64, InvalidValue> {
    duration::parse_ms(text)
}

/// Writes milliseconds as [`parse_duration_ms`] reads them back, compactly: `1h30m`, `0s`.
pub fn format_duration_ms(ms: u64) -> String {
    duration::format_ms(ms)
}

/// Reads an RFC 3339 timestamp ("2026-12-01T02:00:00Z"; an offset like "+02:00" instead of
/// "Z", and fractions of a second, allowed) as Unix epoch milliseconds, negative before 1970.
/// Pure: the timestamp carries its own offset, so no clock or time zone database is read.
pub fn parse_timestamp_ms(text: &str) -> Result<i64, InvalidValue> {
    timestamp::parse_ms(text)
}
