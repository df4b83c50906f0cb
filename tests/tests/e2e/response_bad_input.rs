//! Operator verbs at the wrong moment and timer durations out of bounds: a decision on a step
//! that does not wait for one, a repeat approval, approving one's own run, a retry of a
//! succeeded run, a resume of a running run, and a sleep of "0s" or "400d". Each gets a
//! specific status and message and changes nothing.

use std::time::Duration;

use riposte_proto::v1::{ListRunsRequest, RunStatus, StartRunRequest, StepStatus};
use riposte_tests::api::{self, Operator};
use riposte_tests::response::{self, assert_refused, first, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;
use tonic::Code;

/// Parked in a long sleep before its approval.
const PAUSED: &str = r#"
name: paused
version: 1
steps:
  - id: hold
    sleep: 1h
  - id: block
    needs: [hold]
    action: core.echo
    with: { ip: 203.0.113.7 }
    approval: { approvers: [soc-leads], timeout: 1h }
"#;

/// Two approvals needed.
const TWO_KEYS: &str = r#"
name: two-keys
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: block
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    approval: { approvers: [soc-leads], min: 2, timeout: 1h }
"#;

/// A sleep whose length comes from a free-text parameter.
const NAP: &str = r#"
name: nap
version: 1
params:
  wait: { type: string, required: true }
steps:
  - id: nap
    sleep: "{{ params.wait }}"
"#;

/// The same with a bounded duration parameter.
const NAP_BOUNDED: &str = r#"
name: nap-bounded
version: 1
params:
  wait: { type: duration, required: true, max: 7d }
steps:
  - id: nap
    sleep: "{{ params.wait }}"
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

fn orchestrator() -> Orchestrator {
    Orchestrator::builder()
        .lease_timeout("2s")
        .approver_group("soc-leads", &["alice", "bob", "carol"])
        .principal("dave", &["respond-admin"])
        .start()
}

/// The kinds of an ended run's whole history.
async fn history_kinds(client: &mut Operator, run_id: &str) -> Vec<String> {
    api::kinds(&api::history(client, run_id).await)
}

#[tokio::test]
async fn decisions_out_of_turn_are_refused_and_change_nothing() {
    let orchestrator = orchestrator();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, PAUSED).await;
    api::apply_playbook(&mut client, TWO_KEYS).await;

    // A run that does not wait for a decision (it sleeps before its approval).
    let paused = response::start_run_as(&mut client, "paused", json!({}), "alice").await;
    let paused = response::wait_step(
        &mut client,
        &paused.run_id,
        "hold",
        StepStatus::Sleeping,
        EVENT_TIMEOUT,
    )
    .await;
    let not_started = assert_refused(
        "a decision on a step that has not started",
        response::decide(
            &mut client,
            &paused.run_id,
            "block",
            true,
            "0".repeat(64).as_str(),
            "bob",
        )
        .await,
        Code::FailedPrecondition,
        &["block"],
    );
    assert_refused(
        "a decision on a step without approval",
        response::decide(&mut client, &paused.run_id, "hold", true, "", "bob").await,
        Code::FailedPrecondition,
        &["hold", "does not take approvals"],
    );
    assert_refused(
        "a decision on a step that does not exist",
        response::decide(&mut client, &paused.run_id, "nope", true, "", "bob").await,
        Code::InvalidArgument,
        &["nope"],
    );
    assert_refused(
        "a decision with a token the orchestrator does not know",
        response::decide(&mut client, &paused.run_id, "block", true, "", "nobody").await,
        Code::Unauthenticated,
        &["not in the tokens file"],
    );
    assert_eq!(
        api::get_run(&mut client, &paused.run_id).await,
        paused,
        "refused decisions change nothing"
    );

    // A repeat approval, and the requester approving their own run.
    let run = response::start_run_as(
        &mut client,
        "two-keys",
        json!({"ip": "198.51.100.4"}),
        "alice",
    )
    .await;
    let pending = response::wait_approval(&mut client, &run.run_id, "block", EVENT_TIMEOUT).await;
    assert_eq!(pending.min, 2);
    assert_refused(
        "alice approving the run she requested",
        response::decide(
            &mut client,
            &run.run_id,
            "block",
            true,
            &pending.digest,
            "alice",
        )
        .await,
        Code::FailedPrecondition,
        &["alice", "may not approve"],
    );
    let one = response::decide(
        &mut client,
        &run.run_id,
        "block",
        true,
        &pending.digest,
        "bob",
    )
    .await
    .unwrap_or_else(|status| panic!("bob's first approval: {status:?}"));
    assert_eq!(
        api::step(&one, "block").status(),
        StepStatus::AwaitingApproval,
        "one of two approvals: {}",
        api::describe(&one)
    );
    let before = api::get_run(&mut client, &run.run_id).await;
    assert_refused(
        "bob approving a second time",
        response::decide(
            &mut client,
            &run.run_id,
            "block",
            true,
            &pending.digest,
            "bob",
        )
        .await,
        Code::FailedPrecondition,
        &["bob", "already decided"],
    );
    assert_eq!(
        api::get_run(&mut client, &run.run_id).await,
        before,
        "the repeat changed nothing"
    );
    let still = response::approval_of(&mut client, &run.run_id, "block")
        .await
        .expect("still waiting for a second approver");
    let deciders: Vec<&str> = still.decisions.iter().map(|d| d.who.as_str()).collect();
    assert_eq!(deciders, ["token:bob"], "bob counts once: {still:?}");

    response::decide(
        &mut client,
        &run.run_id,
        "block",
        true,
        &pending.digest,
        "carol",
    )
    .await
    .unwrap_or_else(|status| panic!("carol's approval: {status:?}"));
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    let events = api::history(&mut client, &run.run_id).await;
    assert_eq!(
        of_kind(&events, "approval.decision").len(),
        2,
        "{:#?}",
        lines(&events)
    );
    assert_refused(
        "a decision on an ended run",
        response::decide(
            &mut client,
            &run.run_id,
            "block",
            true,
            &pending.digest,
            "carol",
        )
        .await,
        Code::FailedPrecondition,
        &["succeeded"],
    );

    // The gated step of the sleeping run does take approvals; it just does not wait for one
    // yet, and the operator must be told so.
    assert!(
        not_started.message().contains("not waiting for a decision"),
        "a decision on a gated step that has not started: {:?}",
        not_started.message()
    );
}

