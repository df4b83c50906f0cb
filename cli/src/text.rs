//! The human-readable output (`--output table`): tables and lines built from the wire
//! messages. Pure: the current time comes in as `now_ms`.

use riposte_proto::v1::{
    ApplyPlaybookResponse, ApplyScheduleResponse, ContainmentStatus, Decision, Diagnostic,
    GrantInfo, LedgerEntry, Param, PendingApproval, Playbook, Run, RunEvent, RunStatus,
    ScheduleInfo, Step, StepStatus, WorkerInfo,
};
use serde_json::Value;

use crate::display;
use crate::output::{fields, lines, table};

/// Placeholder for a value that is not there.
const NONE: &str = "-";

/// A validation problem as `FILE:LINE:COL: PATH: MESSAGE`; the position and the path are left
/// out when unknown.
pub fn diagnostic(file: &str, diagnostic: &Diagnostic) -> String {
    let mut line = file.to_string();
    if diagnostic.line > 0 {
        line.push_str(&format!(":{}:{}", diagnostic.line, diagnostic.column));
    }
    line.push_str(": ");
    if !diagnostic.path.is_empty() {
        line.push_str(&diagnostic.path);
        line.push_str(": ");
    }
    line.push_str(&diagnostic.message);
    line
}

/// A valid playbook file.
pub fn valid(file: &str, playbook: Option<&Playbook>) -> String {
    match playbook {
        Some(playbook) => format!("{file}: valid ({} v{})", playbook.name, playbook.version),
        None => format!("{file}: valid"),
    }
}

/// The outcome of applying one file.
pub fn applied(reply: &ApplyPlaybookResponse) -> String {
    let verb = if reply.unchanged {
        "unchanged"
    } else {
        "applied"
    };
    format!("{verb} {} v{}", reply.name, reply.version)
}

/// One line of a refusal to apply `file`. A line that starts with a position (`3:5: ...`)
/// is joined to the file name the way `validate` prints it (`FILE:3:5: ...`); an unknown
/// position (`0:0: `) is left out, as `validate` does.
pub fn refused(file: &str, line: &str) -> String {
    if let Some(rest) = line.strip_prefix("0:0: ") {
        format!("{file}: {rest}")
    } else if line.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{file}:{line}")
    } else {
        format!("{file}: {line}")
    }
}

/// The playbook list.
pub fn playbooks(playbooks: &[Playbook]) -> Vec<String> {
    let mut rows = table(&["NAME", "VERSION", "STEPS", "DESCRIPTION"]);
    for playbook in playbooks {
        rows.add_row(vec![
            playbook.name.clone(),
            playbook.version.to_string(),
            playbook.steps.len().to_string(),
            playbook.description.clone(),
        ]);
    }
    lines(&rows)
}

/// One playbook: its header, parameters and steps.
pub fn playbook(playbook: &Playbook) -> Vec<String> {
    let mut out = fields(&[
        ("name", playbook.name.clone()),
        ("version", playbook.version.to_string()),
        ("description", or_none(&playbook.description)),
        ("applied", timestamp(playbook.applied_at_ms)),
    ]);
    out.push(String::new());
    let mut params = table(&["PARAM", "TYPE", "REQUIRED", "DEFAULT"]);
    for param in &playbook.params {
        params.add_row(vec![
            param.name.clone(),
            param_type(param),
            yes_no(param.required).to_string(),
            or_none(&param.default_json),
        ]);
    }
    out.extend(lines(&params));
    out.push(String::new());
    let mut steps = table(&["STEP", "ACTION", "NEEDS"]);
    for step in &playbook.steps {
        steps.add_row(vec![
            step.id.clone(),
            step.action.clone(),
            or_none(&step.needs.join(",")),
        ]);
    }
    out.extend(lines(&steps));
    out
}

