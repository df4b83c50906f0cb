//! A frozen worker (SIGSTOP) holding a lease, beside an idle second worker: on the first lease
//! expiry the frozen worker is fenced (its open long-poll gets nothing more), the task runs on
//! the second worker and the run succeeds; the history names the lost lease and its worker.
//! Thawed (SIGCONT), the first worker is refused as fenced, registers again by itself, and its
//! late result is rejected.

use std::time::Duration;

use riposte_proto::v1::{ListWorkersRequest, RunStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::{Orchestrator, Worker, wait_for, wait_until};
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

async fn worker_ids(orchestrator: &Orchestrator) -> Vec<String> {
    orchestrator
        .client()
        .list_workers(ListWorkersRequest {})
        .await
        .expect("ListWorkers")
        .into_inner()
        .workers
        .into_iter()
        .map(|w| w.worker_id)
        .collect()
}

#[tokio::test]
async fn a_frozen_workers_task_goes_to_the_idle_worker_and_the_frozen_one_is_fenced() {
    let orchestrator = Orchestrator::builder().lease_timeout("1s").start();
    // Two slots: while one runs the task, the other long-polls, and stays open when frozen.
    let frozen = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    let frozen_id = frozen.id(&mut client).await;
    api::apply_playbook(&mut client, SLOW).await;

    let run = api::start_run(&mut client, "slow", json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let first = watch.wait_kind("task.leased", EVENT_TIMEOUT).await;
    assert_eq!(first.worker_id, frozen_id);
    let idle = Worker::start(&orchestrator.url(), &[], 1);
    let idle_id = idle.id(&mut client).await;

    // Once the frozen worker has been heard after the grant, it holds the lease.
    let granted = Instant::now();
    Worker::wait_heard_since(&mut client, &frozen_id, granted, EVENT_TIMEOUT).await;
    frozen.sigstop();

    let expired = watch.wait_kind("task.lease_expired", EVENT_TIMEOUT).await;
    assert_eq!(expired.worker_id, frozen_id);
    assert!(
        expired
            .message
            .starts_with(&format!("lease lost on worker {frozen_id}")),
        "{expired:?}"
    );
    let second = watch.wait_nth_kind("task.leased", 2, EVENT_TIMEOUT).await;
    assert_eq!(
        second.worker_id, idle_id,
        "on the first expiry the task goes to the idle worker, not to the frozen one's open poll"
    );
    let workers = worker_ids(&orchestrator).await;
    assert!(
        !workers.contains(&frozen_id) && workers.contains(&idle_id),
        "the frozen worker is fenced: {workers:?}"
    );
    let run = api::wait_finished(&mut client, &run.run_id, Duration::from_secs(30)).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );

    frozen.sigcont();
    wait_until(
        "the thawed worker registers again by itself",
        EVENT_TIMEOUT,
        async || worker_ids(&orchestrator).await.contains(&frozen_id),
    )
    .await;
    let events = wait_for("its late result is rejected", EVENT_TIMEOUT, async || {
        let events = api::history(&mut client, &run.run_id).await;
        if api::count(&events, "task.result_rejected") > 0 {
            Ok(events)
        } else {
            Err(format!("{:?}", api::kinds(&events)))
        }
    })
    .await;
    let kinds = api::kinds(&events);
    assert_eq!(api::count(&events, "task.leased"), 2, "{kinds:?}");
    assert_eq!(api::count(&events, "task.succeeded"), 1, "{kinds:?}");
    assert!(
        frozen
            .log_tail()
            .contains("fenced this worker after a silence); registering again"),
        "{}",
        frozen.log_tail()
    );
}
