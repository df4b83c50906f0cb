//! The scheduler: a pure state machine over runs.
//!
//! Events come in (a run started, a task leased, a result, a lease expired, a retry came due,
//! a cancel); a [`Transition`] comes out: the history entries to persist with the run's new
//! state, and the [`Command`]s for the edges (dispatch a task, arm a timer, abandon a lease).
//! No IO, no clock: the caller passes `now_ms` and persists the result in one transaction
//! before anything becomes visible.
//!
//! Step semantics:
//! - A step starts when every step it `needs` has finished and none failed.
//! - `when` false skips the step. A step whose needs were *all* skipped is skipped too, so a
//!   skip propagates along a chain, while a fan-in with at least one need that ran still runs
//!   (and can read `steps.<id>.status`).
//! - A step's input is rendered once, when it starts; every attempt runs the same input.
//! - A failed task is retried per the step's `retry` policy; a lost lease is re-dispatched at
//!   once, at most [`LEASE_LOSSES_MAX`] times, without consuming the retry budget.
//! - A step that fails fails the run: nothing new starts and in-flight leases are abandoned.

pub mod state;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use riposte_playbooks::{Context, Playbook, Renderer, Step};
use serde_json::{Map, Value};

use state::{
    HistoryEvent, RunId, RunState, RunStatus, StepState, StepStatus, Unit, UnitRef, UnitStatus,
};

/// A unit whose leases expire this many times fails: the action likely kills its workers.
pub const LEASE_LOSSES_MAX: u32 = 3;

/// What is needed to start a run; parameters are already coerced.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub playbook: Arc<Playbook>,
    pub params: Value,
    pub trigger: Value,
    pub requested_by: String,
    pub idempotency_key: String,
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
    Succeeded {
        unit: UnitRef,
        token: u64,
        output: Value,
    },
    Failed {
        unit: UnitRef,
        token: u64,
        message: String,
        retryable: bool,
    },
    LeaseExpired {
        unit: UnitRef,
        token: u64,
    },
    /// A backoff timer fired.
    RetryDue {
        unit: UnitRef,
    },
    Cancel {
        run: RunId,
        reason: String,
        by: String,
    },
}

/// A unit ready for a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub unit: UnitRef,
    pub attempt: u32,
    pub step_id: String,
    pub action: String,
    pub input: Value,
    pub labels: BTreeMap<String, String>,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Dispatch(TaskSpec),
    ArmTimer {
        unit: UnitRef,
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
    /// Persist the run's state and these entries together, or nothing at all when empty and
    /// `changed` is false.
    pub history: Vec<HistoryEvent>,
    pub commands: Vec<Command>,
    /// The run state changed and must be saved.
    pub changed: bool,
    /// The result repeats the accepted one: answer success, change nothing.
    pub duplicate: bool,
    /// The result was refused (stale token, finished run); recorded in `history`.
    pub rejected: Option<String>,
    /// The run ended with this transition: its final state, now out of the scheduler.
    pub finished: Option<RunState>,
}

/// Why an event could not be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("run {0} is not active")]
    RunNotActive(RunId),
    #[error("run {run} has no step #{step} item {item}")]
    NoSuchUnit { run: RunId, step: usize, item: u32 },
    #[error("unit is not queued for dispatch")]
    NotQueued,
    #[error("run {0} exists already")]
    RunExists(RunId),
}

struct ActiveRun {
    state: RunState,
    playbook: Arc<Playbook>,
}

/// All active (not finished) runs.
pub struct Scheduler {
    runs: HashMap<RunId, ActiveRun>,
    renderer: Renderer,
}

impl Default for Scheduler {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler {
            runs: HashMap::new(),
            renderer: Renderer::new(),
        }
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

    pub fn runs(&self) -> impl Iterator<Item = &RunState> {
        self.runs.values().map(|r| &r.state)
    }

