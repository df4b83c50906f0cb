//! Rollouts in waves. A `for_each` step with `waves` starts its items wave by wave: a canary,
//! then batches. A failed item does not fail the step; it spends the error budget. Once
//! failures exceed the budget, no new item starts and the run halts when the items in flight
//! end. After each wave the health gate (if any) runs; a failing gate halts the run too. An
//! operator resumes (the budget counts again from there) or cancels (undos run).
//!
//! With `window`, a wave starts only while one of its maintenance windows is open (the text is
//! rendered when the wave is due; empty means any time). Due while closed, the wave is held (`wave.held`, with the
//! next opening) and starts when a window opens; items already running finish. With
//! `outside_window: fail`, the step fails instead.

use riposte_playbooks::schedule::Windows;
use riposte_playbooks::{Context, OutsideWindow};
use serde_json::{Value, json};

use super::run::{Entry, Tx, format_time, what};
use super::state::{RunStatus, Slot, StepStatus, Unit, UnitStatus, WaveState};

impl Tx<'_> {
    /// Sets up a rollout: nothing has started (`end` 0); [`Tx::settle_waves`] starts the
    /// canary once its window is open.
    pub(crate) fn start_waves(&mut self, step: usize) {
        self.run.steps[step].waves = Some(Box::new(WaveState::default()));
    }

    /// Starts the first wave (the canary, or the first batch) when its window is open.
    fn start_first_wave(&mut self, step: usize, total: u32) {
        if !self.window_open(step, 0) {
            return;
        }
        let waves = self.playbook.steps[step]
            .waves
            .as_ref()
            .expect("the step has waves");
        let first = if waves.canary > 0 {
            waves.canary
        } else {
            waves.batch.of(total)
        };
        let end = first.min(total);
        self.run.steps[step]
            .waves
            .as_mut()
            .expect("waves state")
            .end = end;
        self.record(Entry::step(
            "wave.started",
            self.step_id(step),
            format!("wave 0: items 0..{end}"),
        ));
        self.fill_slots(step, end);
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
        if wave.end == 0 && total > 0 {
            return self.start_first_wave(step, total);
        }
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
        if !self.window_open(step, wave.wave + 1) {
            return;
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

    /// Whether wave `next` may start now: no window, or one open. Closed, the wave is held
    /// until the next opening (recorded once; the held time arms the run's timer), or with
    /// `outside_window: fail` the step fails.
    fn window_open(&mut self, step: usize, next: u32) -> bool {
        let playbook = self.playbook;
        let waves = playbook.steps[step]
            .waves
            .as_ref()
            .expect("the step has waves");
        let Some(template) = &waves.window else {
            return true;
        };
        let text = match self.render_window(step, template, next) {
            Ok(text) => text,
            Err(message) => {
                self.fail_step(step, format!("waves.window: {message}"));
                return false;
            }
        };
        if text.trim().is_empty() {
            return true;
        }
        let windows = match Windows::parse(&text) {
            Ok(windows) => windows,
            Err(message) => {
                self.fail_step(step, format!("waves.window `{text}`: {message}"));
                return false;
            }
        };
        let now = self.now_ms;
        let id = self.step_id(step).to_string();
        if windows.open_at(now) {
            let state = self.run.steps[step].waves.as_mut().expect("waves state");
            if state.held_until_ms.take().is_some() {
                let message = format!("wave {next}: the maintenance window ({text}) is open");
                self.record(Entry::step("wave.released", &id, message));
            }
            return true;
        }
        if waves.outside_window == OutsideWindow::Fail {
            let message = format!("wave {next} is due outside its maintenance window ({text})");
            self.fail_step(step, message);
            return false;
        }
        // No opening within 8 days (a zone's gap ate it): held until an operator acts.
        let next_open = windows.next_open(now).unwrap_or(i64::MAX);
        let state = self.run.steps[step].waves.as_mut().expect("waves state");
        if state.held_until_ms != Some(next_open) {
            state.held_until_ms = Some(next_open);
            let opens = match next_open {
                i64::MAX => "no window opens in the next 8 days".to_string(),
                at => format!("it opens at {}", format_time(at)),
            };
            let message = format!("wave {next} waits for its maintenance window ({text}): {opens}");
            self.record(Entry::step("wave.held", &id, message));
        }
        false
    }

    fn render_window(&self, step: usize, template: &str, wave: u32) -> Result<String, String> {
        let template = Value::String(template.to_string());
        match self.render_for_wave(step, "waves.window", &template, wave)? {
            Value::String(text) => Ok(text),
            other => Ok(other.to_string()),
        }
    }

    /// Renders a tree of a rollout's (its gate's `with`, its `window`), which sees `wave`.
    fn render_for_wave(
        &self,
        step: usize,
        field: &str,
        tree: &Value,
        wave: u32,
    ) -> Result<Value, String> {
        let spec = &self.playbook.steps[step];
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
                &what(spec, field),
                tree,
                &ctx,
                None,
                &[("wave", json!(wave))],
            )
            .map_err(|e| e.to_string())
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
        let health = self.playbook.steps[step]
            .waves
            .as_ref()
            .and_then(|w| w.health.as_ref())
            .expect("a health gate");
        self.render_for_wave(step, "waves.health.with", &health.with, wave)
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
