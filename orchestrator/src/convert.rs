//! Conversions between domain types and the wire types of `riposte_proto`, in one place.

use riposte_playbooks::{ParamType, Playbook};
use riposte_proto::v1 as pb;

use crate::dispatch::Worker;
use crate::engine::LeasedTask;
use crate::store::StoredPlaybook;
use riposte_scheduler::state::{HistoryEvent, RunState, RunStatus, Slot, StepStatus};
use serde_json::Value;

pub fn run_status(status: RunStatus) -> pb::RunStatus {
    match status {
        RunStatus::Running => pb::RunStatus::Running,
        RunStatus::Queued => pb::RunStatus::Queued,
        RunStatus::Halted => pb::RunStatus::Halted,
        RunStatus::Succeeded => pb::RunStatus::Succeeded,
        RunStatus::Failed => pb::RunStatus::Failed,
        RunStatus::Cancelled => pb::RunStatus::Cancelled,
    }
}

pub fn run_status_from_proto(status: i32) -> Option<RunStatus> {
    match pb::RunStatus::try_from(status).ok()? {
        pb::RunStatus::Unspecified => None,
        pb::RunStatus::Running => Some(RunStatus::Running),
        pb::RunStatus::Succeeded => Some(RunStatus::Succeeded),
        pb::RunStatus::Failed => Some(RunStatus::Failed),
        pb::RunStatus::Cancelled => Some(RunStatus::Cancelled),
        pb::RunStatus::Queued => Some(RunStatus::Queued),
        pb::RunStatus::Halted => Some(RunStatus::Halted),
    }
}

fn step_status(status: StepStatus) -> pb::StepStatus {
    match status {
        StepStatus::Waiting => pb::StepStatus::Waiting,
        StepStatus::Running => pb::StepStatus::Running,
        StepStatus::AwaitingApproval => pb::StepStatus::AwaitingApproval,
        StepStatus::Sleeping => pb::StepStatus::Sleeping,
        StepStatus::Succeeded => pb::StepStatus::Succeeded,
        StepStatus::Failed => pb::StepStatus::Failed,
        StepStatus::Skipped => pb::StepStatus::Skipped,
        StepStatus::Cancelled => pb::StepStatus::Cancelled,
    }
}

/// JSON of a step's output a Run message carries at most; a bigger output (a `for_each` of
/// many items) is left out and says so, so that a run of any size can be read.
pub const STEP_OUTPUT_WIRE_MAX: usize = 1024 * 1024;

/// A step's output as JSON for the wire, or why it is left out.
fn wire_output(output: Option<&Value>) -> (String, String) {
    let Some(output) = output else {
        return (String::new(), String::new());
    };
    let json = output.to_string();
    if json.len() <= STEP_OUTPUT_WIRE_MAX {
        return (json, String::new());
    }
    let why = format!(
        "output of {:.1} MB is over the 1 MiB sent per step",
        json.len() as f64 / 1e6
    );
    (String::new(), why)
}

