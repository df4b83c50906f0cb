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
/// `dry run` for a plan (`succeeded, dry run`), and the first step that waits for a worker
/// nobody runs (`running, step block queued (no worker offers firewall.block_ip)`).
pub fn status(run: &Run) -> String {
    let mut status = display::run_status(run.status()).to_string();
    if !run.phase.is_empty() {
        status = format!("{status} ({})", run.phase);
    }
    if run.dry_run {
        status.push_str(", dry run");
    }
    if let Some(step) = run.steps.iter().find(|s| !s.waiting.is_empty()) {
        status.push_str(&format!(", step {} {}", step.id, step.waiting));
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
        "OUTPUT",
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
            output(step, OUTPUT_SHOWN_MAX),
        ]);
    }
    lines(&rows)
}

/// Characters of a step's output a table shows (`--output json` has all of it).
const OUTPUT_SHOWN_MAX: usize = 60;
/// Characters of a step's output a dry run's plan shows.
const PLAN_SHOWN_MAX: usize = 400;

/// A step's output as one line of compact JSON, cut at `max` characters (`…` marks the cut);
/// `-` when it has none.
fn output(step: &Step, max: usize) -> String {
    if !step.output_omitted.is_empty() {
        return step.output_omitted.clone();
    }
    let compact = serde_json::from_str::<serde_json::Value>(&step.output_json)
        .map(|value| value.to_string())
        .unwrap_or_else(|_| step.output_json.clone());
    if compact.is_empty() || compact == "null" {
        return "-".to_string();
    }
    match compact.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &compact[..cut]),
        None => compact,
    }
}

/// What a dry run would have done: each step that ran, with its output (the connector's plan).
pub fn plan(run: &Run) -> Vec<String> {
    let mut lines = vec!["plan (dry run: nothing was changed):".to_string()];
    for step in &run.steps {
        let output = output(step, PLAN_SHOWN_MAX);
        if output != "-" {
            lines.push(format!("  {} ({}): {output}", step.id, step.action));
        }
    }
    lines
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
    } else if !step.waiting.is_empty() {
        format!("{status}, {}", step.waiting)
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
        if !step.waiting.is_empty() {
            out.push(format!(
                "step {} is {}: start a worker that does (`riposte workers list`)",
                step.id, step.waiting
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

/// An embedded JSON document indented for reading; the text itself when it is not JSON.
fn pretty_json(json_text: &str) -> String {
    serde_json::from_str::<Value>(json_text)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| json_text.to_string())
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

mod response;
#[cfg(test)]
mod tests;
pub use response::{approvals, containment, decided, deciding, grant, grants};
