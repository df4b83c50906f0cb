//! The orchestrator killed with `kill -9` while 50 runs are in flight, then restarted on the
//! same data folder: the workers find it again by themselves, every run finishes, none is lost
//! or duplicated, each step's result is recorded once, and idempotency keys still hold.

use std::collections::BTreeSet;
use std::time::Duration;

use riposte_proto::v1::{ListRunsRequest, ListWorkersRequest, RunStatus, StartRunRequest};
use riposte_tests::api;
use riposte_tests::{Orchestrator, Worker, wait_for};
use serde_json::json;

const RECOVER: &str = r#"
name: recover
version: 1
steps:
  - id: hold
    action: core.delay
    with: { duration: 1s }
  - id: after
    needs: [hold]
    action: core.echo
    with: { done: true }
"#;

const RUNS: usize = 50;

fn key(i: usize) -> String {
    format!("recover-{i}")
}

#[tokio::test]
async fn runs_in_flight_survive_an_orchestrator_crash() {
    let mut orchestrator = Orchestrator::builder().lease_timeout("2s").start();
    let workers = [
        Worker::start(&orchestrator.url(), &[], 16),
        Worker::start(&orchestrator.url(), &[], 16),
    ];
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    api::apply_playbook(&mut client, RECOVER).await;

    let mut ids = Vec::new();
    for i in 0..RUNS {
        let request = StartRunRequest {
            playbook: "recover".into(),
            params_json: "{}".into(),
            idempotency_key: key(i),
            ..Default::default()
        };
        let reply = api::start_run_with(&mut client, request).await;
        assert!(!reply.existing);
        ids.push(reply.run.expect("the run").run_id);
    }
    // Crash while the workers hold leases.
    wait_for(
        "the workers hold leases",
        Duration::from_secs(15),
        async || {
            let workers = client
                .list_workers(ListWorkersRequest {})
                .await
                .unwrap()
                .into_inner()
                .workers;
            let in_flight: u32 = workers.iter().map(|w| w.tasks_in_flight).sum();
            if in_flight >= 16 {
                Ok(())
            } else {
                Err(format!("{in_flight} in flight"))
            }
        },
    )
    .await;
    orchestrator.kill9();
    orchestrator.restart();

    let runs = wait_for(
        "every run finishes after the restart",
        Duration::from_secs(45),
        async || {
            let request = ListRunsRequest {
                limit: 1000,
                ..Default::default()
            };
            let runs = match client.list_runs(request).await {
                Ok(reply) => reply.into_inner().runs,
                Err(status) => return Err(format!("ListRuns: {status}")),
            };
            let running = runs
                .iter()
                .filter(|r| r.status() == RunStatus::Running)
                .count();
            if running == 0 {
                Ok(runs)
            } else {
                Err(format!("{running} of {} running", runs.len()))
            }
        },
    )
    .await;

    assert_eq!(runs.len(), RUNS, "no run lost, none made up");
    let listed: BTreeSet<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    let started: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(listed, started);
    for run in &runs {
        assert_eq!(run.status(), RunStatus::Succeeded, "{}", api::describe(run));
        assert_eq!(
            api::json(&api::step(run, "after").output_json),
            json!({ "done": true })
        );
    }
    for id in &ids {
        let events = api::history(&mut client, id).await;
        let mut units: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "task.succeeded")
            .map(|e| e.step_id.as_str())
            .collect();
        units.sort();
        assert_eq!(
            units,
            ["after", "hold"],
            "run {id}: {:?}",
            api::kinds(&events)
        );
        assert_eq!(
            api::count(&events, "run.finished"),
            1,
            "run {id}: {:?}",
            api::kinds(&events)
        );
    }

    let again = StartRunRequest {
        playbook: "recover".into(),
        params_json: "{}".into(),
        idempotency_key: key(7),
        ..Default::default()
    };
    let reply = api::start_run_with(&mut client, again).await;
    assert!(
        reply.existing,
        "an idempotency key used before the crash still answers its run"
    );
    assert_eq!(reply.run.expect("the run").run_id, ids[7]);
    let request = ListRunsRequest {
        limit: 1000,
        ..Default::default()
    };
    let count = client
        .list_runs(request)
        .await
        .unwrap()
        .into_inner()
        .runs
        .len();
    assert_eq!(count, RUNS, "the repeated start made no run");
}
