//! Runs in the engine: start (with its idempotency key), read, watch, cancel, decide an
//! approval, revoke a grant, repair; the views of open grants and pending approvals.

use super::*;

/// An open (or closing) grant, for `riposte grants list`.
pub struct GrantView {
    pub run: RunId,
    pub playbook: String,
    pub step: String,
    pub item: u32,
    pub grant: riposte_scheduler::state::GrantState,
    pub action: String,
    pub input: Value,
    pub status: &'static str,
    pub requested_by: String,
    pub attempts: u32,
    pub error: String,
}

/// A step waiting for a decision, for `riposte approvals list`.
pub struct ApprovalView {
    pub run: RunId,
    pub playbook: String,
    pub step: String,
    pub action: String,
    pub input: Value,
    pub pending: riposte_scheduler::state::ApprovalState,
    pub approvers: Vec<String>,
    pub min: u32,
    pub on_timeout: riposte_playbooks::ApprovalOutcome,
    pub requested_by: String,
}

/// A run start as asked for by an operator (or a trigger, later).
pub struct StartRequest {
    pub playbook: String,
    pub version: u32,
    pub params: serde_json::Map<String, Value>,
    pub idempotency_key: String,
    pub requested_by: String,
    /// A plan: connectors change nothing, timers and approvals fire at once.
    pub dry_run: bool,
    /// What started it (the alert, for a rule's run); `null` for an operator's start.
    pub trigger: Value,
    /// The span the run's trace continues (the alert's decision); `None`: a trace of its own.
    pub trace: Option<riposte_telemetry::TraceParent>,
}

/// A checked start: a run that already claimed the key, or a new one to commit.
pub(super) enum Prepared {
    Existing(Box<RunState>),
    New {
        id: RunId,
        claim: Option<String>,
        transition: Transition,
    },
}

/// History so far plus, while the run is active, a subscription to what follows.
pub struct Watch {
    pub history: Vec<HistoryEvent>,
    pub live: Option<broadcast::Receiver<(Seq, HistoryEvent)>>,
}

impl Runs {
    /// Starts a run, or answers the run that already claimed the idempotency key.
    pub fn start_run(&mut self, req: StartRequest) -> Result<Pending<(RunState, bool)>, Error> {
        match self.prepare_start(req)? {
            Prepared::Existing(run) => Ok(Pending::unchanged(&self.store, (*run, true))),
            Prepared::New {
                id,
                claim,
                transition,
            } => {
                let claims: Vec<(&str, RunId)> = claim.iter().map(|c| (c.as_str(), id)).collect();
                let seq = self.commit_with(vec![transition], |store, writes| {
                    store.put_runs_scheduled(writes, &claims, None)
                })?;
                let run = self.run(id)?;
                Ok(Pending::new((run, false), seq))
            }
        }
    }

