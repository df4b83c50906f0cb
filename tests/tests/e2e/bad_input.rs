//! Bad input never takes the orchestrator down: malformed playbooks, unknown names, ill-typed
//! parameters, oversized requests and garbage from a would-be worker each get a specific gRPC
//! error, nothing is stored, and the server stays healthy. The CLI reports an unreachable
//! orchestrator in one line with exit code 2.

use std::time::Duration;

use riposte_proto::v1::report_result_request::Outcome;
use riposte_proto::v1::worker_client::WorkerClient;
use riposte_proto::v1::{
    ApplyPlaybookRequest, GetPlaybookRequest, HeartbeatRequest, LeaseRef, ListPlaybooksRequest,
    ListRunsRequest, PollTaskRequest, RegisterRequest, ReportResultRequest, RunStatus,
    StartRunRequest, TaskSuccess,
};
use riposte_tests::api::{self, HistoryWatch, Operator};
use riposte_tests::{Orchestrator, cli};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

const ONE_STEP: &str = r#"
name: one
version: 1
params:
  count: { type: int, default: 1 }
steps:
  - id: say
    action: core.echo
    with: { msg: hi, count: "{{ params.count }}" }
"#;

/// Two problems: an unknown action on line 5 and an unknown need on line 7.
const INVALID: &str = "name: broken
version: 1
steps:
  - id: a
    action: core.nonexistent
  - id: b
    needs: [nowhere]
    action: core.noop
";

/// A flow mapping that never closes.
const UNPARSABLE: &str = "name: broken
version: 1
steps:
  - { id: a, action: core.noop
";

/// `LINE:COLUMN:` at the start of a diagnostic line.
fn position(line: &str) -> Option<(u32, u32)> {
    let mut parts = line.trim().splitn(3, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

async fn playbook_names(client: &mut Operator) -> Vec<String> {
    let reply = client
        .list_playbooks(ListPlaybooksRequest {})
        .await
        .expect("ListPlaybooks");
    reply
        .into_inner()
        .playbooks
        .into_iter()
        .map(|p| p.name)
        .collect()
}

async fn assert_serving(orchestrator: &Orchestrator) {
    let status = api::health(&orchestrator.url())
        .await
        .expect("the health check answers");
    assert_eq!(status, ServingStatus::Serving);
}

async fn start(client: &mut Operator, playbook: &str, params_json: &str) -> tonic::Status {
    let request = StartRunRequest {
        playbook: playbook.into(),
        params_json: params_json.into(),
        ..Default::default()
    };
    client
        .start_run(request)
        .await
        .expect_err("StartRun must refuse this")
}

#[tokio::test]
async fn invalid_playbooks_are_refused_with_positions_and_not_stored() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ONE_STEP).await;
    let before = playbook_names(&mut client).await;

    let refused = client
        .apply_playbook(ApplyPlaybookRequest {
            source: INVALID.into(),
        })
        .await
        .expect_err("an invalid playbook is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let lines: Vec<&str> = refused
        .message()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 2, "every diagnostic, one per line: {lines:?}");
    // And structured, in the status details.
    let details = <riposte_proto::v1::Diagnostics as prost::Message>::decode(refused.details())
        .expect("the details are Diagnostics");
    let paths: Vec<&str> = details
        .diagnostics
        .iter()
        .map(|d| d.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["steps[0].action", "steps[1].needs[0]"],
        "{details:?}"
    );
    assert!(
        details
            .diagnostics
            .iter()
            .all(|d| d.line > 0 && d.column > 0)
    );
    let action = lines
        .iter()
        .find(|l| l.contains("steps[0].action"))
        .expect("the action problem");
    assert!(
        matches!(position(action), Some((5, c)) if c > 0),
        "{action}"
    );
    assert!(action.contains("core.nonexistent"), "{action}");
    let need = lines
        .iter()
        .find(|l| l.contains("steps[1].needs[0]"))
        .expect("the needs problem");
    assert!(matches!(position(need), Some((7, c)) if c > 0), "{need}");
    assert!(need.contains("nowhere"), "{need}");

    let refused = client
        .apply_playbook(ApplyPlaybookRequest {
            source: UNPARSABLE.into(),
        })
        .await
        .expect_err("unparsable YAML is refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        matches!(position(refused.message()), Some((l, c)) if l >= 4 && c > 0),
        "a line:column position: {:?}",
        refused.message()
    );

    assert_eq!(
        playbook_names(&mut client).await,
        before,
        "nothing was stored"
    );
    let missing = client
        .get_playbook(GetPlaybookRequest {
            name: "broken".into(),
            version: 0,
        })
        .await
        .expect_err("the refused playbook does not exist");
    assert_eq!(missing.code(), Code::NotFound);
    assert_serving(&orchestrator).await;
}

#[tokio::test]
async fn bad_run_requests_are_refused_and_start_nothing() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ONE_STEP).await;

    let status = start(&mut client, "no-such-playbook", "{}").await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("no-such-playbook"), "{status:?}");

    let status = start(&mut client, "one", r#"{"count": "abc"}"#).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("count"),
        "names the parameter: {status:?}"
    );

    for params in ["[1, 2]", "\"count\"", "42"] {
        let status = start(&mut client, "one", params).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{params}: {status:?}");
    }
    let status = start(&mut client, "one", "{not json").await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let runs = client
        .list_runs(ListRunsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert!(runs.is_empty(), "no run was started: {runs:?}");
    assert_serving(&orchestrator).await;
}

