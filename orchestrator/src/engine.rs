//! The engine: glue between the pure scheduler, the dispatcher and the store.
//!
//! Every operation runs under the engine's lock, feeds one event to the scheduler, writes the
//! run's new state with its history in one store transaction, and returns what it changed as a
//! [`Pending`] value, reachable only once the write is durable: nothing is acknowledged (RPC
//! reply, run accepted, task handed out, event streamed) before it is flushed.
//!
//! The engine is three objects, one per concern, each owning its state: [`Runs`] (this file:
//! opening and resuming, the timer index, the one commit path `commit_with`; with [`runs`]:
//! start, cancel, watch, decide, revoke, repair, views; [`tasks`]: workers, leases, results,
//! the kill switch at the dispatch door; [`playbooks`]: apply, the compiled cache),
//! [`Schedules`] ([`schedules`]: cron schedules, their timers in the runs' index; a fire starts
//! its runs and writes its ledger entries in one transaction) and [`Alerts`] ([`alerts`]: fates
//! of alerts, rules). Schedules and alerts start runs through [`Runs`] and write beside them
//! through its commit path; [`Engine`] holds the three, routes due timers and tells the
//! schedules which runs ended ([`Engine::settle`]).

pub mod alerts;
mod gauges;
mod playbooks;
pub mod pollers;
mod rules;
mod runs;
mod schedules;
mod tasks;
mod unoffered;

pub use alerts::Alerts;
pub use playbooks::{Builtin, Versions};
pub use rules::{RuleApplied, SharedRules, Verdict};
pub use runs::{ApprovalView, GrantView, StartRequest, Watch};
pub use schedules::{ApplyOutcome, ScheduleView, Schedules};
pub use tasks::{LeasedTask, Poll, Report};

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
use crate::store::{self, Containment, RunKey, RunWrite, Seq, Store, StoredPlaybook};
use crate::telemetry::Observer;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState, Slot, UnitRef, UnitStatus};
use riposte_scheduler::{
    self as scheduler, Command, DecisionRequest, Event, NewRun, Repair, Scheduler, TaskId,
    TaskSpec, Transition,
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
    /// The platform's rules from the operator policy (replaced on reload, see
    /// [`Runs::set_platform`]).
    pub platform: Platform,
    /// The platform-wide guard the scheduler checks guarded actions against.
    pub guard: riposte_scheduler::guard::Policy,
    /// An occurrence decided later than this after its time is missed (catch-up decides).
    pub schedule_grace: Duration,
    /// A step's task queued this long without a worker fails its step, unless the step sets
    /// its own `schedule_to_start`; `None`: no limit.
    pub schedule_to_start: Option<Duration>,
    /// Writes the spans of runs, while traces are exported.
    pub spans: Option<riposte_telemetry::Recorder>,
    /// Whether metrics are kept.
    pub metrics: bool,
    /// `--dev`: a task no connected worker offers ends at once (a dry run's with its plan)
    /// instead of waiting for one (`engine::unoffered`).
    pub end_unoffered: bool,
    /// The alert pollers (`--pollers`).
    pub pollers: Vec<crate::pollers::Poller>,
}

/// The operator policy's rules the engine applies: the approvals the platform requires above
/// every playbook (checked at apply and at each start), and the action families the kill
/// switch holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub approvals: Vec<riposte_playbooks::platform::Requirement>,
    pub containment: Vec<String>,
}

impl Platform {
    pub fn of(policy: &crate::auth::Policy) -> Platform {
        Platform {
            approvals: policy.approvals().to_vec(),
            containment: policy.containment().to_vec(),
        }
    }
}

impl Default for Platform {
    /// The default policy's rules.
    fn default() -> Platform {
        Platform::of(&crate::auth::Policy::default())
    }
}

/// What a durable timer wakes: a run (the scheduler handles what of it is due) or a schedule
/// (planned from its cursor to now).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Run(RunId),
    Schedule(String),
}

/// The engine: the three concerns under one lock. Each owns its state; the schedules and the
/// alerts start runs (and write with them) through [`Runs`], the one commit path.
pub struct Engine {
    pub(crate) runs: Runs,
    pub(crate) schedules: Schedules,
    pub(crate) alerts: Alerts,
}

