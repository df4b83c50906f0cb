//! A worker killed with `kill -9` while it holds a lease: the lease expires, the task runs on
//! the other worker without spending the retry budget, and its result is recorded once.

use std::time::Duration;

use riposte_proto::v1::{ListWorkersRequest, RunStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

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
async fn a_killed_workers_task_completes_on_the_other_worker() {
    let orchestrator = Orchestrator::builder().lease_timeout("1s").start();
    let mut workers = [
        Worker::start(&orchestrator.url(), &[], 1),
        Worker::start(&orchestrator.url(), &[], 1),
    ];
    let mut client = orchestrator.client();
    let ids = [
        workers[0].id(&mut client).await,
        workers[1].id(&mut client).await,
    ];
    api::apply_playbook(&mut client, SLOW).await;

    let run = api::start_run(&mut client, "slow", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let first = watch.wait_kind("task.leased", EVENT_TIMEOUT).await;
    let holder = ids
        .iter()
        .position(|id| *id == first.worker_id)
        .unwrap_or_else(|| panic!("leased to {:?}, not one of {ids:?}", first.worker_id));
    let other = 1 - holder;
    let listed = client
        .list_workers(ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    let in_flight = |id: &str| {
        listed
            .iter()
            .find(|w| w.worker_id == id)
            .map(|w| w.tasks_in_flight)
    };
    assert_eq!(in_flight(&ids[holder]), Some(1), "{listed:?}");
    assert_eq!(in_flight(&ids[other]), Some(0), "{listed:?}");

    workers[holder].kill9();

    let expired = watch.wait_kind("task.lease_expired", EVENT_TIMEOUT).await;
    let second = watch.wait_nth_kind("task.leased", 2, EVENT_TIMEOUT).await;
    assert_eq!(
        second.worker_id, ids[other],
        "the task moves to the surviving worker"
    );
    assert!(first.seq < expired.seq && expired.seq < second.seq);
    let run = api::wait_finished(&mut client, &run.run_id, Duration::from_secs(30)).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    assert_eq!(
        api::json(&api::step(&run, "hold").output_json),
        json!({ "slept_ms": 3000 })
    );

    let events = api::history(&mut client, &run.run_id).await;
    let kinds = api::kinds(&events);
    let succeeded: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "task.succeeded")
        .collect();
    assert_eq!(succeeded.len(), 1, "{kinds:?}");
    assert!(succeeded[0].seq > second.seq, "{kinds:?}");
    assert_eq!(api::count(&events, "task.leased"), 2, "{kinds:?}");
    assert_eq!(api::count(&events, "task.lease_expired"), 1, "{kinds:?}");
    assert_eq!(
        api::count(&events, "task.failed"),
        0,
        "a lost lease is not a failure: {kinds:?}"
    );
    assert_eq!(
        api::count(&events, "task.retry_scheduled"),
        0,
        "a lost lease does not spend the retry budget: {kinds:?}"
    );
    assert!(workers[other].is_running());
}
