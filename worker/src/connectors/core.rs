//! The `core.*` actions: built-in actions with no outside effect, used to test playbooks,
//! retries, timeouts and cancellation end to end.
//!
//! - `core.noop`: succeeds at once with `{}`.
//! - `core.echo`: succeeds with its input object.
//! - `core.fail`: fails (retryably) with `message`; with `attempts_failing: N` it fails only
//!   while the attempt is at most N and then succeeds with `{"attempt": A}`.
//! - `core.delay`: holds the task for `duration` (at most 1 h), then succeeds with
//!   `{"slept_ms": N}`. Dropping the future (abandon, drain, timeout) ends it at once.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Context, Failure, Fields, Input};

/// Longest `core.delay`.
const DELAY_MAX: Duration = Duration::from_secs(3600);

/// The `core.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Noop,
    Echo,
    Fail,
    Delay,
}

impl Action {
    /// All `core.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Noop, Action::Echo, Action::Fail, Action::Delay];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Noop => "core.noop",
            Action::Echo => "core.echo",
            Action::Fail => "core.fail",
            Action::Delay => "core.delay",
        }
    }
}

/// Runs one `core.*` action.
pub(crate) async fn execute(action: Action, input: Input, cx: &Context) -> Result<Value, Failure> {
    match action {
        Action::Noop => Ok(json!({})),
        Action::Echo => Ok(Value::Object(input)),
        Action::Fail => fail(input, cx),
        Action::Delay => delay(input).await,
    }
}

fn fail(input: Input, cx: &Context) -> Result<Value, Failure> {
    let mut fields = Fields::new(input, &["message", "attempts_failing"])?;
    let message = fields.required_string("message")?;
    let attempts_failing = fields.u64("attempts_failing")?;
    match attempts_failing {
        Some(n) if u64::from(cx.attempt) > n => Ok(json!({ "attempt": cx.attempt })),
        _ => Err(Failure::retryable(message)),
    }
}

async fn delay(input: Input) -> Result<Value, Failure> {
    let mut fields = Fields::new(input, &["duration"])?;
    let duration = fields
        .duration("duration", DELAY_MAX)?
        .ok_or_else(|| Failure::invalid_input("`duration` is required"))?;
    tokio::time::sleep(duration).await;
    let slept_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    Ok(json!({ "slept_ms": slept_ms }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(attempt: u32) -> Context {
        Context {
            attempt,
            ..Context::test(Duration::from_secs(60))
        }
    }

    fn input(value: Value) -> Input {
        match value {
            Value::Object(object) => object,
            other => panic!("test input must be an object, got {other}"),
        }
    }

    async fn run(action: Action, value: Value, attempt: u32) -> Result<Value, Failure> {
        execute(action, input(value), &cx(attempt)).await
    }

    #[tokio::test]
    async fn noop_succeeds_with_an_empty_object() {
        assert_eq!(
            run(Action::Noop, json!({"ignored": 1}), 1).await,
            Ok(json!({}))
        );
    }

    #[tokio::test]
    async fn echo_returns_its_input() {
        let value = json!({"ip": "203.0.113.7", "nested": {"list": [1, 2, null]}});
        assert_eq!(run(Action::Echo, value.clone(), 1).await, Ok(value));
    }

    #[tokio::test]
    async fn fail_always_fails_without_attempts_failing() {
        for attempt in [1, 2, 10] {
            let result = run(Action::Fail, json!({"message": "boom"}), attempt).await;
            assert_eq!(result, Err(Failure::retryable("boom")));
        }
    }

    #[tokio::test]
    async fn fail_succeeds_after_attempts_failing() {
        let value = json!({"message": "flaky", "attempts_failing": 2});
        assert_eq!(
            run(Action::Fail, value.clone(), 1).await,
            Err(Failure::retryable("flaky"))
        );
        assert_eq!(
            run(Action::Fail, value.clone(), 2).await,
            Err(Failure::retryable("flaky"))
        );
        assert_eq!(
            run(Action::Fail, value.clone(), 3).await,
            Ok(json!({"attempt": 3}))
        );
        let never = json!({"message": "never", "attempts_failing": 0});
        assert_eq!(run(Action::Fail, never, 1).await, Ok(json!({"attempt": 1})));
    }

    #[tokio::test]
    async fn fail_input_errors_are_permanent() {
        let cases = [
            (json!({}), "invalid input: `message` is required"),
            (
                json!({"message": 5}),
                "invalid input: `message` must be a string, not a number",
            ),
            (
                json!({"message": "x", "attempts_failing": -1}),
                "invalid input: `attempts_failing` must be a non-negative integer, not a number",
            ),
            (
                json!({"message": "x", "attempts": 1}),
                "invalid input: unknown field `attempts` (expected `message`, `attempts_failing`)",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                run(Action::Fail, value, 1).await,
                Err(Failure::permanent(expected))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn delay_sleeps_for_its_duration() {
        let start = crate::clock::monotonic();
        let result = run(Action::Delay, json!({"duration": "2s"}), 1).await;
        assert_eq!(result, Ok(json!({"slept_ms": 2000})));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn delay_is_cancelled_by_dropping_it() {
        let delay = run(Action::Delay, json!({"duration": "1h"}), 1);
        let outcome = tokio::time::timeout(Duration::from_millis(10), delay).await;
        assert!(outcome.is_err(), "the delay must still be pending");
    }

    #[tokio::test]
    async fn delay_input_errors_are_permanent() {
        let cases = [
            (json!({}), "invalid input: `duration` is required"),
            (
                json!({"duration": 5}),
                "invalid input: `duration` must be a string, not a number",
            ),
            (
                json!({"duration": "soon"}),
                "invalid input: `duration`: invalid duration \"soon\": expected number at 0",
            ),
            (
                json!({"duration": "2h"}),
                "invalid input: `duration` \"2h\" exceeds the maximum of 1h",
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                run(Action::Delay, value, 1).await,
                Err(Failure::permanent(expected))
            );
        }
    }

    #[test]
    fn names_are_unique() {
        use crate::connectors::Action as AnyAction;
        let mut names: Vec<_> = AnyAction::all().map(AnyAction::name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
