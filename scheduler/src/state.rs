//! The durable state of a run: what the store persists and the scheduler changes.
//!
//! The store keeps a `RunState` as a small head and one record per unit, step output and undo
//! entry; a transition writes the head and the records it changed ([`Part`](crate::Part)) in
//! the same transaction as the history entries it produced, so they never disagree after a
//! crash.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Identity of a run: a UUID v7, so ids sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(pub Uuid);

impl RunId {
    /// The 16 bytes used as the store key (time-ordered).
    pub fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<RunId> {
        Uuid::from_slice(bytes).ok().map(RunId)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(RunId)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Waiting for its concurrency key.
    Queued,
    /// A rollout halted (error budget or health gate); waits for an operator.
    Halted,
    Succeeded,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Queued => "queued",
            RunStatus::Halted => "halted",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Waiting,
    Running,
    AwaitingApproval,
    /// A sleep/until step waiting for its time.
    Sleeping,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
}

impl StepStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StepStatus::Succeeded
                | StepStatus::Failed
                | StepStatus::Skipped
                | StepStatus::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Waiting => "waiting",
            StepStatus::Running => "running",
            StepStatus::AwaitingApproval => "awaiting_approval",
            StepStatus::Sleeping => "sleeping",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// One run of one playbook version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub id: RunId,
    pub playbook: String,
    pub version: u32,
    /// Coerced parameters (a JSON object).
    #[serde(default)]
    pub params: Value,
    /// What started the run (alert data later); `null` for operators.
    #[serde(default)]
    pub trigger: Value,
    pub requested_by: String,
    #[serde(default)]
    pub idempotency_key: String,
    pub status: RunStatus,
    pub created_at_ms: i64,
    #[serde(default)]
    pub finished_at_ms: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
    /// Aligned with `Playbook::steps`.
    pub steps: Vec<StepState>,
    /// Sequence number of the last history event written for this run.
    pub history_seq: u64,
    #[serde(default)]
    pub phase: Phase,
    /// Compensations and grants, in the order they were opened; run in reverse.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undo: Vec<UndoEntry>,
    /// The rendered concurrency key, when the playbook declares one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// The run fails if it has not ended by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<i64>,
    /// A plan: every task is sent as a dry run (connectors change nothing), timers and
    /// approvals fire at once, no concurrency key is taken.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// The W3C `traceparent` of the run's span, while traces are exported: every later span
    /// of the run (steps, tasks, its end), in any process life, joins this trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Where a running run is in its life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
pub enum Phase {
    /// Steps run.
    #[default]
    Steps,
    /// Every step ended well; open grants wait for their TTL (or an early revoke).
    HoldingGrants,
    /// A failure or cancel: undos run in reverse order, then the run ends with `outcome`.
    Compensating {
        outcome: RunStatus,
        error: Option<String>,
    },
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Steps => "",
            Phase::HoldingGrants => "holding_grants",
            Phase::Compensating { .. } => "compensating",
        }
    }
}

/// A compensation recorded when a step (or an item) with `undo` succeeded. With `grant`, it
/// is also a grant: its revoke runs at the TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndoEntry {
    pub step: usize,
    pub item: u32,
    pub action: String,
    /// Its rendered input is in `unit.input`; `Pending` means not started (still open).
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<GrantState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantState {
    pub subject: String,
    pub opened_at_ms: i64,
    pub expires_ms: i64,
}

/// The decisions on an approval, bound to a digest of exactly what is approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalState {
    pub digest: String,
    pub due_ms: i64,
    #[serde(default)]
    pub decisions: Vec<Decision>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub who: String,
    pub approve: bool,
    pub comment: String,
    pub at_ms: i64,
    pub digest: String,
}

/// Progress of a rollout in waves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WaveState {
    /// 0 is the canary.
    pub wave: u32,
    /// Items `0..end` belong to the waves started so far.
    pub end: u32,
    /// Failures already accepted by an operator's resume; the budget counts from there.
    #[serde(default)]
    pub failures_forgiven: u32,
    /// The health gate of the current wave, once started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Unit>,
    /// Set when the gate of this wave passed (or was waived by a resume).
    #[serde(default)]
    pub gate_passed: bool,
    /// The next wave is held for the maintenance window, which opens then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until_ms: Option<i64>,
}

