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

/// In `--dev` (no response backends), every built-in's dry run prints its plan at once, and a
/// real run of an action no worker offers fails at once, naming the worker setting to use,
/// and frees its concurrency key: the next run for the same prefix is not held behind it.
#[tokio::test]
async fn dev_mode_plans_the_built_ins_and_fails_fast_without_a_backend() {
    let orchestrator = Orchestrator::builder().dev().start();
    let plans = [
        (
            "ip-block",
            &["ip=203.0.113.0/24"][..],
            r#"block (firewall.block_ip): {"action":"firewall.block_ip","backend":null,"changes":[],"dry_run":true,"input":{"ip":"203.0.113.0/24""#,
        ),
        (
            "account-disable",
            &["account=jdoe"][..],
            r#"disable (identity.disable_account): {"action":"identity.disable_account""#,
        ),
        (
            "jit-access-grant",
            &["source_ip=198.51.100.20", "host=web-1", "justification=t"][..],
            r#"grant (access.grant_jit): {"action":"access.grant_jit""#,
        ),
    ];
    for (playbook, params, line) in plans {
        let mut args = vec!["run", playbook, "--dry-run", "--wait"];
        params.iter().for_each(|p| args.extend(["-p", p]));
        let planned = orchestrator.cli(&args).await;
        assert_eq!(planned.code(), 0, "{planned}");
        let plan = "plan (dry run: nothing was changed):";
        assert!(planned.stdout.contains(plan), "{planned}");
        assert!(planned.stdout.contains(line), "{planned}");
    }

    for _ in 0..2 {
        let args = ["run", "ip-block", "-p", "ip=203.0.113.0/24", "--wait"];
        let real = orchestrator.cli(&args).await;
        assert_eq!(real.code(), 1, "{real}");
        let wanted = "no connected worker offers firewall.block_ip: start a worker with \
                      --firewall-backend nftables, azure-nsg or azure-ip-group";
        assert!(real.stdout.contains(wanted), "{real}");
        let queued = real.stdout.contains("run.queued");
        assert!(!queued, "the key was free: {real}");
    }
}
