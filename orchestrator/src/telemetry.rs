//! What the orchestrator tells of its work, from the history it writes: a run's spans
//! ([`spans`]) and the metrics ([`metrics`]). The engine hands every committed transition to
//! its [`Observer`]; with telemetry off, the observer does nothing.

pub mod metrics;
pub mod spans;

use std::collections::HashMap;

use opentelemetry::KeyValue;
use riposte_playbooks::Playbook;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState};
use riposte_telemetry::{Recorder, TraceParent};

use crate::store::{AlertFate, StoredAlert};

use metrics::metrics;
use spans::Spans;

/// A unit's attempt: (run, kind, step, item, attempt).
type Attempt = (RunId, String, String, u32, u32);

/// Turns committed history into spans and metrics.
#[derive(Debug, Default)]
pub struct Observer {
    spans: Option<Spans>,
    metrics: bool,
    /// When each attempt in flight was leased.
    leased: HashMap<Attempt, i64>,
}

impl Observer {
    /// Spans when `recorder` is given (traces exported), metrics when `metrics`.
    pub fn new(recorder: Option<Recorder>, metrics: bool) -> Observer {
        Observer {
            spans: recorder.map(Spans::new),
            metrics,
            leased: HashMap::new(),
        }
    }

    /// Whether anything is observed (spans or metrics); off, nothing is looked at.
    pub fn active(&self) -> bool {
        self.spans.is_some() || self.metrics
    }

    /// Whether runs get a trace.
    pub fn tracing(&self) -> bool {
        self.spans.is_some()
    }

    /// The trace context of a new run (a child of `parent`, the alert's decision), or none
    /// while traces are not exported.
    pub fn run_trace(&self, parent: Option<TraceParent>, run: RunId) -> Option<TraceParent> {
        self.tracing().then(|| spans::run_span(parent, run))
    }

    /// The run started: its own span.
    pub fn started(&self, run: &RunState, parent: Option<TraceParent>) {
        let span = run.trace.as_deref().and_then(TraceParent::parse);
        if let (Some(spans), Some(span)) = (&self.spans, span) {
            spans.started(run, span, parent);
        }
    }

    /// An alert got its fate: the rule's decision on it (a child of the payload's arrival,
    /// `received`), and the alert metrics.
    pub fn alert(
        &self,
        alert: &StoredAlert,
        received: Option<TraceParent>,
        decided: Option<TraceParent>,
    ) {
        let fate = crate::convert::alert_fate(alert.fate);
        if self.metrics {
            let labels = [
                KeyValue::new("source", alert.source.clone()),
                KeyValue::new("fate", fate),
            ];
            metrics().alerts.add(1, &labels);
            if alert.fate == AlertFate::Deduplicated {
                metrics()
                    .dedup_hits
                    .add(1, &[KeyValue::new("rule", alert.rule.clone())]);
            }
        }
        if let (Some(spans), Some(decided)) = (&self.spans, decided) {
            spans.decided(alert, fate, decided, received);
        }
    }

    /// A schedule's occurrences got their fates (written).
    pub fn schedule_fires(&self, schedule: &str, entries: &[crate::store::LedgerEntry]) {
        if !self.metrics {
            return;
        }
        for entry in entries {
            let labels = [
                KeyValue::new("schedule", schedule.to_owned()),
                KeyValue::new("fate", crate::convert::ledger_fate(entry.fate)),
            ];
            metrics().schedule_fires.add(1, &labels);
        }
    }