fn param_type(param: &Param) -> String {
    if param.values.is_empty() {
        param.r#type.clone()
    } else {
        format!("{}({})", param.r#type, param.values.join("|"))
    }
}

/// The run list.
pub fn runs(runs: &[Run], now_ms: i64) -> Vec<String> {
    let mut rows = table(&[
        "RUN", "PLAYBOOK", "VERSION", "STATUS", "STARTED", "DURATION", "BY",
    ]);
    for run in runs {
        rows.add_row(vec![
            run.run_id.clone(),
            run.playbook.clone(),
            run.version.to_string(),
            status(run),
            timestamp(run.created_at_ms),
            elapsed(run.created_at_ms, run.finished_at_ms, now_ms),
            or_none(&run.requested_by),
        ]);
    }
    lines(&rows)
}

/// A run's status in words, with its phase when it has one (`running (holding_grants)`),
/// and `dry run` for a plan (`succeeded, dry run`).
pub fn status(run: &Run) -> String {
    let mut status = display::run_status(run.status()).to_string();
    if !run.phase.is_empty() {
        status = format!("{status} ({})", run.phase);
    }
    if run.dry_run {
        status.push_str(", dry run");
    }
    status
}

/// True once a run has ended: it will not change again on its own.
pub fn ended(status: RunStatus) -> bool {
    matches!(
        status,
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
    )
}

/// One run: its header and its steps.
pub fn run(run: &Run, now_ms: i64) -> Vec<String> {
    let mut header = vec![
        ("run", run.run_id.clone()),
        ("playbook", format!("{}@{}", run.playbook, run.version)),
        ("status", display::run_status(run.status()).to_string()),
    ];
    if !run.phase.is_empty() {
        header.push(("phase", run.phase.clone()));
    }
    if run.dry_run {
        header.push((
            "dry run",
            "yes: every task was sent as a dry run; timers and approvals fired at once".into(),
        ));
    }
    header.extend([
        ("params", or_none(&run.params_json)),
        ("requested by", or_none(&run.requested_by)),
    ]);
    if !run.idempotency_key.is_empty() {
        header.push(("idempotency key", run.idempotency_key.clone()));
    }
    if !run.concurrency_key.is_empty() {
        header.push(("concurrency key", run.concurrency_key.clone()));
    }
    if run.deadline_ms > 0 {
        header.push(("deadline", instant(run.deadline_ms, now_ms)));
    }
    if !run.error.is_empty() {
        header.push(("error", run.error.clone()));
    }
    header.extend([
        ("created", timestamp(run.created_at_ms)),
        ("finished", timestamp(run.finished_at_ms)),
        (
            "duration",
            elapsed(run.created_at_ms, run.finished_at_ms, now_ms),
        ),
    ]);
    let mut out = fields(&header);
    out.push(String::new());
    out.extend(steps(run, now_ms));
    out
}

fn steps(run: &Run, now_ms: i64) -> Vec<String> {
    let mut rows = table(&[
        "STEP",
        "ACTION",
        "STATUS",
        "ATTEMPTS",
        "ITEMS OK/FAILED/TOTAL",
        "DURATION",
        "ERROR",
    ]);
    for step in &run.steps {
        rows.add_row(vec![
            step.id.clone(),
            step.action.clone(),
            step_status(step, now_ms),
            step.attempts.to_string(),
            items(step),
            elapsed(step.started_at_ms, step.finished_at_ms, now_ms),
            or_none(&step.error),
        ]);
    }
    lines(&rows)
}

/// A step's status; a sleeping step or one awaiting approval says until when
/// (`sleeping until 2025-03-01T12:00:00.000Z (in 23m)`).
fn step_status(step: &Step, now_ms: i64) -> String {
    let status = display::step_status(step.status());
    let waits = matches!(
        step.status(),
        StepStatus::Sleeping | StepStatus::AwaitingApproval
    );
    if waits && step.due_at_ms > 0 {
        format!("{status} until {}", instant(step.due_at_ms, now_ms))
    } else {
        status.to_string()
    }
}

/// `OK/FAILED/TOTAL`, with the items not started when there are any (`2/1/10 (7 pending)`).
fn items(step: &Step) -> String {
    let counts = format!(
        "{}/{}/{}",
        step.items_succeeded, step.items_failed, step.items_total
    );
    let mut notes = Vec::new();
    if step.items_pending > 0 {
        notes.push(format!("{} pending", step.items_pending));
    }
    if step.items_held > 0 {
        notes.push(format!("{} held: containment paused", step.items_held));
    }
    if notes.is_empty() {
        counts
    } else {
        format!("{counts} ({})", notes.join(", "))
    }
}

/// What `runs show` says below an unfinished run instead of its history: how to follow it,
/// and what it waits for.
pub fn unfinished(run: &Run) -> Vec<String> {
    let id = &run.run_id;
    let mut out = vec![match run.status() {
        RunStatus::Halted => format!(
            "the run is halted; resume it with `riposte runs resume {id}` or cancel it with \
             `riposte runs cancel {id}`"
        ),
        RunStatus::Queued => format!(
            "the run is queued until its concurrency key is free; follow it with \
             `riposte runs watch {id}`"
        ),
        _ => format!("the run is still running; follow its history with `riposte runs watch {id}`"),
    }];
    if run.phase == "holding_grants" {
        out.push(
            "its steps are done; it holds grants until they expire or are revoked \
             (`riposte grants list`)"
                .to_string(),
        );
    }
    for step in &run.steps {
        if step.status() == StepStatus::AwaitingApproval {
            out.push(format!(
                "step {} waits for a decision (`riposte approvals list`)",
                step.id
            ));
        }
        if step.items_held > 0 {
            out.push(format!(
                "step {} is held: containment is paused (`riposte containment status`)",
                step.id
            ));
        }
    }
    out
}

/// The first line of `riposte run`: `started run ID`, or `existing run ID` for a repeated
/// idempotency key, with what the run waits for (its concurrency key) and its deadline.
pub fn started(run: &Run, existing: bool, now_ms: i64) -> String {
    let verb = if existing { "existing" } else { "started" };
    let mut line = format!("{verb} run {}", run.run_id);
    let mut notes = Vec::new();
    if run.dry_run {
        notes.push("dry run".to_string());
    }
    if run.status() == RunStatus::Queued {
        if run.concurrency_key.is_empty() {
            notes.push("queued".to_string());
        } else {
            notes.push(format!(
                "queued: another run holds concurrency key `{}`",
                run.concurrency_key
            ));
        }
    }
    if let Some(deadline) = display::relative(run.deadline_ms, now_ms) {
        notes.push(format!("deadline {deadline}"));
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    line
}

/// The last line of a followed run that halted.
pub fn halted(run_id: &str, error: &str) -> String {
    let way_out = format!("resume with `riposte runs resume {run_id}` or cancel");
    if error.is_empty() {
        format!("run halted; {way_out}")
    } else {
        format!("run halted: {error}; {way_out}")
    }
}

/// One history event: `HH:MM:SS.mmm  STEP  KIND  DETAIL`.
pub fn event(event: &RunEvent) -> String {
    let step = if event.step_id.is_empty() {
        NONE
    } else {
        &event.step_id
    };
    let line = format!(
        "{}  {step:<16}  {:<20}  {}",
        display::clock(event.at_ms),
        event.kind,
        event_detail(event)
    );
    line.trim_end().to_string()
}

/// What an event says beyond its kind. The item is shown only when it is not 0: the event does
/// not tell item 0 of a `for_each` step from a plain step.
fn event_detail(event: &RunEvent) -> String {
    let mut parts = Vec::new();
    if event.item > 0 {
        parts.push(format!("item={}", event.item));
    }
    if event.attempt > 0 {
        parts.push(format!("attempt={}", event.attempt));
    }
    if !event.worker_id.is_empty() {
        parts.push(format!("worker={}", event.worker_id));
    }
    if event.run_status() != RunStatus::Unspecified {
        parts.push(format!(
            "status={}",
            display::run_status(event.run_status())
        ));
    }
    if !event.message.is_empty() {
        parts.push(event.message.clone());
    }
    parts.join(" ")
}

/// The last line of a followed run: `run ID STATUS in DURATION[: ERROR]`.
pub fn summary(run: &Run, now_ms: i64) -> String {
    let mut line = format!(
        "run {} {} in {}",
        run.run_id,
        display::run_status(run.status()),
        elapsed(run.created_at_ms, run.finished_at_ms, now_ms)
    );
    if !run.error.is_empty() {
        line.push_str(": ");
        line.push_str(&run.error);
    }
    line
}

/// A run's status after a cancellation request.
pub fn cancelled(run: &Run) -> String {
    let status = status(run);
    if ended(run.status()) {
        format!("run {} {status}", run.run_id)
    } else {
        format!("run {} {status} (cancel requested)", run.run_id)
    }
}

/// A run's status after a repair (retry, skip, resume): `run ID STATUS[: ERROR]`.
pub fn repaired(run: &Run) -> String {
    let mut line = format!("run {} {}", run.run_id, status(run));
    if !run.error.is_empty() {
        line.push_str(": ");
        line.push_str(&run.error);
    }
    line
}

/// What is about to be decided, for stderr: `approving DIGEST: INPUT` with the input as one
/// line of JSON.
pub fn deciding(approve: bool, approval: &PendingApproval) -> String {
    let verb = if approve { "approving" } else { "rejecting" };
    let input = serde_json::from_str::<Value>(&approval.input_json)
        .map_or_else(|_| approval.input_json.clone(), |input| input.to_string());
    format!("{verb} {}: {input}", approval.digest)
}

/// The outcome of a decision: `approved step STEP of run ID: step STATUS, run STATUS`.
pub fn decided(run: &Run, step_id: &str, approve: bool) -> String {
    let verb = if approve { "approved" } else { "rejected" };
    let run_status = status(run);
    match run.steps.iter().find(|step| step.id == step_id) {
        Some(step) => format!(
            "{verb} step {step_id} of run {}: step {}, run {run_status}",
            run.run_id,
            display::step_status(step.status())
        ),
        None => format!(
            "{verb} step {step_id} of run {}: run {run_status}",
            run.run_id
        ),
    }
}

/// The grant list.
pub fn grants(grants: &[GrantInfo], now_ms: i64) -> Vec<String> {
    let mut rows = table(&[
        "RUN", "PLAYBOOK", "STEP", "ITEM", "SUBJECT", "STATUS", "OPENED", "EXPIRES", "REVOKE",
    ]);
    for grant in grants {
        rows.add_row(vec![
            grant.run_id.clone(),
            grant.playbook.clone(),
            grant.step_id.clone(),
            grant.item.to_string(),
            or_none(&grant.subject),
            grant_status(grant),
            display::relative(grant.opened_at_ms, now_ms).unwrap_or_else(|| NONE.to_string()),
            display::relative(grant.expires_at_ms, now_ms).unwrap_or_else(|| "never".to_string()),
            or_none(&grant.revoke_action),
        ]);
    }
    lines(&rows)
}

/// One grant after a revocation request:
/// `grant run ID step STEP item N (subject S): STATUS`.
pub fn grant(grant: &GrantInfo) -> String {
    let mut line = format!(
        "grant run {} step {} item {}",
        grant.run_id, grant.step_id, grant.item
    );
    if !grant.subject.is_empty() {
        line.push_str(&format!(" (subject {})", grant.subject));
    }
    line.push_str(": ");
    line.push_str(&grant_status(grant));
    line
}

/// A grant's status, with why its revoke failed.
fn grant_status(grant: &GrantInfo) -> String {
    if grant.error.is_empty() {
        grant.status.clone()
    } else {
        format!("{}: {}", grant.status, grant.error)
    }
}

/// The pending approvals, one block each: where it is, who may decide, what was decided, until
/// when, the digest, and the input exactly as it would be acted on.
pub fn approvals(approvals: &[PendingApproval], now_ms: i64) -> Vec<String> {
    if approvals.is_empty() {
        return vec!["no step is waiting for a decision".to_string()];
    }
    let mut out = Vec::new();
    for approval in approvals {
        out.extend(self::approval(approval, now_ms));
        out.push(String::new());
    }
    out.push(
        "decide with `riposte approve RUN_ID STEP` (approve) or `riposte approve RUN_ID STEP \
         --reject`"
            .to_string(),
    );
    out
}

fn approval(approval: &PendingApproval, now_ms: i64) -> Vec<String> {
    let action = if approval.action.is_empty() {
        "- (approval step: the run's parameters)".to_string()
    } else {
        approval.action.clone()
    };
    let mut header = vec![
        ("run", approval.run_id.clone()),
        ("playbook", approval.playbook.clone()),
        ("step", approval.step_id.clone()),
        ("action", action),
        ("requested by", or_none(&approval.requested_by)),
        ("approvers", approvers(approval)),
    ];
    if approval.decisions.is_empty() {
        header.push(("decisions", "none yet".to_string()));
    }
    for decision in &approval.decisions {
        header.push((
            "decision",
            self::decision(decision, &approval.digest, now_ms),
        ));
    }
    let expires = if approval.expires_at_ms > 0 {
        let mut expires = instant(approval.expires_at_ms, now_ms);
        if !approval.on_timeout.is_empty() {
            expires.push_str(&format!(", then {}", approval.on_timeout));
        }
        expires
    } else {
        "never".to_string()
    };
    header.extend([
        ("expires", expires),
        ("digest", approval.digest.clone()),
        ("input", String::new()),
    ]);
    let mut out = fields(&header);
    out.extend(
        pretty_json(&approval.input_json)
            .lines()
            .map(|line| format!("  {line}")),
    );
    out
}

/// `secops, netops (2 approvals needed)`.
fn approvers(approval: &PendingApproval) -> String {
    let groups = or_none(&approval.approvers.join(", "));
    let noun = if approval.min == 1 {
        "approval"
    } else {
        "approvals"
    };
    format!("{groups} ({} {noun} needed)", approval.min)
}

/// `carol approved 3m ago: looks right`; a decision about other inputs says so.
fn decision(decision: &Decision, digest: &str, now_ms: i64) -> String {
    let verb = if decision.approve {
        "approved"
    } else {
        "rejected"
    };
    let mut line = format!("{} {verb}", decision.who);
    if let Some(when) = display::relative(decision.at_ms, now_ms) {
        line.push(' ');
        line.push_str(&when);
    }
    if !decision.digest.is_empty() && decision.digest != digest {
        line.push_str(&format!(" (for other inputs, digest {})", decision.digest));
    }
    if !decision.comment.is_empty() {
        line.push_str(": ");
        line.push_str(&decision.comment);
    }
    line
}

/// An embedded JSON document indented for reading; the text itself when it is not JSON.
fn pretty_json(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| json_text.to_string())
}

/// The kill switch: paused or not, by whom, since when, why, and what it holds.
pub fn containment(status: &ContainmentStatus, now_ms: i64) -> Vec<String> {
    let state = if status.paused {
        "paused: no containment task is handed to a worker"
    } else {
        "running"
    };
    let mut header = vec![("containment", state.to_string())];
    if !status.changed_by.is_empty() {
        let verb = if status.paused {
            "paused by"
        } else {
            "resumed by"
        };
        header.push((verb, status.changed_by.clone()));
        header.push(("since", instant(status.changed_at_ms, now_ms)));
        header.push(("reason", or_none(&status.reason)));
    }
    header.push(("tasks held", status.tasks_held.to_string()));
    fields(&header)
}

/// The outcome of applying one schedule file.
pub fn schedule_applied(reply: &ApplyScheduleResponse) -> String {
    let verb = if reply.unchanged {
        "unchanged"
    } else {
        "applied"
    };
    let name = reply.schedule.as_ref().map_or("", |s| s.name.as_str());
    format!("{verb} schedule {name}")
}

/// The schedule list.
pub fn schedules(schedules: &[ScheduleInfo], now_ms: i64) -> Vec<String> {
    let mut rows = table(&[
        "SCHEDULE",
        "CRON",
        "ZONE",
        "PLAYBOOK",
        "PAUSED",
        "NEXT FIRE",
        "LAST FATE",
    ]);
    for s in schedules {
        let paused = if s.paused && !s.paused_by.is_empty() {
            format!("yes (by {})", s.paused_by)
        } else {
            yes_no(s.paused).to_string()
        };
        let playbook = match s.version {
            0 => s.playbook.clone(),
            v => format!("{}@{v}", s.playbook),
        };
        rows.add_row(vec![
            s.name.clone(),
            s.cron.clone(),
            s.timezone.clone(),
            playbook,
            paused,
            instant(s.next_fire_ms, now_ms),
            or_none(&s.last_fate),
        ]);
    }
    lines(&rows)
}

/// A schedule's ledger, newest first.
pub fn ledger(entries: &[LedgerEntry]) -> Vec<String> {
    let mut rows = table(&["SCHEDULED", "KIND", "FATE", "RUN", "NOTE"]);
    for e in entries {
        rows.add_row(vec![
            timestamp(e.scheduled_ms),
            if e.manual { "manual" } else { "cron" }.to_string(),
            fate(e),
            or_none(&e.run_id),
            ledger_note(e),
        ]);
    }
    lines(&rows)
}

/// A manual trigger's entry.
pub fn triggered(entry: &LedgerEntry) -> String {
    match entry.run_id.as_str() {
        "" => format!("triggered {}: {}", entry.schedule, fate(entry)),
        run => format!("triggered {}: {} run {run}", entry.schedule, fate(entry)),
    }
}

fn fate(entry: &LedgerEntry) -> String {
    if entry.caught_up {
        format!("{} (caught up)", entry.fate)
    } else {
        entry.fate.clone()
    }
}

fn ledger_note(entry: &LedgerEntry) -> String {
    let mut notes = Vec::new();
    if entry.through_ms != 0 {
        notes.push(format!("through {}", timestamp(entry.through_ms)));
    }
    if !entry.by.is_empty() {
        notes.push(format!("by {}", entry.by));
    }
    if !entry.error.is_empty() {
        notes.push(entry.error.clone());
    }
    or_none(&notes.join("; "))
}

/// The worker list.
pub fn workers(workers: &[WorkerInfo]) -> Vec<String> {
    let mut rows = table(&[
        "WORKER",
        "NAME",
        "LABELS",
        "ACTIONS",
        "CONCURRENCY",
        "IN FLIGHT",
        "LAST SEEN",
    ]);
    for worker in workers {
        rows.add_row(vec![
            worker.worker_id.clone(),
            worker.name.clone(),
            or_none(&display::labels(&worker.labels)),
            or_none(&worker.actions.join(",")),
            worker.concurrency.to_string(),
            worker.tasks_in_flight.to_string(),
            format!("{} ago", display::duration(worker.last_seen_ms_ago)),
        ]);
    }
    lines(&rows)
}

fn timestamp(at_ms: i64) -> String {
    display::timestamp(at_ms).unwrap_or_else(|| NONE.to_string())
}

/// An instant with how far it is from now: `2025-03-01T12:00:00.000Z (in 23m)`.
fn instant(at_ms: i64, now_ms: i64) -> String {
    match display::relative(at_ms, now_ms) {
        Some(relative) => format!("{} ({relative})", timestamp(at_ms)),
        None => NONE.to_string(),
    }
}

fn elapsed(start_ms: i64, end_ms: i64, now_ms: i64) -> String {
    display::elapsed_ms(start_ms, end_ms, now_ms)
        .map_or_else(|| NONE.to_string(), display::duration)
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        NONE.to_string()
    } else {
        text.to_string()
    }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics_read_like_compiler_messages() {
        let located = Diagnostic {
            message: "unknown step `blok`".into(),
            path: "steps[2].needs[0]".into(),
            line: 14,
            column: 13,
        };
        assert_eq!(
            diagnostic("ip-block.yaml", &located),
            "ip-block.yaml:14:13: steps[2].needs[0]: unknown step `blok`"
        );
        let unplaced = Diagnostic {
            message: "empty document".into(),
            ..Diagnostic::default()
        };
        assert_eq!(diagnostic("-", &unplaced), "-: empty document");
    }

    #[test]
    fn refusal_lines_join_the_file_name() {
        assert_eq!(
            refused("a.yaml", "3:5: name: missing"),
            "a.yaml:3:5: name: missing"
        );
        assert_eq!(
            refused("a.yaml", "version 2 exists"),
            "a.yaml: version 2 exists"
        );
    }

    #[test]
    fn event_line_shows_time_step_kind_and_detail() {
        let leased = RunEvent {
            at_ms: 1_700_000_000_250,
            kind: "task.failed".into(),
            step_id: "block".into(),
            attempt: 2,
            worker_id: "w-7".into(),
            message: "timeout after 30s".into(),
            ..RunEvent::default()
        };
        assert_eq!(
            event(&leased),
            "22:13:20.250  block             task.failed           attempt=2 worker=w-7 timeout after 30s"
        );
        let finished = RunEvent {
            at_ms: 1_700_000_000_250,
            kind: "run.finished".into(),
            run_status: RunStatus::Cancelled as i32,
            ..RunEvent::default()
        };
        assert_eq!(
            event(&finished),
            "22:13:20.250  -                 run.finished          status=cancelled"
        );
    }

    #[test]
    fn run_shows_header_and_steps() {
        let run = Run {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            version: 3,
            status: RunStatus::Running as i32,
            params_json: r#"{"ip":"203.0.113.7"}"#.into(),
            requested_by: "alice".into(),
            created_at_ms: 1_700_000_000_000,
            steps: vec![Step {
                id: "guard".into(),
                action: "policy.check_ip".into(),
                status: StepStatus::Succeeded as i32,
                attempts: 1,
                items_total: 1,
                items_succeeded: 1,
                started_at_ms: 1_700_000_000_100,
                finished_at_ms: 1_700_000_000_400,
                ..Step::default()
            }],
            ..Run::default()
        };
        let expected = [
            "run:          r-1",
            "playbook:     ip-block@3",
            "status:       running",
            r#"params:       {"ip":"203.0.113.7"}"#,
            "requested by: alice",
            "created:      2023-11-14T22:13:20.000Z",
            "finished:     -",
            "duration:     5.0s",
            "",
            "STEP   ACTION           STATUS     ATTEMPTS  ITEMS OK/FAILED/TOTAL  DURATION  ERROR",
            "guard  policy.check_ip  succeeded  1         1/0/1                  300ms     -",
        ];
        assert_eq!(run_lines(&run), expected);
        assert_eq!(summary(&run, 1_700_000_005_000), "run r-1 running in 5.0s");
    }

    fn run_lines(run: &Run) -> Vec<String> {
        self::run(run, 1_700_000_005_000)
    }

    const NOW: i64 = 1_700_000_000_000;

    fn halted_rollout() -> Run {
        Run {
            run_id: "r-2".into(),
            playbook: "patch".into(),
            version: 1,
            status: RunStatus::Halted as i32,
            phase: "compensating".into(),
            params_json: "{}".into(),
            requested_by: "alice".into(),
            concurrency_key: "fleet-a".into(),
            deadline_ms: NOW + 2 * 3_600_000,
            error: "error budget spent".into(),
            created_at_ms: NOW - 60_000,
            steps: vec![
                Step {
                    id: "hosts".into(),
                    action: "os.patch".into(),
                    status: StepStatus::Sleeping as i32,
                    attempts: 1,
                    items_total: 10,
                    items_succeeded: 2,
                    items_failed: 1,
                    items_pending: 7,
                    due_at_ms: NOW + 23 * 60_000,
                    started_at_ms: NOW - 50_000,
                    ..Step::default()
                },
                Step {
                    id: "gate".into(),
                    action: "core.noop".into(),
                    status: StepStatus::AwaitingApproval as i32,
                    ..Step::default()
                },
            ],
            ..Run::default()
        }
    }

    #[test]
    fn run_shows_phase_key_deadline_pending_items_and_until() {
        let expected = [
            "run:             r-2",
            "playbook:        patch@1",
            "status:          halted",
            "phase:           compensating",
            "params:          {}",
            "requested by:    alice",
            "concurrency key: fleet-a",
            "deadline:        2023-11-15T00:13:20.000Z (in 2h00m)",
            "error:           error budget spent",
            "created:         2023-11-14T22:12:20.000Z",
            "finished:        -",
            "duration:        1m00s",
            "",
            "STEP   ACTION     STATUS                                            ATTEMPTS  \
             ITEMS OK/FAILED/TOTAL  DURATION  ERROR",
            "hosts  os.patch   sleeping until 2023-11-14T22:36:20.000Z (in 23m)  1         \
             2/1/10 (7 pending)     50.0s     -",
            "gate   core.noop  awaiting_approval                                 0         \
             0/0/0                  -         -",
        ];
        assert_eq!(run(&halted_rollout(), NOW), expected);
    }

    #[test]
    fn one_line_outcomes_carry_status_and_phase() {
        let mut halted = halted_rollout();
        assert_eq!(status(&halted), "halted (compensating)");
        assert_eq!(
            repaired(&halted),
            "run r-2 halted (compensating): error budget spent"
        );
        assert_eq!(
            cancelled(&halted),
            "run r-2 halted (compensating) (cancel requested)"
        );
        assert_eq!(
            decided(&halted, "gate", false),
            "rejected step gate of run r-2: step awaiting_approval, run halted (compensating)"
        );
        halted.status = RunStatus::Cancelled as i32;
        halted.phase.clear();
        assert_eq!(cancelled(&halted), "run r-2 cancelled");
        assert_eq!(
            decided(&halted, "nope", true),
            "approved step nope of run r-2: run cancelled"
        );
    }

    #[test]
    fn halted_line_names_the_way_out() {
        assert_eq!(
            halted("r-2", "error budget spent; failed: 3"),
            "run halted: error budget spent; failed: 3; resume with `riposte runs resume r-2` \
             or cancel"
        );
        assert_eq!(
            halted("r-2", ""),
            "run halted; resume with `riposte runs resume r-2` or cancel"
        );
    }

    #[test]
    fn started_line_says_queued_and_deadline() {
        let mut run = halted_rollout();
        run.status = RunStatus::Queued as i32;
        assert_eq!(
            started(&run, false, NOW),
            "started run r-2 (queued: another run holds concurrency key `fleet-a`; deadline in \
             2h00m)"
        );
        run.status = RunStatus::Running as i32;
        run.deadline_ms = 0;
        assert_eq!(started(&run, true, NOW), "existing run r-2");
    }

    #[test]
    fn unfinished_run_says_what_it_waits_for() {
        let mut run = halted_rollout();
        assert_eq!(
            unfinished(&run),
            [
                "the run is halted; resume it with `riposte runs resume r-2` or cancel it with \
                 `riposte runs cancel r-2`",
                "step gate waits for a decision (`riposte approvals list`)",
            ]
        );
        run.status = RunStatus::Running as i32;
        run.phase = "holding_grants".into();
        run.steps.clear();
        assert_eq!(
            unfinished(&run),
            [
                "the run is still running; follow its history with `riposte runs watch r-2`",
                "its steps are done; it holds grants until they expire or are revoked \
                 (`riposte grants list`)",
            ]
        );
    }

    fn open_grant() -> GrantInfo {
        GrantInfo {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            step_id: "block".into(),
            item: 0,
            subject: "203.0.113.7".into(),
            revoke_action: "firewall.unblock_ip".into(),
            revoke_input_json: r#"{"ip":"203.0.113.7"}"#.into(),
            opened_at_ms: NOW - 5 * 60_000,
            expires_at_ms: NOW + 23 * 60_000 + 10_000,
            status: "open".into(),
            requested_by: "alice".into(),
            ..GrantInfo::default()
        }
    }

    #[test]
    fn grants_table_shows_relative_times_and_the_revoke() {
        let failed = GrantInfo {
            item: 1,
            subject: String::new(),
            status: "failed".into(),
            error: "nft: busy".into(),
            expires_at_ms: 0,
            ..open_grant()
        };
        let expected = [
            "RUN  PLAYBOOK  STEP   ITEM  SUBJECT      STATUS             OPENED  EXPIRES  \
             REVOKE",
            "r-1  ip-block  block  0     203.0.113.7  open               5m ago  in 23m   \
             firewall.unblock_ip",
            "r-1  ip-block  block  1     -            failed: nft: busy  5m ago  never    \
             firewall.unblock_ip",
        ];
        assert_eq!(grants(&[open_grant(), failed], NOW), expected);
    }

    #[test]
    fn revoked_grant_line() {
        let revoking = GrantInfo {
            status: "revoking".into(),
            ..open_grant()
        };
        assert_eq!(
            grant(&revoking),
            "grant run r-1 step block item 0 (subject 203.0.113.7): revoking"
        );
    }

    fn pending_approval() -> PendingApproval {
        PendingApproval {
            run_id: "r-1".into(),
            playbook: "ip-block".into(),
            step_id: "block".into(),
            action: "firewall.block_ip".into(),
            input_json: r#"{"ip":"203.0.113.7","ttl":"1h"}"#.into(),
            digest: "ab".repeat(32),
            approvers: vec!["secops".into(), "netops".into()],
            min: 2,
            decisions: vec![
                Decision {
                    who: "carol".into(),
                    approve: true,
                    comment: "looks right".into(),
                    at_ms: NOW - 3 * 60_000,
                    digest: "ab".repeat(32),
                },
                Decision {
                    who: "dave".into(),
                    approve: true,
                    comment: String::new(),
                    at_ms: NOW - 10 * 60_000,
                    digest: "cd".repeat(32),
                },
            ],
            requested_by: "alice".into(),
            expires_at_ms: NOW + 23 * 60_000,
            on_timeout: "reject".into(),
        }
    }

    #[test]
    fn approval_block_shows_what_is_approved() {
        let digest = "ab".repeat(32);
        let other = "cd".repeat(32);
        let expected = vec![
            "run:          r-1".to_string(),
            "playbook:     ip-block".into(),
            "step:         block".into(),
            "action:       firewall.block_ip".into(),
            "requested by: alice".into(),
            "approvers:    secops, netops (2 approvals needed)".into(),
            "decision:     carol approved 3m ago: looks right".into(),
            format!("decision:     dave approved 10m ago (for other inputs, digest {other})"),
            "expires:      2023-11-14T22:36:20.000Z (in 23m), then reject".into(),
            format!("digest:       {digest}"),
            "input:".into(),
            "  {".into(),
            r#"    "ip": "203.0.113.7","#.into(),
            r#"    "ttl": "1h""#.into(),
            "  }".into(),
            String::new(),
            "decide with `riposte approve RUN_ID STEP` (approve) or `riposte approve RUN_ID STEP \
             --reject`"
                .into(),
        ];
        assert_eq!(approvals(&[pending_approval()], NOW), expected);
    }

    #[test]
    fn approval_step_without_decisions_or_deadline() {
        let gate = PendingApproval {
            action: String::new(),
            input_json: "{}".into(),
            min: 1,
            decisions: Vec::new(),
            expires_at_ms: 0,
            ..pending_approval()
        };
        let lines = approvals(&[gate], NOW);
        assert!(lines.contains(&"action:       - (approval step: the run's parameters)".into()));
        assert!(lines.contains(&"approvers:    secops, netops (1 approval needed)".into()));
        assert!(lines.contains(&"decisions:    none yet".into()));
        assert!(lines.contains(&"expires:      never".into()));
        assert_eq!(approvals(&[], NOW), ["no step is waiting for a decision"]);
    }

    #[test]
    fn deciding_line_binds_the_digest_to_the_compact_input() {
        let pending = PendingApproval {
            input_json: "{\n  \"ip\": \"203.0.113.7\"\n}".into(),
            ..pending_approval()
        };
        assert_eq!(
            deciding(true, &pending),
            format!("approving {}: {{\"ip\":\"203.0.113.7\"}}", "ab".repeat(32))
        );
        assert!(deciding(false, &pending).starts_with("rejecting abab"));
    }
}
