//! A run's trace, written from its history.
//!
//! The run's span is written when the run starts (a child of the alert's `rule.decided` span,
//! or the root of its own trace for an operator's or a schedule's start) and its context is
//! stored with the run ([`RunState::trace`]). Every later span of the run is short and written
//! whole when it ends, from the history entries that end it, with an id derived from the
//! run's context ([`riposte_telemetry::TraceParent::child`]), so a restart in between changes
//! nothing: `step` (started → ended, a child of the run's span), one span per task attempt
//! (leased → result, a child of its step's span; an undo's is a child of the run's span, as it
//! may run hours later), and `run.finished`. The worker's spans are children of the task
//! attempt's span, whose context the task carries ([`task_span`]).

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use riposte_playbooks::Playbook;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState};
use riposte_telemetry::{Record, Recorder, TraceParent};

use crate::store::StoredAlert;

/// The run's span: a child of `parent` (the alert's decision), or the root of a trace named
/// by the run's id.
pub fn run_span(parent: Option<TraceParent>, run: RunId) -> TraceParent {
    match parent {
        Some(parent) => parent.child(&format!("run/{run}")),
        None => TraceParent::root(run.to_bytes(), "run", true),
    }
}

/// The span of the step `step` that started at `started_ms`.
fn step_span(run: &TraceParent, step: &str, started_ms: Option<i64>) -> TraceParent {
    run.child(&format!("step/{step}/{}", started_ms.unwrap_or(0)))
}

/// The span of one attempt of a unit of the run whose span is `run`, and the span it is a
/// child of: `kind` is the unit's history prefix (`task`, `undo`, `health`), `started_ms` when
/// its step last started.
fn unit_span(
    run: &TraceParent,
    (kind, step, started_ms): (&str, &str, Option<i64>),
    item: u32,
    attempt: u32,
) -> (TraceParent, TraceParent) {
    let name = format!("{kind}/{step}/{item}/{attempt}");
    let parent = match kind {
        "undo" => *run,
        _ => step_span(run, step, started_ms),
    };
    (parent.child(&name), parent)
}

/// The span of one attempt of a unit of `run` (see [`unit_span`]), for the task handed out.
pub fn task_span(
    run: &RunState,
    playbook: &Playbook,
    kind: &str,
    step: &str,
    item: u32,
    attempt: u32,
) -> Option<TraceParent> {
    let run_span = TraceParent::parse(run.trace.as_deref()?)?;
    let unit = (kind, step, started(run, playbook, step));
    Some(unit_span(&run_span, unit, item, attempt).0)
}

/// When the step with id `step` last started.
pub(super) fn started(run: &RunState, playbook: &Playbook, step: &str) -> Option<i64> {
    run.steps.get(playbook.step_index(step)?)?.started_at_ms
}

/// What the spans of one history entry of a run need, worked out once by the observer.
pub(super) struct Entry<'a> {
    pub(super) run: &'a RunState,
    /// The run's span, from its stored context.
    pub(super) run_span: TraceParent,
    pub(super) event: &'a HistoryEvent,
    /// The action of the entry's unit or step.
    pub(super) action: &'a str,
    /// When the entry's step last started.
    pub(super) step_started: Option<i64>,
}

/// Writes the spans of runs as their history grows.
#[derive(Debug)]
pub struct Spans {
    recorder: Recorder,
}

impl Spans {
    pub fn new(recorder: Recorder) -> Spans {
        Spans { recorder }
    }

    /// A span of no duration at `at_ms`: something that happened at once.
    fn instant(
        &self,
        name: &'static str,
        (span, parent): (TraceParent, Option<TraceParent>),
        at_ms: i64,
        attributes: Vec<KeyValue>,
        error: Option<String>,
    ) {
        self.recorder.record(Record {
            name: name.into(),
            span,
            parent: parent.map(|p| p.span_id),
            kind: SpanKind::Internal,
            start_ms: at_ms,
            end_ms: at_ms,
            attributes,
            error,
        });
    }

    /// The run's own span, as it starts.
    pub fn started(&self, run: &RunState, span: TraceParent, parent: Option<TraceParent>) {
        let mut attributes = common(run);
        attributes.push(KeyValue::new(
            "riposte.requested_by",
            run.requested_by.clone(),
        ));
        self.instant("run", (span, parent), run.created_at_ms, attributes, None);
    }

