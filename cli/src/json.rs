//! The JSON documents of `--output json`, built by hand from the wire messages.
//!
//! Conventions: statuses are lowercase words, instants are RFC 3339 UTC strings, embedded
//! `*_json` fields are parsed back into JSON values, and empty optional texts are `null`.

use riposte_proto::v1::{
    ApplyPlaybookResponse, ApplyScheduleResponse, ContainmentStatus, Decision, Diagnostic,
    GrantInfo, LedgerEntry, Param, PendingApproval, Playbook, Run, RunEvent, RunStatus,
    ScheduleInfo, Step, StepSummary, WorkerInfo,
};
use serde_json::{Value, json};

use crate::display;

/// A run with its steps; `now_ms` gives the elapsed time of an unfinished run.
pub fn run(run: &Run, now_ms: i64) -> Value {
    json!({
        "run_id": run.run_id,
        "playbook": run.playbook,
        "version": run.version,
        "status": display::run_status(run.status()),
        "phase": text(&run.phase),
        "params": embedded(&run.params_json),
        "requested_by": text(&run.requested_by),
        "idempotency_key": text(&run.idempotency_key),
        "concurrency_key": text(&run.concurrency_key),
        "deadline": timestamp(run.deadline_ms),
        "dry_run": run.dry_run,
        "created_at": timestamp(run.created_at_ms),
        "finished_at": timestamp(run.finished_at_ms),
        "duration_ms": display::elapsed_ms(run.created_at_ms, run.finished_at_ms, now_ms),
        "error": text(&run.error),
        "steps": run.steps.iter().map(|s| step(s, now_ms)).collect::<Vec<_>>(),
    })
}

/// One step of a run.
pub fn step(step: &Step, now_ms: i64) -> Value {
    json!({
        "id": step.id,
        "action": step.action,
        "status": display::step_status(step.status()),
        "attempts": step.attempts,
        "output": embedded(&step.output_json),
        "output_omitted": text(&step.output_omitted),
        "error": text(&step.error),
        "items": {
            "total": step.items_total,
            "succeeded": step.items_succeeded,
            "failed": step.items_failed,
            "pending": step.items_pending,
            "held": step.items_held,
        },
        "due_at": timestamp(step.due_at_ms),
        "waiting": text(&step.waiting),
        "started_at": timestamp(step.started_at_ms),
        "finished_at": timestamp(step.finished_at_ms),
        "duration_ms": display::elapsed_ms(step.started_at_ms, step.finished_at_ms, now_ms),
    })
}

/// The kill switch.
pub fn containment(status: &ContainmentStatus) -> Value {
    json!({
        "paused": status.paused,
        "changed_by": text(&status.changed_by),
        "changed_at": timestamp(status.changed_at_ms),
        "reason": text(&status.reason),
        "tasks_held": status.tasks_held,
    })
}

/// The outcome of applying one schedule file.
pub fn schedule_applied(file: &str, reply: &ApplyScheduleResponse) -> Value {
    json!({
        "file": file,
        "valid": reply.diagnostics.is_empty(),
        "diagnostics": reply.diagnostics.iter().map(diagnostic).collect::<Vec<_>>(),
        "unchanged": reply.unchanged,
        "schedule": reply.schedule.as_ref().map(schedule),
    })
}

/// One schedule.
pub fn schedule(s: &ScheduleInfo) -> Value {
    json!({
        "name": s.name,
        "description": text(&s.description),
        "cron": s.cron,
        "timezone": s.timezone,
        "playbook": s.playbook,
        "version": (s.version != 0).then_some(s.version),
        "overlap": s.overlap,
        "catch_up": s.catch_up,
        "paused": s.paused,
        "paused_by": text(&s.paused_by),
        "paused_at": timestamp(s.paused_at_ms),
        "paused_reason": text(&s.paused_reason),
        "next_fire": timestamp(s.next_fire_ms),
        "next_fire_ms": s.next_fire_ms,
        "last_fate": text(&s.last_fate),
        "last_scheduled_ms": s.last_scheduled_ms,
        "cursor_ms": s.cursor_ms,
        "queued_scheduled_ms": (s.queued_scheduled_ms != 0).then_some(s.queued_scheduled_ms),
        "applied_at": timestamp(s.applied_at_ms),
    })
}

/// One ledger entry.
pub fn ledger_entry(e: &LedgerEntry) -> Value {
    json!({
        "schedule": e.schedule,
        "scheduled": timestamp(e.scheduled_ms),
        "scheduled_ms": e.scheduled_ms,
        "manual": e.manual,
        "fate": e.fate,
        "caught_up": e.caught_up,
        "run_id": text(&e.run_id),
        "through_ms": (e.through_ms != 0).then_some(e.through_ms),
        "error": text(&e.error),
        "by": text(&e.by),
        "recorded_ms": e.recorded_ms,
    })
}

