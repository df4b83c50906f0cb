//! Run requests: start, read, watch, cancel and repair a run; decide an approval; list and
//! revoke grants.

use std::sync::Arc;

use riposte_playbooks::Playbook;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState};
use riposte_scheduler::{DecisionRequest, Repair};
use tokio::sync::{broadcast, mpsc};

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::auth::Permission;
use crate::engine::{self, ApprovalView, GrantView, StartRequest, Watch};
use crate::store::RunFilter;

requests! {
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
}

/// A run with the playbook version it runs, and why each step's queued items wait (see
/// [`Runs::waiting`](crate::engine::Runs::waiting)).
pub struct RunView {
    pub state: RunState,
    pub playbook: Arc<Playbook>,
    pub waiting: Vec<String>,
}

impl RunView {
    fn of(engine: &mut crate::engine::Engine, state: RunState) -> Result<RunView, Error> {
        let playbook = engine.runs.playbook(&state.playbook, state.version)?;
        let waiting = engine.runs.waiting(&state, &playbook);
        Ok(RunView {
            state,
            playbook,
            waiting,
        })
    }
}

impl Node {
    /// The run `id` as it is now, with its playbook.
    fn run_view(&self, id: RunId) -> Result<RunView, Error> {
        let mut engine = self.lock()?;
        let state = engine.runs.run(id)?;
        RunView::of(&mut engine, state)
    }
}

/// Starts a run (or answers the run that already claimed its idempotency key).
pub struct StartRun(pub StartRequest);

/// A started run, and whether it existed before (same idempotency key).
pub struct Started {
    pub run: RunView,
    pub existing: bool,
}

impl Request for StartRun {
    type Reply = Started;
    const KIND: Kind = Kind::StartRun;

    fn target(&self) -> String {
        self.0.playbook.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<Started, Error> {
        let mut start = self.0;
        actor.check_run(&start.playbook)?;
        if actor.principal.is_some() {
            start.requested_by = actor.id();
        }
        let (pending, view) = {
            let mut engine = node.lock_for(actor)?;
            let pending = engine.runs.start_run(start)?;
            let (state, _) = pending.peek();
            let view = RunView::of(&mut engine, state.clone())?;
            (pending, view)
        };
        let (state, existing) = node.durable(pending).await?;
        if !existing {
            tracing::info!(run.id = %state.id, playbook = %state.playbook, "run.started");
        }
        Ok(Started {
            run: RunView { state, ..view },
            existing,
        })
    }
}

/// One run.
pub struct GetRun {
    pub run: RunId,
}

impl Request for GetRun {
    type Reply = RunView;
    const KIND: Kind = Kind::GetRun;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<RunView, Error> {
        node.run_view(self.run)
    }
}

/// The newest runs, optionally of one playbook or in one status.
pub struct ListRuns {
    pub filter: RunFilter,
    /// The run the previous page ended with; `None` for the first page.
    pub before: Option<RunId>,
    pub limit: usize,
}

/// A page of runs and the run to continue before, when there may be more.
pub struct RunsPage {
    pub runs: Vec<RunView>,
    pub next: Option<RunId>,
}

impl Request for ListRuns {
    type Reply = RunsPage;
    const KIND: Kind = Kind::ListRuns;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<RunsPage, Error> {
        // The page is read from the store without the engine's lock (every committed change
        // is there); the lock is taken once, for the views.
        let store = node.lock()?.store().clone();
        let read = move || store.runs_page(&self.filter, self.before, self.limit);
        let page = super::blocking(read).await.map_err(engine::Error::Store)?;
        let mut engine = node.lock()?;
        let runs = page
            .runs
            .into_iter()
            .map(|state| RunView::of(&mut engine, state))
            .collect::<Result<_, _>>()?;
        Ok(RunsPage {
            runs,
            next: page.next,
        })
    }
}

/// A run's history so far, then, while it is active, each new entry.
pub struct WatchRun {
    pub run: RunId,
}

/// History entries buffered for one watcher before the producer waits.
const WATCH_BUFFER: usize = 256;

impl Request for WatchRun {
    /// Every entry, each only once it is durable; ends after `run.finished` (or at once after
    /// the history of an ended run).
    type Reply = mpsc::Receiver<HistoryEvent>;
    const KIND: Kind = Kind::WatchRun;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Self::Reply, Error> {
        let pending = node.lock()?.runs.watch(self.run)?;
        let watch = node.durable(pending).await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        tokio::spawn(follow(node.clone(), self.run, watch, tx));
        Ok(rx)
    }
}

/// Sends the stored history (for a finished run, all of it, including results rejected after
/// the end), then live entries, each only once durable; stops after `run.finished` or when
/// the watcher goes away.
async fn follow(node: Arc<Node>, id: RunId, watch: Watch, tx: mpsc::Sender<HistoryEvent>) {
    let mut last = 0;
    for event in watch.history {
        last = event.seq;
        if tx.send(event).await.is_err() {
            return;
        }
    }
    let Some(mut live) = watch.live else { return };
    loop {
        let (seq, event) = match live.recv().await {
            Ok(pair) => pair,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed entries are in the store: send them, then go on live.
                match node.send_stored(id, &mut last, &tx).await {
                    Sent::All => continue,
                    Sent::Final | Sent::Stop => return,
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The run finished; anything not yet sent is in the store.
                let _ = node.send_stored(id, &mut last, &tx).await;
                return;
            }
        };
        if event.seq <= last {
            continue;
        }
        if seq.durable().await.is_err() {
            return;
        }
        last = event.seq;
        let done = is_final(&event);
        if tx.send(event).await.is_err() || done {
            return;
        }
    }
}

/// How sending stored entries ended.
enum Sent {
    All,
    Final,
    Stop,
}

impl Node {
    /// Sends the stored entries of run `id` after `last`, once everything written is durable.
    async fn send_stored(
        &self,
        id: RunId,
        last: &mut u64,
        tx: &mpsc::Sender<HistoryEvent>,
    ) -> Sent {
        let rest = match self.lock() {
            Ok(engine) => engine.runs.history_after(id, *last),
            Err(_) => return Sent::Stop,
        };
        let Ok(rest) = rest else {
            return Sent::Stop;
        };
        if self.flush().await.is_err() {
            return Sent::Stop;
        }
        for event in rest {
            *last = event.seq;
            let done = is_final(&event);
            if tx.send(event).await.is_err() {
                return Sent::Stop;
            }
            if done {
                return Sent::Final;
            }
        }
        Sent::All
    }
}

fn is_final(event: &HistoryEvent) -> bool {
    event.kind == "run.finished"
}

/// Cancels a run: nothing new starts, open undos run. A run another principal started is
/// cancelled only with `respond-admin`.
pub struct CancelRun {
    pub run: RunId,
    pub reason: String,
}

impl Request for CancelRun {
    type Reply = RunView;
    const KIND: Kind = Kind::CancelRun;