/// A run on the wire; `waiting` says, per step, why its queued items wait (may be empty).
pub fn run(state: &RunState, playbook: &Playbook, waiting: &[String]) -> pb::Run {
    let steps = playbook
        .steps
        .iter()
        .zip(&state.steps)
        .enumerate()
        .map(|(index, (spec, step))| {
            let count = |pred: fn(&riposte_scheduler::state::UnitStatus) -> bool| {
                step.units.iter().filter(|u| pred(&u.status)).count() as u32
            };
            let (output, output_omitted) = wire_output(step.output.as_ref());
            pb::Step {
                id: spec.id.clone(),
                action: spec.action.clone(),
                status: step_status(step.status) as i32,
                attempts: step.units.iter().map(|u| u.attempt).max().unwrap_or(0),
                output_json: output,
                error: step.error.clone().unwrap_or_default(),
                items_total: step.units.len() as u32,
                items_succeeded: count(|s| *s == riposte_scheduler::state::UnitStatus::Succeeded),
                items_failed: count(|s| *s == riposte_scheduler::state::UnitStatus::Failed),
                started_at_ms: step.started_at_ms.unwrap_or(0),
                finished_at_ms: step.finished_at_ms.unwrap_or(0),
                items_pending: count(|s| *s == riposte_scheduler::state::UnitStatus::Pending),
                items_held: step.units.iter().filter(|u| u.held).count() as u32,
                due_at_ms: step
                    .due_ms
                    .or(step.approval.as_ref().map(|a| a.due_ms))
                    .unwrap_or(0),
                waiting: waiting.get(index).cloned().unwrap_or_default(),
                output_omitted,
            }
        })
        .collect();
    pb::Run {
        run_id: state.id.to_string(),
        playbook: state.playbook.clone(),
        version: state.version,
        status: run_status(state.status) as i32,
        params_json: state.params.to_string(),
        requested_by: state.requested_by.clone(),
        idempotency_key: state.idempotency_key.clone(),
        created_at_ms: state.created_at_ms,
        finished_at_ms: state.finished_at_ms.unwrap_or(0),
        error: state.error.clone().unwrap_or_default(),
        steps,
        phase: state.phase.as_str().to_string(),
        concurrency_key: state.concurrency_key.clone().unwrap_or_default(),
        deadline_ms: state.deadline_ms.unwrap_or(0),
        dry_run: state.dry_run,
    }
}

pub fn event_for(run_id: &str, event: &HistoryEvent) -> pb::RunEvent {
    pb::RunEvent {
        run_id: run_id.to_string(),
        seq: event.seq,
        at_ms: event.at_ms,
        kind: event.kind.clone(),
        step_id: event.step.clone(),
        item: event.item,
        attempt: event.attempt,
        worker_id: event.worker.clone(),
        message: event.message.clone(),
        run_status: event
            .run_status
            .map_or(pb::RunStatus::Unspecified, run_status) as i32,
    }
}

fn param_type(ty: &ParamType) -> (&'static str, Vec<String>) {
    match ty {
        ParamType::String => ("string", vec![]),
        ParamType::Int { .. } => ("int", vec![]),
        ParamType::Bool => ("bool", vec![]),
        ParamType::Ip => ("ip", vec![]),
        ParamType::Cidr => ("cidr", vec![]),
        ParamType::Duration { .. } => ("duration", vec![]),
        ParamType::List => ("list", vec![]),
        ParamType::Enum { values } => ("enum", values.clone()),
    }
}

pub fn playbook(
    compiled: &Playbook,
    stored: Option<&StoredPlaybook>,
    source: &str,
) -> pb::Playbook {
    pb::Playbook {
        name: compiled.name.clone(),
        version: compiled.version,
        description: compiled.description.clone(),
        params: compiled
            .params
            .iter()
            .map(|p| {
                let (ty, values) = param_type(&p.ty);
                pb::Param {
                    name: p.name.clone(),
                    r#type: ty.to_string(),
                    required: p.required,
                    default_json: p
                        .default
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    description: p.description.clone(),
                    values,
                }
            })
            .collect(),
        steps: compiled
            .steps
            .iter()
            .map(|s| pb::StepSummary {
                id: s.id.clone(),
                action: s.action.clone(),
                needs: s
                    .needs
                    .iter()
                    .map(|&n| compiled.steps[n].id.clone())
                    .collect(),
            })
            .collect(),
        source: source.to_string(),
        applied_at_ms: stored.map_or(0, |s| s.applied_at_ms),
    }
}

