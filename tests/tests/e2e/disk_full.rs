//! The data dir on a 48 MiB tmpfs that fills up (host test: it mounts a filesystem). Below the
//! free-space reserve a run start is refused at once with the reason, reads keep answering and
//! health reports the store NOT_SERVING; runs acknowledged before keep going, and when the disk
//! fills completely their writes fail; once space is freed the same process opens its store
//! again and every acknowledged run finishes, with no restart.

use std::time::{Duration, Instant};

use riposte_proto::v1::{ListRunsRequest, RunStatus, StartRunRequest};
use riposte_tests::api;
use riposte_tests::disk::SmallDisk;
use riposte_tests::{Orchestrator, Worker, host, wait_for, wait_until};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Two durable steps around a sleep: each run writes again after the disk has filled.
const SLEEPY: &str = r#"
name: sleepy
version: 1
steps:
  - id: nap
    sleep: 3s
  - id: after
    needs: [nap]
    action: core.noop
"#;

const STORE: &str = "riposte.store";
const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_full_disk_refuses_new_runs_at_once_and_the_runs_in_flight_finish_once_space_returns() {
    if !host::enabled() {
        return;
    }
    let disk = SmallDisk::mount("48m");
    let mut orchestrator = Orchestrator::builder()
        .data_dir(&disk.path().join("data"))
        .args(&["--min-free-space", "16MiB"])
        .start();
    let pid = orchestrator.pid();
    let _worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, SLEEPY).await;
    let mut acknowledged = Vec::new();
    for _ in 0..3 {
        acknowledged.push(
            api::start_run(&mut client, "sleepy", json!({}))
                .await
                .run_id,
        );
    }

    let filler = disk.fill();
    let asked = Instant::now();
    let refused = client
        .start_run(StartRunRequest {
            playbook: "sleepy".into(),
            params_json: "{}".into(),
            ..Default::default()
        })
        .await
        .expect_err("no new run on a full disk");
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains(
            "below the 16.0 MiB reserve (--min-free-space); new runs are refused until space \
             is freed"
        ),
        "{refused:?}"
    );
    let asked = Instant::now();
    let listed = client
        .list_runs(ListRunsRequest::default())
        .await
        .expect("ListRuns answers on a full disk")
        .into_inner()
        .runs;
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert!(
        acknowledged
            .iter()
            .all(|id| listed.iter().any(|r| &r.run_id == id))
    );
    let url = orchestrator.url();
    wait_until("health reports the store", TIMEOUT, async || {
        api::health_of(&url, STORE).await.ok() == Some(ServingStatus::NotServing)
    })
    .await;
    // The sleeps end on the full disk: their writes fail.
    tokio::time::sleep(Duration::from_secs(4)).await;

    std::fs::remove_file(&filler).expect("space freed");
    for id in &acknowledged {
        let run = api::wait_finished(&mut client, id, TIMEOUT).await;
        assert_eq!(
            run.status(),
            RunStatus::Succeeded,
            "{}",
            api::describe(&run)
        );
    }
    wait_until("health reports the store ready", TIMEOUT, async || {
        api::health_of(&url, STORE).await.ok() == Some(ServingStatus::Serving)
    })
    .await;
    let run = wait_for("a new run is accepted", TIMEOUT, async || {
        let request = StartRunRequest {
            playbook: "sleepy".into(),
            params_json: "{}".into(),
            ..Default::default()
        };
        match client.start_run(request).await {
            Ok(reply) => Ok(reply.into_inner().run.expect("a run").run_id),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let run = api::wait_finished(&mut client, &run, TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert!(orchestrator.is_running());
    assert_eq!(orchestrator.pid(), pid, "the same process, never restarted");
    assert!(
        orchestrator.log_tail().contains("store.reopened"),
        "{}",
        orchestrator.log_tail()
    );
}
