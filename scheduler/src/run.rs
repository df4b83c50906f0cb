//! One run's transitions: leases and results, timers, starting and settling steps, ending the
//! run. [`Tx`] borrows one run and writes what happens into the shared [`Transition`].

mod index;
mod restore;
mod steps;
pub(crate) use index::RunIndex;
pub(crate) use restore::{next_due, redispatch, task_spec};

use std::borrow::Cow;

use riposte_playbooks::{Context, Playbook, Renderer, RetryPolicy, Step, StepKind, limits};
use serde_json::{Map, Value};

use super::state::{
    HistoryEvent, Phase, RunState, RunStatus, Slot, StepStatus, Unit, UnitRef, UnitStatus,
};
use super::{Command, Error, LEASE_LOSS_ATTEMPTS_MIN, Part, TaskSpec, Transition};
use crate::guard::Policy;

/// Undo and revoke tasks retry until they succeed (or fail for good), backing off to 5 min.
pub(crate) const UNDO_RETRY: RetryPolicy = RetryPolicy {
    attempts: u32::MAX,
    backoff: riposte_playbooks::Backoff::Exponential,
    initial_ms: 1_000,
    max_ms: 300_000,
};

/// One history entry before it gets its sequence number.
pub(crate) struct Entry {
    pub kind: Cow<'static, str>,
    pub step: String,
    pub item: u32,
    pub attempt: u32,
    pub worker: String,
    pub message: String,
    pub run_status: Option<RunStatus>,
}

impl Entry {
    pub fn run(kind: impl Into<Cow<'static, str>>, message: String) -> Entry {
        Entry {
            kind: kind.into(),
            step: String::new(),
            item: 0,
            attempt: 0,
            worker: String::new(),
            message,
            run_status: None,
        }
    }

    pub fn step(kind: impl Into<Cow<'static, str>>, step: &str, message: String) -> Entry {
        Entry {
            step: step.to_string(),
            ..Entry::run(kind, message)
        }
    }

    pub fn unit(
        kind: impl Into<Cow<'static, str>>,
        step: &str,
        item: u32,
        attempt: u32,
        message: String,
    ) -> Entry {
        Entry {
            item,
            attempt,
            ..Entry::step(kind, step, message)
        }
    }
}

/// A transition in progress on one run.
pub(crate) struct Tx<'a> {
    pub now_ms: i64,
    pub run: &'a mut RunState,
    /// Kept in step with `run` (see [`RunIndex`]).
    pub index: &'a mut RunIndex,
    pub playbook: &'a Playbook,
    pub renderer: &'a Renderer,
    pub guard: &'a Policy,
    /// The queue-time limit of steps that set no `schedule_to_start`.
    pub schedule_to_start_ms: Option<u64>,
    pub out: &'a mut Transition,
}

