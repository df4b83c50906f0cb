//! ARM long-running operations, by the documented client algorithm:
//!
//! 1. An answer with `Azure-AsyncOperation` is followed there: the status resource answers 200
//!    with `status`; `Succeeded`, `Failed` and `Canceled` (any case) are terminal, everything
//!    else is still running. After `Succeeded` the final body comes from `Location` when the
//!    answer had one (POST actions), else from a GET of the resource (PUT).
//! 2. Otherwise a 202 with `Location` is followed there: 202 means running, any other success
//!    is the final answer.
//! 3. Otherwise the answer is final; a `provisioningState` that is not terminal is followed by
//!    GETs of the resource.
//!
//! Between polls the worker waits the latest `Retry-After` (at most [`POLL_DELAY_MAX`], else
//! [`POLL_DELAY_DEFAULT`]). An error while reading the status is a failure to read, not of the
//! operation: it is retried up to [`READ_FAILURES_MAX`] times in a row. Polling URLs are only
//! followed on the ARM endpoint's own origin (they would carry the ARM token), and everything
//! ends within the task's deadline, as a retryable failure.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use super::super::Failure;
use super::Client;
use super::errors::ApiError;
use super::rest::{Api, Call, Deadline, Reply, same_origin};
use crate::backoff::Backoff;
use crate::redact::Redactor;

/// Wait between polls when the answer gives no `Retry-After`.
const POLL_DELAY_DEFAULT: Duration = Duration::from_secs(10);
/// Longest wait between polls.
const POLL_DELAY_MAX: Duration = Duration::from_secs(60);
/// Failed status reads in a row before giving up.
const READ_FAILURES_MAX: u32 = 5;

/// How an operation ended.
enum Terminal {
    Succeeded,
    Failed(String),
}

impl Client {
    /// Follows the operation `initial` started until it ends; answers the final body.
    /// `resource` is the URL to GET for the final state of a PUT.
    pub(crate) async fn finish(
        &self,
        op: &str,
        initial: Reply,
        resource: Option<&Url>,
        deadline: &Deadline,
    ) -> Result<Value, Failure> {
        let async_url = self.poll_url(op, &initial, "azure-asyncoperation")?;
        let location = self.poll_url(op, &initial, "location")?;
        let delay = initial.retry_after();
        if let Some(status_url) = async_url {
            match self.follow_status(op, status_url, delay, deadline).await? {
                Terminal::Failed(message) => return Err(Failure::permanent(message)),
                Terminal::Succeeded => {}
            }
            if let Some(location) = location {
                return self
                    .follow_location(op, location, Some(Duration::ZERO), deadline)
                    .await;
            }
            if let Some(resource) = resource {
                let get = Call::new(
                    format!("{op} (read result)"),
                    Api::Arm,
                    Method::GET,
                    resource.clone(),
                );
                return Ok(self.call(&get, deadline).await?.body);
            }
            return Ok(initial.body);
        }
        if initial.status == StatusCode::ACCEPTED
            && let Some(location) = location
        {
            return self.follow_location(op, location, delay, deadline).await;
        }
        match (provisioning_state(&initial.body), resource) {
            (Some(state), Some(resource)) if !is_terminal(&state) => {
                self.follow_resource(op, resource, delay, deadline).await
            }
            _ => Ok(initial.body),
        }
    }

    /// The polling URL in `header`, refused when it leaves the ARM endpoint.
    fn poll_url(&self, op: &str, reply: &Reply, header: &str) -> Result<Option<Url>, Failure> {
        let Some(text) = reply.header(header) else {
            return Ok(None);
        };
        let url = Url::parse(text.trim()).map_err(|e| {
            Failure::permanent(format!("azure {op}: the {header} header is not a URL: {e}"))
        })?;
        if !same_origin(&url, &self.settings.arm_url) {
            return Err(Failure::permanent(format!(
                "azure {op}: refusing to poll {header} on {} (not the ARM endpoint)",
                super::rest::target(&url)
            )));
        }
        Ok(Some(url))
    }

    async fn follow_status(
        &self,
        op: &str,
        url: Url,
        mut delay: Option<Duration>,
        deadline: &Deadline,
    ) -> Result<Terminal, Failure> {
        let poll = Call::new(
            format!("{op} (operation status)"),
            Api::Arm,
            Method::GET,
            url,
        );
        let mut reads = Reads::new(op, &self.redactor);
        loop {
            wait(op, delay, deadline).await?;
            let reply = match self.call(&poll, deadline).await {
                Ok(reply) => reply,
                Err(failure) => {
                    delay = Some(reads.failed(failure)?);
                    continue;
                }
            };
            reads.reset();
            delay = reply.retry_after();
            let status = reply
                .body
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            tracing::info!(op, status = %status, "azure operation status");
            if status.eq_ignore_ascii_case("succeeded") {
                return Ok(Terminal::Succeeded);
            }
            if status.eq_ignore_ascii_case("failed") || status.eq_ignore_ascii_case("canceled") {
                let error = ApiError::from_body(reply.status, &reply.body, b"");
                let message = format!("azure {op} failed: operation {status}: {}", error.summary());
                return Ok(Terminal::Failed(message));
            }
        }
    }

