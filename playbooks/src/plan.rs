//! The plan: a stable, human-readable text of a compiled playbook, the DAG as layers with one
//! step per line. Used by snapshot tests and `riposte playbook show`.

use std::fmt::Write;

use serde_json::Value;

use crate::duration;
use crate::graph;
use crate::model::{
    Approval, Backoff, ParamSpec, ParamType, Playbook, Step, StepIndex, StepKind, Waves,
};

impl Playbook {
    /// The position of the step with id `id`.
    pub fn step_index(&self, id: &str) -> Option<StepIndex> {
        self.steps.iter().position(|step| step.id == id)
    }

    /// The playbook as text: header (description, concurrency, timeout), params, then the
    /// steps by layer (a step's layer is one more than its deepest need), one step per line:
    /// its kind (the action, or `sleep`, `until`, `approval` with its value), needs, when,
    /// for_each/concurrency, retry, timeout, labels, input, approval, undo, grant and waves.
    /// Values are JSON; a group of settings is in parentheses.
    pub fn plan(&self) -> String {
        let mut out = format!("playbook {} version {}\n", self.name, self.version);
        if !self.description.is_empty() {
            let _ = writeln!(out, "description {}", json_text(&self.description));
        }
        if let Some(concurrency) = &self.concurrency {
            let _ = writeln!(
                out,
                "concurrency key={} limit={} policy={}",
                json_text(&concurrency.key),
                concurrency.limit,
                concurrency.policy.as_str()
            );
        }
        if let Some(timeout_ms) = self.timeout_ms {
            let _ = writeln!(out, "timeout {}", duration::format_ms(timeout_ms));
        }
        if !self.params.is_empty() {
            out.push_str("params\n");
            for param in &self.params {
                let _ = writeln!(out, "  {}", param_line(param));
            }
        }
        out.push_str("steps\n");
        let needs: Vec<Vec<usize>> = self.steps.iter().map(|s| s.needs.clone()).collect();
        let layers = graph::layers(&needs);
        let deepest = layers.iter().copied().max().unwrap_or(0);
        for layer in 0..=deepest {
            let _ = writeln!(out, "  layer {layer}");
            for (step, _) in self.steps.iter().zip(&layers).filter(|(_, l)| **l == layer) {
                let _ = writeln!(out, "    {}", self.step_line(step));
            }
        }
        out
    }

    fn step_line(&self, step: &Step) -> String {
        let mut line = format!("{}: ", step.id);
        match &step.kind {
            StepKind::Action => line.push_str(&step.action),
            StepKind::Sleep { duration } => {
                let _ = write!(line, "sleep {}", json_text(duration));
            }
            StepKind::Until { at } => {
                let _ = write!(line, "until {}", json_text(at));
            }
            StepKind::Approval => {
                if let Some(approval) = &step.approval {
                    let _ = write!(line, "approval ({})", approval_text(approval));
                }
            }
        }
        if !step.needs.is_empty() {
            let ids: Vec<&str> = step
                .needs
                .iter()
                .map(|&n| self.steps[n].id.as_str())
                .collect();
            let _ = write!(line, " needs=[{}]", ids.join(", "));
        }
        if let Some(when) = &step.when {
            let _ = write!(line, " when={}", json_text(when));
        }
        if step.kind == StepKind::Action {
            action_settings(step, &mut line);
            // An approval step shows its approval as its kind, above.
            if let Some(approval) = &step.approval {
                let _ = write!(line, " approval=({})", approval_text(approval));
            }
        }
        if let Some(undo) = &step.undo {
            let _ = write!(line, " undo=({}{})", undo.action, with_text(&undo.with));
        }
        if let Some(grant) = &step.grant {
            let _ = write!(line, " grant=(ttl={}", json_text(&grant.ttl));
            if !grant.subject.is_empty() {
                let _ = write!(line, " subject={}", json_text(&grant.subject));
            }
            line.push(')');
        }
        if let Some(waves) = &step.waves {
            let _ = write!(line, " waves=({})", waves_text(waves));
        }
        line
    }
}

