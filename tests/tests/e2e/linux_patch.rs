//! The apt backend of `patch.*` for real: a throwaway package in versions 1.0 and 2.0 in a
//! local file-based apt repository whose suite is a security suite, version 1.0 installed with
//! dpkg, an orchestrator and two workers (`host=a`, `host=b`) pointed at that repository, and a
//! rollout in waves (assess, install with a `patch.verify` health gate, verify). Version 2.0
//! ends up in the dpkg database; a rollout whose health gate cannot pass halts after its
//! canary and never touches the second host.
//!
//! Both workers run on this machine and share its dpkg database, so "host b" sees what the
//! canary installed on "host a": the waves run one item at a time and apt waits for the dpkg
//! lock. Each test has its own package, so the tests may run in parallel. The package is
//! purged at the end, also when a test fails.

use std::time::Duration;

use riposte_proto::v1::{CancelRunRequest, RunStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::apt_repo::{AptRepo, installed_version, unique_package};
use riposte_tests::host;
use riposte_tests::response::{self, lines, of_kind, of_step};
use riposte_tests::{Orchestrator, Worker};
use serde_json::{Value, json};

/// apt-get update, simulations and installs of a local repository, two hosts in turn.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

/// The rollout: assess every host, install in waves with `verify` as health gate after each
/// wave, then verify every host. `GATE_VERSION` is the version the health gate requires.
fn rollout(name: &str, package: &str, gate_version: &str) -> String {
    format!(
        r#"
name: {name}
version: 1
params:
  hosts: {{ type: list, default: [a, b] }}
steps:
  - id: assess
    for_each: "{{{{ params.hosts }}}}"
    labels: {{ host: "{{{{ item }}}}" }}
    action: patch.assess
    with: {{ scope: security }}
    timeout: 2m
  - id: install
    needs: [assess]
    for_each: "{{{{ params.hosts }}}}"
    concurrency: 1
    labels: {{ host: "{{{{ item }}}}" }}
    action: patch.install
    with: {{ scope: security, packages: [{package}], max_duration: 2m }}
    timeout: 3m
    waves:
      canary: 1
      batch: 1
      error_budget: 0
      health: {{ action: patch.verify, with: {{ scope: security, packages: {{ {package}: "{gate_version}" }} }} }}
  - id: verify
    needs: [install]
    for_each: "{{{{ params.hosts }}}}"
    labels: {{ host: "{{{{ item }}}}" }}
    action: patch.verify
    with: {{ scope: security, packages: {{ {package}: "2.0" }} }}
    timeout: 2m
"#
    )
}

/// A repository of `package` 1.0 and 2.0 in a security suite, with 1.0 installed.
fn repository(package: &str) -> AptRepo {
    let mut repo = AptRepo::build(package, &["1.0", "2.0"], "riposte-test", "riposte-security");
    repo.install("1.0");
    repo
}

/// An orchestrator and the workers `host=a` and `host=b`, each with its own apt lists.
async fn fleet(repo: &AptRepo) -> (Orchestrator, Vec<Worker>) {
    // The connector is under test, not the platform's approval rules: the playbooks here
    // call it bare.
    let orchestrator = Orchestrator::builder().policy("approvals: []").start();
    let workers: Vec<Worker> = ["a", "b"]
        .into_iter()
        .map(|host| {
            let args = repo.worker_args(&repo.state_dir(host));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Worker::builder(&orchestrator.url())
                .labels(&[("host", host)])
                .args(&args)
                .start()
        })
        .collect();
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    (orchestrator, workers)
}

/// The entries of `list` (a JSON array of objects) whose `name` is `package`.
fn named<'a>(list: &'a Value, package: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list}"))
        .iter()
        .filter(|entry| entry["name"] == package)
        .collect()
}

