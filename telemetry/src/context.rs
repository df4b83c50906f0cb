//! Trace context as it travels: W3C `traceparent` in HTTP headers and gRPC metadata, and the
//! [`TraceParent`] a run stores so that its later spans, after any restart, join its trace.
//!
//! The spans of a run's steps and tasks get span ids derived from the run's own
//! ([`TraceParent::child`]): the id of a step's span is known when its task is handed out and
//! again after a restart, without storing one per step.

use std::collections::HashMap;

use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use sha2::{Digest, Sha256};
pub use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header and metadata key.
pub const TRACEPARENT: &str = "traceparent";

/// One span's place in a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
}

impl TraceParent {
    /// A W3C `traceparent` value; `None` when it is not one or names an invalid context.
    pub fn parse(text: &str) -> Option<TraceParent> {
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), text.to_owned())]);
        Self::from_context(&TraceContextPropagator::new().extract(&carrier))
    }

    /// The span of a trace whose id is `id` (a run's or an alert's UUID), named `name`.
    pub fn root(id: [u8; 16], name: &str, sampled: bool) -> TraceParent {
        let trace_id = TraceId::from_bytes(id);
        TraceParent {
            trace_id,
            span_id: derive(trace_id, SpanId::INVALID, name),
            sampled,
        }
    }

    /// The span named `name` below this one: same trace, its id derived from both.
    pub fn child(&self, name: &str) -> TraceParent {
        TraceParent {
            span_id: derive(self.trace_id, self.span_id, name),
            ..*self
        }
    }

    /// The current `tracing` span's context, when traces are exported (sampled or not: its
    /// children follow its decision).
    pub fn current() -> Option<TraceParent> {
        Self::from_context(&tracing::Span::current().context())
    }

    /// Makes this the (remote) parent of `span`, before it is first entered.
    pub fn adopt_by(&self, span: &tracing::Span) {
        let _ = span.set_parent(self.context());
    }

    /// As a remote parent context.
    pub fn context(&self) -> opentelemetry::Context {
        opentelemetry::Context::new().with_remote_span_context(self.span_context())
    }

    pub fn span_context(&self) -> SpanContext {
        let flags = match self.sampled {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        SpanContext::new(
            self.trace_id,
            self.span_id,
            flags,
            true,
            TraceState::default(),
        )
    }

    fn from_context(cx: &opentelemetry::Context) -> Option<TraceParent> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| TraceParent {
            trace_id: sc.trace_id(),
            span_id: sc.span_id(),
            sampled: sc.is_sampled(),
        })
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// A span id from a trace id, a parent span id and a name: the same inputs, the same id.
fn derive(trace: TraceId, parent: SpanId, name: &str) -> SpanId {
    let digest = Sha256::new()
        .chain_update(trace.to_bytes())
        .chain_update(parent.to_bytes())
        .chain_update(name.as_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    if id == [0; 8] {
        id[7] = 1; // the invalid id, by a 2^-64 chance
    }
    SpanId::from_bytes(id)
}

/// The `traceparent` of an HTTP request, when it carries a valid one.
pub fn from_headers(headers: &http::HeaderMap) -> Option<TraceParent> {
    headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// The `traceparent` of a gRPC request or response, when it carries a valid one.
pub fn from_metadata(metadata: &tonic::metadata::MetadataMap) -> Option<TraceParent> {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// Adds `traceparent` (and `tracestate`) for `parent` to outgoing HTTP headers.
pub fn to_headers(parent: &TraceParent, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(&parent.context(), &mut HeaderInjector(headers));
}

/// Adds `traceparent` for `parent` to gRPC metadata.
pub fn to_metadata(parent: &TraceParent, metadata: &mut tonic::metadata::MetadataMap) {
    if let Ok(value) = parent.to_string().parse() {
        metadata.insert(TRACEPARENT, value);
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W3C_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_back_as_written() {
        let parent = TraceParent::parse(W3C_EXAMPLE).expect("the W3C example parses");
        assert_eq!(
            parent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(parent.sampled);
        assert_eq!(parent.to_string(), W3C_EXAMPLE);
    }

    #[test]
    fn invalid_traceparents_are_none() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn children_are_stable_and_distinct() {
        let run = TraceParent::parse(W3C_EXAMPLE).unwrap();
        let step = run.child("step/block");
        assert_eq!(step, run.child("step/block"), "the same name, the same id");
        assert_ne!(step.span_id, run.child("step/notify").span_id);
        assert_ne!(step.span_id, run.span_id);
        assert_eq!(step.trace_id, run.trace_id);
    }

    #[test]
    fn headers_carry_the_context() {
        let parent = TraceParent::parse(W3C_EXAMPLE).unwrap();
        let mut headers = http::HeaderMap::new();
        to_headers(&parent, &mut headers);
        assert_eq!(from_headers(&headers), Some(parent));
        let mut metadata = tonic::metadata::MetadataMap::new();
        to_metadata(&parent, &mut metadata);
        assert_eq!(from_metadata(&metadata), Some(parent));
    }
}
