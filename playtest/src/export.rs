//! A test file written from a finished run: its parameters, what each task answered per lease,
//! what approvers and operators did and when, and what the run showed, so that the run played
//! again as a test passes, and stays a regression test when the playbook changes.
//!
//! Only what the history records can be written: the outputs of undos and health gates are not
//! in it (they answer `{}`), and times are the history's, so expectations name no times.

use std::collections::BTreeMap;

use riposte_playbooks::format_duration_ms;
use serde_json::{Map, Value, json};
use yaml_rust2::{Yaml, YamlEmitter};

/// One entry of the run's history, as the orchestrator shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub at_ms: i64,
    pub kind: String,
    pub step: String,
    pub item: u32,
    pub attempt: u32,
    pub message: String,
}

/// A step of the finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub status: String,
    /// For a `for_each` step, the list of item outputs; `Null` when it has none.
    pub output: Value,
    pub for_each: bool,
}

/// What the orchestrator shows of a finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    /// The test's `playbook:` line: the playbook file, relative to the test file.
    pub playbook_file: String,
    pub run_id: String,
    pub params: Map<String, Value>,
    pub requested_by: String,
    pub dry_run: bool,
    pub created_at_ms: i64,
    pub status: String,
    pub error: String,
    pub steps: Vec<Step>,
    pub history: Vec<Entry>,
}

/// The test file, as YAML text.
pub fn test_file(run: &Recording, name: &str) -> String {
    let mut test = Map::new();
    test.insert("name".into(), json!(name));
    test.insert("run_id".into(), json!(run.run_id));
    test.insert("start".into(), json!(rfc3339(run.created_at_ms)));
    test.insert("requested_by".into(), json!(run.requested_by));
    if run.dry_run {
        test.insert("dry_run".into(), json!(true));
    }
    test.insert("params".into(), Value::Object(run.params.clone()));
    let results = results(run);
    if !results.is_empty() {
        test.insert("results".into(), Value::Object(results));
    }
    let events = events(run);
    if !events.is_empty() {
        test.insert("events".into(), Value::Array(events));
    }
    test.insert("expect".into(), expect(run));
    let file = json!({ "playbook": run.playbook_file, "tests": [test] });
    let mut text = String::from("# Recorded from run ");
    text.push_str(&run.run_id);
    text.push_str(": `riposte playbook test` plays it again.\n");
    let mut emitter = YamlEmitter::new(&mut text);
    emitter
        .dump(&to_yaml(&file))
        .expect("writing YAML to a String cannot fail");
    if let Some(rest) = text.strip_prefix("---\n") {
        text = rest.to_string();
    }
    text = text.replacen("\n---\n", "\n", 1);
    text.push('\n');
    text
}

/// The answer of every lease of every task, in order, keyed as a test names them.
fn results(run: &Recording) -> Map<String, Value> {
    let mut leased: BTreeMap<(String, String, u32), i64> = BTreeMap::new();
    let mut answers: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in &run.history {
        let Some((prefix, what)) = entry.kind.split_once('.') else {
            continue;
        };
        if !matches!(prefix, "task" | "undo" | "health") {
            continue;
        }
        let unit = (prefix.to_string(), entry.step.clone(), entry.item);
        if what == "leased" {
            leased.insert(unit, entry.at_ms);
            continue;
        }
        let Some(since) = leased.get(&unit).copied() else {
            continue;
        };
        let mut answer = Map::new();
        match what {
            "succeeded" if prefix == "task" => {
                answer.insert("output".into(), output_of(run, &entry.step, entry.item));
            }
            "succeeded" => {
                answer.insert("output".into(), json!({}));
            }
            "failed" => {
                let (message, retryable) = failure(&entry.message);
                answer.insert("error".into(), json!(message));
                if !retryable {
                    answer.insert("retryable".into(), json!(false));
                }
            }
            "lease_expired" => {
                answer.insert("lost".into(), json!(true));
            }
            _ => continue,
        }
        leased.remove(&unit);
        let takes = (entry.at_ms - since).max(0) as u64;
        if takes > 0 {
            answer.insert("takes".into(), json!(format_duration_ms(takes)));
        }
        let key = match prefix {
            "undo" => format!("{}.undo", entry.step),
            "health" => format!("{}.health", entry.step),
            _ if is_for_each(run, &entry.step) => format!("{}[{}]", entry.step, entry.item),
            _ => entry.step.clone(),
        };
        answers.entry(key).or_default().push(Value::Object(answer));
    }
    answers
        .into_iter()
        .map(|(key, mut list)| {
            let value = match list.len() {
                1 => list.remove(0),
                _ => Value::Array(list),
            };
            (key, value)
        })
        .collect()
}

/// A failure's message without the scheduler's note, and whether it could be retried.
fn failure(message: &str) -> (&str, bool) {
    if let Some(text) = message.strip_suffix(" (not retryable)") {
        return (text, false);
    }
    (
        message
            .strip_suffix(" (attempts exhausted)")
            .unwrap_or(message),
        true,
    )
}

