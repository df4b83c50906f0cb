//! The orchestrator's safety rails, end to end: the platform guard refuses protected targets
//! before anything is leased, the containment kill switch holds containment tasks at the
//! dispatch door (across a restart) while everything else goes on, dry runs plan without
//! waiting, and the built-in playbooks are served without overwriting an operator's.

use std::time::{Duration, Instant};

use riposte_proto::v1::{
    GetPlaybookRequest, PollTaskRequest, RegisterRequest, ReportResultRequest, RunStatus,
    StartRunRequest, TaskSuccess, report_result_request::Outcome,
};
use riposte_tests::api::{self, HistoryWatch, Operator};
use riposte_tests::host;
use riposte_tests::netns::Topology;
use riposte_tests::response::{self, lines, of_kind};
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;
use tonic::Code;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const RUN_TIMEOUT: Duration = Duration::from_secs(30);
/// A dry run of a playbook that sleeps an hour must end well within this.
const DRY_RUN_MAX: Duration = Duration::from_secs(20);

const ECHO: &str = r#"
name: echo-once
version: 1
steps:
  - id: say
    action: core.echo
    with: { msg: hello }
"#;

const BUILTIN_IP_BLOCK: &str = include_str!("../../../playbooks/builtin/ip-block.yaml");
const BUILTIN_ACCOUNT_DISABLE: &str =
    include_str!("../../../playbooks/builtin/account-disable.yaml");

/// A worker offering `firewall.*` (nftables) and `identity.*` (linux) besides `core.*`. It
/// runs in the `target` namespace of `topo`, so that a block it carries out (the controls
/// below lease real ones) changes that namespace's firewall, never this host's.
fn response_worker(orchestrator: &Orchestrator, topo: &Topology) -> Worker {
    Worker::builder(&orchestrator.url())
        .netns(topo.target.name())
        .args(&[
            "--firewall-backend",
            "nftables",
            "--identity-backend",
            "linux",
        ])
        .start()
}

/// What a guard test runs in; its fields drop client first, the namespaces last.
struct Fleet {
    client: Operator,
    _worker: Worker,
    orchestrator: Orchestrator,
    _topo: Topology,
}

/// A fresh topology, an orchestrator started in it with `args`, and a response worker
/// registered with it.
async fn fleet(args: &[&str]) -> Fleet {
    let topo = Topology::new();
    let orchestrator = Orchestrator::builder()
        .listen(&topo.orchestrator_listen())
        .args(args)
        .start();
    let worker = response_worker(&orchestrator, &topo);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    Fleet {
        client,
        _worker: worker,
        orchestrator,
        _topo: topo,
    }
}

