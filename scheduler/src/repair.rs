//! Operator repair verbs instead of database surgery: retry a failed step, skip a step, resume
//! a halted rollout. Each is recorded with who and why, and refused with a reason when the
//! run's state does not allow it. A failed run can be reopened (retry or skip its failed step)
//! only if it ran no compensation: once undos ran, the world was put back and a new run is
//! the honest way forward.

use riposte_playbooks::Playbook;

use super::run::{Entry, Tx};
use super::state::{Phase, RunState, RunStatus, StepState, StepStatus, UnitStatus};
use super::{Error, Part, Repair};

/// Whether an ended run may be reopened by `repair` on `step`.
pub(crate) fn check_reopen(
    state: &RunState,
    playbook: &Playbook,
    repair: Repair,
    step: &str,
) -> Result<(), Error> {
    let index = step_index(playbook, state, step)?;
    if repair == Repair::Resume {
        return Err(Error::Refused(format!(
            "run {} has ended ({}); only a halted run resumes",
            state.id,
            state.status.as_str()
        )));
    }
    if state.status != RunStatus::Failed {
        return Err(Error::Refused(format!(
            "run {} has {}; only a failed run can be repaired",
            state.id,
            state.status.as_str()
        )));
    }
    if !state.undo.is_empty() {
        return Err(Error::Refused(format!(
            "run {} ran its compensations after failing; start a new run instead",
            state.id
        )));
    }
    if state.steps[index].status != StepStatus::Failed {
        return Err(Error::Refused(format!(
            "step `{step}` has not failed (it is {})",
            state.steps[index].status.as_str()
        )));
    }
    Ok(())
}

fn step_index(playbook: &Playbook, state: &RunState, step: &str) -> Result<usize, Error> {
    if step.is_empty() {
        return Ok(0);
    }
    playbook
        .step_index(step)
        .ok_or_else(|| Error::Invalid(format!("run {} has no step `{step}`", state.id)))
}

impl Tx<'_> {
    pub(crate) fn repair(
        &mut self,
        repair: Repair,
        step: &str,
        by: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let playbook = self.playbook;
        if self.run.status == RunStatus::Failed {
            let index = step_index(playbook, self.run, step)?;
            self.reopen(repair, index, by, reason);
            return Ok(());
        }
        if self.run.phase != Phase::Steps {
            return Err(Error::Refused(format!(
                "run {} is {}; it can only be cancelled",
                self.run.id,
                self.run.phase.as_str().replace('_', " ")
            )));
        }
        match repair {
            Repair::Resume => self.resume(by, reason),
            Repair::RetryStep => {
                let index = step_index(playbook, self.run, step)?;
                self.retry_items(index, by, reason)
            }
            Repair::SkipStep => {
                let index = step_index(playbook, self.run, step)?;
                self.skip_active(index, by, reason)
            }
        }
    }

    fn resume(&mut self, by: &str, reason: &str) -> Result<(), Error> {
        if self.run.status != RunStatus::Halted {
            return Err(Error::Refused(format!(
                "run {} is {}, not halted",
                self.run.id,
                self.run.status.as_str()
            )));
        }
        self.record(Entry::run("run.resumed", format!("by {by}: {reason}")));
        self.resume_waves();
        self.advance();
        Ok(())
    }

    /// In a halted rollout, puts the failed items of `step` back in line and resumes.
    fn retry_items(&mut self, step: usize, by: &str, reason: &str) -> Result<(), Error> {
        let id = self.step_id(step);
        let failed = self.run.steps[step]
            .units
            .iter()
            .any(|u| u.status == UnitStatus::Failed);
        if self.run.status != RunStatus::Halted || !failed {
            return Err(Error::Refused(format!(
                "step `{id}` has no failed item to retry in run {} ({})",
                self.run.id,
                self.run.status.as_str()
            )));
        }
        self.mark(Part::Units { step });
        for unit in self.run.steps[step]
            .units
            .iter_mut()
            .filter(|u| u.status == UnitStatus::Failed)
        {
            unit.status = UnitStatus::Pending;
            unit.attempt = 0;
            unit.error = None;
            unit.accepted_token = None;
        }
        self.record(Entry::step(
            "step.retry_requested",
            id,
            format!("by {by}: {reason}"),
        ));
        self.resume_waves();
        self.advance();
        Ok(())
    }

    /// Skips a step that has not ended, abandoning its leases.
    fn skip_active(&mut self, step: usize, by: &str, reason: &str) -> Result<(), Error> {
        let id = self.step_id(step);
        let status = self.run.steps[step].status;
        if status.is_terminal() {
            return Err(Error::Refused(format!(
                "step `{id}` has already {}",
                status.as_str()
            )));
        }
        self.mark(Part::Units { step });
        for unit in self.run.steps[step].units.iter_mut() {
            if let UnitStatus::Leased { token, .. } = unit.status {
                self.out.commands.push(super::Command::Abandon { token });
            }
            if !unit.status.is_terminal() {
                unit.status = UnitStatus::Cancelled;
            }
        }
        self.skip(step, format!("skipped by {by}: {reason}"));
        if self.run.status == RunStatus::Halted {
            self.resume_waves();
        }
        self.advance();
        Ok(())
    }

    /// Reopens a failed run: the failed step is retried or skipped, the steps the failure
    /// cancelled wait again.
    fn reopen(&mut self, repair: Repair, step: usize, by: &str, reason: &str) {
        let id = self.step_id(step);
        for index in 0..self.run.steps.len() {
            if index == step || self.run.steps[index].status == StepStatus::Cancelled {
                self.run.steps[index] = StepState::waiting();
                self.mark(Part::Units { step: index });
                self.mark(Part::Output { step: index });
            }
        }
        self.run.status = RunStatus::Running;
        self.run.phase = Phase::Steps;
        self.run.error = None;
        self.run.finished_at_ms = None;
        self.run.deadline_ms = None;
        match repair {
            Repair::SkipStep => {
                self.record(Entry::run("run.reopened", format!("by {by}: {reason}")));
                self.skip(step, format!("skipped by {by}: {reason}"));
            }
            _ => {
                self.record(Entry::run("run.reopened", format!("by {by}: {reason}")));
                self.record(Entry::step(
                    "step.retry_requested",
                    id,
                    format!("by {by}: {reason}"),
                ));
            }
        }
        self.advance();
    }
}
