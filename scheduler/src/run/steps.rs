//! Steps within one run: advance the DAG, start a step (render its units, check the guard,
//! arm its sleep), settle, skip, fail and finish steps, and end the run.

use super::*;

impl<'a> Tx<'a> {
    /// Moves the run forward as far as it can go without outside input.
    pub fn advance(&mut self) {
        if self.run.status.is_terminal() {
            return;
        }
        match self.run.phase {
            Phase::Compensating { .. } => return self.continue_compensation(),
            Phase::HoldingGrants => return self.check_grants_closed(),
            Phase::Steps => {}
        }
        if self.run.status != RunStatus::Running {
            return;
        }
        for step in 0..self.playbook.steps.len() {
            self.settle_step(step);
            if self.run.phase != Phase::Steps || self.run.status != RunStatus::Running {
                return;
            }
            if self.run.steps[step].status == StepStatus::Waiting {
                self.try_start(step);
            }
            if self.run.phase != Phase::Steps || self.run.status != RunStatus::Running {
                return;
            }
        }
        if self.run.steps.iter().all(|s| s.status.is_terminal()) {
            self.steps_done();
        }
    }

    /// Finishes a running step whose units are all done, and fills free concurrency slots.
    pub(crate) fn settle_step(&mut self, step: usize) {
        if self.run.steps[step].status != StepStatus::Running {
            return;
        }
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        if spec.waves.is_some() {
            return self.settle_waves(step);
        }
        let tally = self.index().step(step);
        let state = &self.run.steps[step];
        if tally.failed > 0 {
            let failed = state
                .units
                .iter()
                .position(|u| u.status == UnitStatus::Failed)
                .expect("a failed unit is counted");
            let error = state.units[failed].error.clone().unwrap_or_default();
            let message = match spec.for_each {
                Some(_) => format!("item {failed}: {error}"),
                None => error,
            };
            return self.fail_step(step, message);
        }
        if tally.succeeded as usize == state.units.len() {
            let outputs: Vec<Value> = state
                .units
                .iter()
                .map(|u| u.output.clone().unwrap_or(Value::Null))
                .collect();
            let output = match spec.for_each {
                Some(_) => Value::Array(outputs),
                None => outputs.into_iter().next().unwrap_or(Value::Null),
            };
            return self.finish_step(step, StepStatus::Succeeded, Some(output), None);
        }
        self.fill_slots(step, u32::MAX);
    }

    /// Queues pending units up to the step's concurrency, among the first `end` items, from
    /// the first that may be pending (units start in order, so the search does not begin at
    /// the first item every time).
    pub fn fill_slots(&mut self, step: usize, end: u32) {
        let spec = &self.playbook.steps[step];
        let cap = spec.for_each.as_ref().map_or(1, |f| f.concurrency.max(1));
        let mut active = self.index().step(step).active;
        let total = self.run.steps[step].units.len() as u32;
        let end = end.min(total);
        let mut item = self.index.first_pending(step);
        let mut started = Vec::new();
        while item < end && active < cap {
            let slot = Slot::Step { step, item };
            if self
                .unit(slot)
                .is_some_and(|u| u.status == UnitStatus::Pending)
            {
                let unit = self.unit_mut(slot).expect("a pending unit");
                unit.status = UnitStatus::Queued;
                unit.attempt = 1;
                active += 1;
                started.push(item);
            }
            item += 1;
        }
        self.index.pending_from(step, item);
        for item in started {
            self.dispatch(Slot::Step { step, item });
        }
    }

