//! Compensation and grants. A step with `undo` records an [`UndoEntry`] for each unit that
//! succeeds, with the undo's input rendered right then. On failure or cancel the open entries
//! run in reverse order, one at a time, retried until they succeed. An entry with a grant also
//! runs at its TTL (or on an operator's early revoke), and the run does not end while one is
//! open. In a dry run, an undo that cannot be rendered (an output only a backend would give
//! is missing from the plan) is recorded as `undo.not_planned` and the run goes on: nothing
//! was changed, so nothing needs undoing.

use riposte_playbooks::{Context, limits};
use serde_json::Value;

use super::run::{Entry, Tx, bounded_duration, format_time, what};
use super::state::{GrantState, Phase, RunStatus, Slot, StepStatus, UndoEntry, Unit, UnitStatus};
use super::{Error, Part};

impl Tx<'_> {
    /// Records the undo (and grant) of a unit that just succeeded.
    pub(crate) fn open_undo(&mut self, step: usize, item: u32) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let Some(undo) = &spec.undo else { return };
        let (input, labels, grant) = match self.render_undo(step, item) {
            Ok(rendered) => rendered,
            Err(message) if self.run.dry_run => {
                // A plan changed nothing, so there is nothing to undo; the plan says which undo
                // it could not render (an output a backend would give is missing).
                let message = format!("dry run: cannot render its undo: {message}");
                self.record(Entry::unit("undo.not_planned", &spec.id, item, 0, message));
                return;
            }
            Err(message) => {
                // The change happened but cannot be undone as written: stop here, loudly.
                let unit = self
                    .unit_mut(Slot::Step { step, item })
                    .expect("the unit that succeeded");
                unit.status = UnitStatus::Failed;
                unit.error = Some(format!("cannot render its undo: {message}"));
                return;
            }
        };
        let unit = Unit::pending(input, labels);
        let mut grant = grant;
        let message = match grant.as_mut() {
            Some(g) if self.run.dry_run => {
                let message = format!(
                    "grant for `{}` until {} (dry run: revoked at once)",
                    g.subject,
                    format_time(g.expires_ms)
                );
                g.expires_ms = self.now_ms;
                message
            }
            Some(g) => format!(
                "grant for `{}` until {}",
                g.subject,
                format_time(g.expires_ms)
            ),
            None => format!("undo recorded: {}", undo.action),
        };
        let kind = if grant.is_some() {
            "grant.opened"
        } else {
            "undo.recorded"
        };
        self.mark(Part::Undo(self.run.undo.len() as u32));
        self.run.undo.push(UndoEntry {
            step,
            item,
            action: undo.action.clone(),
            unit,
            grant,
        });
        self.record(Entry::unit(kind, &spec.id, item, 0, message));
    }

    #[allow(clippy::type_complexity)]
    fn render_undo(
        &self,
        step: usize,
        item: u32,
    ) -> Result<
        (
            Value,
            std::collections::BTreeMap<String, String>,
            Option<GrantState>,
        ),
        String,
    > {
        let spec = &self.playbook.steps[step];
        let undo = spec.undo.as_ref().expect("the step has an undo");
        let state = &self.run.steps[step];
        let unit = &state.units[item as usize];
        let mut steps = self.step_views();
        steps.insert(
            spec.id.clone(),
            serde_json::json!({"status": "succeeded", "output": unit.output.clone().unwrap_or(Value::Null)}),
        );
        let run_id = self.run.id.to_string();
        let ctx = Context {
            run_id: &run_id,
            params: &self.run.params,
            steps: &steps,
            trigger: &self.run.trigger,
        };
        let item_value = match spec.for_each {
            Some(_) => self.item_value(step, item),
            None => None,
        };
        let input = self
            .renderer
            .tree(
                &what(spec, "undo.with"),
                &undo.with,
                &ctx,
                item_value.as_ref(),
                &[],
            )
            .map_err(|e| e.to_string())?;
        let grant = match &spec.grant {
            None => None,
            Some(grant) => {
                let ttl = self
                    .renderer
                    .text(
                        &what(spec, "grant.ttl"),
                        &grant.ttl,
                        &ctx,
                        item_value.as_ref(),
                    )
                    .map_err(|e| e.to_string())?;
                let ttl_ms = bounded_duration(&ttl, limits::GRANT_TTL_MS_MAX)?;
                let subject = self
                    .renderer
                    .text(
                        &what(spec, "grant.subject"),
                        &grant.subject,
                        &ctx,
                        item_value.as_ref(),
                    )
                    .map_err(|e| e.to_string())?;
                Some(GrantState {
                    subject,
                    opened_at_ms: self.now_ms,
                    expires_ms: self.now_ms + ttl_ms as i64,
                })
            }
        };
        Ok((input, unit.labels.clone(), grant))
    }

    /// The value of a for_each item, re-evaluated from the step's items expression. Items are
    /// evaluated from the same finished steps, so the list is the one the step started with.
    fn item_value(&self, step: usize, item: u32) -> Option<Value> {
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
            .items(spec, &ctx)
            .ok()?
            .into_iter()
            .nth(item as usize)
    }

    pub(crate) fn undo_succeeded(&mut self, n: u32) {
        let entry = &self.run.undo[n as usize];
        if entry.grant.is_some() {
            let (step, item) = (self.step_id(entry.step), entry.item);
            self.record(Entry::unit("grant.revoked", step, item, 0, String::new()));
        }
    }

    /// Grants whose TTL passed start their revoke.
    pub(crate) fn expire_grants(&mut self) {
        let now = self.now_ms;
        let run = &*self.run;
        let due: Vec<u32> = self
            .index
            .due_by_refreshed(run, now)
            .into_iter()
            .filter_map(|slot| match slot {
                Slot::Undo(n) => Some(n),
                _ => None,
            })
            .filter(|n| {
                let e = &run.undo[*n as usize];
                e.unit.status == UnitStatus::Pending
                    && e.grant.as_ref().is_some_and(|g| g.expires_ms <= now)
            })
            .collect();
        for n in due {
            let entry = &self.run.undo[n as usize];
            let (step, item) = (self.step_id(entry.step), entry.item);
            self.record(Entry::unit(
                "grant.expired",
                step,
                item,
                0,
                "revoking".into(),
            ));
            self.start_undo(n);
        }
    }

    fn start_undo(&mut self, n: u32) {
        let unit = self.unit_mut(Slot::Undo(n)).expect("an undo entry");
        unit.status = UnitStatus::Queued;
        unit.attempt = 1;
        self.dispatch(Slot::Undo(n));
    }

    /// An operator revokes a grant before its TTL.
    pub(crate) fn revoke(
        &mut self,
        step: &str,
        item: u32,
        by: &str,
        reason: &str,
    ) -> Result<(), Error> {
        let index = self
            .playbook
            .step_index(step)
            .ok_or_else(|| Error::Invalid(format!("run {} has no step `{step}`", self.run.id)))?;
        let n = self
            .run
            .undo
            .iter()
            .position(|e| e.step == index && e.item == item && e.grant.is_some())
            .ok_or_else(|| Error::Refused(format!("step `{step}` item {item} opened no grant")))?;
        if self.run.undo[n].unit.status != UnitStatus::Pending {
            return Err(Error::Refused(format!(
                "the grant of step `{step}` item {item} is not open (it is {})",
                undo_status(&self.run.undo[n].unit)
            )));
        }
        self.record(Entry::unit(
            "grant.revoke_requested",
            step,
            item,
            0,
            format!("by {by}: {reason}"),
        ));
        self.start_undo(n as u32);
        Ok(())
    }

    /// Stops the steps and runs the open undos in reverse order; the run then ends with
    /// `outcome`.
    pub(crate) fn compensate(&mut self, outcome: RunStatus, error: Option<String>) {
        self.stop_steps();
        if self.index().undo().open() == 0 {
            return self.finish(outcome, error);
        }
        if self.run.status == RunStatus::Halted {
            self.run.status = RunStatus::Running;
        }
        self.run.phase = Phase::Compensating {
            outcome,
            error: error.clone(),
        };
        self.record(Entry::run("run.compensating", error.unwrap_or_default()));
        self.continue_compensation();
    }

    /// Starts the next undo (newest first) once none is in flight; ends the run after the last.
    pub(crate) fn continue_compensation(&mut self) {
        let Phase::Compensating { outcome, error } = self.run.phase.clone() else {
            return;
        };
        if self.index().undo().active > 0 {
            return;
        }
        if let Some(n) = self
            .run
            .undo
            .iter()
            .rposition(|e| e.unit.status == UnitStatus::Pending)
        {
            return self.start_undo(n as u32);
        }
        let failed: Vec<String> = self
            .run
            .undo
            .iter()
            .filter(|e| e.unit.status == UnitStatus::Failed)
            .map(|e| {
                let step = &self.playbook.steps[e.step].id;
                format!(
                    "undo of {step} item {} failed: {}",
                    e.item,
                    e.unit.error.clone().unwrap_or_default()
                )
            })
            .collect();
        let error = match (error, failed.is_empty()) {
            (error, true) => error,
            (Some(error), false) => Some(format!("{error}; {}", failed.join("; "))),
            (None, false) => Some(failed.join("; ")),
        };
        self.finish(outcome, error);
    }

    /// Every step ended well: keep the changes, wait for open grants, then succeed.
    pub(crate) fn steps_done(&mut self) {
        debug_assert!(
            self.run
                .steps
                .iter()
                .zip(&self.playbook.steps)
                .all(|(s, spec)| s.status != StepStatus::Failed || spec.continue_on_failure)
        );
        if self.index().grants().open() > 0 {
            self.run.phase = Phase::HoldingGrants;
            self.record(Entry::run(
                "run.holding_grants",
                "every step succeeded; grants stay open until revoked".into(),
            ));
            return;
        }
        self.check_grants_closed();
    }

    pub(crate) fn check_grants_closed(&mut self) {
        let grants = self.index().grants();
        if grants.open() > 0 {
            return;
        }
        if grants.failed > 0 {
            self.finish(
                RunStatus::Failed,
                Some("a grant's revoke failed; check the grant".into()),
            );
        } else {
            self.finish(RunStatus::Succeeded, None);
        }
    }
}

/// A grant's status in words: open, revoking, revoked, failed.
pub fn undo_status(unit: &Unit) -> &'static str {
    match unit.status {
        UnitStatus::Pending => "open",
        UnitStatus::Succeeded => "revoked",
        UnitStatus::Failed | UnitStatus::Cancelled => "failed",
        _ => "revoking",
    }
}
