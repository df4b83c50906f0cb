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

pub mod alerts;
pub mod containment;
pub mod playbooks;
pub mod runs;
pub mod schedules;
pub mod workers;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore};

use crate::clock::Clock;
use crate::engine::{self, Engine};
use crate::pending::Pending;
use crate::store::{self, Store};

/// The orchestrator as requests see it: the engine behind its lock, the store, the clock, and
/// the admission limits that hold before a request is formed.
pub struct Node {
    engine: Mutex<Engine>,
    store: Store,
    clock: Clock,
    /// Wakes the timer loop; the engine notifies it when a timer becomes the earliest.
    timers: Arc<Notify>,
    /// Alert payloads being ingested now, at most `ingesting_max` (`--alerts-in-flight`).
    ingesting: Arc<Semaphore>,
    ingesting_max: usize,
}

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
    /// The ingestion queue is full (`--alerts-in-flight`): retry later.
    #[error("{0}")]
    Backlog(String),
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
    Register,
    PollTask,
    Heartbeat,
    ReportResult,
    ListWorkers,
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
            Kind::Register => "worker.register",
            Kind::PollTask => "worker.poll",
            Kind::Heartbeat => "worker.heartbeat",
            Kind::ReportResult => "worker.report",
            Kind::ListWorkers => "worker.list",
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

    /// Carries the request out. Called only by [`Node::handle`].
    fn serve(self, node: &Arc<Node>) -> impl Future<Output = Result<Self::Reply, Error>> + Send;
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
    /// The door in front of `engine`, admitting at most `ingesting_max` alert payloads at once.
    pub fn new(engine: Engine, ingesting_max: usize) -> Node {
        Node {
            store: engine.store().clone(),
            clock: engine.clock().clone(),
            timers: engine.timers_changed(),
            engine: Mutex::new(engine),
            ingesting: Arc::new(Semaphore::new(ingesting_max)),
            ingesting_max,
        }
    }

    /// The one entry point: carries out `request` and answers its reply.
    pub async fn handle<R: Request>(self: &Arc<Self>, request: R) -> Result<R::Reply, Error> {
        let result = request.serve(self).await;
        if let Err(error) = &result {
            tracing::debug!(request = R::KIND.name(), %error, "request.refused");
        }
        result
    }

    /// The engine, for one operation under its lock.
    fn lock(&self) -> Locked<'_> {
        // A panic while holding the lock is a bug; the state it left is still the best we have.
        Locked(
            self.engine
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Waits until `pending` is durable, then gives its value.
    async fn durable<T>(&self, pending: Pending<T>) -> Result<T, Error> {
        pending
            .durable(&self.store)
            .await
            .map_err(Error::NotDurable)
    }

    /// The clock requests read (a worker's last contact, the age of a lease).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Fires expired leases and due timers; answers when to call again (the timer loop).
    pub fn tick(&self) -> Option<std::time::Instant> {
        self.lock().tick()
    }

    /// Resolves when a timer may have become due earlier than the loop planned.
    pub async fn timers_changed(&self) {
        self.timers.notified().await;
    }

    /// Waits until every write so far is durable (at shutdown).
    pub async fn flush(&self) -> Result<(), store::Error> {
        self.store.durable(self.store.last_write()).await
    }
}

/// The engine under its lock. Released, it first settles ([`Engine::settle`]): whatever a
/// request ended, the concerns that follow those runs have heard of before anyone else sees the
/// engine.
struct Locked<'a>(MutexGuard<'a, Engine>);

impl std::ops::Deref for Locked<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.0
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.settle();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_kind_has_a_request_and_a_distinct_name() {
        let all: Vec<Kind> = [
            playbooks::KINDS,
            runs::KINDS,
            containment::KINDS,
            schedules::KINDS,
            alerts::KINDS,
            workers::KINDS,
        ]
        .concat();
        let kinds: HashSet<Kind> = all.iter().copied().collect();
        assert_eq!(kinds.len(), all.len(), "no two request types share a kind");
        let names: HashSet<&str> = all.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), all.len(), "distinct names");
        // Every kind has its request type: a kind left without one would be missing here.
        assert_eq!(all.len(), 33);
    }
}