/// What only an action step has: for_each, retry, timeout, labels and input.
fn action_settings(step: &Step, line: &mut String) {
    if let Some(for_each) = &step.for_each {
        let _ = write!(
            line,
            " for_each={} concurrency={}",
            json_text(&for_each.items),
            for_each.concurrency
        );
    }
    if step.retry.attempts > 1 {
        let _ = write!(line, " retry={}", retry_text(step));
    }
    let _ = write!(line, " timeout={}", duration::format_ms(step.timeout_ms));
    if !step.labels.is_empty() {
        let labels: serde_json::Map<String, Value> = step
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let _ = write!(line, " labels={}", Value::Object(labels));
    }
    line.push_str(&with_text(&step.with));
}

/// ` with=<sorted JSON>`, or nothing for an empty mapping.
fn with_text(with: &Value) -> String {
    if with.as_object().is_some_and(serde_json::Map::is_empty) {
        return String::new();
    }
    format!(" with={}", sorted_json(with))
}

fn approval_text(approval: &Approval) -> String {
    let groups: Vec<Value> = approval
        .approvers
        .iter()
        .cloned()
        .map(Value::String)
        .collect();
    format!(
        "approvers={} min={} timeout={} on_timeout={}",
        Value::Array(groups),
        approval.min,
        duration::format_ms(approval.timeout_ms),
        approval.on_timeout.as_str()
    )
}

fn waves_text(waves: &Waves) -> String {
    let mut text = format!(
        "canary={} batch={} error_budget={}",
        waves.canary, waves.batch, waves.error_budget
    );
    if let Some(health) = &waves.health {
        let _ = write!(
            text,
            " health=({}{})",
            health.action,
            with_text(&health.with)
        );
    }
    text
}

fn retry_text(step: &Step) -> String {
    let retry = &step.retry;
    match retry.backoff {
        Backoff::Fixed => {
            format!(
                "{}x fixed {}",
                retry.attempts,
                duration::format_ms(retry.initial_ms)
            )
        }
        Backoff::Exponential => format!(
            "{}x exponential {}..{}",
            retry.attempts,
            duration::format_ms(retry.initial_ms),
            duration::format_ms(retry.max_ms)
        ),
    }
}

fn param_line(param: &ParamSpec) -> String {
    let mut line = format!("{}: ", param.name);
    match &param.ty {
        ParamType::String => line.push_str("string"),
        ParamType::Int { min, max } => {
            line.push_str("int");
            if let Some(min) = min {
                let _ = write!(line, " min={min}");
            }
            if let Some(max) = max {
                let _ = write!(line, " max={max}");
            }
        }
        ParamType::Bool => line.push_str("bool"),
        ParamType::Ip => line.push_str("ip"),
        ParamType::Cidr => line.push_str("cidr"),
        ParamType::Duration { max_ms } => {
            line.push_str("duration");
            if let Some(max_ms) = max_ms {
                let _ = write!(line, " max={}", duration::format_ms(*max_ms));
            }
        }
        ParamType::List => line.push_str("list"),
        ParamType::Enum { values } => {
            let values: Vec<Value> = values.iter().cloned().map(Value::String).collect();
            let _ = write!(line, "enum values={}", Value::Array(values));
        }
    }
    if param.required {
        line.push_str(" required");
    }
    if let Some(default) = &param.default {
        let _ = write!(line, " default={default}");
    }
    if !param.description.is_empty() {
        let _ = write!(line, " description={}", json_text(&param.description));
    }
    line
}

/// JSON text with object keys sorted, whatever order the map keeps them in.
fn sorted_json(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(sorted_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            let entries: Vec<String> = entries
                .into_iter()
                .map(|(key, value)| format!("{}:{}", json_text(key), sorted_json(value)))
                .collect();
            format!("{{{}}}", entries.join(","))
        }
        scalar => scalar.to_string(),
    }
}

fn json_text(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}
