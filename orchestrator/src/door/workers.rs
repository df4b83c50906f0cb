//! Worker requests: register, long-poll for a task, heartbeat the leases held, report a
//! result; and the operators' list of workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Error, Kind, Node, Request, requests};
use crate::dispatch::Worker;
use crate::engine::{self, LeasedTask, Poll};
use riposte_scheduler::TaskId;

requests! {
    Register,
    PollTask,
    Heartbeat,
    ReportResult,
    ListWorkers,
}

/// A worker announces itself (or again, after the orchestrator restarted).
pub struct Register {
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

    async fn serve(self, node: &Arc<Node>) -> Result<Terms, Error> {
        let now = node.clock.monotonic();
        let worker = Worker {
            id: self.id,
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
    pub worker: String,
    pub wait: Duration,
}

impl Request for PollTask {
    /// The leased task, handed out only once its lease is durable; `None` if none came.
    type Reply = Option<LeasedTask>;
    const KIND: Kind = Kind::PollTask;

    async fn serve(self, node: &Arc<Node>) -> Result<Option<LeasedTask>, Error> {
        let poll = node.lock()?.runs.poll(&self.worker)?;
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
            lease.token = leased.token,
            worker.id = %self.worker,
            action = %leased.task.action,
            "task.leased"
        );
        Ok(Some(leased))
    }
}

/// The leases a worker holds, to keep them; answers the ones it must abandon.
pub struct Heartbeat {
    pub worker: String,
    /// (task id, lease token)
    pub held: Vec<(TaskId, u64)>,
}

impl Request for Heartbeat {
    /// (task id, lease token) of each lease to abandon.
    type Reply = Vec<(TaskId, u64)>;
    const KIND: Kind = Kind::Heartbeat;

    async fn serve(self, node: &Arc<Node>) -> Result<Self::Reply, Error> {
        Ok(node.lock()?.runs.heartbeat(&self.worker, &self.held)?)
    }
}

/// A task's outcome, reported under its lease.
pub struct ReportResult {
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

    async fn serve(self, node: &Arc<Node>) -> Result<bool, Error> {
        let pending = node
            .lock()?
            .runs
            .report(&self.task_id, self.token, self.outcome)?;
        let report = node.durable(pending).await?;
        if let Some(reason) = report.rejected {
            tracing::warn!(task.id = %self.task_id, lease.token = self.token, worker.id = %self.worker, %reason, "task.result_rejected");
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

    async fn serve(self, node: &Arc<Node>) -> Result<Self::Reply, Error> {
        let now = node.clock.monotonic();
        Ok((node.lock()?.runs.workers(), now))
    }
}
