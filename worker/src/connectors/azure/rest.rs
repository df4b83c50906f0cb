//! One logical ARM or Graph call: bearer token, request ids, bounded retries, error envelope.
//!
//! Retried, within the task's deadline and at most [`ATTEMPTS_MAX`] times: 429 and 503 after
//! their `Retry-After` (integer or fractional seconds, at most [`RETRY_AFTER_MAX`]) or a
//! backoff, other 5xx, 408, 409 conflicts whose code says another operation is in progress,
//! transport errors (exponential backoff with jitter), and a 401 once with a fresh token.
//! Other 4xx are permanent. When the retries run out the failure is retryable, so that the
//! orchestrator's own retry policy takes over.
//!
//! Every call carries a fresh `x-ms-client-request-id`; the log line of each attempt has it
//! with the answer's `x-ms-request-id` and `x-ms-correlation-request-id` (never a token).

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::time::Instant;

use super::super::http::{read_capped, transport_failure};
use super::super::{Context, Failure};
use super::Client;
use super::errors::ApiError;
use crate::backoff::Backoff;
use crate::clock;

/// Most attempts of one call.
pub(crate) const ATTEMPTS_MAX: u32 = 6;
/// Longest `Retry-After` honoured; a longer one is cut to this.
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// Longest one HTTP exchange may take (ARM itself gives providers 60 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response body read (ARM turns larger provider answers into a 500).
pub(crate) const RESPONSE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Time kept back from the task's timeout, so that a call gives up with its own message.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// Which API a call goes to, and so which token it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Arm,
    Graph,
}

/// When the whole action must be done.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    started: Instant,
    at: Instant,
}

impl Deadline {
    /// The task's timeout from now, less a small margin.
    pub(crate) fn for_task(cx: &Context) -> Deadline {
        let margin = DEADLINE_MARGIN.min(cx.timeout / 10);
        let started = clock::monotonic();
        Deadline {
            started,
            at: started + cx.timeout.saturating_sub(margin),
        }
    }

    /// Time left.
    pub(crate) fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(clock::monotonic())
    }

    /// True when waiting `delay` still leaves time for another request.
    pub(crate) fn fits(&self, delay: Duration) -> bool {
        delay < self.remaining()
    }

    /// Time since the action started, for messages.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One request to make.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// What it does, for messages: `azure <op> failed: ...`.
    pub(crate) op: String,
    pub(crate) api: Api,
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) body: Option<Value>,
    /// A 404 is an answer (the caller branches on it), not a failure.
    pub(crate) not_found_ok: bool,
    /// A 412, or a 409 that is not "another operation in progress", is an answer: the write
    /// carried a stale etag, and the caller reads again.
    pub(crate) stale_ok: bool,
}

impl Call {
    /// A call without a body.
    pub(crate) fn new(op: impl Into<String>, api: Api, method: Method, url: Url) -> Call {
        Call {
            op: op.into(),
            api,
            method,
            url,
            body: None,
            not_found_ok: false,
            stale_ok: false,
        }
    }

    /// With a JSON body.
    pub(crate) fn json(mut self, body: Value) -> Call {
        self.body = Some(body);
        self
    }

    /// A stale-etag answer (412, or a 409 that is not "in progress") comes back as a reply.
    pub(crate) fn allow_stale(mut self) -> Call {
        self.stale_ok = true;
        self
    }

    /// A 404 comes back as a reply.
    pub(crate) fn allow_not_found(mut self) -> Call {
        self.not_found_ok = true;
        self
    }

    /// The exact request, as a dry run reports it: `PUT <url> <body>`.
    pub(crate) fn display(&self) -> String {
        match &self.body {
            Some(body) => format!("{} {} {body}", self.method, self.url),
            None => format!("{} {}", self.method, self.url),
        }
    }
}

/// An answer: status, headers, and the body as JSON (`null` when empty or not JSON).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
}

