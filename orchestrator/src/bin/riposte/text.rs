//! The human-readable output (`--output table`): tables and lines built from the wire
//! messages. Pure: the current time comes in as `now_ms`.

use riposte_proto::v1::{
    ApplyPlaybookResponse, Diagnostic, Param, Playbook, Run, RunEvent, RunStatus, WorkerInfo,
};

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
            display::run_status(run.status()).to_string(),
            timestamp(run.created_at_ms),
            elapsed(run.created_at_ms, run.finished_at_ms, now_ms),
            or_none(&run.requested_by),
        ]);
    }
    lines(&rows)
}

/// One run: its header and its steps.
pub fn run(run: &Run, now_ms: i64) -> Vec<String> {
    let mut header = vec![
        ("run", run.run_id.clone()),
        ("playbook", format!("{}@{}", run.playbook, run.version)),
        ("status", display::run_status(run.status()).to_string()),
        ("params", or_none(&run.params_json)),
        ("requested by", or_none(&run.requested_by)),
    ];
    if !run.idempotency_key.is_empty() {
        header.push(("idempotency key", run.idempotency_key.clone()));
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
            display::step_status(step.status()).to_string(),
            step.attempts.to_string(),
            format!(
                "{}/{}/{}",
                step.items_succeeded, step.items_failed, step.items_total
            ),
            elapsed(step.started_at_ms, step.finished_at_ms, now_ms),
            or_none(&step.error),
        ]);
    }
    lines(&rows)
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
    let status = display::run_status(run.status());
    if run.status() == RunStatus::Running {
        format!("run {} {status} (cancel requested)", run.run_id)
    } else {
        format!("run {} {status}", run.run_id)
    }
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
    use riposte_proto::v1::{Step, StepStatus};

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
}
