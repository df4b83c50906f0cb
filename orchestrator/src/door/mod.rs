//! The request door: every operator, worker and alert request enters the orchestrator through
//! [`Node::handle`], and nowhere else.
//!
//! A request is a value of a closed set of types (each implements the sealed [`Request`]
//! trait, with its [`Kind`] and its reply type). The gRPC services, the HTTP and syslog alert
//! listeners and the startup steps only translate what they received into a request and its
//! reply back into what they send. What every request needs (authorization, an audit record,
//! a trace span) is therefore added once, in [`Node::handle`].
//!
//! A request that changes state answers only once the change is durable: the engine returns
//! its changes as [`Pending`](crate::pending::Pending) values, whose contents can be reached
//! only by waiting for the store's flush ([`Node::durable`]).
//!
//! Modules, one per concern: [`playbooks`], [`runs`] (runs, approvals, grants, repairs),
//! [`containment`], [`schedules`], [`alerts`] (alerts and rules), [`workers`].

pub mod access;
pub mod alerts;
pub mod audit;
pub mod containment;
pub mod playbooks;
pub mod runs;
pub mod schedules;
pub mod sources;
pub mod workers;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

pub use access::{Actor, Caller};

use crate::budget::Budget;
use crate::clock::Clock;
use crate::engine::{self, Engine};
use crate::pending::Pending;
use crate::refusals::Tally;
use crate::store;

/// The orchestrator as requests see it: the engine behind its lock, the store, the clock, and
/// the admission limits that hold before a request is formed.
pub struct Node {
    /// `None` only while [`Node::reopen`] holds the lock.
    engine: Mutex<Option<Engine>>,
    clock: Clock,
    /// Wakes the timer loop; the engine notifies it when a timer becomes the earliest.
    timers: Arc<Notify>,
    /// The ingestion queue: the alert payloads being ingested now, at most
    /// `--alerts-in-flight`, of which one feed holds at most `--alerts-in-flight-per-feed`.
    ingesting: Arc<Budget<alerts::Feed>>,
    /// Payloads refused a place in it.
    ingest_refused: Tally,
    /// Decided payloads waiting to be written together.
    combiner: alerts::Combiner,
    /// The alert rules, read by every payload without the engine's lock.
    rules: engine::SharedRules,
    /// Opens the engine afresh from the data dir (see [`Node::reopen`]).
    reopen: Option<Reopen>,
    /// Which workers may connect and what each may offer.
    workers: workers::WorkerAccess,
    /// What each operator may do, and the platform's rules.
    operators: access::OperatorAccess,
}

/// Opens an engine on a freshly opened store, waking the given timer loop.
pub type Reopen = Box<dyn Fn(Arc<Notify>) -> Result<Engine, crate::Error> + Send + Sync>;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine refused it (invalid, not found, not now, over a limit, not allowed) or could
    /// not write it.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The change was written but the flush failed: it may not survive a crash.
    #[error("the change is not durable: {0}")]
    NotDurable(store::Error),
    /// The ingestion queue is full (`--alerts-in-flight`), or the feed holds its share of it
    /// (`--alerts-in-flight-per-feed`): retry later.
    #[error("{0}")]
    Backlog(String),
    /// The store is being opened again after a disk failure: retry in a moment.
    #[error("the orchestrator is opening its store again after a disk failure; retry")]
    Reopening,
    /// The caller did not prove who it is (no client certificate where one is needed).
    #[error("{0}")]
    Unauthenticated(String),
}