pub fn task(leased: &LeasedTask) -> pb::Task {
    pb::Task {
        task_id: leased.task_id.to_string(),
        run_id: leased.task.unit.run.to_string(),
        step_id: leased.task.step_id.clone(),
        item: match leased.task.unit.slot {
            Slot::Step { item, .. } => item,
            _ => 0,
        },
        attempt: leased.task.attempt,
        action: leased.task.action.clone(),
        input_json: leased.task.input.to_string(),
        idempotency_key: leased.idempotency_key.clone(),
        lease_token: leased.token,
        timeout_ms: leased.task.timeout_ms,
        lease_ms: leased.lease_ms,
        dry_run: leased.task.dry_run,
    }
}

pub fn worker(worker: &Worker, in_flight: usize, now: std::time::Instant) -> pb::WorkerInfo {
    let mut actions: Vec<String> = worker.actions.iter().cloned().collect();
    actions.sort();
    pb::WorkerInfo {
        worker_id: worker.id.clone(),
        name: worker.name.clone(),
        labels: worker
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        actions,
        concurrency: worker.concurrency,
        tasks_in_flight: in_flight as u32,
        last_seen_ms_ago: now.duration_since(worker.last_seen).as_millis() as u64,
    }
}

pub fn grant(view: &crate::engine::GrantView) -> pb::GrantInfo {
    pb::GrantInfo {
        run_id: view.run.to_string(),
        playbook: view.playbook.clone(),
        step_id: view.step.clone(),
        item: view.item,
        subject: view.grant.subject.clone(),
        revoke_action: view.action.clone(),
        revoke_input_json: view.input.to_string(),
        opened_at_ms: view.grant.opened_at_ms,
        expires_at_ms: view.grant.expires_ms,
        status: view.status.to_string(),
        requested_by: view.requested_by.clone(),
        attempts: view.attempts,
        error: view.error.clone(),
    }
}

pub fn containment(state: &crate::store::Containment, held: usize) -> pb::ContainmentStatus {
    pb::ContainmentStatus {
        paused: state.paused,
        changed_by: state.by.clone(),
        changed_at_ms: state.at_ms,
        reason: state.reason.clone(),
        tasks_held: held as u32,
    }
}

pub fn approval(view: &crate::engine::ApprovalView) -> pb::PendingApproval {
    pb::PendingApproval {
        run_id: view.run.to_string(),
        playbook: view.playbook.clone(),
        step_id: view.step.clone(),
        action: view.action.clone(),
        input_json: view.input.to_string(),
        digest: view.pending.digest.clone(),
        approvers: view.approvers.clone(),
        min: view.min,
        decisions: view
            .pending
            .decisions
            .iter()
            .map(|d| pb::Decision {
                who: d.who.clone(),
                approve: d.approve,
                comment: d.comment.clone(),
                at_ms: d.at_ms,
                digest: d.digest.clone(),
            })
            .collect(),
        requested_by: view.requested_by.clone(),
        expires_at_ms: view.pending.due_ms,
        on_timeout: match view.on_timeout {
            riposte_playbooks::ApprovalOutcome::Approve => "approve",
            riposte_playbooks::ApprovalOutcome::Reject => "reject",
        }
        .to_string(),
    }
}

pub fn diagnostic(d: riposte_playbooks::Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        message: d.message,
        path: d.path,
        line: d.line,
        column: d.column,
    }
}

pub fn schedule(view: &crate::engine::ScheduleView) -> pb::ScheduleInfo {
    use riposte_playbooks::schedule::{CatchUp, Overlap};
    let s = &view.schedule;
    let overlap = match s.overlap {
        Overlap::Skip => "skip",
        Overlap::QueueOne => "queue_one",
        Overlap::Allow => "allow",
    };
    let catch_up = match s.catch_up {
        CatchUp::Skip => "skip".to_string(),
        CatchUp::Latest => "latest".to_string(),
        CatchUp::All { max } => format!("all (at most {max})"),
    };
    pb::ScheduleInfo {
        name: s.name.clone(),
        cron: s.cron.source().to_string(),
        timezone: s.timezone.name().to_string(),
        playbook: s.playbook.clone(),
        version: s.version.unwrap_or(0),
        overlap: overlap.to_string(),
        catch_up,
        paused: view.state.paused,
        paused_by: view.state.paused_by.clone(),
        paused_at_ms: view.state.paused_at_ms,
        paused_reason: view.state.paused_reason.clone(),
        next_fire_ms: view.next_fire_ms.unwrap_or(0),
        last_fate: view
            .last
            .as_ref()
            .map(|e| ledger_fate(e.fate).to_string())
            .unwrap_or_default(),
        last_scheduled_ms: view.last.as_ref().map_or(0, |e| e.scheduled_ms),
        applied_at_ms: view.stored.applied_at_ms,
        description: s.description.clone(),
        cursor_ms: view.state.cursor_ms,
        queued_scheduled_ms: view.state.queued.map_or(0, |q| q.scheduled_ms),
    }
}

