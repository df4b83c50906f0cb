//! The scheduler: a pure state machine over runs.
//!
//! Events come in (a run started, a task leased, a result, a lease expired, a timer, a
//! decision, an operator's repair); a [`Transition`] comes out: the runs it changed with their
//! new history entries, and the [`Command`]s for the edges (dispatch a task, arm a timer,
//! abandon a lease). No IO, no clock: the caller passes `now_ms`, persists every changed run
//! with its history in one transaction before anything becomes visible, then carries out the
//! commands.
//!
//! Modules: [`state`] (what is persisted), `run` (one run's transitions: steps, results,
//! timers), `undo` (compensation and grants), `approval`, `waves` (rollouts with an error
//! budget), `repair` (operator verbs), [`guard`] (the platform-wide guard policy, checked
//! when a step's units are rendered). Concurrency keys span runs and live here.
//!
//! Step semantics:
//! - A step starts when every step it `needs` has finished and none failed.
//! - `when` false skips the step. A step whose needs were *all* skipped is skipped too, so a
//!   skip propagates along a chain, while a fan-in with at least one need that ran still runs.
//! - A step's input is rendered once, when it starts; every attempt runs the same input.
//! - A failed task is retried per the step's `retry` policy; a lost lease is a failed attempt
//!   under the same policy, with at least [`LEASE_LOSS_ATTEMPTS_MIN`] attempts in all (made
//!   again at once when the step has no retry policy).
//! - A step that fails fails the run: nothing new starts, in-flight leases are abandoned, and
//!   the undos of what succeeded run in reverse order before the run ends.

mod approval;
pub mod guard;
mod parts;
mod repair;
mod run;
pub mod state;
mod task_id;
mod undo;
mod waves;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use riposte_playbooks::{ConcurrencyPolicy, Context, Playbook, Renderer};
use serde_json::Value;

use crate::guard::Policy;
use run::Tx;
use state::{HistoryEvent, RunId, RunState, RunStatus, StepState, UnitRef};

pub use approval::digest_hex;
pub use parts::{Part, Parts};
pub use task_id::{MalformedTaskId, Place, TaskId};
pub use undo::undo_status;

/// Attempts a step's unit gets for lost leases at least, whatever its retry policy: a worker
/// lost (killed, frozen, partitioned) is not the action's failure, but an action that keeps
/// losing its workers likely kills them.
pub const LEASE_LOSS_ATTEMPTS_MIN: u32 = 3;

/// What is needed to start a run; parameters are already coerced.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub playbook: Arc<Playbook>,
    pub params: Value,
    pub trigger: Value,
    pub requested_by: String,
    pub idempotency_key: String,
    /// A plan: see [`state::RunState::dry_run`].
    pub dry_run: bool,
    /// See [`state::RunState::trace`].
    pub trace: Option<String>,
}

/// An operator's decision on an approval. `groups` are the approver groups `who` belongs to
/// (the engine knows the configuration; the scheduler stays pure).
#[derive(Debug, Clone)]
pub struct DecisionRequest {
    pub run: RunId,
    pub step: String,
    pub approve: bool,
    pub digest: String,
    pub who: String,
    pub groups: Vec<String>,
    pub comment: String,
}

/// A repair verb on a step (or on the run for `Resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repair {
    RetryStep,
    SkipStep,
    Resume,
}

#[derive(Debug, Clone)]
pub enum Event {
    Start(NewRun),
    /// The engine handed a queued unit to a worker under `token`.
    Leased {
        unit: UnitRef,
        attempt: u32,
        token: u64,
        worker: String,
    },
    /// A worker reported success under `token`; `worker` is who sent it (as the orchestrator
    /// authenticated it), which must be the lease's holder.
    Succeeded {
        unit: UnitRef,
        token: u64,
        worker: String,
        output: Value,
    },
    Failed {
        unit: UnitRef,
        token: u64,
        worker: String,
        message: String,
        retryable: bool,
    },
    LeaseExpired {
        unit: UnitRef,
        token: u64,
    },
    /// The dispatch door holds a queued unit because containment is paused.
    Held {
        unit: UnitRef,
        reason: String,
    },
    /// Something of this run may be due (backoff, sleep, approval timeout, grant TTL, deadline).
    Timer {
        run: RunId,
    },
    Cancel {
        run: RunId,
        reason: String,
        by: String,
    },
    Decide(DecisionRequest),
    /// Revoke a grant now (an operator).
    Revoke {
        run: RunId,
        step: String,
        item: u32,
        by: String,
        reason: String,
    },
    Repair {
        run: RunId,
        repair: Repair,
        step: String,
        by: String,
        reason: String,
    },
}

