//! The audit log end to end: every change is recorded with the principal the server
//! authenticated, in the same transaction as the change, so that a `kill -9` in the middle of
//! a burst of starts leaves exactly one record per run that exists; the chain verifies; the
//! export is one JSON object per line.

use std::time::Duration;

use riposte_proto::v1::{ListRunsRequest, StartRunRequest};
use riposte_tests::access::as_principal;
use riposte_tests::{Orchestrator, api, response};
use serde_json::Value;

const HOLD: &str = r#"
name: hold
version: 1
steps:
  - id: nap
    sleep: 1h
"#;

/// Every record of the audit log (newest first), through the CLI's JSON Lines export.
async fn export(orchestrator: &Orchestrator) -> Vec<Value> {
    let out = orchestrator.cli(&["audit", "export"]).await;
    assert_eq!(out.code(), 0, "{out}");
    out.stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_a_burst_of_starts_leaves_one_record_per_run_and_an_intact_chain() {
    let mut orchestrator = Orchestrator::builder()
        .principal("alice", &["responder"])
        .start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, HOLD).await;

    // Starts as alice, many in flight; the process dies under them.
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let mut client = orchestrator.client();
        starts.spawn(async move {
            let request = StartRunRequest {
                playbook: "hold".into(),
                ..Default::default()
            };
            client
                .start_run(as_principal(request, "alice"))
                .await
                .is_ok()
        });
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    orchestrator.kill9();
    let mut acknowledged = 0;
    while let Some(ok) = starts.join_next().await {
        acknowledged += usize::from(ok.expect("the task ran"));
    }
    orchestrator.restart();
    orchestrator.wait_serving().await;

    let runs = client
        .list_runs(ListRunsRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner()
        .runs;
    assert!(
        runs.len() >= acknowledged,
        "every acknowledged start survived"
    );
    assert!(runs.iter().all(|r| r.requested_by == "token:alice"));
    let records = export(&orchestrator).await;
    let starts: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "run.start" && r["outcome"] == "ok")
        .collect();
    assert_eq!(
        starts.len(),
        runs.len(),
        "one run.start record per run that exists ({acknowledged} acknowledged)"
    );
    assert!(starts.iter().all(|r| {
        r["principal"] == "token:alice"
            && r["method"] == "token"
            && r["target"] == "hold"
            && r["digest"].as_str().is_some_and(|d| d.len() == 64)
            && r["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.1:"))
    }));
    let applied = records
        .iter()
        .find(|r| r["action"] == "playbook.apply")
        .expect("the apply is recorded");
    assert_eq!(applied["principal"], "token:e2e");
    assert_eq!(applied["target"], "hold");

    let verified = orchestrator.cli(&["audit", "verify"]).await;
    assert_eq!(verified.code(), 0, "{verified}");
    assert!(
        verified
            .stdout
            .starts_with(&format!("intact: {} records", records.len())),
        "{verified}"
    );
}

#[tokio::test]
async fn the_audit_log_is_for_admins_and_lists_by_principal_and_outcome() {
    let orchestrator = Orchestrator::builder()
        .principal("alice", &["responder"])
        .start();
    let denied = orchestrator.cli_as("alice", &["audit", "list"]).await;
    assert_eq!(denied.code(), 1, "{denied}");
    assert!(
        denied
            .stderr
            .contains("token:alice may not read the audit log"),
        "{denied}"
    );
    let rule = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(rule.path(), "name: any\n").expect("written");
    let path = rule.path().to_str().expect("utf-8");
    let applied = orchestrator
        .cli_as("alice", &["rules", "apply", path])
        .await;
    assert_eq!(applied.code(), 1, "{applied}");
    let listed = orchestrator
        .cli(&[
            "--output",
            "json",
            "audit",
            "list",
            "--principal",
            "token:alice",
            "--outcome",
            "refused",
        ])
        .await;
    assert_eq!(listed.code(), 0, "{listed}");
    let records = listed.json();
    let actions: Vec<&str> = records
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["rule.apply", "audit.list"], "newest first");
}

#[tokio::test]
async fn an_audit_record_edited_in_the_store_is_named_by_verify() {
    let mut orchestrator = Orchestrator::builder()
        .principal("alice", &["responder"])
        .start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, HOLD).await;
    response::start_run_as(&mut client, "hold", serde_json::json!({}), "alice").await;
    let records = export(&orchestrator).await;
    let start = records
        .iter()
        .find(|r| r["action"] == "run.start")
        .expect("the start is recorded");
    let seq = start["seq"].as_u64().expect("a seq");

    // Someone with the data folder but not the audit key makes the start someone else's.
    orchestrator.terminate();
    riposte_tests::orchestrator::forge_audit_record(&orchestrator.data_dir(), seq, |record| {
        record["principal"] = "token:e2e".into();
    });
    orchestrator.restart();
    orchestrator.wait_serving().await;
    let verified = orchestrator.cli(&["audit", "verify"]).await;
    assert_eq!(verified.code(), 1, "{verified}");
    assert!(
        verified
            .stdout
            .starts_with(&format!("broken at record {seq}: ")),
        "{verified}"
    );
}

#[tokio::test]
async fn a_changed_policy_file_takes_effect_without_a_restart_and_is_audited() {
    let orchestrator = Orchestrator::builder()
        .principal("alice", &["reader"])
        .start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, HOLD).await;
    let start = || StartRunRequest {
        playbook: "hold".into(),
        ..Default::default()
    };
    let refused = client
        .start_run(as_principal(start(), "alice"))
        .await
        .expect_err("a reader starts nothing");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // The policy is replaced by rename, as a deployment tool would: alice may now run.
    let policy = orchestrator.policy_file();
    let text = std::fs::read_to_string(&policy).expect("the policy");
    let next = policy.with_extension("next");
    std::fs::write(
        &next,
        text.replace("'token:alice': [reader]", "'token:alice': [responder]"),
    )
    .expect("written");
    std::fs::rename(&next, &policy).expect("renamed");
    riposte_tests::wait_for(
        "alice may start runs",
        Duration::from_secs(10),
        async || {
            let mut client = orchestrator.client();
            match client.start_run(as_principal(start(), "alice")).await {
                Ok(_) => Ok(()),
                Err(status) => Err(status.to_string()),
            }
        },
    )
    .await;
    let records = export(&orchestrator).await;
    let reload = records
        .iter()
        .find(|r| r["action"] == "policy.reload" && r["target"] == "operator policy")
        .expect("the reload is recorded");
    assert_eq!(reload["principal"], "orchestrator");
    assert_eq!(reload["outcome"], "ok");

    // A policy that does not parse keeps the one in force, and says so in the log.
    std::fs::write(&next, "principals: [").expect("written");
    std::fs::rename(&next, &policy).expect("renamed");
    riposte_tests::wait_until(
        "the failed reload is logged",
        Duration::from_secs(10),
        async || {
            orchestrator
                .logs()
                .contains("operator_policy.reload_failed")
        },
    )
    .await;
    client
        .start_run(as_principal(start(), "alice"))
        .await
        .expect("the policy in force is kept");
}
