//! Tasks in the engine: workers register and long-poll, a task is leased (with a fencing token
//! from the store) and its result reported under that lease; heartbeats keep leases. The kill
//! switch holds containment tasks at this door. Idempotency keys are made here; task ids are
//! typed ([`TaskId`]), formatted and parsed only at the gRPC edge.

use super::*;

/// A task leased to a worker (handed out only once its lease is durable).
#[derive(Debug, Clone)]
pub struct LeasedTask {
    pub task: TaskSpec,
    pub task_id: TaskId,
    pub idempotency_key: String,
    pub token: u64,
    pub lease_ms: u64,
    /// The span of this attempt, while traces are exported: the worker's spans join it.
    pub trace: Option<riposte_telemetry::TraceParent>,
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
                task_id: TaskId::new(unit, step_id, attempt),
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
        self.dispatch.register(worker);
        // The loop may be sleeping its idle second; leases to this worker may be shorter.
        self.wake.notify_one();
    }

    /// Records a call from `worker`; refuses a worker that is not registered (or was fenced).
    pub(super) fn touch(&mut self, worker: &str, heartbeat: bool) -> Result<(), Error> {
        let now = self.clock.monotonic();
        self.dispatch
            .touch(worker, now, heartbeat)
            .map_err(|fenced| {
                Error::FailedPrecondition(match fenced {
                    Some(_) => format!(
                        "worker {worker} is not registered: it was fenced after {} without a \
                     heartbeat (its leases go to others); register again",
                        humantime::format_duration(self.dispatch.silence_max())
                    ),
                    None => format!("unknown worker {worker}; register again"),
                })
            })
    }

    /// Hands a queued task to the worker now, or registers the long-poll.
    pub fn poll(&mut self, worker: &str) -> Result<Poll, Error> {
        self.touch(worker, false)?;
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
        let seq = self.commit(transition, RunKey::None)?;
        let now = self.clock.monotonic();
        let id = TaskId::new(task.unit, &task.step_id, task.attempt);
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
        let idempotency_key = idempotency_key(&id, task.dry_run);
        let trace = match self.observer.tracing() {
            true => self.task_trace(&task),
            false => None,
        };
        let leased = LeasedTask {
            task,
            task_id: id,
            idempotency_key,
            token,
            lease_ms: self.settings.lease.as_millis() as u64,
            trace,
        };
        Ok(Some(Pending::new(leased, seq)))
    }

    /// The span of a task's attempt (see [`crate::telemetry::spans`]).
    fn task_trace(&self, task: &TaskSpec) -> Option<riposte_telemetry::TraceParent> {
        let run = self.scheduler.run(task.unit.run)?;
        run.trace.as_ref()?;
        let playbook = self.playbooks.get(&(run.playbook.clone(), run.version))?;
        let (kind, item) = match task.unit.slot {
            Slot::Step { item, .. } => ("task", item),
            Slot::Undo(n) => ("undo", run.undo.get(n as usize)?.item),
            Slot::Health { .. } => ("health", 0),
        };
        crate::telemetry::spans::task_span(run, playbook, kind, &task.step_id, item, task.attempt)
    }

    /// Hands queued tasks to waiting long-polls of live workers.
    pub(super) fn pump(&mut self) {
        let now = self.clock.monotonic();
        while let Some((waiter, task)) = self.dispatch.take_match(now) {
            match self.lease(task, &waiter.worker) {
                Ok(Some(leased)) => {
                    // A receiver dropped after the check above leaves the lease to expire.
                    let _ = waiter.reply.send(leased);
                }
                // The unit is no longer queued (its run was cancelled): the poll waits on.
                Ok(None) => self.dispatch.return_waiter(waiter),
                Err(e) => tracing::error!(error = %e, "engine.lease_failed"),
            }
        }
        self.end_unoffered();
    }

    pub fn heartbeat(
        &mut self,
        worker: &str,
        held: &[(TaskId, u64)],
    ) -> Result<Vec<(TaskId, u64)>, Error> {
        self.touch(worker, true)?;
        Ok(self
            .dispatch
            .heartbeat(worker, held, self.clock.monotonic(), self.settings.lease))
    }

    /// Records a task's result if `token` is the unit's current lease and `worker` (who sent
    /// it, as authenticated) holds it; a refusal is recorded in the run's history.
    pub fn report(
        &mut self,
        worker: &str,
        task_id: &TaskId,
        token: u64,
        outcome: Result<Value, (String, bool)>,
    ) -> Result<Pending<Report>, Error> {
        let run = task_id.run;
        let Some(playbook) = self.scheduler.playbook(run).cloned() else {
            return self.report_finished(worker, task_id, token);
        };
        let unit = unit_of(task_id, &playbook)?;
        let worker = worker.to_string();
        let event = match outcome {
            Ok(output) => Event::Succeeded {
                unit,
                token,
                worker,
                output,
            },
            Err((message, retryable)) => Event::Failed {
                unit,
                token,
                worker,
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
        worker: &str,
        task_id: &TaskId,
        token: u64,
    ) -> Result<Pending<Report>, Error> {
        let run = task_id.run;
        let mut state = self
            .store
            .run(run)?
            .ok_or_else(|| Error::NotFound(format!("run {run} not found")))?;
        let playbook = self.playbook(&state.playbook, state.version)?;
        let unit = unit_of(task_id, &playbook)?;
        let transition = self.scheduler.result_for_finished(
            self.clock.now_ms(),
            &mut state,
            &playbook,
            &unit,
            (token, worker),
        );
        let mut seq = self.store.last_write();
        if !transition.changed.is_empty() {
            let write = RunWrite {
                state: &state,
                parts: transition.parts_of(run).collect(),
                history: transition.history_of(run).collect(),
            };
            seq = self.store.put_runs(&[write], RunKey::None)?;
        }
        let report = Report {
            duplicate: transition.duplicate,
            rejected: transition.rejected,
        };
        Ok(Pending::new(report, seq))
    }

    /// Fences workers unheard for longer than a lease: nothing more is handed to them until
    /// they register again.
    pub(super) fn fence_silent_workers(&mut self, now: Instant) {
        for (worker, unheard) in self.dispatch.fence_silent(now) {
            tracing::warn!(worker.id = %worker, unheard_ms = unheard.as_millis() as u64, "worker.fenced");
        }
    }

    /// Evicts the registered workers `refused` refuses (a narrower worker policy).
    pub fn evict(&mut self, refused: impl Fn(&Worker) -> Option<String>) {
        let evicted: Vec<String> = self
            .dispatch
            .workers()
            .filter_map(|w| {
                let why = refused(w)?;
                tracing::warn!(worker.id = %w.id, reason = %why, "worker.evicted");
                Some(w.id.clone())
            })
            .collect();
        self.dispatch.evict(&evicted);
    }

    /// A registered worker by its key.
    pub(super) fn worker(&self, id: &str) -> Option<&Worker> {
        self.dispatch.worker(id)
    }

    /// Whether a registered worker offers `action` and carries `labels`.
    pub(super) fn serves(&self, action: &str, labels: &BTreeMap<String, String>) -> bool {
        self.dispatch.serves(action, labels)
    }

    pub fn workers(&self) -> Vec<(Worker, usize)> {
        let mut workers: Vec<(Worker, usize)> = self
            .dispatch
            .workers()
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

/// Stable across attempts: what connectors use to make repeats harmless. A dry run's keys
/// carry [`DRY_RUN_KEY_PREFIX`], so they never collide with a real run's.
fn idempotency_key(task: &TaskId, dry_run: bool) -> String {
    let key = task.without_attempt();
    match dry_run {
        true => format!("{DRY_RUN_KEY_PREFIX}{key}"),
        false => key,
    }
}

/// The unit a reported task id names in its run.
fn unit_of(task: &TaskId, playbook: &Playbook) -> Result<UnitRef, Error> {
    task.unit(playbook)
        .ok_or_else(|| Error::InvalidArgument(format!("run {} has no task `{task}`", task.run)))
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
