//! Listing runs over the wire: `ListRuns` pages with `next_page_token` (a token it did not give
//! is refused), the CLI pages by itself (`--limit`, `--all`), and a step whose task no
//! connected worker can take says so in `GetRun` and in `runs list`; a step output over 1 MiB
//! is left out of `GetRun` and says why.

use std::time::Duration;

use riposte_proto::v1::{GetRunRequest, ListRunsRequest};
use riposte_tests::api;
use riposte_tests::{Orchestrator, Worker};
use serde_json::{Value, json};
use tonic::Code;

const NOOP: &str = r#"
name: noop
version: 1
steps:
  - id: only
    action: core.noop
"#;

/// A step no worker carries the label for.
const UNSERVED: &str = r#"
name: unserved
version: 1
steps:
  - id: wait
    action: core.noop
    labels: { pool: nobody }
"#;

#[tokio::test]
async fn runs_page_over_the_wire_and_a_task_nobody_serves_says_so() {
    let orchestrator = Orchestrator::start();
    let _worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, NOOP).await;
    api::apply_playbook(&mut client, UNSERVED).await;
    let mut started = Vec::new();
    for _ in 0..5 {
        let run = api::start_run(&mut client, "noop", json!({})).await.run_id;
        api::wait_finished(&mut client, &run, Duration::from_secs(20)).await;
        started.push(run);
    }
    let waiting = api::start_run(&mut client, "unserved", json!({}))
        .await
        .run_id;

    // Page after page, two runs a page: every run once, newest first.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_runs(ListRunsRequest {
                playbook: "noop".into(),
                limit: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("ListRuns")
            .into_inner();
        assert!(page.runs.len() <= 2);
        listed.extend(page.runs.into_iter().map(|r| r.run_id));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    let refused = client
        .list_runs(ListRunsRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .expect_err("a token ListRuns never gave");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "page_token `not-a-token` is not one a ListRuns answer gave"
    );

    // The CLI pages by itself.
    let all = orchestrator
        .cli(&[
            "runs",
            "list",
            "--playbook",
            "noop",
            "--all",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(all.code(), 0, "{}", all.stderr);
    let ids = |stdout: &str| -> Vec<String> {
        let runs: Value = serde_json::from_str(stdout).expect("a JSON document");
        runs.as_array()
            .expect("a list")
            .iter()
            .map(|r| r["run_id"].as_str().expect("an id").to_string())
            .collect()
    };
    assert_eq!(ids(&all.stdout), newest_first);
    let three = orchestrator
        .cli(&[
            "runs",
            "list",
            "--playbook",
            "noop",
            "--limit",
            "3",
            "--output",
            "json",
        ])
        .await;
    assert_eq!(ids(&three.stdout), newest_first[..3]);

    // Why the unserved run waits, over the wire and in the CLI.
    let run = client
        .get_run(GetRunRequest {
            run_id: waiting.clone(),
        })
        .await
        .expect("GetRun")
        .into_inner();
    assert_eq!(
        run.steps[0].waiting,
        "queued (no worker offers core.noop with labels pool=nobody)"
    );
    let table = orchestrator
        .cli(&["runs", "list", "--playbook", "unserved"])
        .await;
    assert!(
        table.stdout.contains(
            "running, step wait queued (no worker offers core.noop with labels pool=nobody)"
        ),
        "{}",
        table.stdout
    );
}

/// 1,100 items of about 1 KB of output each: the step's output is over the 1 MiB a Run
/// message carries per step.
const WIDE: &str = r#"
name: wide
version: 1
steps:
  - id: each
    action: core.echo
    for_each: "{{ range(1100) }}"
    concurrency: 100
    with: { item: "{{ item }}", pad: "PAD" }
"#;

#[tokio::test]
async fn a_step_output_over_a_mebibyte_is_left_out_of_get_run_with_the_reason() {
    let orchestrator = Orchestrator::start();
    let _worker = Worker::start(&orchestrator.url(), &[], 16);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, &WIDE.replace("PAD", &"x".repeat(1000))).await;
    let run = api::start_run(&mut client, "wide", json!({})).await;
    let done = api::wait_finished(&mut client, &run.run_id, Duration::from_secs(120)).await;
    let step = &done.steps[0];
    assert_eq!((step.items_total, step.items_succeeded), (1100, 1100));
    assert_eq!(step.output_json, "");
    assert!(
        step.output_omitted.starts_with("output of 1.")
            && step
                .output_omitted
                .ends_with(" MB is over the 1 MiB sent per step"),
        "{}",
        step.output_omitted
    );
}
