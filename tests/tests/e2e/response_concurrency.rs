//! Playbook-level concurrency keys: runs acting on the same target take turns (policy
//! `queue`: the next starts only after the previous ended) while a run on another target is
//! not held up; with policy `drop` a run that finds its key taken is cancelled at once.

use std::time::Duration;

use riposte_proto::v1::{Run, RunEvent, RunStatus};
use riposte_tests::api::{self, Operator};
use riposte_tests::response::{self, first, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

const ISOLATE: &str = r#"
name: isolate-host
version: 1
params:
  ip: { type: ip, required: true }
concurrency: { key: "ip:{{ params.ip }}", limit: 1, policy: queue }
steps:
  - id: isolate
    action: core.delay
    with: { duration: 1s }
"#;

const ISOLATE_ONCE: &str = r#"
name: isolate-once
version: 1
params:
  ip: { type: ip, required: true }
concurrency: { key: "ip:{{ params.ip }}", limit: 1, policy: drop }
steps:
  - id: isolate
    action: core.delay
    with: { duration: 1s }
"#;

const RUN_TIMEOUT: Duration = Duration::from_secs(25);

/// A run's history with the times that matter here.
struct Timeline {
    run_id: String,
    events: Vec<RunEvent>,
    /// The first task.leased.
    leased_ms: i64,
    finished_ms: i64,
}

async fn timeline(client: &mut Operator, run: &Run) -> Timeline {
    let events = api::history(client, &run.run_id).await;
    let leased_ms = first(&events, "task.leased").at_ms;
    let finished_ms = first(&events, "run.finished").at_ms;
    Timeline {
        run_id: run.run_id.clone(),
        events,
        leased_ms,
        finished_ms,
    }
}

#[tokio::test]
async fn runs_on_the_same_target_take_turns_and_other_targets_go_ahead() {
    let orchestrator = Orchestrator::builder().lease_timeout("2s").start();
    let workers = [
        Worker::start(&orchestrator.url(), &[], 4),
        Worker::start(&orchestrator.url(), &[], 4),
    ];
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    api::apply_playbook(&mut client, ISOLATE).await;

    let start = |ip: &'static str| {
        let mut client = client.clone();
        async move {
            response::start_run_as(&mut client, "isolate-host", json!({"ip": ip}), "e2e").await
        }
    };
    let (a, b, c, other) = tokio::join!(
        start("10.0.0.1"),
        start("10.0.0.1"),
        start("10.0.0.1"),
        start("10.0.0.2")
    );
    let same = [a, b, c];
    for run in &same {
        assert_eq!(run.concurrency_key, "ip:10.0.0.1", "{}", api::describe(run));
    }
    assert_eq!(other.concurrency_key, "ip:10.0.0.2");
    let answered: Vec<RunStatus> = same.iter().map(Run::status).collect();
    assert_eq!(
        answered
            .iter()
            .filter(|s| **s == RunStatus::Running)
            .count(),
        1,
        "one run holds the key: {answered:?}"
    );
    assert_eq!(
        answered.iter().filter(|s| **s == RunStatus::Queued).count(),
        2,
        "the others wait for it: {answered:?}"
    );
    assert_eq!(
        other.status(),
        RunStatus::Running,
        "another key is free: {}",
        api::describe(&other)
    );

    let mut timelines = Vec::new();
    for run in same.iter().chain([&other]) {
        let ended = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
        assert_eq!(
            ended.status(),
            RunStatus::Succeeded,
            "{}",
            api::describe(&ended)
        );
        timelines.push(timeline(&mut client, &ended).await);
    }
    let other = timelines.pop().expect("the other run");
    let mut same = timelines;
    same.sort_by_key(|t| t.leased_ms);

    for pair in same.windows(2) {
        let (previous, next) = (&pair[0], &pair[1]);
        assert!(
            next.leased_ms >= previous.finished_ms,
            "run {} started at {} before run {} ended at {}:\n{:#?}\n{:#?}",
            next.run_id,
            next.leased_ms,
            previous.run_id,
            previous.finished_ms,
            lines(&previous.events),
            lines(&next.events)
        );
    }
    let queued: Vec<usize> = same
        .iter()
        .map(|t| of_kind(&t.events, "run.queued").len())
        .collect();
    assert_eq!(queued, [0, 1, 1], "the later two were queued");
    let dequeued: Vec<usize> = same
        .iter()
        .map(|t| of_kind(&t.events, "run.dequeued").len())
        .collect();
    assert_eq!(dequeued, [0, 1, 1], "and dequeued once the key was free");
    for t in &same[1..] {
        let dequeued = first(&t.events, "run.dequeued");
        assert!(
            dequeued.seq < first(&t.events, "task.leased").seq,
            "nothing ran while queued: {:#?}",
            lines(&t.events)
        );
    }

    let history = lines(&other.events);
    assert!(
        of_kind(&other.events, "run.queued").is_empty(),
        "the other target was not queued: {history:#?}"
    );
    let first_run = &same[0];
    assert!(
        other.leased_ms < first_run.finished_ms && first_run.leased_ms < other.finished_ms,
        "the other target ran alongside the first run ({}..{} vs {}..{})",
        other.leased_ms,
        other.finished_ms,
        first_run.leased_ms,
        first_run.finished_ms
    );
}

#[tokio::test]
async fn a_run_that_finds_its_key_taken_is_dropped_under_policy_drop() {
    let orchestrator = Orchestrator::builder().lease_timeout("2s").start();
    let worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ISOLATE_ONCE).await;

    let holder = response::start_run_as(
        &mut client,
        "isolate-once",
        json!({"ip": "10.0.0.7"}),
        "e2e",
    )
    .await;
    assert_eq!(holder.status(), RunStatus::Running);
    let dropped = response::start_run_as(
        &mut client,
        "isolate-once",
        json!({"ip": "10.0.0.7"}),
        "e2e",
    )
    .await;
    assert_eq!(
        dropped.status(),
        RunStatus::Cancelled,
        "dropped at once: {}",
        api::describe(&dropped)
    );
    assert!(
        dropped.error.contains("dropped") && dropped.error.contains(&holder.run_id),
        "the reason names the holder: {:?}",
        dropped.error
    );
    let events = api::history(&mut client, &dropped.run_id).await;
    let history = lines(&events);
    assert_eq!(of_kind(&events, "run.dropped").len(), 1, "{history:#?}");
    assert_eq!(
        first(&events, "run.finished").run_status(),
        RunStatus::Cancelled
    );
    assert!(
        of_kind(&events, "task.leased").is_empty(),
        "a dropped run runs nothing: {history:#?}"
    );

    let holder = response::wait_ended(&mut client, &holder.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        holder.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&holder)
    );
    // Once the holder ended, the key is free again.
    let next = response::start_run_as(
        &mut client,
        "isolate-once",
        json!({"ip": "10.0.0.7"}),
        "e2e",
    )
    .await;
    assert_eq!(
        next.status(),
        RunStatus::Running,
        "{}",
        api::describe(&next)
    );
    let next = response::wait_ended(&mut client, &next.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        next.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&next)
    );
}