    fn target(&self) -> String {
        self.run.to_string()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<RunView, Error> {
        let by = actor.id();
        let pending = {
            let mut engine = node.lock_for(actor)?;
            let run = engine.runs.run(self.run)?;
            match run.requested_by == by {
                true if !actor.may(Permission::RespondAdmin) => actor.check_run(&run.playbook)?,
                true => {}
                false => actor.check(Permission::RespondAdmin, "cancel runs others started")?,
            }
            engine.runs.cancel_run(self.run, self.reason, by)?
        };
        node.durable(pending).await?;
        tracing::info!(run.id = %self.run, "run.cancelled");
        node.run_view(self.run)
    }
}

/// An operator's repair of a run: retry or skip a failed step, resume a halted rollout.
pub struct RepairRun {
    pub run: RunId,
    pub repair: Repair,
    pub step: String,
    pub reason: String,
}

impl Request for RepairRun {
    type Reply = RunView;
    const KIND: Kind = Kind::RepairRun;

    fn target(&self) -> String {
        format!("{}/{}", self.run, self.step)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<RunView, Error> {
        let pending = node.lock_for(actor)?.runs.repair(
            self.run,
            self.repair,
            self.step,
            actor.id(),
            self.reason,
        )?;
        node.durable(pending).await?;
        node.run_view(self.run)
    }
}

/// A decision on an approval, by the actor: its principal decides, counted once, for the
/// approver groups the policy and its proof put it in.
pub struct Decide(pub DecisionRequest);

impl Request for Decide {
    type Reply = RunView;
    const KIND: Kind = Kind::Decide;

    fn target(&self) -> String {
        format!("{}/{}", self.0.run, self.0.step)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<RunView, Error> {
        let run = self.0.run;
        let decision = DecisionRequest {
            who: actor.id(),
            groups: actor.grants.groups.clone(),
            ..self.0
        };
        let pending = node.lock_for(actor)?.runs.decide(decision)?;
        node.durable(pending).await?;
        node.run_view(run)
    }
}

/// Every step waiting for a decision.
pub struct ListApprovals;

impl Request for ListApprovals {
    type Reply = Vec<ApprovalView>;
    const KIND: Kind = Kind::ListApprovals;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Vec<ApprovalView>, Error> {
        Ok(node.lock()?.runs.approvals())
    }
}

/// Every open grant.
pub struct ListGrants;

impl Request for ListGrants {
    type Reply = Vec<GrantView>;
    const KIND: Kind = Kind::ListGrants;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Vec<GrantView>, Error> {
        Ok(node.lock()?.runs.grants())
    }
}

/// Revokes a grant now (its undo runs) instead of at its TTL.
pub struct RevokeGrant {
    pub run: RunId,
    pub step: String,
    pub item: u32,
    pub reason: String,
}

impl Request for RevokeGrant {
    /// The grant as it is once the revoke is durable.
    type Reply = GrantView;
    const KIND: Kind = Kind::RevokeGrant;

    fn target(&self) -> String {
        format!("{}/{}/{}", self.run, self.step, self.item)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<GrantView, Error> {
        let RevokeGrant {
            run,
            step,
            item,
            reason,
        } = self;
        let by = actor.id();
        let (pending, grant) = {
            let mut engine = node.lock_for(actor)?;
            let pending = engine
                .runs
                .revoke_grant(run, step.clone(), item, by, reason)?;
            let grant = engine
                .runs
                .grants()
                .into_iter()
                .find(|g| g.run == run && g.step == step && g.item == item);
            (pending, grant)
        };
        node.durable(pending).await?;
        grant.ok_or_else(|| engine::Error::NotFound("the grant ended meanwhile".into()).into())
    }
}
