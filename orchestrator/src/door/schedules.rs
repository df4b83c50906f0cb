//! Schedule requests: apply, list, read the ledger, trigger, pause and resume.

use std::sync::Arc;

use riposte_playbooks::Diagnostic;

use super::{Actor, Error, Kind, Node, Request, requests};
use crate::engine::{ApplyOutcome, ScheduleView};
use crate::store::{LedgerEntry, LedgerPage};

requests! {
    ApplySchedule,
    ListSchedules,
    GetScheduleHistory,
    TriggerSchedule,
    SetSchedulePaused,
    DeleteSchedule,
}

/// Stores (or replaces) a schedule from its YAML source.
pub struct ApplySchedule {
    pub source: String,
}

/// What applying a schedule did.
pub enum ScheduleApplied {
    /// The source is invalid: every problem, nothing changed.
    Invalid(Vec<Diagnostic>),
    /// The schedule as applied, and whether it was already stored as it is.
    Applied {
        view: Box<ScheduleView>,
        unchanged: bool,
    },
}

impl Request for ApplySchedule {
    type Reply = ScheduleApplied;
    const KIND: Kind = Kind::ApplySchedule;

    fn target(&self) -> String {
        super::source_name(&self.source)
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<ScheduleApplied, Error> {
        let outcome = node.lock_for(actor)?.apply_schedule(&self.source)?;
        match outcome {
            ApplyOutcome::Invalid(diagnostics) => Ok(ScheduleApplied::Invalid(diagnostics)),
            ApplyOutcome::Applied(pending) => {
                let (view, unchanged) = node.durable(pending).await?;
                Ok(ScheduleApplied::Applied { view, unchanged })
            }
        }
    }
}

/// Every schedule with its state.
pub struct ListSchedules;

impl Request for ListSchedules {
    type Reply = Vec<ScheduleView>;
    const KIND: Kind = Kind::ListSchedules;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<Vec<ScheduleView>, Error> {
        Ok(node.lock()?.schedules.list()?)
    }
}

/// A schedule's ledger, newest first.
pub struct GetScheduleHistory {
    pub name: String,
    /// The entry the previous page ended with (`scheduled_ms`, `manual`); `None` first.
    pub before: Option<(i64, bool)>,
    /// 0 for the default.
    pub limit: usize,
}

impl Request for GetScheduleHistory {
    type Reply = LedgerPage;
    const KIND: Kind = Kind::GetScheduleHistory;

    async fn serve(self, node: &Arc<Node>, _actor: &Actor) -> Result<LedgerPage, Error> {
        let engine = node.lock()?;
        Ok(engine
            .schedules
            .history(&self.name, self.before, self.limit)?)
    }
}

/// Fires one run of a schedule now, through its overlap policy.
pub struct TriggerSchedule {
    pub name: String,
}

impl Request for TriggerSchedule {
    /// The manual occurrence's ledger entry.
    type Reply = LedgerEntry;
    const KIND: Kind = Kind::TriggerSchedule;

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<LedgerEntry, Error> {
        let by = actor.id();
        let pending = node.lock_for(actor)?.trigger_schedule(&self.name, &by)?;
        let entry = node.durable(pending).await?;
        tracing::info!(schedule = %self.name, by = %by, fate = ?entry.fate, "schedule.triggered");
        Ok(entry)
    }
}

/// Pauses or resumes a schedule; doing it twice changes nothing.
pub struct SetSchedulePaused {
    pub name: String,
    pub paused: bool,
    pub reason: String,
}

impl Request for SetSchedulePaused {
    type Reply = ScheduleView;
    const KIND: Kind = Kind::SetSchedulePaused;

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<ScheduleView, Error> {
        let pending = node.lock_for(actor)?.schedules.pause(
            &self.name,
            self.paused,
            actor.id(),
            self.reason,
        )?;
        node.durable(pending).await
    }
}

/// Deletes a schedule; its ledger stays readable.
pub struct DeleteSchedule {
    pub name: String,
}

impl Request for DeleteSchedule {
    /// The schedule's name.
    type Reply = String;
    const KIND: Kind = Kind::DeleteSchedule;

    fn target(&self) -> String {
        self.name.clone()
    }

    async fn serve(self, node: &Arc<Node>, actor: &Actor) -> Result<String, Error> {
        let pending = node.lock_for(actor)?.delete_schedule(&self.name)?;
        node.durable(pending).await
    }
}