#[tokio::test]
async fn a_security_rollout_installs_the_new_version_wave_by_wave() {
    if !host::enabled() {
        return;
    }
    let package = unique_package("riposte-patch-ok");
    let repo = repository(&package);
    let (orchestrator, _workers) = fleet(&repo).await;
    let mut client = orchestrator.client();
    let playbook = format!("rollout-{package}");
    api::apply_playbook(&mut client, &rollout(&playbook, &package, "2.0")).await;

    let run = api::start_run(&mut client, &playbook, json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    watch.wait_kind("run.finished", EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{} {history:#?}",
        api::describe(&run)
    );
    assert_eq!(installed_version(&package).as_deref(), Some("2.0"));

    // Both hosts saw the update pending before the install, as a security update.
    let assess = api::json(&api::step(&run, "assess").output_json);
    for (host, output) in assess
        .as_array()
        .expect("one output per host")
        .iter()
        .enumerate()
    {
        let pending = named(&output["pending"], &package);
        assert_eq!(pending.len(), 1, "host {host}: {output}");
        assert_eq!(pending[0]["current"], "1.0", "{output}");
        assert_eq!(pending[0]["candidate"], "2.0", "{output}");
        assert_eq!(pending[0]["security"], true, "{output}");
        assert_eq!(output["backend"], "apt");
    }

    // The canary (host a) installed 1.0 -> 2.0 as read back from dpkg; host b, on the same
    // machine, then had nothing left to do.
    let install = api::json(&api::step(&run, "install").output_json);
    assert_eq!(install["succeeded"], json!([0, 1]), "{install}");
    let outputs = &install["outputs"];
    let canary = named(&outputs[0]["installed"], &package);
    assert_eq!(
        canary,
        [&json!({"name": package, "arch": "all", "from": "1.0", "to": "2.0"})],
        "{install}"
    );
    assert_eq!(outputs[0]["rebooted"], false);
    assert_eq!(
        named(&outputs[1]["installed"], &package).len(),
        0,
        "{install}"
    );
    assert_eq!(outputs[1]["not_pending"], json!([package]), "{install}");

    // Each host ran its own item; the health gate passed after both waves.
    for (item, host) in [(0, "a"), (1, "b")] {
        let leased = of_step(&events, "task.leased", "install")
            .into_iter()
            .filter(|e| e.item == item)
            .count();
        assert_eq!(leased, 1, "item {item} (host {host}): {history:#?}");
    }
    assert_eq!(of_kind(&events, "wave.started").len(), 2, "{history:#?}");
    assert_eq!(of_kind(&events, "health.started").len(), 2, "{history:#?}");
    assert_eq!(of_kind(&events, "health.failed").len(), 0, "{history:#?}");

    let verify = api::json(&api::step(&run, "verify").output_json);
    for output in verify.as_array().expect("one output per host") {
        assert_eq!(output["packages"][&package], "2.0", "{output}");
        assert_eq!(output["pending"], json!([]), "{output}");
    }
}

#[tokio::test]
async fn a_failing_health_gate_halts_the_rollout_before_the_second_host() {
    if !host::enabled() {
        return;
    }
    let package = unique_package("riposte-patch-halt");
    let repo = repository(&package);
    let (orchestrator, _workers) = fleet(&repo).await;
    let mut client = orchestrator.client();
    let playbook = format!("rollout-{package}");
    // No version 9.0 exists: the gate after the canary cannot pass.
    api::apply_playbook(&mut client, &rollout(&playbook, &package, "9.0")).await;

    let run = api::start_run(&mut client, &playbook, json!({})).await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    watch.wait_kind("run.halted", RUN_TIMEOUT).await;
    let halted =
        response::wait_status(&mut client, &run.run_id, RunStatus::Halted, EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    for fragment in [
        "health gate after wave 0 failed: not patched:".to_owned(),
        format!("{package} is at 2.0, 9.0 required"),
        "succeeded: 0;".to_owned(),
        "not started: 1".to_owned(),
    ] {
        assert!(
            halted.error.contains(&fragment),
            "the error must contain {fragment:?}: {:?} {history:#?}",
            halted.error
        );
    }
    let install = api::step(&halted, "install");
    assert_eq!(install.items_succeeded, 1, "{}", api::describe(&halted));
    assert_eq!(install.items_pending, 1, "host b never started");
    let leased: Vec<u32> = of_step(&events, "task.leased", "install")
        .iter()
        .map(|e| e.item)
        .collect();
    assert_eq!(leased, [0], "only the canary ran: {history:#?}");
    assert_eq!(of_kind(&events, "health.failed").len(), 1, "{history:#?}");
    assert_eq!(
        installed_version(&package).as_deref(),
        Some("2.0"),
        "the canary did install"
    );

    client
        .cancel_run(CancelRunRequest {
            run_id: run.run_id.clone(),
            reason: "rollout abandoned".into(),
        })
        .await
        .expect("CancelRun of a halted run");
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Cancelled,
        "{}",
        api::describe(&run)
    );
}