/// One entry of a run's history.
pub fn event(event: &RunEvent) -> Value {
    let run_status = match event.run_status() {
        RunStatus::Unspecified => Value::Null,
        status => Value::from(display::run_status(status)),
    };
    json!({
        "run_id": event.run_id,
        "seq": event.seq,
        "at": timestamp(event.at_ms),
        "kind": event.kind,
        "step_id": text(&event.step_id),
        "item": event.item,
        "attempt": event.attempt,
        "worker_id": text(&event.worker_id),
        "message": text(&event.message),
        "run_status": run_status,
    })
}

/// A playbook's summary, without its source.
pub fn playbook(playbook: &Playbook) -> Value {
    json!({
        "name": playbook.name,
        "version": playbook.version,
        "description": text(&playbook.description),
        "params": playbook.params.iter().map(param).collect::<Vec<_>>(),
        "steps": playbook.steps.iter().map(step_summary).collect::<Vec<_>>(),
        "applied_at": timestamp(playbook.applied_at_ms),
    })
}

/// A playbook's summary with its YAML source.
pub fn playbook_with_source(source: &Playbook) -> Value {
    let mut document = playbook(source);
    document["source"] = Value::from(source.source.as_str());
    document
}

fn param(param: &Param) -> Value {
    json!({
        "name": param.name,
        "type": param.r#type,
        "required": param.required,
        "default": embedded(&param.default_json),
        "description": text(&param.description),
        "values": param.values,
    })
}

fn step_summary(step: &StepSummary) -> Value {
    json!({ "id": step.id, "action": step.action, "needs": step.needs })
}

/// A registered worker.
pub fn worker(worker: &WorkerInfo) -> Value {
    json!({
        "worker_id": worker.worker_id,
        "name": worker.name,
        "labels": worker.labels,
        "actions": worker.actions,
        "concurrency": worker.concurrency,
        "tasks_in_flight": worker.tasks_in_flight,
        "last_seen_ms_ago": worker.last_seen_ms_ago,
    })
}

/// An open (or revoking, or failed to revoke) grant, with the input of its revoke parsed.
pub fn grant(grant: &GrantInfo) -> Value {
    json!({
        "run_id": grant.run_id,
        "playbook": grant.playbook,
        "step_id": grant.step_id,
        "item": grant.item,
        "subject": text(&grant.subject),
        "status": grant.status,
        "revoke_action": text(&grant.revoke_action),
        "revoke_input": embedded(&grant.revoke_input_json),
        "opened_at": timestamp(grant.opened_at_ms),
        "expires_at": timestamp(grant.expires_at_ms),
        "requested_by": text(&grant.requested_by),
        "attempts": grant.attempts,
        "error": text(&grant.error),
    })
}

/// A step waiting for a decision, with the input it would act on parsed.
pub fn approval(approval: &PendingApproval) -> Value {
    json!({
        "run_id": approval.run_id,
        "playbook": approval.playbook,
        "step_id": approval.step_id,
        "action": text(&approval.action),
        "input": embedded(&approval.input_json),
        "digest": approval.digest,
        "approvers": approval.approvers,
        "min": approval.min,
        "decisions": approval.decisions.iter().map(decision).collect::<Vec<_>>(),
        "requested_by": text(&approval.requested_by),
        "expires_at": timestamp(approval.expires_at_ms),
        "on_timeout": text(&approval.on_timeout),
    })
}

fn decision(decision: &Decision) -> Value {
    json!({
        "who": decision.who,
        "approve": decision.approve,
        "comment": text(&decision.comment),
        "at": timestamp(decision.at_ms),
        "digest": text(&decision.digest),
    })
}

/// The validation result of one file.
pub fn validation(file: &str, diagnostics: &[Diagnostic], playbook: Option<&Playbook>) -> Value {
    json!({
        "file": file,
        "valid": diagnostics.is_empty(),
        "diagnostics": diagnostics.iter().map(diagnostic).collect::<Vec<_>>(),
        "playbook": playbook.map(self::playbook),
    })
}

fn diagnostic(diagnostic: &Diagnostic) -> Value {
    json!({
        "line": diagnostic.line,
        "column": diagnostic.column,
        "path": text(&diagnostic.path),
        "message": diagnostic.message,
    })
}

