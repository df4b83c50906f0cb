//! One task on this worker: decode its input, run its action under the task's timeout, and
//! turn the result into an outcome to report, with the output cap applied and a failure's
//! message redacted.

use std::time::Duration;

use serde_json::Value;

use crate::connectors::{Connectors, Context, Failure, Input};
use crate::redact;

/// Largest action output (serialized JSON) a worker reports; a larger one is reported as a
/// failure.
pub const OUTPUT_BYTES_MAX: usize = 1024 * 1024;
/// Timeout of a task that arrives without one (`timeout_ms` = 0).
const TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);

/// A task as leased to this worker (the domain twin of the wire `Task`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub(crate) task_id: String,
    pub(crate) run_id: String,
    pub(crate) step_id: String,
    /// Index of the for_each item; 0 for a plain step.
    pub(crate) item: u32,
    /// 1-based attempt number.
    pub(crate) attempt: u32,
    pub(crate) action: String,
    /// The rendered input, a JSON object as text.
    pub(crate) input_json: String,
    /// `run/step/item`, stable across attempts.
    pub(crate) idempotency_key: String,
    /// Fencing token of the lease.
    pub(crate) lease_token: u64,
    /// The action must finish within this time; 0 means the default of 5 minutes.
    pub(crate) timeout_ms: u64,
    /// The run is a dry run: report, change nothing.
    pub(crate) dry_run: bool,
    /// The span of this attempt at the orchestrator (the poll's `traceparent`): the action's
    /// spans are its children.
    pub(crate) trace: Option<riposte_telemetry::TraceParent>,
}

impl Task {
    /// The time the action may take.
    pub(crate) fn timeout(&self) -> Duration {
        match self.timeout_ms {
            0 => TIMEOUT_DEFAULT,
            ms => Duration::from_millis(ms),
        }
    }
}

/// What a task came to, ready to be reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The action succeeded with this output (JSON text of at most [`OUTPUT_BYTES_MAX`]).
    Success { output_json: String },
    /// The action failed.
    Failure(Failure),
}

/// Runs the task's action to completion or timeout. Cancellation is by dropping the future.
///
/// A failure's message leaves here only through the worker's redactor (with the credentials
/// the task's own input carries): it is what the orchestrator records and the worker logs.
pub(crate) async fn execute(connectors: &Connectors, task: &Task) -> Outcome {
    match try_execute(connectors, task).await {
        Ok(output_json) => Outcome::Success { output_json },
        Err(failure) => {
            let extra = redact::input_secrets(&task.input_json);
            let message = connectors.redactor().redact_with(&failure.message, &extra);
            Outcome::Failure(Failure { message, ..failure })
        }
    }
}

async fn try_execute(connectors: &Connectors, task: &Task) -> Result<String, Failure> {
    let action = connectors.find(&task.action).ok_or_else(|| {
        Failure::permanent(format!(
            "unknown action {:?}: this worker does not implement it",
            task.action
        ))
    })?;
    let input = parse_input(&task.input_json)?;
    let timeout = task.timeout();
    let cx = Context {
        attempt: task.attempt,
        timeout,
        dry_run: task.dry_run,
        key: task.idempotency_key.clone(),
    };
    let output = match tokio::time::timeout(timeout, connectors.execute(action, input, &cx)).await {
        Ok(result) => result?,
        Err(_) => {
            let timeout = humantime::format_duration(timeout);
            return Err(Failure::retryable(format!("timed out after {timeout}")));
        }
    };
    encode_output(&output)
}

/// The input object; an empty text counts as `{}`.
fn parse_input(text: &str) -> Result<Input, Failure> {
    if text.trim().is_empty() {
        return Ok(Input::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(input)) => Ok(input),
        Ok(_) => Err(Failure::invalid_input("the input must be a JSON object")),
        Err(e) => Err(Failure::invalid_input(format!(
            "the input is not valid JSON: {e}"
        ))),
    }
}

