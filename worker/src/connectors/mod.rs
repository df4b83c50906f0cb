//! Connectors: the worker-side implementations of actions, and the one place that maps an
//! action name to its implementation ([`Action::from_name`] and [`Connectors::execute`]).
//!
//! A connector family is a module with its own `Action` enum (`core::Action`, `firewall::Action`,
//! ...), typed inputs parsed from the task's JSON before anything is changed, and an `execute`
//! that hands the typed request to the backend the worker's configuration chose (nftables or an
//! Azure NSG for `firewall.*`, `usermod` or Graph for `identity.*`, ...). Backends live in their
//! own modules (`nftables`, `linux_account`, `apt`, `azure/`); the rest of the worker only sees
//! names, JSON in and JSON or a [`Failure`] out.
//!
//! A family whose backend is not configured is not offered: the worker does not advertise its
//! actions, so the orchestrator never leases them to it.
//!
//! Every backend honours [`Context::dry_run`]: it reads the current state, reports exactly what
//! it would change (`"dry_run": true` and a `changes` list in the output) and changes nothing.

pub mod access;
pub mod apt;
pub mod azure;
pub(crate) mod core;
pub mod defender;
pub mod dnf;
pub mod firewall;
pub(crate) mod http;
pub mod identity;
mod linux_account;
pub mod nftables;
pub(crate) mod notify;
pub mod patch;
pub mod sentinel;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::redact::Redactor;
use crate::{Config, exec};

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
    /// The run is a dry run: read, report what would change, change nothing.
    pub(crate) dry_run: bool,
    /// The task's idempotency key (`run/step/item`), stable across attempts.
    pub(crate) key: String,
}

#[cfg(test)]
impl Context {
    /// A first attempt with `timeout`, not a dry run, key `run/step/0`.
    pub(crate) fn test(timeout: Duration) -> Context {
        Context {
            attempt: 1,
            timeout,
            dry_run: false,
            key: "run/step/0".to_owned(),
        }
    }
}

/// Why an action did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Failure {
    /// Human-readable, lowercase, without a trailing period.
    pub(crate) message: String,
    /// False when retrying cannot help (bad input, refused by a guard, a 4xx answer).
    pub(crate) retryable: bool,
    /// How long the upstream asked to be left alone (a `Retry-After` longer than the action
    /// could wait), when it said.
    pub(crate) retry_after: Option<std::time::Duration>,
}

impl Failure {
    /// A failure that may go away on another attempt (timeouts, unreachable services).
    pub(crate) fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that another attempt would repeat.
    pub(crate) fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    /// Bad input: never retryable.
    pub(crate) fn invalid_input(detail: impl std::fmt::Display) -> Failure {
        Failure::permanent(format!("invalid input: {detail}"))
    }
}

/// Every action this worker knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `core.*`: built-in actions for testing and flow control.
    Core(core::Action),
    /// `http.*`: outbound HTTP requests to allowed hosts.
    Http(http::Action),
    /// `firewall.*`: block and unblock source addresses.
    Firewall(firewall::Action),
    /// `identity.*`: disable and enable accounts, end their sessions.
    Identity(identity::Action),
    /// `access.*`: just-in-time network access.
    Access(access::Action),
    /// `patch.*`: assess, install and verify package updates.
    Patch(patch::Action),
    /// `notify.*`: tell people.
    Notify(notify::Action),
    /// `sentinel.*`: comment on, update and list Microsoft Sentinel incidents.
    Sentinel(sentinel::Action),
    /// `defender.*`: list Microsoft Defender alerts.
    Defender(defender::Action),
}

impl Action {
    /// All actions, in a stable order.
    pub(crate) fn all() -> impl Iterator<Item = Action> {
        let core = core::Action::ALL.iter().copied().map(Action::Core);
        let http = http::Action::ALL.iter().copied().map(Action::Http);
        let firewall = firewall::Action::ALL.iter().copied().map(Action::Firewall);
        let identity = identity::Action::ALL.iter().copied().map(Action::Identity);
        let access = access::Action::ALL.iter().copied().map(Action::Access);
        let patch = patch::Action::ALL.iter().copied().map(Action::Patch);
        let notify = notify::Action::ALL.iter().copied().map(Action::Notify);
        let sentinel = sentinel::Action::ALL.iter().copied().map(Action::Sentinel);
        let defender = defender::Action::ALL.iter().copied().map(Action::Defender);
        core.chain(http)
            .chain(firewall)
            .chain(identity)
            .chain(access)
            .chain(patch)
            .chain(notify)
            .chain(sentinel)
            .chain(defender)
    }

