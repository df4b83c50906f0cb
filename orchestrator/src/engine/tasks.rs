//! Tasks in the engine: workers register and long-poll, a task is leased (with a fencing token
//! from the store) and its result reported under that lease; heartbeats keep leases. The kill
//! switch holds containment tasks at this door. Task ids and idempotency keys are made here.

use super::*;

/// A task leased to a worker (handed out only once its lease is durable).
#[derive(Debug, Clone)]
pub struct LeasedTask {
    pub task: TaskSpec,
    pub task_id: String,
    pub idempotency_key: String,
    pub token: u64,
    pub lease_ms: u64,
}

/// What a poll got: a task now, or a channel that will carry one.
pub enum Poll {
    Now(Box<Pending<LeasedTask>>),
    Wait(oneshot::Receiver<Pending<LeasedTask>>),
}

/// Answer to a reported result.
#[derive(Debug, Clone)]
pub struct Report {
    pub duplicate: bool,
    pub rejected: Option<String>,
}

impl Runs {
    pub(super) fn adopt_leases(&mut self, state: &RunState, playbook: &Playbook, now: Instant) {
        for (unit, token, worker, attempt) in leased_units(state) {
            let step_id = &playbook.steps[slot_step(state, unit.slot)].id;
            let timeout =
                Duration::from_millis(playbook.steps[slot_step(state, unit.slot)].timeout_ms);
            let lease = Lease {
                unit,
                task_id: task_id(state.id, step_id, unit.slot, attempt),
                worker,
                deadline: now + self.settings.lease,
                deadline_max: now + self.settings.lease + timeout,
            };
            self.dispatch.insert_lease(token, lease);
        }
    }

    /// Upserts a worker.
    pub fn register(&mut self, worker: Worker) {
        tracing::info!(worker.id = %worker.id, worker.name = %worker.name, "worker.registered");
        self.dispatch.workers.insert(worker.id.clone(), worker);
        // The loop may be sleeping its idle second; leases to this worker may be shorter.
        self.wake.notify_one();
    }

    pub(super) fn touch(&mut self, worker: &str) -> Result<(), Error> {
        match self.dispatch.workers.get_mut(worker) {
            Some(w) => {
                w.last_seen = self.clock.monotonic();
                Ok(())
            }
            None => Err(Error::FailedPrecondition(format!(
                "unknown worker {worker}; register again"
            ))),
        }
    }

    /// Hands a queued task to the worker now, or registers the long-poll.
    pub fn poll(&mut self, worker: &str) -> Result<Poll, Error> {
        self.touch(worker)?;
        while let Some(task) = self.dispatch.take_task_for(worker) {
            if let Some(leased) = self.lease(task, worker)? {
                return Ok(Poll::Now(Box::new(leased)));
            }
        }
        let (reply, rx) = oneshot::channel();
        self.dispatch.add_waiter(Waiter {
            worker: worker.to_string(),
            reply,
        });
        Ok(Poll::Wait(rx))
    }