/// A unit ready for a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub unit: UnitRef,
    pub attempt: u32,
    /// The step the task belongs to (an undo's or health gate's step).
    pub step_id: String,
    pub action: String,
    pub input: Value,
    pub labels: BTreeMap<String, String>,
    pub timeout_ms: u64,
    /// The run is a dry run: the connector changes nothing.
    pub dry_run: bool,
    /// A step's task of an action the catalog marks `containment` (never an undo). Which
    /// tasks a containment pause holds is the orchestrator's policy to say, by action family.
    pub containment: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch(TaskSpec),
    /// Take the unit's task out of the dispatch queue: it will not be leased.
    Withdraw(UnitRef),
    /// Feed `Event::Timer { run }` at `due_ms` (wall clock).
    ArmTimer {
        run: RunId,
        due_ms: i64,
    },
    /// The worker holding this lease must stop; its result will be rejected.
    Abandon {
        token: u64,
    },
    Finished {
        run: RunId,
        status: RunStatus,
    },
}

/// The outcome of one event.
#[derive(Debug, Default)]
pub struct Transition {
    /// Runs whose state changed, in order; persist each (active ones from
    /// [`Scheduler::run`], ended ones from `finished`) with its entries of `history`: its
    /// head, and the records of it named in `parts`.
    pub changed: Vec<RunId>,
    /// The records of changed runs, besides their heads, that changed.
    pub parts: Parts,
    pub history: Vec<(RunId, HistoryEvent)>,
    pub commands: Vec<Command>,
    /// Runs that ended with this transition: their final state, now out of the scheduler.
    pub finished: Vec<RunState>,
    /// The result repeats the accepted one: answer success, change nothing.
    pub duplicate: bool,
    /// The result was refused (stale token, finished run); recorded in `history`.
    pub rejected: Option<String>,
}

impl Transition {
    fn touch(&mut self, run: RunId) {
        if !self.changed.contains(&run) {
            self.changed.push(run);
        }
    }

    /// The records of one run, besides its head, that changed.
    pub fn parts_of(&self, run: RunId) -> impl Iterator<Item = Part> + '_ {
        self.parts
            .range((run, Part::All)..)
            .take_while(move |(r, _)| *r == run)
            .map(|(_, part)| *part)
    }

    /// The history entries of one run.
    pub fn history_of(&self, run: RunId) -> impl Iterator<Item = &HistoryEvent> {
        self.history
            .iter()
            .filter(move |(r, _)| *r == run)
            .map(|(_, e)| e)
    }
}

/// Why an event could not be applied at all; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("run {0} is not active")]
    RunNotActive(RunId),
    #[error("run {0} has no such unit")]
    NoSuchUnit(RunId),
    #[error("unit is not queued for dispatch")]
    NotQueued,
    #[error("run {0} exists already")]
    RunExists(RunId),
    /// The run or step is not in a state that allows this (FAILED_PRECONDITION).
    #[error("{0}")]
    Refused(String),
    /// The caller may not do this (PERMISSION_DENIED).
    #[error("{0}")]
    NotPermitted(String),
    /// The request names something that does not exist or is malformed (INVALID_ARGUMENT).
    #[error("{0}")]
    Invalid(String),
}

struct ActiveRun {
    state: RunState,
    playbook: Arc<Playbook>,
    index: run::RunIndex,
}

impl ActiveRun {
    fn new(state: RunState, playbook: Arc<Playbook>) -> ActiveRun {
        let index = run::RunIndex::build(&state);
        ActiveRun {
            state,
            playbook,
            index,
        }
    }
}

/// Runs holding or waiting for one concurrency key.
#[derive(Debug, Default)]
struct KeyState {
    limit: u32,
    holders: Vec<RunId>,
    queue: VecDeque<RunId>,
}

/// All active (not ended) runs.
pub struct Scheduler {
    runs: HashMap<RunId, ActiveRun>,
    keys: HashMap<String, KeyState>,
    renderer: Renderer,
    /// The platform-wide guard, from the configuration.
    guard: Policy,
    /// How long a step's task may wait queued when its step sets no `schedule_to_start`.
    schedule_to_start_ms: Option<u64>,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    /// A scheduler with the default guard policy.
    pub fn new() -> Scheduler {
        Scheduler::with_guard(Policy::default())
    }

