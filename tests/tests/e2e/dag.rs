//! A diamond DAG end to end on two worker processes: a `when` that skips a branch, a bounded
//! `for_each` fan-out whose outputs come back in item order, and a fan-in that sees them; once
//! through the gRPC API and once through the CLI as an operator types it.

use std::time::Duration;

use riposte_proto::v1::{RunEvent, RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

const DIAMOND: &str = r#"
name: diamond
version: 1
params:
  targets: { type: list, default: [a, b, c] }
  fast: { type: bool, default: false }
steps:
  - id: start
    action: core.echo
    with: { msg: hi }
  - id: left
    needs: [start]
    when: "{{ params.fast }}"
    action: core.noop
  - id: fan
    needs: [start]
    for_each: "{{ params.targets }}"
    concurrency: 2
    action: core.echo
    with: { target: "{{ item }}" }
    retry: { attempts: 3, backoff: fixed, initial: 100ms }
    timeout: 30s
  - id: join
    needs: [left, fan]
    action: core.echo
    with: { fan: "{{ steps.fan.output }}" }
"#;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The most `fan` items leased and not yet finished at any point of the history.
fn fan_items_in_flight_max(events: &[RunEvent]) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for event in events.iter().filter(|e| e.step_id == "fan") {
        match event.kind.as_str() {
            "task.leased" => now += 1,
            "task.succeeded" | "task.failed" | "task.lease_expired" => now -= 1,
            _ => {}
        }
        max = max.max(now);
    }
    max
}

/// The `seq` of the first event of `kind` for `step`.
fn seq_of(events: &[RunEvent], kind: &str, step: &str) -> u64 {
    events
        .iter()
        .find(|e| e.kind == kind && e.step_id == step)
        .unwrap_or_else(|| panic!("no {kind} for {step} in {:?}", api::kinds(events)))
        .seq
}

#[tokio::test]
async fn diamond_skips_the_false_branch_and_fans_out_in_item_order() {
    let orchestrator = Orchestrator::start();
    let first = Worker::start(&orchestrator.url(), &[], 2);
    let second = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    first.id(&mut client).await;
    second.id(&mut client).await;
    api::apply_playbook(&mut client, DIAMOND).await;

    let params = json!({ "fast": false, "targets": ["a", "b", "c", "d", "e"] });
    let run = api::start_run(&mut client, "diamond", params).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let run = api::wait_finished(&mut client, &run.run_id, RUN_TIMEOUT).await;

    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    let start = api::step(&run, "start");
    assert_eq!(start.status(), StepStatus::Succeeded);
    assert_eq!(api::json(&start.output_json), json!({ "msg": "hi" }));
    assert_eq!(api::step(&run, "left").status(), StepStatus::Skipped);
    let fan = api::step(&run, "fan");
    assert_eq!(fan.status(), StepStatus::Succeeded);
    assert_eq!(
        (fan.items_total, fan.items_succeeded, fan.items_failed),
        (5, 5, 0)
    );
    let echoes = json!([
        { "target": "a" }, { "target": "b" }, { "target": "c" }, { "target": "d" }, { "target": "e" }
    ]);
    assert_eq!(api::json(&fan.output_json), echoes);
    let join = api::step(&run, "join");
    assert_eq!(join.status(), StepStatus::Succeeded);
    assert_eq!(api::json(&join.output_json), json!({ "fan": echoes }));

    let events = api::history(&mut client, &run.run_id).await;
    watch.wait_kind("run.finished", RUN_TIMEOUT).await;
    assert_eq!(
        api::kinds(&watch.events()),
        api::kinds(&events),
        "the live stream and the stored history agree"
    );
    assert_eq!(events.first().map(|e| e.kind.as_str()), Some("run.started"));
    assert_eq!(events.last().map(|e| e.kind.as_str()), Some("run.finished"));
    let units: Vec<(String, u32)> = events
        .iter()
        .filter(|e| e.kind == "task.succeeded")
        .map(|e| (e.step_id.clone(), e.item))
        .collect();
    let mut sorted = units.clone();
    sorted.sort();
    let expected: Vec<(String, u32)> = [("fan", 0), ("fan", 1), ("fan", 2), ("fan", 3), ("fan", 4)]
        .into_iter()
        .chain([("join", 0), ("start", 0)])
        .map(|(s, i)| (s.to_string(), i))
        .collect();
    assert_eq!(
        sorted, expected,
        "one success per unit, none for the skipped step"
    );
    assert!(
        !events
            .iter()
            .any(|e| e.step_id == "left" && e.kind.starts_with("task.")),
        "a skipped step dispatches nothing: {:?}",
        api::kinds(&events)
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "step.skipped")
            .map(|e| e.step_id.as_str())
            .collect::<Vec<_>>(),
        ["left"]
    );
    assert_eq!(
        fan_items_in_flight_max(&events),
        2,
        "for_each concurrency 2 is used and bounded"
    );
    let join_leased = seq_of(&events, "task.leased", "join");
    assert!(
        join_leased > seq_of(&events, "step.succeeded", "fan"),
        "join waits for fan"
    );
    assert!(
        join_leased > seq_of(&events, "step.skipped", "left"),
        "join waits for left"
    );
}