    async fn follow_location(
        &self,
        op: &str,
        mut url: Url,
        mut delay: Option<Duration>,
        deadline: &Deadline,
    ) -> Result<Value, Failure> {
        let mut reads = Reads::new(op, &self.redactor);
        loop {
            wait(op, delay, deadline).await?;
            let poll = Call::new(
                format!("{op} (operation result)"),
                Api::Arm,
                Method::GET,
                url.clone(),
            );
            let reply = match self.call(&poll, deadline).await {
                Ok(reply) => reply,
                Err(failure) => {
                    delay = Some(reads.failed(failure)?);
                    continue;
                }
            };
            reads.reset();
            if reply.status != StatusCode::ACCEPTED {
                return Ok(reply.body);
            }
            tracing::info!(op, "azure operation still running");
            delay = reply.retry_after();
            if let Some(next) = self.poll_url(op, &reply, "location")? {
                url = next;
            }
        }
    }

    async fn follow_resource(
        &self,
        op: &str,
        url: &Url,
        mut delay: Option<Duration>,
        deadline: &Deadline,
    ) -> Result<Value, Failure> {
        let poll = Call::new(
            format!("{op} (read state)"),
            Api::Arm,
            Method::GET,
            url.clone(),
        );
        let mut reads = Reads::new(op, &self.redactor);
        loop {
            wait(op, delay, deadline).await?;
            let reply = match self.call(&poll, deadline).await {
                Ok(reply) => reply,
                Err(failure) => {
                    delay = Some(reads.failed(failure)?);
                    continue;
                }
            };
            reads.reset();
            delay = reply.retry_after();
            let state = provisioning_state(&reply.body).unwrap_or_default();
            if state.eq_ignore_ascii_case("succeeded") || state.is_empty() {
                return Ok(reply.body);
            }
            if is_terminal(&state) {
                return Err(Failure::permanent(format!(
                    "azure {op} failed: provisioning state {state}"
                )));
            }
        }
    }
}

/// Counts status reads that failed in a row.
struct Reads<'a> {
    op: &'a str,
    redactor: &'a Redactor,
    failures: u32,
    backoff: Backoff,
}

impl<'a> Reads<'a> {
    fn new(op: &'a str, redactor: &'a Redactor) -> Reads<'a> {
        Reads {
            op,
            redactor,
            failures: 0,
            backoff: Backoff::new(),
        }
    }

    fn reset(&mut self) {
        self.failures = 0;
        self.backoff.reset();
    }

    /// The delay before reading again, or the failure when reads failed too often.
    fn failed(&mut self, failure: Failure) -> Result<Duration, Failure> {
        self.failures += 1;
        if self.failures >= READ_FAILURES_MAX {
            return Err(Failure::retryable(format!(
                "azure {}: cannot read the operation's status ({} failures in a row): {}",
                self.op, self.failures, failure.message
            )));
        }
        let error = self.redactor.redact(&failure.message);
        tracing::info!(op = self.op, %error, "azure operation status read failed");
        Ok(self.backoff.next_delay())
    }
}

/// Waits `delay` (or the default) before the next poll, unless the deadline comes first.
async fn wait(op: &str, delay: Option<Duration>, deadline: &Deadline) -> Result<(), Failure> {
    let delay = delay.unwrap_or(POLL_DELAY_DEFAULT).min(POLL_DELAY_MAX);
    if !deadline.fits(delay) {
        return Err(Failure::retryable(format!(
            "azure {op} is still running after {} and the task's timeout leaves no time to wait",
            humantime::format_duration(Duration::from_secs(deadline.elapsed().as_secs()))
        )));
    }
    tokio::time::sleep(delay).await;
    Ok(())
}

fn provisioning_state(body: &Value) -> Option<String> {
    body.get("properties")?
        .get("provisioningState")?
        .as_str()
        .map(str::to_owned)
}

fn is_terminal(state: &str) -> bool {
    ["succeeded", "failed", "canceled"]
        .iter()
        .any(|t| state.eq_ignore_ascii_case(t))
}
