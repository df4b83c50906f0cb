//! What the scheduler keeps beside each active run so that an event costs the same whatever
//! the run's size: per step, its units counted by class and where its first pending unit may
//! be; the undo entries (and among them the grants) counted by class; every unit with a due
//! time, in time order.
//!
//! Never stored: built from the run when the scheduler adopts it, then kept in step by the
//! transitions. `Tx::unit_mut` notes a unit's class and due time before handing it out to be
//! changed, and the index settles what changed ([`RunIndex::refresh`]) before it answers; a
//! change of many units at once (a step's units rendered, cancelled, retried) makes it count
//! again from the run. Debug builds check it against a recount after every transition on a
//! small run.

use std::collections::BTreeSet;

use crate::state::{RunState, Slot, Unit, UnitStatus};

/// A unit's status, as the counts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Pending,
    /// Queued, leased or backing off: counts against a `for_each`'s concurrency.
    Active,
    Succeeded,
    Failed,
    Cancelled,
}

impl Class {
    fn of(unit: &Unit) -> Class {
        match unit.status {
            UnitStatus::Pending => Class::Pending,
            UnitStatus::Queued | UnitStatus::Leased { .. } | UnitStatus::Backoff { .. } => {
                Class::Active
            }
            UnitStatus::Succeeded => Class::Succeeded,
            UnitStatus::Failed => Class::Failed,
            UnitStatus::Cancelled => Class::Cancelled,
        }
    }
}

/// Units counted by class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub pending: u32,
    pub active: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
}

impl Tally {
    fn count(&mut self, class: Class, add: bool) {
        let field = match class {
            Class::Pending => &mut self.pending,
            Class::Active => &mut self.active,
            Class::Succeeded => &mut self.succeeded,
            Class::Failed => &mut self.failed,
            Class::Cancelled => &mut self.cancelled,
        };
        match add {
            true => *field += 1,
            false => *field -= 1,
        }
    }

    /// Not ended: pending or active.
    pub fn open(&self) -> u32 {
        self.pending + self.active
    }
}

/// What the index knew of a unit before it was handed out to be changed: its class (`None`
/// when it did not exist yet) and due time.
type Noted = (Slot, Option<(Class, Option<i64>)>);

#[derive(Debug, Default)]
pub(crate) struct RunIndex {
    steps: Vec<Tally>,
    /// Per step: no unit before this one is pending.
    first_pending: Vec<u32>,
    undo: Tally,
    /// The undo entries that are grants.
    grants: Tally,
    /// Step units and undo entries with a due time: a backoff, a queued step unit's
    /// `start_by`, an open grant's expiry.
    timed: BTreeSet<(i64, Slot)>,
    noted: Vec<Noted>,
    /// Many units changed at once: count again at the next read.
    stale: bool,
}

impl RunIndex {
    /// The index of `run`, counted from scratch.
    pub fn build(run: &RunState) -> RunIndex {
        let mut index = RunIndex::default();
        index.recount(run);
        index
    }

    fn recount(&mut self, run: &RunState) {
        self.steps = vec![Tally::default(); run.steps.len()];
        self.first_pending = vec![0; run.steps.len()];
        self.undo = Tally::default();
        self.grants = Tally::default();
        self.timed.clear();
        self.noted.clear();
        self.stale = false;
        for (step, state) in run.steps.iter().enumerate() {
            let mut first = None;
            for (item, unit) in state.units.iter().enumerate() {
                let item = item as u32;
                if unit.status == UnitStatus::Pending {
                    first.get_or_insert(item);
                }
                self.add(run, Slot::Step { step, item });
            }
            self.first_pending[step] = first.unwrap_or(state.units.len() as u32);
        }
        for n in 0..run.undo.len() {
            self.add(run, Slot::Undo(n as u32));
        }
    }

    /// Notes what a unit is before it changes (once per unit until the next refresh).
    pub fn note(&mut self, run: &RunState, slot: Slot) {
        if self.stale || matches!(slot, Slot::Health { .. }) {
            return;
        }
        if self.noted.iter().any(|(s, _)| *s == slot) {
            return;
        }
        let before = unit(run, slot).map(|u| (Class::of(u), due(run, slot, u)));
        self.noted.push((slot, before));
    }

    /// Many units are about to change at once.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Settles every change since the last refresh.
    pub fn refresh(&mut self, run: &RunState) {
        if self.stale {
            return self.recount(run);
        }
        for (slot, before) in std::mem::take(&mut self.noted) {
            if let Some((class, due)) = before {
                self.tally_mut(slot).count(class, false);
                if let Some(due) = due {
                    self.timed.remove(&(due, slot));
                }
                if let (Some(grants), Slot::Undo(_)) = (self.grant_tally(run, slot), slot) {
                    grants.count(class, false);
                }
            }
            self.add(run, slot);
        }
    }