/// What a request is, one word per request type: the closed set every cross-cutting concern
/// (authorization, audit, tracing) decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ValidatePlaybook,
    ApplyPlaybook,
    ApplyBuiltin,
    ListPlaybooks,
    GetPlaybook,
    ListPlaybookVersions,
    SetDefaultPlaybook,
    DeletePlaybookVersion,
    StartRun,
    GetRun,
    ListRuns,
    WatchRun,
    CancelRun,
    RepairRun,
    Decide,
    ListApprovals,
    ListGrants,
    RevokeGrant,
    SetContainment,
    GetContainment,
    ApplySchedule,
    ListSchedules,
    GetScheduleHistory,
    TriggerSchedule,
    SetSchedulePaused,
    IngestAlert,
    IngestBatch,
    ListAlerts,
    GetAlert,
    ApplyRule,
    ListRules,
    GetRule,
    SetRuleEnabled,
    DeleteRule,
    TestRules,
    DeleteSchedule,
    Register,
    PollTask,
    Heartbeat,
    ReportResult,
    ClaimPoll,
    ReportPage,
    ListAlertSources,
    ListWorkers,
    WhoAmI,
    ListAudit,
    VerifyAudit,
}

impl Kind {
    /// The stable name, for logs and (later) audit records.
    pub fn name(self) -> &'static str {
        match self {
            Kind::ValidatePlaybook => "playbook.validate",
            Kind::ApplyPlaybook => "playbook.apply",
            Kind::ApplyBuiltin => "playbook.apply_builtin",
            Kind::ListPlaybooks => "playbook.list",
            Kind::GetPlaybook => "playbook.get",
            Kind::ListPlaybookVersions => "playbook.versions",
            Kind::SetDefaultPlaybook => "playbook.set_default",
            Kind::DeletePlaybookVersion => "playbook.delete",
            Kind::StartRun => "run.start",
            Kind::GetRun => "run.get",
            Kind::ListRuns => "run.list",
            Kind::WatchRun => "run.watch",
            Kind::CancelRun => "run.cancel",
            Kind::RepairRun => "run.repair",
            Kind::Decide => "approval.decide",
            Kind::ListApprovals => "approval.list",
            Kind::ListGrants => "grant.list",
            Kind::RevokeGrant => "grant.revoke",
            Kind::SetContainment => "containment.set",
            Kind::GetContainment => "containment.get",
            Kind::ApplySchedule => "schedule.apply",
            Kind::ListSchedules => "schedule.list",
            Kind::GetScheduleHistory => "schedule.history",
            Kind::TriggerSchedule => "schedule.trigger",
            Kind::SetSchedulePaused => "schedule.set_paused",
            Kind::IngestAlert => "alert.ingest",
            Kind::IngestBatch => "alert.ingest_batch",
            Kind::ListAlerts => "alert.list",
            Kind::GetAlert => "alert.get",
            Kind::ApplyRule => "rule.apply",
            Kind::ListRules => "rule.list",
            Kind::GetRule => "rule.get",
            Kind::SetRuleEnabled => "rule.set_enabled",
            Kind::DeleteRule => "rule.delete",
            Kind::TestRules => "rule.test",
            Kind::DeleteSchedule => "schedule.delete",
            Kind::Register => "worker.register",
            Kind::PollTask => "worker.poll",
            Kind::Heartbeat => "worker.heartbeat",
            Kind::ReportResult => "worker.report",
            Kind::ClaimPoll => "worker.claim_poll",
            Kind::ReportPage => "worker.report_page",
            Kind::ListAlertSources => "alert.sources",
            Kind::ListWorkers => "worker.list",
            Kind::WhoAmI => "whoami",
            Kind::ListAudit => "audit.list",
            Kind::VerifyAudit => "audit.verify",
        }
    }

    /// What it does, as a phrase after "may not" (in refusals).
    pub fn describe(self) -> &'static str {
        match self {
            Kind::ValidatePlaybook => "validate playbooks",
            Kind::ApplyPlaybook => "apply playbooks",
            Kind::ApplyBuiltin => "apply built-in playbooks",
            Kind::ListPlaybooks | Kind::GetPlaybook | Kind::ListPlaybookVersions => {
                "read playbooks"
            }
            Kind::SetDefaultPlaybook => "set a playbook's default version",
            Kind::DeletePlaybookVersion => "delete playbook versions",
            Kind::StartRun => "start runs",
            Kind::GetRun | Kind::ListRuns | Kind::WatchRun => "read runs",
            Kind::CancelRun => "cancel runs",
            Kind::RepairRun => "repair runs",
            Kind::Decide => "decide approvals",
            Kind::ListApprovals => "read approvals",
            Kind::ListGrants => "read grants",
            Kind::RevokeGrant => "revoke grants",
            Kind::SetContainment => "pause or resume containment",
            Kind::GetContainment => "read the containment switch",
            Kind::ApplySchedule => "apply schedules",
            Kind::ListSchedules | Kind::GetScheduleHistory => "read schedules",
            Kind::TriggerSchedule => "trigger schedules",
            Kind::SetSchedulePaused => "pause or resume schedules",
            Kind::IngestAlert | Kind::IngestBatch => "send alerts",
            Kind::ListAlerts | Kind::GetAlert | Kind::ListAlertSources => "read alerts",
            Kind::ApplyRule => "apply rules",
            Kind::ListRules | Kind::GetRule | Kind::TestRules => "read rules",
            Kind::SetRuleEnabled => "disable or enable rules",
            Kind::DeleteRule => "delete rules",
            Kind::DeleteSchedule => "delete schedules",
            Kind::Register
            | Kind::PollTask
            | Kind::Heartbeat
            | Kind::ReportResult
            | Kind::ClaimPoll
            | Kind::ReportPage => "act as a worker",
            Kind::ListWorkers => "read workers",
            Kind::WhoAmI => "read their own grants",
            Kind::ListAudit => "read the audit log",
            Kind::VerifyAudit => "verify the audit log",
        }
    }
}