    /// Leases `task` to `worker`. `None` when the unit is no longer queued (cancelled).
    pub(super) fn lease(
        &mut self,
        task: TaskSpec,
        worker: &str,
    ) -> Result<Option<Pending<LeasedTask>>, Error> {
        debug_assert!(
            !self.dispatch.is_held(&task),
            "the dispatch door never lets a held task through"
        );
        let token = self.store.next_token()?;
        let event = Event::Leased {
            unit: task.unit,
            attempt: task.attempt,
            token,
            worker: worker.to_string(),
        };
        let transition = match self.scheduler.handle(self.clock.now_ms(), event) {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        let run = task.unit.run;
        let seq = self.commit(transition, RunKey::None)?;
        let now = self.clock.monotonic();
        let id = task_id(run, &task.step_id, task.unit.slot, task.attempt);
        self.dispatch.insert_lease(
            token,
            Lease {
                unit: task.unit,
                task_id: id.clone(),
                worker: worker.to_string(),
                deadline: now + self.settings.lease,
                deadline_max: now + self.settings.lease + Duration::from_millis(task.timeout_ms),
            },
        );
        let idempotency_key = idempotency_key(run, &task.step_id, task.unit.slot, task.dry_run);
        let leased = LeasedTask {
            task,
            task_id: id,
            idempotency_key,
            token,
            lease_ms: self.settings.lease.as_millis() as u64,
        };
        Ok(Some(Pending::new(leased, seq)))
    }

    /// Hands queued tasks to waiting long-polls.
    pub(super) fn pump(&mut self) {
        let mut index = 0;
        while index < self.dispatch.queue_len() && self.dispatch.has_waiters() {
            let Some(task) = self.dispatch.take_at(index) else {
                break;
            };
            let Some(waiter) = self.dispatch.take_waiter_for(&task) else {
                self.dispatch.put_back(index, task);
                index += 1;
                continue;
            };
            match self.lease(task, &waiter.worker) {
                Ok(Some(leased)) => {
                    // A receiver dropped after the check above leaves the lease to expire.
                    let _ = waiter.reply.send(leased);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "engine.lease_failed"),
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        worker: &str,
        held: &[(String, u64)],
    ) -> Result<Vec<(String, u64)>, Error> {
        self.touch(worker)?;
        Ok(self
            .dispatch
            .heartbeat(worker, held, self.clock.monotonic(), self.settings.lease))
    }

    /// Records a task's result if `token` is the unit's current lease.
    pub fn report(
        &mut self,
        task_id: &str,
        token: u64,
        outcome: Result<Value, (String, bool)>,
    ) -> Result<Pending<Report>, Error> {
        let parsed = parse_task_id(task_id)
            .ok_or_else(|| Error::InvalidArgument(format!("malformed task id `{task_id}`")))?;
        let run = parsed.run;
        let Some(playbook) = self.scheduler.playbook(run).cloned() else {
            return self.report_finished(parsed, token);
        };
        let unit = parsed.unit(&playbook)?;
        let event = match outcome {
            Ok(output) => Event::Succeeded {
                unit,
                token,
                output,
            },
            Err((message, retryable)) => Event::Failed {
                unit,
                token,
                message,
                retryable,
            },
        };
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), event)
            .map_err(scheduler_error)?;
        let (duplicate, rejected) = (transition.duplicate, transition.rejected.clone());
        if !duplicate && rejected.is_none() {
            self.dispatch.remove_lease(token);
        }
        let seq = self.commit(transition, RunKey::None)?;
        Ok(Pending::new(
            Report {
                duplicate,
                rejected,
            },
            seq,
        ))
    }

    pub(super) fn report_finished(
        &mut self,
        parsed: ParsedTaskId,
        token: u64,
    ) -> Result<Pending<Report>, Error> {
        let run = parsed.run;
        let mut state = self
            .store
            .run(run)?
            .ok_or_else(|| Error::NotFound(format!("run {run} not found")))?;
        let playbook = self.playbook(&state.playbook, state.version)?;
        let unit = parsed.unit(&playbook)?;
        let transition = self.scheduler.result_for_finished(
            self.clock.now_ms(),
            &mut state,
            &playbook,
            &unit,
            token,
        );
        let mut seq = self.store.last_write();
        if !transition.changed.is_empty() {
            let history: Vec<&HistoryEvent> = transition.history_of(run).collect();
            seq = self.store.put_runs(&[(&state, history)], RunKey::None)?;
        }
        let report = Report {
            duplicate: transition.duplicate,
            rejected: transition.rejected,
        };
        Ok(Pending::new(report, seq))
    }

    /// Workers silent for ten leases leave the registry (they register again when back).
    pub(super) fn forget_silent_workers(&mut self, now: Instant) {
        let silence = self.settings.lease * 10;
        self.dispatch
            .workers
            .retain(|_, w| now.duration_since(w.last_seen) < silence);
    }

    pub fn workers(&self) -> Vec<(Worker, usize)> {
        let mut workers: Vec<(Worker, usize)> = self
            .dispatch
            .workers
            .values()
            .map(|w| (w.clone(), self.dispatch.in_flight(&w.id)))
            .collect();
        workers.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.id.cmp(&b.0.id)));
        workers
    }

    /// Records `task.held` for units the door holds (once per unit: the scheduler ignores a
    /// unit already marked held).
    pub(super) fn record_held(&mut self, units: Vec<UnitRef>) {
        let reason = self.containment.reason.clone();
        for unit in units {
            let event = Event::Held {
                unit,
                reason: reason.clone(),
            };
            if let Ok(transition) = self.scheduler.handle(self.clock.now_ms(), event)
                && let Err(e) = self.commit(transition, RunKey::None)
            {
                tracing::error!(run.id = %unit.run, error = %e, "engine.commit_failed");
            }
        }
    }

    /// The kill switch now, and how many tasks it holds.
    pub fn containment(&self) -> (Containment, usize) {
        (self.containment.clone(), self.dispatch.held().len())
    }

    /// Pauses containment: from now on no task of a containment action is leased (undos,
    /// other actions and dry runs go on). Pausing again changes nothing.
    pub fn pause_containment(&mut self, by: String, reason: String) -> Result<Pending<()>, Error> {
        check_len("reason", &reason)?;
        if self.containment.paused {
            return Ok(Pending::unchanged(&self.store, ()));
        }
        self.set_containment(true, by, reason)?;
        let held = self.dispatch.held();
        self.record_held(held);
        tracing::warn!(by = %self.containment.by, reason = %self.containment.reason, "containment.paused");
        Ok(Pending::unchanged(&self.store, ()))
    }

    /// Resumes containment: held tasks are handed out again. Resuming again changes nothing.
    pub fn resume_containment(&mut self, by: String, reason: String) -> Result<Pending<()>, Error> {
        check_len("reason", &reason)?;
        if !self.containment.paused {
            return Ok(Pending::unchanged(&self.store, ()));
        }
        self.set_containment(false, by, reason)?;
        tracing::info!(by = %self.containment.by, "containment.resumed");
        self.pump();
        Ok(Pending::unchanged(&self.store, ()))
    }

    pub(super) fn set_containment(
        &mut self,
        paused: bool,
        by: String,
        reason: String,
    ) -> Result<Seq, Error> {
        let next = Containment {
            paused,
            by,
            at_ms: self.clock.now_ms(),
            reason,
        };
        let seq = self.store.put_containment(&next)?;
        self.containment = next;
        self.dispatch.set_paused(paused);
        Ok(seq)
    }
}

