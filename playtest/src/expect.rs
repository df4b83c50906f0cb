//! What a played run shows, next to what its test expects: one [`Mismatch`] per expectation
//! that does not hold, each with a readable diff.

use std::fmt;

use riposte_playbooks::{Playbook, format_duration_ms};
use riposte_scheduler::state::StepState;
use serde_json::{Map, Value, json};
use similar::TextDiff;

use crate::format::{Expect, GrantExpect};
use crate::sim::Played;
use crate::{Error, duration_ms};

/// One expectation that does not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// Which expectation: `status`, `steps`, `grants`...
    pub what: String,
    pub expected: Value,
    pub actual: Value,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scalar = |v: &Value| !v.is_object() && !v.is_array();
        if scalar(&self.expected) && scalar(&self.actual) {
            return write!(
                f,
                "{}: expected {}, got {}",
                self.what, self.expected, self.actual
            );
        }
        writeln!(f, "{}: (- expected, + actual)", self.what)?;
        let expected = pretty(&self.expected);
        let actual = pretty(&self.actual);
        let diff = TextDiff::from_lines(&expected, &actual);
        for change in diff.iter_all_changes() {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => "-",
                similar::ChangeTag::Insert => "+",
                similar::ChangeTag::Equal => " ",
            };
            write!(f, "  {sign} {}", change.value())?;
            if change.missing_newline() {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The facts of a played run, in the shape a test writes them.
pub struct Facts {
    pub status: String,
    pub error: Option<String>,
    pub steps: Map<String, Value>,
    pub undo: Vec<String>,
    pub grants: Vec<GrantExpect>,
    pub approvals: Vec<String>,
    pub outputs: Map<String, Value>,
    pub inputs: Map<String, Value>,
    pub ended: Option<String>,
}

impl Facts {
    pub fn of(playbook: &Playbook, played: &Played) -> Facts {
        let state = &played.state;
        let offset = |at_ms: i64| format_duration_ms((at_ms - played.start_ms).max(0) as u64);
        let mut steps = Map::new();
        let mut outputs = Map::new();
        let mut inputs = Map::new();
        for (spec, step) in playbook.steps.iter().zip(&state.steps) {
            steps.insert(spec.id.clone(), json!(step.status.as_str()));
            outputs.insert(spec.id.clone(), step.output.clone().unwrap_or(Value::Null));
            inputs.insert(spec.id.clone(), input_of(step, spec.for_each.is_some()));
        }
        let mut grants: Vec<GrantExpect> = Vec::new();
        let mut open: Vec<(String, u32)> = Vec::new();
        for event in &played.history {
            match event.kind.as_str() {
                "grant.opened" => {
                    let subject = playbook.step_index(&event.step).and_then(|index| {
                        state
                            .undo
                            .iter()
                            .find(|u| u.step == index && u.item == event.item)
                            .and_then(|u| u.grant.as_ref())
                            .map(|g| g.subject.clone())
                    });
                    grants.push(GrantExpect {
                        step: event.step.clone(),
                        subject,
                        opened: Some(offset(event.at_ms)),
                        revoked: Some("never".into()),
                    });
                    open.push((event.step.clone(), event.item));
                }
                "grant.revoked" => {
                    let key = (event.step.clone(), event.item);
                    if let Some(index) = open.iter().position(|o| *o == key) {
                        open[index] = (String::new(), u32::MAX);
                        grants[index].revoked = Some(offset(event.at_ms));
                    }
                }
                _ => {}
            }
        }
        let approvals = played
            .history
            .iter()
            .filter(|e| e.kind == "approval.requested")
            .map(|e| e.step.clone())
            .collect();
        Facts {
            status: state.status.as_str().to_string(),
            error: state.error.clone(),
            steps,
            undo: played.undo_order.clone(),
            grants,
            approvals,
            outputs,
            inputs,
            ended: state.finished_at_ms.map(offset),
        }
    }

    /// Every expectation of `expect` that the facts do not meet.
    pub fn compare(&self, expect: &Expect) -> Result<Vec<Mismatch>, Error> {
        let mut out = Vec::new();
        let mut check = |what: &str, holds: bool, expected: Value, actual: Value| {
            if !holds {
                out.push(Mismatch {
                    what: what.to_string(),
                    expected,
                    actual,
                });
            }
        };
        check(
            "status",
            expect.status == self.status,
            json!(expect.status),
            json!(self.status),
        );
        if let Some(text) = &expect.error {
            let holds = self
                .error
                .as_deref()
                .is_some_and(|e| e.contains(text.as_str()));
            check("error (contains)", holds, json!(text), json!(self.error));
        }
        if let Some(steps) = &expect.steps {
            let (expected, actual) = named(steps.iter().map(|(k, v)| (k, json!(v))), &self.steps)?;
            check("steps", expected == actual, expected.into(), actual.into());
        }
        if let Some(undo) = &expect.undo {
            check("undo", *undo == self.undo, json!(undo), json!(self.undo));
        }
        if let Some(approvals) = &expect.approvals {
            let holds = *approvals == self.approvals;
            check("approvals", holds, json!(approvals), json!(self.approvals));
        }
        if let Some(grants) = &expect.grants {
            let holds = grants_match(grants, &self.grants)?;
            check("grants", holds, json!(grants), json!(self.grants));
        }
        for (what, expected, facts) in [
            ("outputs", &expect.outputs, &self.outputs),
            ("inputs", &expect.inputs, &self.inputs),
        ] {
            let Some(expected) = expected else { continue };
            let (expected, actual) = named(expected.iter().map(|(k, v)| (k, v.clone())), facts)?;
            let holds = contains(
                &Value::Object(actual.clone()),
                &Value::Object(expected.clone()),
            );
            check(what, holds, expected.into(), actual.into());
        }
        if let Some(ended) = &expect.ended {
            let expected_ms = duration_ms("expect.ended", ended)?;
            let actual_ms = self
                .ended
                .as_deref()
                .map(|e| duration_ms("", e).unwrap_or(0));
            check(
                "ended",
                actual_ms == Some(expected_ms),
                json!(ended),
                json!(self.ended.clone().unwrap_or_else(|| "not ended".into())),
            );
        }
        Ok(out)
    }
}

/// Entries by step id.
type Named = Map<String, Value>;

/// The expected entries, and the actual ones under the same names; a name that is no step is
/// the test's mistake.
fn named<'a>(
    expected: impl Iterator<Item = (&'a String, Value)>,
    facts: &Map<String, Value>,
) -> Result<(Named, Named), Error> {
    let mut wanted = Map::new();
    let mut actual = Map::new();
    for (name, value) in expected {
        let fact = facts.get(name).ok_or_else(|| {
            Error::Case(format!("expect names no step of the playbook: `{name}`"))
        })?;
        wanted.insert(name.clone(), value);
        actual.insert(name.clone(), fact.clone());
    }
    Ok((wanted, actual))
}

/// A step's rendered input: its one unit's, or the list of its items'.
fn input_of(step: &StepState, for_each: bool) -> Value {
    match (for_each, step.units.as_slice()) {
        (false, [unit]) => unit.input.clone(),
        (false, []) => Value::Null,
        (_, units) => Value::Array(units.iter().map(|u| u.input.clone()).collect()),
    }
}

fn grants_match(expected: &[GrantExpect], actual: &[GrantExpect]) -> Result<bool, Error> {
    if expected.len() != actual.len() {
        return Ok(false);
    }
    for (e, a) in expected.iter().zip(actual) {
        let same_time = |e: &Option<String>, a: &Option<String>| -> Result<bool, Error> {
            let (Some(e), Some(a)) = (e, a) else {
                return Ok(true);
            };
            if e == "never" || a == "never" {
                return Ok(e == a);
            }
            Ok(duration_ms("expect.grants[]", e)? == duration_ms("", a)?)
        };
        let subject = e.subject.is_none() || e.subject == a.subject;
        if e.step != a.step
            || !subject
            || !same_time(&e.opened, &a.opened)?
            || !same_time(&e.revoked, &a.revoked)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `actual` has everything `expected` says: the keys of an expected object (others
/// may be there too), every element of an expected list in order, equal scalars.
pub fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| contains(av, ev))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| contains(av, ev))
        }
        (Value::Number(a), Value::Number(e)) => a.as_f64() == e.as_f64(),
        (a, e) => a == e,
    }
}
