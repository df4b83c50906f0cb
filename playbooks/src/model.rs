//! The compiled playbook: what validation produces and what the scheduler executes.
//!
//! Every value here has already been checked: step ids are unique, `needs` point at earlier
//! steps in `Playbook::steps` (the list is in a topological order), templates parse, and every
//! number is within its limit. Consumers index steps by position (`StepIndex`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Position of a step in `Playbook::steps`.
pub type StepIndex = usize;

/// A validated, versioned playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Playbook {
    /// `[a-z0-9][a-z0-9-]*`, at most `limits::NAME_BYTES_MAX` bytes.
    pub name: String,
    /// 1 or more; a playbook is stored per name and version.
    pub version: u32,
    /// Free text, empty when not given.
    pub description: String,
    /// Declared params, in declaration order.
    pub params: Vec<ParamSpec>,
    /// Steps in a topological order: every step comes after all the steps it needs.
    pub steps: Vec<Step>,
}

/// A declared parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// An identifier (`[a-z_][a-z0-9_]*`): templates read it as `params.<name>`.
    pub name: String,
    /// What values it takes, and how strings are coerced to it.
    pub ty: ParamType,
    /// A run must give it (a required param has no default).
    pub required: bool,
    /// Already coerced to `ty`.
    pub default: Option<Value>,
    /// Free text, empty when not given.
    pub description: String,
}

/// Parameter types. Values are coerced on run start: `"8080"` becomes `8080` for an `int`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// Text; a number or bool given for it becomes its text.
    String,
    /// A 64-bit integer within the optional bounds (both inclusive).
    Int {
        /// Smallest allowed value.
        min: Option<i64>,
        /// Largest allowed value.
        max: Option<i64>,
    },
    /// `true` or `false` (also from the strings, any case).
    Bool,
    /// An IPv4 or IPv6 address, stored in its canonical text form.
    Ip,
    /// A network in CIDR notation, stored canonical (host bits cleared).
    Cidr,
    /// A duration, stored as its text ("15m"); `max_ms` bounds it.
    Duration {
        /// Longest allowed duration.
        max_ms: Option<u64>,
    },
    /// A list of values (JSON array; from a string, comma-separated).
    List,
    /// One of a fixed set of strings.
    Enum {
        /// The allowed values, in declaration order; never empty.
        values: Vec<String>,
    },
}

/// One node of the DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique in the playbook: `[a-z0-9_][a-z0-9_-]*`, at most `limits::NAME_BYTES_MAX` bytes.
    pub id: String,
    /// A name from the action catalog, e.g. `core.echo`.
    pub action: String,
    /// The input: a JSON tree whose string leaves are templates. A leaf that is exactly one
    /// `{{ expr }}` keeps the expression's native type (a list stays a list).
    pub with: Value,
    /// Steps this step waits for (fan-in: all of them), as indices into `Playbook::steps`.
    pub needs: Vec<StepIndex>,
    /// A condition (minijinja expression source, without braces). False skips the step, and a
    /// skip propagates to steps that need it.
    pub when: Option<String>,
    /// Fan-out: one task per item instead of one task.
    pub for_each: Option<ForEach>,
    /// How a failed task is retried; `RetryPolicy::NONE` when not given.
    pub retry: RetryPolicy,
    /// The action must finish within this time on the worker.
    pub timeout_ms: u64,
    /// Labels a worker must carry to run this step; values are templates.
    pub labels: BTreeMap<String, String>,
}

/// Runs a step once per item of a list, at most `concurrency` items at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ForEach {
    /// Expression source (without braces) that evaluates to a list; each element is bound to
    /// `item` when rendering the step.
    pub items: String,
    /// Items running at the same time: 1 to `limits::FOR_EACH_CONCURRENCY_MAX`.
    pub concurrency: u32,
}

/// How a failed task is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included; 1 means no retry.
    pub attempts: u32,
    /// How the delay grows from one retry to the next.
    pub backoff: Backoff,
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// Longest delay of an exponential backoff; equal to `initial_ms` for a fixed one.
    pub max_ms: u64,
}

/// How retry delays grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// Every retry waits `initial_ms`.
    Fixed,
    /// Retry `n` waits `initial_ms * 2^(n-1)`, at most `max_ms`.
    Exponential,
}

impl RetryPolicy {
    /// No retry.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        backoff: Backoff::Fixed,
        initial_ms: 0,
        max_ms: 0,
    };

    /// Delay before attempt `next_attempt` (2 for the first retry).
    pub fn delay_ms(&self, next_attempt: u32) -> u64 {
        match self.backoff {
            Backoff::Fixed => self.initial_ms,
            Backoff::Exponential => {
                let exp = next_attempt.saturating_sub(2).min(32);
                self.initial_ms.saturating_mul(1u64 << exp).min(self.max_ms)
            }
        }
    }
}