/// A playbook that was applied, or found unchanged.
pub fn applied(file: &str, reply: &ApplyPlaybookResponse) -> Value {
    json!({
        "file": file,
        "name": reply.name,
        "version": reply.version,
        "unchanged": reply.unchanged,
    })
}

/// A playbook that does not compile: every diagnostic, structured, and as message lines.
pub fn invalid(file: &str, code: &str, diagnostics: &[Diagnostic]) -> Value {
    // As the orchestrator words them: `line:column: path: message`.
    let lines: Vec<String> = diagnostics
        .iter()
        .map(|d| match d.path.as_str() {
            "" => format!("{}:{}: {}", d.line, d.column, d.message),
            path => format!("{}:{}: {path}: {}", d.line, d.column, d.message),
        })
        .collect();
    json!({
        "file": file,
        "error": {
            "code": code,
            "messages": lines,
            "diagnostics": diagnostics.iter().map(diagnostic).collect::<Vec<_>>(),
        }
    })
}

/// A playbook the orchestrator refused to apply: the status code in words and its message
/// lines.
pub fn refused(file: &str, code: &str, lines: &[&str]) -> Value {
    json!({ "file": file, "error": { "code": code, "messages": lines } })
}

/// An embedded JSON document; `null` when empty, the text itself when it is not JSON (so
/// nothing the orchestrator sent is hidden).
fn embedded(json_text: &str) -> Value {
    if json_text.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(json_text).unwrap_or_else(|_| Value::from(json_text))
}

fn text(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::from(text)
    }
}

