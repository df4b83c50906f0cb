//! The engine: glue between the pure scheduler, the dispatcher and the store.
//!
//! Every operation runs under the engine's lock, feeds one event to the scheduler, writes the
//! run's new state with its history in one store transaction, and returns what it changed as a
//! [`Pending`] value, reachable only once the write is durable: nothing is acknowledged (RPC
//! reply, run accepted, task handed out, event streamed) before it is flushed.
//!
//! This file holds what every concern shares: opening (resuming every run), the commit path
//! (`commit`, `commit_all`, `run_writes`), the timer index and `tick`. The concerns, each an
//! `impl Engine` of its own: [`playbooks`] (apply, the compiled cache), [`runs`] (start, cancel,
//! watch, decide, revoke, repair, views), [`tasks`] (workers, leases, results, the kill switch
//! at the dispatch door, task ids), [`alerts`] (fates of alerts, rules) and [`schedules`] (cron
//! schedules in the same timer index as the runs' timers; a fire starts its runs and writes
//! its ledger entries in one transaction).

pub mod alerts;
mod playbooks;
mod runs;
mod schedules;
mod tasks;

pub use alerts::RuleApplied;
pub use playbooks::Builtin;
pub use runs::{ApprovalView, GrantView, StartRequest, Watch};
pub use schedules::{ApplyOutcome, ScheduleView};
pub use tasks::{LeasedTask, Poll, Report, task_id};

use runs::Prepared;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riposte_playbooks::Playbook;
use serde_json::Value;
use tokio::sync::{Notify, broadcast, oneshot};

use crate::clock::Clock;
use crate::dispatch::{Dispatcher, Lease, Waiter, Worker};
use crate::pending::Pending;
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
    /// A playbook's source does not compile: every problem, in source order.
    #[error("{}", diagnostic_lines(.0))]
    PlaybookInvalid(Vec<riposte_playbooks::Diagnostic>),
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

/// Diagnostics one per line, as `line:column: path: message`.
pub(crate) fn diagnostic_lines(diagnostics: &[riposte_playbooks::Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
    lines.join("\n")
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
    dispatch: Dispatcher<Pending<LeasedTask>>,
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

    /// What the engine notifies when a timer becomes the earliest (the timer loop waits on it).
    pub fn timers_changed(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// A change that wrote nothing new: durable once everything written before it is (what it
    /// answers may have been written by a request still waiting for its flush).
    fn unchanged<T>(&self, value: T) -> Pending<T> {
        Pending::new(value, self.store.last_write())
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

/// Prefix of the idempotency keys of dry runs (run starts and tasks): never a real run's key.
const DRY_RUN_KEY_PREFIX: &str = "dry-run:";

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