impl Reply {
    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Retry-After` header, when it is a number of seconds.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        self.header(RETRY_AFTER.as_str())
            .and_then(parse_retry_after)
    }
}

/// Seconds, integer or fractional (`10`, `0.5`, `2.128`); `None` for anything else.
pub(crate) fn parse_retry_after(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(
        seconds.min(RETRY_AFTER_MAX.as_secs_f64()),
    ))
}

/// What one attempt came to.
enum Attempt {
    Done(Reply),
    Retry {
        failure: Failure,
        after: Option<Duration>,
        fresh_token: bool,
    },
    Fail(Failure),
}

impl Client {
    /// Sends `call`, retrying what is worth retrying, until `deadline`.
    pub(crate) async fn call(&self, call: &Call, deadline: &Deadline) -> Result<Reply, Failure> {
        let mut backoff = Backoff::new();
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (failure, after) = match self.attempt(call, deadline).await? {
                Attempt::Done(reply) => return Ok(reply),
                Attempt::Fail(failure) => return Err(failure),
                Attempt::Retry {
                    failure,
                    fresh_token: true,
                    ..
                } if refreshed => return Err(Failure::permanent(failure.message)),
                Attempt::Retry {
                    failure,
                    after,
                    fresh_token,
                } => {
                    if fresh_token {
                        refreshed = true;
                        self.tokens.forget(call.api).await;
                    }
                    (failure, after)
                }
            };
            let delay = after.unwrap_or_else(|| backoff.next_delay());
            if attempt >= ATTEMPTS_MAX || !deadline.fits(delay) {
                let mut failure = Failure::retryable(format!(
                    "{} (gave up after {attempt} attempt(s) in {})",
                    failure.message,
                    humantime::format_duration(round_ms(deadline.elapsed()))
                ));
                failure.retry_after = after;
                return Err(failure);
            }
            tracing::info!(
                op = %call.op,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = %self.redactor.redact(&failure.message),
                "azure call will be retried"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &Call, deadline: &Deadline) -> Result<Attempt, Failure> {
        let resource = self.resource(call.api);
        let token = self
            .tokens
            .get(&self.http, call.api, resource, deadline)
            .await?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(REQUEST_TIMEOUT.min(deadline.remaining()))
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(ACCEPT, "application/json")
            .header("x-ms-client-request-id", &request_id)
            .header("x-ms-return-client-request-id", "true");
        request = match &call.body {
            Some(body) => request.json(body),
            None if call.method == Method::POST => request.header("content-length", "0"),
            None => request,
        };
        let target = target(&call.url);
        let started = clock::monotonic();
        let sent = match request.build() {
            Ok(built) => super::super::http::send(&self.http, built, "azure").await,
            Err(e) => Err(e),
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let failure = transport_failure(&target, error);
                let failure = Failure::retryable(format!("azure {} failed: {}", call.op, failure));
                return Ok(Attempt::Retry {
                    failure,
                    after: None,
                    fresh_token: false,
                });
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        tracing::info!(
            op = %call.op,
            method = %call.method,
            path = call.url.path(),
            status = status.as_u16(),
            client_request_id = %request_id,
            request_id = header(&headers, "x-ms-request-id"),
            correlation_id = header(&headers, "x-ms-correlation-request-id"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "azure call"
        );
        let body = match read_capped(&mut response, RESPONSE_BYTES_MAX, &target).await {
            Ok(body) if body.complete => body.bytes,
            Ok(_) => {
                return Ok(Attempt::Fail(Failure::permanent(format!(
                    "azure {} failed: the answer is larger than {RESPONSE_BYTES_MAX} bytes",
                    call.op
                ))));
            }
            Err(failure) => {
                let failure = Failure::retryable(format!("azure {} failed: {failure}", call.op));
                return Ok(Attempt::Retry {
                    failure,
                    after: None,
                    fresh_token: false,
                });
            }
        };
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reply = Reply {
            status,
            headers,
            body: json,
        };
        Ok(classify(call, reply, &body))
    }

    /// The base URL of an API (its token is asked for that resource).
    pub(crate) fn resource(&self, api: Api) -> &Url {
        match api {
            Api::Arm => &self.settings.arm_url,
            Api::Graph => &self.settings.graph_url,
        }
    }
}

fn classify(call: &Call, reply: Reply, raw: &[u8]) -> Attempt {
    let status = reply.status;
    if status.is_success() || (status == StatusCode::NOT_FOUND && call.not_found_ok) {
        return Attempt::Done(reply);
    }
    let error = ApiError::from_body(status, &reply.body, raw);
    let stale = status == StatusCode::PRECONDITION_FAILED
        || (status == StatusCode::CONFLICT && !error.is_operation_in_progress());
    if call.stale_ok && stale {
        return Attempt::Done(reply);
    }
    let message = format!("azure {} failed: {}", call.op, error.summary());
    let after = reply.retry_after();
    let retry = |fresh_token| Attempt::Retry {
        failure: Failure::retryable(message.clone()),
        after,
        fresh_token,
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => retry(false),
        StatusCode::REQUEST_TIMEOUT => retry(false),
        StatusCode::UNAUTHORIZED => retry(true),
        StatusCode::CONFLICT if error.is_operation_in_progress() => retry(false),
        s if s.is_server_error() => retry(false),
        s if s.is_redirection() => Attempt::Fail(Failure::permanent(format!(
            "azure {} failed: unexpected redirect {s} (redirects are not followed)",
            call.op
        ))),
        _ => Attempt::Fail(Failure::permanent(message)),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `host:port` of a URL, for messages (never the path or query).
pub(crate) fn target(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn round_ms(duration: Duration) -> Duration {
    Duration::from_millis(duration.as_millis() as u64)
}

/// True when `url` has the same scheme, host and port as `base`: polling URLs from an answer
/// are only followed there (they carry the ARM token).
pub(crate) fn same_origin(url: &Url, base: &Url) -> bool {
    url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("100000"), Some(RETRY_AFTER_MAX));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
    }

    #[test]
    fn origins() {
        let base = Url::parse("https://management.azure.com").unwrap();
        let same = Url::parse("https://management.azure.com:443/x?y=1").unwrap();
        let other = Url::parse("https://evil.example/x").unwrap();
        let http = Url::parse("http://management.azure.com/x").unwrap();
        assert!(same_origin(&same, &base));
        assert!(!same_origin(&other, &base));
        assert!(!same_origin(&http, &base));
    }
}