    /// The rule's decision on one alert of a payload.
    pub(super) fn decided(
        &self,
        alert: &StoredAlert,
        fate: &'static str,
        span: TraceParent,
        received: Option<TraceParent>,
    ) {
        let mut attributes = vec![
            KeyValue::new("riposte.alert.id", alert.id.to_string()),
            KeyValue::new("riposte.alert.source", alert.source.clone()),
            KeyValue::new("riposte.outcome", fate),
        ];
        if !alert.rule.is_empty() {
            attributes.push(KeyValue::new("riposte.rule", alert.rule.clone()));
        }
        if let Some(run) = alert.run_id {
            attributes.push(KeyValue::new("riposte.run.id", run.to_string()));
        }
        let at_ms = alert.received_ms;
        self.instant("rule.decided", (span, received), at_ms, attributes, None);
    }

    /// One task attempt, ended by the entry (`outcome`: its kind's last word), leased at
    /// `start_ms` when known.
    pub(super) fn task(&self, entry: &Entry, kind: &str, outcome: &str, start_ms: Option<i64>) {
        let (run, event) = (entry.run, entry.event);
        let unit = (kind, event.step.as_str(), entry.step_started);
        let (span, parent) = unit_span(&entry.run_span, unit, event.item, event.attempt);
        let mut attributes = common(run);
        attributes.extend([
            KeyValue::new("riposte.step.id", event.step.clone()),
            KeyValue::new("riposte.action", entry.action.to_owned()),
            KeyValue::new("riposte.item", i64::from(event.item)),
            KeyValue::new("riposte.attempt", i64::from(event.attempt)),
            KeyValue::new("riposte.outcome", outcome.to_owned()),
        ]);
        if !event.worker.is_empty() {
            attributes.push(KeyValue::new("riposte.worker.name", event.worker.clone()));
        }
        let failed = matches!(outcome, "failed" | "retry_scheduled" | "lease_expired");
        self.recorder.record(Record {
            name: format!("{kind} {}", event.step).into(),
            span,
            parent: Some(parent.span_id),
            kind: SpanKind::Producer,
            start_ms: start_ms.unwrap_or(event.at_ms),
            end_ms: event.at_ms,
            attributes,
            error: failed.then(|| event.message.clone()),
        });
    }

    /// A step, ended by the entry with `outcome`.
    pub(super) fn step(&self, entry: &Entry, outcome: &str) {
        let (run, run_span, event) = (entry.run, &entry.run_span, entry.event);
        let step_started = entry.step_started;
        let mut attributes = common(run);
        attributes.extend([
            KeyValue::new("riposte.step.id", event.step.clone()),
            KeyValue::new("riposte.action", entry.action.to_owned()),
            KeyValue::new("riposte.outcome", outcome.to_owned()),
        ]);
        self.recorder.record(Record {
            name: format!("step {}", event.step).into(),
            span: step_span(run_span, &event.step, step_started),
            parent: Some(run_span.span_id),
            kind: SpanKind::Internal,
            start_ms: step_started.unwrap_or(event.at_ms),
            end_ms: event.at_ms,
            attributes,
            error: (outcome == "failed").then(|| event.message.clone()),
        });
    }

    /// The run's end, with its status.
    pub(super) fn finished(&self, entry: &Entry, status: &'static str) {
        let (run, run_span) = (entry.run, entry.run_span);
        let mut attributes = common(run);
        attributes.push(KeyValue::new("riposte.outcome", status));
        let error = (status != "succeeded").then(|| entry.event.message.clone());
        let spans = (run_span.child("run.finished"), Some(run_span));
        self.instant("run.finished", spans, entry.event.at_ms, attributes, error);
    }
}

/// The action a history entry's unit runs (`kind`: its history prefix).
pub(super) fn action<'a>(
    run: &'a RunState,
    playbook: &'a Playbook,
    kind: &str,
    event: &HistoryEvent,
) -> &'a str {
    let step = playbook.step_index(&event.step);
    match kind {
        "undo" => run
            .undo
            .iter()
            .find(|u| step == Some(u.step) && u.item == event.item)
            .map(|u| u.action.as_str()),
        "health" => Some("health"),
        _ => step.map(|i| playbook.steps[i].action.as_str()),
    }
    .unwrap_or_default()
}

/// The attributes every span of a run carries.
fn common(run: &RunState) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("riposte.run.id", run.id.to_string()),
        KeyValue::new("riposte.playbook", run.playbook.clone()),
        KeyValue::new("riposte.playbook.version", i64::from(run.version)),
    ];
    if run.dry_run {
        attributes.push(KeyValue::new("riposte.dry_run", true));
    }
    attributes
}
