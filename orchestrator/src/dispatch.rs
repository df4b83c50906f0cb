//! The dispatcher: the in-memory side of task hand-out. The queue of units waiting for a
//! worker, the registry of workers, the long-polls waiting for a task, and the leases with
//! their monotonic deadlines.
//!
//! Nothing here is durable: the queue and the leases are rebuilt from the runs' states after a
//! restart, and workers register again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use riposte_scheduler::state::UnitRef;
use riposte_scheduler::{TaskId, TaskSpec};

/// A registered worker.
#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub actions: HashSet<String>,
    pub concurrency: u32,
    pub last_seen: Instant,
}

impl Worker {
    fn can_run(&self, task: &TaskSpec) -> bool {
        self.actions.contains(&task.action)
            && task
                .labels
                .iter()
                .all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// A lease held by a worker.
#[derive(Debug, Clone)]
pub struct Lease {
    pub unit: UnitRef,
    pub task_id: TaskId,
    pub worker: String,
    pub deadline: Instant,
    /// Heartbeats never extend past this: the step's timeout plus one lease of grace.
    pub deadline_max: Instant,
}

/// A long-poll waiting for a task; the engine sends the granted task through `reply`.
pub struct Waiter<G> {
    pub worker: String,
    pub reply: oneshot::Sender<G>,
}

pub struct Dispatcher<G> {
    queue: VecDeque<TaskSpec>,
    pub workers: HashMap<String, Worker>,
    waiters: VecDeque<Waiter<G>>,
    leases: HashMap<u64, Lease>,
    /// Leases a worker must drop, told on its next heartbeat.
    abandoned: HashMap<String, Vec<(TaskId, u64)>>,
    /// Containment is paused: holdable tasks stay queued (see [`TaskSpec::holdable`]).
    paused: bool,
}

impl<G> Default for Dispatcher<G> {
    fn default() -> Self {
        Dispatcher {
            queue: VecDeque::new(),
            workers: HashMap::new(),
            waiters: VecDeque::new(),
            leases: HashMap::new(),
            abandoned: HashMap::new(),
            paused: false,
        }
    }
}

impl<G> Dispatcher<G> {
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn enqueue(&mut self, task: TaskSpec) {
        self.queue.push_back(task);
    }

    /// Pauses or resumes containment at the door: while paused, no holdable task leaves the
    /// queue.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the door holds `task` now.
    pub fn is_held(&self, task: &TaskSpec) -> bool {
        self.paused && task.holdable()
    }

    /// The queued tasks the door holds now.
    pub fn held(&self) -> Vec<UnitRef> {
        self.queue
            .iter()
            .filter(|t| self.is_held(t))
            .map(|t| t.unit)
            .collect()
    }

    /// Removes and returns the first queued task `worker` can run and the door lets through.
    pub fn take_task_for(&mut self, worker: &str) -> Option<TaskSpec> {
        let worker = self.workers.get(worker)?;
        let paused = self.paused;
        let index = self
            .queue
            .iter()
            .position(|t| worker.can_run(t) && !(paused && t.holdable()))?;
        self.queue.remove(index)
    }

    /// Removes and returns a waiting long-poll whose worker can run `task`; none for a task
    /// the door holds.
    pub fn take_waiter_for(&mut self, task: &TaskSpec) -> Option<Waiter<G>> {
        self.waiters.retain(|w| !w.reply.is_closed());
        if self.is_held(task) {
            return None;
        }
        let workers = &self.workers;
        let index = self.waiters.iter().position(|w| {
            workers
                .get(&w.worker)
                .is_some_and(|worker| worker.can_run(task))
        })?;
        self.waiters.remove(index)
    }

    pub fn add_waiter(&mut self, waiter: Waiter<G>) {
        self.waiters.push_back(waiter);
    }

    pub fn insert_lease(&mut self, token: u64, lease: Lease) {
        self.leases.insert(token, lease);
    }

    pub fn lease(&self, token: u64) -> Option<&Lease> {
        self.leases.get(&token)
    }

    pub fn remove_lease(&mut self, token: u64) -> Option<Lease> {
        self.leases.remove(&token)
    }

    /// Drops a lease and tells its worker to stop on the next heartbeat.
    pub fn abandon(&mut self, token: u64) {
        if let Some(lease) = self.leases.remove(&token) {
            self.abandoned
                .entry(lease.worker)
                .or_default()
                .push((lease.task_id, token));
        }
    }

    /// Extends the leases a worker reports; returns those it must abandon.
    pub fn heartbeat(
        &mut self,
        worker: &str,
        held: &[(TaskId, u64)],
        now: Instant,
        lease: Duration,
    ) -> Vec<(TaskId, u64)> {
        let mut abandon = self.abandoned.remove(worker).unwrap_or_default();
        for (task_id, token) in held {
            match self.leases.get_mut(token) {
                Some(l) if l.worker == worker && now < l.deadline => {
                    l.deadline = (now + lease).min(l.deadline_max);
                }
                Some(_) => {}
                None => {
                    if !abandon.iter().any(|(_, t)| t == token) {
                        abandon.push((task_id.clone(), *token));
                    }
                }
            }
        }
        abandon
    }

    /// Leases whose deadline has passed, removed from the table.
    pub fn expired(&mut self, now: Instant) -> Vec<(u64, Lease)> {
        let tokens: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        tokens
            .into_iter()
            .filter_map(|t| self.leases.remove(&t).map(|l| (t, l)))
            .collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.leases.values().map(|l| l.deadline).min()
    }

    pub fn in_flight(&self, worker: &str) -> usize {
        self.leases.values().filter(|l| l.worker == worker).count()
    }
}

impl<G> Dispatcher<G> {
    /// Removes the queued task at `index` (see [`Dispatcher::put_back`]).
    pub fn take_at(&mut self, index: usize) -> Option<TaskSpec> {
        self.queue.remove(index)
    }

    /// Puts a task back where [`Dispatcher::take_at`] found it.
    pub fn put_back(&mut self, index: usize, task: TaskSpec) {
        self.queue.insert(index, task);
    }

    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }
}
