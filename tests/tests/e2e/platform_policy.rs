//! The platform's rules above every playbook: a playbook that runs an action the policy gates
//! without the approval it requires is refused at apply (and a stored one at start); lifting a
//! block is held by the paused kill switch like the block; a built-in playbook is replaced only
//! by an admin.

use std::time::Duration;

use riposte_proto::v1::{ApplyPlaybookRequest, StartRunRequest, StepStatus};
use riposte_tests::access::as_principal;
use riposte_tests::response::{self, assert_refused};
use riposte_tests::{Orchestrator, api};
use serde_json::json;
use tonic::Code;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

const BARE_GRANT: &str = r#"
name: bare-grant
version: 1
steps:
  - id: open
    action: access.grant_jit
    with: { source_ip: 203.0.113.7, port: 22, ttl: 8h }
"#;

const LIFT: &str = r#"
name: lift
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: approved
    approval: { approvers: [soc-leads], timeout: 10m }
  - id: unblock
    needs: [approved]
    action: firewall.unblock_ip
    with: { ip: "{{ params.ip }}" }
"#;

#[tokio::test]
async fn a_playbook_with_a_bare_grant_is_refused_at_apply_with_a_diagnostic() {
    let orchestrator = Orchestrator::start();
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), BARE_GRANT).expect("written");
    let path = file.path().to_str().expect("utf-8");
    let applied = orchestrator.cli(&["playbook", "apply", path]).await;
    assert_eq!(applied.code(), 1, "{applied}");
    let said = format!("{}{}", applied.stdout, applied.stderr);
    assert!(
        said.contains("step `open` runs `access.grant_jit`")
            && said.contains("platform policy")
            && said.contains("add `approval:`"),
        "{applied}"
    );
    let listed = orchestrator.cli(&["playbook", "list"]).await;
    assert!(!listed.stdout.contains("bare-grant"), "nothing was stored");

    // Patching outside a schedule needs an approval: the built-in is refused when a person
    // starts it (a schedule's trigger starts it as the schedule), but may be planned.
    let mut client = orchestrator.client();
    let by_hand = StartRunRequest {
        playbook: "patch-deployment".into(),
        params_json: json!({"hosts": ["h1"], "health_url": "http://127.0.0.1:9/health"})
            .to_string(),
        ..Default::default()
    };
    assert_refused(
        "patch-deployment started by hand",
        client.start_run(by_hand.clone()).await,
        Code::PermissionDenied,
        &["patch.install", "unless a schedule starts the run"],
    );
    let planned = StartRunRequest {
        dry_run: true,
        ..by_hand
    };
    client
        .start_run(planned)
        .await
        .expect("a dry run is planned");
}

#[tokio::test]
async fn lifting_a_block_is_held_by_the_paused_kill_switch() {
    let orchestrator = Orchestrator::builder()
        .approver_group("soc-leads", &["alice", "bob"])
        .start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, LIFT).await;
    let paused = orchestrator
        .cli(&["containment", "pause", "--reason", "storm"])
        .await;
    assert_eq!(paused.code(), 0, "{paused}");

    let run =
        response::start_run_as(&mut client, "lift", json!({"ip": "203.0.113.7"}), "alice").await;
    let watch = api::HistoryWatch::start(&client, &run.run_id);
    let pending =
        response::wait_approval(&mut client, &run.run_id, "approved", EVENT_TIMEOUT).await;
    response::decide(
        &mut client,
        &run.run_id,
        "approved",
        true,
        &pending.digest,
        "bob",
    )
    .await
    .expect("bob approves");
    let waiting = response::wait_step(
        &mut client,
        &run.run_id,
        "unblock",
        StepStatus::Running,
        EVENT_TIMEOUT,
    )
    .await;
    assert_eq!(
        api::step(&waiting, "unblock").items_held,
        1,
        "the unblock is held"
    );
    let status = orchestrator
        .cli(&["--output", "json", "containment", "status"])
        .await;
    assert_eq!(status.json()["tasks_held"], 1, "{status}");
    let held = watch.wait_kind("task.held", EVENT_TIMEOUT).await;
    assert_eq!(held.step_id, "unblock");
    assert!(held.message.contains("storm"), "{held:?}");
}

#[tokio::test]
async fn a_built_in_playbook_is_replaced_only_by_an_admin() {
    let orchestrator = Orchestrator::builder()
        .principal("dana", &["author"])
        .start();
    let mut client = orchestrator.client();
    let builtin = client
        .get_playbook(riposte_proto::v1::GetPlaybookRequest {
            name: "ip-block".into(),
            version: 0,
        })
        .await
        .expect("the built-in is served")
        .into_inner();
    let newer = builtin.source.replacen(
        &format!("version: {}", builtin.version),
        &format!("version: {}", builtin.version + 1),
        1,
    );
    assert_ne!(newer, builtin.source, "a new version of the built-in");
    let request = ApplyPlaybookRequest {
        source: newer.clone(),
    };
    assert_refused(
        "an author replacing a built-in",
        client.apply_playbook(as_principal(request, "dana")).await,
        Code::PermissionDenied,
        &["ip-block is built in", "only an admin"],
    );
    api::apply_playbook(&mut client, &newer).await;
}