fn timestamp(at_ms: i64) -> Value {
    display::timestamp(at_ms).map_or(Value::Null, Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_proto::v1::StepStatus;

    fn failed_run() -> Run {
        let block = Step {
            id: "block".into(),
            action: "firewall.block_ip".into(),
            status: StepStatus::Failed as i32,
            attempts: 5,
            output_json: String::new(),
            error: "nft: permission denied".into(),
            items_total: 1,
            items_succeeded: 0,
            items_failed: 1,
            started_at_ms: 1_700_000_000_500,
            finished_at_ms: 1_700_000_002_000,
            items_pending: 0,
            due_at_ms: 0,
            items_held: 0,
            waiting: String::new(),
            output_omitted: String::new(),
        };
        Run {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            version: 3,
            status: RunStatus::Failed as i32,
            params_json: r#"{"ip":"203.0.113.7","ttl":3600}"#.into(),
            requested_by: "alice".into(),
            idempotency_key: String::new(),
            created_at_ms: 1_700_000_000_000,
            finished_at_ms: 1_700_000_002_250,
            error: "step block failed".into(),
            steps: vec![block],
            phase: String::new(),
            concurrency_key: "ip:203.0.113.7".into(),
            deadline_ms: 0,
            dry_run: false,
        }
    }

    #[test]
    fn run_document() {
        let document = run(&failed_run(), 1_800_000_000_000);
        let expected = json!({
            "run_id": "r-1",
            "playbook": "ip-block",
            "version": 3,
            "status": "failed",
            "phase": null,
            "params": { "ip": "203.0.113.7", "ttl": 3600 },
            "requested_by": "alice",
            "idempotency_key": null,
            "concurrency_key": "ip:203.0.113.7",
            "deadline": null,
            "dry_run": false,
            "created_at": "2023-11-14T22:13:20.000Z",
            "finished_at": "2023-11-14T22:13:22.250Z",
            "duration_ms": 2250,
            "error": "step block failed",
            "steps": [{
                "id": "block",
                "action": "firewall.block_ip",
                "status": "failed",
                "attempts": 5,
                "output": null,
                "output_omitted": null,
                "error": "nft: permission denied",
                "items": { "total": 1, "succeeded": 0, "failed": 1, "pending": 0, "held": 0 },
                "due_at": null,
                "waiting": null,
                "started_at": "2023-11-14T22:13:20.500Z",
                "finished_at": "2023-11-14T22:13:22.000Z",
                "duration_ms": 1500,
            }],
        });
        assert_eq!(document, expected);
    }

    #[test]
    fn running_run_has_no_end_and_counts_to_now() {
        let mut running = failed_run();
        running.status = RunStatus::Running as i32;
        running.finished_at_ms = 0;
        running.error.clear();
        let document = run(&running, 1_700_000_010_000);
        assert_eq!(document["status"], "running");
        assert_eq!(document["finished_at"], Value::Null);
        assert_eq!(document["duration_ms"], 10_000);
        assert_eq!(document["error"], Value::Null);
    }

    #[test]
    fn halted_rollout_shows_phase_deadline_and_pending_items() {
        let mut halted = failed_run();
        halted.status = RunStatus::Halted as i32;
        halted.finished_at_ms = 0;
        halted.deadline_ms = 1_700_003_600_000;
        halted.steps[0].status = StepStatus::Sleeping as i32;
        halted.steps[0].items_total = 10;
        halted.steps[0].items_pending = 6;
        halted.steps[0].due_at_ms = 1_700_000_060_000;
        let document = run(&halted, 1_700_000_010_000);
        assert_eq!(document["status"], "halted");
        assert_eq!(document["deadline"], "2023-11-14T23:13:20.000Z");
        let step = &document["steps"][0];
        assert_eq!(step["status"], "sleeping");
        assert_eq!(step["items"]["pending"], 6);
        assert_eq!(step["due_at"], "2023-11-14T22:14:20.000Z");
        halted.phase = "compensating".into();
        assert_eq!(run(&halted, 0)["phase"], "compensating");
    }

    #[test]
    fn grant_document_parses_the_revoke_input() {
        let open = GrantInfo {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            step_id: "block".into(),
            item: 2,
            subject: "203.0.113.7".into(),
            revoke_action: "firewall.unblock_ip".into(),
            revoke_input_json: r#"{"ip":"203.0.113.7"}"#.into(),
            opened_at_ms: 1_700_000_000_000,
            expires_at_ms: 1_700_003_600_000,
            status: "open".into(),
            requested_by: "alice".into(),
            attempts: 0,
            error: String::new(),
        };
        let expected = json!({
            "run_id": "r-1",
            "playbook": "ip-block",
            "step_id": "block",
            "item": 2,
            "subject": "203.0.113.7",
            "status": "open",
            "revoke_action": "firewall.unblock_ip",
            "revoke_input": { "ip": "203.0.113.7" },
            "opened_at": "2023-11-14T22:13:20.000Z",
            "expires_at": "2023-11-14T23:13:20.000Z",
            "requested_by": "alice",
            "attempts": 0,
            "error": null,
        });
        assert_eq!(grant(&open), expected);
        let forever = GrantInfo {
            expires_at_ms: 0,
            ..open
        };
        assert_eq!(grant(&forever)["expires_at"], Value::Null);
    }

    #[test]
    fn approval_document_carries_input_digest_and_decisions() {
        let pending = PendingApproval {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            step_id: "block".into(),
            action: "firewall.block_ip".into(),
            input_json: r#"{"ip":"203.0.113.7","ttl":"1h"}"#.into(),
            digest: "ab".repeat(32),
            approvers: vec!["secops".into(), "netops".into()],
            min: 2,
            decisions: vec![Decision {
                who: "carol".into(),
                approve: true,
                comment: String::new(),
                at_ms: 1_700_000_000_000,
                digest: "ab".repeat(32),
            }],
            requested_by: "alice".into(),
            expires_at_ms: 1_700_003_600_000,
            on_timeout: "reject".into(),
        };
        let expected = json!({
            "run_id": "r-1",
            "playbook": "ip-block",
            "step_id": "block",
            "action": "firewall.block_ip",
            "input": { "ip": "203.0.113.7", "ttl": "1h" },
            "digest": "ab".repeat(32),
            "approvers": ["secops", "netops"],
            "min": 2,
            "decisions": [{
                "who": "carol",
                "approve": true,
                "comment": null,
                "at": "2023-11-14T22:13:20.000Z",
                "digest": "ab".repeat(32),
            }],
            "requested_by": "alice",
            "expires_at": "2023-11-14T23:13:20.000Z",
            "on_timeout": "reject",
        });
        assert_eq!(approval(&pending), expected);
        let gate = PendingApproval {
            action: String::new(),
            ..pending
        };
        assert_eq!(approval(&gate)["action"], Value::Null);
    }

    #[test]
    fn embedded_json_that_is_not_json_stays_text() {
        assert_eq!(embedded("[1, 2]"), json!([1, 2]));
        assert_eq!(embedded("not json"), json!("not json"));
        assert_eq!(embedded(""), Value::Null);
    }

    #[test]
    fn finished_event_carries_the_run_status() {
        let finished = RunEvent {
            run_id: "r-1".into(),
            seq: 9,
            at_ms: 1_700_000_002_250,
            kind: "run.finished".into(),
            run_status: RunStatus::Succeeded as i32,
            ..RunEvent::default()
        };
        let document = event(&finished);
        assert_eq!(document["run_status"], "succeeded");
        assert_eq!(document["step_id"], Value::Null);
        assert_eq!(document["at"], "2023-11-14T22:13:22.250Z");
    }
}
