//! The engine: glue between the pure scheduler, the dispatcher and the store.
//!
//! Every operation takes the engine's lock, feeds one event to the scheduler, writes the run's
//! new state with its history in one store transaction, and returns the write's [`Seq`]. The
//! caller awaits [`Store::durable`] on it before answering anyone: nothing is acknowledged
//! (RPC reply, run accepted, task handed out, event streamed) before it is flushed.
//!
//! Cron schedules live in [`schedules`]: one entry per schedule in the same timer index as the
//! runs' timers; a fire starts its runs and writes its ledger entries in one transaction.

pub mod alerts;
mod schedules;

pub use alerts::RuleApplied;
pub use schedules::{ApplyOutcome, ScheduleView};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riposte_playbooks::Playbook;
use serde_json::Value;
use tokio::sync::{Notify, broadcast, oneshot};

use crate::clock::Clock;
use crate::dispatch::{Dispatcher, Lease, Waiter, Worker};
use crate::store::{self, Containment, RunKey, Seq, Store, StoredPlaybook};
use riposte_scheduler::state::{HistoryEvent, RunId, RunState, Slot, UnitRef, UnitStatus};
use riposte_scheduler::{
    self as scheduler, Command, DecisionRequest, Event, NewRun, Repair, Scheduler, TaskSpec,
    Transition,
};

/// Bounds on what one request may carry or the engine may hold.
pub mod limits {
    /// Largest `params_json` of a run.
    pub const PARAMS_BYTES_MAX: usize = 64 * 1024;
    /// Largest output a worker may report for one task.
    pub const OUTPUT_BYTES_MAX: usize = 1024 * 1024;
    /// Largest error message kept from a worker.
    pub const ERROR_BYTES_MAX: usize = 4 * 1024;
    /// Largest idempotency key, requester name, reason.
    pub const KEY_BYTES_MAX: usize = 256;
    /// Runs running at once; more is RESOURCE_EXHAUSTED.
    pub const RUNS_ACTIVE_MAX: usize = 100_000;
    /// Tasks waiting for a worker; more is RESOURCE_EXHAUSTED on run start.
    pub const QUEUE_DEPTH_MAX: usize = 200_000;
    /// Longest list answered by one call.
    pub const LIST_MAX: usize = 1000;
    /// Schedules stored at once; applying one more is RESOURCE_EXHAUSTED.
    pub const SCHEDULES_MAX: usize = 1000;
    /// Ledger entries kept per schedule: the newest ones; older entries are dropped.
    pub const LEDGER_ENTRIES_KEPT: usize = 10_000;
    /// Ledger entries answered when a history request gives no limit.
    pub const HISTORY_DEFAULT: usize = 100;
    /// Alerts kept: the newest ones; older alerts are dropped as new ones arrive.
    pub const ALERTS_KEPT: usize = 100_000;
    /// Alerts answered when a list request gives no limit.
    pub const ALERTS_LIST_DEFAULT: usize = 100;
    /// Alert payloads being ingested at once by default (read, parsed, stored, awaiting their
    /// flush; `--alerts-in-flight`); one more is refused (RESOURCE_EXHAUSTED, HTTP 429) until
    /// one is acknowledged.
    pub const ALERTS_IN_FLIGHT_DEFAULT: usize = 256;
    /// Expired dedup entries are removed every this many payloads (and at start).
    pub const DEDUP_PRUNE_EVERY: usize = 1000;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A lease lasts this long without a heartbeat.
    pub lease: Duration,
    /// Longest long-poll held open.
    pub poll_wait_max: Duration,
    /// Approver groups: group name -> members.
    pub approver_groups: BTreeMap<String, Vec<String>>,
    /// The platform-wide guard the scheduler checks guarded actions against.
    pub guard: riposte_scheduler::guard::Policy,
    /// An occurrence decided later than this after its time is missed (catch-up decides).
    pub schedule_grace: Duration,
}

/// A task handed to a worker, durable once `seq` is.
#[derive(Debug, Clone)]
pub struct Grant {
    pub task: TaskSpec,
    pub task_id: String,
    pub idempotency_key: String,
    pub token: u64,
    pub lease_ms: u64,
    pub seq: Seq,
}

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

/// What a poll got: a task now, or a channel that will carry one.
pub enum Poll {
    Now(Box<Grant>),
    Wait(oneshot::Receiver<Grant>),
}