mod sealed {
    /// Only this module's request types are requests.
    pub trait Sealed {}
}

/// One request type of the closed set: what it is and what it answers.
pub trait Request: sealed::Sealed + Send + Sized {
    /// What it answers (domain values; the edges convert them to their wire form).
    type Reply: Send;
    /// What it is.
    const KIND: Kind;

    /// What it acts on, for its audit record (a run id, a name); empty when nothing says.
    fn target(&self) -> String {
        String::new()
    }

    /// Carries the request out for `actor`, whom [`Node::handle`] authorized for its kind.
    /// Called only by [`Node::handle`].
    fn serve(
        self,
        node: &Arc<Node>,
        actor: &Actor,
    ) -> impl Future<Output = Result<Self::Reply, Error>> + Send;
}

/// Declares a module's request types: each is sealed, and (for the tests) the kinds they
/// declare are listed from their own `Request::KIND`.
macro_rules! requests {
    ($($request:ident,)*) => {
        $(impl crate::door::sealed::Sealed for $request {})*
        #[cfg(test)]
        pub(crate) const KINDS: &[crate::door::Kind] =
            &[$(<$request as crate::door::Request>::KIND),*];
    };
}
use requests;

impl Node {
    /// The door in front of `engine`, admitting at most `in_flight` alert payloads at once, of
    /// which one feed holds at most `in_flight_per_feed` (by default half, rounded up); no
    /// worker may register until [`Node::with_worker_access`] says who may.
    pub fn new(mut engine: Engine, in_flight: usize, in_flight_per_feed: Option<usize>) -> Node {
        let per_feed = in_flight_per_feed.unwrap_or(in_flight.div_ceil(2));
        let rules = engine::SharedRules::default();
        engine.share_rules(rules.clone());
        Node {
            rules,
            clock: engine.clock().clone(),
            timers: engine.timers_changed(),
            ingest_refused: Tally::new("in_flight", engine.clock().clone()),
            combiner: alerts::Combiner::default(),
            engine: Mutex::new(Some(engine)),
            ingesting: Arc::new(Budget::new(in_flight, per_feed)),
            reopen: None,
            workers: workers::WorkerAccess::new(Default::default(), false),
            operators: access::OperatorAccess::new(Default::default()),
        }
    }

