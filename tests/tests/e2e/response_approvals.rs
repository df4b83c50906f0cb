//! Approvals: a gated step waits for a member of its approver groups other than the requester;
//! each decision is bound to the digest of exactly the inputs that were reviewed, counts once,
//! and a step whose approval times out is rejected by default.

use std::time::Duration;

use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::response::{self, assert_refused, first, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;
use tonic::Code;

const GATED: &str = r#"
name: gated-block
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: block
    action: core.echo
    with: { ip: "{{ params.ip }}", rule: deny-all }
    approval: { approvers: [soc-leads], timeout: 10m }
"#;

const GATED_BRIEFLY: &str = r#"
name: gated-briefly
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: block
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    approval: { approvers: [soc-leads], timeout: 1s }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

fn orchestrator() -> Orchestrator {
    Orchestrator::builder()
        .lease_timeout("2s")
        .approver_group("soc-leads", &["alice", "bob"])
        .principal("mallory", &["approver"])
        .start()
}

#[tokio::test]
async fn a_gated_step_runs_once_someone_else_in_the_group_approves() {
    let orchestrator = orchestrator();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, GATED).await;

    let run = response::start_run_as(
        &mut client,
        "gated-block",
        json!({"ip": "203.0.113.7"}),
        "alice",
    )
    .await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let pending = response::wait_approval(&mut client, &run.run_id, "block", EVENT_TIMEOUT).await;
    assert_eq!(pending.requested_by, "token:alice");
    assert_eq!(pending.approvers, ["soc-leads"]);
    assert_eq!(pending.min, 1);
    assert_eq!(pending.action, "core.echo");
    assert_eq!(pending.on_timeout, "reject");
    assert_eq!(
        api::json(&pending.input_json),
        json!({"ip": "203.0.113.7", "rule": "deny-all"}),
        "the approver sees the rendered input"
    );
    assert_eq!(pending.digest.len(), 64, "a SHA-256: {pending:?}");
    assert!(pending.decisions.is_empty());
    let waiting = api::get_run(&mut client, &run.run_id).await;
    assert_eq!(waiting.status(), RunStatus::Running);
    assert_eq!(
        api::step(&waiting, "block").status(),
        StepStatus::AwaitingApproval
    );
    assert!(api::step(&waiting, "block").due_at_ms > response::now_ms());

    assert_refused(
        "alice approving her own run",
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
    assert_refused(
        "mallory, outside the approver groups",
        response::decide(
            &mut client,
            &run.run_id,
            "block",
            true,
            &pending.digest,
            "mallory",
        )
        .await,
        Code::PermissionDenied,
        &["mallory", "soc-leads"],
    );
    assert_eq!(
        api::get_run(&mut client, &run.run_id).await,
        waiting,
        "refused decisions change nothing"
    );
    let still = response::approval_of(&mut client, &run.run_id, "block")
        .await
        .expect("still waiting for a decision");
    assert!(still.decisions.is_empty(), "{still:?}");

    let decided = response::decide(
        &mut client,
        &run.run_id,
        "block",
        true,
        &pending.digest,
        "bob",
    )
    .await
    .unwrap_or_else(|status| panic!("bob's approval: {status:?}"));
    assert_ne!(
        api::step(&decided, "block").status(),
        StepStatus::AwaitingApproval,
        "bob's approval released the step: {}",
        api::describe(&decided)
    );
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    assert_eq!(
        api::json(&api::step(&run, "block").output_json),
        json!({"ip": "203.0.113.7", "rule": "deny-all"})
    );
    assert_refused(
        "bob deciding a second time",
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
        &[],
    );

    watch.wait_kind("run.finished", EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    assert_eq!(
        of_kind(&events, "approval.requested").len(),
        1,
        "{history:#?}"
    );
    let decisions = of_kind(&events, "approval.decision");
    assert_eq!(
        decisions.len(),
        1,
        "only bob's decision counts: {history:#?}"
    );
    assert!(
        decisions[0].message.contains("approved by token:bob"),
        "{history:#?}"
    );
    let granted = of_kind(&events, "approval.granted");
    assert_eq!(granted.len(), 1, "{history:#?}");
    let leased = of_kind(&events, "task.leased");
    assert_eq!(leased.len(), 1, "{history:#?}");
    assert!(
        granted[0].seq < leased[0].seq,
        "nothing ran before the approval: {history:#?}"
    );
    assert!(
        response::approval_of(&mut client, &run.run_id, "block")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_decision_counts_only_for_the_inputs_it_was_made_on() {
    let orchestrator = orchestrator();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, GATED).await;

    let run_a = response::start_run_as(
        &mut client,
        "gated-block",
        json!({"ip": "198.51.100.1"}),
        "e2e",
    )
    .await;
    let run_b = response::start_run_as(
        &mut client,
        "gated-block",
        json!({"ip": "198.51.100.2"}),
        "e2e",
    )
    .await;
    let pending_a =
        response::wait_approval(&mut client, &run_a.run_id, "block", EVENT_TIMEOUT).await;
    let pending_b =
        response::wait_approval(&mut client, &run_b.run_id, "block", EVENT_TIMEOUT).await;
    assert_ne!(
        pending_a.digest, pending_b.digest,
        "other inputs, another digest"
    );
    assert_eq!(api::json(&pending_b.input_json)["ip"], "198.51.100.2");

    let before = api::get_run(&mut client, &run_b.run_id).await;
    assert_refused(
        "approving run B with the digest of run A's inputs",
        response::decide(
            &mut client,
            &run_b.run_id,
            "block",
            true,
            &pending_a.digest,
            "bob",
        )
        .await,
        Code::FailedPrecondition,
        &[&pending_a.digest, &pending_b.digest],
    );
    let after = api::get_run(&mut client, &run_b.run_id).await;
    assert_eq!(
        api::step(&after, "block").status(),
        StepStatus::AwaitingApproval,
        "run B still waits: {}",
        api::describe(&after)
    );
    assert_eq!(after, before, "the stale decision changed nothing");
    let still = response::approval_of(&mut client, &run_b.run_id, "block")
        .await
        .expect("run B still waits for a decision");
    assert!(still.decisions.is_empty(), "{still:?}");
    assert_eq!(still.digest, pending_b.digest);

    response::decide(
        &mut client,
        &run_b.run_id,
        "block",
        true,
        &pending_b.digest,
        "bob",
    )
    .await
    .unwrap_or_else(|status| panic!("bob's approval with B's digest: {status:?}"));
    let run_b = response::wait_ended(&mut client, &run_b.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run_b.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run_b)
    );
    assert_eq!(
        api::json(&api::step(&run_b, "block").output_json)["ip"],
        "198.51.100.2"
    );
    let run_a = api::get_run(&mut client, &run_a.run_id).await;
    assert_eq!(
        api::step(&run_a, "block").status(),
        StepStatus::AwaitingApproval,
        "run A was not approved by any of this: {}",
        api::describe(&run_a)
    );
}

#[tokio::test]
async fn an_approval_that_times_out_is_rejected_by_default() {
    let orchestrator = orchestrator();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, GATED_BRIEFLY).await;

    let run = response::start_run_as(
        &mut client,
        "gated-briefly",
        json!({"ip": "203.0.113.9"}),
        "e2e",
    )
    .await;
    let pending = response::wait_approval(&mut client, &run.run_id, "block", EVENT_TIMEOUT).await;
    assert_eq!(pending.on_timeout, "reject");
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    let events = api::history(&mut client, &run.run_id).await;
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Failed,
        "{} {history:#?}",
        api::describe(&run)
    );
    assert!(run.error.contains("approval timed out"), "{:?}", run.error);
    let block = api::step(&run, "block");
    assert_eq!(block.status(), StepStatus::Failed);
    assert!(
        block.error.contains("approval timed out"),
        "{:?}",
        block.error
    );
    let requested = first(&events, "approval.requested");
    let timed_out = first(&events, "approval.timed_out");
    assert!(
        timed_out.at_ms - requested.at_ms >= 1_000,
        "not before the timeout: {history:#?}"
    );
    assert!(
        of_kind(&events, "task.leased").is_empty(),
        "the gated action never ran: {history:#?}"
    );
    assert!(
        response::approval_of(&mut client, &run.run_id, "block")
            .await
            .is_none()
    );
    assert_refused(
        "a decision after the timeout",
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
        &[],
    );
}