    /// Adopts a running run loaded from the store after a restart and returns the commands
    /// that put it back in motion: queued units are dispatched again, backoff timers re-armed.
    /// Leased units keep their lease; the engine gives each a full grace period.
    pub fn resume(&mut self, state: RunState, playbook: Arc<Playbook>) -> Vec<Command> {
        assert_eq!(
            state.status,
            RunStatus::Running,
            "only running runs are resumed"
        );
        let mut commands = Vec::new();
        for (step_index, step) in state.steps.iter().enumerate() {
            for (item, unit) in step.units.iter().enumerate() {
                let unit_ref = UnitRef {
                    run: state.id,
                    step: step_index,
                    item: item as u32,
                };
                match unit.status {
                    UnitStatus::Queued => commands.push(Command::Dispatch(task_spec(
                        &playbook.steps[step_index],
                        unit_ref,
                        unit,
                    ))),
                    UnitStatus::Backoff { due_ms } => commands.push(Command::ArmTimer {
                        unit: unit_ref,
                        due_ms,
                    }),
                    _ => {}
                }
            }
        }
        self.runs.insert(state.id, ActiveRun { state, playbook });
        commands
    }

    /// Applies one event. On `Ok`, the caller persists `self.run(id)` (when `changed`) with the
    /// transition's history in one transaction, then carries out the commands.
    pub fn handle(&mut self, now_ms: i64, event: Event) -> Result<Transition, Error> {
        match event {
            Event::Start(new) => self.start(now_ms, new),
            Event::Leased {
                unit,
                attempt,
                token,
                worker,
            } => self.with_run(now_ms, unit.run, |tx| {
                tx.leased(&unit, attempt, token, worker)
            }),
            Event::Succeeded {
                unit,
                token,
                output,
            } => self.with_run(now_ms, unit.run, |tx| {
                tx.result(&unit, token, Ok(output));
                Ok(())
            }),
            Event::Failed {
                unit,
                token,
                message,
                retryable,
            } => self.with_run(now_ms, unit.run, |tx| {
                tx.result(&unit, token, Err((message, retryable)));
                Ok(())
            }),
            Event::LeaseExpired { unit, token } => self.with_run(now_ms, unit.run, |tx| {
                tx.lease_expired(&unit, token);
                Ok(())
            }),
            Event::RetryDue { unit } => self.with_run(now_ms, unit.run, |tx| {
                tx.retry_due(&unit);
                Ok(())
            }),
            Event::Cancel { run, reason, by } => self.with_run(now_ms, run, |tx| {
                tx.cancel(&reason, &by);
                Ok(())
            }),
        }
    }

    /// A result for a run that already ended: a repeat of the accepted result is a duplicate,
    /// anything else is rejected and recorded in `state`'s history.
    pub fn result_for_finished(
        &self,
        now_ms: i64,
        state: &mut RunState,
        playbook: &Playbook,
        unit: &UnitRef,
        token: u64,
    ) -> Transition {
        let mut tx = Tx {
            now_ms,
            run: state,
            playbook,
            renderer: &self.renderer,
            out: Transition::default(),
        };
        tx.reject_finished(unit, token);
        tx.out
    }

    fn start(&mut self, now_ms: i64, new: NewRun) -> Result<Transition, Error> {
        if self.runs.contains_key(&new.id) {
            return Err(Error::RunExists(new.id));
        }
        let state = RunState {
            id: new.id,
            playbook: new.playbook.name.clone(),
            version: new.playbook.version,
            params: new.params,
            trigger: new.trigger,
            requested_by: new.requested_by,
            idempotency_key: new.idempotency_key,
            status: RunStatus::Running,
            created_at_ms: now_ms,
            finished_at_ms: None,
            error: None,
            steps: vec![StepState::waiting(); new.playbook.steps.len()],
            history_seq: 0,
        };
        self.runs.insert(
            new.id,
            ActiveRun {
                state,
                playbook: new.playbook,
            },
        );
        self.with_run(now_ms, new.id, |tx| {
            let by = tx.run.requested_by.clone();
            tx.record(Entry::run("run.started", format!("requested by {by}")));
            tx.advance();
            Ok(())
        })
    }

    fn with_run(
        &mut self,
        now_ms: i64,
        id: RunId,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(), Error>,
    ) -> Result<Transition, Error> {
        let active = self.runs.get_mut(&id).ok_or(Error::RunNotActive(id))?;
        let mut tx = Tx {
            now_ms,
            run: &mut active.state,
            playbook: &active.playbook,
            renderer: &self.renderer,
            out: Transition::default(),
        };
        f(&mut tx)?;
        let mut out = tx.out;
        if active.state.status.is_terminal() {
            out.finished = self.runs.remove(&id).map(|r| r.state);
        }
        Ok(out)
    }
}

/// One history entry before it gets its sequence number.
struct Entry {
    kind: &'static str,
    step: String,
    item: u32,
    attempt: u32,
    worker: String,
    message: String,
    run_status: Option<RunStatus>,
}