/// Answer to a reported result.
pub struct Report {
    pub seq: Seq,
    pub duplicate: bool,
    pub rejected: Option<String>,
}

/// What became of a built-in playbook at start.
pub enum Builtin {
    Applied {
        name: String,
        version: u32,
        seq: Seq,
    },
    /// The store has this version (`stored`), or a newer one: left as it is.
    Kept {
        name: String,
        version: u32,
        stored: u32,
    },
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
}

/// A checked start: a run that already claimed the key, or a new one to commit.
enum Prepared {
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
    pub seq: Seq,
}

/// What a durable timer wakes: a run (the scheduler handles what of it is due) or a schedule
/// (planned from its cursor to now).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Run(RunId),
    Schedule(String),
}

pub struct Engine {
    store: Store,
    settings: Settings,
    scheduler: Scheduler,
    dispatch: Dispatcher<Grant>,
    /// Every durable timer, runs' and schedules': (due wall-clock ms, what).
    timers: BTreeSet<(i64, Timer)>,
    /// Cron schedules: definitions, their state and the runs they started.
    schedules: schedules::Schedules,
    playbooks: HashMap<(String, u32), Arc<Playbook>>,
    watchers: HashMap<RunId, broadcast::Sender<(Seq, HistoryEvent)>>,
    /// Wakes the timer loop when a timer becomes the earliest one.
    wake: Arc<Notify>,
    /// The kill switch as stored; the dispatcher's door follows it.
    containment: Containment,
    /// Alerts held in the store (counted once, then kept in step).
    alerts_held: Option<usize>,
    /// Payloads ingested since expired dedup entries were last removed.
    ingests_since_prune: usize,
    /// Alert rules in evaluation order, with their stored sources; shared with the alerts
    /// being decided outside the lock (copied on write).
    rules: Arc<Vec<(riposte_playbooks::rules::Rule, store::StoredRule)>>,
    /// Where time and ids come from.
    clock: Clock,
    /// The sandboxed template environment rules are evaluated in.
    renderer: Arc<riposte_playbooks::Renderer>,
}

impl Engine {
    /// Builds the engine and resumes every run that was running when the store was last
    /// closed. In-flight leases get a full lease of grace before their tasks are dispatched again.
    pub fn open(
        store: Store,
        settings: Settings,
        clock: Clock,
        wake: Arc<Notify>,
    ) -> Result<Engine, Error> {
        let scheduler = Scheduler::with_guard(settings.guard.clone());
        let mut engine = Engine {
            store,
            settings,
            clock,
            scheduler,
            dispatch: Dispatcher::default(),
            timers: BTreeSet::new(),
            schedules: schedules::Schedules::default(),
            playbooks: HashMap::new(),
            watchers: HashMap::new(),
            wake,
            containment: Containment::default(),
            alerts_held: None,
            ingests_since_prune: 0,
            rules: Arc::new(Vec::new()),
            renderer: Arc::new(riposte_playbooks::Renderer::new()),
        };
        engine.containment = engine.store.containment()?;
        engine.dispatch.set_paused(engine.containment.paused);
        let now = engine.clock.monotonic();
        for state in engine.store.active_runs()? {
            let playbook = engine.playbook(&state.playbook, state.version)?;
            engine.adopt_leases(&state, &playbook, now);
            let commands = engine.scheduler.resume(state, playbook);
            engine.carry_out(commands);
        }
        engine.scheduler.resumed_all();
        engine.load_schedules()?;
        engine.load_rules()?;
        Ok(engine)
    }

