//! Spans recorded after the fact: a run's steps and task attempts are spans whose start and
//! end are in the run's history and whose ids derive from the run's stored context
//! ([`TraceParent::child`]), so they are written whole when they end, whichever process life
//! started them. They go to the same bounded queue as every other span.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, SpanKind, Status};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::context::TraceParent;
use crate::export::Queue;

/// Writes finished spans; present only while traces are exported.
#[derive(Debug, Clone)]
pub struct Recorder {
    queue: Queue,
    scope: InstrumentationScope,
}

/// One finished span.
#[derive(Debug)]
pub struct Record {
    pub name: Cow<'static, str>,
    /// This span: its trace, its own id, whether it is sampled.
    pub span: TraceParent,
    /// Its parent in the same trace, if any.
    pub parent: Option<SpanId>,
    pub kind: SpanKind,
    /// Wall-clock milliseconds since the Unix epoch.
    pub start_ms: i64,
    pub end_ms: i64,
    pub attributes: Vec<KeyValue>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl Recorder {
    pub(crate) fn new(queue: Queue) -> Recorder {
        Recorder {
            queue,
            scope: InstrumentationScope::builder("riposte").build(),
        }
    }

    /// Hands the span to the export queue (dropped and counted when it is full); an
    /// unsampled span is not written.
    pub fn record(&self, record: Record) {
        if !record.span.sampled {
            return;
        }
        let status = match record.error {
            Some(message) => Status::error(message),
            None => Status::Unset,
        };
        self.queue.push(SpanData {
            span_context: record.span.span_context(),
            parent_span_id: record.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: false,
            span_kind: record.kind,
            name: record.name,
            start_time: time(record.start_ms),
            end_time: time(record.end_ms.max(record.start_ms)),
            attributes: record.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}