#[tokio::test]
async fn repairs_that_do_not_fit_the_run_are_refused_and_change_nothing() {
    let orchestrator = orchestrator();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, PAUSED).await;
    api::apply_playbook(&mut client, TWO_KEYS).await;

    // Retry or skip on a run that succeeded.
    let run = response::start_run_as(
        &mut client,
        "two-keys",
        json!({"ip": "198.51.100.5"}),
        "e2e",
    )
    .await;
    let pending = response::wait_approval(&mut client, &run.run_id, "block", EVENT_TIMEOUT).await;
    for who in ["bob", "carol"] {
        response::decide(
            &mut client,
            &run.run_id,
            "block",
            true,
            &pending.digest,
            who,
        )
        .await
        .unwrap_or_else(|status| panic!("{who}'s approval: {status:?}"));
    }
    let succeeded = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(succeeded.status(), RunStatus::Succeeded);
    let kinds = history_kinds(&mut client, &run.run_id).await;
    assert_refused(
        "RetryStep on a succeeded run",
        client
            .retry_step(response::repair(&run.run_id, "block", "dave"))
            .await,
        Code::FailedPrecondition,
        &["succeeded", "only a failed run"],
    );
    assert_refused(
        "SkipStep on a succeeded run",
        client
            .skip_step(response::repair(&run.run_id, "block", "dave"))
            .await,
        Code::FailedPrecondition,
        &["succeeded"],
    );
    assert_refused(
        "ResumeRun on a succeeded run",
        client
            .resume_run(response::repair(&run.run_id, "", "dave"))
            .await,
        Code::FailedPrecondition,
        &["only a halted run resumes"],
    );
    assert_eq!(api::get_run(&mut client, &run.run_id).await, succeeded);
    assert_eq!(
        history_kinds(&mut client, &run.run_id).await,
        kinds,
        "nothing was recorded"
    );

    // Resume on a run that runs (it is not halted).
    let paused = response::start_run_as(&mut client, "paused", json!({}), "e2e").await;
    let paused = response::wait_step(
        &mut client,
        &paused.run_id,
        "hold",
        StepStatus::Sleeping,
        EVENT_TIMEOUT,
    )
    .await;
    assert_refused(
        "ResumeRun on a running run",
        client
            .resume_run(response::repair(&paused.run_id, "", "dave"))
            .await,
        Code::FailedPrecondition,
        &["running", "not halted"],
    );
    assert_refused(
        "RetryStep on a running run's sleeping step",
        client
            .retry_step(response::repair(&paused.run_id, "hold", "dave"))
            .await,
        Code::FailedPrecondition,
        &["hold"],
    );
    assert_refused(
        "a repair by a principal without respond-admin",
        client
            .resume_run(response::repair(&paused.run_id, "", "alice"))
            .await,
        Code::PermissionDenied,
        &["token:alice", "respond-admin"],
    );
    assert_eq!(
        api::get_run(&mut client, &paused.run_id).await,
        paused,
        "refused repairs change nothing"
    );
}

#[tokio::test]
async fn a_sleep_out_of_bounds_fails_its_step_or_is_refused_at_start() {
    let orchestrator = orchestrator();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, NAP).await;
    api::apply_playbook(&mut client, NAP_BOUNDED).await;

    for wait in ["0s", "400d"] {
        let run = response::start_run_as(&mut client, "nap", json!({"wait": wait}), "e2e").await;
        let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
        let events = api::history(&mut client, &run.run_id).await;
        let history = lines(&events);
        assert_eq!(
            run.status(),
            RunStatus::Failed,
            "{wait}: {} {history:#?}",
            api::describe(&run)
        );
        let nap = api::step(&run, "nap");
        assert_eq!(nap.status(), StepStatus::Failed, "{wait}");
        let expected = format!("duration `{wait}` must be above 0 and at most 30days");
        assert!(
            nap.error.contains(&expected),
            "{wait}: the step's error must say {expected:?}: {:?}",
            nap.error
        );
        assert!(
            run.error.contains("step nap failed") && run.error.contains(&expected),
            "{wait}: {:?}",
            run.error
        );
        assert!(
            of_kind(&events, "step.sleeping").is_empty(),
            "{wait}: it never slept: {history:#?}"
        );
        assert_eq!(
            first(&events, "run.finished").run_status(),
            RunStatus::Failed
        );
    }

    let refused = client
        .start_run(StartRunRequest {
            playbook: "nap-bounded".into(),
            params_json: json!({"wait": "400d"}).to_string(),
            ..Default::default()
        })
        .await;
    assert_refused(
        "a duration param above its max",
        refused,
        Code::InvalidArgument,
        &["wait", "at most 7d", "400d"],
    );
    let runs = client
        .list_runs(ListRunsRequest {
            playbook: "nap-bounded".into(),
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner()
        .runs;
    assert!(runs.is_empty(), "the refused start made no run: {runs:?}");
}