impl<'a> Tx<'a> {
    pub fn new(
        now_ms: i64,
        (run, index): (&'a mut RunState, &'a mut RunIndex),
        playbook: &'a Playbook,
        (renderer, guard, schedule_to_start_ms): (&'a Renderer, &'a Policy, Option<u64>),
        out: &'a mut Transition,
    ) -> Tx<'a> {
        Tx {
            now_ms,
            run,
            index,
            playbook,
            renderer,
            guard,
            schedule_to_start_ms,
            out,
        }
    }

    pub fn record(&mut self, entry: Entry) {
        self.run.history_seq += 1;
        self.changed();
        let event = HistoryEvent {
            seq: self.run.history_seq,
            at_ms: self.now_ms,
            kind: entry.kind.into_owned(),
            step: entry.step,
            item: entry.item,
            attempt: entry.attempt,
            worker: entry.worker,
            message: entry.message,
            run_status: entry.run_status,
        };
        self.out.history.push((self.run.id, event));
    }

    pub fn changed(&mut self) {
        self.out.touch(self.run.id);
    }

    /// Names a record of the run this transition changes (see [`Part`]); a unit's record is
    /// named before the unit changes, so that the index notes what it was.
    pub fn mark(&mut self, part: Part) {
        self.out.touch(self.run.id);
        self.out.parts.insert((self.run.id, part));
        match part {
            Part::All | Part::Units { .. } => self.index.invalidate(),
            Part::Unit { step, item } => self.index.note(self.run, Slot::Step { step, item }),
            Part::Undo(n) => self.index.note(self.run, Slot::Undo(n)),
            Part::Output { .. } => {}
        }
    }

    /// The run's index, with every change so far settled.
    pub fn index(&mut self) -> &mut RunIndex {
        self.index.refresh(self.run);
        self.index
    }

    pub fn step_id(&self, step: usize) -> &'a str {
        &self.playbook.steps[step].id
    }

    /// The step a slot belongs to, its item, and the kind prefix of its history entries.
    pub fn describe(&self, slot: Slot) -> Option<(&'a str, u32, &'static str)> {
        let playbook = self.playbook;
        match slot {
            Slot::Step { step, item } => Some((&playbook.steps.get(step)?.id, item, "task")),
            Slot::Undo(n) => {
                let entry = self.run.undo.get(n as usize)?;
                Some((&playbook.steps[entry.step].id, entry.item, "undo"))
            }
            Slot::Health { step } => Some((&playbook.steps.get(step)?.id, 0, "health")),
        }
    }

    pub fn unit(&self, slot: Slot) -> Option<&Unit> {
        match slot {
            Slot::Step { step, item } => self.run.steps.get(step)?.units.get(item as usize),
            Slot::Undo(n) => self.run.undo.get(n as usize).map(|e| &e.unit),
            Slot::Health { step } => self.run.steps.get(step)?.waves.as_ref()?.gate.as_ref(),
        }
    }

    /// A unit to change: its record is marked as changed.
    pub fn unit_mut(&mut self, slot: Slot) -> Option<&mut Unit> {
        if let Some(part) = Part::of(slot) {
            self.mark(part);
        }
        match slot {
            Slot::Step { step, item } => self.run.steps.get_mut(step)?.units.get_mut(item as usize),
            Slot::Undo(n) => self.run.undo.get_mut(n as usize).map(|e| &mut e.unit),
            Slot::Health { step } => self.run.steps.get_mut(step)?.waves.as_mut()?.gate.as_mut(),
        }
    }

    fn retry_policy(&self, slot: Slot) -> RetryPolicy {
        match slot {
            Slot::Step { step, .. } => self.playbook.steps[step].retry,
            Slot::Undo(_) => UNDO_RETRY,
            Slot::Health { .. } => RetryPolicy::NONE,
        }
    }

    pub fn leased(
        &mut self,
        unit_ref: &UnitRef,
        attempt: u32,
        token: u64,
        worker: String,
    ) -> Result<(), Error> {
        let (step, item, prefix) = self.describe(unit_ref.slot).ok_or(Error::NotQueued)?;
        let unit = self
            .unit_mut(unit_ref.slot)
            .ok_or(Error::NoSuchUnit(unit_ref.run))?;
        if unit.status != UnitStatus::Queued || unit.attempt != attempt {
            return Err(Error::NotQueued);
        }
        unit.status = UnitStatus::Leased {
            token,
            worker: worker.clone(),
        };
        unit.held = false;
        unit.start_by_ms = None;
        let kind = kind(prefix, "leased");
        let message = match self.run.dry_run {
            true => "dry run".to_string(),
            false => String::new(),
        };
        let mut entry = Entry::unit(kind, step, item, attempt, message);
        entry.worker = worker;
        self.record(entry);
        Ok(())
    }

    /// A queued unit is held at the dispatch door (containment is paused): recorded once.
    pub fn held(&mut self, unit_ref: &UnitRef, reason: &str) -> Result<(), Error> {
        let (step, item, prefix) = self.describe(unit_ref.slot).ok_or(Error::NotQueued)?;
        let unit = self
            .unit_mut(unit_ref.slot)
            .ok_or(Error::NoSuchUnit(unit_ref.run))?;
        if unit.status != UnitStatus::Queued {
            return Err(Error::NotQueued);
        }
        if unit.held {
            return Ok(());
        }
        unit.held = true;
        let attempt = unit.attempt;
        let message = format!("containment is paused: {reason}");
        self.record(Entry::unit(
            kind(prefix, "held"),
            step,
            item,
            attempt,
            message,
        ));
        Ok(())
    }

    /// Whether `token` is the unit's current lease and, for a result, `sender` holds it.
    /// Otherwise records why not (for a result, naming who sent it; never a token) and returns
    /// false.
    fn current_lease(&mut self, unit_ref: &UnitRef, token: u64, sender: Option<&str>) -> bool {
        let described = self.describe(unit_ref.slot);
        let why = match (described, self.unit(unit_ref.slot)) {
            (Some(_), Some(unit)) => match &unit.status {
                UnitStatus::Leased {
                    token: current,
                    worker,
                } if *current == token => match sender {
                    Some(sender) if sender != worker => {
                        "the task is leased to another worker".to_string()
                    }
                    _ => return true,
                },
                _ if unit.accepted_token == Some(token) => {
                    self.out.duplicate |= sender.is_some();
                    return false;
                }
                UnitStatus::Leased { .. } => "its lease is stale: the task was leased again".into(),
                UnitStatus::Cancelled => "the task was cancelled".into(),
                status => format!(
                    "its lease is no longer held (the task is {})",
                    status.name()
                ),
            },
            _ => "no such task in this run".to_string(),
        };
        if let Some(sender) = sender {
            let verdict = format!("result from worker {sender} refused: {why}");
            let (step, item, _) = described.unwrap_or(("", 0, "task"));
            let mut entry = Entry::unit("task.result_rejected", step, item, 0, verdict.clone());
            entry.worker = sender.to_string();
            self.record(entry);
            self.out.rejected = Some(verdict);
        }
        false
    }

    pub fn result(
        &mut self,
        unit_ref: &UnitRef,
        (token, sender): (u64, &str),
        outcome: Result<Value, (String, bool)>,
    ) {
        if self.run.status.is_terminal() {
            self.reject_finished(unit_ref, token, sender);
            return;
        }
        if !self.current_lease(unit_ref, token, Some(sender)) {
            return;
        }
        let slot = unit_ref.slot;
        let (step, item, prefix) = self.describe(slot).expect("a current lease is described");
        let policy = self.retry_policy(slot);
        let now_ms = self.now_ms;
        let unit = self.unit_mut(slot).expect("a current lease has a unit");
        let attempt = unit.attempt;
        unit.accepted_token = Some(token);
        match outcome {
            Ok(output) => {
                unit.status = UnitStatus::Succeeded;
                unit.output = Some(output);
                unit.error = None;
                self.record(Entry::unit(
                    kind(prefix, "succeeded"),
                    step,
                    item,
                    attempt,
                    String::new(),
                ));
                self.on_unit_succeeded(slot);
            }
            Err((message, retryable)) if retryable && attempt < policy.attempts => {
                let delay_ms = policy.delay_ms(attempt + 1) as i64;
                unit.status = UnitStatus::Backoff {
                    due_ms: now_ms + delay_ms,
                };
                unit.error = Some(message.clone());
                self.record(Entry::unit(
                    kind(prefix, "failed"),
                    step,
                    item,
                    attempt,
                    message,
                ));
                let of = if policy.attempts == u32::MAX {
                    String::new()
                } else {
                    format!(" of {}", policy.attempts)
                };
                let message = format!("attempt {}{of} in {delay_ms} ms", attempt + 1);
                self.record(Entry::unit(
                    kind(prefix, "retry_scheduled"),
                    step,
                    item,
                    attempt + 1,
                    message,
                ));
            }
            Err((message, retryable)) => {
                unit.status = UnitStatus::Failed;
                unit.error = Some(message.clone());
                let why = if retryable {
                    "attempts exhausted"
                } else {
                    "not retryable"
                };
                let message = format!("{message} ({why})");
                self.record(Entry::unit(
                    kind(prefix, "failed"),
                    step,
                    item,
                    attempt,
                    message,
                ));
            }
        }
        self.advance();
    }

    fn on_unit_succeeded(&mut self, slot: Slot) {
        match slot {
            Slot::Step { step, item } => self.open_undo(step, item),
            Slot::Undo(n) => self.undo_succeeded(n),
            Slot::Health { step } => self.gate_passed(step),
        }
    }

    pub fn reject_finished(&mut self, unit_ref: &UnitRef, token: u64, sender: &str) {
        let accepted = match self.unit(unit_ref.slot) {
            Some(unit) => unit.accepted_token == Some(token),
            None => false,
        };
        if accepted {
            self.out.duplicate = true;
            return;
        }
        let verdict = format!(
            "result from worker {sender} refused: the run is {}",
            self.run.status.as_str()
        );
        let (step, item, _) = self.describe(unit_ref.slot).unwrap_or(("", 0, "task"));
        let mut entry = Entry::unit("task.result_rejected", step, item, 0, verdict.clone());
        entry.worker = sender.to_string();
        self.record(entry);
        self.out.rejected = Some(verdict);
    }

    /// A lease expired: the attempt is lost ("lease lost on worker W") and counts as a failed,
    /// retryable attempt under the step's retry policy, with at least
    /// [`LEASE_LOSS_ATTEMPTS_MIN`] attempts in all so that losing workers alone does not fail
    /// a step without a retry policy. Undo and health-gate tasks are dispatched again at once.
    pub fn lease_expired(&mut self, unit_ref: &UnitRef, token: u64) {
        if !self.current_lease(unit_ref, token, None) {
            return;
        }
        let slot = unit_ref.slot;
        let (step, item, prefix) = self.describe(slot).expect("a current lease is described");
        let policy = self.retry_policy(slot);
        let now_ms = self.now_ms;
        let unit = self.unit_mut(slot).expect("a current lease has a unit");
        let worker = match &unit.status {
            UnitStatus::Leased { worker, .. } => worker.clone(),
            _ => String::new(),
        };
        unit.lease_losses += 1;
        let attempt = unit.attempt;
        let lost = format!("lease lost on worker {worker}");
        let mut entry = Entry::unit(
            kind(prefix, "lease_expired"),
            step,
            item,
            attempt,
            lost.clone(),
        );
        entry.worker = worker;
        if !slot_is_step(slot) {
            unit.attempt += 1;
            unit.status = UnitStatus::Queued;
            self.record(entry);
            self.dispatch(slot);
            return;
        }
        let attempts = policy.attempts.max(LEASE_LOSS_ATTEMPTS_MIN);
        if attempt >= attempts {
            unit.status = UnitStatus::Failed;
            unit.error = Some(format!("{lost}; attempts exhausted"));
            self.record(entry);
            self.advance();
            return;
        }
        unit.error = Some(lost);
        if policy.attempts <= 1 {
            // No retry policy: the lost attempt is simply made again, at once.
            unit.attempt += 1;
            unit.status = UnitStatus::Queued;
            self.record(entry);
            self.dispatch(slot);
            return;
        }
        let delay_ms = policy.delay_ms(attempt + 1) as i64;
        unit.status = UnitStatus::Backoff {
            due_ms: now_ms + delay_ms,
        };
        self.record(entry);
        let of = if attempts == u32::MAX {
            String::new()
        } else {
            format!(" of {attempts}")
        };
        self.record(Entry::unit(
            kind(prefix, "retry_scheduled"),
            step,
            item,
            attempt + 1,
            format!("attempt {}{of} in {delay_ms} ms", attempt + 1),
        ));
        self.advance();
    }

    /// Sends a queued unit to the dispatch queue. A step's task must be leased within its
    /// `schedule_to_start` (or the platform's default), or the step fails.
    pub fn dispatch(&mut self, slot: Slot) {
        let run = self.run.id;
        if let Some(part) = Part::of(slot) {
            self.mark(part);
        }
        if let Slot::Step { step, .. } = slot {
            let limit = self.playbook.steps[step]
                .schedule_to_start_ms
                .or(self.schedule_to_start_ms);
            let start_by = limit.map(|ms| self.now_ms + ms as i64);
            if let Some(unit) = self.unit_mut(slot) {
                unit.start_by_ms = start_by;
            }
        }
        if let Some(task) = task_spec(self.run, self.playbook, UnitRef { run, slot }) {
            self.changed();
            self.out.commands.push(Command::Dispatch(task));
        }
    }

    /// Handles everything due by now: backoffs, sleeps, approval timeouts, grant TTLs, the
    /// run's deadline.
    pub fn fire_due(&mut self) {
        let now = self.now_ms;
        if self.run.status.is_terminal() {
            return;
        }
        if let Some(deadline) = self.run.deadline_ms
            && deadline <= now
            && self.run.phase == Phase::Steps
        {
            let timeout = self.playbook.timeout_ms.unwrap_or(0);
            let message = format!("run timed out after {}", format_ms(timeout));
            self.record(Entry::run("run.timed_out", message.clone()));
            if self.run.status == RunStatus::Queued {
                self.finish(RunStatus::Failed, Some(message));
            } else {
                self.compensate(RunStatus::Failed, Some(message));
            }
            return;
        }
        for slot in self.not_started_in_time() {
            self.fail_not_started(slot);
        }
        for slot in self.backoffs_due() {
            if let Some(unit) = self.unit_mut(slot) {
                unit.attempt += 1;
                unit.status = UnitStatus::Queued;
            }
            self.dispatch(slot);
        }
        for step in 0..self.run.steps.len() {
            let state = &self.run.steps[step];
            let due = state.due_ms.is_some_and(|d| d <= now);
            match state.status {
                StepStatus::Sleeping if due => {
                    self.record(Entry::step("step.woke", self.step_id(step), String::new()));
                    self.finish_step(step, StepStatus::Succeeded, Some(Value::Null), None);
                }
                StepStatus::AwaitingApproval
                    if state.approval.as_ref().is_some_and(|a| a.due_ms <= now) =>
                {
                    self.approval_timed_out(step)
                }
                _ => {}
            }
        }
        self.expire_grants();
        self.advance();
    }

    /// Queued step units whose `schedule_to_start` passed (a unit held by containment waits
    /// for an operator, not for a worker: it does not count).
    fn not_started_in_time(&mut self) -> Vec<Slot> {
        let now = self.now_ms;
        let due = self.index().due_by(now);
        due.into_iter()
            .filter(|slot| matches!(slot, Slot::Step { .. }))
            .filter(|slot| {
                self.unit(*slot).is_some_and(|u| {
                    u.status == UnitStatus::Queued
                        && !u.held
                        && u.start_by_ms.is_some_and(|by| by <= now)
                })
            })
            .collect()
    }

    /// Fails a step unit no worker leased within its `schedule_to_start`.
    fn fail_not_started(&mut self, slot: Slot) {
        let Slot::Step { step, .. } = slot else {
            return;
        };
        let spec = &self.playbook.steps[step];
        let limit = spec
            .schedule_to_start_ms
            .or(self.schedule_to_start_ms)
            .unwrap_or(0);
        let message = format!(
            "not started within {} (schedule_to_start): no worker took its {} task",
            format_ms(limit),
            spec.action
        );
        let (step_id, item, prefix) = self.describe(slot).expect("a step unit is described");
        let unit = self.unit_mut(slot).expect("a queued unit");
        let attempt = unit.attempt;
        unit.status = UnitStatus::Failed;
        unit.start_by_ms = None;
        unit.error = Some(message.clone());
        self.record(Entry::unit(
            kind(prefix, "start_timed_out"),
            step_id,
            item,
            attempt,
            message,
        ));
        let run = self.run.id;
        self.changed();
        self.out
            .commands
            .push(Command::Withdraw(UnitRef { run, slot }));
    }

    /// Units whose backoff ended: step units and undo entries from the index, health gates
    /// (one per step at most) by looking.
    fn backoffs_due(&mut self) -> Vec<Slot> {
        let now = self.now_ms;
        let due = |u: &Unit| matches!(u.status, UnitStatus::Backoff { due_ms } if due_ms <= now);
        let mut slots: Vec<Slot> = self.index().due_by(now);
        slots.retain(|slot| self.unit(*slot).is_some_and(due));
        for (step, state) in self.run.steps.iter().enumerate() {
            if state
                .waves
                .as_ref()
                .and_then(|w| w.gate.as_ref())
                .is_some_and(due)
            {
                slots.push(Slot::Health { step });
            }
        }
        slots
    }

    /// Arms the run's next timer, if it has one.
    pub fn arm_next(&mut self) {
        let units = self.index().next_due();
        if let Some(due_ms) = restore::next_due_of_run(self.run)
            .into_iter()
            .chain(units)
            .min()
        {
            self.out.commands.push(Command::ArmTimer {
                run: self.run.id,
                due_ms,
            });
        }
    }

    /// The run may start its steps (its concurrency key is held).
    pub fn begin(&mut self) {
        self.run.status = RunStatus::Running;
        self.changed();
        self.advance();
    }

    pub fn cancel(&mut self, reason: &str, by: &str) -> Result<(), Error> {
        if let Phase::Compensating { .. } = self.run.phase {
            return Err(Error::Refused(format!(
                "run {} is already being compensated",
                self.run.id
            )));
        }
        self.record(Entry::run(
            "run.cancel_requested",
            format!("by {by}: {reason}"),
        ));
        let error = Some(format!("cancelled by {by}: {reason}"));
        if self.run.status == RunStatus::Queued {
            self.finish(RunStatus::Cancelled, error);
        } else {
            self.compensate(RunStatus::Cancelled, error);
        }
        Ok(())
    }
}

/// A unit's history kind: `task.*`, `undo.*` or `health.*` by its slot.
fn kind(prefix: &str, what: &str) -> String {
    format!("{prefix}.{what}")
}

fn slot_is_step(slot: Slot) -> bool {
    matches!(slot, Slot::Step { .. })
}

/// Parses a rendered duration and checks it is above zero and at most `max_ms`.
pub(crate) fn bounded_duration(text: &str, max_ms: u64) -> Result<u64, String> {
    let ms = riposte_playbooks::parse_duration_ms(text).map_err(|e| e.to_string())?;
    if ms == 0 || ms > max_ms {
        return Err(format!(
            "duration `{text}` must be above 0 and at most {}",
            format_ms(max_ms)
        ));
    }
    Ok(ms)
}

pub(crate) fn format_ms(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

pub(crate) fn format_time(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

pub(crate) fn what(spec: &Step, field: &str) -> String {
    format!("step `{}`: {field}", spec.id)
}
