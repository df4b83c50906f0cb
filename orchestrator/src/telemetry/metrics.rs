//! The orchestrator's metrics, by their OpenTelemetry names (Prometheus turns dots into
//! underscores and adds the unit and `_total`: `riposte.runs.finished` is
//! `riposte_runs_finished_total`). Labels are bounded sets: playbook, action, worker, rule
//! and schedule names, sources, fates, statuses, refusal reasons; never an id.
//!
//! Counters and histograms move as things happen; the gauges read a [`Gauges`] snapshot of
//! the engine's state, refreshed before each scrape and each push ([`set_gauges`]).

use std::sync::{Mutex, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

/// The instruments, built once from the global meter provider.
pub struct Metrics {
    pub runs_started: Counter<u64>,
    pub runs_finished: Counter<u64>,
    pub step_duration: Histogram<f64>,
    pub task_duration: Histogram<f64>,
    pub leases_expired: Counter<u64>,
    pub results_rejected: Counter<u64>,
    pub alerts: Counter<u64>,
    pub dedup_hits: Counter<u64>,
    pub refusals: Counter<u64>,
    pub schedule_fires: Counter<u64>,
    pub store_flush: Histogram<f64>,
    pub store_writes: Histogram<u64>,
    _gauges: Vec<ObservableGauge<f64>>,
}

/// The state the gauges show, as last read from the engine.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Per action: tasks queued, and the age of the oldest, in seconds.
    pub queue: Vec<(String, u64, f64)>,
    pub grants_open: u64,
    pub grants_overdue: u64,
    pub approvals_pending: u64,
    /// Seconds the oldest pending approval has waited.
    pub approvals_oldest: f64,
    /// Live workers by name, with the connections (worker ids) under each.
    pub workers: Vec<(String, u64)>,
    /// Active runs.
    pub runs_active: u64,
}

/// What a gauge reads from the snapshot: values with their labels.
type Observe = fn(&Gauges) -> Vec<(f64, Vec<KeyValue>)>;

static METRICS: OnceLock<Metrics> = OnceLock::new();
static GAUGES: Mutex<Option<Gauges>> = Mutex::new(None);

/// The instruments (no-op ones until telemetry set a meter provider up).
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(&riposte_telemetry::instruments::meter()))
}

/// Replaces the snapshot the gauges report.
pub fn set_gauges(gauges: Gauges) {
    *GAUGES.lock().unwrap_or_else(|e| e.into_inner()) = Some(gauges);
}

fn read<T>(f: impl FnOnce(&Gauges) -> T) -> Option<T> {
    GAUGES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(f)
}

impl Metrics {
    fn new(meter: &Meter) -> Metrics {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        let seconds =
            |name, description| riposte_telemetry::instruments::seconds(meter, name, description);
        let gauge = |name: &'static str,
                     unit: &'static str,
                     description: &'static str,
                     observe: Observe| {
            meter
                .f64_observable_gauge(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |observer| {
                    for (value, labels) in read(observe).unwrap_or_default() {
                        observer.observe(value, &labels);
                    }
                })
                .build()
        };
        Metrics {
            runs_started: counter("riposte.runs.started", "{run}", "Runs started, by playbook"),
            runs_finished: counter(
                "riposte.runs.finished",
                "{run}",
                "Runs ended, by playbook and status",
            ),
            step_duration: seconds(
                "riposte.step.duration",
                "Steps from start to end, by action and outcome",
            ),
            task_duration: seconds(
                "riposte.task.duration",
                "Task attempts from lease to result, by action and outcome",
            ),
            leases_expired: counter(
                "riposte.leases.expired",
                "{lease}",
                "Leases that expired without a result (worker dead or frozen), by action",
            ),
            results_rejected: counter(
                "riposte.results.rejected",
                "{result}",
                "Results refused (stale fencing token, wrong worker, ended run)",
            ),
            alerts: counter(
                "riposte.alerts",
                "{alert}",
                "Alerts stored, by source and fate",
            ),
            dedup_hits: counter(
                "riposte.alerts.deduplicated",
                "{alert}",
                "Alerts absorbed by a run already started for the same dedup key, by rule",
            ),
            refusals: counter(
                "riposte.refusals",
                "{refusal}",
                "Requests and connections refused at the edges, by reason",
            ),
            schedule_fires: counter(
                "riposte.schedule.fires",
                "{occurrence}",
                "Schedule occurrences decided, by schedule and fate",
            ),
            store_flush: seconds(
                "riposte.store.flush.duration",
                "Group commits: flush (and fdatasync) time",
            ),
            store_writes: meter
                .u64_histogram("riposte.store.flush.writes")
                .with_unit("{write}")
                .with_description("Group commits: writes made durable by one flush")
                .with_boundaries(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
                ])
                .build(),
            _gauges: vec![
                gauge(
                    "riposte.queue.depth",
                    "{task}",
                    "Tasks waiting for a worker, by action",
                    |g| {
                        g.queue
                            .iter()
                            .map(|(a, n, _)| (*n as f64, vec![KeyValue::new("action", a.clone())]))
                            .collect()
                    },
                ),
                gauge(
                    "riposte.queue.oldest_age",
                    "s",
                    "Age of the oldest task waiting for a worker, by action",
                    |g| {
                        g.queue
                            .iter()
                            .map(|(a, _, age)| (*age, vec![KeyValue::new("action", a.clone())]))
                            .collect()
                    },
                ),
                gauge(
                    "riposte.grants.open",
                    "{grant}",
                    "Grants open (not yet revoked)",
                    |g| vec![(g.grants_open as f64, vec![])],
                ),
                gauge(
                    "riposte.grants.overdue",
                    "{grant}",
                    "Open grants past their expiry",
                    |g| vec![(g.grants_overdue as f64, vec![])],
                ),
                gauge(
                    "riposte.approvals.pending",
                    "{approval}",
                    "Steps waiting for a decision",
                    |g| vec![(g.approvals_pending as f64, vec![])],
                ),
                gauge(
                    "riposte.approvals.oldest_age",
                    "s",
                    "Time the oldest pending approval has waited",
                    |g| vec![(g.approvals_oldest, vec![])],
                ),
                gauge(
                    "riposte.workers.connected",
                    "{worker}",
                    "Live worker connections, by worker name",
                    |g| {
                        g.workers
                            .iter()
                            .map(|(w, n)| (*n as f64, vec![KeyValue::new("worker", w.clone())]))
                            .collect()
                    },
                ),
                gauge("riposte.runs.active", "{run}", "Runs not yet ended", |g| {
                    vec![(g.runs_active as f64, vec![])]
                }),
            ],
        }
    }
}