    fn add(&mut self, run: &RunState, slot: Slot) {
        let Some(unit) = unit(run, slot) else {
            return;
        };
        let class = Class::of(unit);
        self.tally_mut(slot).count(class, true);
        if let Some(grants) = self.grant_tally(run, slot) {
            grants.count(class, true);
        }
        if let Some(due) = due(run, slot, unit) {
            self.timed.insert((due, slot));
        }
        if let (Slot::Step { step, item }, Class::Pending) = (slot, class)
            && item < self.first_pending[step]
        {
            self.first_pending[step] = item;
        }
    }

    fn tally_mut(&mut self, slot: Slot) -> &mut Tally {
        match slot {
            Slot::Step { step, .. } => &mut self.steps[step],
            Slot::Undo(_) | Slot::Health { .. } => &mut self.undo,
        }
    }

    fn grant_tally(&mut self, run: &RunState, slot: Slot) -> Option<&mut Tally> {
        match slot {
            Slot::Undo(n) if run.undo.get(n as usize)?.grant.is_some() => Some(&mut self.grants),
            _ => None,
        }
    }

    pub fn step(&self, step: usize) -> Tally {
        debug_assert!(self.noted.is_empty() && !self.stale, "refreshed first");
        self.steps[step]
    }

    pub fn undo(&self) -> Tally {
        debug_assert!(self.noted.is_empty() && !self.stale, "refreshed first");
        self.undo
    }

    pub fn grants(&self) -> Tally {
        debug_assert!(self.noted.is_empty() && !self.stale, "refreshed first");
        self.grants
    }

    pub fn first_pending(&self, step: usize) -> u32 {
        self.first_pending[step]
    }

    /// Every unit before `item` of `step` is known not to be pending.
    pub fn pending_from(&mut self, step: usize, item: u32) {
        self.first_pending[step] = self.first_pending[step].max(item);
    }

    /// The units due by `now_ms`, earliest first.
    pub fn due_by(&self, now_ms: i64) -> Vec<Slot> {
        debug_assert!(self.noted.is_empty() && !self.stale, "refreshed first");
        self.timed
            .iter()
            .take_while(|(due, _)| *due <= now_ms)
            .map(|(_, slot)| *slot)
            .collect()
    }

    /// [`RunIndex::due_by`] after a refresh, for a caller that holds the run apart.
    pub fn due_by_refreshed(&mut self, run: &RunState, now_ms: i64) -> Vec<Slot> {
        self.refresh(run);
        self.due_by(now_ms)
    }

    /// The earliest due time of a unit.
    pub fn next_due(&self) -> Option<i64> {
        debug_assert!(self.noted.is_empty() && !self.stale, "refreshed first");
        self.timed.first().map(|(due, _)| *due)
    }

    /// Debug builds: what differs from a recount (`first_pending` may lag behind: it is a
    /// lower bound).
    pub fn differs(&self, run: &RunState) -> Option<String> {
        let fresh = RunIndex::build(run);
        let lagging = fresh
            .first_pending
            .iter()
            .zip(&self.first_pending)
            .any(|(fresh, kept)| kept > fresh);
        let same = fresh.steps == self.steps
            && fresh.undo == self.undo
            && fresh.grants == self.grants
            && fresh.timed == self.timed
            && !lagging;
        (!same).then(|| format!("kept {self:?}\nrecounted {fresh:?}"))
    }
}

fn unit(run: &RunState, slot: Slot) -> Option<&Unit> {
    match slot {
        Slot::Step { step, item } => run.steps.get(step)?.units.get(item as usize),
        Slot::Undo(n) => run.undo.get(n as usize).map(|e| &e.unit),
        Slot::Health { .. } => None,
    }
}

/// When something of a unit is due: its backoff, a queued step unit's `start_by` (unless held
/// by containment: it then waits for an operator, not for a worker), an open grant's expiry.
fn due(run: &RunState, slot: Slot, unit: &Unit) -> Option<i64> {
    match (&unit.status, slot) {
        (UnitStatus::Backoff { due_ms }, _) => Some(*due_ms),
        (UnitStatus::Queued, Slot::Step { .. }) if !unit.held => unit.start_by_ms,
        (UnitStatus::Pending, Slot::Undo(n)) => run
            .undo
            .get(n as usize)?
            .grant
            .as_ref()
            .map(|g| g.expires_ms),
        _ => None,
    }
}
