//! The HTTP alert listener: `POST /alerts/azure-monitor`, `/alerts/sentinel`,
//! `/alerts/defender` and `/alerts/generic/{name}`. Each request is checked against its
//! source's shared secret (header `X-Riposte-Token` or query `?token=`, compared in constant
//! time) before its body is read; the request then takes a place in the ingestion queue, in
//! the share of the secret that admitted it (429 when the queue or the share is full); the
//! body is bounded in size and in time (10 s); the payload goes through the same ingestion as
//! `IngestAlert`, and the answer is 200 only once the alerts and their fates are durable.
//! Refusals map to HTTP codes in [`refusal`] only. Connections (caps, header timeout) are
//! [`listener`]'s.

mod listener;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::net::TcpListener;

pub use listener::Limits;

use crate::door::alerts::{Feed, IngestAlert};
use crate::door::{self, Caller, Node};
use crate::engine;
use riposte_ingest::PAYLOAD_BYTES_MAX;

/// The header carrying a source's shared secret.
const TOKEN_HEADER: &str = "x-riposte-token";
/// How long a body may take to arrive once its headers have.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// What a 429 asks the sender to wait, in seconds.
const RETRY_AFTER_SECONDS: u32 = 1;

/// The shared secret of each source (`azure-monitor`, `generic`, `generic/NAME`...).
#[derive(Clone, Default)]
pub struct Secrets(Vec<(String, String)>);

impl Secrets {
    pub fn new(pairs: Vec<(String, String)>) -> Secrets {
        Secrets(pairs)
    }

    /// The first of `names` that has a secret, with its secret.
    fn of(&self, names: &[&str]) -> Option<(&str, &str)> {
        names.iter().find_map(|name| {
            self.0
                .iter()
                .find(|(source, _)| source == name)
                .map(|(source, token)| (source.as_str(), token.as_str()))
        })
    }
}

struct App {
    shared: Arc<Node>,
    secrets: Secrets,
}

/// Serves the alert endpoints on `listener`, within `limits`, until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Node>,
    secrets: Secrets,
    limits: Limits,
    tls: Option<Arc<riposte_tls::server::Reloadable>>,
) {
    let clock = shared.clock().clone();
    let app = Arc::new(App { shared, secrets });
    let router = Router::new()
        .route("/alerts/azure_monitor", post(azure_monitor))
        // The old spelling, still served.
        .route("/alerts/azure-monitor", post(azure_monitor))
        .route("/alerts/sentinel", post(sentinel))
        .route("/alerts/defender", post(defender))
        .route("/alerts/generic/{name}", post(generic))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(app);
    listener::serve(listener, router, limits, tls, clock).await;
}

/// 200 while the store takes new work and acknowledges writes; 503 with the reason otherwise
/// (a disk below its free-space reserve, failing flushes).
async fn readyz(State(app): State<Arc<App>>) -> Response {
    match app.shared.condition() {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn azure_monitor(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    ingest(
        &app,
        &["azure_monitor", "azure-monitor"],
        "azure_monitor",
        &headers,
        &uri,
        body,
    )
    .await
}

async fn sentinel(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    ingest(&app, &["sentinel"], "sentinel", &headers, &uri, body).await
}

async fn defender(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    ingest(&app, &["defender"], "defender", &headers, &uri, body).await
}

async fn generic(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let own = format!("generic/{name}");
    ingest(
        &app,
        &[own.as_str(), "generic"],
        "generic",
        &headers,
        &uri,
        body,
    )
    .await
}

/// Checks the secret, then reads the bounded body, then ingests and waits for durability.
async fn ingest(
    app: &App,
    secret_names: &[&str],
    source: &str,
    headers: &HeaderMap,
    uri: &Uri,
    body: Body,
) -> Response {
    let presented = token(headers, uri);
    let feed = match (app.secrets.of(secret_names), presented) {
        (Some((name, secret)), Some(given))
            if constant_time_eq(secret.as_bytes(), given.as_bytes()) =>
        {
            Feed::Http(name.to_string())
        }
        _ => return answer(StatusCode::UNAUTHORIZED, "missing or wrong token"),
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > PAYLOAD_BYTES_MAX) {
        return too_large();
    }
    // The slot is taken before the body is read: bodies being read count toward the limit,
    // and toward the share of the secret that admitted them.
    let slot = match app.shared.ingest_slot(feed) {
        Ok(slot) => slot,
        Err(e) => return refusal(e),
    };
    let payload = match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, PAYLOAD_BYTES_MAX)).await
    {
        Ok(Ok(payload)) => payload,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                &format!("body not received within {} s", BODY_TIMEOUT.as_secs()),
            );
        }
    };
    let ingest = IngestAlert {
        slot,
        source: source.to_string(),
        payload,
        trace: riposte_telemetry::context::from_headers(headers),
    };
    match app.shared.handle(Caller::Feed, ingest).await {
        Ok(alerts) => {
            let alerts = alerts
                .iter()
                .map(|a| Accepted {
                    fate: crate::convert::alert_fate(a.fate),
                    id: a.id,
                    run_id: a.run_id.map(|r| r.to_string()).unwrap_or_default(),
                })
                .collect();
            let body = serde_json::to_string(&Answer { alerts }).expect("an answer serializes");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Err(e) => refusal(e),
    }
}

