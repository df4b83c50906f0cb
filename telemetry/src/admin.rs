//! The admin listener (`--admin-listen`): plain HTTP for what a platform scrapes and probes.
//!
//! - `GET /metrics`: every metric in the Prometheus text format.
//! - `GET /healthz`: 200 while the process serves HTTP at all (liveness).
//! - `GET /readyz`: 200 once the process is ready (the orchestrator: its store open and its
//!   runs resumed, and the store healthy), else 503 with the reason, one line.
//!
//! It is bound before anything slow starts, so that a probe sees "not ready" rather than a
//! refused connection. It answers at most [`CONCURRENT_MAX`] requests at once (more wait),
//! each within [`REQUEST_TIMEOUT`]. What it serves is aggregate (counts, durations, names of
//! playbooks, actions and workers): no secret, no alert content, no run input.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// Requests answered at once.
pub const CONCURRENT_MAX: usize = 16;
/// One request's time at most.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a process is not ready, in one line (`/readyz` answers it with 503).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotReady(pub String);

/// What the process tells the admin listener about itself.
pub trait Probe: Send + Sync + 'static {
    /// Ready, or why not.
    fn ready(&self) -> Result<(), NotReady>;
    /// Brings the gauges read from state up to date before a scrape.
    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

/// The admin listener's state, shared with the process that sets its probe.
#[derive(Clone, Default)]
pub struct Admin {
    probe: Arc<RwLock<Option<Arc<dyn Probe>>>>,
    registry: Option<prometheus::Registry>,
}

impl Admin {
    pub fn new(registry: Option<prometheus::Registry>) -> Admin {
        Admin {
            probe: Arc::default(),
            registry,
        }
    }

    /// From now on, readiness and refreshes are asked of `probe`; until then the process is
    /// not ready ("starting").
    pub fn set_probe(&self, probe: Arc<dyn Probe>) {
        *self.probe.write().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    fn probe(&self) -> Option<Arc<dyn Probe>> {
        self.probe.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(ready))
            .with_state(self)
            .layer(tower::limit::ConcurrencyLimitLayer::new(CONCURRENT_MAX))
            .layer(axum::middleware::from_fn(bounded));
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Binds the admin listener's address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("admin listener on {addr}: {e}")))
}

async fn bounded(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "timed out\n").into_response(),
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    match admin.probe().map(|probe| probe.ready()) {
        Some(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Some(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting\n").into_response(),
    }
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let Some(registry) = &admin.registry else {
        return (StatusCode::NOT_FOUND, "no metrics\n").into_response();
    };
    if let Some(probe) = admin.probe() {
        probe.refresh().await;
    }
    let encoder = prometheus::TextEncoder::new();
    match encoder.encode_to_string(&registry.gather()) {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    struct Failing;

    impl Probe for Failing {
        fn ready(&self) -> Result<(), NotReady> {
            Err(NotReady("the store is failing its flushes".into()))
        }
    }

    struct Fine;

    impl Probe for Fine {
        fn ready(&self) -> Result<(), NotReady> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn readiness_follows_the_probe_from_not_started_to_ready() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = Admin::new(Some(prometheus::Registry::new()));
        tokio::spawn(admin.clone().serve(listener, std::future::pending()));
        let starting = get(addr, "/readyz").await;
        assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
        assert!(starting.ends_with("not ready: starting\n"), "{starting}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        admin.set_probe(Arc::new(Failing));
        let failing = get(addr, "/readyz").await;
        assert!(failing.starts_with("HTTP/1.1 503"), "{failing}");
        assert!(failing.ends_with("not ready: the store is failing its flushes\n"));
        admin.set_probe(Arc::new(Fine));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(get(addr, "/nothing").await.starts_with("HTTP/1.1 404"));
    }
}