    /// The wire name, e.g. `core.noop`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Core(action) => action.name(),
            Action::Http(action) => action.name(),
            Action::Firewall(action) => action.name(),
            Action::Identity(action) => action.name(),
            Action::Access(action) => action.name(),
            Action::Patch(action) => action.name(),
            Action::Notify(action) => action.name(),
            Action::Sentinel(action) => action.name(),
            Action::Defender(action) => action.name(),
        }
    }
}

/// Which backend serves each response family; `None` leaves the family out of this worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backends {
    /// `firewall.*`.
    pub firewall: Option<firewall::Backend>,
    /// `identity.*`.
    pub identity: Option<identity::Backend>,
    /// `access.*`.
    pub access: Option<access::Backend>,
    /// `patch.*`.
    pub patch: Option<patch::Backend>,
    /// `sentinel.*`.
    pub sentinel: Option<sentinel::Backend>,
    /// `defender.*`.
    pub defender: Option<defender::Backend>,
}

/// What the backends of one worker share: its configuration, the HTTP connector (the only
/// HTTP client), the Azure client with its token cache, and the redactor that knows the
/// worker's secrets.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) redactor: Redactor,
    pub(crate) http: http::Connector,
    pub(crate) azure: azure::Client,
    pub(crate) nftables: nftables::Settings,
    pub(crate) apt: apt::Settings,
    pub(crate) dnf: dnf::Settings,
    /// The Linux account actions refuse a uid below this (see [`Config::protected_uid_below`]).
    pub(crate) protected_uid_below: u32,
}

#[cfg(test)]
impl Shared {
    /// The default settings of every backend around `http`.
    pub(crate) fn test(http: http::Connector) -> Shared {
        let config = Config::new("http://127.0.0.1:1");
        let redactor = Redactor::default();
        let azure = azure::Client::new(&config.azure, &http, &redactor).expect("azure client");
        Shared {
            redactor,
            http,
            azure,
            nftables: config.nftables,
            apt: config.apt,
            dnf: config.dnf,
            protected_uid_below: config.protected_uid_below,
        }
    }
}

/// The connectors of one worker, with whatever state they keep.
#[derive(Debug)]
pub(crate) struct Connectors {
    shared: Shared,
    backends: Backends,
}

impl Connectors {
    /// Builds every connector from the worker's configuration.
    pub(crate) fn new(config: &Config) -> Result<Connectors, crate::Error> {
        let http = http::Connector::new(config.http_allow_hosts.clone())?;
        let redactor = Redactor::default();
        let azure = azure::Client::new(&config.azure, &http, &redactor)?;
        let shared = Shared {
            redactor,
            http,
            azure,
            nftables: config.nftables.clone(),
            apt: config.apt.clone(),
            dnf: config.dnf.clone(),
            protected_uid_below: config.protected_uid_below,
        };
        Ok(Connectors {
            shared,
            backends: config.backends,
        })
    }

    /// Prepares the backends that keep state on this host before any task runs: the nftables
    /// table, when `firewall.*` or `access.*` uses it.
    pub(crate) async fn prepare(&self) -> Result<(), crate::Error> {
        let b = &self.backends;
        let uses_nftables = b.firewall == Some(firewall::Backend::Nftables)
            || b.access == Some(access::Backend::Nftables);
        if uses_nftables {
            nftables::prepare(&self.shared.nftables)
                .await
                .map_err(|e| crate::Error::Backend(format!("nftables: {e}")))?;
        }
        Ok(())
    }

    /// The actions this worker offers: `core.*`, `http.*`, `notify.*`, and each response
    /// family that has a backend.
    pub(crate) fn offered(&self) -> Vec<Action> {
        let b = &self.backends;
        Action::all()
            .filter(|action| match action {
                Action::Core(_) | Action::Http(_) | Action::Notify(_) => true,
                Action::Firewall(_) => b.firewall.is_some(),
                Action::Identity(_) => b.identity.is_some(),
                Action::Access(_) => b.access.is_some(),
                Action::Patch(_) => b.patch.is_some(),
                Action::Sentinel(_) => b.sentinel.is_some(),
                Action::Defender(_) => b.defender.is_some(),
            })
            .collect()
    }

