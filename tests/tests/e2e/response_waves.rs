//! Rollouts in waves: a `for_each` over 20 targets rolls out as a canary then batches. Once
//! failures exceed the error budget the run halts when the current wave's items have ended,
//! naming what succeeded, failed and never started, and no later item is touched; ResumeRun
//! forgives the failures so far and the rollout goes on to the end. A failing health gate
//! halts the rollout after its wave.

use std::collections::BTreeSet;
use std::time::Duration;

use riposte_proto::v1::{CancelRunRequest, RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::response::{self, assert_refused, lines, of_kind, of_step};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;
use tonic::Code;

/// Items 3, 4 and 5 fail their only attempt; the others succeed.
const PATCH_FLEET: &str = r#"
name: patch-fleet
version: 1
steps:
  - id: patch
    for_each: "{{ range(20) | list }}"
    concurrency: 2
    action: core.fail
    with:
      message: "patch failed on host {{ item }}"
      attempts_failing: "{{ 1 if item in [3, 4, 5] else 0 }}"
    waves: { canary: 1, batch: 5, error_budget: 2 }
"#;

/// Every item succeeds; the health gate after each wave fails.
const PATCH_GATED: &str = r#"
name: patch-gated
version: 1
steps:
  - id: patch
    for_each: "{{ range(20) | list }}"
    concurrency: 2
    action: core.echo
    with: { host: "{{ item }}" }
    waves:
      canary: 1
      batch: 5
      error_budget: 2
      health: { action: core.fail, with: { message: unhealthy } }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(25);

fn list(items: impl IntoIterator<Item = u32>) -> String {
    items
        .into_iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The items leased so far (each item's task.leased of step `patch`).
fn leased_items(events: &[riposte_proto::v1::RunEvent]) -> Vec<u32> {
    of_step(events, "task.leased", "patch")
        .iter()
        .map(|e| e.item)
        .collect()
}

#[tokio::test]
async fn a_rollout_halts_when_its_error_budget_is_spent_and_resumes_to_the_end() {
    let orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("carol", &["respond-admin"])
        .start();
    let workers = [
        Worker::start(&orchestrator.url(), &[], 2),
        Worker::start(&orchestrator.url(), &[], 2),
    ];
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    api::apply_playbook(&mut client, PATCH_FLEET).await;

    let run = api::start_run(&mut client, "patch-fleet", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let halted_event = watch.wait_kind("run.halted", RUN_TIMEOUT).await;
    let halted =
        response::wait_status(&mut client, &run.run_id, RunStatus::Halted, EVENT_TIMEOUT).await;
    let before_resume = watch.events();
    let history = lines(&before_resume);

    for fragment in [
        "error budget spent".to_string(),
        "succeeded: 0,1,2;".to_string(),
        "failed: 3,4,5;".to_string(),
        format!("not started: {}", list(6..20)),
    ] {
        assert!(
            halted.error.contains(&fragment),
            "the error must contain {fragment:?}: {:?}",
            halted.error
        );
    }
    assert!(
        halted_event.message.contains("failed: 3,4,5"),
        "{history:#?}"
    );
    let patch = api::step(&halted, "patch");
    assert_eq!(patch.items_total, 20);
    assert_eq!(patch.items_succeeded, 3, "{}", api::describe(&halted));
    assert_eq!(patch.items_failed, 3, "{}", api::describe(&halted));
    assert_eq!(patch.items_pending, 14, "items 6..19 never started");
    let leased: BTreeSet<u32> = leased_items(&before_resume).into_iter().collect();
    assert_eq!(
        leased,
        (0..6).collect::<BTreeSet<u32>>(),
        "only the canary and the first batch were touched: {history:#?}"
    );
    assert_eq!(
        of_kind(&before_resume, "wave.started").len(),
        2,
        "the canary and one batch: {history:#?}"
    );
    // Halted, the rollout stays put until an operator acts.
    assert_eq!(
        api::get_run(&mut client, &run.run_id).await,
        halted,
        "a halted run does not move by itself"
    );

    let resumed = client
        .resume_run(response::repair(&run.run_id, "", "carol"))
        .await
        .unwrap_or_else(|status| panic!("ResumeRun of a halted run: {status:?}"))
        .into_inner();
    assert_ne!(
        resumed.status(),
        RunStatus::Halted,
        "{}",
        api::describe(&resumed)
    );
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    watch.wait_kind("run.finished", EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "the failures were forgiven: {} {history:#?}",
        api::describe(&run)
    );
    assert_eq!(run.error, "");
    let patch = api::step(&run, "patch");
    assert_eq!(patch.status(), StepStatus::Succeeded);
    assert_eq!(patch.items_succeeded, 17);
    assert_eq!(patch.items_failed, 3);
    assert_eq!(patch.items_pending, 0);
    let output = api::json(&patch.output_json);
    assert_eq!(output["failed"], json!([3, 4, 5]), "{output}");
    let succeeded: Vec<u32> = (0..20).filter(|i| ![3, 4, 5].contains(i)).collect();
    assert_eq!(output["succeeded"], json!(succeeded), "{output}");

    let resumed_at = of_kind(&events, "run.resumed");
    assert_eq!(resumed_at.len(), 1, "{history:#?}");
    assert!(
        resumed_at[0].message.contains("by token:carol"),
        "{history:#?}"
    );
    let mut leased = leased_items(&events);
    leased.sort_unstable();
    assert_eq!(
        leased,
        (0..20).collect::<Vec<u32>>(),
        "every item leased exactly once (failed items are not retried): {history:#?}"
    );
    for event in of_step(&events, "task.leased", "patch") {
        if event.item >= 6 {
            assert!(
                event.seq > resumed_at[0].seq,
                "item {} started before the resume: {history:#?}",
                event.item
            );
        }
    }
    assert_eq!(
        of_kind(&events, "wave.started").len(),
        5,
        "canary, then batches of 5: {history:#?}"
    );
    assert_eq!(of_kind(&events, "run.halted").len(), 1, "{history:#?}");
}

#[tokio::test]
async fn a_failing_health_gate_halts_the_rollout_after_its_wave() {
    let orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("carol", &["respond-admin"])
        .start();
    let workers = [
        Worker::start(&orchestrator.url(), &[], 2),
        Worker::start(&orchestrator.url(), &[], 2),
    ];
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    api::apply_playbook(&mut client, PATCH_GATED).await;

    let run = api::start_run(&mut client, "patch-gated", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    watch.wait_kind("run.halted", RUN_TIMEOUT).await;
    let halted =
        response::wait_status(&mut client, &run.run_id, RunStatus::Halted, EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    for fragment in [
        "health gate after wave 0 failed: unhealthy".to_string(),
        "succeeded: 0;".to_string(),
        format!("not started: {}", list(1..20)),
    ] {
        assert!(
            halted.error.contains(&fragment),
            "the error must contain {fragment:?}: {:?}",
            halted.error
        );
    }
    let patch = api::step(&halted, "patch");
    assert_eq!(patch.items_succeeded, 1);
    assert_eq!(patch.items_pending, 19, "{}", api::describe(&halted));
    assert_eq!(
        leased_items(&events),
        [0],
        "only the canary ran: {history:#?}"
    );
    assert_eq!(of_kind(&events, "health.failed").len(), 1, "{history:#?}");

    // A resume waives this gate; the next wave's gate fails again.
    client
        .resume_run(response::repair(&run.run_id, "", "carol"))
        .await
        .unwrap_or_else(|status| panic!("ResumeRun of a halted run: {status:?}"));
    watch.wait_nth_kind("run.halted", 2, RUN_TIMEOUT).await;
    let halted =
        response::wait_status(&mut client, &run.run_id, RunStatus::Halted, EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    assert!(
        halted
            .error
            .contains("health gate after wave 1 failed: unhealthy"),
        "{:?}",
        halted.error
    );
    let mut leased = leased_items(&events);
    leased.sort_unstable();
    assert_eq!(leased, (0..6).collect::<Vec<u32>>(), "{history:#?}");
    assert_eq!(api::step(&halted, "patch").items_pending, 14);

    let cancelled = client
        .cancel_run(CancelRunRequest {
            run_id: run.run_id.clone(),
            reason: "rollout abandoned".into(),
        })
        .await
        .expect("CancelRun of a halted run")
        .into_inner();
    let run = response::wait_ended(&mut client, &cancelled.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Cancelled,
        "{}",
        api::describe(&run)
    );
    assert_refused(
        "ResumeRun of a cancelled rollout",
        client
            .resume_run(response::repair(&run.run_id, "", "carol"))
            .await,
        Code::FailedPrecondition,
        &[],
    );
}
