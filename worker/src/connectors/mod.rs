//! Connectors: the worker-side implementations of actions, and the one place that maps an
//! action name to its implementation ([`Action::from_name`] and [`Connectors::execute`]).
//!
//! A connector is a module with its own `Action` enum (`core::Action`, `http::Action`) and an
//! `execute` function. Adding one (nftables, Graph, apt, ...) means a module, a variant of
//! [`Action`] and a match arm in [`Connectors::execute`]; the rest of the worker only sees names,
//! JSON in and JSON or a [`Failure`] out.

pub(crate) mod core;
pub(crate) mod http;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::Config;

/// An action's input: the task's `input_json`, always a JSON object.
pub(crate) type Input = Map<String, Value>;

/// What an action knows about the task it runs for.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// 1-based attempt number of the task.
    pub(crate) attempt: u32,
    /// The time the whole action may take (the task's timeout); connectors cap their own
    /// timeouts by it so that they fail with their own, more specific message.
    pub(crate) timeout: Duration,
}

/// Why an action did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    /// Human-readable, lowercase, without a trailing period.
    pub(crate) message: String,
    /// False when retrying cannot help (bad input, refused by a guard, a 4xx answer).
    pub(crate) retryable: bool,
}

impl Failure {
    /// A failure that may go away on another attempt (timeouts, unreachable services).
    pub(crate) fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that another attempt would repeat.
    pub(crate) fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
        }
    }

    /// Bad input: never retryable.
    pub(crate) fn invalid_input(detail: impl std::fmt::Display) -> Failure {
        Failure::permanent(format!("invalid input: {detail}"))
    }
}

/// Every action this worker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `core.*`: built-in actions for testing and flow control.
    Core(core::Action),
    /// `http.*`: outbound HTTP requests to allowed hosts.
    Http(http::Action),
}

impl Action {
    /// All actions, in a stable order.
    pub(crate) fn all() -> impl Iterator<Item = Action> {
        let core_actions = core::Action::ALL.iter().copied().map(Action::Core);
        let http_actions = http::Action::ALL.iter().copied().map(Action::Http);
        core_actions.chain(http_actions)
    }

    /// The wire name, e.g. `core.noop`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Core(action) => action.name(),
            Action::Http(action) => action.name(),
        }
    }

    /// The action with this wire name, if this worker implements it.
    pub(crate) fn from_name(name: &str) -> Option<Action> {
        Action::all().find(|action| action.name() == name)
    }
}

/// The connectors of one worker, with whatever state they keep (the HTTP client).
#[derive(Debug)]
pub(crate) struct Connectors {
    http: http::Connector,
}

impl Connectors {
    /// Builds every connector from the worker's configuration.
    pub(crate) fn new(config: &Config) -> Result<Connectors, crate::Error> {
        let http = http::Connector::new(config.http_allow_hosts.clone())?;
        Ok(Connectors { http })
    }

    /// Runs `action` on `input`. Cancellation is by dropping the future.
    pub(crate) async fn execute(
        &self,
        action: Action,
        input: Input,
        cx: &Context,
    ) -> Result<Value, Failure> {
        match action {
            Action::Core(action) => core::execute(action, input, cx).await,
            Action::Http(action) => self.http.execute(action, input, cx).await,
        }
    }
}

/// Reads the fields of an action's input one by one with precise error messages, and refuses
/// fields the action does not know (a typo must not silently fall back to a default).
pub(crate) struct Fields {
    input: Input,
}

impl Fields {
    /// Checks that `input` has no field outside `known`. A `null` field counts as absent.
    pub(crate) fn new(input: Input, known: &[&str]) -> Result<Fields, Failure> {
        if let Some(unknown) = input.keys().find(|key| !known.contains(&key.as_str())) {
            let expected = known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let message = format!("unknown field `{unknown}` (expected {expected})");
            return Err(Failure::invalid_input(message));
        }
        Ok(Fields { input })
    }

    /// The field's value, `None` when absent or null.
    pub(crate) fn value(&mut self, key: &str) -> Option<Value> {
        self.input.remove(key).filter(|value| !value.is_null())
    }

    /// A string field.
    pub(crate) fn string(&mut self, key: &str) -> Result<Option<String>, Failure> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(wrong_type(key, "a string", &other)),
        }
    }

    /// A string field that must be present.
    pub(crate) fn required_string(&mut self, key: &str) -> Result<String, Failure> {
        self.string(key)?
            .ok_or_else(|| Failure::invalid_input(format!("`{key}` is required")))
    }

    /// A non-negative integer field.
    pub(crate) fn u64(&mut self, key: &str) -> Result<Option<u64>, Failure> {
        match self.value(key) {
            None => Ok(None),
            Some(value) => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong_type(key, "a non-negative integer", &value)),
        }
    }

    /// A JSON object field.
    pub(crate) fn object(&mut self, key: &str) -> Result<Option<Map<String, Value>>, Failure> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object)),
            Some(other) => Err(wrong_type(key, "an object", &other)),
        }
    }

    /// A duration field written as text (`"2s"`, `"1m 30s"`), at most `max`.
    pub(crate) fn duration(
        &mut self,
        key: &str,
        max: Duration,
    ) -> Result<Option<Duration>, Failure> {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            Failure::invalid_input(format!("`{key}`: invalid duration {text:?}: {e}"))
        })?;
        if duration > max {
            let max = humantime::format_duration(max);
            return Err(Failure::invalid_input(format!(
                "`{key}` {text:?} exceeds the maximum of {max}"
            )));
        }
        Ok(Some(duration))
    }
}

fn wrong_type(key: &str, expected: &str, found: &Value) -> Failure {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Failure::invalid_input(format!("`{key}` must be {expected}, not {found}"))
}
