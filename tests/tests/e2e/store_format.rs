//! A data dir written by the previous store format (one record per run) opens in this one
//! (a head and small records per run, every value with a checksum): every run reads back as
//! it was, the running one goes on to its end under its stored timers, its idempotency key
//! still answers, and the migrated folder checks whole. The folder is
//! `tests/fixtures/store-format-2` (its README says how it was made).
//!
//! The running run's last step has waited for a `pool=later` worker since the fixture was
//! made, far longer than its stored `schedule_to_start` (15 minutes): once opened, the step
//! fails for it, and the run compensates by revoking its open grant, which needs a worker.

use std::path::Path;
use std::time::Duration;

use riposte_proto::v1::{ListGrantsRequest, RunStatus, StartRunRequest, StepStatus};
use riposte_tests::api;
use riposte_tests::orchestrator::store_check;
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/store-format-2");
const HELLO: &str = "01a23b2f-0004-7404-af3a-d6f641ad79f0";
const MIGRATE: &str = "01a23b2f-000e-71e0-9c22-22144f1245f1";

/// A copy of the fixture, which the orchestrator then owns.
fn copy_fixture(to: &Path) {
    std::fs::create_dir_all(to).expect("a data dir");
    for file in ["conf", "db"] {
        std::fs::copy(Path::new(FIXTURE).join(file), to.join(file)).expect("copied");
    }
}

#[tokio::test]
async fn a_data_dir_of_format_2_is_migrated_and_its_running_run_ends_under_its_stored_timers() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let data = dir.path().join("data");
    copy_fixture(&data);
    let mut orchestrator = Orchestrator::builder().data_dir(&data).start();
    let mut client = orchestrator.client();

    let hello = api::get_run(&mut client, HELLO).await;
    assert_eq!(hello.status(), RunStatus::Succeeded);
    assert_eq!(api::json(&hello.params_json), json!({"name": "fixture"}));
    assert_eq!(
        api::json(&hello.steps[0].output_json),
        json!({"message": "hello fixture"})
    );

    let run = api::get_run(&mut client, MIGRATE).await;
    assert_eq!(run.status(), RunStatus::Running, "{}", api::describe(&run));
    assert_eq!(run.phase, "compensating", "{}", api::describe(&run));
    assert_eq!(
        api::json(&run.params_json),
        json!({"hosts": ["alpha", "beta", "gamma"]})
    );
    let each = &run.steps[0];
    assert_eq!(each.status(), StepStatus::Succeeded);
    assert_eq!((each.items_total, each.items_succeeded), (3, 3));
    assert_eq!(
        api::json(&each.output_json),
        json!([{"host": "alpha"}, {"host": "beta"}, {"host": "gamma"}])
    );
    assert_eq!(run.steps[1].status(), StepStatus::Succeeded);
    assert_eq!(run.steps[2].status(), StepStatus::Failed);
    assert_eq!(
        run.steps[2].error,
        "not started within 15m (schedule_to_start): no worker took its core.noop task"
    );

    // Its idempotency key still answers with it.
    let again = api::start_run_with(
        &mut client,
        StartRunRequest {
            playbook: "migrate".into(),
            params_json: json!({"hosts": ["other"]}).to_string(),
            idempotency_key: "migrate-once".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(again.run.expect("a run").run_id, MIGRATE);

    // The migrated run goes on: a worker takes the revoke of its grant, and it ends.
    let grants = client
        .list_grants(ListGrantsRequest::default())
        .await
        .expect("ListGrants")
        .into_inner()
        .grants;
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(
        (grants[0].run_id.as_str(), grants[0].subject.as_str()),
        (MIGRATE, "operator")
    );
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let done = api::wait_finished(&mut client, MIGRATE, Duration::from_secs(20)).await;
    assert_eq!(done.status(), RunStatus::Failed, "{}", api::describe(&done));
    assert!(
        done.error
            .starts_with("step later failed: not started within 15m"),
        "{}",
        done.error
    );
    let kinds: Vec<String> = api::history(&mut client, MIGRATE)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(kinds.iter().any(|k| k == "grant.revoked"), "{kinds:?}");

    // The migrated folder reads back whole, and opens again as it is now.
    orchestrator.terminate();
    let (status, report) = store_check(&data).await;
    assert!(status.success(), "{report}");
    assert!(report.ends_with(": 0 damaged\n"), "{report}");
    orchestrator.restart();
    let mut client = orchestrator.client();
    let done = api::get_run(&mut client, MIGRATE).await;
    assert_eq!(done.status(), RunStatus::Failed);
    assert_eq!(done.steps[0].items_succeeded, 3);
}