    /// The redactor every failure message and every log line of upstream text goes through.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.shared.redactor
    }

    /// The offered action with this wire name.
    pub(crate) fn find(&self, name: &str) -> Option<Action> {
        self.offered()
            .into_iter()
            .find(|action| action.name() == name)
    }

    /// Runs `action` on `input`. Cancellation is by dropping the future.
    ///
    /// The action's future is boxed: backend futures (retries, polling, processes) are large,
    /// and a task's future lives on a tokio worker thread's stack until it is first polled.
    pub(crate) async fn execute(
        &self,
        action: Action,
        input: Input,
        cx: &Context,
    ) -> Result<Value, Failure> {
        Box::pin(self.execute_unboxed(action, input, cx)).await
    }

    async fn execute_unboxed(
        &self,
        action: Action,
        input: Input,
        cx: &Context,
    ) -> Result<Value, Failure> {
        let unconfigured = || {
            Failure::permanent(format!(
                "action {} has no backend on this worker",
                action.name()
            ))
        };
        match action {
            Action::Core(action) => core::execute(action, input, cx).await,
            Action::Http(action) => self.shared.http.execute(action, input, cx).await,
            Action::Notify(action) => notify::execute(&self.shared, action, input, cx).await,
            Action::Firewall(action) => {
                let backend = self.backends.firewall.ok_or_else(unconfigured)?;
                firewall::execute(&self.shared, backend, action, input, cx).await
            }
            Action::Identity(action) => {
                let backend = self.backends.identity.ok_or_else(unconfigured)?;
                identity::execute(&self.shared, backend, action, input, cx).await
            }
            Action::Access(action) => {
                let backend = self.backends.access.ok_or_else(unconfigured)?;
                access::execute(&self.shared, backend, action, input, cx).await
            }
            Action::Patch(action) => {
                let backend = self.backends.patch.ok_or_else(unconfigured)?;
                patch::execute(&self.shared, backend, action, input, cx).await
            }
            Action::Sentinel(action) => {
                let backend = self.backends.sentinel.ok_or_else(unconfigured)?;
                sentinel::execute(&self.shared, backend, action, input, cx).await
            }
            Action::Defender(action) => {
                let backend = self.backends.defender.ok_or_else(unconfigured)?;
                defender::execute(&self.shared, backend, action, input, cx).await
            }
        }
    }
}

/// Runs `command` through the process door. A program that cannot be started is a permanent
/// failure (another attempt would not find it either); a timeout or an IO error is retryable.
pub(crate) async fn run(command: &exec::Command) -> Result<exec::Output, Failure> {
    exec::run(command).await.map_err(|error| match error {
        exec::Error::Spawn { .. } => Failure::permanent(error.to_string()),
        exec::Error::Timeout { .. } | exec::Error::Io { .. } => {
            Failure::retryable(error.to_string())
        }
    })
}

/// Runs `command` and answers its output when it exits 0; any other exit becomes the failure
/// that `failed` makes of it (each backend knows what its tool's exit codes mean).
pub(crate) async fn run_checked(
    command: &exec::Command,
    failed: fn(&exec::Command, &exec::Output) -> Failure,
) -> Result<exec::Output, Failure> {
    let output = run(command).await?;
    if output.success() {
        Ok(output)
    } else {
        Err(failed(command, &output))
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

    /// A list of strings, each checked by `check`, at most `max` of them; empty when absent.
    pub(crate) fn strings(
        &mut self,
        key: &str,
        max: usize,
        check: impl Fn(&str) -> Result<String, Failure>,
    ) -> Result<Vec<String>, Failure> {
        let not_a_list = || Failure::invalid_input(format!("`{key}` must be a list of strings"));
        let items = match self.value(key) {
            None => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(not_a_list()),
        };
        if items.len() > max {
            return Err(Failure::invalid_input(format!(
                "`{key}` has more than {max} items"
            )));
        }
        items
            .iter()
            .map(|item| match item {
                Value::String(text) => check(text),
                _ => Err(not_a_list()),
            })
            .collect()
    }

    /// A boolean field.
    pub(crate) fn boolean(&mut self, key: &str) -> Result<Option<bool>, Failure> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(flag)),
            Some(other) => Err(wrong_type(key, "true or false", &other)),
        }
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
