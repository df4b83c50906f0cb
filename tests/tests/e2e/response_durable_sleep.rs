//! Durable timers: a run sleeping when the orchestrator is killed with `kill -9`, and kept
//! down past its wake-up time, wakes right after the restart, exactly once, and finishes.

use std::time::Duration;

use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::api;
use riposte_tests::response::{self, first, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

const COOL_DOWN: &str = r#"
name: cool-down
version: 1
steps:
  - id: wait
    sleep: 2s
  - id: notify
    needs: [wait]
    action: core.echo
    with: { message: "cool-down over" }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// How soon after a restart a timer that fell due meanwhile must fire.
const FIRES_AFTER_RESTART_MS: i64 = 3_000;

#[tokio::test]
async fn a_sleep_that_fell_due_while_the_orchestrator_was_down_wakes_after_restart() {
    let mut orchestrator = Orchestrator::builder().lease_timeout("2s").start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, COOL_DOWN).await;

    let run = api::start_run(&mut client, "cool-down", json!({})).await;
    let sleeping = response::wait_step(
        &mut client,
        &run.run_id,
        "wait",
        StepStatus::Sleeping,
        EVENT_TIMEOUT,
    )
    .await;
    let wait = api::step(&sleeping, "wait");
    assert_eq!(
        wait.due_at_ms - wait.started_at_ms,
        2_000,
        "{}",
        api::describe(&sleeping)
    );
    assert_eq!(sleeping.status(), RunStatus::Running);
    assert_eq!(api::step(&sleeping, "notify").status(), StepStatus::Waiting);

    orchestrator.kill9();
    assert!(
        response::now_ms() < wait.due_at_ms,
        "the orchestrator went down during the sleep"
    );
    response::wait_wall_clock_past(wait.due_at_ms + 500).await;
    let restarted_ms = response::now_ms();
    orchestrator.restart();
    orchestrator.wait_serving().await;

    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    let events = api::history(&mut client, &run.run_id).await;
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{} {history:#?}",
        api::describe(&run)
    );
    assert_eq!(
        api::json(&api::step(&run, "notify").output_json),
        json!({"message": "cool-down over"})
    );
    assert_eq!(of_kind(&events, "step.sleeping").len(), 1, "{history:#?}");
    let woke = of_kind(&events, "step.woke");
    assert_eq!(woke.len(), 1, "woke exactly once: {history:#?}");
    assert_eq!(woke[0].step_id, "wait");
    assert!(
        woke[0].at_ms >= restarted_ms,
        "it woke after the restart, not before the crash: {history:#?}"
    );
    assert!(
        woke[0].at_ms - restarted_ms < FIRES_AFTER_RESTART_MS,
        "the overdue timer fired right after the restart ({} ms later): {history:#?}",
        woke[0].at_ms - restarted_ms
    );
    let notify_leased = first(&events, "task.leased");
    assert!(
        woke[0].seq < notify_leased.seq,
        "notify ran after the wake-up: {history:#?}"
    );
    assert_eq!(api::count(&events, "run.finished"), 1, "{history:#?}");
}
