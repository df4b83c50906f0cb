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
    /// At most `limit` runs of this playbook with the same rendered key at a time.
    pub concurrency: Option<ConcurrencyKey>,
    /// The whole run must end within this time; past it, the run fails (undos run).
    pub timeout_ms: Option<u64>,
}

/// Serializes runs that act on the same target (`key: "ip:{{ params.ip }}"`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConcurrencyKey {
    /// Template over `params` (and `trigger`), rendered when the run is started (a literal
    /// key serializes every run of the playbook).
    pub key: String,
    /// Runs holding the key at a time: 1 (the default) to `limits::RUN_CONCURRENCY_MAX`.
    pub limit: u32,
    /// `queue` when not given.
    pub policy: ConcurrencyPolicy,
}

/// What a run does when `limit` runs already hold its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    /// Wait, in order, until a holder ends.
    Queue,
    /// Do not run; recorded as cancelled with the reason.
    Drop,
    /// Cancel the oldest holder (its undos run), then run.
    Replace,
}

impl ConcurrencyPolicy {
    /// The name used in playbooks: `queue`, `drop` or `replace`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConcurrencyPolicy::Queue => "queue",
            ConcurrencyPolicy::Drop => "drop",
            ConcurrencyPolicy::Replace => "replace",
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    /// Runs `Step::action` on a worker (gated by `Step::approval` when set).
    Action,
    /// Waits, durably, for a duration: template rendering to duration text ("15m"). A literal
    /// was checked against `limits::SLEEP_MS_MAX`; a template is checked once rendered
    /// (`parse_duration_ms`).
    Sleep { duration: String },
    /// Waits, durably, until an RFC 3339 timestamp: template (a literal was checked;
    /// `parse_timestamp_ms` reads a rendered one).
    Until { at: String },
    /// Pauses the run for a decision (`Step::approval` is set); runs nothing.
    Approval,
}

/// A decision the run waits for before the step acts.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// Names of approver groups (configured on the orchestrator); any member may decide. Not
    /// empty, distinct, `[a-z0-9][a-z0-9_-]*`, at most `limits::APPROVER_GROUPS_MAX` of them.
    pub approvers: Vec<String>,
    /// Distinct approvals needed: 1 (the default) to `limits::APPROVERS_MAX`.
    pub min: u32,
    /// How long the decision may take: up to `limits::APPROVAL_TIMEOUT_MS_MAX`.
    pub timeout_ms: u64,
    /// The decision once `timeout_ms` passed without one; `Reject` when not given.
    pub on_timeout: ApprovalOutcome,
}

/// A decision on an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// The step goes on.
    Approve,
    /// The step fails (`approve` steps and gated actions alike).
    Reject,
}

impl ApprovalOutcome {
    /// The name used in playbooks: `approve` or `reject`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalOutcome::Approve => "approve",
            ApprovalOutcome::Reject => "reject",
        }
    }
}

/// The compensation of a side-effecting step: an action that undoes it. Rendered when the
/// step (or the item) succeeds, so it sees `steps.<this step>.output` (the item's output) and
/// `item`.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    /// A name from the action catalog.
    pub action: String,
    /// Template tree, like `Step::with`.
    pub with: Value,
}

/// Marks a step as opening a grant: its `undo` (the revoke) runs at the TTL, or earlier if the
/// run fails or is cancelled, and the run does not end while the grant is open.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    /// Template rendering to duration text (a literal was checked against
    /// `limits::GRANT_TTL_MS_MAX`). Rendered with the undo, it sees what the undo sees.
    pub ttl: String,
    /// Who or what the grant is for, shown in `riposte grants list` (template, like `ttl`);
    /// empty when not given.
    pub subject: String,
}

/// Rolls a `for_each` out in waves: a canary, then batches, halting once failures exceed the
/// error budget or a health gate fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Waves {
    /// Items of the first wave, 0 for none; 1 when not given.
    pub canary: u32,
    /// Items of each following wave, at least 1; 100% when not given.
    pub batch: Amount,
    /// Failures tolerated before the run halts; 0 when not given.
    pub error_budget: Amount,
    /// Runs after every wave; a failure halts the rollout.
    pub health: Option<HealthGate>,
    /// Maintenance windows a wave may start in, as text (see
    /// [`crate::schedule::Windows`]); a template, rendered when each wave is due. `None`:
    /// always open.
    pub window: Option<String>,
    /// What a wave due outside its window does: wait for the next opening, or fail the step.
    pub outside_window: OutsideWindow,
}

/// What a rollout does when its next wave is due while its maintenance window is closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OutsideWindow {
    /// Hold the wave (items already running finish) and start it when a window opens.
    #[default]
    Wait,
    /// Fail the step: undos run as for any failure.
    Fail,
}

/// A count, or a percentage of the items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// At most `limits::FOR_EACH_ITEMS_MAX`.
    Count(u32),
    /// 0 to 100.
    Percent(u32),
}

impl std::fmt::Display for Amount {
    /// As written in playbooks: `5`, `25%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Amount {
    /// The count out of `total` items (a percentage rounds up, and is at least 1 when above 0).
    pub fn of(self, total: u32) -> u32 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(0) => 0,
            Amount::Percent(p) => ((total as u64 * p as u64).div_ceil(100) as u32).max(1),
        }
    }
}

/// The check between waves.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthGate {
    /// A name from the action catalog.
    pub action: String,
    /// Template tree; sees `wave` (0 for the canary) and `steps`.
    pub with: Value,
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
    /// A name from the action catalog, e.g. `core.echo`; empty unless `kind` is `Action`.
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
    /// The action must finish within this time on the worker, counted from its lease: time
    /// spent queued for a worker does not count.
    pub timeout_ms: u64,
    /// A task queued this long without a worker taking it fails the step; `None`: the
    /// orchestrator's default (`--schedule-to-start`). Time held by a containment pause does
    /// not count.
    pub schedule_to_start_ms: Option<u64>,
    /// `on_failure: continue`: when the step fails, the run goes on without it (steps that
    /// need it are skipped) instead of failing and undoing. Only on an action step of one
    /// task without `grant` or `waves`.
    pub continue_on_failure: bool,
    /// Labels a worker must carry to run this step; values are templates.
    pub labels: BTreeMap<String, String>,
    /// What the step does. `with`, `for_each`, `retry`, `timeout_ms`, `labels`, `undo`,
    /// `grant` and `waves` are set only on `Action` steps (the others keep their defaults).
    pub kind: StepKind,
    /// The decision an `Approval` step waits for (always set), or that gates an `Action` step.
    pub approval: Option<Approval>,
    /// An action step's compensation.
    pub undo: Option<Undo>,
    /// Set only on an action step with `undo`.
    pub grant: Option<Grant>,
    /// Set only on an action step with `for_each`.
    pub waves: Option<Waves>,
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
