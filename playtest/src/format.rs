//! The test file: the runs of one playbook to play, what the world answers in each, and what
//! each run must show. YAML, read through the language's bounded front end.
//!
//! ```yaml
//! playbook: ../ip-block.yaml           # relative to this file
//! tests:
//!   - name: blocks at once and unblocks at the TTL
//!     params: { ip: 203.0.113.7, duration: 1h }
//!     results:
//!       block: { output: { already_blocked: false } }
//!       notify: [{ error: "HTTP 503" }, { output: {} }]   # one answer per lease, the last repeats
//!     events:
//!       - { at: 10m, cancel: "false positive" }
//!     expect:
//!       status: succeeded
//!       steps: { block: succeeded, block_approved: skipped }
//! ```
//!
//! A result's key is a step id (every item of a `for_each` step), `STEP[N]` (item N only),
//! `STEP.undo` (its undo) or `STEP.health` (its wave health gate). An answer is `output`, or
//! `error` (with `retryable`, true by default), or `lost: true` (the worker's lease is lost);
//! `takes` is how long the task runs (0 by default). A task with no answer succeeds at once
//! with `{}`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::Error;

/// Largest test file, in bytes.
pub const SOURCE_BYTES_MAX: usize = 1024 * 1024;
/// Tests in one file.
pub const TESTS_MAX: usize = 1000;

/// One test file.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The playbook file, relative to the test file.
    pub playbook: String,
    pub tests: Vec<Case>,
}

/// One run to play.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// What started the run (an alert's data), as a rule would pass it.
    #[serde(default)]
    pub trigger: Value,
    #[serde(default = "requested_by_default")]
    pub requested_by: String,
    #[serde(default)]
    pub dry_run: bool,
    /// When the run starts (RFC 3339); 2026-01-05T00:00:00Z, a Monday, by default.
    #[serde(default)]
    pub start: Option<String>,
    /// The run's id (templates may read it); a fixed one by default.
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub results: BTreeMap<String, Answers>,
    #[serde(default)]
    pub events: Vec<Event>,
    pub expect: Expect,
}

fn requested_by_default() -> String {
    "tester".to_string()
}

/// The answers to one task: one for every attempt, or one per lease in order (the last
/// repeats; an operator's retry of the step goes on down the list).
#[derive(Debug, Clone, PartialEq)]
pub struct Answers(pub Vec<Answer>);

impl<'de> Deserialize<'de> for Answers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let answers = match Value::deserialize(d)? {
            Value::Array(list) if list.is_empty() => {
                return Err(D::Error::custom("an empty list of answers"));
            }
            list @ Value::Array(_) => serde_json::from_value(list),
            one => serde_json::from_value(one).map(|one| vec![one]),
        };
        answers.map(Answers).map_err(D::Error::custom)
    }
}

/// What one attempt of a task answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    #[serde(default)]
    pub output: Option<Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default = "yes")]
    pub retryable: bool,
    #[serde(default)]
    pub lost: bool,
    #[serde(default)]
    pub takes: Option<String>,
}

fn yes() -> bool {
    true
}

/// Something an operator (or an approver) does at a time, counted from the run's start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: String,
    #[serde(default)]
    pub approve: Option<String>,
    #[serde(default)]
    pub reject: Option<String>,
    #[serde(default)]
    pub cancel: Option<String>,
    #[serde(default)]
    pub revoke: Option<String>,
    #[serde(default)]
    pub retry: Option<String>,
    #[serde(default)]
    pub skip: Option<String>,
    #[serde(default)]
    pub resume: bool,
    /// Who does it: `approver` for decisions, `tester` otherwise.
    #[serde(default)]
    pub by: Option<String>,
    /// The approver groups `by` is in: every group of the step's approval by default.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    /// The item a revoke names.
    #[serde(default)]
    pub item: u32,
    /// The event must be refused, with a reason containing this text (an approval by the
    /// requester, a retry of a step that has not failed).
    #[serde(default)]
    pub refused: Option<String>,
}

/// What the run must show; only what is given is checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The run's final status (or `halted`, `running` for a run left waiting).
    pub status: String,
    /// Text the run's error contains.
    #[serde(default)]
    pub error: Option<String>,
    /// Status of each step named.
    #[serde(default)]
    pub steps: Option<BTreeMap<String, String>>,
    /// The steps whose undo ran, in the order they ran.
    #[serde(default)]
    pub undo: Option<Vec<String>>,
    #[serde(default)]
    pub grants: Option<Vec<GrantExpect>>,
    /// The steps that asked for an approval, in order.
    #[serde(default)]
    pub approvals: Option<Vec<String>>,
    /// Each named step's output (for a `for_each` step, the list of item outputs); an object
    /// matches when it has at least the keys given, with matching values.
    #[serde(default)]
    pub outputs: Option<BTreeMap<String, Value>>,
    /// Each named step's rendered input (a list for a `for_each` step), matched the same way.
    #[serde(default)]
    pub inputs: Option<BTreeMap<String, Value>>,
    /// When the run ended, counted from its start.
    #[serde(default)]
    pub ended: Option<String>,
}

/// A grant the run opened.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantExpect {
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it was opened, counted from the run's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<String>,
    /// When it was revoked; `never` for a grant still open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    playbook: String,
    tests: Vec<Value>,
}

/// Reads a test file; every problem is named with the test it is in.
pub fn parse(source: &str) -> Result<Suite, Error> {
    let value = riposte_playbooks::load_json(source, "test file", SOURCE_BYTES_MAX)
        .map_err(|problems| Error::File(problems.iter().map(|p| p.to_string()).collect()))?;
    let file: File = serde_json::from_value(value)
        .map_err(|e| Error::File(vec![format!("invalid test file: {e}")]))?;
    if file.tests.is_empty() {
        return Err(Error::File(vec!["the test file has no tests".into()]));
    }
    if file.tests.len() > TESTS_MAX {
        return Err(Error::File(vec![format!(
            "{} tests, more than the {TESTS_MAX} a file may hold",
            file.tests.len()
        )]));
    }
    let mut tests = Vec::new();
    let mut problems = Vec::new();
    for (index, test) in file.tests.into_iter().enumerate() {
        let name = test.get("name").and_then(Value::as_str).map(str::to_string);
        match serde_json::from_value::<Case>(test) {
            Ok(case) if tests.iter().any(|t: &Case| t.name == case.name) => {
                problems.push(format!(
                    "tests[{index}]: a second test named `{}`",
                    case.name
                ));
            }
            Ok(case) => tests.push(case),
            Err(e) => {
                let which = name.map_or(format!("tests[{index}]"), |n| format!("test `{n}`"));
                problems.push(format!("{which}: {e}"));
            }
        }
    }
    match problems.is_empty() {
        true => Ok(Suite {
            playbook: file.playbook,
            tests,
        }),
        false => Err(Error::File(problems)),
    }
}
