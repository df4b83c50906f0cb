//! Compensation: every step with `undo` that succeeded records its undo; when the run is
//! cancelled or a step fails, the run enters phase `compensating` and the recorded undos run
//! newest first, one at a time, each exactly once, then the run ends cancelled or failed. The
//! step in flight at the cancel is abandoned, not awaited.

use std::time::Duration;

use riposte_proto::v1::{CancelRunRequest, RunEvent, RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::response::{self, first, lines, of_kind, of_step};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

/// Three changes in a row, each with its undo; the third takes 5 s.
const CONTAIN: &str = r#"
name: contain
version: 1
steps:
  - id: isolate
    action: core.echo
    with: { host: web-1 }
    undo: { action: core.echo, with: { marker: undo-isolate, host: "{{ steps.isolate.output.host }}" } }
  - id: block
    needs: [isolate]
    action: core.echo
    with: { ip: 203.0.113.7 }
    undo: { action: core.echo, with: { marker: undo-block, ip: "{{ steps.block.output.ip }}" } }
  - id: scan
    needs: [block]
    action: core.delay
    with: { duration: 5s }
    undo: { action: core.echo, with: { marker: undo-scan } }
"#;

/// The same, with a third step that fails.
const CONTAIN_FAILING: &str = r#"
name: contain-failing
version: 1
steps:
  - id: isolate
    action: core.echo
    with: { host: web-1 }
    undo: { action: core.echo, with: { marker: undo-isolate } }
  - id: block
    needs: [isolate]
    action: core.echo
    with: { ip: 203.0.113.7 }
    undo: { action: core.echo, with: { marker: undo-block } }
  - id: scan
    needs: [block]
    action: core.fail
    with: { message: "scanner unreachable" }
    undo: { action: core.echo, with: { marker: undo-scan } }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The `core.delay` of step `scan`.
const SCAN_MS: i64 = 5_000;

/// Checks the compensation part of a history: the undos of `block` then `isolate` ran, one at
/// a time, each exactly once, after `run.compensating` and before `run.finished`; `scan`
/// recorded no undo.
fn assert_compensated_in_reverse(events: &[RunEvent]) {
    let history = lines(events);
    let recorded: Vec<&str> = of_kind(events, "undo.recorded")
        .iter()
        .map(|e| e.step_id.as_str())
        .collect();
    assert_eq!(
        recorded,
        ["isolate", "block"],
        "an undo is recorded when its step succeeds, and only then: {history:#?}"
    );
    let leased: Vec<&str> = of_kind(events, "undo.leased")
        .iter()
        .map(|e| e.step_id.as_str())
        .collect();
    let succeeded: Vec<&str> = of_kind(events, "undo.succeeded")
        .iter()
        .map(|e| e.step_id.as_str())
        .collect();
    assert_eq!(leased, ["block", "isolate"], "newest first: {history:#?}");
    assert_eq!(
        succeeded,
        ["block", "isolate"],
        "each undo exactly once, newest first: {history:#?}"
    );
    assert!(
        of_kind(events, "undo.failed").is_empty(),
        "no undo failed: {history:#?}"
    );
    let compensating = of_kind(events, "run.compensating");
    assert_eq!(compensating.len(), 1, "{history:#?}");
    let block_done = of_step(events, "undo.succeeded", "block")[0];
    let isolate_leased = of_step(events, "undo.leased", "isolate")[0];
    assert!(
        compensating[0].seq < of_step(events, "undo.leased", "block")[0].seq,
        "{history:#?}"
    );
    assert!(
        block_done.seq < isolate_leased.seq,
        "one undo at a time: the older starts after the newer succeeded: {history:#?}"
    );
    let finished = first(events, "run.finished");
    assert!(
        of_step(events, "undo.succeeded", "isolate")[0].seq < finished.seq,
        "the run ends after its last undo: {history:#?}"
    );
    assert_eq!(
        api::count(events, "run.finished"),
        1,
        "the run ends once: {history:#?}"
    );
}

#[tokio::test]
async fn a_cancelled_run_undoes_what_it_did_newest_first() {
    let orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("carol", &["respond-admin"])
        .start();
    // One slot: the undos can only run once the worker has dropped the abandoned delay.
    let worker = Worker::start(&orchestrator.url(), &[], 1);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, CONTAIN).await;

    let run = api::start_run(&mut client, "contain", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    // The scan is leased once both earlier steps succeeded (their undos are recorded).
    let scan_leased = wait_leased(&watch, "scan").await;

    let cancelling = client
        .cancel_run(riposte_tests::access::as_principal(
            CancelRunRequest {
                run_id: run.run_id.clone(),
                reason: "false positive".into(),
            },
            "carol",
        ))
        .await
        .expect("CancelRun of a running run")
        .into_inner();
    assert_eq!(
        cancelling.phase,
        "compensating",
        "{}",
        api::describe(&cancelling)
    );
    assert_eq!(cancelling.status(), RunStatus::Running);

    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    let events = api::history(&mut client, &run.run_id).await;
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Cancelled,
        "{} {history:#?}",
        api::describe(&run)
    );
    assert!(
        run.error.contains("cancelled by token:carol") && run.error.contains("false positive"),
        "{:?}",
        run.error
    );
    assert_eq!(api::step(&run, "isolate").status(), StepStatus::Succeeded);
    assert_eq!(api::step(&run, "block").status(), StepStatus::Succeeded);
    assert_eq!(api::step(&run, "scan").status(), StepStatus::Cancelled);
    assert_compensated_in_reverse(&events);
    let cancel = first(&events, "run.cancel_requested");
    assert!(cancel.message.contains("by token:carol"), "{history:#?}");
    assert!(
        cancel.seq < first(&events, "run.compensating").seq,
        "{history:#?}"
    );

    // The scan was abandoned: it never reported, and the single slot ran both undos before
    // its 5 s could have passed.
    for kind in ["task.succeeded", "task.failed", "task.result_rejected"] {
        assert!(
            of_step(&events, kind, "scan").is_empty(),
            "{kind} for scan: {history:#?}"
        );
    }
    let finished = first(&events, "run.finished");
    assert_eq!(finished.run_status(), RunStatus::Cancelled);
    assert!(
        finished.at_ms < scan_leased.at_ms + SCAN_MS,
        "the worker dropped the scan: the run ended {} ms after the scan started: {history:#?}",
        finished.at_ms - scan_leased.at_ms
    );
    assert_eq!(
        run.phase,
        "",
        "an ended run is no longer compensating: {} {history:#?}",
        api::describe(&run)
    );
}

