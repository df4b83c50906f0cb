//! The worker's metrics (pushed by OTLP, or scraped from `--admin-listen`): task attempts by
//! action and outcome, and every outbound HTTP call by upstream and status class, with the
//! throttling (429) it met. Labels are bounded sets; never a URL, an id or a secret.

use std::sync::OnceLock;

use opentelemetry::metrics::{Counter, Histogram};

pub(crate) struct Metrics {
    pub(crate) task_duration: Histogram<f64>,
    pub(crate) upstream_duration: Histogram<f64>,
    pub(crate) upstream_errors: Counter<u64>,
    pub(crate) upstream_throttled: Counter<u64>,
}

/// The instruments (no-op ones until telemetry set a meter provider up).
pub(crate) fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = riposte_telemetry::instruments::meter();
        let seconds =
            |name, description| riposte_telemetry::instruments::seconds(&meter, name, description);
        Metrics {
            task_duration: seconds(
                "riposte.worker.task.duration",
                "Task attempts run by this worker, by action and outcome",
            ),
            upstream_duration: seconds(
                "riposte.worker.upstream.duration",
                "Outbound HTTP calls of the connectors, by upstream and status class",
            ),
            upstream_errors: meter
                .u64_counter("riposte.worker.upstream.errors")
                .with_unit("{call}")
                .with_description("Outbound HTTP calls that failed (4xx, 5xx, transport), by upstream and status class")
                .build(),
            upstream_throttled: meter
                .u64_counter("riposte.worker.upstream.throttled")
                .with_unit("{call}")
                .with_description("Outbound HTTP calls answered 429 Too Many Requests, by upstream")
                .build(),
        }
    })
}

/// `2xx`, `3xx`, `4xx`, `5xx` (or `1xx`).
pub(crate) fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
