//! What a stored run needs again after a restart: the task of each queued unit, dispatch
//! commands for all of them, and the earliest time something of the run is due.

use super::*;

/// The task for a queued unit.
pub(crate) fn task_spec(state: &RunState, playbook: &Playbook, unit: UnitRef) -> Option<TaskSpec> {
    let (step, action, unit_state) = match unit.slot {
        Slot::Step { step, item } => {
            let u = state.steps.get(step)?.units.get(item as usize)?;
            (step, playbook.steps[step].action.clone(), u)
        }
        Slot::Undo(n) => {
            let entry = state.undo.get(n as usize)?;
            (entry.step, entry.action.clone(), &entry.unit)
        }
        Slot::Health { step } => {
            let gate = state.steps.get(step)?.waves.as_ref()?.gate.as_ref()?;
            let action = playbook.steps[step]
                .waves
                .as_ref()?
                .health
                .as_ref()?
                .action
                .clone();
            (step, action, gate)
        }
    };
    let spec = &playbook.steps[step];
    let containment = matches!(unit.slot, Slot::Step { .. })
        && riposte_playbooks::actions::find(&action).is_some_and(|a| a.containment);
    Some(TaskSpec {
        unit,
        attempt: unit_state.attempt,
        step_id: spec.id.clone(),
        action,
        input: unit_state.input.clone(),
        labels: unit_state.labels.clone(),
        timeout_ms: spec.timeout_ms,
        dry_run: state.dry_run,
        containment,
    })
}

/// Dispatch commands for every queued unit of a run (after a restart).
pub(crate) fn redispatch(state: &RunState, playbook: &Playbook) -> Vec<Command> {
    let mut slots = Vec::new();
    for (step, s) in state.steps.iter().enumerate() {
        for (item, unit) in s.units.iter().enumerate() {
            if unit.status == UnitStatus::Queued {
                slots.push(Slot::Step {
                    step,
                    item: item as u32,
                });
            }
        }
        if s.waves
            .as_ref()
            .and_then(|w| w.gate.as_ref())
            .is_some_and(|g| g.status == UnitStatus::Queued)
        {
            slots.push(Slot::Health { step });
        }
    }
    for (n, entry) in state.undo.iter().enumerate() {
        if entry.unit.status == UnitStatus::Queued {
            slots.push(Slot::Undo(n as u32));
        }
    }
    slots
        .into_iter()
        .filter_map(|slot| {
            task_spec(
                state,
                playbook,
                UnitRef {
                    run: state.id,
                    slot,
                },
            )
        })
        .map(Command::Dispatch)
        .collect()
}

/// The earliest time something of this run is due.
pub(crate) fn next_due(state: &RunState) -> Option<i64> {
    let units = super::RunIndex::build(state).next_due();
    next_due_of_run(state).into_iter().chain(units).min()
}

/// The earliest time something of this run is due, besides its step units and undo entries
/// (which the run's index keeps in time order): the deadline, health gates, waves held for
/// their window, sleeps, approvals. Looks at each step once, never at its units.
pub(crate) fn next_due_of_run(state: &RunState) -> Option<i64> {
    if state.status.is_terminal() {
        return None;
    }
    let mut due: Vec<i64> = Vec::new();
    if state.phase == Phase::Steps {
        due.extend(state.deadline_ms);
    }
    for s in &state.steps {
        if let Some(UnitStatus::Backoff { due_ms }) = s
            .waves
            .as_ref()
            .and_then(|w| w.gate.as_ref())
            .map(|g| &g.status)
        {
            due.push(*due_ms);
        }
        if s.status == StepStatus::Sleeping {
            due.extend(s.due_ms);
        }
        // `i64::MAX`: held with no opening in sight, until an operator acts.
        let held = s.waves.as_ref().and_then(|w| w.held_until_ms);
        due.extend(held.filter(|at| *at != i64::MAX));
        if s.status == StepStatus::AwaitingApproval {
            due.extend(s.approval.as_ref().map(|a| a.due_ms));
        }
    }
    due.into_iter().min()
}