/// The runs: the scheduler's active runs, the dispatcher and its workers, the kill switch, the
/// compiled playbooks, the durable timer index (the schedules' timers too), and the one commit
/// path every concern writes runs through.
pub struct Runs {
    store: Store,
    settings: Settings,
    scheduler: Scheduler,
    dispatch: Dispatcher<Pending<LeasedTask>>,
    /// Every durable timer, runs' and schedules': (due wall-clock ms, what).
    timers: BTreeSet<(i64, Timer)>,
    playbooks: HashMap<(String, u32), Arc<Playbook>>,
    watchers: HashMap<RunId, broadcast::Sender<(Seq, HistoryEvent)>>,
    /// Wakes the timer loop when a timer becomes the earliest one.
    wake: Arc<Notify>,
    /// The kill switch as stored; the dispatcher's door follows it.
    containment: Containment,
    /// Runs that ended since [`Engine::settle`] last passed them on.
    ended: Vec<RunId>,
    /// Where time and ids come from.
    clock: Clock,
    /// Spans and metrics from what is committed.
    observer: Observer,
}

/// One payload's stored alerts, once durable.
pub type PendingAlerts = Pending<Vec<store::StoredAlert>>;

impl Engine {
    /// Builds the engine and resumes every run that was running when the store was last
    /// closed. In-flight leases get a full lease of grace before their tasks are dispatched again.
    pub fn open(
        store: Store,
        settings: Settings,
        clock: Clock,
        wake: Arc<Notify>,
    ) -> Result<Engine, Error> {
        let mut runs = Runs::open(store, settings, clock, wake)?;
        let schedules = Schedules::open(&mut runs)?;
        let alerts = Alerts::open(&runs.store, &runs.clock, &runs.settings)?;
        runs.ended.clear();
        Ok(Engine {
            runs,
            schedules,
            alerts,
        })
    }

    pub fn store(&self) -> &Store {
        &self.runs.store
    }

    pub fn settings(&self) -> &Settings {
        &self.runs.settings
    }

    /// Where the engine's time and ids come from.
    pub fn clock(&self) -> &Clock {
        &self.runs.clock
    }

    /// What the engine notifies when a timer becomes the earliest (the timer loop waits on it).
    pub fn timers_changed(&self) -> Arc<Notify> {
        self.runs.wake.clone()
    }

    /// Fires what is due: expired leases, backoff timers and schedules. Returns when to call
    /// again.
    pub fn tick(&mut self) -> Option<Instant> {
        let now = self.runs.clock.monotonic();
        // Fence first: a task whose lease just expired must not go back to its silent worker.
        self.runs.fence_silent_workers(now);
        self.runs.expire_leases(now);
        let now_ms = self.runs.clock.now_ms();
        while let Some((due_ms, timer)) = self.runs.pop_due(now_ms) {
            match timer {
                Timer::Run(run) => self.runs.handle_quietly(run, Event::Timer { run }),
                Timer::Schedule(name) => self.schedules.due(&mut self.runs, &name, due_ms),
            }
            self.settle();
        }
        self.runs.next_wake(now)
    }

    /// Publishes the alert rules into `shared`, now and at every change (see
    /// [`SharedRules`]).
    pub fn share_rules(&mut self, shared: SharedRules) {
        let traced = self.runs.tracing();
        self.alerts.share(shared, traced);
    }

    /// Ingests several decided payloads, in order, in one write; answers each payload's
    /// alerts, and what to free once the engine is let go (see [`Alerts::ingest_all`]).
    pub fn ingest_many(
        &mut self,
        batch: Vec<alerts::Decided>,
    ) -> Result<(Vec<PendingAlerts>, alerts::Spent), Error> {
        let counts: Vec<usize> = batch.iter().map(|d| d.alerts.len()).collect();
        let (pending, spent) = self.alerts.ingest_all(&mut self.runs, batch, None)?;
        Ok((pending.split(&counts), spent))
    }

    /// Applies a schedule's source (see [`Schedules::apply`]).
    pub fn apply_schedule(&mut self, source: &str) -> Result<ApplyOutcome, Error> {
        self.schedules.apply(&mut self.runs, source)
    }

    /// Fires a schedule now (see [`Schedules::trigger`]).
    pub fn trigger_schedule(
        &mut self,
        name: &str,
        who: &str,
    ) -> Result<Pending<store::LedgerEntry>, Error> {
        self.schedules.trigger(&mut self.runs, name, who)
    }

