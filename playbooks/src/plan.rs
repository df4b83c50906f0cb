//! The plan: a stable, human-readable text of a compiled playbook, the DAG as layers with one
//! step per line. Used by snapshot tests and `riposte playbook show`.

use std::fmt::Write;

use serde_json::Value;

use crate::duration;
use crate::graph;
use crate::model::{Backoff, ParamSpec, ParamType, Playbook, Step, StepIndex};

impl Playbook {
    /// The position of the step with id `id`.
    pub fn step_index(&self, id: &str) -> Option<StepIndex> {
        self.steps.iter().position(|step| step.id == id)
    }

    /// The playbook as text: header, params, then the steps by layer (a step's layer is one
    /// more than its deepest need), one step per line with its action, needs, when,
    /// for_each/concurrency, retry, timeout, labels and input. Values are JSON.
    pub fn plan(&self) -> String {
        let mut out = format!("playbook {} version {}\n", self.name, self.version);
        if !self.description.is_empty() {
            let _ = writeln!(out, "description {}", json_text(&self.description));
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
        let mut line = format!("{}: {}", step.id, step.action);
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
        if step.with.as_object().is_none_or(|map| !map.is_empty()) {
            let _ = write!(line, " with={}", sorted_json(&step.with));
        }
        line
    }
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