pub fn ledger_entry(schedule: &str, entry: &crate::store::LedgerEntry) -> pb::LedgerEntry {
    pb::LedgerEntry {
        schedule: schedule.to_string(),
        scheduled_ms: entry.scheduled_ms,
        manual: entry.manual,
        fate: ledger_fate(entry.fate).to_string(),
        caught_up: entry.caught_up,
        run_id: entry.run_id.map(|id| id.to_string()).unwrap_or_default(),
        through_ms: entry.through_ms.unwrap_or(0),
        error: entry.error.clone(),
        by: entry.by.clone(),
        recorded_ms: entry.recorded_ms,
    }
}

/// A ledger entry's fate, as the wire and the metrics name it.
pub fn ledger_fate(fate: crate::store::LedgerFate) -> &'static str {
    use crate::store::LedgerFate;
    match fate {
        LedgerFate::Fired => "fired",
        LedgerFate::SkippedOverlap => "skipped_overlap",
        LedgerFate::Queued => "queued",
        LedgerFate::Missed => "missed",
        LedgerFate::OutsideWindow => "outside_window",
        LedgerFate::Paused => "paused",
        LedgerFate::StartFailed => "start_failed",
    }
}

/// A stored alert for the wire; the payload only when asked (`GetAlert`).
pub fn alert(stored: &crate::store::StoredAlert, with_payload: bool) -> pb::AlertInfo {
    let a = &stored.alert;
    pb::AlertInfo {
        id: stored.id.to_string(),
        source: stored.source.clone(),
        received_ms: stored.received_ms,
        alert_id: a.id.clone(),
        title: a.title.clone(),
        severity: a
            .severity
            .map(severity_name)
            .unwrap_or_default()
            .to_string(),
        fate: alert_fate(stored.fate).to_string(),
        run_id: stored.run_id.map(|id| id.to_string()).unwrap_or_default(),
        detail: stored.detail.clone(),
        alert_json: serde_json::to_string(a).expect("alert serializes"),
        payload: if with_payload {
            stored.payload.clone()
        } else {
            String::new()
        },
        entities: entities(&a.entities),
        rule: stored.rule.clone(),
    }
}

/// A rule for the wire.
pub fn rule(
    rule: &riposte_playbooks::rules::Rule,
    stored: &crate::store::StoredRule,
) -> pb::RuleInfo {
    pb::RuleInfo {
        name: rule.name.clone(),
        order: rule.order,
        r#match: rule.expression.clone(),
        playbook: rule.playbook.clone(),
        version: rule.version.unwrap_or(0),
        dedup_key: rule
            .dedup
            .as_ref()
            .map(|d| d.key.clone())
            .unwrap_or_default(),
        dedup_window_ms: rule.dedup.as_ref().map_or(0, |d| d.window_ms),
        budget_runs: rule.budget.map_or(0, |b| b.runs),
        budget_per_ms: rule.budget.map_or(0, |b| b.per_ms),
        applied_at_ms: stored.applied_at_ms,
        source: String::new(),
        enabled: stored.disabled.is_none(),
        disabled_by: stored
            .disabled
            .as_ref()
            .map(|d| d.by.clone())
            .unwrap_or_default(),
        disabled_at_ms: stored.disabled.as_ref().map_or(0, |d| d.at_ms),
        disabled_reason: stored
            .disabled
            .as_ref()
            .map(|d| d.reason.clone())
            .unwrap_or_default(),
    }
}

