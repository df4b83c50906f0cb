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

/// The span of one attempt of a unit: `kind` is its history prefix (`task`, `undo`, `health`).
pub fn task_span(
    run: &RunState,
    playbook: &Playbook,
    kind: &str,
    step: &str,
    item: u32,
    attempt: u32,
) -> Option<TraceParent> {
    let run_span = TraceParent::parse(run.trace.as_deref()?)?;
    let name = format!("{kind}/{step}/{item}/{attempt}");
    Some(match kind {
        "undo" => run_span.child(&name),
        _ => step_span(&run_span, step, started(run, playbook, step)).child(&name),
    })
}

/// When the step with id `step` last started.
fn started(run: &RunState, playbook: &Playbook, step: &str) -> Option<i64> {
    let index = playbook.steps.iter().position(|s| s.id == step)?;
    run.steps.get(index)?.started_at_ms
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

    /// The run's own span, as it starts.
    pub fn started(&self, run: &RunState, span: TraceParent, parent: Option<TraceParent>) {
        let mut attributes = common(run);
        attributes.push(KeyValue::new(
            "riposte.requested_by",
            run.requested_by.clone(),
        ));
        self.recorder.record(Record {
            name: "run".into(),
            span,
            parent: parent.map(|p| p.span_id),
            kind: SpanKind::Internal,
            start_ms: run.created_at_ms,
            end_ms: run.created_at_ms,
            attributes,
            error: None,
        });
    }

    /// The rule's decision on one alert of a payload.
    pub(super) fn decided(
        &self,
        alert: &StoredAlert,
        fate: &str,
        span: TraceParent,
        received: Option<TraceParent>,
    ) {
        let mut attributes = vec![
            KeyValue::new("riposte.alert.id", alert.id.to_string()),
            KeyValue::new("riposte.alert.source", alert.source.clone()),
            KeyValue::new("riposte.outcome", fate.to_owned()),
        ];
        if !alert.rule.is_empty() {
            attributes.push(KeyValue::new("riposte.rule", alert.rule.clone()));
        }
        if let Some(run) = alert.run_id {
            attributes.push(KeyValue::new("riposte.run.id", run.to_string()));
        }
        self.recorder.record(Record {
            name: "rule.decided".into(),
            span,
            parent: received.map(|p| p.span_id),
            kind: SpanKind::Internal,
            start_ms: alert.received_ms,
            end_ms: alert.received_ms,
            attributes,
            error: None,
        });
    }

    /// One task attempt, ended by `event` (`outcome`: its kind's last word), leased at
    /// `start_ms` when known.
    pub(super) fn task(
        &self,
        run: &RunState,
        playbook: &Playbook,
        kind: &str,
        outcome: &str,
        event: &HistoryEvent,
        start_ms: Option<i64>,
    ) {
        let Some(span) = task_span(run, playbook, kind, &event.step, event.item, event.attempt)
        else {
            return;
        };
        let parent = match kind {
            "undo" => TraceParent::parse(run.trace.as_deref().unwrap_or_default()),
            _ => TraceParent::parse(run.trace.as_deref().unwrap_or_default())
                .map(|r| step_span(&r, &event.step, started(run, playbook, &event.step))),
        };
        let mut attributes = common(run);
        attributes.extend([
            KeyValue::new("riposte.step.id", event.step.clone()),
            KeyValue::new("riposte.action", action(run, playbook, kind, event)),
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
            parent: parent.map(|p| p.span_id),
            kind: SpanKind::Producer,
            start_ms: start_ms.unwrap_or(event.at_ms),
            end_ms: event.at_ms,
            attributes,
            error: failed.then(|| event.message.clone()),
        });
    }

    pub(super) fn step(
        &self,
        run: &RunState,
        run_span: &TraceParent,
        playbook: &Playbook,
        outcome: &str,
        event: &HistoryEvent,
    ) {
        let started = started(run, playbook, &event.step);
        let mut attributes = common(run);
        attributes.extend([
            KeyValue::new("riposte.step.id", event.step.clone()),
            KeyValue::new("riposte.action", action(run, playbook, "task", event)),
            KeyValue::new("riposte.outcome", outcome.to_owned()),
        ]);
        self.recorder.record(Record {
            name: format!("step {}", event.step).into(),
            span: step_span(run_span, &event.step, started),
            parent: Some(run_span.span_id),
            kind: SpanKind::Internal,
            start_ms: started.unwrap_or(event.at_ms),
            end_ms: event.at_ms,
            attributes,
            error: (outcome == "failed").then(|| event.message.clone()),
        });
    }

    pub(super) fn finished(&self, run: &RunState, run_span: &TraceParent, event: &HistoryEvent) {
        let status = event.run_status.unwrap_or(run.status);
        let mut attributes = common(run);
        attributes.push(KeyValue::new("riposte.outcome", status.as_str()));
        self.recorder.record(Record {
            name: "run.finished".into(),
            span: run_span.child("run.finished"),
            parent: Some(run_span.span_id),
            kind: SpanKind::Internal,
            start_ms: event.at_ms,
            end_ms: event.at_ms,
            attributes,
            error: (status.as_str() != "succeeded").then(|| event.message.clone()),
        });
    }
}

/// The action a history entry's unit runs.
pub(super) fn action(
    run: &RunState,
    playbook: &Playbook,
    kind: &str,
    event: &HistoryEvent,
) -> String {
    let step = playbook.steps.iter().position(|s| s.id == event.step);
    match kind {
        "undo" => run
            .undo
            .iter()
            .find(|u| step == Some(u.step) && u.item == event.item)
            .map(|u| u.action.clone()),
        "health" => Some("health".to_owned()),
        _ => step.map(|i| playbook.steps[i].action.clone()),
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