#[tokio::test]
async fn the_cli_applies_runs_and_shows_the_diamond() {
    let orchestrator = Orchestrator::start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    let folder = tempfile::tempdir().unwrap();
    let file = folder.path().join("diamond.yaml");
    std::fs::write(&file, DIAMOND).unwrap();

    let applied = orchestrator
        .cli(&["playbook", "apply", file.to_str().unwrap()])
        .await;
    assert_eq!(applied.code(), 0, "{applied}");
    assert!(applied.stdout.contains("diamond"), "{applied}");

    let ran = orchestrator
        .cli(&["run", "diamond", "-p", "targets=a,b", "--wait"])
        .await;
    assert_eq!(ran.code(), 0, "{ran}");
    // One line per event: TIME STEP KIND DETAIL.
    let progress: Vec<(String, String)> = ran
        .stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .filter(|(_, kind)| kind.starts_with("step.") && kind != "step.started")
        .collect();
    let expected = [
        ("start", "step.succeeded"),
        ("left", "step.skipped"),
        ("fan", "step.succeeded"),
        ("join", "step.succeeded"),
    ];
    for (step, kind) in expected {
        assert!(
            progress.contains(&(step.to_string(), kind.to_string())),
            "no `{step} {kind}` progress line\n{ran}"
        );
    }
    let summary = ran.stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = summary.split_whitespace().collect();
    assert!(
        words.len() >= 3 && words[0] == "run" && words[2] == "succeeded",
        "last line is `run ID succeeded ...`\n{ran}"
    );
    let run_id = words[1];

    let shown = orchestrator
        .cli(&["runs", "show", run_id, "--output", "json"])
        .await;
    assert_eq!(shown.code(), 0, "{shown}");
    let document = shown.json();
    assert_eq!(document["run"]["run_id"], run_id);
    assert_eq!(document["run"]["status"], "succeeded");
    let steps = document["run"]["steps"].as_array().expect("steps");
    let status_of = |id: &str| {
        steps
            .iter()
            .find(|s| s["id"] == id)
            .map(|s| s["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(status_of("left"), "skipped");
    assert_eq!(status_of("join"), "succeeded");
    let fan = steps.iter().find(|s| s["id"] == "fan").expect("fan step");
    assert_eq!(fan["output"], json!([{ "target": "a" }, { "target": "b" }]));
    let events = document["events"]
        .as_array()
        .expect("a finished run shows its history");
    assert_eq!(
        events.last().map(|e| e["kind"].clone()),
        Some(json!("run.finished"))
    );
}