    /// The same, letting operators do what `policy` says (and applying its platform rules).
    pub fn with_operator_policy(self, policy: crate::auth::Policy) -> Node {
        self.set_operator_policy(policy);
        self
    }

    /// Replaces the operator policy (a reload): requests from now on are authorized by it,
    /// and the engine applies its platform rules.
    pub fn set_operator_policy(&self, policy: crate::auth::Policy) {
        if let Ok(mut engine) = self.lock() {
            engine.runs.set_platform(engine::Platform::of(&policy));
        }
        self.operators.set_policy(policy);
    }

    /// The same, letting workers in as `access` says.
    pub fn with_worker_access(mut self, access: workers::WorkerAccess) -> Node {
        self.workers = access;
        self
    }

    /// Replaces the worker policy (a reload), and evicts the registered workers it no longer
    /// lets offer what they offer: they must register again, and are refused.
    pub fn set_worker_policy(&self, policy: crate::worker_policy::WorkerPolicy) {
        self.workers.set_policy(policy);
        if let Ok(mut engine) = self.lock() {
            engine.runs.evict(|worker| self.workers.refuses(worker));
        }
    }

    /// The same, able to [`reopen`](Node::reopen) its engine with `reopen`.
    pub fn with_reopen(mut self, reopen: Reopen) -> Node {
        self.reopen = Some(reopen);
        self
    }

    /// The one entry point: authorizes `caller` for `request`, carries it out and answers its
    /// reply.
    pub async fn handle<R: Request>(
        self: &Arc<Self>,
        caller: Caller,
        request: R,
    ) -> Result<R::Reply, Error> {
        let audited = R::KIND.audited();
        let target = match audited || caller.audits_refusals() {
            true => request.target(),
            false => String::new(),
        };
        let actor = match self.operators.authorize(&caller, R::KIND) {
            Ok(actor) => actor,
            Err(error) => {
                tracing::info!(request = R::KIND.name(), %error, "request.denied");
                if caller.audits_refusals() {
                    let entry = caller.audit_entry(R::KIND, target, self.clock.now_ms());
                    self.audit_outcome(entry, &error).await;
                }
                return Err(error);
            }
        };
        if audited {
            actor.put_audit(caller.audit_entry(R::KIND, target, self.clock.now_ms()));
        }
        let result = request.serve(self, &actor).await;
        // An entry no write took: the request changed nothing, or was refused.
        if let Some(entry) = actor.take_audit() {
            match &result {
                Ok(_) => self.audit_outcome(entry, "ok").await,
                Err(error) => self.audit_outcome(entry, error).await,
            }
        }
        if let Err(error) = &result {
            tracing::debug!(request = R::KIND.name(), %error, "request.refused");
            if let Error::Engine(engine::Error::Store(e)) = error
                && let Ok(engine) = self.lock()
            {
                engine.store().found_failure(e);
            }
        }
        result
    }