#[tokio::test]
async fn a_failed_step_undoes_what_the_run_did_newest_first() {
    let orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("carol", &["respond-admin"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, CONTAIN_FAILING).await;

    let run = api::start_run(&mut client, "contain-failing", json!({})).await;
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    let events = api::history(&mut client, &run.run_id).await;
    let history = lines(&events);

    assert_eq!(
        run.status(),
        RunStatus::Failed,
        "{} {history:#?}",
        api::describe(&run)
    );
    assert!(
        run.error.contains("step scan failed") && run.error.contains("scanner unreachable"),
        "the run's error is the step's: {:?}",
        run.error
    );
    let scan = api::step(&run, "scan");
    assert_eq!(scan.status(), StepStatus::Failed);
    assert!(
        scan.error.contains("scanner unreachable"),
        "{:?}",
        scan.error
    );
    assert_eq!(api::step(&run, "isolate").status(), StepStatus::Succeeded);
    assert_eq!(api::step(&run, "block").status(), StepStatus::Succeeded);
    assert_compensated_in_reverse(&events);
    let failed = of_step(&events, "step.failed", "scan");
    assert_eq!(failed.len(), 1, "{history:#?}");
    assert!(
        failed[0].seq < first(&events, "run.compensating").seq,
        "compensation follows the failure: {history:#?}"
    );
    assert_eq!(
        first(&events, "run.finished").run_status(),
        RunStatus::Failed
    );
    assert_eq!(
        run.phase,
        "",
        "an ended run is no longer compensating: {} {history:#?}",
        api::describe(&run)
    );
}

/// Waits until step `step` is leased and returns the lease event.
async fn wait_leased(watch: &HistoryWatch, step: &str) -> RunEvent {
    riposte_tests::wait_for(
        &format!("step {step} is leased"),
        EVENT_TIMEOUT,
        async || {
            let events = watch.events();
            of_step(&events, "task.leased", step)
                .first()
                .map(|e| (*e).clone())
                .ok_or_else(|| format!("{:?}", api::kinds(&events)))
        },
    )
    .await
}