/// Starts `playbook` with `params` and waits for it to fail with the guard's refusal
/// `message`: recorded once as `guard.refused`, and no task leased.
async fn refused_before_a_lease(
    client: &mut Operator,
    playbook: &str,
    params: serde_json::Value,
    message: &str,
) -> riposte_proto::v1::Run {
    let run = api::start_run(client, playbook, params).await;
    let run = response::wait_ended(client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{}", api::describe(&run));
    assert!(run.error.contains(message), "{}", api::describe(&run));
    let events = history_of(client, &run.run_id).await;
    let guard = of_kind(&events, "guard.refused");
    assert_eq!(guard.len(), 1, "{:#?}", lines(&events));
    assert_eq!(guard[0].message, message);
    assert!(
        of_kind(&events, "task.leased").is_empty(),
        "{:#?}",
        lines(&events)
    );
    run
}

async fn history_of(client: &mut Operator, run_id: &str) -> Vec<riposte_proto::v1::RunEvent> {
    api::history(client, run_id).await
}

#[tokio::test]
async fn a_protected_address_is_refused_before_anything_is_leased() {
    if !host::enabled() {
        return;
    }
    let Fleet {
        orchestrator,
        mut client,
        _worker,
        _topo,
    } = fleet(&[]).await;

    let message = "refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8";
    let run =
        refused_before_a_lease(&mut client, "ip-block", json!({"ip": "10.1.2.3"}), message).await;
    assert_eq!(api::step(&run, "block").error, message);
    let shown = orchestrator.cli(&["runs", "show", &run.run_id]).await;
    assert!(shown.stdout.contains(message), "{shown}");

    // The same worker leases a block of an address that is not protected: the absence of
    // `task.leased` above is the guard's doing.
    let allowed = api::start_run(&mut client, "ip-block", json!({"ip": "203.0.113.7"})).await;
    let watch = HistoryWatch::start(&client, &allowed.run_id);
    let leased = watch.wait_kind("task.leased", EVENT_TIMEOUT).await;
    assert_eq!(leased.step_id, "block");
    assert!(
        !watch.events().iter().any(|e| e.kind == "guard.refused"),
        "{:#?}",
        lines(&watch.events())
    );
}

#[tokio::test]
async fn an_ipv6_address_embedding_a_protected_ipv4_is_refused_before_anything_is_leased() {
    if !host::enabled() {
        return;
    }
    let Fleet {
        orchestrator: _orchestrator,
        mut client,
        _worker,
        _topo,
    } = fleet(&[]).await;

    for (ip, form) in [
        ("64:ff9b::a01:203", "NAT64"),
        ("2002:a01:203::1", "6to4"),
        ("::a01:203", "IPv4-compatible"),
    ] {
        let message = format!(
            "refused by guard: {ip} embeds 10.1.2.3 ({form}), in protected range 10.0.0.0/8"
        );
        let params = json!({"ip": ip});
        let run = refused_before_a_lease(&mut client, "ip-block", params, &message).await;
        assert_eq!(api::step(&run, "block").error, message);
    }
}

#[tokio::test]
async fn a_protected_account_is_refused_and_root_always_is() {
    if !host::enabled() {
        return;
    }
    let Fleet {
        orchestrator: _orchestrator,
        mut client,
        _worker,
        _topo,
    } = fleet(&["--protected-accounts", "BreakGlass,svc-backup"]).await;

    for (account, protected) in [
        ("breakglass", "breakglass"),
        ("ROOT@contoso.com", "root"),
        ("daemon", "daemon: a system account"),
    ] {
        let message = format!("refused by guard: account {account} is protected ({protected})");
        let params = json!({"account": account});
        refused_before_a_lease(&mut client, "account-disable", params, &message).await;
    }
}

#[tokio::test]
async fn a_pause_holds_containment_across_a_restart_and_a_resume_releases_it() {
    if !host::enabled() {
        return;
    }
    let topo = Topology::new();
    let mut orchestrator = Orchestrator::builder()
        .listen(&topo.orchestrator_listen())
        .lease_timeout("2s")
        .principal("alice", &["respond-admin"])
        .principal("bob", &["respond-admin"])
        .start();
    let worker = response_worker(&orchestrator, &topo);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ECHO).await;

    let paused = orchestrator
        .cli_as(
            "alice",
            &["containment", "pause", "--reason", "false positives"],
        )
        .await;
    assert_eq!(paused.code(), 0, "{paused}");
    assert!(paused.stdout.contains("paused"), "{paused}");

    let block = api::start_run(&mut client, "ip-block", json!({"ip": "203.0.113.7"})).await;
    let watch = HistoryWatch::start(&client, &block.run_id);
    let held = watch.wait_kind("task.held", EVENT_TIMEOUT).await;
    assert_eq!(held.step_id, "block");
    assert!(held.message.contains("false positives"), "{held:?}");

    let echo = api::start_run(&mut client, "echo-once", json!({})).await;
    let echo = response::wait_ended(&mut client, &echo.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        echo.status(),
        RunStatus::Succeeded,
        "non-containment goes on"
    );
    let waiting = api::get_run(&mut client, &block.run_id).await;
    assert_eq!(waiting.status(), RunStatus::Running);
    assert_eq!(api::step(&waiting, "block").items_held, 1);
    assert!(
        of_kind(&watch.events(), "task.leased").is_empty(),
        "{:#?}",
        lines(&watch.events())
    );
    let shown = orchestrator.cli(&["runs", "show", &block.run_id]).await;
    assert!(shown.stdout.contains("containment paused"), "{shown}");
    drop(watch);

    orchestrator.restart();
    orchestrator.wait_serving().await;
    worker.id(&mut client).await;
    let status = orchestrator
        .cli(&["containment", "status", "--output", "json"])
        .await;
    assert_eq!(status.code(), 0, "{status}");
    let status = status.json();
    assert_eq!(
        status["paused"], true,
        "the pause survives a restart: {status}"
    );
    assert_eq!(status["changed_by"], "token:alice");
    assert_eq!(status["reason"], "false positives");
    assert_eq!(status["tasks_held"], 1);
    let echo = api::start_run(&mut client, "echo-once", json!({})).await;
    let echo = response::wait_ended(&mut client, &echo.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        echo.status(),
        RunStatus::Succeeded,
        "the worker leases again"
    );

    let watch = HistoryWatch::start(&client, &block.run_id);
    let resumed = orchestrator
        .cli_as("bob", &["containment", "resume", "--reason", "tuned"])
        .await;
    assert_eq!(resumed.code(), 0, "{resumed}");
    let leased = watch.wait_kind("task.leased", EVENT_TIMEOUT).await;
    assert_eq!(leased.step_id, "block");
    let events = watch.events();
    let before: Vec<_> = events.iter().take_while(|e| e.seq < leased.seq).collect();
    assert_eq!(
        before.iter().filter(|e| e.kind == "task.held").count(),
        1,
        "held once per unit, restart included: {:#?}",
        lines(&events)
    );
    assert!(!before.iter().any(|e| e.kind == "task.leased"));
    let status = orchestrator
        .cli(&["containment", "status", "--output", "json"])
        .await
        .json();
    assert_eq!(status["paused"], false, "{status}");
    assert_eq!(status["changed_by"], "token:bob");
}