/// What the rules would do with one alert, for the wire.
pub fn verdict(v: &crate::engine::Verdict) -> pb::RuleVerdict {
    pb::RuleVerdict {
        alert_json: v.alert.to_string(),
        fate: alert_fate(v.fate).to_string(),
        rule: v.rule.clone(),
        playbook: v.playbook.clone(),
        params_json: v.params.as_ref().map(|p| p.to_string()).unwrap_or_default(),
        dedup_key: v.dedup_key.clone().unwrap_or_default(),
        run_id: v.run_id.map(|r| r.to_string()).unwrap_or_default(),
        detail: v.detail.clone(),
    }
}

fn severity_name(severity: riposte_ingest::Severity) -> &'static str {
    use riposte_ingest::Severity;
    match severity {
        Severity::Informational => "informational",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

pub fn alert_fate(fate: crate::store::AlertFate) -> &'static str {
    use crate::store::AlertFate;
    match fate {
        AlertFate::MatchedNothing => "matched_nothing",
        AlertFate::Started => "started",
        AlertFate::Deduplicated => "deduplicated",
        AlertFate::SuppressedByBudget => "suppressed_by_budget",
        AlertFate::StartRefused => "start_refused",
    }
}

fn entities(e: &riposte_ingest::Entities) -> Vec<String> {
    use riposte_ingest::Role;
    let role = |r: Option<Role>| match r {
        Some(Role::Attacker) => " (attacker)",
        Some(Role::Victim) => " (victim)",
        _ => "",
    };
    let ips = e
        .ips
        .iter()
        .map(|i| format!("ip {}{}", i.address, role(i.role)));
    let accounts = e
        .accounts
        .iter()
        .map(|a| format!("account {}{}", a.name, role(a.role)));
    let hosts = e
        .hosts
        .iter()
        .map(|h| format!("host {}{}", h.name, role(h.role)));
    ips.chain(accounts).chain(hosts).collect()
}

pub fn audit_record(record: &crate::store::AuditRecord) -> pb::AuditRecord {
    let entry = &record.entry;
    pb::AuditRecord {
        seq: record.seq,
        at_ms: entry.at_ms,
        principal: entry.principal.clone(),
        method: entry.method.clone(),
        source: entry.source.clone(),
        action: entry.action.clone(),
        target: entry.target.clone(),
        digest: entry.digest.clone(),
        outcome: entry.outcome.clone(),
        prev: record.prev.clone(),
        mac: record.mac.clone(),
    }
}

/// A poller's condition on the wire, its lag aged at `now_ms`.
pub fn alert_source(view: &crate::engine::pollers::SourceView, now_ms: i64) -> pb::AlertSourceInfo {
    let p = &view.poller;
    let s = &view.state;
    pb::AlertSourceInfo {
        name: p.name.clone(),
        kind: p.kind.name().to_owned(),
        action: p.kind.action().to_owned(),
        every_ms: p.every.as_millis() as u64,
        cursor_ms: s.cursor_ms.unwrap_or(0),
        last_success_ms: s.last_success_ms.unwrap_or(0),
        lag_ms: s.cursor_ms.map_or(0, |c| (now_ms - c).max(0) as u64),
        last_error: s.last_error.clone().unwrap_or_default(),
        last_error_ms: s.last_error_ms.unwrap_or(0),
        errors: s.errors,
        alerts: s.alerts,
        revisions: s.revisions,
        claimed_by: view.claimed_by.clone().unwrap_or_default(),
        next_ms: view.next_ms,
        unserved: view.unserved,
    }
}