#[tokio::test]
async fn an_oversized_request_is_refused_and_the_server_keeps_serving() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    let before = playbook_names(&mut client).await;

    let source = format!(
        "name: big\nversion: 1\ndescription: \"{}\"\n",
        "x".repeat(3 << 20)
    );
    let refused = client
        .apply_playbook(ApplyPlaybookRequest { source })
        .await
        .expect_err("a 3 MiB playbook is refused");
    assert!(
        matches!(
            refused.code(),
            Code::ResourceExhausted | Code::InvalidArgument
        ),
        "RESOURCE_EXHAUSTED or INVALID_ARGUMENT, got {:?}: {}",
        refused.code(),
        refused.message()
    );

    assert_eq!(playbook_names(&mut client).await, before);
    api::apply_playbook(&mut client, ONE_STEP).await;
    assert_serving(&orchestrator).await;
}

/// Registers "fake-worker", offering `core.echo`, as [`report`] reports for.
async fn register_fake_worker(worker: &mut WorkerClient<Channel>) {
    let registration = RegisterRequest {
        worker_id: "fake-worker".into(),
        name: "fake".into(),
        actions: vec!["core.echo".into()],
        concurrency: 1,
        ..Default::default()
    };
    worker.register(registration).await.expect("Register");
}

fn report(task_id: &str, lease_token: u64, outcome: Option<Outcome>) -> ReportResultRequest {
    ReportResultRequest {
        worker_id: "fake-worker".into(),
        task_id: task_id.into(),
        lease_token,
        outcome,
    }
}

fn success(output_json: &str) -> Option<Outcome> {
    Some(Outcome::Success(TaskSuccess {
        output_json: output_json.into(),
    }))
}

async fn refused(
    worker: &mut WorkerClient<Channel>,
    request: ReportResultRequest,
    code: Code,
) -> tonic::Status {
    let status = worker
        .report_result(request)
        .await
        .expect_err("ReportResult must refuse this");
    assert_eq!(status.code(), code, "{status:?}");
    status
}