    pub(super) fn try_start(&mut self, step: usize) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let needs: Vec<StepStatus> = spec
            .needs
            .iter()
            .map(|&n| self.run.steps[n].status)
            .collect();
        if needs.iter().any(|s| !s.is_terminal()) {
            return;
        }
        // A failed need is one with `on_failure: continue` (any other failure ended the steps).
        if needs.contains(&StepStatus::Failed) {
            return self.skip(
                step,
                "a step it needs failed (on_failure: continue)".to_string(),
            );
        }
        if !needs.is_empty() && needs.iter().all(|s| *s == StepStatus::Skipped) {
            return self.skip(step, "all its needs were skipped".to_string());
        }
        match self.start_step(spec, step) {
            Ok(true) => {}
            Ok(false) => self.skip(step, "`when` is false".to_string()),
            Err(message) => self.fail_step(step, message),
        }
    }

    /// Starts a step by its kind. `Ok(false)`: `when` is false.
    pub(super) fn start_step(&mut self, spec: &Step, step: usize) -> Result<bool, String> {
        let steps = self.step_views();
        let run_id = self.run.id.to_string();
        let ctx = Context {
            run_id: &run_id,
            params: &self.run.params,
            steps: &steps,
            trigger: &self.run.trigger,
        };
        if !self.renderer.when(spec, &ctx).map_err(|e| e.to_string())? {
            return Ok(false);
        }
        self.run.steps[step].started_at_ms = Some(self.now_ms);
        match &spec.kind {
            StepKind::Sleep { duration } => {
                let text = self
                    .renderer
                    .text(&what(spec, "sleep"), duration, &ctx, None);
                let ms = bounded_duration(&text.map_err(|e| e.to_string())?, limits::SLEEP_MS_MAX)?;
                self.sleep_until(step, self.now_ms + ms as i64);
            }
            StepKind::Until { at } => {
                let text = self.renderer.text(&what(spec, "until"), at, &ctx, None);
                let at_ms =
                    riposte_playbooks::parse_timestamp_ms(&text.map_err(|e| e.to_string())?)
                        .map_err(|e| e.to_string())?;
                if at_ms - self.now_ms > limits::SLEEP_MS_MAX as i64 {
                    return Err(format!(
                        "`until` is more than {} away",
                        format_ms(limits::SLEEP_MS_MAX)
                    ));
                }
                self.sleep_until(step, at_ms);
            }
            StepKind::Approval => self.request_approval(step, Vec::new()),
            StepKind::Action => {
                let units = self.render_units(spec, &ctx)?;
                self.guard_units(spec, &units)?;
                let count = units.len();
                if spec.approval.is_some() {
                    self.request_approval(step, units);
                    return Ok(true);
                }
                self.mark(Part::Units { step });
                let state = &mut self.run.steps[step];
                state.status = StepStatus::Running;
                state.units = units;
                let message = match spec.for_each {
                    Some(_) => format!("{count} items"),
                    None => String::new(),
                };
                self.record(Entry::step("step.started", &spec.id, message));
                if spec.waves.is_some() {
                    self.start_waves(step);
                }
                self.settle_step(step);
            }
        }
        Ok(true)
    }

    pub(super) fn render_units(&self, spec: &Step, ctx: &Context<'_>) -> Result<Vec<Unit>, String> {
        let render = |item: Option<&Value>| -> Result<Unit, String> {
            let input = self
                .renderer
                .input(spec, ctx, item)
                .map_err(|e| e.to_string())?;
            let labels = self
                .renderer
                .labels(spec, ctx, item)
                .map_err(|e| e.to_string())?;
            Ok(Unit::pending(input, labels))
        };
        match spec.for_each {
            None => Ok(vec![render(None)?]),
            Some(_) => {
                let items = self.renderer.items(spec, ctx).map_err(|e| e.to_string())?;
                items.iter().map(|item| render(Some(item))).collect()
            }
        }
    }

    /// Checks every unit of a guarded action against the platform guard; each refusal is
    /// recorded as `guard.refused`, and the first one fails the step.
    pub(super) fn guard_units(&mut self, spec: &Step, units: &[Unit]) -> Result<(), String> {
        let Some(guard) = riposte_playbooks::actions::find(&spec.action).and_then(|a| a.guard)
        else {
            return Ok(());
        };
        let mut first = None;
        for (item, unit) in units.iter().enumerate() {
            let Err(refusal) = self.guard.check(guard, &unit.input) else {
                continue;
            };
            let message = refusal.to_string();
            let item = item as u32;
            self.record(Entry::unit(
                "guard.refused",
                &spec.id,
                item,
                0,
                message.clone(),
            ));
            first.get_or_insert(match spec.for_each {
                Some(_) => format!("item {item}: {message}"),
                None => message,
            });
        }
        first.map_or(Ok(()), Err)
    }

    /// Parks a sleep/until step; a dry run records the time and wakes at once.
    pub(super) fn sleep_until(&mut self, step: usize, due_ms: i64) {
        let mut message = format!("until {}", format_time(due_ms));
        let due_ms = if self.run.dry_run {
            message.push_str(" (dry run: not waiting)");
            due_ms.min(self.now_ms)
        } else {
            due_ms
        };
        let state = &mut self.run.steps[step];
        state.status = StepStatus::Sleeping;
        state.due_ms = Some(due_ms);
        self.record(Entry::step("step.sleeping", self.step_id(step), message));
        if due_ms <= self.now_ms {
            self.fire_due();
        }
    }

    /// `steps.<id>` as templates see it: status and output of finished steps.
    pub fn step_views(&self) -> Map<String, Value> {
        let mut map = Map::new();
        for (spec, state) in self.playbook.steps.iter().zip(&self.run.steps) {
            if state.status.is_terminal() {
                let view = serde_json::json!({
                    "status": state.status.as_str(),
                    "output": state.output.clone().unwrap_or(Value::Null),
                });
                map.insert(spec.id.clone(), view);
            }
        }
        map
    }

    pub fn skip(&mut self, step: usize, why: String) {
        self.finish_step(step, StepStatus::Skipped, None, None);
        self.record(Entry::step("step.skipped", self.step_id(step), why));
    }

    pub fn fail_step(&mut self, step: usize, message: String) {
        self.finish_step(step, StepStatus::Failed, None, Some(message.clone()));
        let id = self.step_id(step);
        if self.playbook.steps[step].continue_on_failure {
            let why =
                format!("step {id} failed; the run goes on without it (on_failure: continue)");
            return self.record(Entry::step("step.failure_ignored", id, why));
        }
        self.compensate(
            RunStatus::Failed,
            Some(format!("step {id} failed: {message}")),
        );
    }

    pub fn finish_step(
        &mut self,
        step: usize,
        status: StepStatus,
        output: Option<Value>,
        error: Option<String>,
    ) {
        self.mark(Part::Output { step });
        let state = &mut self.run.steps[step];
        state.status = status;
        state.output = output;
        state.finished_at_ms = Some(self.now_ms);
        state.due_ms = None;
        self.changed();
        if status != StepStatus::Skipped {
            let kind = match status {
                StepStatus::Succeeded => "step.succeeded",
                StepStatus::Failed => "step.failed",
                _ => "step.cancelled",
            };
            let message = error.clone().unwrap_or_default();
            self.run.steps[step].error = error;
            self.record(Entry::step(kind, self.step_id(step), message));
        }
    }

    /// Stops every step: abandons leases, cancels what has not finished.
    pub fn stop_steps(&mut self) {
        let mut abandon = Vec::new();
        let mut cancelled = Vec::new();
        for (step, state) in self.run.steps.iter_mut().enumerate() {
            let gate = state.waves.as_mut().and_then(|w| w.gate.as_mut());
            for unit in state.units.iter_mut().chain(gate) {
                if let UnitStatus::Leased { token, .. } = unit.status {
                    abandon.push(token);
                }
                if !unit.status.is_terminal() {
                    unit.status = UnitStatus::Cancelled;
                    cancelled.push(step);
                }
            }
            if !state.status.is_terminal() {
                state.status = StepStatus::Cancelled;
                state.finished_at_ms = Some(self.now_ms);
                state.due_ms = None;
            }
        }
        for token in abandon {
            self.out.commands.push(Command::Abandon { token });
        }
        cancelled.dedup();
        for step in cancelled {
            self.mark(Part::Units { step });
        }
        self.changed();
    }

    /// Ends the run and records the outcome.
    pub fn finish(&mut self, status: RunStatus, error: Option<String>) {
        self.stop_steps();
        self.run.status = status;
        self.run.phase = Phase::Steps;
        self.run.finished_at_ms = Some(self.now_ms);
        self.run.error = error.clone();
        let mut entry = Entry::run("run.finished", error.unwrap_or_default());
        entry.run_status = Some(status);
        self.record(entry);
        self.out.commands.push(Command::Finished {
            run: self.run.id,
            status,
        });
    }
}