    /// A scheduler that checks guarded actions against `guard`.
    pub fn with_guard(guard: Policy) -> Scheduler {
        Scheduler {
            runs: HashMap::new(),
            keys: HashMap::new(),
            renderer: Renderer::new(),
            guard,
            schedule_to_start_ms: None,
        }
    }

    /// The same, with the limit on queue time of steps that set no `schedule_to_start`.
    pub fn with_schedule_to_start(mut self, ms: Option<u64>) -> Scheduler {
        self.schedule_to_start_ms = ms;
        self
    }

    pub fn len(&self) -> usize {
        self.runs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn run(&self, id: RunId) -> Option<&RunState> {
        self.runs.get(&id).map(|r| &r.state)
    }

    pub fn playbook(&self, id: RunId) -> Option<&Arc<Playbook>> {
        self.runs.get(&id).map(|r| &r.playbook)
    }

    /// Active runs with their playbooks.
    pub fn runs(&self) -> impl Iterator<Item = (&RunState, &Playbook)> {
        self.runs.values().map(|r| (&r.state, r.playbook.as_ref()))
    }

    /// Adopts an active run loaded from the store after a restart (or reopened by a repair)
    /// and returns the commands that put it back in motion: queued units are dispatched again
    /// and the run's next timer is armed. Leased units keep their lease; the engine gives each
    /// a full grace period.
    pub fn resume(&mut self, state: RunState, playbook: Arc<Playbook>) -> Vec<Command> {
        assert!(!state.status.is_terminal(), "only active runs are resumed");
        let mut commands = run::redispatch(&state, &playbook);
        if let Some(due_ms) = run::next_due(&state) {
            commands.push(Command::ArmTimer {
                run: state.id,
                due_ms,
            });
        }
        if let Some(key) = &state.concurrency_key {
            let limit = playbook.concurrency.as_ref().map_or(1, |c| c.limit);
            let entry = self.keys.entry(key.clone()).or_default();
            entry.limit = limit;
            if state.status == RunStatus::Queued {
                entry.queue.push_back(state.id);
            } else {
                entry.holders.push(state.id);
            }
        }
        self.runs.insert(state.id, ActiveRun::new(state, playbook));
        commands
    }

    /// Sorts the key queues by creation time after every run was resumed.
    pub fn resumed_all(&mut self) {
        let runs = &self.runs;
        for key in self.keys.values_mut() {
            let mut queue: Vec<RunId> = key.queue.drain(..).collect();
            queue.sort_by_key(|id| runs.get(id).map(|r| r.state.created_at_ms));
            key.queue = queue.into();
        }
    }

    /// Applies one event. On `Ok`, the caller persists every changed run with its history in
    /// one transaction, then carries out the commands.
    pub fn handle(&mut self, now_ms: i64, event: Event) -> Result<Transition, Error> {
        let mut out = Transition::default();
        match event {
            Event::Start(new) => self.start(now_ms, new, &mut out)?,
            Event::Leased {
                unit,
                attempt,
                token,
                worker,
            } => self.with_run(now_ms, unit.run, &mut out, |tx| {
                tx.leased(&unit, attempt, token, worker)
            })?,
            Event::Succeeded {
                unit,
                token,
                worker,
                output,
            } => self.with_run(now_ms, unit.run, &mut out, |tx| {
                tx.result(&unit, (token, &worker), Ok(output));
                Ok(())
            })?,
            Event::Failed {
                unit,
                token,
                worker,
                message,
                retryable,
            } => self.with_run(now_ms, unit.run, &mut out, |tx| {
                tx.result(&unit, (token, &worker), Err((message, retryable)));
                Ok(())
            })?,
            Event::LeaseExpired { unit, token } => {
                self.with_run(now_ms, unit.run, &mut out, |tx| {
                    tx.lease_expired(&unit, token);
                    Ok(())
                })?
            }
            Event::Held { unit, reason } => {
                self.with_run(now_ms, unit.run, &mut out, |tx| tx.held(&unit, &reason))?
            }
            Event::Timer { run } => self.with_run(now_ms, run, &mut out, |tx| {
                tx.fire_due();
                Ok(())
            })?,
            Event::Cancel { run, reason, by } => {
                self.with_run(now_ms, run, &mut out, |tx| tx.cancel(&reason, &by))?
            }
            Event::Decide(request) => {
                self.with_run(now_ms, request.run, &mut out, |tx| tx.decide(&request))?
            }
            Event::Revoke {
                run,
                step,
                item,
                by,
                reason,
            } => self.with_run(now_ms, run, &mut out, |tx| {
                tx.revoke(&step, item, &by, &reason)
            })?,
            Event::Repair {
                run,
                repair,
                step,
                by,
                reason,
            } => self.with_run(now_ms, run, &mut out, |tx| {
                tx.repair(repair, &step, &by, &reason)
            })?,
        }
        Ok(out)
    }

    /// A result for a run that already ended: a repeat of the accepted result is a duplicate,
    /// anything else is rejected and recorded in `state`'s history.
    pub fn result_for_finished(
        &self,
        now_ms: i64,
        state: &mut RunState,
        playbook: &Playbook,
        unit: &UnitRef,
        (token, worker): (u64, &str),
    ) -> Transition {
        let mut out = Transition::default();
        let mut index = run::RunIndex::build(state);
        let mut tx = Tx::new(
            now_ms,
            (state, &mut index),
            playbook,
            (&self.renderer, &self.guard, self.schedule_to_start_ms),
            &mut out,
        );
        tx.reject_finished(unit, token, worker);
        out
    }

    /// Reopens an ended run for a repair verb (retry or skip of its failed step). The run
    /// comes back into the scheduler only if the repair applies.
    pub fn reopen(
        &mut self,
        now_ms: i64,
        state: RunState,
        playbook: Arc<Playbook>,
        request: (Repair, &str, &str, &str),
    ) -> Result<Transition, Error> {
        let (repair, step, by, reason) = request;
        let id = state.id;
        repair::check_reopen(&state, &playbook, repair, step)?;
        let key = state.concurrency_key.clone();
        if let Some(key) = &key {
            let limit = playbook.concurrency.as_ref().map_or(1, |c| c.limit);
            let entry = self.keys.entry(key.clone()).or_default();
            entry.limit = limit;
            if entry.holders.len() as u32 >= limit {
                return Err(Error::Refused(format!(
                    "concurrency key `{key}` is held by run {}; retry once it ends",
                    entry.holders[0]
                )));
            }
            entry.holders.push(id);
        }
        self.runs.insert(id, ActiveRun::new(state, playbook));
        let mut out = Transition::default();
        if let Err(e) = self.with_run(now_ms, id, &mut out, |tx| {
            tx.repair(repair, step, by, reason)
        }) {
            self.runs.remove(&id);
            if let Some(entry) = key.as_ref().and_then(|k| self.keys.get_mut(k)) {
                entry.holders.retain(|h| *h != id);
            }
            return Err(e);
        }
        Ok(out)
    }

    fn start(&mut self, now_ms: i64, new: NewRun, out: &mut Transition) -> Result<(), Error> {
        if self.runs.contains_key(&new.id) {
            return Err(Error::RunExists(new.id));
        }
        let rendered_key = self.render_key(&new)?;
        // A dry run never blocks or replaces a real run: it takes no key.
        let (key, key_not_taken) = match new.dry_run {
            true => (None, rendered_key),
            false => (rendered_key, None),
        };
        let state = RunState {
            id: new.id,
            playbook: new.playbook.name.clone(),
            version: new.playbook.version,
            params: new.params,
            trigger: new.trigger,
            requested_by: new.requested_by,
            idempotency_key: new.idempotency_key,
            status: RunStatus::Queued,
            created_at_ms: now_ms,
            finished_at_ms: None,
            error: None,
            steps: vec![StepState::waiting(); new.playbook.steps.len()],
            history_seq: 0,
            phase: state::Phase::Steps,
            undo: Vec::new(),
            concurrency_key: key.clone(),
            deadline_ms: new.playbook.timeout_ms.map(|t| now_ms + t as i64),
            dry_run: new.dry_run,
            trace: new.trace,
        };
        let id = new.id;
        let spec = new.playbook.concurrency.clone();
        self.runs.insert(id, ActiveRun::new(state, new.playbook));
        self.with_run(now_ms, id, out, |tx| {
            tx.mark(Part::All);
            let by = tx.run.requested_by.clone();
            let dry = if tx.run.dry_run { "; dry run" } else { "" };
            tx.record(run::Entry::run(
                "run.started",
                format!("requested by {by}{dry}"),
            ));
            if let Some(key) = key_not_taken {
                let message = format!("dry run: concurrency key `{key}` not taken");
                tx.record(run::Entry::run("run.key_skipped", message));
            }
            Ok(())
        })?;
        let (Some(key), Some(spec)) = (key, spec) else {
            return self.with_run(now_ms, id, out, |tx| {
                tx.begin();
                Ok(())
            });
        };
        let entry = self.keys.entry(key.clone()).or_default();
        entry.limit = spec.limit;
        if (entry.holders.len() as u32) < spec.limit {
            entry.holders.push(id);
            return self.with_run(now_ms, id, out, |tx| {
                tx.begin();
                Ok(())
            });
        }
        let holder = entry.holders[0];
        match spec.policy {
            ConcurrencyPolicy::Queue => {
                entry.queue.push_back(id);
                self.with_run(now_ms, id, out, |tx| {
                    let message = format!("key `{key}` is held by run {holder}; waiting");
                    tx.record(run::Entry::run("run.queued", message));
                    Ok(())
                })
            }
            ConcurrencyPolicy::Drop => self.with_run(now_ms, id, out, |tx| {
                let message = format!("dropped: key `{key}` is held by run {holder}");
                tx.record(run::Entry::run("run.dropped", message.clone()));
                tx.finish(RunStatus::Cancelled, Some(message));
                Ok(())
            }),
            ConcurrencyPolicy::Replace => {
                entry.queue.push_front(id);
                self.with_run(now_ms, id, out, |tx| {
                    let message = format!("key `{key}` is held by run {holder}; replacing it");
                    tx.record(run::Entry::run("run.queued", message));
                    Ok(())
                })?;
                let reason = format!("replaced by run {id} (key `{key}`)");
                self.with_run(now_ms, holder, out, |tx| tx.cancel(&reason, "riposte"))
            }
        }
    }

    fn render_key(&self, new: &NewRun) -> Result<Option<String>, Error> {
        let Some(spec) = &new.playbook.concurrency else {
            return Ok(None);
        };
        let steps = serde_json::Map::new();
        let run_id = new.id.to_string();
        let ctx = Context {
            run_id: &run_id,
            params: &new.params,
            steps: &steps,
            trigger: &new.trigger,
        };
        self.renderer
            .text("concurrency.key", &spec.key, &ctx, None)
            .map(Some)
            .map_err(|e| Error::Invalid(e.to_string()))
    }

    fn with_run(
        &mut self,
        now_ms: i64,
        id: RunId,
        out: &mut Transition,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let active = self.runs.get_mut(&id).ok_or(Error::RunNotActive(id))?;
        let before = parts::snapshot(&active.state);
        let mut tx = Tx::new(
            now_ms,
            (&mut active.state, &mut active.index),
            &active.playbook,
            (&self.renderer, &self.guard, self.schedule_to_start_ms),
            out,
        );
        f(&mut tx)?;
        tx.arm_next();
        active.index.refresh(&active.state);
        if let Some(before) = before {
            let missed = parts::unmarked(&before, &active.state, &out.parts);
            assert!(missed.is_empty(), "changed but not marked: {missed:?}");
            if let Some(differs) = active.index.differs(&active.state) {
                panic!("the run's index is out of step:\n{differs}");
            }
        }
        if active.state.status.is_terminal() {
            let ended = self.runs.remove(&id).expect("the run is active");
            let key = ended.state.concurrency_key.clone();
            out.finished.push(ended.state);
            if let Some(key) = key {
                self.release(now_ms, &key, id, out);
            }
        }
        Ok(())
    }

    /// A holder of `key` ended: the next queued runs take its place.
    fn release(&mut self, now_ms: i64, key: &str, id: RunId, out: &mut Transition) {
        let Some(entry) = self.keys.get_mut(key) else {
            return;
        };
        entry.holders.retain(|h| *h != id);
        entry.queue.retain(|q| *q != id);
        let mut promoted = Vec::new();
        while (entry.holders.len() as u32) < entry.limit {
            let Some(next) = entry.queue.pop_front() else {
                break;
            };
            entry.holders.push(next);
            promoted.push(next);
        }
        if entry.holders.is_empty() && entry.queue.is_empty() {
            self.keys.remove(key);
        }
        for next in promoted {
            let result = self.with_run(now_ms, next, out, |tx| {
                tx.record(run::Entry::run(
                    "run.dequeued",
                    format!("key `{key}` is free"),
                ));
                tx.begin();
                Ok(())
            });
            debug_assert!(result.is_ok(), "a queued run is active");
        }
    }
}