/// One step of a run. A step runs as one or more units: one for a plain step, one per item for
/// a `for_each` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<Unit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// A sleep/until step's wake-up time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_ms: Option<i64>,
    /// Boxed: most steps have neither, and every active run keeps its steps in memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Box<ApprovalState>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waves: Option<Box<WaveState>>,
}

impl StepState {
    pub fn waiting() -> StepState {
        StepState {
            status: StepStatus::Waiting,
            units: Vec::new(),
            output: None,
            error: None,
            started_at_ms: None,
            finished_at_ms: None,
            due_ms: None,
            approval: None,
            waves: None,
        }
    }
}

/// Where one unit of work is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum UnitStatus {
    /// Not started yet (a `for_each` item beyond the concurrency cap).
    Pending,
    /// Waiting in the dispatch queue for a matching worker.
    Queued,
    /// Held by a worker under a lease with this fencing token.
    Leased {
        token: u64,
        worker: String,
    },
    /// Failed; the next attempt is due at this wall-clock time.
    Backoff {
        due_ms: i64,
    },
    Succeeded,
    Failed,
    Cancelled,
}

impl UnitStatus {
    /// One word for it, as operators read it.
    pub fn name(&self) -> &'static str {
        match self {
            UnitStatus::Pending => "pending",
            UnitStatus::Queued => "queued",
            UnitStatus::Leased { .. } => "leased",
            UnitStatus::Backoff { .. } => "waiting to retry",
            UnitStatus::Succeeded => "succeeded",
            UnitStatus::Failed => "failed",
            UnitStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            UnitStatus::Succeeded | UnitStatus::Failed | UnitStatus::Cancelled
        )
    }

    /// Counts against the `for_each` concurrency cap.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            UnitStatus::Queued | UnitStatus::Leased { .. } | UnitStatus::Backoff { .. }
        )
    }
}

/// One execution slot of a step: its rendered input is fixed when the step starts, so every
/// attempt runs exactly the same input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub status: UnitStatus,
    /// Attempts started so far (1 after the first dispatch).
    pub attempt: u32,
    /// Leases lost without a result (the worker died or hung).
    #[serde(default)]
    pub lease_losses: u32,
    pub input: Value,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Token of the lease whose result was accepted; a repeat of it is a duplicate, not stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_token: Option<u64>,
    /// Queued but held at the dispatch door while containment is paused (`task.held` was
    /// recorded); cleared when leased.
    #[serde(default, skip_serializing_if = "is_false")]
    pub held: bool,
    /// A queued step unit must be leased by then (`schedule_to_start`), or its step fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by_ms: Option<i64>,
}

impl Unit {
    /// A unit not started yet, with its rendered input and labels.
    pub fn pending(input: Value, labels: BTreeMap<String, String>) -> Unit {
        Unit {
            status: UnitStatus::Pending,
            attempt: 0,
            lease_losses: 0,
            input,
            labels,
            output: None,
            error: None,
            accepted_token: None,
            held: false,
            start_by_ms: None,
        }
    }
}

/// One entry of a run's history, persisted with the transition that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    pub seq: u64,
    pub at_ms: i64,
    /// A stable dotted name: `run.started`, `task.leased`, `step.succeeded`, ...
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub step: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub item: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub worker: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<RunStatus>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Which unit of a run: a step's item, an undo entry, or a step's wave health gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Slot {
    Step { step: usize, item: u32 },
    Undo(u32),
    Health { step: usize },
}

/// Identifies a unit of a run (on the wire, a [`TaskId`](crate::TaskId) names one attempt of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnitRef {
    pub run: RunId,
    pub slot: Slot,
}

impl UnitRef {
    pub fn step(run: RunId, step: usize, item: u32) -> UnitRef {
        UnitRef {
            run,
            slot: Slot::Step { step, item },
        }
    }
}