/// The task id on the wire: `run/step/item/attempt`, `run/!undo/n/attempt` or
/// `run/step/!health/attempt`.
pub fn task_id(run: RunId, step_id: &str, slot: Slot, attempt: u32) -> String {
    match slot {
        Slot::Step { item, .. } => format!("{run}/{step_id}/{item}/{attempt}"),
        Slot::Undo(n) => format!("{run}/!undo/{n}/{attempt}"),
        Slot::Health { .. } => format!("{run}/{step_id}/!health/{attempt}"),
    }
}

/// Stable across attempts: what connectors use to make repeats harmless. A dry run's keys
/// carry [`DRY_RUN_KEY_PREFIX`], so they never collide with a real run's.
pub(super) fn idempotency_key(run: RunId, step_id: &str, slot: Slot, dry_run: bool) -> String {
    let key = match slot {
        Slot::Step { item, .. } => format!("{run}/{step_id}/{item}"),
        Slot::Undo(n) => format!("{run}/!undo/{n}"),
        Slot::Health { .. } => format!("{run}/{step_id}/!health"),
    };
    match dry_run {
        true => format!("{DRY_RUN_KEY_PREFIX}{key}"),
        false => key,
    }
}

/// A task id taken apart; the step is resolved against the run's playbook.
pub(super) struct ParsedTaskId {
    run: RunId,
    step: String,
    item: String,
}

impl ParsedTaskId {
    pub(super) fn unit(&self, playbook: &Playbook) -> Result<UnitRef, Error> {
        let bad = || {
            Error::InvalidArgument(format!(
                "run {} has no task `{}/{}`",
                self.run, self.step, self.item
            ))
        };
        let slot = if self.step == "!undo" {
            Slot::Undo(self.item.parse().map_err(|_| bad())?)
        } else {
            let step = playbook.step_index(&self.step).ok_or_else(bad)?;
            if self.item == "!health" {
                Slot::Health { step }
            } else {
                Slot::Step {
                    step,
                    item: self.item.parse().map_err(|_| bad())?,
                }
            }
        };
        Ok(UnitRef {
            run: self.run,
            slot,
        })
    }
}

pub(super) fn parse_task_id(id: &str) -> Option<ParsedTaskId> {
    let mut parts = id.split('/');
    let run = parts.next()?.parse().ok()?;
    let step = parts.next()?.to_string();
    let item = parts.next()?.to_string();
    let _attempt: u32 = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some(ParsedTaskId { run, step, item })
}

/// The step a slot belongs to.
pub(super) fn slot_step(state: &RunState, slot: Slot) -> usize {
    match slot {
        Slot::Step { step, .. } | Slot::Health { step } => step,
        Slot::Undo(n) => state.undo[n as usize].step,
    }
}

/// Every leased unit of a run: (unit, token, worker, attempt).
pub(super) fn leased_units(state: &RunState) -> Vec<(UnitRef, u64, String, u32)> {
    let mut out = Vec::new();
    let mut push = |slot: Slot, unit: &riposte_scheduler::state::Unit| {
        if let UnitStatus::Leased { token, worker } = &unit.status {
            out.push((
                UnitRef {
                    run: state.id,
                    slot,
                },
                *token,
                worker.clone(),
                unit.attempt,
            ));
        }
    };
    for (step, s) in state.steps.iter().enumerate() {
        for (item, unit) in s.units.iter().enumerate() {
            push(
                Slot::Step {
                    step,
                    item: item as u32,
                },
                unit,
            );
        }
        if let Some(gate) = s.waves.as_ref().and_then(|w| w.gate.as_ref()) {
            push(Slot::Health { step }, gate);
        }
    }
    for (n, entry) in state.undo.iter().enumerate() {
        push(Slot::Undo(n as u32), &entry.unit);
    }
    out
}
