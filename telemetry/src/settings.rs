//! What to tell and where: the flags both binaries share (`--log-format`, `--otlp-endpoint`,
//! `--otlp-protocol`, `--admin-listen`) and the standard OpenTelemetry environment variables.
//!
//! Exporting is off unless an endpoint is given, by `--otlp-endpoint` or by one of
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`; `OTEL_SDK_DISABLED=true` turns everything off and
//! `OTEL_TRACES_EXPORTER=none` / `OTEL_METRICS_EXPORTER=none` one signal. The exporter itself
//! reads the rest of the standard variables (headers, timeout, compression), and the SDK reads
//! the sampler (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`) and the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).

use std::net::SocketAddr;
use std::time::Duration;

/// The telemetry flags, flattened into each binary's configuration.
#[derive(clap::Args, Debug, Clone, Default)]
#[group(id = "telemetry")]
pub struct Args {
    /// How log lines are written to stderr: `text`, or `json` (one object a line, with the
    /// `trace_id` and `span_id` of the span it belongs to when traces are exported).
    #[arg(long, env = "RIPOSTE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Export traces and metrics by OTLP to this collector (e.g. `http://127.0.0.1:4317` for
    /// gRPC). Without it, `OTEL_EXPORTER_OTLP_ENDPOINT` (and its per-signal variants) decide;
    /// with none, nothing is exported.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// The OTLP transport: `grpc` or `http/protobuf` (plain HTTP only: for TLS use gRPC, or a
    /// collector beside the process).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_PROTOCOL", default_value = "grpc")]
    pub otlp_protocol: Protocol,
    /// Serve `/metrics` (Prometheus text format), `/healthz` and `/readyz` over plain HTTP on
    /// this address. Off without it.
    #[arg(long, env = "RIPOSTE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Grpc,
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

/// The settings resolved from the flags and the environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub log_format: LogFormat,
    /// The endpoint given by flag; `None` leaves it to the standard variables.
    pub endpoint: Option<String>,
    pub protocol: Protocol,
    pub traces: bool,
    pub metrics_push: bool,
    pub admin_listen: Option<SocketAddr>,
    /// The bounds of the span queue.
    pub queue: QueueBounds,
    /// How often metrics are pushed (`OTEL_METRIC_EXPORT_INTERVAL`, in ms; 60 s).
    pub metrics_interval: Duration,
    /// The CA of a gRPC collector behind TLS (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub ca_file: Option<std::path::PathBuf>,
}

/// The span queue between the process and the exporter (the `OTEL_BSP_*` variables).
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Spans waiting at most; more are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub size: usize,
    /// Spans in one export at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub batch: usize,
    /// Time between exports (`OTEL_BSP_SCHEDULE_DELAY`, in ms, 1 s).
    pub delay: Duration,
    /// One export's time at most (`OTEL_BSP_EXPORT_TIMEOUT`, in ms, 10 s); a batch not
    /// exported by then is dropped and counted.
    pub timeout: Duration,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            size: 2048,
            batch: 512,
            delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Args {
    /// The settings these flags and the process environment give.
    pub fn resolve(&self) -> Settings {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// [`Args::resolve`] with the environment read through `env`.
    pub fn resolve_with(&self, env: impl Fn(&str) -> Option<String>) -> Settings {
        let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
        let none = |name: &str| env(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim() == "true");
        let endpoint = self.otlp_endpoint.is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let traces = !disabled
            && !none("OTEL_TRACES_EXPORTER")
            && (endpoint || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        let metrics_push = !disabled
            && !none("OTEL_METRICS_EXPORTER")
            && (endpoint || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"));
        let ms = |name: &str, default: Duration| {
            env(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map_or(default, Duration::from_millis)
        };
        let count = |name: &str, default: usize| {
            env(name)
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        let bounds = QueueBounds::default();
        let size = count("OTEL_BSP_MAX_QUEUE_SIZE", bounds.size);
        Settings {
            log_format: self.log_format,
            endpoint: self.otlp_endpoint.clone(),
            protocol: self.otlp_protocol,
            traces,
            metrics_push,
            admin_listen: self.admin_listen,
            queue: QueueBounds {
                size,
                batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", bounds.batch).min(size),
                delay: ms("OTEL_BSP_SCHEDULE_DELAY", bounds.delay),
                timeout: ms("OTEL_BSP_EXPORT_TIMEOUT", bounds.timeout),
            },
            metrics_interval: ms("OTEL_METRIC_EXPORT_INTERVAL", Duration::from_secs(60)),
            ca_file: env("OTEL_EXPORTER_OTLP_CERTIFICATE")
                .filter(|v| !v.trim().is_empty())
                .map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &Args, vars: &[(&str, &str)]) -> Settings {
        args.resolve_with(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn exporting_is_off_without_an_endpoint() {
        let off = resolve(&Args::default(), &[("OTEL_SERVICE_NAME", "x")]);
        assert!(!off.traces && !off.metrics_push);
        let on = resolve(
            &Args::default(),
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")],
        );
        assert!(on.traces && on.metrics_push);
        let traces_only = resolve(
            &Args::default(),
            &[(
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            )],
        );
        assert!(traces_only.traces && !traces_only.metrics_push);
    }

    #[test]
    fn the_standard_switches_turn_signals_off() {
        let args = Args {
            otlp_endpoint: Some("http://127.0.0.1:4317".into()),
            ..Args::default()
        };
        let disabled = resolve(&args, &[("OTEL_SDK_DISABLED", "true")]);
        assert!(!disabled.traces && !disabled.metrics_push);
        let no_metrics = resolve(&args, &[("OTEL_METRICS_EXPORTER", "none")]);
        assert!(no_metrics.traces && !no_metrics.metrics_push);
    }

    #[test]
    fn queue_bounds_come_from_the_batch_processor_variables() {
        let settings = resolve(
            &Args::default(),
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
                ("OTEL_BSP_EXPORT_TIMEOUT", "nonsense"),
            ],
        );
        assert_eq!(settings.queue.size, 64);
        assert_eq!(
            settings.queue.batch, 64,
            "a batch is never larger than the queue"
        );
        assert_eq!(settings.queue.delay, Duration::from_millis(250));
        assert_eq!(settings.queue.timeout, Duration::from_secs(10));
    }
}
