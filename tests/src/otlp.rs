//! A real OTLP receiver for the tests: the collector's gRPC trace and metrics services (from
//! `opentelemetry-proto`) on one loopback port, and OTLP/HTTP (`POST /v1/traces`,
//! `/v1/metrics`, protobuf bodies) on another, keeping every span and the names of the metrics
//! it is sent, by service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    /// The `service.name` of the process that sent it.
    pub service: String,
    pub name: String,
    /// Lower-case hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The receiver; dropped, it stops.
pub struct Collector {
    addr: SocketAddr,
    http_addr: SocketAddr,
    received: Received,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What was received: spans, and (service, metric name) pairs.
#[derive(Clone, Default)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The `service.name` of a resource.
fn service_of(resource: Option<&Resource>) -> String {
    resource
        .iter()
        .flat_map(|r| &r.attributes)
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| text(kv.value.as_ref()?.value.as_ref()?))
        .unwrap_or_default()
}

impl Received {
    fn metrics(&self, request: ExportMetricsServiceRequest) {
        let mut received = Vec::new();
        for resource in request.resource_metrics {
            let service = service_of(resource.resource.as_ref());
            for metric in resource.scope_metrics.into_iter().flat_map(|s| s.metrics) {
                received.push((service.clone(), metric.name));
            }
        }
        self.metrics.lock().unwrap().extend(received);
    }

    fn traces(&self, request: ExportTraceServiceRequest) {
        let mut received = Vec::new();
        for resource in request.resource_spans {
            let service = service_of(resource.resource.as_ref());
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                received.push(Span {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .iter()
                        .filter_map(|kv| {
                            Some((kv.key.clone(), text(kv.value.as_ref()?.value.as_ref()?)?))
                        })
                        .collect(),
                });
            }
        }
        self.spans.lock().unwrap().extend(received);
    }
}

/// OTLP/HTTP with protobuf bodies.
async fn http_export(
    axum::extract::State(received): axum::extract::State<Received>,
    axum::extract::Path(signal): axum::extract::Path<String>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    use prost::Message;
    match signal.as_str() {
        "traces" => match ExportTraceServiceRequest::decode(body) {
            Ok(request) => received.traces(request),
            Err(_) => return axum::http::StatusCode::BAD_REQUEST,
        },
        "metrics" => match ExportMetricsServiceRequest::decode(body) {
            Ok(request) => received.metrics(request),
            Err(_) => return axum::http::StatusCode::BAD_REQUEST,
        },
        _ => return axum::http::StatusCode::NOT_FOUND,
    }
    axum::http::StatusCode::OK
}

fn text(value: &Value) -> Option<String> {
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::BoolValue(b) => b.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        _ => return None,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Collector {
    /// Serves on a free loopback port.
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("its address");
        let received = Received::default();
        let traces = TraceServiceServer::new(received.clone());
        let metrics = MetricsServiceServer::new(received.clone());
        let grpc = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(traces)
                .add_service(metrics)
                .serve_with_incoming(incoming)
                .await;
        });
        let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector's HTTP port");
        let http_addr = http_listener.local_addr().expect("its address");
        let router = axum::Router::new()
            .route("/v1/{signal}", axum::routing::post(http_export))
            .with_state(received.clone());
        let http = tokio::spawn(async move {
            let _ = axum::serve(http_listener, router).await;
        });
        Collector {
            addr,
            http_addr,
            received,
            tasks: vec![grpc, http],
        }
    }

    /// `http://ADDR` of the gRPC services, for `--otlp-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR` of OTLP/HTTP, for `--otlp-protocol http/protobuf`.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.received.spans.lock().unwrap().clone()
    }

    /// The names of the metrics `service` sent so far.
    pub fn metric_names(&self, service: &str) -> Vec<String> {
        let metrics = self.received.metrics.lock().unwrap();
        metrics
            .iter()
            .filter(|(s, _)| s == service)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