fn encode_output(output: &Value) -> Result<String, Failure> {
    let output_json = serde_json::to_string(output)
        .map_err(|e| Failure::permanent(format!("the output cannot be encoded as JSON: {e}")))?;
    if output_json.len() > OUTPUT_BYTES_MAX {
        let size = output_json.len();
        return Err(Failure::permanent(format!(
            "output too large: {size} bytes (max {OUTPUT_BYTES_MAX})"
        )));
    }
    Ok(output_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn connectors() -> Connectors {
        Connectors::new(&Config::new("http://127.0.0.1:1")).expect("connectors build")
    }

    fn task(action: &str, input_json: &str) -> Task {
        Task {
            task_id: "t1".to_owned(),
            run_id: "r1".to_owned(),
            step_id: "s1".to_owned(),
            item: 0,
            attempt: 1,
            action: action.to_owned(),
            input_json: input_json.to_owned(),
            idempotency_key: "r1/s1/0".to_owned(),
            lease_token: 7,
            timeout_ms: 30_000,
            dry_run: false,
            trace: None,
        }
    }

    fn failure(outcome: Outcome) -> Failure {
        match outcome {
            Outcome::Failure(failure) => failure,
            Outcome::Success { output_json } => panic!("expected a failure, got {output_json}"),
        }
    }

    #[tokio::test]
    async fn success_carries_the_output_as_json_text() {
        let outcome = execute(&connectors(), &task("core.echo", r#"{"a":[1,2]}"#)).await;
        assert_eq!(
            outcome,
            Outcome::Success {
                output_json: r#"{"a":[1,2]}"#.to_owned()
            }
        );
        let outcome = execute(&connectors(), &task("core.noop", "")).await;
        assert_eq!(
            outcome,
            Outcome::Success {
                output_json: "{}".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn output_over_the_cap_fails() {
        let big = "x".repeat(OUTPUT_BYTES_MAX);
        let input = serde_json::json!({ "blob": big }).to_string();
        let failure = failure(execute(&connectors(), &task("core.echo", &input)).await);
        let expected = format!("output too large: {} bytes (max 1048576)", input.len());
        assert_eq!(failure, Failure::permanent(expected));
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_is_a_retryable_failure() {
        let mut slow = task("core.delay", r#"{"duration":"10s"}"#);
        slow.timeout_ms = 1500;
        let failure = failure(execute(&connectors(), &slow).await);
        assert_eq!(failure, Failure::retryable("timed out after 1s 500ms"));
    }

    #[tokio::test]
    async fn bad_input_is_a_permanent_failure() {
        let cases = [
            (
                "core.echo",
                "[1, 2]",
                "invalid input: the input must be a JSON object",
            ),
            (
                "core.echo",
                "{",
                "invalid input: the input is not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
            (
                "core.nope",
                "{}",
                "unknown action \"core.nope\": this worker does not implement it",
            ),
        ];
        for (action, input, expected) in cases {
            let failure = failure(execute(&connectors(), &task(action, input)).await);
            assert_eq!(failure, Failure::permanent(expected));
        }
    }

    #[tokio::test]
    async fn a_failure_leaves_without_the_credentials_an_upstream_echoed() {
        let server = crate::connectors::http::tests::Server::start().await;
        let mut config = Config::new("http://127.0.0.1:1");
        config.http_allow_hosts = vec![
            server
                .url("")
                .trim_start_matches("http://")
                .parse()
                .unwrap(),
        ];
        let connectors = Connectors::new(&config).expect("connectors build");
        connectors.redactor().register("configured-secret-value");
        let input = serde_json::json!({
            "url": server.url("/status/400-echo"),
            "method": "POST",
            "headers": {"X-Auth-Token": "token-from-the-input", "Authorization": "Basic dXNlcjpwYXNz"},
            "body": "client_id=c&client_secret=form-secret&also=configured-secret-value",
        });
        let failure =
            failure(execute(&connectors, &task("http.request", &input.to_string())).await);
        let message = failure.message;
        for secret in [
            "token-from-the-input",
            "dXNlcjpwYXNz",
            "form-secret",
            "configured-secret",
        ] {
            assert!(!message.contains(secret), "{secret} in {message}");
        }
        assert!(
            message.starts_with("http 400 Bad Request from 127.0.0.1:"),
            "{message}"
        );
        assert!(message.contains("x-auth-token: [redacted]"), "{message}");
        assert!(
            message.contains("authorization: Basic [redacted]"),
            "{message}"
        );
        assert!(
            message.contains("client_secret=[redacted]&also=[redacted]"),
            "{message}"
        );
    }

    #[test]
    fn zero_timeout_means_the_default() {
        let mut task = task("core.noop", "{}");
        task.timeout_ms = 0;
        assert_eq!(task.timeout(), Duration::from_secs(300));
    }
}
