//! Worker requests: register, long-poll for a task, heartbeat the leases held, report a
//! result; and the operators' list of workers.
//!
//! Every worker request carries its [`Caller`]: the identity the transport verified (the
//! worker's client certificate), never anything the worker typed. A worker is known by
//! `NAME/ID`, its identity's name and the id it chose, so another identity can neither
//! register, poll, heartbeat nor report under it, and its leases (recorded under that key)
//! answer only to it. What each identity may offer is the [`WorkerPolicy`]'s to say. A caller
//! without a certificate is refused unless `--insecure-anonymous-workers` lets it in under
//! its bare id.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use riposte_tls::{Identity, Role};
use serde_json::Value;

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::dispatch::Worker;
use crate::engine::{self, LeasedTask, Poll};
use crate::worker_policy::WorkerPolicy;
use riposte_scheduler::TaskId;

/// Who sent a worker request, as the transport verified it: the identity its client
/// certificate names, or `None` (no certificate, or a plaintext connection).
pub type Caller = Option<Identity>;

/// Which workers may connect and what each may offer.
pub struct WorkerAccess {
    policy: RwLock<WorkerPolicy>,
    /// Callers without a certificate are let in (`--insecure-anonymous-workers`).
    anonymous: bool,
}

impl WorkerAccess {
    pub fn new(policy: WorkerPolicy, anonymous: bool) -> WorkerAccess {
        WorkerAccess {
            policy: RwLock::new(policy),
            anonymous,
        }
    }

    /// Replaces the policy (a reload); registrations from now on are checked against it.
    pub fn set_policy(&self, policy: WorkerPolicy) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    /// Why the policy no longer lets registered `worker` offer what it offers, if it does not.
    pub(crate) fn refuses(&self, worker: &Worker) -> Option<String> {
        // Only a certificate's worker has an identity (`NAME/ID`); an anonymous one is not
        // checked against the policy.
        let (name, _) = worker.id.split_once('/')?;
        let policy = self.policy.read().unwrap_or_else(PoisonError::into_inner);
        let refused = policy.check(name, &worker.actions, &worker.labels);
        refused.err().map(|refusal| refusal.to_string())
    }

    /// The key `caller` is known by when it calls itself `id`.
    pub(super) fn key(&self, caller: &Caller, id: &str) -> Result<String, Error> {
        if id.contains('/') {
            // `/` separates an identity from an id: an anonymous worker calling itself
            // `fw-1/x` must not pass for identity `fw-1`'s worker `x`.
            let why = format!("worker id `{id}` contains `/`");
            return Err(engine::Error::InvalidArgument(why).into());
        }
        match caller {
            Some(identity) if identity.role == Role::Worker => {
                Ok(format!("{}/{id}", identity.name))
            }
            Some(identity) => Err(engine::Error::PermissionDenied(format!(
                "{identity} holds an operator certificate, not a worker's"
            ))
            .into()),
            None if self.anonymous => Ok(id.to_string()),
            None => Err(Error::Unauthenticated(
                "a worker must present a client certificate issued by the orchestrator's \
                 client CA"
                    .into(),
            )),
        }
    }

    /// Whether `caller` may offer what `register` offers.
    fn check(&self, caller: &Caller, register: &Register) -> Result<(), Error> {
        let Some(identity) = caller else {
            return Ok(());
        };
        let policy = self.policy.read().unwrap_or_else(PoisonError::into_inner);
        policy
            .check(&identity.name, &register.actions, &register.labels)
            .map_err(|refusal| engine::Error::PermissionDenied(refusal.to_string()).into())
    }
}

requests! {
    Register,
    PollTask,
    Heartbeat,
    ReportResult,
    ListWorkers,
}

/// A worker announces itself (or again, after the orchestrator restarted).
pub struct Register {
    pub caller: Caller,
    pub id: String,
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub actions: std::collections::HashSet<String>,
    pub concurrency: u32,
}

/// The terms a registered worker works by.
pub struct Terms {
    pub lease: Duration,
    pub heartbeat_interval: Duration,
    pub poll_wait_max: Duration,
}

impl Request for Register {
    type Reply = Terms;
    const KIND: Kind = Kind::Register;

