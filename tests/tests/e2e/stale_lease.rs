//! Fencing: a worker frozen (SIGSTOP) while it holds a lease loses it; the task runs on a
//! second worker; when the first is thawed (SIGCONT) its late result carries a stale lease
//! token and is rejected and recorded, so the step's result is recorded exactly once.

use std::time::Duration;

use riposte_proto::v1::RunStatus;
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::{Orchestrator, Worker, wait_for};
use serde_json::json;
use tokio::time::Instant;

const SLOW: &str = r#"
name: slow
version: 1
steps:
  - id: hold
    action: core.delay
    with: { duration: 3s }
"#;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_late_result_from_a_frozen_worker_is_rejected() {
    let orchestrator = Orchestrator::builder().lease_timeout("1s").start();
    let frozen = Worker::start(&orchestrator.url(), &[], 1);
    let mut client = orchestrator.client();
    let frozen_id = frozen.id(&mut client).await;
    api::apply_playbook(&mut client, SLOW).await;

    let run = api::start_run(&mut client, "slow", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let first = watch.wait_kind("task.leased", EVENT_TIMEOUT).await;
    assert_eq!(first.worker_id, frozen_id);

    // With one slot busy the worker's only calls are heartbeats: once it has been heard from
    // after the lease was granted, it holds the lease and its action is running.
    let granted = Instant::now();
    Worker::wait_heard_since(&mut client, &frozen_id, granted, EVENT_TIMEOUT).await;
    frozen.sigstop();

    let expired = watch.wait_kind("task.lease_expired", EVENT_TIMEOUT).await;
    assert!(expired.seq > first.seq);
    let rescuer = Worker::start(&orchestrator.url(), &[], 1);
    let rescuer_id = rescuer.id(&mut client).await;
    let second = watch.wait_nth_kind("task.leased", 2, EVENT_TIMEOUT).await;
    assert_eq!(second.worker_id, rescuer_id);
    let run = api::wait_finished(&mut client, &run.run_id, Duration::from_secs(30)).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );

    // The frozen worker's delay is over by now (the rescuer ran the same delay after it); on
    // thawing it reports with its old token.
    frozen.sigcont();
    let events = wait_for(
        "the late result is recorded as rejected",
        EVENT_TIMEOUT,
        async || {
            let events = api::history(&mut client, &run.run_id).await;
            if api::count(&events, "task.result_rejected") > 0 {
                Ok(events)
            } else {
                Err(format!("{:?}", api::kinds(&events)))
            }
        },
    )
    .await;

    let kinds = api::kinds(&events);
    assert_eq!(api::count(&events, "task.result_rejected"), 1, "{kinds:?}");
    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "task.succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{kinds:?}");
    assert!(
        succeeded[0].seq > second.seq,
        "the success is the rescuer's: {kinds:?}"
    );
    let run = api::get_run(&mut client, &run.run_id).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "the rejected result changed nothing"
    );
    assert_eq!(
        api::json(&api::step(&run, "hold").output_json),
        json!({ "slept_ms": 3000 })
    );
}
