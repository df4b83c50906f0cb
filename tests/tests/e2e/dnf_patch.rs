//! The dnf backend of `patch.*` for real, through the built-in `patch-deployment`: a throwaway
//! package in versions 1.0 and 2.0 (2.0 a security advisory) in a local repository built with
//! `rpmbuild`, `createrepo_c` and `modifyrepo_c`, version 1.0 installed in an install root, and
//! a worker (`host=r1`) whose dnf backend patches that root (`--dnf-config`,
//! `--dnf-installroot`). The dry run plans the upgrade and changes nothing; the real run
//! upgrades the package, as read back from the root's rpm database, and verifies it.

use std::time::Duration;

use riposte_proto::v1::{Run, RunStatus, StartRunRequest};
use riposte_tests::api::{self, Operator};
use riposte_tests::dnf_repo::DnfRepo;
use riposte_tests::{Orchestrator, Worker, host};
use serde_json::{Value, json};

/// dnf reads its metadata and installs into the root: a few seconds per step.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// The output of step `id`'s one item.
fn item_output(run: &Run, id: &str) -> Value {
    let output = api::json(&api::step(run, id).output_json);
    match output.get("outputs") {
        Some(outputs) => outputs[0].clone(),
        None => output[0].clone(),
    }
}

/// Runs the built-in with `params` to its end; it must succeed.
async fn run_to_end(client: &mut Operator, worker: &Worker, params: &Value, dry_run: bool) -> Run {
    let request = StartRunRequest {
        playbook: "patch-deployment".into(),
        params_json: params.to_string(),
        dry_run,
        ..Default::default()
    };
    let run = api::start_run_with(client, request)
        .await
        .run
        .expect("StartRun answers the run");
    let run = api::wait_finished(client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}\n{}",
        api::describe(&run),
        worker.log_tail()
    );
    run
}

#[tokio::test]
async fn the_built_in_patch_deployment_plans_then_upgrades_a_package_with_dnf() {
    if !host::enabled() {
        return;
    }
    let repo = DnfRepo::build("riposte-dnf-e2e", &["1.0", "2.0"]);
    assert_eq!(repo.installed_version().as_deref(), Some("1.0-1"));

    let health = riposte_tests::health::serve().await;

    // The connector is under test, not the platform's approval rules (a scheduled patch run
    // needs no approval; one started by hand does).
    let orchestrator = Orchestrator::builder().policy("approvals: []").start();
    let allow = health.to_string();
    let dnf_args = repo.worker_args();
    let dnf_args: Vec<&str> = dnf_args.iter().map(String::as_str).collect();
    let worker = Worker::builder(&orchestrator.url())
        .labels(&[("host", "r1")])
        .args(&dnf_args)
        .args(&["--http-allow-hosts", &allow])
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    let params = json!({"hosts": ["r1"], "health_url": format!("http://{health}/health")});

    // The dry run reads the cache an operator filled: the security update is pending and its
    // install is planned, and the root keeps 1.0.
    repo.makecache();
    let planned = run_to_end(&mut client, &worker, &params, true).await;
    let assess = item_output(&planned, "assess");
    assert_eq!(
        assess["pending"],
        json!([{"name": repo.package(), "arch": "noarch", "current": "1.0-1",
                "candidate": "2.0-1", "repo": "riposte-test", "security": true}]),
        "{assess}"
    );
    let install = item_output(&planned, "install");
    assert_eq!(install["dry_run"], true, "{install}");
    assert_eq!(install["installed"], json!([]), "{install}");
    assert_eq!(
        install["would_install"][0]["name"],
        repo.package(),
        "{install}"
    );
    let changes = install["changes"].to_string();
    assert!(changes.contains("upgrade --security"), "{install}");
    assert_eq!(repo.installed_version().as_deref(), Some("1.0-1"));

    // The real run upgrades the root to 2.0, says so from the rpm database, and verifies it.
    let done = run_to_end(&mut client, &worker, &params, false).await;
    assert_eq!(repo.installed_version().as_deref(), Some("2.0-1"));
    let install = item_output(&done, "install");
    assert_eq!(
        install["installed"],
        json!([{"name": repo.package(), "arch": "noarch", "from": "1.0-1", "to": "2.0-1"}]),
        "{install}"
    );
    assert_eq!(install["rebooted"], false, "{install}");
    assert_eq!(install["reboot_required"], Value::Null, "{install}");
    let verify = item_output(&done, "verify");
    assert_eq!(verify["pending"], json!([]), "{verify}");
    assert_eq!(verify["packages"], json!({}), "{verify}");
}
