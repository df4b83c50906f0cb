//! Playbook tests at the CLI: a real run (a retried failure, an approval by someone else, a
//! grant revoked at its TTL) written as a test by `riposte runs export-test` and played again
//! offline by `riposte playbook test`, which passes; the same test with one expectation
//! broken fails with its diff, and `--junit` writes the report.

use std::time::Duration;

use riposte_proto::v1::RunStatus;
use riposte_tests::response::{self, decide, wait_approval};
use riposte_tests::{Orchestrator, Worker, api};
use serde_json::json;

const RECORDED: &str = r#"
name: recorded
version: 1
params:
  who: { type: string, default: alice }
steps:
  - id: flaky
    action: core.fail
    with: { message: "failing on purpose", attempts_failing: 1 }
    retry: { attempts: 2, backoff: fixed, initial: 100ms }
  - id: open
    needs: [flaky]
    action: core.echo
    with: { granted: "{{ params.who }}" }
    approval: { approvers: [soc-leads], timeout: 10m }
    undo: { action: core.echo, with: { revoked: "{{ steps.open.output.granted }}" } }
    grant: { ttl: 1s, subject: "{{ params.who }}" }
"#;

const TIMEOUT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_recorded_run_played_again_as_a_test_passes() {
    let orchestrator = Orchestrator::builder()
        .approver_group("soc-leads", &["alice", "bob"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, RECORDED).await;
    let run =
        response::start_run_as(&mut client, "recorded", json!({"who": "carol"}), "alice").await;
    let pending = wait_approval(&mut client, &run.run_id, "open", TIMEOUT).await;
    decide(
        &mut client,
        &run.run_id,
        "open",
        true,
        &pending.digest,
        "bob",
    )
    .await
    .expect("bob approves");
    let ended = api::wait_finished(&mut client, &run.run_id, TIMEOUT).await;
    assert_eq!(ended.status(), RunStatus::Succeeded, "{ended:?}");

    let dir = tempfile::tempdir().unwrap();
    let export = orchestrator
        .cli(&[
            "runs",
            "export-test",
            &run.run_id,
            "--playbook-file",
            "recorded.yaml",
        ])
        .await;
    assert_eq!(export.code(), 0, "{export}");
    for wanted in [
        "playbook: recorded.yaml",
        "error: failing on purpose",
        "approve: open",
        "by: \"token:bob\"",
        "requested_by: \"token:alice\"",
        "status: succeeded",
    ] {
        assert!(export.stdout.contains(wanted), "{wanted} in\n{export}");
    }
    let source = orchestrator
        .cli(&["playbook", "show", "recorded", "--version", "1", "--source"])
        .await;
    assert_eq!(source.code(), 0, "{source}");
    assert_eq!(source.stdout, RECORDED, "the stored source, exactly");
    std::fs::write(dir.path().join("recorded.yaml"), &source.stdout).unwrap();
    let test_file = dir.path().join("recorded.test.yaml");
    std::fs::write(&test_file, &export.stdout).unwrap();

    let junit = dir.path().join("report.xml");
    let folder = dir.path().to_str().unwrap();
    let play = async || {
        let args = [
            "playbook",
            "test",
            folder,
            "--junit",
            junit.to_str().unwrap(),
        ];
        let played = orchestrator.cli(&args).await;
        (played, std::fs::read_to_string(&junit).unwrap())
    };
    let (played, report) = play().await;
    assert_eq!(played.code(), 0, "{played}");
    let summary = "1 passed, 0 failed (1 files)";
    assert!(played.stdout.contains(summary), "{played}");
    assert!(report.contains(r#"tests="1" failures="0""#), "{report}");

    let broken = export.stdout.replace("open: succeeded", "open: skipped");
    assert_ne!(broken, export.stdout, "the export lists each step's status");
    std::fs::write(&test_file, broken).unwrap();
    let (failed, report) = play().await;
    assert_eq!(failed.code(), 1, "{failed}");
    assert!(failed.stdout.contains("FAIL"), "{failed}");
    assert!(
        failed.stdout.contains("-   \"open\": \"skipped\""),
        "{failed}"
    );
    assert!(
        failed.stdout.contains("+   \"open\": \"succeeded\""),
        "{failed}"
    );
    assert!(failed.stdout.contains("0 passed, 1 failed"), "{failed}");
    assert!(report.contains(r#"failures="1""#), "{report}");
}