    /// Deletes one version of a playbook that nothing uses: not the default while a version
    /// is pinned, and no rule, schedule or live run of it (one that names no version uses the
    /// default). A built-in playbook's own version is refused: it comes back at every start.
    pub fn delete_playbook_version(
        &mut self,
        name: &str,
        version: u32,
    ) -> Result<Pending<(Arc<Playbook>, store::StoredPlaybook)>, Error> {
        if version == 0 {
            let message = "version: name the version to delete (1 or more)";
            return Err(Error::InvalidArgument(message.into()));
        }
        let stored = self.runs.store.playbook(name, version)?;
        let stored =
            stored.ok_or_else(|| Error::NotFound(playbooks::not_found_playbook(name, version)))?;
        let refuse = |why: String| {
            Err(Error::FailedPrecondition(format!(
                "{name}@{version} is not deleted: {why}"
            )))
        };
        if crate::builtin::builtin_version(name) == Some(version) {
            return refuse("it is the built-in version, applied again at every start".into());
        }
        let default = self.runs.playbook(name, 0)?.version;
        if default == version && self.runs.store.playbook_default(name)?.is_some() {
            return refuse("it is the default version; set another default first".into());
        }
        let rule = self
            .alerts
            .all
            .iter()
            .find(|(r, _)| r.playbook == name && r.version.unwrap_or(default) == version);
        if let Some((rule, _)) = rule {
            return refuse(format!("rule `{}` starts it", rule.name));
        }
        if let Some(schedule) = self.schedules.using(name, version, default) {
            return refuse(format!("schedule `{schedule}` starts it"));
        }
        let live = self
            .runs
            .scheduler
            .runs()
            .find(|(run, _)| run.playbook == name && run.version == version);
        if let Some((run, _)) = live {
            return refuse(format!("run {} of it is live", run.id));
        }
        let compiled = self.runs.playbook(name, version)?;
        let seq = self.runs.store.delete_playbook(name, version)?;
        self.runs.playbooks.remove(&(name.to_string(), version));
        tracing::info!(playbook = %name, version, "playbook.version_deleted");
        Ok(Pending::new((compiled, stored), seq))
    }

    /// Deletes a schedule (see [`Schedules::delete`]).
    pub fn delete_schedule(&mut self, name: &str) -> Result<Pending<String>, Error> {
        self.schedules.delete(&mut self.runs, name)
    }

    /// What the enabled rules would do with a payload (see [`Alerts::test`]).
    pub fn test_rules(&mut self, decided: alerts::Decided) -> Result<Vec<Verdict>, Error> {
        self.alerts.test(&mut self.runs, decided)
    }

    /// Passes the runs that ended on to the schedules (a queued fire may start now). Called
    /// before the engine's lock is released, so no request sees a run ended and its schedule
    /// not told.
    pub fn settle(&mut self) {
        for run in std::mem::take(&mut self.runs.ended) {
            self.schedules.run_ended(&mut self.runs, run);
        }
    }
}

impl Runs {
    /// Applies the platform's rules of a reloaded policy: starts from now on are checked
    /// against its approvals, and the kill switch holds its families.
    pub fn set_platform(&mut self, platform: Platform) {
        self.dispatch.set_containment(platform.containment.clone());
        self.settings.platform = platform;
    }

    /// The runs as stored, every active one resumed.
    fn open(
        store: Store,
        settings: Settings,
        clock: Clock,
        wake: Arc<Notify>,
    ) -> Result<Runs, Error> {
        let scheduler = Scheduler::with_guard(settings.guard.clone())
            .with_schedule_to_start(settings.schedule_to_start.map(|d| d.as_millis() as u64));
        let mut runs = Runs {
            observer: Observer::new(settings.spans.clone(), settings.metrics),
            containment: store.containment()?,
            dispatch: Dispatcher::new(settings.lease, settings.platform.containment.clone()),
            store,
            settings,
            clock,
            scheduler,
            timers: BTreeSet::new(),
            playbooks: HashMap::new(),
            watchers: HashMap::new(),
            wake,
            ended: Vec::new(),
        };
        runs.dispatch.set_paused(runs.containment.paused);
        let now = runs.clock.monotonic();
        for state in runs.store.active_runs()? {
            let playbook = runs.playbook(&state.playbook, state.version)?;
            runs.adopt_leases(&state, &playbook, now);
            let commands = runs.scheduler.resume(state, playbook);
            runs.carry_out(commands);
        }
        runs.scheduler.resumed_all();
        Ok(runs)
    }

