//! The dispatcher: the in-memory side of task hand-out. Ready tasks in one FIFO queue per
//! capability (an action with the labels it requires), the registry of live workers, the
//! long-polls waiting for a task, and the leases with their monotonic deadlines.
//!
//! Handing out a task looks at the front of each queue the worker can serve, so its cost does
//! not grow with work queued for capabilities nobody serves; a worker still gets the oldest
//! task it can run (each task carries its arrival order).
//!
//! A worker without a heartbeat (or registration) for a lease is **fenced**:
//! it leaves the registry with its long-polls, so nothing more is handed to it (a frozen
//! process cannot soak up tasks), and its next call is refused with the reason; it registers
//! again by itself. Its leases expire as any other.
//!
//! Nothing here is durable: the queues and the leases are rebuilt from the runs' states after
//! a restart, and workers register again.

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
    /// Its last call of any kind.
    pub last_seen: Instant,
    /// Its last heartbeat (or registration): what liveness is judged by, since a worker
    /// heartbeats every third of a lease whatever it does, and a frozen one's long-polls stay
    /// open without it.
    pub last_heartbeat: Instant,
}

impl Worker {
    /// Whether it offers `action` and carries every one of `labels`.
    pub(crate) fn serves(&self, action: &str, labels: &BTreeMap<String, String>) -> bool {
        self.actions.contains(action) && labels.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

/// What a task needs of a worker: its action, and the labels its step requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Capability {
    action: String,
    labels: BTreeMap<String, String>,
}

impl Capability {
    fn of(task: &TaskSpec) -> Capability {
        Capability {
            action: task.action.clone(),
            labels: task.labels.clone(),
        }
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

/// A ready task and its place in the arrival order.
struct Queued {
    seq: u64,
    /// When it was queued.
    since: Instant,
    task: TaskSpec,
}

pub struct Dispatcher<G> {
    /// Ready tasks per capability, each queue in arrival order.
    queues: HashMap<Capability, VecDeque<Queued>>,
    /// Tasks in all queues.
    queued: usize,
    next_seq: u64,
    workers: HashMap<String, Worker>,
    /// Workers fenced for silence, and when: their next call is refused with the reason.
    fenced: HashMap<String, Instant>,
    waiters: VecDeque<Waiter<G>>,
    leases: HashMap<u64, Lease>,
    /// Leases a worker must drop, told on its next heartbeat.
    abandoned: HashMap<String, Vec<(TaskId, u64)>>,
    /// Containment is paused: tasks of a containment family stay queued (dry runs excepted).
    paused: bool,
    /// The action families the kill switch holds (the operator policy's `containment`),
    /// undos included: lifting a block or enabling an account changes the world too.
    containment: Vec<String>,
    /// A worker unheard for longer than this is fenced: the lease.
    silence_max: Duration,
}

/// Whether the door holds `task`: containment is paused and the task is of a family it holds
/// (a dry run never is).
fn held_by(paused: bool, containment: &[String], task: &TaskSpec) -> bool {
    paused
        && !task.dry_run
        && containment
            .iter()
            .any(|f| riposte_playbooks::platform::action_matches(f, &task.action))
}

/// How many silences a fenced worker is remembered for (then it is simply unknown).
const FENCED_REMEMBERED: u32 = 10;

impl<G> Dispatcher<G> {
    /// An empty dispatcher fencing workers unheard for longer than `lease`.
    pub fn new(lease: Duration, containment: Vec<String>) -> Dispatcher<G> {
        Dispatcher {
            queues: HashMap::new(),
            queued: 0,
            next_seq: 0,
            workers: HashMap::new(),
            fenced: HashMap::new(),
            waiters: VecDeque::new(),
            leases: HashMap::new(),
            abandoned: HashMap::new(),
            paused: false,
            containment,
            silence_max: lease,
        }
    }

    pub fn queue_len(&self) -> usize {
        self.queued
    }

    /// Queues a ready task at `now`.
    pub fn enqueue(&mut self, task: TaskSpec, now: Instant) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queued += 1;
        self.queues
            .entry(Capability::of(&task))
            .or_default()
            .push_back(Queued {
                seq,
                since: now,
                task,
            });
    }

    /// Per action: the tasks queued and how long the oldest has waited at `now`.
    pub fn queue_ages(&self, now: Instant) -> Vec<(String, u64, Duration)> {
        let mut by_action: BTreeMap<&str, (u64, Duration)> = BTreeMap::new();
        for (capability, queue) in &self.queues {
            let Some(oldest) = queue.front() else {
                continue;
            };
            let entry = by_action.entry(&capability.action).or_default();
            entry.0 += queue.len() as u64;
            entry.1 = entry.1.max(now.saturating_duration_since(oldest.since));
        }
        by_action
            .into_iter()
            .map(|(action, (n, age))| (action.to_owned(), n, age))
            .collect()
    }

    /// Replaces the families the kill switch holds (a policy reload).
    pub fn set_containment(&mut self, families: Vec<String>) {
        self.containment = families;
    }

    /// Pauses or resumes containment at the door: while paused, no task of a containment
    /// family leaves the queue.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the door holds `task` now.
    pub fn is_held(&self, task: &TaskSpec) -> bool {
        held_by(self.paused, &self.containment, task)
    }

    /// The queued tasks the door holds now.
    pub fn held(&self) -> Vec<UnitRef> {
        self.queues
            .values()
            .flatten()
            .filter(|q| self.is_held(&q.task))
            .map(|q| q.task.unit)
            .collect()
    }

    /// Takes out the queued tasks that no registered worker offers (with their labels) and the
    /// door does not hold, oldest first.
    pub fn take_unoffered(&mut self) -> Vec<TaskSpec> {
        let unoffered: Vec<Capability> = self
            .queues
            .keys()
            .filter(|c| !self.serves(&c.action, &c.labels))
            .cloned()
            .collect();
        let mut taken = Vec::new();
        for capability in unoffered {
            let Some(queue) = self.queues.get_mut(&capability) else {
                continue;
            };
            let (held, free): (VecDeque<Queued>, VecDeque<Queued>) = queue
                .drain(..)
                .partition(|q| held_by(self.paused, &self.containment, &q.task));
            *queue = held;
            if queue.is_empty() {
                self.queues.remove(&capability);
            }
            self.queued -= free.len();
            taken.extend(free);
        }
        taken.sort_by_key(|q| q.seq);
        taken.into_iter().map(|q| q.task).collect()
    }

    /// Whether some registered worker offers `action` with `labels`.
    pub fn serves(&self, action: &str, labels: &BTreeMap<String, String>) -> bool {
        self.workers.values().any(|w| w.serves(action, labels))
    }

    /// Adds (or replaces) a worker; a fenced one is forgiven.
    pub fn register(&mut self, worker: Worker) {
        self.fenced.remove(&worker.id);
        self.workers.insert(worker.id.clone(), worker);
    }

    /// Removes `ids` from the registry with their long-polls (no longer allowed): their next
    /// call is answered "unknown worker", and a new registration is checked again.
    pub fn evict(&mut self, ids: &[String]) {
        for id in ids {
            self.workers.remove(id);
        }
        let workers = &self.workers;
        self.waiters.retain(|w| workers.contains_key(&w.worker));
    }

    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// A registered worker by its key.
    pub fn worker(&self, id: &str) -> Option<&Worker> {
        self.workers.get(id)
    }

    pub fn has_workers(&self) -> bool {
        !self.workers.is_empty()
    }

    /// Records a call from `worker` at `now` (a `heartbeat` or another). `Err` when it is not
    /// registered, with when it was fenced if it was.
    pub fn touch(
        &mut self,
        worker: &str,
        now: Instant,
        heartbeat: bool,
    ) -> Result<(), Option<Instant>> {
        match self.workers.get_mut(worker) {
            Some(w) => {
                w.last_seen = now;
                if heartbeat {
                    w.last_heartbeat = now;
                }
                Ok(())
            }
            None => Err(self.fenced.get(worker).copied()),
        }
    }

    /// Whether `worker` heartbeat within the last lease at `now`.
    fn is_live(&self, worker: &Worker, now: Instant) -> bool {
        now.saturating_duration_since(worker.last_heartbeat) < self.silence_max
    }

    /// How long a worker may stay unheard before it is fenced.
    pub fn silence_max(&self) -> Duration {
        self.silence_max
    }

    /// Fences every worker without a heartbeat for [`Dispatcher::silence_max`] at `now`, with
    /// its long-polls; answers who, with how long each went without one. Called before the
    /// leases that expired at `now` are handed out again, so none goes back to a fenced worker.
    pub fn fence_silent(&mut self, now: Instant) -> Vec<(String, Duration)> {
        let silent: Vec<(String, Duration)> = self
            .workers
            .values()
            .filter(|w| !self.is_live(w, now))
            .map(|w| {
                (
                    w.id.clone(),
                    now.saturating_duration_since(w.last_heartbeat),
                )
            })
            .collect();
        for (id, _) in &silent {
            self.workers.remove(id);
            self.fenced.insert(id.clone(), now);
        }
        if !silent.is_empty() {
            let workers = &self.workers;
            self.waiters.retain(|w| workers.contains_key(&w.worker));
        }
        let remembered = self.silence_max * FENCED_REMEMBERED;
        self.fenced
            .retain(|_, at| now.saturating_duration_since(*at) < remembered);
        silent
    }

    /// Removes and returns the oldest queued task `worker` can run and the door lets through.
    pub fn take_task_for(&mut self, worker: &str) -> Option<TaskSpec> {
        let worker = self.workers.get(worker)?;
        let (capability, index) = self.oldest_for(worker)?;
        self.take(&capability, index)
    }

    /// A waiting long-poll of a live worker and the oldest task it can run, both removed; the
    /// oldest long-poll that has one goes first.
    pub fn take_match(&mut self, now: Instant) -> Option<(Waiter<G>, TaskSpec)> {
        self.waiters.retain(|w| !w.reply.is_closed());
        let (at, capability, index) =
            self.waiters.iter().enumerate().find_map(|(at, waiter)| {
                let worker = self.workers.get(&waiter.worker)?;
                if !self.is_live(worker, now) {
                    return None; // fenced at the next tick
                }
                let (capability, index) = self.oldest_for(worker)?;
                Some((at, capability, index))
            })?;
        let task = self.take(&capability, index)?;
        let waiter = self.waiters.remove(at)?;
        Some((waiter, task))
    }

    /// Where the oldest task `worker` can run is: its capability and its place in that queue
    /// (past the tasks the door holds).
    fn oldest_for(&self, worker: &Worker) -> Option<(Capability, usize)> {
        self.queues
            .iter()
            .filter(|(capability, _)| worker.serves(&capability.action, &capability.labels))
            .filter_map(|(capability, queue)| {
                let index = queue.iter().position(|q| !self.is_held(&q.task))?;
                Some((queue[index].seq, capability, index))
            })
            .min_by_key(|(seq, _, _)| *seq)
            .map(|(_, capability, index)| (capability.clone(), index))
    }

    fn take(&mut self, capability: &Capability, index: usize) -> Option<TaskSpec> {
        let queue = self.queues.get_mut(capability)?;
        let queued = queue.remove(index)?;
        if queue.is_empty() {
            self.queues.remove(capability);
        }
        self.queued -= 1;
        Some(queued.task)
    }

    /// Takes `unit`'s task out of its queue, if it is there.
    pub fn withdraw(&mut self, unit: UnitRef) {
        let found = self.queues.iter().find_map(|(capability, queue)| {
            let index = queue.iter().position(|q| q.task.unit == unit)?;
            Some((capability.clone(), index))
        });
        if let Some((capability, index)) = found {
            self.take(&capability, index);
        }
    }

    pub fn add_waiter(&mut self, waiter: Waiter<G>) {
        self.waiters.push_back(waiter);
    }

    /// Puts back a long-poll [`Dispatcher::take_match`] took, first in line again.
    pub fn return_waiter(&mut self, waiter: Waiter<G>) {
        self.waiters.push_front(waiter);
    }

    pub fn insert_lease(&mut self, token: u64, lease: Lease) {
        self.leases.insert(token, lease);
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

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_scheduler::state::{RunId, Slot};

    const LEASE: Duration = Duration::from_secs(10);

    fn task(item: u32, action: &str, labels: &[(&str, &str)]) -> TaskSpec {
        TaskSpec {
            unit: UnitRef {
                run: RunId(uuid::Uuid::from_u128(1)),
                slot: Slot::Step { step: 0, item },
            },
            attempt: 1,
            step_id: "s".into(),
            action: action.into(),
            input: serde_json::Value::Null,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            timeout_ms: 1000,
            dry_run: false,
            containment: false,
        }
    }

    fn worker(id: &str, actions: &[&str], labels: &[(&str, &str)], now: Instant) -> Worker {
        Worker {
            id: id.into(),
            name: id.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            concurrency: 1,
            last_seen: now,
            last_heartbeat: now,
        }
    }

    fn item(task: Option<TaskSpec>) -> Option<u32> {
        task.map(|t| match t.unit.slot {
            Slot::Step { item, .. } => item,
            _ => unreachable!(),
        })
    }

    #[test]
    fn a_worker_gets_the_oldest_task_it_serves_and_nothing_it_cannot() {
        let now = crate::clock::Clock::manual(0).monotonic();
        let mut d: Dispatcher<()> = Dispatcher::new(LEASE, vec!["firewall.block_ip".into()]);
        d.enqueue(task(0, "firewall.block_ip", &[]), now);
        d.enqueue(task(1, "core.noop", &[("pool", "b")]), now);
        d.enqueue(task(2, "core.noop", &[]), now);
        d.enqueue(task(3, "core.noop", &[("pool", "a")]), now);
        d.register(worker("w", &["core.noop"], &[("pool", "a")], now));
        assert_eq!(item(d.take_task_for("w")), Some(2));
        assert_eq!(item(d.take_task_for("w")), Some(3));
        assert_eq!(item(d.take_task_for("w")), None);
        assert_eq!(d.queue_len(), 2, "what it cannot serve stays queued");
        assert!(!d.serves("firewall.block_ip", &BTreeMap::new()));
        d.withdraw(task(0, "firewall.block_ip", &[]).unit);
        assert_eq!(d.queue_len(), 1);
    }

    #[test]
    fn a_worker_without_a_heartbeat_for_a_lease_is_passed_over_then_fenced_until_it_registers() {
        let start = crate::clock::Clock::manual(0).monotonic();
        let mut d: Dispatcher<()> = Dispatcher::new(LEASE, vec!["firewall.block_ip".into()]);
        d.register(worker("frozen", &["core.noop"], &[], start));
        let (frozen_poll, _rx) = oneshot::channel();
        d.add_waiter(Waiter {
            worker: "frozen".into(),
            reply: frozen_poll,
        });
        let later = start + LEASE;
        d.register(worker("live", &["core.noop"], &[], later));
        let (live_poll, _rx2) = oneshot::channel();
        d.add_waiter(Waiter {
            worker: "live".into(),
            reply: live_poll,
        });
        d.enqueue(task(0, "core.noop", &[]), start);
        let (waiter, _) = d.take_match(later).expect("a match");
        assert_eq!(
            waiter.worker, "live",
            "the older poll of a silent worker is passed over"
        );

        let fenced = d.fence_silent(later);
        assert_eq!(fenced, [("frozen".to_string(), LEASE)]);
        assert_eq!(d.touch("frozen", later, true), Err(Some(later)));
        assert_eq!(d.touch("nobody", later, true), Err(None));
        d.enqueue(task(1, "core.noop", &[]), later);
        assert!(d.take_match(later).is_none(), "its poll left with it");
        d.register(worker("frozen", &["core.noop"], &[], later));
        assert_eq!(d.touch("frozen", later, false), Ok(()));
    }
}
