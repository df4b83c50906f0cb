//! `riposte-telemetry`: how the orchestrator and the worker tell what they do, set up in one
//! place: log lines (text or JSON, with trace ids), OpenTelemetry traces and metrics exported
//! by OTLP, the Prometheus text format on the admin listener, and W3C trace context.
//!
//! Everything is off unless configured ([`settings`]); off, no span is made for export, no
//! metric is kept, and the instruments the binaries hold are the no-op ones of the global
//! meter provider. Exporting never makes a request wait: spans go through a bounded queue
//! ([`export`]) and a collector that is down costs dropped spans, counted, not latency.

pub mod admin;
pub mod context;
pub mod export;
pub mod instruments;
pub mod record;
pub mod settings;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::ObservableCounter;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanExporter as _};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use context::TraceParent;
pub use record::{Record, Recorder};
pub use settings::{Args, LogFormat, Protocol, Settings};

use export::{Counts, PushReader, Queue, QueueProcessor};

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("OTLP {signal} exporter: {message}")]
    Exporter {
        signal: &'static str,
        message: String,
    },
    #[error("the OTLP collector's CA ({path}): {source}")]
    Ca {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the Prometheus exporter: {0}")]
    Prometheus(String),
    #[error("logging is already set up")]
    Subscriber,
}

/// The telemetry of one process, set up by [`init`].
pub struct Telemetry {
    settings: Settings,
    queue: Option<Queue>,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    registry: Option<prometheus::Registry>,
    _spans: Option<ObservableCounter<u64>>,
}

/// Sets up logging, and traces and metrics as `settings` say, for the process `service`
/// (`OTEL_SERVICE_NAME` overrides it); `log` is the log filter (`info`, `warn,riposte=debug`).
/// Call once, on the tokio runtime that exports.
pub fn init(settings: Settings, service: &'static str, log: &str) -> Result<Telemetry, Error> {
    let resource = resource(service);
    let mut queue = None;
    let mut tracer_provider = None;
    if settings.traces {
        let mut exporter = span_exporter(&settings)?;
        exporter.set_resource(&resource);
        let started = Queue::start(exporter, settings.queue);
        tracer_provider = Some(
            SdkTracerProvider::builder()
                .with_span_processor(QueueProcessor(started.clone()))
                .with_resource(resource.clone())
                .build(),
        );
        queue = Some(started);
    }
    let registry = settings.admin_listen.map(|_| prometheus::Registry::new());
    let mut meter_provider = None;
    if registry.is_some() || settings.metrics_push {
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(registry) = &registry {
            let reader = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .scope_info_enabled(false)
                .build()
                .map_err(|e| Error::Prometheus(e.to_string()))?;
            builder = builder.with_reader(reader);
        }
        if settings.metrics_push {
            let exporter = metric_exporter(&settings)?;
            let reader =
                PushReader::start(exporter, settings.metrics_interval, settings.queue.timeout);
            builder = builder.with_reader(reader);
        }
        let provider = builder.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        meter_provider = Some(provider);
    }
    let spans = queue
        .as_ref()
        .map(|queue| spans_counter(queue.counts().clone()));
    subscriber(&settings, tracer_provider.as_ref(), log)?;
    Ok(Telemetry {
        settings,
        queue,
        tracer_provider,
        meter_provider,
        registry,
        _spans: spans,
    })
}

impl Telemetry {
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Writes spans recorded after the fact, while traces are exported.
    pub fn recorder(&self) -> Option<Recorder> {
        self.queue.clone().map(Recorder::new)
    }

    /// Whether metrics are kept (scraped or pushed).
    pub fn metrics(&self) -> bool {
        self.meter_provider.is_some()
    }

    /// The admin listener's state, serving this process's metrics.
    pub fn admin(&self) -> admin::Admin {
        admin::Admin::new(self.registry.clone())
    }

    /// Exports what is queued and the last metrics, waiting at most `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        if let Some(queue) = &self.queue {
            queue.flush(grace).await;
        }
        if let Some(provider) = &self.tracer_provider {
            let _ = provider.shutdown();
        }
        if let Some(provider) = &self.meter_provider {
            let _ = provider.shutdown();
        }
    }
}

