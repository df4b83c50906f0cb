//! What a transition changed in a run, record by record.
//!
//! A run is stored as small records: its head (status, phase, the steps without their units
//! and outputs), written with every change, and one record per unit, step output and undo
//! entry, written only when it changed. A [`Transition`](crate::Transition) names the records
//! it changed as [`Part`]s, so that a transition on one item of a 100,000-item `for_each`
//! writes that item, not the run.
//!
//! Marking is the job of whoever changes a unit, an output or an undo entry: `Tx::unit_mut`
//! and `Tx::dispatch` mark the unit they reach, bulk changes mark [`Part::Units`]. In debug
//! builds every transition on a small run is checked against a snapshot taken before it
//! ([`unmarked`]): a change nobody marked panics in the tests instead of being lost at the
//! next restart.

use std::collections::BTreeSet;

use crate::state::{RunId, RunState, Slot};

/// A record of a run, besides its head, that a transition changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// Every record: a run written for the first time.
    All,
    /// One unit of a step (a `for_each` item, or a plain step's single unit).
    Unit { step: usize, item: u32 },
    /// Every unit of a step: rendered when it started, or changed together.
    Units { step: usize },
    /// A step's output.
    Output { step: usize },
    /// One undo entry (compensation or grant).
    Undo(u32),
}

impl Part {
    /// The record a slot's unit lives in; a wave's health gate lives in the head.
    pub(crate) fn of(slot: Slot) -> Option<Part> {
        match slot {
            Slot::Step { step, item } => Some(Part::Unit { step, item }),
            Slot::Undo(n) => Some(Part::Undo(n)),
            Slot::Health { .. } => None,
        }
    }
}

/// The parts of every run a transition changed.
pub type Parts = BTreeSet<(RunId, Part)>;

/// Runs with more units than this are not snapshotted by the debug check (its cost would grow
/// with the square of the run).
const CHECKED_UNITS_MAX: usize = 256;

/// A copy of the run to check the transition against, when the check applies.
pub(crate) fn snapshot(state: &RunState) -> Option<RunState> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let units: usize = state.steps.iter().map(|s| s.units.len()).sum();
    (units + state.undo.len() <= CHECKED_UNITS_MAX).then(|| state.clone())
}

/// The records that differ between `before` and `after` that `parts` does not name.
pub(crate) fn unmarked(before: &RunState, after: &RunState, parts: &Parts) -> Vec<String> {
    let id = after.id;
    if parts.contains(&(id, Part::All)) {
        return Vec::new();
    }
    let marked = |part: Part| parts.contains(&(id, part));
    let mut missed = Vec::new();
    if before.params != after.params || before.trigger != after.trigger {
        missed.push("the run's input".to_string());
    }
    for (step, (b, a)) in before.steps.iter().zip(&after.steps).enumerate() {
        if b.output != a.output && !marked(Part::Output { step }) {
            missed.push(format!("output of step {step}"));
        }
        if marked(Part::Units { step }) {
            continue;
        }
        if b.units.len() != a.units.len() {
            missed.push(format!("units of step {step}"));
            continue;
        }
        for (item, (bu, au)) in b.units.iter().zip(&a.units).enumerate() {
            let item = item as u32;
            if bu != au && !marked(Part::Unit { step, item }) {
                missed.push(format!("step {step} item {item}"));
            }
        }
    }
    for (n, entry) in after.undo.iter().enumerate() {
        if before.undo.get(n) != Some(entry) && !marked(Part::Undo(n as u32)) {
            missed.push(format!("undo entry {n}"));
        }
    }
    missed
}