/// The answer to an accepted payload: each alert's id and fate, and the run it started or
/// joined (`""` if none).
#[derive(serde::Serialize)]
struct Answer {
    alerts: Vec<Accepted>,
}

#[derive(serde::Serialize)]
struct Accepted {
    fate: &'static str,
    id: uuid::Uuid,
    run_id: String,
}

fn too_large() -> Response {
    answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("body exceeds {PAYLOAD_BYTES_MAX} bytes"),
    )
}

/// Every ingestion refusal's HTTP code, in one place.
fn refusal(refusal: door::Error) -> Response {
    match refusal {
        door::Error::Backlog(m) => {
            let mut response = answer(StatusCode::TOO_MANY_REQUESTS, &m);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
            response
        }
        door::Error::NotDurable(e) => {
            tracing::error!(error = %e, "store.error");
            answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        e @ door::Error::Reopening => answer(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        door::Error::Unauthenticated(m) => answer(StatusCode::UNAUTHORIZED, &m),
        door::Error::Engine(e) => {
            let code = match &e {
                engine::Error::InvalidArgument(_) | engine::Error::PlaybookInvalid(_) => {
                    StatusCode::BAD_REQUEST
                }
                engine::Error::ResourceExhausted(_) => StatusCode::PAYLOAD_TOO_LARGE,
                engine::Error::NotFound(_) => StatusCode::NOT_FOUND,
                engine::Error::FailedPrecondition(_) => StatusCode::CONFLICT,
                engine::Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
                engine::Error::Store(_) => {
                    tracing::error!(error = %e, "store.error");
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            answer(code, &e.to_string())
        }
    }
}

fn answer(code: StatusCode, message: &str) -> Response {
    let body = json!({ "error": message }).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The token from the header, else from the `token` query parameter (taken as is).
fn token<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    if let Some(value) = headers.get(TOKEN_HEADER) {
        return value.to_str().ok();
    }
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
}

/// Equal bytes, in a time that depends on the lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret!"));
        assert!(!constant_time_eq(b"s3cret", b"S3cret"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_generic_endpoint_takes_its_own_secret_first() {
        let secrets = Secrets::new(vec![
            ("generic".into(), "all".into()),
            ("generic/edr".into(), "edr".into()),
        ]);
        assert_eq!(
            secrets.of(&["generic/edr", "generic"]),
            Some(("generic/edr", "edr"))
        );
        assert_eq!(
            secrets.of(&["generic/other", "generic"]),
            Some(("generic", "all"))
        );
        assert_eq!(secrets.of(&["sentinel"]), None);
    }

    #[test]
    fn the_header_wins_over_the_query() {
        let uri: Uri = "/alerts/sentinel?a=1&token=q".parse().expect("a uri");
        let mut headers = HeaderMap::new();
        assert_eq!(token(&headers, &uri), Some("q"));
        headers.insert(TOKEN_HEADER, "h".parse().expect("a header"));
        assert_eq!(token(&headers, &uri), Some("h"));
    }
}