    /// Expired leases: each is the scheduler's to retry or fail.
    fn expire_leases(&mut self, now: Instant) {
        for (token, lease) in self.dispatch.expired(now) {
            tracing::warn!(task.id = %lease.task_id, lease.token = token, worker.id = %lease.worker, "lease.expired");
            let event = Event::LeaseExpired {
                unit: lease.unit,
                token,
            };
            self.handle_quietly(lease.unit.run, event);
        }
    }

    /// The earliest timer, taken from the index if it is due at `now_ms`.
    fn pop_due(&mut self, now_ms: i64) -> Option<(i64, Timer)> {
        let (due_ms, _) = self.timers.first()?;
        if *due_ms > now_ms {
            return None;
        }
        self.timers.pop_first()
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
        let workers = self
            .dispatch
            .has_workers()
            .then(|| now + self.settings.lease);
        [lease, timer, workers].into_iter().flatten().min()
    }

    /// Persists a transition (every changed run with its history, and the key it claims).
    fn commit(&mut self, transition: Transition, key: RunKey<'_>) -> Result<Seq, Error> {
        self.commit_with(vec![transition], |store, writes| {
            if writes.is_empty() {
                return Ok(store.last_write());
            }
            store.put_runs(writes, key)
        })
    }

    /// The one commit path: `write` stores what `transitions` changed (each changed run's
    /// state and new history events) with whatever the caller writes beside them, in one
    /// transaction; then the transitions' commands are carried out and watchers notified.
    fn commit_with(
        &mut self,
        transitions: Vec<Transition>,
        write: impl FnOnce(&Store, &[RunWrite<'_>]) -> Result<Seq, store::Error>,
    ) -> Result<Seq, Error> {
        // Out for the writes' borrow of the runs; back before anything can fail.
        let mut observer = std::mem::take(&mut self.observer);
        let writes = self.run_writes(&transitions);
        let written = write(&self.store, &writes);
        if written.is_ok() {
            if cfg!(debug_assertions) {
                read_back(&self.store, &writes);
            }
            let active = observer.active();
            for run in writes.iter().filter(|w| active && !w.history.is_empty()) {
                let key = (run.state.playbook.clone(), run.state.version);
                if let Some(playbook) = self.playbooks.get(&key) {
                    observer.committed(run.state, playbook, &run.history);
                }
            }
        }
        drop(writes);
        self.observer = observer;
        let seq = written?;
        for transition in transitions {
            for (run, event) in &transition.history {
                if let Some(sender) = self.watchers.get(run) {
                    let _ = sender.send((seq.clone(), event.clone()));
                }
            }
            for ended in &transition.finished {
                self.watchers.remove(&ended.id);
            }
            self.carry_out(transition.commands);
        }
        Ok(seq)
    }

    /// What `transitions` write: each changed run's state, the records of it that changed and
    /// its new history events.
    fn run_writes<'a>(&'a self, transitions: &'a [Transition]) -> Vec<RunWrite<'a>> {
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
                    RunWrite {
                        state,
                        parts: transition.parts_of(*id).collect(),
                        history: transition.history_of(*id).collect(),
                    }
                })
            })
            .collect()
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

    /// Removes a timer from the index.
    fn disarm(&mut self, due_ms: i64, timer: Timer) {
        self.timers.remove(&(due_ms, timer));
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
                    self.dispatch.enqueue(task, self.clock.monotonic());
                    dispatched = true;
                }
                Command::ArmTimer { run, due_ms } => self.arm(due_ms, Timer::Run(run)),
                Command::Abandon { token } => self.dispatch.abandon(token),
                Command::Withdraw(unit) => self.dispatch.withdraw(unit),
                Command::Finished { run, status } => {
                    tracing::info!(run.id = %run, run.status = status.as_str(), "run.finished");
                    self.ended.push(run);
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
const DRY_RUN_KEY_PREFIX: &str = store::DRY_RUN_CLAIM_PREFIX;

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

/// Debug builds: each small run written reads back from the store as it is in memory, so a
/// change that no transition named (see `riposte_scheduler::Part`) fails the tests instead of
/// coming back wrong after a restart.
fn read_back(store: &Store, writes: &[RunWrite<'_>]) {
    for write in writes {
        let state = write.state;
        let units: usize = state.steps.iter().map(|s| s.units.len()).sum();
        if units + state.undo.len() > 256 {
            continue;
        }
        match store.run(state.id) {
            Ok(Some(stored)) => assert!(
                stored == *state,
                "run {} reads back otherwise than it was written:\nstored {stored:#?}\nmemory {state:#?}",
                state.id
            ),
            other => panic!("run {} does not read back: {other:?}", state.id),
        }
    }
}
