//! The way out: a bounded span queue drained by an export task on the tokio runtime, and the
//! periodic push of metrics.
//!
//! A span is handed to the queue without waiting (`try_send`): when the queue is full, or an
//! export fails or takes longer than its timeout, the spans are dropped and counted
//! ([`Counts`], read as `riposte.telemetry.spans` by state), so a collector that is down or
//! slow never holds up a request. The SDK's own batch processor keeps its drop count to itself
//! and exports from a thread of its own, where the HTTP exporter (hyper) has no runtime; this
//! one exports on the process's runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

use crate::settings::QueueBounds;

/// Spans handed over, exported and dropped since the start.
#[derive(Debug, Default)]
pub struct Counts {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
}

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The sending end of the span queue; cheap to clone.
#[derive(Clone)]
pub struct Queue {
    sender: mpsc::Sender<Message>,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").finish_non_exhaustive()
    }
}

impl Queue {
    /// Starts the export task on the current runtime.
    pub fn start(exporter: impl SpanExporter + 'static, bounds: QueueBounds) -> Queue {
        let (sender, receiver) = mpsc::channel(bounds.size);
        let counts = Arc::new(Counts::default());
        tokio::spawn(drain(receiver, exporter, bounds, counts.clone()));
        Queue { sender, counts }
    }

    /// Hands a finished span over, or drops (and counts) it when the queue is full.
    pub fn push(&self, span: SpanData) {
        if self.sender.try_send(Message::Span(Box::new(span))).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Exports what is queued; waits at most `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let (done, wait) = oneshot::channel();
        let sent = tokio::time::timeout(timeout, self.sender.send(Message::Flush(done)));
        if matches!(sent.await, Ok(Ok(()))) {
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }

    pub fn counts(&self) -> &Arc<Counts> {
        &self.counts
    }
}

async fn drain(
    mut receiver: mpsc::Receiver<Message>,
    exporter: impl SpanExporter,
    bounds: QueueBounds,
    counts: Arc<Counts>,
) {
    let mut batch = Vec::with_capacity(bounds.batch);
    let mut tick = tokio::time::interval(bounds.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = receiver.recv() => match message {
                Some(Message::Span(span)) => {
                    batch.push(*span);
                    if batch.len() >= bounds.batch {
                        export(&exporter, &mut batch, bounds.timeout, &counts).await;
                    }
                }
                Some(Message::Flush(done)) => {
                    export(&exporter, &mut batch, bounds.timeout, &counts).await;
                    let _ = done.send(());
                }
                None => {
                    export(&exporter, &mut batch, bounds.timeout, &counts).await;
                    return;
                }
            },
            _ = tick.tick() => export(&exporter, &mut batch, bounds.timeout, &counts).await,
        }
    }
}

async fn export(
    exporter: &impl SpanExporter,
    batch: &mut Vec<SpanData>,
    timeout: Duration,
    counts: &Counts,
) {
    if batch.is_empty() {
        return;
    }
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    match tokio::time::timeout(timeout, exporter.export(spans)).await {
        Ok(Ok(())) => {
            counts.exported.fetch_add(n, Ordering::Relaxed);
        }
        Ok(Err(e)) => {
            counts.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::debug!(spans = n, error = %e, "span export failed; spans dropped");
        }
        Err(_) => {
            counts.dropped.fetch_add(n, Ordering::Relaxed);
            tracing::debug!(spans = n, "span export timed out; spans dropped");
        }
    }
}

/// The SDK's span processor in front of the queue: sampled spans go to it when they end.
#[derive(Debug)]
pub struct QueueProcessor(pub Queue);

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if span.span_context.is_sampled() {
            self.0.push(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// A metric reader the process collects from itself, on its runtime, every interval, and
/// pushes with an OTLP exporter.
#[derive(Debug, Clone)]
pub struct PushReader(Arc<ManualReader>);

impl PushReader {
    /// Starts pushing on the current runtime.
    pub fn start(
        exporter: impl PushMetricExporter + 'static,
        interval: Duration,
        timeout: Duration,
    ) -> PushReader {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(exporter.temporality())
                .build(),
        );
        let collect = reader.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut metrics = ResourceMetrics::default();
                if collect.collect(&mut metrics).is_err() {
                    return; // the provider is gone
                }
                match tokio::time::timeout(timeout, exporter.export(&metrics)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "metric export failed"),
                    Err(_) => tracing::debug!("metric export timed out"),
                }
            }
        });
        PushReader(reader)
    }
}

impl MetricReader for PushReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}