const PLAN: &str = r#"
name: plan-e2e
version: 1
concurrency: { key: "ip:{{ params.ip }}", limit: 1, policy: queue }
params:
  ip: { type: ip, default: 203.0.113.7 }
steps:
  - id: nap
    sleep: 1h
  - id: confirm
    needs: [nap]
    approval: { approvers: [soc-leads], min: 1, timeout: 30m }
  - id: block
    needs: [confirm]
    action: core.echo
    with: { ip: "{{ params.ip }}" }
    undo: { action: core.echo, with: { unblock: "{{ params.ip }}" } }
    grant: { ttl: 1h, subject: "{{ params.ip }}" }
"#;

/// Plays a worker by hand: every task it gets must be a dry run with a dry-run key.
async fn serve_dry_tasks(orchestrator: &Orchestrator, until: Instant) -> usize {
    let mut worker = orchestrator.worker_client();
    worker
        .register(RegisterRequest {
            worker_id: "hand-worker".into(),
            name: "hand".into(),
            actions: vec!["core.echo".into()],
            concurrency: 1,
            ..Default::default()
        })
        .await
        .expect("Register");
    let mut served = 0;
    while Instant::now() < until {
        let poll = PollTaskRequest {
            worker_id: "hand-worker".into(),
            wait_ms: 500,
        };
        let Some(task) = worker
            .poll_task(poll)
            .await
            .expect("PollTask")
            .into_inner()
            .task
        else {
            if served >= 2 {
                return served;
            }
            continue;
        };
        assert!(
            task.dry_run,
            "a dry run's task is sent as a dry run: {task:?}"
        );
        assert!(
            task.idempotency_key.starts_with("dry-run:"),
            "a dry run's key never collides with a real run's: {task:?}"
        );
        let report = ReportResultRequest {
            worker_id: "hand-worker".into(),
            task_id: task.task_id.clone(),
            lease_token: task.lease_token,
            outcome: Some(Outcome::Success(TaskSuccess {
                output_json: json!({"dry_run": true}).to_string(),
            })),
        };
        worker.report_result(report).await.expect("ReportResult");
        served += 1;
    }
    served
}

#[tokio::test]
async fn a_dry_run_of_an_hour_long_playbook_plans_at_once_and_blocks_no_one() {
    let orchestrator = Orchestrator::builder()
        .approver_group("soc-leads", &["alice"])
        .start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, PLAN).await;
    let real = api::start_run(&mut client, "plan-e2e", json!({})).await;
    response::wait_step(
        &mut client,
        &real.run_id,
        "nap",
        riposte_proto::v1::StepStatus::Sleeping,
        EVENT_TIMEOUT,
    )
    .await;

    let started = Instant::now();
    let request = StartRunRequest {
        playbook: "plan-e2e".into(),
        params_json: "{}".into(),
        idempotency_key: "alert-7".into(),
        dry_run: true,
        ..Default::default()
    };
    let dry = api::start_run_with(&mut client, request).await.run.unwrap();
    assert!(dry.dry_run);
    let served = serve_dry_tasks(&orchestrator, started + DRY_RUN_MAX).await;
    let dry = response::wait_ended(&mut client, &dry.run_id, DRY_RUN_MAX).await;
    assert!(started.elapsed() < DRY_RUN_MAX, "{:?}", started.elapsed());
    assert_eq!(
        dry.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&dry)
    );
    assert_eq!(served, 2, "the block and its revoke");
    let events = history_of(&mut client, &dry.run_id).await;
    let leases: Vec<_> = events
        .iter()
        .filter(|e| e.kind.ends_with(".leased"))
        .collect();
    assert_eq!(leases.len(), 2, "{:#?}", lines(&events));
    assert!(
        leases.iter().all(|e| e.message.ends_with("dry run")),
        "{leases:?}"
    );
    let approval = of_kind(&events, "approval.dry_run");
    assert_eq!(approval.len(), 1, "{:#?}", lines(&events));
    assert!(
        approval[0]
            .message
            .contains("would request approval from soc-leads (min 1)"),
        "{approval:?}"
    );
    assert!(
        of_kind(&events, "step.sleeping")[0]
            .message
            .contains("dry run")
    );
    assert_eq!(of_kind(&events, "run.key_skipped").len(), 1);
    assert_eq!(
        api::get_run(&mut client, &real.run_id).await.status(),
        RunStatus::Running,
        "the real run still sleeps, untouched"
    );

    let listed = orchestrator.cli(&["runs", "list"]).await;
    assert!(listed.stdout.contains("succeeded, dry run"), "{listed}");
    let shown = orchestrator
        .cli(&["runs", "show", &dry.run_id, "--output", "json"])
        .await;
    assert_eq!(shown.json()["run"]["dry_run"], true, "{shown}");

    // The dry run's idempotency key does not answer for a real run.
    let request = StartRunRequest {
        playbook: "plan-e2e".into(),
        params_json: json!({"ip": "198.51.100.9"}).to_string(),
        idempotency_key: "alert-7".into(),
        ..Default::default()
    };
    let real_again = api::start_run_with(&mut client, request).await;
    assert!(!real_again.existing, "{real_again:?}");
    assert!(!real_again.run.unwrap().dry_run);
}