fn is_for_each(run: &Recording, step: &str) -> bool {
    run.steps.iter().any(|s| s.id == step && s.for_each)
}

fn output_of(run: &Recording, step: &str, item: u32) -> Value {
    let Some(step) = run.steps.iter().find(|s| s.id == step) else {
        return json!({});
    };
    match (&step.output, step.for_each) {
        (Value::Array(items), true) => items.get(item as usize).cloned().unwrap_or(json!({})),
        (Value::Null, _) => json!({}),
        (output, _) => output.clone(),
    }
}

/// What approvers and operators did, from the history.
fn events(run: &Recording) -> Vec<Value> {
    let mut events = Vec::new();
    for entry in &run.history {
        let at = format_duration_ms((entry.at_ms - run.created_at_ms).max(0) as u64);
        let by_reason = |text: &str| -> Option<(String, String)> {
            let rest = text.strip_prefix("by ")?;
            let (by, reason) = rest.split_once(": ").unwrap_or((rest, ""));
            Some((by.to_string(), reason.to_string()))
        };
        let event = match entry.kind.as_str() {
            "approval.decision" => {
                let (verb, rest) = match entry.message.split_once(" by ") {
                    Some(("approved", rest)) => ("approve", rest),
                    Some(("rejected", rest)) => ("reject", rest),
                    _ => continue,
                };
                let by = rest.split_once(": ").map_or(rest, |(by, _)| by);
                json!({ "at": at, verb: entry.step, "by": by })
            }
            "run.cancel_requested" => {
                let Some((by, reason)) = by_reason(&entry.message) else {
                    continue;
                };
                json!({ "at": at, "cancel": reason, "by": by })
            }
            "grant.revoke_requested" => {
                let Some((by, _)) = by_reason(&entry.message) else {
                    continue;
                };
                let mut event = json!({ "at": at, "revoke": entry.step, "by": by });
                if entry.item > 0 {
                    event["item"] = json!(entry.item);
                }
                event
            }
            "step.retry_requested" => {
                let Some((by, _)) = by_reason(&entry.message) else {
                    continue;
                };
                json!({ "at": at, "retry": entry.step, "by": by })
            }
            "step.skipped" if entry.message.starts_with("skipped by ") => {
                let Some((by, _)) = by_reason(&entry.message["skipped ".len()..]) else {
                    continue;
                };
                json!({ "at": at, "skip": entry.step, "by": by })
            }
            "run.resumed" => {
                let Some((by, _)) = by_reason(&entry.message) else {
                    continue;
                };
                json!({ "at": at, "resume": true, "by": by })
            }
            _ => continue,
        };
        events.push(event);
    }
    events
}

/// What the run showed: its status and error, every step's status and output, the undos in
/// the order they ran, the grants and the approvals.
fn expect(run: &Recording) -> Value {
    let mut expect = Map::new();
    expect.insert("status".into(), json!(run.status));
    if !run.error.is_empty() {
        expect.insert("error".into(), json!(run.error));
    }
    let steps: Map<String, Value> = run
        .steps
        .iter()
        .map(|s| (s.id.clone(), json!(s.status)))
        .collect();
    expect.insert("steps".into(), Value::Object(steps));
    let undo: Vec<&str> = run
        .history
        .iter()
        .filter(|e| e.kind == "undo.leased" && e.attempt <= 1)
        .map(|e| e.step.as_str())
        .collect();
    expect.insert("undo".into(), json!(undo));
    let grants: Vec<Value> = run
        .history
        .iter()
        .filter(|e| e.kind == "grant.opened")
        .map(|e| json!({ "step": e.step }))
        .collect();
    expect.insert("grants".into(), json!(grants));
    let approvals: Vec<&str> = run
        .history
        .iter()
        .filter(|e| e.kind == "approval.requested")
        .map(|e| e.step.as_str())
        .collect();
    expect.insert("approvals".into(), json!(approvals));
    let outputs: Map<String, Value> = run
        .steps
        .iter()
        .filter(|s| !s.output.is_null())
        .map(|s| (s.id.clone(), s.output.clone()))
        .collect();
    if !outputs.is_empty() {
        expect.insert("outputs".into(), Value::Object(outputs));
    }
    Value::Object(expect)
}

/// RFC 3339 in UTC, to the millisecond.
fn rfc3339(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

fn to_yaml(value: &Value) -> Yaml {
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) if n.is_i64() || n.is_u64() => n
            .as_i64()
            .map(Yaml::Integer)
            .unwrap_or_else(|| Yaml::Real(n.to_string())),
        Value::Number(n) => Yaml::Real(n.to_string()),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(to_yaml).collect()),
        Value::Object(map) => Yaml::Hash(
            map.iter()
                .map(|(k, v)| (Yaml::String(k.clone()), to_yaml(v)))
                .collect(),
        ),
    }
}