    /// The engine, for one operation under its lock; refused while the store is reopened.
    fn lock(&self) -> Result<Locked<'_>, Error> {
        let slot = self.lock_slot();
        match slot.is_some() {
            true => Ok(Locked { slot, actor: None }),
            false => Err(Error::Reopening),
        }
    }

    /// The same, for a change `actor` asked for: the store writes the actor's audit record
    /// with the first change made under this lock, in the same transaction; one no write took
    /// goes back to the actor when the lock is let go.
    fn lock_for<'a>(&'a self, actor: &'a Actor) -> Result<Locked<'a>, Error> {
        let mut locked = self.lock()?;
        if let Some(entry) = actor.take_audit() {
            locked.store().audit_next(entry);
            locked.actor = Some(actor);
        }
        Ok(locked)
    }

    /// Appends `entry` with `outcome` on its own and waits until it is durable; a failure is
    /// logged (the request's own answer stands).
    async fn audit_outcome(&self, mut entry: crate::store::AuditEntry, outcome: impl ToString) {
        entry.outcome = outcome.to_string();
        let appended = match self.lock() {
            Ok(engine) => engine.store().audit_append(entry),
            Err(e) => return tracing::error!(error = %e, "audit.not_written"),
        };
        let durable = match appended {
            Ok(seq) => seq.durable().await,
            Err(e) => Err(e),
        };
        if let Err(e) = durable {
            tracing::error!(error = %e, "audit.not_written");
        }
    }

    /// Records something the orchestrator did by itself (a policy reloaded), with `outcome`.
    pub async fn audit_internal(&self, action: &str, target: &str, outcome: &str) {
        let entry = crate::store::AuditEntry {
            at_ms: self.clock.now_ms(),
            principal: "orchestrator".into(),
            method: "service".into(),
            source: "internal".into(),
            action: action.into(),
            target: target.into(),
            digest: String::new(),
            outcome: String::new(),
        };
        self.audit_outcome(entry, outcome).await;
    }

    fn lock_slot(&self) -> MutexGuard<'_, Option<Engine>> {
        // A panic while holding the lock is a bug; the state it left is still the best we have.
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `pending` is durable, then gives its value.
    async fn durable<T>(&self, pending: Pending<T>) -> Result<T, Error> {
        pending.durable().await.map_err(Error::NotDurable)
    }

    /// Replaces the engine with one opened afresh from the data dir: what a store that failed
    /// a write (sled refuses every operation after an IO error, a full disk among them) needs
    /// once the disk is writable again. Meanwhile requests are answered UNAVAILABLE
    /// ([`Error::Reopening`]), as are changes that were not yet durable (they were never
    /// acknowledged; a retry with the same idempotency key is safe); the runs resume from
    /// what the store holds, as after a restart, without one. An error means there is no
    /// engine left: the caller ends the process.
    pub async fn reopen(self: &Arc<Self>) -> Result<(), crate::Error> {
        if self.reopen.is_none() {
            return Ok(());
        }
        // The old store's handles go with the engine; its flusher then ends and lets go of the
        // data dir (its lock and sled's), which may take a moment.
        let old = self.lock_slot().take();
        self.rules.clear();
        drop(old);
        let mut tries = 0;
        let engine = loop {
            let node = self.clone();
            let opened = blocking(move || {
                let reopen = node.reopen.as_ref().expect("checked above");
                reopen(node.timers.clone())
            })
            .await;
            match opened {
                Ok(engine) => break engine,
                Err(crate::Error::Store(
                    store::Error::Locked { .. } | store::Error::Unopenable { .. },
                )) if tries < REOPEN_TRIES => {
                    tries += 1;
                    tokio::time::sleep(REOPEN_PAUSE).await;
                }
                Err(e) => return Err(e),
            }
        };
        tracing::warn!(runs.active = engine.runs.active_runs(), "store.reopened");
        let mut engine = engine;
        // The engine opened with the policy of the start; a reload since is the one in force.
        let platform = engine::Platform::of(&self.operators.policy());
        engine.runs.set_platform(platform);
        engine.share_rules(self.rules.clone());
        *self.lock_slot() = Some(engine);
        // What fell due while it was closed fires at once.
        self.timers.notify_one();
        Ok(())
    }

    /// The clock requests read (a worker's last contact, the age of a lease).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Fires expired leases and due timers; answers when to call again (the timer loop).
    pub fn tick(&self) -> Option<std::time::Instant> {
        match self.lock() {
            Ok(mut engine) => engine.tick(),
            // Reopening: look again in a moment.
            Err(_) => Some(self.clock.monotonic() + REOPEN_PAUSE),
        }
    }

    /// Resolves when a timer may have become due earlier than the loop planned.
    pub async fn timers_changed(&self) {
        self.timers.notified().await;
    }

    /// Whether the store takes new work and acknowledges writes; the reason when it does not
    /// (for health checks).
    pub fn condition(&self) -> Result<(), Error> {
        let engine = self.lock()?;
        let condition = engine.store().condition();
        condition.map_err(|e| Error::Engine(engine::Error::Store(e)))
    }

    /// Whether the store failed writes it cannot recover from in place while the disk has
    /// room again: the moment to [`reopen`](Node::reopen).
    pub fn needs_reopen(&self) -> bool {
        self.reopen.is_some()
            && self
                .lock()
                .is_ok_and(|engine| engine.store().needs_reopen())
    }

    /// Removes finished runs that finished more than `retention` ago, and the oldest finished
    /// runs beyond `keep_max`; answers how many (see [`store::Store::prune_runs`]).
    pub async fn prune_runs(
        &self,
        retention: std::time::Duration,
        keep_max: usize,
    ) -> Result<usize, Error> {
        let store = self.lock()?.store().clone();
        let before_ms = self.clock.now_ms() - retention.as_millis() as i64;
        blocking(move || store.prune_runs(before_ms, keep_max))
            .await
            .map_err(|e| Error::Engine(engine::Error::Store(e)))
    }

    /// The metrics' gauges as the engine stands now (a scrape, a push).
    pub fn gauges(&self) -> Result<crate::telemetry::metrics::Gauges, Error> {
        Ok(self.lock()?.runs.gauges())
    }

    /// Waits until every write so far is durable (at shutdown).
    pub async fn flush(&self) -> Result<(), store::Error> {
        let last = match self.lock() {
            Ok(engine) => engine.store().last_write(),
            // Reopening: nothing of the old store can be flushed any more.
            Err(_) => return Ok(()),
        };
        last.durable().await
    }
}

