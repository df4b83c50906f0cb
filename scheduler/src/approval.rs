//! Approvals. A step with `approval` renders its inputs, then waits for decisions bound to a
//! SHA-256 digest of exactly what it will do: the action and every rendered input (or, for an
//! approval step, the run's parameters). A decision for another digest does not count. The
//! requester may not approve their own run; each approver decides once; `min` distinct
//! approvals release the step, one rejection fails it (and the run's undos run), and at the
//! timeout the playbook's `on_timeout` applies.

use riposte_playbooks::{ApprovalOutcome, StepKind};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::run::{Entry, Tx, format_time};
use super::state::{ApprovalState, Decision, StepStatus, Unit};
use super::{DecisionRequest, Error, Part};

/// Hex SHA-256 of a JSON value (serde_json orders object keys, so the text is canonical).
pub fn digest_hex(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tx<'_> {
    /// Parks a step until enough approvers decide. `units` are the gated action's units.
    pub(crate) fn request_approval(&mut self, step: usize, units: Vec<Unit>) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let approval = spec.approval.as_ref().expect("the step has an approval");
        let subject = match spec.kind {
            StepKind::Approval => json!({"step": spec.id, "params": self.run.params}),
            _ => json!({
                "step": spec.id,
                "action": spec.action,
                "inputs": units.iter().map(|u| u.input.clone()).collect::<Vec<_>>(),
            }),
        };
        let digest = digest_hex(&subject);
        let due_ms = self.now_ms + approval.timeout_ms as i64;
        self.mark(Part::Units { step });
        let state = &mut self.run.steps[step];
        state.status = StepStatus::AwaitingApproval;
        state.units = units;
        state.approval = Some(Box::new(ApprovalState {
            digest: digest.clone(),
            due_ms,
            decisions: Vec::new(),
        }));
        if self.run.dry_run {
            let message = format!(
                "would request approval from {} (min {}); digest {digest}",
                approval.approvers.join(", "),
                approval.min
            );
            self.record(Entry::step("approval.dry_run", &spec.id, message));
            self.approved(step, "dry run: counted as approved".into());
            return self.settle_step(step);
        }
        let message = format!(
            "{} of {} until {}; digest {digest}",
            approval.min,
            approval.approvers.join(", "),
            format_time(due_ms)
        );
        self.record(Entry::step("approval.requested", &spec.id, message));
    }

    pub(crate) fn decide(&mut self, request: &DecisionRequest) -> Result<(), Error> {
        let playbook = self.playbook;
        let step = playbook.step_index(&request.step).ok_or_else(|| {
            Error::Invalid(format!(
                "run {} has no step `{}`",
                self.run.id, request.step
            ))
        })?;
        let spec = &playbook.steps[step];
        let state = &self.run.steps[step];
        let Some(approval) = &spec.approval else {
            return Err(Error::Refused(format!(
                "step `{}` does not take approvals",
                spec.id
            )));
        };
        let (StepStatus::AwaitingApproval, Some(pending)) = (state.status, &state.approval) else {
            return Err(Error::Refused(format!(
                "step `{}` is not waiting for a decision (it is {})",
                spec.id,
                state.status.as_str()
            )));
        };
        if !request
            .groups
            .iter()
            .any(|g| approval.approvers.contains(g))
        {
            return Err(Error::NotPermitted(format!(
                "{} is not in the approver groups of step `{}` ({})",
                request.who,
                spec.id,
                approval.approvers.join(", ")
            )));
        }
        if request.approve && request.who == self.run.requested_by {
            return Err(Error::Refused(format!(
                "{} requested this run and may not approve it",
                request.who
            )));
        }
        if request.digest != pending.digest {
            return Err(Error::Refused(format!(
                "the decision is for inputs with digest {} but step `{}` waits on digest {}; review the inputs again",
                request.digest, spec.id, pending.digest
            )));
        }
        if pending
            .decisions
            .iter()
            .any(|d| d.who == request.who && d.digest == pending.digest)
        {
            return Err(Error::Refused(format!(
                "{} already decided on step `{}`",
                request.who, spec.id
            )));
        }
        let decision = Decision {
            who: request.who.clone(),
            approve: request.approve,
            comment: request.comment.clone(),
            at_ms: self.now_ms,
            digest: pending.digest.clone(),
        };
        let verb = if request.approve {
            "approved"
        } else {
            "rejected"
        };
        let message = format!("{verb} by {}: {}", request.who, request.comment);
        let pending = self.run.steps[step]
            .approval
            .as_mut()
            .expect("checked above");
        pending.decisions.push(decision);
        let approvals = pending
            .decisions
            .iter()
            .filter(|d| d.approve && d.digest == pending.digest)
            .count() as u32;
        self.record(Entry::step("approval.decision", &spec.id, message.clone()));
        if !request.approve {
            self.fail_step(step, message);
        } else if approvals >= approval.min {
            self.approved(step, format!("{approvals} of {} approvals", approval.min));
        }
        self.advance();
        Ok(())
    }

    fn approved(&mut self, step: usize, why: String) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        self.record(Entry::step("approval.granted", &spec.id, why));
        match spec.kind {
            StepKind::Approval => {
                let who: Vec<String> = self.run.steps[step]
                    .approval
                    .iter()
                    .flat_map(|a| {
                        a.decisions
                            .iter()
                            .filter(|d| d.approve)
                            .map(|d| d.who.clone())
                    })
                    .collect();
                self.finish_step(
                    step,
                    StepStatus::Succeeded,
                    Some(json!({"approved_by": who})),
                    None,
                );
            }
            _ => {
                self.run.steps[step].status = StepStatus::Running;
                self.record(Entry::step("step.started", &spec.id, String::new()));
                if spec.waves.is_some() {
                    self.start_waves(step);
                }
            }
        }
    }

    pub(crate) fn approval_timed_out(&mut self, step: usize) {
        let playbook = self.playbook;
        let spec = &playbook.steps[step];
        let approval = spec.approval.as_ref().expect("the step has an approval");
        match approval.on_timeout {
            ApprovalOutcome::Approve => self.approved(step, "approved by timeout".into()),
            ApprovalOutcome::Reject => {
                self.record(Entry::step(
                    "approval.timed_out",
                    &spec.id,
                    "rejected".into(),
                ));
                self.fail_step(step, "approval timed out".into());
            }
        }
    }
}