    /// Checks a start and hands it to the scheduler; the caller commits the transition (with
    /// the key claim) before anything else happens under the lock.
    pub(super) fn prepare_start(&mut self, req: StartRequest) -> Result<Prepared, Error> {
        check_len("idempotency key", &req.idempotency_key)?;
        check_len("requested_by", &req.requested_by)?;
        self.store
            .check_room()
            .map_err(|e| Error::ResourceExhausted(e.to_string()))?;
        // A dry run's key lives apart: a plan never answers for (or blocks) a real run.
        let claim = match (req.idempotency_key.is_empty(), req.dry_run) {
            (true, _) => String::new(),
            (false, true) => format!("{DRY_RUN_KEY_PREFIX}{}", req.idempotency_key),
            (false, false) => req.idempotency_key.clone(),
        };
        if !claim.is_empty()
            && let Some(id) = self.store.run_by_key(&claim)?
        {
            return Ok(Prepared::Existing(Box::new(self.run(id)?)));
        }
        if self.scheduler.len() >= limits::RUNS_ACTIVE_MAX {
            return Err(Error::ResourceExhausted(format!(
                "{} runs are running, the most allowed; retry later",
                limits::RUNS_ACTIVE_MAX
            )));
        }
        if self.dispatch.queue_len() >= limits::QUEUE_DEPTH_MAX {
            return Err(Error::ResourceExhausted(format!(
                "{} tasks are waiting for workers, the most allowed; retry later",
                limits::QUEUE_DEPTH_MAX
            )));
        }
        let playbook = self.playbook(&req.playbook, req.version)?;
        // A dry run changes nothing (its approvals count as given): planning needs no
        // approval the platform requires of the real run.
        let scheduled = crate::auth::principal::is_schedule(&req.requested_by);
        let approvals = &self.settings.platform.approvals;
        let unmet = riposte_playbooks::platform::unmet(&playbook, approvals, scheduled);
        if let Some(first) = unmet.first().filter(|_| !req.dry_run) {
            return Err(Error::PermissionDenied(format!(
                "{}@{} may not run: {}",
                playbook.name, playbook.version, first.message
            )));
        }
        let params = playbook.coerce_params(&req.params).map_err(|problems| {
            Error::InvalidArgument(format!(
                "invalid parameters for {}@{}: {}",
                playbook.name,
                playbook.version,
                problems.join("; ")
            ))
        })?;
        let id = self.clock.new_run_id();
        let trace = self.observer.run_trace(req.trace, id);
        let new = NewRun {
            id,
            playbook,
            params: Value::Object(params),
            trigger: req.trigger,
            requested_by: req.requested_by,
            idempotency_key: req.idempotency_key.clone(),
            dry_run: req.dry_run,
            trace: trace.map(|t| t.to_string()),
        };
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), Event::Start(new))
            .map_err(scheduler_error)?;
        if let Some(run) = self.scheduler.run(id) {
            self.observer.started(run, req.trace);
        }
        Ok(Prepared::New {
            id,
            claim: (!claim.is_empty()).then_some(claim),
            transition,
        })
    }

    /// The current state of a run, active or finished.
    pub fn run(&self, id: RunId) -> Result<RunState, Error> {
        if let Some(state) = self.scheduler.run(id) {
            return Ok(state.clone());
        }
        self.store
            .run(id)?
            .ok_or_else(|| Error::NotFound(format!("run {id} not found")))
    }

    pub fn cancel_run(
        &mut self,
        id: RunId,
        reason: String,
        by: String,
    ) -> Result<Pending<()>, Error> {
        check_len("reason", &reason)?;
        if self.scheduler.run(id).is_none() {
            let run = self.run(id)?;
            return Err(Error::FailedPrecondition(format!(
                "run {id} has already {}",
                run.status.as_str()
            )));
        }
        let transition = self
            .scheduler
            .handle(
                self.clock.now_ms(),
                Event::Cancel {
                    run: id,
                    reason,
                    by,
                },
            )
            .map_err(scheduler_error)?;
        let seq = self.commit(transition, RunKey::None)?;
        Ok(Pending::new((), seq))
    }

    /// The history so far and, for an active run, a subscription to what comes next.
    pub fn watch(&mut self, id: RunId) -> Result<Pending<Watch>, Error> {
        let active = self.scheduler.run(id).is_some();
        if !active && self.store.run(id)?.is_none() {
            return Err(Error::NotFound(format!("run {id} not found")));
        }
        let live = active.then(|| {
            self.watchers
                .entry(id)
                .or_insert_with(|| broadcast::channel(1024).0)
                .subscribe()
        });
        let history = self.store.history(id, 0)?;
        Ok(Pending::unchanged(&self.store, Watch { history, live }))
    }

    /// History entries after `seq` (to recover from a lagging subscription).
    pub fn history_after(&self, id: RunId, after: u64) -> Result<Vec<HistoryEvent>, Error> {
        Ok(self.store.history(id, after)?)
    }

    /// Records a decision on an approval.
    pub fn decide(&mut self, request: DecisionRequest) -> Result<Pending<()>, Error> {
        check_len("who", &request.who)?;
        check_len("comment", &request.comment)?;
        if request.who.is_empty() {
            return Err(Error::InvalidArgument("who decides is required".into()));
        }
        let run = request.run;
        self.active_or_refuse(run)?;
        let event = Event::Decide(request);
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), event)
            .map_err(scheduler_error)?;
        let seq = self.commit(transition, RunKey::None)?;
        Ok(Pending::new((), seq))
    }

    pub(super) fn active_or_refuse(&self, id: RunId) -> Result<(), Error> {
        if self.scheduler.run(id).is_some() {
            return Ok(());
        }
        let run = self.run(id)?;
        Err(Error::FailedPrecondition(format!(
            "run {id} has {}",
            run.status.as_str()
        )))
    }

    pub fn revoke_grant(
        &mut self,
        run: RunId,
        step: String,
        item: u32,
        by: String,
        reason: String,
    ) -> Result<Pending<()>, Error> {
        check_len("reason", &reason)?;
        self.active_or_refuse(run)?;
        let event = Event::Revoke {
            run,
            step,
            item,
            by,
            reason,
        };
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), event)
            .map_err(scheduler_error)?;
        let seq = self.commit(transition, RunKey::None)?;
        Ok(Pending::new((), seq))
    }

    /// A repair verb; an ended run is reopened from the store when the verb allows it.
    pub fn repair(
        &mut self,
        run: RunId,
        repair: Repair,
        step: String,
        by: String,
        reason: String,
    ) -> Result<Pending<()>, Error> {
        check_len("reason", &reason)?;
        let now_ms = self.clock.now_ms();
        let transition = if self.scheduler.run(run).is_some() {
            let event = Event::Repair {
                run,
                repair,
                step,
                by,
                reason,
            };
            self.scheduler
                .handle(now_ms, event)
                .map_err(scheduler_error)?
        } else {
            let state = self.run(run)?;
            let playbook = self.playbook(&state.playbook, state.version)?;
            self.scheduler
                .reopen(now_ms, state, playbook, (repair, &step, &by, &reason))
                .map_err(scheduler_error)?
        };
        let seq = self.commit(transition, RunKey::None)?;
        Ok(Pending::new((), seq))
    }

    /// Every grant of the active runs (a run holding a grant is active).
    pub fn grants(&self) -> Vec<GrantView> {
        let mut grants = Vec::new();
        for (state, playbook) in self.scheduler.runs() {
            for entry in &state.undo {
                let Some(grant) = &entry.grant else { continue };
                grants.push(GrantView {
                    run: state.id,
                    playbook: state.playbook.clone(),
                    step: playbook.steps[entry.step].id.clone(),
                    item: entry.item,
                    grant: grant.clone(),
                    action: entry.action.clone(),
                    input: entry.unit.input.clone(),
                    status: riposte_scheduler::undo_status(&entry.unit),
                    requested_by: state.requested_by.clone(),
                    attempts: entry.unit.attempt,
                    error: entry.unit.error.clone().unwrap_or_default(),
                });
            }
        }
        grants.sort_by_key(|g| (g.grant.expires_ms, g.run, g.item));
        grants
    }

    /// Steps waiting for a decision.
    pub fn approvals(&self) -> Vec<ApprovalView> {
        let mut approvals = Vec::new();
        for (state, playbook) in self.scheduler.runs() {
            for (spec, step) in playbook.steps.iter().zip(&state.steps) {
                if step.status != riposte_scheduler::state::StepStatus::AwaitingApproval {
                    continue;
                }
                let (Some(pending), Some(policy)) = (&step.approval, &spec.approval) else {
                    continue;
                };
                let inputs: Vec<Value> = step.units.iter().map(|u| u.input.clone()).collect();
                let input = match (spec.for_each.is_some(), inputs.len()) {
                    (false, 1) => inputs.into_iter().next().unwrap_or(Value::Null),
                    (false, _) => state.params.clone(),
                    (true, _) => Value::Array(inputs),
                };
                approvals.push(ApprovalView {
                    run: state.id,
                    playbook: state.playbook.clone(),
                    step: spec.id.clone(),
                    action: spec.action.clone(),
                    input,
                    pending: (**pending).clone(),
                    approvers: policy.approvers.clone(),
                    min: policy.min,
                    on_timeout: policy.on_timeout,
                    requested_by: state.requested_by.clone(),
                });
            }
        }
        approvals.sort_by_key(|a| (a.pending.due_ms, a.run));
        approvals
    }

    /// For each step of `state`, why its queued items wait when no connected worker can take
    /// them (`queued (no worker offers ACTION)`), or an empty string.
    pub fn waiting(&self, state: &RunState, playbook: &Playbook) -> Vec<String> {
        playbook
            .steps
            .iter()
            .zip(&state.steps)
            .map(|(spec, step)| {
                let held = step.waves.as_ref().and_then(|w| w.held_until_ms);
                if let Some(until) =
                    held.filter(|_| step.status == riposte_scheduler::state::StepStatus::Running)
                {
                    return match u64::try_from(until).ok().filter(|_| until != i64::MAX) {
                        Some(ms) => {
                            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                            let at = humantime::format_rfc3339_millis(at);
                            format!("next wave held for its maintenance window until {at}")
                        }
                        None => "next wave held: no maintenance window opens in 8 days".into(),
                    };
                }
                let unserved = step.units.iter().find(|u| {
                    u.status == UnitStatus::Queued
                        && !u.held
                        && !self.dispatch.serves(&spec.action, &u.labels)
                });
                match unserved {
                    None => String::new(),
                    Some(u) if u.labels.is_empty() => {
                        format!("queued (no worker offers {})", spec.action)
                    }
                    Some(u) => {
                        let labels: Vec<String> =
                            u.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!(
                            "queued (no worker offers {} with labels {})",
                            spec.action,
                            labels.join(",")
                        )
                    }
                }
            })
            .collect()
    }

    /// Whether runs get a trace (traces are exported).
    pub fn tracing(&self) -> bool {
        self.observer.tracing()
    }

    /// Runs currently active (for health and the benchmark).
    pub fn active_runs(&self) -> usize {
        self.scheduler.len()
    }
}