#[tokio::test]
async fn a_dry_run_from_the_cli_waits_for_nothing_and_exits_zero() {
    let orchestrator = Orchestrator::builder()
        .approver_group("soc-leads", &["alice"])
        .start();
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, PLAN).await;
    let started = Instant::now();
    let ran = orchestrator
        .cli(&["run", "plan-e2e", "--dry-run", "--wait"])
        .await;
    assert_eq!(ran.code(), 0, "{ran}");
    assert!(started.elapsed() < DRY_RUN_MAX, "{:?}", started.elapsed());
    assert!(ran.stdout.contains("dry run"), "{ran}");
}

#[tokio::test]
async fn built_in_playbooks_are_served_and_never_overwrite_an_operators() {
    let plain = Orchestrator::start();
    let listed = plain.cli(&["playbook", "list"]).await;
    assert_eq!(listed.code(), 0, "{listed}");
    for name in [
        "ip-block",
        "account-disable",
        "jit-access-grant",
        "patch-deployment",
    ] {
        assert!(listed.stdout.contains(name), "{name}: {listed}");
    }
    drop(plain);

    let mut orchestrator = Orchestrator::builder()
        .args(&["--no-builtin-playbooks"])
        .start();
    let mut client = orchestrator.client();
    let listed = orchestrator.cli(&["playbook", "list"]).await;
    assert!(!listed.stdout.contains("ip-block"), "{listed}");
    let builtin: u32 = BUILTIN_IP_BLOCK
        .lines()
        .find_map(|l| l.strip_prefix("version: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the built-in's version");
    let newer = BUILTIN_IP_BLOCK.replacen(
        &format!("version: {builtin}"),
        &format!("version: {}", builtin + 1),
        1,
    );
    assert_ne!(newer, BUILTIN_IP_BLOCK, "a newer version than the built-in");
    api::apply_playbook(&mut client, &newer).await;
    let own = BUILTIN_ACCOUNT_DISABLE.replacen(
        "description: >-",
        "description: >-\n  Our own account playbook.",
        1,
    );
    api::apply_playbook(&mut client, &own).await;

    orchestrator.restart_without("--no-builtin-playbooks");
    orchestrator.wait_serving().await;
    let latest = |name: &str, version: u32| GetPlaybookRequest {
        name: name.into(),
        version,
    };
    let ip_block = client.get_playbook(latest("ip-block", 0)).await.unwrap();
    assert_eq!(
        ip_block.get_ref().version,
        builtin + 1,
        "the operator's newer version stays"
    );
    let older = client.get_playbook(latest("ip-block", builtin)).await;
    assert_eq!(
        older.unwrap_err().code(),
        Code::NotFound,
        "no downgrade is added"
    );
    let account = client
        .get_playbook(latest("account-disable", 0))
        .await
        .unwrap();
    assert_eq!(
        account.get_ref().source,
        own,
        "the operator's version of the built-in's number stays"
    );
    let jit = client
        .get_playbook(latest("jit-access-grant", 0))
        .await
        .unwrap();
    assert_eq!(jit.get_ref().version, 1, "a missing built-in is applied");
}