    /// New history of `run` is written.
    pub fn committed(&mut self, run: &RunState, playbook: &Playbook, history: &[&HistoryEvent]) {
        if !self.active() {
            return;
        }
        let run_span = run.trace.as_deref().and_then(TraceParent::parse);
        for event in history {
            let Some((kind, what)) = event.kind.split_once('.') else {
                continue;
            };
            let unit = matches!(kind, "task" | "undo" | "health");
            let facts = |action_kind| {
                let step_started = spans::started(run, playbook, &event.step);
                let action = spans::action(run, playbook, action_kind, event);
                (step_started, action)
            };
            // What a span of this entry needs, while spans are written.
            let entry = |action, step_started| {
                let run_span = run_span.filter(|_| self.spans.is_some())?;
                Some(spans::Entry {
                    run,
                    run_span,
                    event,
                    action,
                    step_started,
                })
            };
            match (kind, what) {
                (_, "leased") if unit => {
                    self.leased
                        .insert(attempt(run.id, kind, event), event.at_ms);
                }
                (_, "succeeded" | "failed" | "retry_scheduled" | "lease_expired") if unit => {
                    let start = self.leased.remove(&attempt(run.id, kind, event));
                    let (step_started, action) = facts(kind);
                    if self.metrics {
                        if let Some(start) = start {
                            let labels = [
                                KeyValue::new("action", action.to_owned()),
                                KeyValue::new("outcome", what.to_owned()),
                            ];
                            metrics()
                                .task_duration
                                .record(seconds(start, event.at_ms), &labels);
                        }
                        if what == "lease_expired" {
                            let labels = [KeyValue::new("action", action.to_owned())];
                            metrics().leases_expired.add(1, &labels);
                        }
                    }
                    if let (Some(spans), Some(entry)) = (&self.spans, entry(action, step_started)) {
                        spans.task(&entry, kind, what, start);
                    }
                }
                (_, "result_rejected") if unit && self.metrics => {
                    metrics().results_rejected.add(1, &[]);
                }
                ("step", "succeeded" | "failed" | "cancelled" | "skipped") => {
                    let (step_started, action) = facts("task");
                    if let Some(started) =
                        step_started.filter(|_| self.metrics && what != "skipped")
                    {
                        let labels = [
                            KeyValue::new("action", action.to_owned()),
                            KeyValue::new("outcome", what.to_owned()),
                        ];
                        metrics()
                            .step_duration
                            .record(seconds(started, event.at_ms), &labels);
                    }
                    if let (Some(spans), Some(entry)) = (&self.spans, entry(action, step_started)) {
                        spans.step(&entry, what);
                    }
                }
                ("run", "started") if self.metrics => {
                    let labels = [KeyValue::new("playbook", run.playbook.clone())];
                    metrics().runs_started.add(1, &labels);
                }
                ("run", "finished") => {
                    let status = event.run_status.unwrap_or(run.status).as_str();
                    if self.metrics {
                        let labels = [
                            KeyValue::new("playbook", run.playbook.clone()),
                            KeyValue::new("status", status),
                        ];
                        metrics().runs_finished.add(1, &labels);
                    }
                    if let (Some(spans), Some(entry)) = (&self.spans, entry("", None)) {
                        spans.finished(&entry, status);
                    }
                    self.leased.retain(|key, _| key.0 != run.id);
                }
                _ => {}
            }
        }
    }
}

fn attempt(run: RunId, kind: &str, event: &HistoryEvent) -> Attempt {
    (
        run,
        kind.to_owned(),
        event.step.clone(),
        event.item,
        event.attempt,
    )
}

fn seconds(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms).max(0) as f64 / 1000.0
}

/// What the admin listener asks of a running orchestrator: ready while its store takes
/// writes; the gauges read from the engine before each scrape.
pub struct Probe(pub std::sync::Arc<crate::door::Node>);

impl riposte_telemetry::admin::Probe for Probe {
    fn ready(&self) -> Result<(), riposte_telemetry::admin::NotReady> {
        let condition = self.0.condition();
        condition.map_err(|e| riposte_telemetry::admin::NotReady(e.to_string()))
    }

    fn refresh(&self) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move { refresh(&self.0) })
    }
}

/// Reads the gauges from the engine (when it is open).
pub fn refresh(node: &crate::door::Node) {
    if let Ok(gauges) = node.gauges() {
        metrics::set_gauges(gauges);
    }
}
