//! The paths an operator takes when a run goes wrong, at the CLI: a step that failed is retried
//! once its upstream is back and the run goes on to succeed; a failed step is skipped and the
//! run goes on without it (a fan-in with one need that ran still runs); a run past its playbook's `timeout` fails, runs its undos and
//! revokes its grant.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::{Orchestrator, Worker, api};
use serde_json::json;

const REPAIRABLE: &str = r#"
name: repairable
version: 1
params:
  url: { type: string, required: true }
steps:
  - id: prepare
    action: core.echo
    with: { ready: true }
  - id: check
    needs: [prepare]
    action: http.request
    with: { url: "{{ params.url }}" }
  - id: after
    needs: [prepare, check]
    action: core.echo
    with: { done: true }
"#;

const BOUNDED: &str = r#"
name: bounded
version: 1
timeout: 3s
steps:
  - id: open
    action: core.echo
    with: { granted: demo }
    undo: { action: core.echo, with: { revoked: demo } }
    grant: { ttl: 1h, subject: demo }
  - id: wait
    needs: [open]
    sleep: 1h
"#;

const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// An upstream that answers 503 until it is made healthy.
async fn upstream() -> (std::net::SocketAddr, Arc<AtomicBool>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let flag = healthy.clone();
    let app = Router::new().route(
        "/health",
        get(move || {
            let healthy = flag.load(Ordering::SeqCst);
            async move {
                match healthy {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, healthy)
}

#[tokio::test]
async fn a_failed_step_retried_or_skipped_by_an_operator_lets_the_run_succeed() {
    let (addr, healthy) = upstream().await;
    let orchestrator = Orchestrator::start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&["--http-allow-hosts", &addr.to_string()])
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, REPAIRABLE).await;
    let url = format!("http://{addr}/health");

    let failed_run = async |client: &mut api::Operator| {
        let run = api::start_run(client, "repairable", json!({"url": url})).await;
        let failed = api::wait_finished(client, &run.run_id, RUN_TIMEOUT).await;
        assert_eq!(failed.status(), RunStatus::Failed, "{failed:?}");
        assert!(failed.error.contains("503"), "{}", failed.error);
        run.run_id
    };

    let retried = failed_run(&mut client).await;
    healthy.store(true, Ordering::SeqCst);
    let reason = ["--reason", "upstream is back"];
    let out = orchestrator
        .cli(&[&["runs", "retry-step", &retried, "check"][..], &reason].concat())
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let done = api::wait_finished(&mut client, &retried, RUN_TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    assert_eq!(api::step(&done, "check").status(), StepStatus::Succeeded);
    assert_eq!(api::step(&done, "after").status(), StepStatus::Succeeded);
    let kinds: Vec<String> = api::history(&mut client, &retried)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.contains(&"run.reopened".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"step.retry_requested".to_string()),
        "{kinds:?}"
    );

    healthy.store(false, Ordering::SeqCst);
    let skipped = failed_run(&mut client).await;
    let out = orchestrator
        .cli(&[
            "runs",
            "skip-step",
            &skipped,
            "check",
            "--reason",
            "checked by hand",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let done = api::wait_finished(&mut client, &skipped, RUN_TIMEOUT).await;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:?}");
    assert_eq!(api::step(&done, "check").status(), StepStatus::Skipped);
    assert_eq!(
        api::step(&done, "after").status(),
        StepStatus::Succeeded,
        "it ran without it"
    );
}

#[tokio::test]
async fn a_run_past_its_timeout_fails_undoes_and_revokes_its_grant() {
    let orchestrator = Orchestrator::start();
    let worker = Worker::start(&orchestrator.url(), &[], 1);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, BOUNDED).await;
    let run = api::start_run(&mut client, "bounded", json!({})).await;
    let ended = api::wait_finished(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(ended.status(), RunStatus::Failed, "{ended:?}");
    assert_eq!(ended.error, "run timed out after 3s");
    let kinds: Vec<String> = api::history(&mut client, &run.run_id)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    let at = |kind: &str| {
        kinds
            .iter()
            .position(|k| k == kind)
            .unwrap_or_else(|| panic!("{kind} in {kinds:?}"))
    };
    assert!(at("run.timed_out") < at("undo.succeeded"), "{kinds:?}");
    assert!(at("undo.succeeded") < at("grant.revoked"), "{kinds:?}");
    let grants = orchestrator
        .cli(&["--output", "json", "grants", "list"])
        .await;
    assert_eq!(grants.json(), json!([]), "no grant is left open");
}