/// The process's resource: `service.name` from `OTEL_SERVICE_NAME` when set, else `service`;
/// `OTEL_RESOURCE_ATTRIBUTES` added.
fn resource(service: &'static str) -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty());
    let builder = Resource::builder();
    match named {
        true => builder.build(),
        false => builder.with_service_name(service).build(),
    }
}

/// The OTLP exporter of one signal from `builder` (`SpanExporter::builder()`,
/// `MetricExporter::builder()`, whose builders share no trait for `build`): gRPC, or HTTP at
/// `ENDPOINT/v1/SIGNAL` for an endpoint given by flag.
macro_rules! exporter {
    ($builder:expr, $settings:expr, $signal:literal) => {{
        let settings: &Settings = $settings;
        let failed = |e: opentelemetry_otlp::ExporterBuildError| Error::Exporter {
            signal: $signal,
            message: e.to_string(),
        };
        match settings.protocol {
            Protocol::Grpc => {
                let mut builder = $builder.with_tonic();
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if let Some(tls) = tls_config(settings)? {
                    builder = builder.with_tls_config(tls);
                }
                builder.build().map_err(failed)
            }
            Protocol::HttpProtobuf => {
                let mut builder = $builder.with_http();
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(signal_url(endpoint, concat!($signal, "s")));
                }
                builder.build().map_err(failed)
            }
        }
    }};
}

fn span_exporter(settings: &Settings) -> Result<opentelemetry_otlp::SpanExporter, Error> {
    exporter!(
        opentelemetry_otlp::SpanExporter::builder(),
        settings,
        "trace"
    )
}

fn metric_exporter(settings: &Settings) -> Result<opentelemetry_otlp::MetricExporter, Error> {
    exporter!(
        opentelemetry_otlp::MetricExporter::builder(),
        settings,
        "metric"
    )
}

/// `BASE/v1/SIGNAL`, as the OTLP/HTTP specification builds per-signal URLs from a base.
fn signal_url(base: &str, signal: &str) -> String {
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

/// TLS to a gRPC collector at an `https` endpoint: the public roots, and the CA of
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` when set.
fn tls_config(settings: &Settings) -> Result<Option<tonic::transport::ClientTlsConfig>, Error> {
    let https = settings
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("https://"))
        || [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|e| e.starts_with("https://")));
    if !https {
        return Ok(None);
    }
    let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
    if let Some(path) = &settings.ca_file {
        let pem = std::fs::read(path).map_err(|source| Error::Ca {
            path: path.clone(),
            source,
        })?;
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    Ok(Some(tls))
}

/// `riposte.telemetry.spans`: spans exported and dropped, by `outcome`.
fn spans_counter(counts: Arc<Counts>) -> ObservableCounter<u64> {
    use std::sync::atomic::Ordering;
    instruments::meter()
        .u64_observable_counter("riposte.telemetry.spans")
        .with_description("Spans handed to the exporter: exported, or dropped (queue full, export failed or timed out)")
        .with_unit("{span}")
        .with_callback(move |observer| {
            let exported = counts.exported.load(Ordering::Relaxed);
            let dropped = counts.dropped.load(Ordering::Relaxed);
            observer.observe(exported, &[opentelemetry::KeyValue::new("outcome", "exported")]);
            observer.observe(dropped, &[opentelemetry::KeyValue::new("outcome", "dropped")]);
        })
        .build()
}

/// Log lines to stderr, and `tracing` spans of the riposte crates to the exporter.
fn subscriber(
    settings: &Settings,
    tracer_provider: Option<&SdkTracerProvider>,
    log: &str,
) -> Result<(), Error> {
    use tracing_subscriber::filter::{EnvFilter, Targets};
    let filter = EnvFilter::new(log);
    let lines = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => json_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .with_span_list(false)
            .with_opentelemetry_ids(true)
            .with_filter(filter)
            .boxed(),
    };
    let spans = tracer_provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("riposte"))
            .with_threads(false)
            .with_location(false)
            .with_filter(Targets::new().with_target("riposte", tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(spans)
        .with(lines)
        .try_init()
        .map_err(|_| Error::Subscriber)
}