/// The top-level `name:` of a YAML source, for an audit record (the digest stands for the
/// whole source); empty when there is none.
fn source_name(source: &str) -> String {
    source
        .lines()
        .find_map(|line| line.strip_prefix("name:"))
        .map(|name| {
            name.trim()
                .trim_matches(['"', '\''])
                .chars()
                .take(128)
                .collect()
        })
        .unwrap_or_default()
}

/// Runs blocking store work (sled scans, opening a store) off the async threads; a panic in
/// it is a bug, raised again here.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("blocking store work did not run: {e}"),
    }
}

/// How often, and how far apart, reopening tries the data dir while the old store lets go of
/// it: 10 s in all.
const REOPEN_TRIES: u32 = 500;
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// The engine under its lock. Released, it first gives back an audit record no write took
/// (to the actor it was staged for), then settles ([`Engine::settle`]): whatever a request
/// ended, the concerns that follow those runs have heard of before anyone else sees the
/// engine.
struct Locked<'a> {
    slot: MutexGuard<'a, Option<Engine>>,
    /// Whose audit record the store holds staged.
    actor: Option<&'a Actor>,
}

impl std::ops::Deref for Locked<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.slot
            .as_ref()
            .expect("the engine is open outside a reopen")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.slot
            .as_mut()
            .expect("the engine is open outside a reopen")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(engine) = self.slot.as_mut() {
            if let Some(actor) = self.actor
                && let Some(entry) = engine.store().audit_unwritten()
            {
                actor.put_audit(entry);
            }
            engine.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Every kind, from the request types that declare them.
    pub(crate) fn all_kinds() -> Vec<Kind> {
        [
            playbooks::KINDS,
            runs::KINDS,
            containment::KINDS,
            schedules::KINDS,
            alerts::KINDS,
            sources::KINDS,
            workers::KINDS,
            access::KINDS,
            audit::KINDS,
        ]
        .concat()
    }

    #[test]
    fn every_kind_has_a_request_and_a_distinct_name() {
        let all = all_kinds();
        let kinds: HashSet<Kind> = all.iter().copied().collect();
        assert_eq!(kinds.len(), all.len(), "no two request types share a kind");
        let names: HashSet<&str> = all.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), all.len(), "distinct names");
        // Every kind has its request type: a kind left without one would be missing here.
        assert_eq!(all.len(), 47);
    }
}