#[tokio::test]
async fn garbage_from_a_worker_is_refused_and_fenced() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    let mut worker = orchestrator.worker_client();

    let status = worker
        .poll_task(PollTaskRequest {
            worker_id: "never-registered".into(),
            wait_ms: 100,
        })
        .await
        .expect_err("an unknown worker cannot poll");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let heartbeat = HeartbeatRequest {
        worker_id: "never-registered".into(),
        leases: vec![LeaseRef {
            task_id: "x".into(),
            lease_token: 1,
        }],
    };
    let status = worker
        .heartbeat(heartbeat)
        .await
        .expect_err("an unknown worker cannot heartbeat");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = worker
        .register(RegisterRequest::default())
        .await
        .expect_err("a worker needs an id");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    register_fake_worker(&mut worker).await;
    api::apply_playbook(&mut client, ONE_STEP).await;
    let run = api::start_run(&mut client, "one", json!({ "count": "7" })).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let poll = PollTaskRequest {
        worker_id: "fake-worker".into(),
        wait_ms: 5_000,
    };
    let task = worker
        .poll_task(poll)
        .await
        .expect("PollTask")
        .into_inner()
        .task
        .expect("a task");
    assert_eq!(task.task_id, format!("{}/say/0/1", run.run_id));
    assert_eq!(task.idempotency_key, format!("{}/say/0", run.run_id));
    assert_eq!(
        (task.action.as_str(), task.item, task.attempt),
        ("core.echo", 0, 1)
    );
    assert_eq!(
        api::json(&task.input_json),
        json!({ "msg": "hi", "count": 7 })
    );

    let status = refused(
        &mut worker,
        report("not-a-task", task.lease_token, success("{}")),
        Code::InvalidArgument,
    )
    .await;
    assert!(status.message().contains("not-a-task"), "{status:?}");
    let no_step = format!("{}/nope/0/1", run.run_id);
    refused(
        &mut worker,
        report(&no_step, task.lease_token, success("{}")),
        Code::InvalidArgument,
    )
    .await;
    refused(
        &mut worker,
        report(&task.task_id, task.lease_token, success("{not json")),
        Code::InvalidArgument,
    )
    .await;
    refused(
        &mut worker,
        report(&task.task_id, task.lease_token, None),
        Code::InvalidArgument,
    )
    .await;
    let stale = report(
        &task.task_id,
        task.lease_token + 1000,
        success(r#"{"stale": true}"#),
    );
    refused(&mut worker, stale, Code::FailedPrecondition).await;
    let rejected = watch
        .wait_kind("task.result_rejected", Duration::from_secs(10))
        .await;
    assert_eq!(rejected.step_id, "say");
    assert_eq!(
        api::get_run(&mut client, &run.run_id).await.status(),
        RunStatus::Running
    );

    let good = report(
        &task.task_id,
        task.lease_token,
        success(r#"{"fake": true}"#),
    );
    let reply = worker
        .report_result(good.clone())
        .await
        .expect("the current lease reports")
        .into_inner();
    assert!(!reply.duplicate);
    let reply = worker
        .report_result(good)
        .await
        .expect("a repeated result is answered")
        .into_inner();
    assert!(
        reply.duplicate,
        "a repeat of the accepted result changes nothing"
    );

    let run = api::wait_finished(&mut client, &run.run_id, Duration::from_secs(10)).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    assert_eq!(
        api::json(&api::step(&run, "say").output_json),
        json!({ "fake": true })
    );
    let events = api::history(&mut client, &run.run_id).await;
    assert_eq!(
        api::count(&events, "task.succeeded"),
        1,
        "{:?}",
        api::kinds(&events)
    );
    assert!(
        api::count(&events, "task.result_rejected") >= 1,
        "{:?}",
        api::kinds(&events)
    );
    assert_serving(&orchestrator).await;
}

#[tokio::test]
async fn the_cli_reports_an_unreachable_orchestrator_in_one_line() {
    // A port that was free a moment ago and has no listener now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = cli(&format!("http://127.0.0.1:{port}"), &["playbook", "list"]).await;
    assert_eq!(output.code(), 2, "{output}");
    let lines: Vec<&str> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr\n{output}");
    assert!(
        lines[0].starts_with("error: cannot reach the orchestrator"),
        "{output}"
    );
    assert!(output.stdout.is_empty(), "{output}");
}

#[tokio::test]
async fn a_result_for_a_task_id_that_does_not_parse_is_refused_quoting_it() {
    let orchestrator = Orchestrator::start();
    let mut worker = orchestrator.worker_client();
    register_fake_worker(&mut worker).await;
    let status = refused(
        &mut worker,
        report("not-a-task", 1, success("{}")),
        Code::InvalidArgument,
    )
    .await;
    assert_eq!(
        status.message(),
        "malformed task id `not-a-task`: expected run/step/item/attempt"
    );
    assert_serving(&orchestrator).await;
}