    fn target(&self) -> String {
        match &self.caller {
            Some(identity) => format!("{identity} as {}", self.id),
            None => self.id.clone(),
        }
    }

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Terms, Error> {
        let checked = node.workers.key(&self.caller, &self.id).and_then(|key| {
            node.workers.check(&self.caller, &self)?;
            Ok(key)
        });
        let key = match checked {
            Ok(key) => key,
            Err(e) => {
                let identity = self.caller.as_ref().map(ToString::to_string);
                tracing::warn!(identity, worker.name = %self.name, error = %e, "worker.refused");
                return Err(e);
            }
        };
        let now = node.clock.monotonic();
        let worker = Worker {
            id: key,
            name: self.name,
            labels: self.labels,
            actions: self.actions,
            concurrency: self.concurrency,
            last_seen: now,
            last_heartbeat: now,
        };
        let mut engine = node.lock()?;
        engine.runs.register(worker);
        let settings = engine.settings();
        Ok(Terms {
            lease: settings.lease,
            heartbeat_interval: settings.lease / 3,
            poll_wait_max: settings.poll_wait_max,
        })
    }
}

/// A long-poll: a task for the worker now, or within `wait` (at most `--poll-wait-max`).
pub struct PollTask {
    pub caller: Caller,
    /// The id the worker registered with.
    pub worker: String,
    pub wait: Duration,
}

impl Request for PollTask {
    /// The leased task, handed out only once its lease is durable; `None` if none came.
    type Reply = Option<LeasedTask>;
    const KIND: Kind = Kind::PollTask;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Option<LeasedTask>, Error> {
        let worker = node.workers.key(&self.caller, &self.worker)?;
        let poll = node.lock()?.runs.poll(&worker)?;
        let pending = match poll {
            Poll::Now(leased) => Some(*leased),
            Poll::Wait(mut rx) => {
                let max = node.lock()?.settings().poll_wait_max;
                match tokio::time::timeout(self.wait.min(max), &mut rx).await {
                    Ok(Ok(leased)) => Some(leased),
                    Ok(Err(_)) => None,
                    Err(_) => {
                        // A task sent just as the wait ended still belongs to this poll.
                        rx.close();
                        rx.try_recv().ok()
                    }
                }
            }
        };
        let Some(pending) = pending else {
            return Ok(None);
        };
        let leased = node.durable(pending).await?;
        tracing::debug!(
            task.id = %leased.task_id,
            worker.id = %worker,
            action = %leased.task.action,
            "task.leased"
        );
        Ok(Some(leased))
    }
}

/// The leases a worker holds, to keep them; answers the ones it must abandon.
pub struct Heartbeat {
    pub caller: Caller,
    /// The id the worker registered with.
    pub worker: String,
    /// (task id, lease token)
    pub held: Vec<(TaskId, u64)>,
}

impl Request for Heartbeat {
    /// (task id, lease token) of each lease to abandon.
    type Reply = Vec<(TaskId, u64)>;
    const KIND: Kind = Kind::Heartbeat;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let worker = node.workers.key(&self.caller, &self.worker)?;
        Ok(node.lock()?.runs.heartbeat(&worker, &self.held)?)
    }
}

/// A task's outcome, reported under its lease.
pub struct ReportResult {
    pub caller: Caller,
    /// The id the worker registered with.
    pub worker: String,
    pub task_id: TaskId,
    pub token: u64,
    /// The output, or the error message and whether a retry may help.
    pub outcome: Result<Value, (String, bool)>,
}

impl Request for ReportResult {
    /// Whether it repeated the result already recorded.
    type Reply = bool;
    const KIND: Kind = Kind::ReportResult;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<bool, Error> {
        let worker = node.workers.key(&self.caller, &self.worker)?;
        let pending = node
            .lock()?
            .runs
            .report(&worker, &self.task_id, self.token, self.outcome)?;
        let report = node.durable(pending).await?;
        if let Some(reason) = report.rejected {
            tracing::warn!(task.id = %self.task_id, worker.id = %worker, %reason, "task.result_rejected");
            return Err(
                engine::Error::FailedPrecondition(format!("result rejected: {reason}")).into(),
            );
        }
        Ok(report.duplicate)
    }
}

/// Every registered worker with the tasks it holds.
pub struct ListWorkers;

impl Request for ListWorkers {
    /// Each worker, its leases in flight, and the monotonic now to age them by.
    type Reply = (Vec<(Worker, usize)>, Instant);
    const KIND: Kind = Kind::ListWorkers;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let now = node.clock.monotonic();
        Ok((node.lock()?.runs.workers(), now))
    }
}
