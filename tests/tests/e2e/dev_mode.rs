//! `riposte-orchestrator --dev`: one process with in-process workers and the example playbooks,
//! usable at once from the CLI.

use riposte_proto::v1::ListPlaybooksRequest;
use riposte_tests::Orchestrator;

#[tokio::test]
async fn dev_mode_serves_the_examples_and_runs_them() {
    let orchestrator = Orchestrator::builder().dev().start();
    let mut client = orchestrator.client();
    let playbooks = client
        .list_playbooks(ListPlaybooksRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = playbooks
        .playbooks
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    for example in ["diamond", "hello", "noop-chain", "retry"] {
        assert!(names.contains(&example), "{example} is served: {names:?}");
    }

    let listed = orchestrator.cli(&["playbook", "list"]).await;
    assert_eq!(listed.code(), 0, "{listed}");
    assert!(listed.stdout.contains("hello"), "{listed}");

    let ran = orchestrator
        .cli(&["run", "hello", "-p", "name=tester", "--wait"])
        .await;
    assert_eq!(ran.code(), 0, "{ran}");
    let summary = ran.stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("run ") && summary.contains(" succeeded "),
        "{ran}"
    );
    let run_id = summary.split_whitespace().nth(1).expect("the run id");
    let shown = orchestrator
        .cli(&["runs", "show", run_id, "--output", "json"])
        .await;
    assert_eq!(shown.code(), 0, "{shown}");
    let greet = &shown.json()["run"]["steps"][0];
    assert_eq!(greet["output"]["message"], "hello tester", "{shown}");

    let retried = orchestrator.cli(&["run", "retry", "--wait"]).await;
    assert_eq!(
        retried.code(),
        0,
        "the retry example succeeds on its last attempt\n{retried}"
    );

    let workers = orchestrator
        .cli(&["workers", "list", "--output", "json"])
        .await;
    assert_eq!(workers.code(), 0, "{workers}");
    let count = workers.json().as_array().map(Vec::len).unwrap_or_default();
    assert_eq!(count, 2, "two in-process workers\n{workers}");
}
