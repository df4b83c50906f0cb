//! Rollouts in waves. A `for_each` step with `waves` starts its items wave by wave: a canary,
//! then batches. A failed item does not fail the step; it spends the error budget. Once
//! failures exceed the budget, no new item starts and the run halts when the items in flight
//! end. After each wave the health gate (if any) runs; a failing gate halts the run too. An
//! operator resumes (the budget counts again from there) or cancels (undos run).

use riposte_playbooks::Context;
use serde_json::{Value, json};

use super::run::{Entry, Tx, what};
use super::state::{RunStatus, Slot, StepStatus, Unit, UnitStatus, WaveState};

impl Tx<'_> {
    pub(crate) fn start_waves(&mut self, step: usize) {
        let waves = self.playbook.steps[step]
            .waves
            .as_ref()
            .expect("the step has waves");
        let total = self.run.steps[step].units.len() as u32;
        let first = if waves.canary > 0 {
            waves.canary
        } else {
            waves.batch.of(total)
        };
        let end = first.min(total);
        self.run.steps[step].waves = Some(Box::new(WaveState {
            end,
            ..WaveState::default()
        }));
        self.record(Entry::step(
            "wave.started",
            self.step_id(step),
            format!("wave 0: items 0..{end}"),
        ));
    }

    fn failures(&mut self, step: usize) -> u32 {
        self.index().step(step).failed
    }

    fn budget_spent(&mut self, step: usize) -> bool {
        let waves = self.playbook.steps[step]
            .waves
            .as_ref()
            .expect("the step has waves");
        let total = self.run.steps[step].units.len() as u32;
        let forgiven = self.run.steps[step]
            .waves
            .as_ref()
            .map_or(0, |w| w.failures_forgiven);
        let budget = waves.error_budget.of(total);
        self.failures(step).saturating_sub(forgiven) > budget
    }

    pub(crate) fn settle_waves(&mut self, step: usize) {
        let Some(wave) = self.run.steps[step].waves.clone() else {
            return;
        };
        let total = self.run.steps[step].units.len() as u32;
        let tally = self.index().step(step);
        let in_flight = tally.active > 0;
        if self.budget_spent(step) {
            if !in_flight {
                let why = format!("error budget spent: {} failed", self.failures(step));
                self.halt(step, why);
            }
            return;
        }
        // Items from the wave's end on have not started: the wave is done when none before
        // it is pending or active.
        let wave_done = tally.active == 0 && tally.pending == total - wave.end.min(total);
        debug_assert_eq!(
            wave_done,
            self.run.steps[step].units[..wave.end.min(total) as usize]
                .iter()
                .all(|u| u.status.is_terminal()),
            "items past the wave's end have not started"
        );
        if !wave_done {
            return self.fill_slots(step, wave.end);
        }
        if !wave.gate_passed
            && self.playbook.steps[step]
                .waves
                .as_ref()
                .is_some_and(|w| w.health.is_some())
        {
            return self.run_gate(step, &wave);
        }
        if wave.end >= total {
            return self.finish_waves(step);
        }
        let waves = self.playbook.steps[step]
            .waves
            .as_ref()
            .expect("the step has waves");
        let end = (wave.end + waves.batch.of(total).max(1)).min(total);
        let state = self.run.steps[step].waves.as_mut().expect("waves state");
        state.wave += 1;
        state.end = end;
        state.gate = None;
        state.gate_passed = false;
        let message = format!("wave {}: items {}..{end}", state.wave, wave.end);
        self.record(Entry::step("wave.started", self.step_id(step), message));
        self.fill_slots(step, end);
    }

    fn run_gate(&mut self, step: usize, wave: &WaveState) {
        match &wave.gate {
            Some(gate) if gate.status == UnitStatus::Failed => {
                let error = gate.error.clone().unwrap_or_default();
                self.halt(
                    step,
                    format!("health gate after wave {} failed: {error}", wave.wave),
                );
            }
            Some(_) => {}
            None => match self.render_gate(step, wave.wave) {
                Ok(input) => {
                    let labels = Default::default();
                    let gate = Unit {
                        status: UnitStatus::Queued,
                        attempt: 1,
                        ..Unit::pending(input, labels)
                    };
                    self.run.steps[step]
                        .waves
                        .as_mut()
                        .expect("waves state")
                        .gate = Some(gate);
                    let message = format!("after wave {}", wave.wave);
                    self.record(Entry::step("health.started", self.step_id(step), message));
                    self.dispatch(Slot::Health { step });
                }
                Err(message) => self.halt(step, format!("health gate: {message}")),
            },
        }
    }

    fn render_gate(&self, step: usize, wave: u32) -> Result<Value, String> {
        let spec = &self.playbook.steps[step];
        let health = spec
            .waves
            .as_ref()
            .and_then(|w| w.health.as_ref())
            .expect("a health gate");
        let steps = self.step_views();
        let run_id = self.run.id.to_string();
        let ctx = Context {
            run_id: &run_id,
            params: &self.run.params,
            steps: &steps,
            trigger: &self.run.trigger,
        };
        self.renderer
            .tree(
                &what(spec, "waves.health.with"),
                &health.with,
                &ctx,
                None,
                &[("wave", json!(wave))],
            )
            .map_err(|e| e.to_string())
    }

    pub(crate) fn gate_passed(&mut self, step: usize) {
        if let Some(state) = self.run.steps[step].waves.as_mut() {
            state.gate_passed = true;
        }
    }

    fn finish_waves(&mut self, step: usize) {
        let units = &self.run.steps[step].units;
        let pick = |status: UnitStatus| -> Vec<u32> {
            units
                .iter()
                .enumerate()
                .filter(|(_, u)| u.status == status)
                .map(|(i, _)| i as u32)
                .collect()
        };
        let output = json!({
            "succeeded": pick(UnitStatus::Succeeded),
            "failed": pick(UnitStatus::Failed),
            "outputs": units.iter().map(|u| u.output.clone().unwrap_or(Value::Null)).collect::<Vec<_>>(),
        });
        self.finish_step(step, StepStatus::Succeeded, Some(output), None);
    }

    /// Stops the rollout: nothing new starts until an operator resumes or cancels.
    fn halt(&mut self, step: usize, why: String) {
        if self.run.status == RunStatus::Halted {
            return;
        }
        let units = &self.run.steps[step].units;
        let list = |f: &dyn Fn(&Unit) -> bool| -> String {
            let items: Vec<String> = units
                .iter()
                .enumerate()
                .filter(|(_, u)| f(u))
                .map(|(i, _)| i.to_string())
                .collect();
            if items.is_empty() {
                "none".into()
            } else {
                items.join(",")
            }
        };
        let report = format!(
            "{why}; succeeded: {}; failed: {}; not started: {}",
            list(&|u| u.status == UnitStatus::Succeeded),
            list(&|u| u.status == UnitStatus::Failed),
            list(&|u| u.status == UnitStatus::Pending),
        );
        self.run.status = RunStatus::Halted;
        self.run.error = Some(report.clone());
        self.record(Entry::step("run.halted", self.step_id(step), report));
    }

    /// Continues a halted rollout: the failures so far are forgiven, a failed gate is waived.
    pub(crate) fn resume_waves(&mut self) {
        for step in 0..self.run.steps.len() {
            let failures = self.failures(step);
            if let Some(state) = self.run.steps[step].waves.as_mut() {
                state.failures_forgiven = failures;
                if state
                    .gate
                    .as_ref()
                    .is_some_and(|g| g.status == UnitStatus::Failed)
                {
                    state.gate_passed = true;
                }
            }
        }
        self.run.status = RunStatus::Running;
        self.run.error = None;
    }
}
