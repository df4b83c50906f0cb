//! Grants: a step with `grant` keeps its change only for the TTL. The run holds the grant
//! (phase `holding_grants`) until its revoke (the step's undo) has run: at the TTL, even when
//! the TTL fell due while the orchestrator was down (the revoke then runs right after the
//! restart), or earlier on an operator's RevokeGrant, which works once.

use std::time::Duration;

use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::response::{self, first, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;
use tonic::Code;

const ELEVATE: &str = r#"
name: elevate
version: 1
params:
  user: { type: string, required: true }
  ttl: { type: duration, default: 3s }
steps:
  - id: elevate
    action: core.echo
    with: { user: "{{ params.user }}", role: admin }
    undo:
      action: core.echo
      with: { revoke: "{{ params.user }}", role: "{{ steps.elevate.output.role }}" }
    grant: { ttl: "{{ params.ttl }}", subject: "{{ params.user }}" }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// How soon after a restart a timer that fell due meanwhile must fire.
const FIRES_AFTER_RESTART_MS: i64 = 3_000;

#[tokio::test]
async fn a_grant_whose_ttl_passed_while_the_orchestrator_was_down_is_revoked_after_restart() {
    let mut orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("soc", &["responder"])
        .principal("carol", &["respond-admin"])
        .principal("dave", &["respond-admin"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ELEVATE).await;

    let run = response::start_run_as(&mut client, "elevate", json!({"user": "alice"}), "soc").await;
    let grant =
        response::wait_grant(&mut client, &run.run_id, "elevate", "open", EVENT_TIMEOUT).await;
    assert_eq!(grant.subject, "alice", "{grant:?}");
    assert_eq!(grant.playbook, "elevate");
    assert_eq!(grant.requested_by, "token:soc");
    assert_eq!(grant.revoke_action, "core.echo");
    assert_eq!(
        api::json(&grant.revoke_input_json),
        json!({"revoke": "alice", "role": "admin"}),
        "the revoke's input is rendered from the step's output"
    );
    assert_eq!(
        grant.expires_at_ms - grant.opened_at_ms,
        3_000,
        "the TTL: {grant:?}"
    );
    assert!(
        grant.opened_at_ms >= run.created_at_ms && grant.opened_at_ms <= response::now_ms(),
        "{grant:?}"
    );
    let held = api::get_run(&mut client, &run.run_id).await;
    assert_eq!(
        held.status(),
        RunStatus::Running,
        "{}",
        api::describe(&held)
    );
    assert_eq!(held.phase, "holding_grants");
    assert_eq!(
        api::step(&held, "elevate").status(),
        StepStatus::Succeeded,
        "the step is done; the run holds the grant"
    );

    orchestrator.kill9();
    assert!(
        response::now_ms() < grant.expires_at_ms,
        "the orchestrator went down before the TTL"
    );
    response::wait_wall_clock_past(grant.expires_at_ms + 500).await;
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
    for kind in ["grant.opened", "run.holding_grants", "grant.expired"] {
        assert_eq!(of_kind(&events, kind).len(), 1, "{kind}: {history:#?}");
    }
    for kind in ["undo.succeeded", "grant.revoked"] {
        assert_eq!(of_kind(&events, kind).len(), 1, "{kind}: {history:#?}");
    }
    assert!(
        of_kind(&events, "grant.revoke_requested").is_empty(),
        "nobody revoked it by hand: {history:#?}"
    );
    let expired = first(&events, "grant.expired");
    assert!(
        expired.at_ms >= restarted_ms,
        "the TTL fired after the restart, not before the crash: {history:#?}"
    );
    assert!(
        expired.at_ms - restarted_ms < FIRES_AFTER_RESTART_MS,
        "the overdue TTL fired right after the restart ({} ms later): {history:#?}",
        expired.at_ms - restarted_ms
    );
    let succeeded = first(&events, "undo.succeeded");
    let revoked = first(&events, "grant.revoked");
    let finished = first(&events, "run.finished");
    assert!(
        expired.seq < succeeded.seq && succeeded.seq < revoked.seq && revoked.seq < finished.seq,
        "expired, revoke ran, revoked, then the run ended: {history:#?}"
    );
    assert_eq!(succeeded.step_id, "elevate");
    assert_eq!(finished.run_status(), RunStatus::Succeeded);
    let left = response::grants(&mut client).await;
    assert!(left.is_empty(), "no grant is listed any more: {left:?}");
    assert_eq!(
        run.phase,
        "",
        "an ended run no longer holds grants: {} {history:#?}",
        api::describe(&run)
    );
}

#[tokio::test]
async fn an_operator_revokes_a_grant_early_and_only_once() {
    let orchestrator = Orchestrator::builder()
        .lease_timeout("2s")
        .principal("soc", &["responder"])
        .principal("carol", &["respond-admin"])
        .principal("dave", &["respond-admin"])
        .start();
    let mut worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ELEVATE).await;

    let run = response::start_run_as(
        &mut client,
        "elevate",
        json!({"user": "bob", "ttl": "1h"}),
        "soc",
    )
    .await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let grant =
        response::wait_grant(&mut client, &run.run_id, "elevate", "open", EVENT_TIMEOUT).await;
    assert_eq!(grant.expires_at_ms - grant.opened_at_ms, 3_600_000);
    assert_eq!(grant.subject, "bob");

    // With no worker the revoke cannot finish: the grant stays "revoking" and cannot be
    // revoked a second time.
    worker.kill9();
    let revoking = response::revoke_grant(&mut client, &run.run_id, "elevate", "carol")
        .await
        .unwrap_or_else(|status| panic!("RevokeGrant of an open grant: {status:?}"));
    assert_eq!(revoking.status, "revoking", "{revoking:?}");
    assert_eq!(revoking.expires_at_ms, grant.expires_at_ms);
    watch
        .wait_kind("grant.revoke_requested", EVENT_TIMEOUT)
        .await;
    let before = api::get_run(&mut client, &run.run_id).await;
    response::assert_refused(
        "a second RevokeGrant while the first revoke runs",
        response::revoke_grant(&mut client, &run.run_id, "elevate", "dave").await,
        Code::FailedPrecondition,
        &["not open", "revoking"],
    );
    assert_eq!(
        api::get_run(&mut client, &run.run_id).await,
        before,
        "the refused revoke changed nothing"
    );

    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    let events = api::history(&mut client, &run.run_id).await;
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{} {history:#?}",
        api::describe(&run)
    );
    let requested = of_kind(&events, "grant.revoke_requested");
    assert_eq!(requested.len(), 1, "{history:#?}");
    assert!(
        requested[0].message.contains("by token:carol"),
        "who revoked is recorded: {history:#?}"
    );
    assert_eq!(of_kind(&events, "undo.succeeded").len(), 1, "{history:#?}");
    assert_eq!(of_kind(&events, "grant.revoked").len(), 1, "{history:#?}");
    assert!(
        of_kind(&events, "grant.expired").is_empty(),
        "revoked before its TTL: {history:#?}"
    );
    assert!(
        run.finished_at_ms < grant.expires_at_ms,
        "the run did not wait for the TTL"
    );
    assert!(response::grants(&mut client).await.is_empty());

    response::assert_refused(
        "RevokeGrant of a revoked grant",
        response::revoke_grant(&mut client, &run.run_id, "elevate", "carol").await,
        Code::FailedPrecondition,
        &[],
    );
    let after = api::history(&mut client, &run.run_id).await;
    assert_eq!(
        api::kinds(&after),
        api::kinds(&events),
        "the refused revoke recorded nothing"
    );
}