    fn adopt_leases(&mut self, state: &RunState, playbook: &Playbook, now: Instant) {
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

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where the engine's time and ids come from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// A compiled playbook version (0 = latest), cached.
    pub fn playbook(&mut self, name: &str, version: u32) -> Result<Arc<Playbook>, Error> {
        if version != 0
            && let Some(p) = self.playbooks.get(&(name.to_string(), version))
        {
            return Ok(p.clone());
        }
        let stored = self
            .store
            .playbook(name, version)?
            .ok_or_else(|| Error::NotFound(not_found_playbook(name, version)))?;
        let key = (stored.name.clone(), stored.version);
        if let Some(p) = self.playbooks.get(&key) {
            return Ok(p.clone());
        }
        let compiled = riposte_playbooks::compile(&stored.source).map_err(|d| {
            Error::FailedPrecondition(format!(
                "stored playbook {}@{} no longer compiles: {}",
                stored.name,
                stored.version,
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
        let compiled = Arc::new(compiled);
        self.playbooks.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Stores a new playbook version. Same name, version and source again is a no-op.
    pub fn apply_playbook(&mut self, source: &str) -> Result<(Arc<Playbook>, bool, Seq), Error> {
        let compiled = riposte_playbooks::compile(source).map_err(|diagnostics| {
            Error::InvalidArgument(
                diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let (name, version) = (compiled.name.clone(), compiled.version);
        if let Some(existing) = self.store.playbook(&name, version)? {
            if existing.source == source {
                return Ok((Arc::new(compiled), true, self.store.last_write()));
            }
            return Err(Error::FailedPrecondition(format!(
                "playbook {name} version {version} exists with other content; raise `version`"
            )));
        }
        if let Some(latest) = self.store.playbook(&name, 0)?
            && latest.version > version
        {
            return Err(Error::FailedPrecondition(format!(
                "playbook {name} is at version {}; a new version must be higher than that, not {version}",
                latest.version
            )));
        }
        let stored = StoredPlaybook {
            name: name.clone(),
            version,
            source: source.to_string(),
            applied_at_ms: self.clock.now_ms(),
        };
        let seq = self.store.put_playbook(&stored)?;
        let compiled = Arc::new(compiled);
        self.playbooks.insert((name, version), compiled.clone());
        Ok((compiled, false, seq))
    }

    /// Applies a built-in playbook only when the store has neither its version nor a newer
    /// one: an operator's version (same number with other content, or higher) is kept.
    pub fn apply_builtin(&mut self, source: &str) -> Result<Builtin, Error> {
        let compiled = riposte_playbooks::compile(source).map_err(|d| {
            Error::InvalidArgument(format!(
                "built-in playbook does not compile: {}",
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
        let (name, version) = (compiled.name.clone(), compiled.version);
        let stored = match self.store.playbook(&name, version)? {
            Some(same) => Some(same.version),
            None => self
                .store
                .playbook(&name, 0)?
                .map(|latest| latest.version)
                .filter(|latest| *latest > version),
        };
        if let Some(stored) = stored {
            return Ok(Builtin::Kept {
                name,
                version,
                stored,
            });
        }
        let (_, _, seq) = self.apply_playbook(source)?;
        Ok(Builtin::Applied { name, version, seq })
    }

    /// Starts a run, or answers the run that already claimed the idempotency key.
    pub fn start_run(&mut self, req: StartRequest) -> Result<(RunState, bool, Seq), Error> {
        match self.prepare_start(req)? {
            Prepared::Existing(run) => Ok((*run, true, self.store.last_write())),
            Prepared::New {
                id,
                claim,
                transition,
            } => {
                let claims: Vec<(&str, RunId)> = claim.iter().map(|c| (c.as_str(), id)).collect();
                let seq = self.commit_all(vec![transition], &claims, None)?;
                let run = self.run(id)?;
                Ok((run, false, seq))
            }
        }
    }

    /// Checks a start and hands it to the scheduler; the caller commits the transition (with
    /// the key claim) before anything else happens under the lock.
    fn prepare_start(&mut self, req: StartRequest) -> Result<Prepared, Error> {
        check_len("idempotency key", &req.idempotency_key)?;
        check_len("requested_by", &req.requested_by)?;
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
        let params = playbook.coerce_params(&req.params).map_err(|problems| {
            Error::InvalidArgument(format!(
                "invalid parameters for {}@{}: {}",
                playbook.name,
                playbook.version,
                problems.join("; ")
            ))
        })?;
        let id = self.clock.new_run_id();
        let new = NewRun {
            id,
            playbook,
            params: Value::Object(params),
            trigger: req.trigger,
            requested_by: req.requested_by,
            idempotency_key: req.idempotency_key.clone(),
            dry_run: req.dry_run,
        };
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), Event::Start(new))
            .map_err(scheduler_error)?;
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

    pub fn cancel_run(&mut self, id: RunId, reason: String, by: String) -> Result<Seq, Error> {
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
        self.commit(transition, RunKey::None)
    }

    /// Upserts a worker.
    pub fn register(&mut self, worker: Worker) {
        tracing::info!(worker.id = %worker.id, worker.name = %worker.name, "worker.registered");
        self.dispatch.workers.insert(worker.id.clone(), worker);
        // The loop may be sleeping its idle second; leases to this worker may be shorter.
        self.wake.notify_one();
    }

    fn touch(&mut self, worker: &str) -> Result<(), Error> {
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
            if let Some(grant) = self.grant(task, worker)? {
                return Ok(Poll::Now(Box::new(grant)));
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
    fn grant(&mut self, task: TaskSpec, worker: &str) -> Result<Option<Grant>, Error> {
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
        Ok(Some(Grant {
            task,
            task_id: id,
            idempotency_key,
            token,
            lease_ms: self.settings.lease.as_millis() as u64,
            seq,
        }))
    }

    /// Hands queued tasks to waiting long-polls.
    fn pump(&mut self) {
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
            match self.grant(task, &waiter.worker) {
                Ok(Some(grant)) => {
                    // A receiver dropped after the check above leaves the lease to expire.
                    let _ = waiter.reply.send(grant);
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "engine.grant_failed"),
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
    ) -> Result<Report, Error> {
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
        Ok(Report {
            seq,
            duplicate,
            rejected,
        })
    }

    fn report_finished(&mut self, parsed: ParsedTaskId, token: u64) -> Result<Report, Error> {
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
        Ok(Report {
            seq,
            duplicate: transition.duplicate,
            rejected: transition.rejected,
        })
    }

    /// Fires what is due: expired leases and backoff timers. Returns when to call again.
    pub fn tick(&mut self) -> Option<Instant> {
        let now = self.clock.monotonic();
        for (token, lease) in self.dispatch.expired(now) {
            tracing::warn!(task.id = %lease.task_id, lease.token = token, worker.id = %lease.worker, "lease.expired");
            let event = Event::LeaseExpired {
                unit: lease.unit,
                token,
            };
            self.handle_quietly(lease.unit.run, event);
        }
        let now_ms = self.clock.now_ms();
        while let Some((due_ms, _)) = self.timers.first() {
            if *due_ms > now_ms {
                break;
            }
            match self.timers.pop_first() {
                Some((_, Timer::Run(run))) => self.handle_quietly(run, Event::Timer { run }),
                Some((due_ms, Timer::Schedule(name))) => self.schedule_due(&name, due_ms),
                None => break,
            }
        }
        self.forget_silent_workers(now);
        self.next_wake(now)
    }

    fn handle_quietly(&mut self, run: RunId, event: Event) {
        match self.scheduler.handle(self.clock.now_ms(), event) {
            Ok(transition) => {
                if let Err(e) = self.commit(transition, RunKey::None) {
                    tracing::error!(run.id = %run, error = %e, "engine.commit_failed");
                }
            }
            Err(scheduler::Error::RunNotActive(_)) => {}
            Err(e) => tracing::warn!(run.id = %run, error = %e, "engine.event_dropped"),
        }
    }

    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let lease = self.dispatch.next_deadline();
        let timer = self.timers.first().map(|&(due_ms, _)| {
            let wait_ms = (due_ms - self.clock.now_ms()).max(0) as u64;
            now + Duration::from_millis(wait_ms)
        });
        let workers = (!self.dispatch.workers.is_empty()).then(|| now + self.settings.lease);
        [lease, timer, workers].into_iter().flatten().min()
    }

    /// Workers silent for ten leases leave the registry (they register again when back).
    fn forget_silent_workers(&mut self, now: Instant) {
        let silence = self.settings.lease * 10;
        self.dispatch
            .workers
            .retain(|_, w| now.duration_since(w.last_seen) < silence);
    }

    /// Persists a transition (every changed run with its history, in one transaction), then
    /// carries out its commands and notifies watchers.
    fn commit(&mut self, transition: Transition, key: RunKey<'_>) -> Result<Seq, Error> {
        let claims: Vec<(&str, RunId)> = match key {
            RunKey::None => Vec::new(),
            RunKey::Claim(k, id) => vec![(k, id)],
        };
        self.commit_all(vec![transition], &claims, None)
    }

    /// Persists transitions (with key claims and a schedule's ledger write) in one
    /// transaction, then carries out their commands and notifies watchers.
    /// What `transitions` write: each changed run's state and its new history events.
    fn run_writes<'a>(
        &'a self,
        transitions: &'a [Transition],
    ) -> Vec<(&'a RunState, Vec<&'a HistoryEvent>)> {
        transitions
            .iter()
            .flat_map(|transition| {
                transition.changed.iter().map(|id| {
                    let state = transition
                        .finished
                        .iter()
                        .find(|s| s.id == *id)
                        .or_else(|| self.scheduler.run(*id))
                        .expect("a changed run is active or just finished");
                    (state, transition.history_of(*id).collect())
                })
            })
            .collect()
    }

    fn commit_all(
        &mut self,
        transitions: Vec<Transition>,
        claims: &[(&str, RunId)],
        schedule: Option<&store::ScheduleWrite<'_>>,
    ) -> Result<Seq, Error> {
        let mut seq = self.store.last_write();
        let changed = transitions.iter().any(|t| !t.changed.is_empty());
        if changed || schedule.is_some() {
            let writes = self.run_writes(&transitions);
            seq = self.store.put_runs_scheduled(&writes, claims, schedule)?;
        }
        for transition in transitions {
            for (run, event) in &transition.history {
                if let Some(sender) = self.watchers.get(run) {
                    let _ = sender.send((seq, event.clone()));
                }
            }
            for ended in &transition.finished {
                self.watchers.remove(&ended.id);
            }
            self.carry_out(transition.commands);
        }
        Ok(seq)
    }

    /// Adds a durable timer to the index.
    fn arm(&mut self, due_ms: i64, timer: Timer) {
        // Lease deadlines never come before the loop's next look (one lease from its last
        // tick), so only a timer that is now the earliest needs a wake-up.
        if self.timers.first().is_none_or(|&(first, _)| due_ms < first) {
            self.wake.notify_one();
        }
        self.timers.insert((due_ms, timer));
    }

    fn carry_out(&mut self, commands: Vec<Command>) {
        let mut dispatched = false;
        let mut held = Vec::new();
        for command in commands {
            match command {
                Command::Dispatch(task) => {
                    if self.dispatch.is_held(&task) {
                        held.push(task.unit);
                    }
                    self.dispatch.enqueue(task);
                    dispatched = true;
                }
                Command::ArmTimer { run, due_ms } => self.arm(due_ms, Timer::Run(run)),
                Command::Abandon { token } => self.dispatch.abandon(token),
                Command::Finished { run, status } => {
                    tracing::info!(run.id = %run, run.status = status.as_str(), "run.finished");
                    self.schedule_run_ended(run);
                }
            }
        }
        self.record_held(held);
        if dispatched {
            self.pump();
        }
    }

    /// Records `task.held` for units the door holds (once per unit: the scheduler ignores a
    /// unit already marked held).
    fn record_held(&mut self, units: Vec<UnitRef>) {
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
    pub fn pause_containment(&mut self, by: String, reason: String) -> Result<Seq, Error> {
        check_len("reason", &reason)?;
        if self.containment.paused {
            return Ok(self.store.last_write());
        }
        self.set_containment(true, by, reason)?;
        let held = self.dispatch.held();
        self.record_held(held);
        tracing::warn!(by = %self.containment.by, reason = %self.containment.reason, "containment.paused");
        Ok(self.store.last_write())
    }

    /// Resumes containment: held tasks are handed out again. Resuming again changes nothing.
    pub fn resume_containment(&mut self, by: String, reason: String) -> Result<Seq, Error> {
        check_len("reason", &reason)?;
        if !self.containment.paused {
            return Ok(self.store.last_write());
        }
        let seq = self.set_containment(false, by, reason)?;
        tracing::info!(by = %self.containment.by, "containment.resumed");
        self.pump();
        Ok(seq.max(self.store.last_write()))
    }

    fn set_containment(&mut self, paused: bool, by: String, reason: String) -> Result<Seq, Error> {
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

    /// The history so far and, for an active run, a subscription to what comes next.
    pub fn watch(&mut self, id: RunId) -> Result<Watch, Error> {
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
        Ok(Watch {
            history,
            live,
            seq: self.store.last_write(),
        })
    }

    /// History entries after `seq` (to recover from a lagging subscription).
    pub fn history_after(&self, id: RunId, after: u64) -> Result<Vec<HistoryEvent>, Error> {
        Ok(self.store.history(id, after)?)
    }

    pub fn list_runs(
        &self,
        playbook: &str,
        status: Option<riposte_scheduler::state::RunStatus>,
        limit: usize,
    ) -> Result<Vec<RunState>, Error> {
        let mut runs = Vec::new();
        for run in self.store.runs_newest_first() {
            let run = run?;
            if (!playbook.is_empty() && run.playbook != playbook)
                || status.is_some_and(|s| s != run.status)
            {
                continue;
            }
            let run = self.scheduler.run(run.id).cloned().unwrap_or(run);
            runs.push(run);
            if runs.len() >= limit {
                break;
            }
        }
        Ok(runs)
    }

    /// Latest version of every playbook.
    pub fn list_playbooks(&mut self) -> Result<Vec<(StoredPlaybook, Arc<Playbook>)>, Error> {
        let mut latest: BTreeMap<String, StoredPlaybook> = BTreeMap::new();
        for p in self.store.playbooks()? {
            latest.insert(p.name.clone(), p);
        }
        latest
            .into_values()
            .map(|p| {
                let compiled = self.playbook(&p.name, p.version)?;
                Ok((p, compiled))
            })
            .collect()
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

    /// Records a decision on an approval.
    pub fn decide(&mut self, request: DecisionRequest) -> Result<Seq, Error> {
        check_len("who", &request.who)?;
        check_len("comment", &request.comment)?;
        if request.who.is_empty() {
            return Err(Error::InvalidArgument("who decides is required".into()));
        }
        let run = request.run;
        self.active_or_refuse(run)?;
        let groups = self.groups_of(&request.who);
        let event = Event::Decide(DecisionRequest { groups, ..request });
        let transition = self
            .scheduler
            .handle(self.clock.now_ms(), event)
            .map_err(scheduler_error)?;
        self.commit(transition, RunKey::None)
    }

    /// The approver groups `who` belongs to.
    fn groups_of(&self, who: &str) -> Vec<String> {
        self.settings
            .approver_groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m == who))
            .map(|(group, _)| group.clone())
            .collect()
    }

    fn active_or_refuse(&self, id: RunId) -> Result<(), Error> {
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
    ) -> Result<Seq, Error> {
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
        self.commit(transition, RunKey::None)
    }

    /// A repair verb; an ended run is reopened from the store when the verb allows it.
    pub fn repair(
        &mut self,
        run: RunId,
        repair: Repair,
        step: String,
        by: String,
        reason: String,
    ) -> Result<Seq, Error> {
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
        self.commit(transition, RunKey::None)
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

    /// Runs currently active (for health and the benchmark).
    pub fn active_runs(&self) -> usize {
        self.scheduler.len()
    }
}

fn check_len(what: &str, value: &str) -> Result<(), Error> {
    if value.len() > limits::KEY_BYTES_MAX {
        return Err(Error::InvalidArgument(format!(
            "{what} is {} bytes, more than the {} allowed",
            value.len(),
            limits::KEY_BYTES_MAX
        )));
    }
    Ok(())
}

fn not_found_playbook(name: &str, version: u32) -> String {
    if version == 0 {
        format!("playbook `{name}` not found")
    } else {
        format!("playbook `{name}` version {version} not found")
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

/// Prefix of the idempotency keys of dry runs (run starts and tasks): never a real run's key.
const DRY_RUN_KEY_PREFIX: &str = "dry-run:";

/// Stable across attempts: what connectors use to make repeats harmless. A dry run's keys
/// carry [`DRY_RUN_KEY_PREFIX`], so they never collide with a real run's.
fn idempotency_key(run: RunId, step_id: &str, slot: Slot, dry_run: bool) -> String {
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
struct ParsedTaskId {
    run: RunId,
    step: String,
    item: String,
}

impl ParsedTaskId {
    fn unit(&self, playbook: &Playbook) -> Result<UnitRef, Error> {
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

fn parse_task_id(id: &str) -> Option<ParsedTaskId> {
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
fn slot_step(state: &RunState, slot: Slot) -> usize {
    match slot {
        Slot::Step { step, .. } | Slot::Health { step } => step,
        Slot::Undo(n) => state.undo[n as usize].step,
    }
}

/// Every leased unit of a run: (unit, token, worker, attempt).
fn leased_units(state: &RunState) -> Vec<(UnitRef, u64, String, u32)> {
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

fn scheduler_error(error: scheduler::Error) -> Error {
    match error {
        scheduler::Error::Refused(m) => Error::FailedPrecondition(m),
        scheduler::Error::NotPermitted(m) => Error::PermissionDenied(m),
        scheduler::Error::Invalid(m) => Error::InvalidArgument(m),
        e @ (scheduler::Error::RunNotActive(_) | scheduler::Error::RunExists(_)) => {
            Error::FailedPrecondition(e.to_string())
        }
        e => Error::InvalidArgument(e.to_string()),
    }
}