impl Entry {
    fn run(kind: &'static str, message: String) -> Entry {
        Entry {
            kind,
            step: String::new(),
            item: 0,
            attempt: 0,
            worker: String::new(),
            message,
            run_status: None,
        }
    }

    fn step(kind: &'static str, step: &str, message: String) -> Entry {
        Entry {
            step: step.to_string(),
            ..Entry::run(kind, message)
        }
    }

    fn unit(kind: &'static str, step: &str, item: u32, attempt: u32, message: String) -> Entry {
        Entry {
            item,
            attempt,
            ..Entry::step(kind, step, message)
        }
    }
}

/// A transition in progress on one run.
struct Tx<'a> {
    now_ms: i64,
    run: &'a mut RunState,
    playbook: &'a Playbook,
    renderer: &'a Renderer,
    out: Transition,
}

impl Tx<'_> {
    fn record(&mut self, entry: Entry) {
        self.run.history_seq += 1;
        self.out.changed = true;
        self.out.history.push(HistoryEvent {
            seq: self.run.history_seq,
            at_ms: self.now_ms,
            kind: entry.kind.to_string(),
            step: entry.step,
            item: entry.item,
            attempt: entry.attempt,
            worker: entry.worker,
            message: entry.message,
            run_status: entry.run_status,
        });
    }

    fn step_id(&self, step: usize) -> &str {
        &self.playbook.steps[step].id
    }

    fn unit_mut(&mut self, unit: &UnitRef) -> Option<&mut Unit> {
        self.run
            .steps
            .get_mut(unit.step)?
            .units
            .get_mut(unit.item as usize)
    }

    fn leased(
        &mut self,
        unit_ref: &UnitRef,
        attempt: u32,
        token: u64,
        worker: String,
    ) -> Result<(), Error> {
        let run = self.run.id;
        let unit = self.unit_mut(unit_ref).ok_or(Error::NoSuchUnit {
            run,
            step: unit_ref.step,
            item: unit_ref.item,
        })?;
        if unit.status != UnitStatus::Queued || unit.attempt != attempt {
            return Err(Error::NotQueued);
        }
        unit.status = UnitStatus::Leased {
            token,
            worker: worker.clone(),
        };
        let step = self.step_id(unit_ref.step).to_string();
        let mut entry = Entry::unit(
            "task.leased",
            &step,
            unit_ref.item,
            attempt,
            format!("token {token}"),
        );
        entry.worker = worker;
        self.record(entry);
        Ok(())
    }

    /// Finds the unit a result or expiry speaks of, if the token is its current lease.
    /// Otherwise records why not and returns `None`.
    fn current_lease(&mut self, unit_ref: &UnitRef, token: u64, what: &str) -> Option<()> {
        let step = self.playbook.steps.get(unit_ref.step).map(|s| s.id.clone());
        let unit = self.unit_mut(unit_ref);
        let verdict = match (&step, unit) {
            (Some(_), Some(unit)) => match &unit.status {
                UnitStatus::Leased { token: current, .. } if *current == token => return Some(()),
                _ if unit.accepted_token == Some(token) => {
                    if what == "result" {
                        self.out.duplicate = true;
                    }
                    return None;
                }
                UnitStatus::Leased { token: current, .. } => {
                    format!("stale lease token {token} (current lease is {current})")
                }
                UnitStatus::Cancelled => format!("task was cancelled (token {token})"),
                status => format!("lease {token} is no longer held (unit is {status:?})"),
            },
            _ => format!(
                "no step #{} item {} in this run",
                unit_ref.step, unit_ref.item
            ),
        };
        if what == "result" {
            let entry = Entry::unit(
                "task.result_rejected",
                step.as_deref().unwrap_or(""),
                unit_ref.item,
                0,
                verdict.clone(),
            );
            self.record(entry);
            self.out.rejected = Some(verdict);
        }
        None
    }

    fn result(&mut self, unit_ref: &UnitRef, token: u64, outcome: Result<Value, (String, bool)>) {
        if self.run.status.is_terminal() {
            self.reject_finished(unit_ref, token);
            return;
        }
        if self.current_lease(unit_ref, token, "result").is_none() {
            return;
        }
        let step = self.step_id(unit_ref.step).to_string();
        let policy = self.playbook.steps[unit_ref.step].retry;
        let now_ms = self.now_ms;
        let Some(unit) = self.unit_mut(unit_ref) else {
            return;
        };
        let attempt = unit.attempt;
        match outcome {
            Ok(output) => {
                unit.status = UnitStatus::Succeeded;
                unit.output = Some(output);
                unit.error = None;
                unit.accepted_token = Some(token);
                self.record(Entry::unit(
                    "task.succeeded",
                    &step,
                    unit_ref.item,
                    attempt,
                    String::new(),
                ));
            }
            Err((message, retryable)) => {
                unit.accepted_token = Some(token);
                unit.error = Some(message.clone());
                if retryable && attempt < policy.attempts {
                    let delay_ms = policy.delay_ms(attempt + 1) as i64;
                    let due_ms = now_ms + delay_ms;
                    unit.status = UnitStatus::Backoff { due_ms };
                    self.record(Entry::unit(
                        "task.failed",
                        &step,
                        unit_ref.item,
                        attempt,
                        message,
                    ));
                    self.record(Entry::unit(
                        "task.retry_scheduled",
                        &step,
                        unit_ref.item,
                        attempt + 1,
                        format!(
                            "attempt {} of {} in {delay_ms} ms",
                            attempt + 1,
                            policy.attempts
                        ),
                    ));
                    self.out.commands.push(Command::ArmTimer {
                        unit: unit_ref.clone(),
                        due_ms,
                    });
                } else {
                    unit.status = UnitStatus::Failed;
                    let why = if retryable {
                        "attempts exhausted"
                    } else {
                        "not retryable"
                    };
                    self.record(Entry::unit(
                        "task.failed",
                        &step,
                        unit_ref.item,
                        attempt,
                        format!("{message} ({why})"),
                    ));
                }
            }
        }
        self.advance();
    }

    fn reject_finished(&mut self, unit_ref: &UnitRef, token: u64) {
        let duplicate = self
            .run
            .steps
            .get(unit_ref.step)
            .and_then(|s| s.units.get(unit_ref.item as usize))
            .is_some_and(|u| u.accepted_token == Some(token));
        if duplicate {
            self.out.duplicate = true;
            return;
        }
        let verdict = format!("run is {} (token {token})", self.run.status.as_str());
        let step = self
            .playbook
            .steps
            .get(unit_ref.step)
            .map(|s| s.id.clone())
            .unwrap_or_default();
        self.record(Entry::unit(
            "task.result_rejected",
            &step,
            unit_ref.item,
            0,
            verdict.clone(),
        ));
        self.out.rejected = Some(verdict);
    }

    fn lease_expired(&mut self, unit_ref: &UnitRef, token: u64) {
        if self.current_lease(unit_ref, token, "expiry").is_none() {
            return;
        }
        let step = self.step_id(unit_ref.step).to_string();
        let playbook = self.playbook;
        let spec = &playbook.steps[unit_ref.step];
        let Some(unit) = self.unit_mut(unit_ref) else {
            return;
        };
        let worker = match &unit.status {
            UnitStatus::Leased { worker, .. } => worker.clone(),
            _ => String::new(),
        };
        unit.lease_losses += 1;
        let attempt = unit.attempt;
        let mut entry = Entry::unit(
            "task.lease_expired",
            &step,
            unit_ref.item,
            attempt,
            format!(
                "lease {token} expired ({} of {LEASE_LOSSES_MAX})",
                unit.lease_losses
            ),
        );
        entry.worker = worker;
        if unit.lease_losses >= LEASE_LOSSES_MAX {
            unit.status = UnitStatus::Failed;
            unit.error = Some(format!(
                "lease expired {LEASE_LOSSES_MAX} times; workers lost"
            ));
            self.record(entry);
            self.advance();
            return;
        }
        unit.attempt += 1;
        unit.status = UnitStatus::Queued;
        let task = task_spec(spec, unit_ref.clone(), unit);
        self.record(entry);
        self.out.commands.push(Command::Dispatch(task));
    }

    fn retry_due(&mut self, unit_ref: &UnitRef) {
        let now_ms = self.now_ms;
        let playbook = self.playbook;
        let spec = &playbook.steps[unit_ref.step];
        let Some(unit) = self.unit_mut(unit_ref) else {
            return;
        };
        match unit.status {
            UnitStatus::Backoff { due_ms } if due_ms <= now_ms => {}
            UnitStatus::Backoff { due_ms } => {
                self.out.commands.push(Command::ArmTimer {
                    unit: unit_ref.clone(),
                    due_ms,
                });
                return;
            }
            _ => return,
        }
        unit.attempt += 1;
        unit.status = UnitStatus::Queued;
        let task = task_spec(spec, unit_ref.clone(), unit);
        self.out.changed = true;
        self.out.commands.push(Command::Dispatch(task));
    }

    fn cancel(&mut self, reason: &str, by: &str) {
        self.record(Entry::run(
            "run.cancel_requested",
            format!("by {by}: {reason}"),
        ));
        self.finish(
            RunStatus::Cancelled,
            Some(format!("cancelled by {by}: {reason}")),
        );
    }

    /// Moves the run forward as far as it can go without outside input.
    fn advance(&mut self) {
        if self.run.status.is_terminal() {
            return;
        }
        for step in 0..self.playbook.steps.len() {
            self.settle_step(step);
            if self.run.status.is_terminal() {
                return;
            }
            if self.run.steps[step].status == StepStatus::Waiting {
                self.try_start(step);
            }
            if self.run.status.is_terminal() {
                return;
            }
        }
        if self.run.steps.iter().all(|s| s.status.is_terminal()) {
            self.finish(RunStatus::Succeeded, None);
        }
    }

    /// Finishes a running step whose units are all done, and fills free concurrency slots.
    fn settle_step(&mut self, step: usize) {
        if self.run.steps[step].status != StepStatus::Running {
            return;
        }
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let state = &mut self.run.steps[step];
        if let Some(failed) = state
            .units
            .iter()
            .position(|u| u.status == UnitStatus::Failed)
        {
            let error = state.units[failed].error.clone().unwrap_or_default();
            let message = match spec.for_each {
                Some(_) => format!("item {failed}: {error}"),
                None => error,
            };
            self.finish_step(step, StepStatus::Failed, None, Some(message.clone()));
            let step_id = spec.id.clone();
            self.finish(
                RunStatus::Failed,
                Some(format!("step {step_id} failed: {message}")),
            );
            return;
        }
        if state
            .units
            .iter()
            .all(|u| u.status == UnitStatus::Succeeded)
        {
            let outputs: Vec<Value> = state
                .units
                .iter_mut()
                .map(|u| u.output.take().unwrap_or(Value::Null))
                .collect();
            let output = match spec.for_each {
                Some(_) => Value::Array(outputs),
                None => outputs.into_iter().next().unwrap_or(Value::Null),
            };
            self.finish_step(step, StepStatus::Succeeded, Some(output), None);
            return;
        }
        self.fill_slots(step);
    }

    /// Queues pending units up to the step's concurrency.
    fn fill_slots(&mut self, step: usize) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let cap = spec.for_each.as_ref().map_or(1, |f| f.concurrency.max(1)) as usize;
        let run = self.run.id;
        let units = &mut self.run.steps[step].units;
        let mut active = units.iter().filter(|u| u.status.is_active()).count();
        for (item, unit) in units.iter_mut().enumerate() {
            if active >= cap {
                break;
            }
            if unit.status == UnitStatus::Pending {
                unit.status = UnitStatus::Queued;
                unit.attempt = 1;
                active += 1;
                let unit_ref = UnitRef {
                    run,
                    step,
                    item: item as u32,
                };
                self.out
                    .commands
                    .push(Command::Dispatch(task_spec(spec, unit_ref, unit)));
                self.out.changed = true;
            }
        }
    }

    fn try_start(&mut self, step: usize) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let needs: Vec<StepStatus> = spec
            .needs
            .iter()
            .map(|&n| self.run.steps[n].status)
            .collect();
        if needs.iter().any(|s| !s.is_terminal()) {
            return;
        }
        debug_assert!(
            needs
                .iter()
                .all(|s| matches!(s, StepStatus::Succeeded | StepStatus::Skipped)),
            "a step starts only when its needs succeeded or were skipped"
        );
        if !needs.is_empty() && needs.iter().all(|s| *s == StepStatus::Skipped) {
            self.skip(step, "all its needs were skipped".to_string());
            return;
        }
        match self.prepare_units(spec) {
            Ok(None) => self.skip(step, "`when` is false".to_string()),
            Ok(Some(units)) => {
                let count = units.len();
                let state = &mut self.run.steps[step];
                state.status = StepStatus::Running;
                state.started_at_ms = Some(self.now_ms);
                state.units = units;
                let message = match spec.for_each {
                    Some(_) => format!("{count} items"),
                    None => String::new(),
                };
                self.record(Entry::step("step.started", &spec.id, message));
                self.settle_step(step);
            }
            Err(message) => {
                self.finish_step(step, StepStatus::Failed, None, Some(message.clone()));
                let id = spec.id.clone();
                self.finish(
                    RunStatus::Failed,
                    Some(format!("step {id} failed: {message}")),
                );
            }
        }
    }

    /// Evaluates `when`, the items and each unit's input. `Ok(None)`: skipped.
    fn prepare_units(&self, spec: &Step) -> Result<Option<Vec<Unit>>, String> {
        let steps = self.step_views();
        let ctx = Context {
            run_id: &self.run.id.to_string(),
            params: &self.run.params,
            steps: &steps,
            trigger: &self.run.trigger,
        };
        let render = |item: Option<&Value>| -> Result<Unit, String> {
            let input = self
                .renderer
                .input(spec, &ctx, item)
                .map_err(|e| e.to_string())?;
            let labels = self
                .renderer
                .labels(spec, &ctx, item)
                .map_err(|e| e.to_string())?;
            Ok(Unit {
                status: UnitStatus::Pending,
                attempt: 0,
                lease_losses: 0,
                input,
                labels,
                output: None,
                error: None,
                accepted_token: None,
            })
        };
        if !self.renderer.when(spec, &ctx).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        match spec.for_each {
            None => Ok(Some(vec![render(None)?])),
            Some(_) => {
                let items = self.renderer.items(spec, &ctx).map_err(|e| e.to_string())?;
                items
                    .iter()
                    .map(|item| render(Some(item)))
                    .collect::<Result<_, _>>()
                    .map(Some)
            }
        }
    }

    /// `steps.<id>` as templates see it: status and output of finished steps.
    fn step_views(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (spec, state) in self.playbook.steps.iter().zip(&self.run.steps) {
            if state.status.is_terminal() {
                let view = serde_json::json!({
                    "status": state.status.as_str(),
                    "output": state.output.clone().unwrap_or(Value::Null),
                });
                map.insert(spec.id.clone(), view);
            }
        }
        map
    }

    fn skip(&mut self, step: usize, why: String) {
        self.finish_step(step, StepStatus::Skipped, None, None);
        let id = self.step_id(step).to_string();
        self.record(Entry::step("step.skipped", &id, why));
    }

    fn finish_step(
        &mut self,
        step: usize,
        status: StepStatus,
        output: Option<Value>,
        error: Option<String>,
    ) {
        let state = &mut self.run.steps[step];
        state.status = status;
        state.output = output;
        state.finished_at_ms = Some(self.now_ms);
        if status != StepStatus::Skipped {
            let kind = match status {
                StepStatus::Succeeded => "step.succeeded",
                StepStatus::Failed => "step.failed",
                _ => "step.cancelled",
            };
            let message = error.clone().unwrap_or_default();
            state.error = error;
            let id = self.step_id(step).to_string();
            self.record(Entry::step(kind, &id, message));
        }
    }

    /// Ends the run: abandons leases, cancels what has not finished, records the outcome.
    fn finish(&mut self, status: RunStatus, error: Option<String>) {
        for state in self.run.steps.iter_mut() {
            for unit in state.units.iter_mut() {
                if let UnitStatus::Leased { token, .. } = unit.status {
                    self.out.commands.push(Command::Abandon { token });
                }
                if !unit.status.is_terminal() {
                    unit.status = UnitStatus::Cancelled;
                }
            }
            if !state.status.is_terminal() {
                state.status = StepStatus::Cancelled;
                state.finished_at_ms = Some(self.now_ms);
            }
        }
        self.run.status = status;
        self.run.finished_at_ms = Some(self.now_ms);
        self.run.error = error.clone();
        let mut entry = Entry::run("run.finished", error.unwrap_or_default());
        entry.run_status = Some(status);
        self.record(entry);
        self.out.commands.push(Command::Finished {
            run: self.run.id,
            status,
        });
    }
}

fn task_spec(spec: &Step, unit: UnitRef, state: &Unit) -> TaskSpec {
    TaskSpec {
        unit,
        attempt: state.attempt,
        step_id: spec.id.clone(),
        action: spec.action.clone(),
        input: state.input.clone(),
        labels: state.labels.clone(),
        timeout_ms: spec.timeout_ms,
    }
}
