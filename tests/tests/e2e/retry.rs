//! Retries on a worker process: a step that fails twice succeeds on its third attempt with a
//! fixed backoff between attempts; a step that keeps failing exhausts its attempts and fails
//! the run, with the worker's error visible to the operator (API, `runs show`, `run --wait`).

use std::time::Duration;

use riposte_proto::v1::{RunEvent, RunStatus, StepStatus};
use riposte_tests::api;
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

const FLAKY: &str = r#"
name: flaky
version: 1
steps:
  - id: flaky
    action: core.fail
    with: { message: "failing on purpose", attempts_failing: 2 }
    retry: { attempts: 3, backoff: fixed, initial: 100ms }
"#;

const HOPELESS: &str = r#"
name: hopeless
version: 1
steps:
  - id: hopeless
    action: core.fail
    with: { message: "still broken", attempts_failing: 5 }
    retry: { attempts: 3, backoff: fixed, initial: 100ms }
"#;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

fn of_kind<'a>(events: &'a [RunEvent], kind: &str) -> Vec<&'a RunEvent> {
    events.iter().filter(|e| e.kind == kind).collect()
}

#[tokio::test]
async fn a_flaky_step_succeeds_on_its_third_attempt_after_backoff() {
    let orchestrator = Orchestrator::start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, FLAKY).await;

    let run = api::start_run(&mut client, "flaky", json!({})).await;
    let run = api::wait_finished(&mut client, &run.run_id, RUN_TIMEOUT).await;

    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    let step = api::step(&run, "flaky");
    assert_eq!(step.status(), StepStatus::Succeeded);
    assert_eq!(step.attempts, 3);
    assert_eq!(api::json(&step.output_json), json!({ "attempt": 3 }));

    let events = api::history(&mut client, &run.run_id).await;
    let failed = of_kind(&events, "task.failed");
    let leased = of_kind(&events, "task.leased");
    assert_eq!(failed.len(), 2, "{:?}", api::kinds(&events));
    assert_eq!(
        of_kind(&events, "task.retry_scheduled").len(),
        2,
        "{:?}",
        api::kinds(&events)
    );
    assert_eq!(
        of_kind(&events, "task.succeeded").len(),
        1,
        "{:?}",
        api::kinds(&events)
    );
    assert_eq!(
        leased.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(failed.iter().map(|e| e.attempt).collect::<Vec<_>>(), [1, 2]);
    for event in &failed {
        assert!(event.message.contains("failing on purpose"), "{event:?}");
    }
    // Fixed backoff: each new attempt is leased at least 100 ms after the failure before it.
    for (failure, next) in failed.iter().zip(&leased[1..]) {
        assert!(
            next.at_ms - failure.at_ms >= 100,
            "attempt {} leased {} ms after attempt {} failed",
            next.attempt,
            next.at_ms - failure.at_ms,
            failure.attempt
        );
    }
}

#[tokio::test]
async fn a_step_that_keeps_failing_fails_the_run_with_its_error() {
    let orchestrator = Orchestrator::start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, HOPELESS).await;

    let run = api::start_run(&mut client, "hopeless", json!({})).await;
    let run = api::wait_finished(&mut client, &run.run_id, RUN_TIMEOUT).await;

    assert_eq!(run.status(), RunStatus::Failed, "{}", api::describe(&run));
    assert!(
        run.error.contains("still broken"),
        "run error: {:?}",
        run.error
    );
    let step = api::step(&run, "hopeless");
    assert_eq!(step.status(), StepStatus::Failed);
    assert_eq!(step.attempts, 3);
    assert!(
        step.error.contains("still broken"),
        "step error: {:?}",
        step.error
    );
    let events = api::history(&mut client, &run.run_id).await;
    assert_eq!(
        of_kind(&events, "task.failed").len(),
        3,
        "{:?}",
        api::kinds(&events)
    );
    assert_eq!(
        of_kind(&events, "task.retry_scheduled").len(),
        2,
        "{:?}",
        api::kinds(&events)
    );
    assert_eq!(
        of_kind(&events, "step.failed").len(),
        1,
        "{:?}",
        api::kinds(&events)
    );
    assert_eq!(
        of_kind(&events, "task.succeeded").len(),
        0,
        "{:?}",
        api::kinds(&events)
    );

    let shown = orchestrator.cli(&["runs", "show", &run.run_id]).await;
    assert_eq!(shown.code(), 0, "{shown}");
    assert!(shown.stdout.contains("failed"), "{shown}");
    assert!(shown.stdout.contains("still broken"), "{shown}");

    let waited = orchestrator.cli(&["run", "hopeless", "--wait"]).await;
    assert_eq!(waited.code(), 1, "a failed run exits 1\n{waited}");
    let summary = waited.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("run ")
            && summary.contains(" failed ")
            && summary.contains("still broken"),
        "summary line: {summary:?}\n{waited}"
    );
}
