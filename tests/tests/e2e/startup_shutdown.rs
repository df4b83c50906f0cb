//! Starting and stopping as an operator sees it: every way a start can fail ends the process
//! within 2 s, non-zero, with one line naming the cause and no banner; SIGTERM with busy and
//! idle long-polling workers and open watch streams exits within `--shutdown-grace`, and after
//! a restart every acknowledged run is there and every result reported meanwhile lands once.

use std::path::Path;
use std::time::{Duration, Instant};

use riposte_proto::v1::{GetRunRequest, ListRunsRequest, ListWorkersRequest, RunStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::binaries::binaries;
use riposte_tests::orchestrator::{damage_run, store_check};
use riposte_tests::{Orchestrator, Worker, wait_until};
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;

/// A start that must fail fails this fast.
const FAIL_WITHIN: Duration = Duration::from_secs(2);

/// Parks for an hour on a durable timer, holding no worker.
const PARKED: &str = r#"
name: parked
version: 1
steps:
  - id: nap
    sleep: 1h
  - id: after
    needs: [nap]
    action: core.noop
"#;

/// What a failed start printed and how it ended.
struct Failed {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// Starts the orchestrator with `--data-dir data_dir --listen listen` and waits (at most
/// [`FAIL_WITHIN`]) for it to exit.
async fn start_expecting_failure(data_dir: &Path, listen: &str) -> Failed {
    let started = Instant::now();
    let child = tokio::process::Command::new(&binaries().orchestrator)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen, "--log", "warn"])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(FAIL_WITHIN, child)
        .await
        .unwrap_or_else(|_| panic!("the orchestrator still runs after {FAIL_WITHIN:?}"))
        .expect("the orchestrator starts");
    assert!(started.elapsed() < FAIL_WITHIN);
    Failed {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code(),
    }
}

impl Failed {
    /// Asserts a non-zero exit, no banner, and `cause` as the last line on stderr.
    fn assert_cause(&self, cause: &str) {
        assert_eq!(self.code, Some(1), "stderr: {}", self.stderr);
        assert_eq!(self.stdout, "", "no banner before a failed start");
        let last = self.stderr.lines().last().unwrap_or_default();
        assert_eq!(last, format!("error: {cause}"), "stderr: {}", self.stderr);
    }
}

#[tokio::test]
async fn each_startup_failure_exits_at_once_with_its_cause() {
    let running = Orchestrator::start();
    let data = running.data_dir();

    // A second orchestrator on the same data dir.
    let failed = start_expecting_failure(&data, "127.0.0.1:0").await;
    failed.assert_cause(&format!(
        "data dir {} is locked by pid {} (another orchestrator); stop it or choose another --data-dir",
        data.display(),
        running.pid()
    ));

    // A data dir that cannot be created.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("a file");
    let under_a_file = file.join("data");
    let failed = start_expecting_failure(&under_a_file, "127.0.0.1:0").await;
    failed.assert_cause(&format!(
        "data dir {} is not usable: Not a directory (os error 20)",
        under_a_file.display()
    ));

    // A port another process listens on.
    let addr = running.addr().to_string();
    let failed = start_expecting_failure(&dir.path().join("data"), &addr).await;
    failed.assert_cause(&format!(
        "--listen {addr}: Address already in use (os error 98)"
    ));

    // Plaintext on an address other than loopback, without --insecure-plaintext.
    let failed = start_expecting_failure(&dir.path().join("data"), "0.0.0.0:0").await;
    failed.assert_cause(
        "refusing to serve gRPC without TLS on 0.0.0.0:0, which is not a loopback address: \
         give --tls-cert and --tls-key (see docs/security.md), or --insecure-plaintext to \
         accept that anyone who reaches the port can read and drive everything",
    );
}

#[tokio::test]
async fn a_damaged_run_record_stops_the_start_with_its_tree_named() {
    let mut orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, PARKED).await;
    let run = api::start_run(&mut client, "parked", json!({})).await;
    orchestrator.terminate();
    let data = orchestrator.data_dir();
    damage_run(&data, &run.run_id);
    let failed = start_expecting_failure(&data, "127.0.0.1:0").await;
    assert_eq!(failed.code, Some(1), "stderr: {}", failed.stderr);
    assert_eq!(failed.stdout, "");
    let last = failed.stderr.lines().last().unwrap_or_default();
    let cause = format!(
        "error: store damaged: record `{}` in `runs` does not read back (checksum mismatch: the \
         record changed after it was written)",
        run.run_id
    );
    assert!(last.starts_with(&cause), "stderr: {}", failed.stderr);
    assert!(
        last.ends_with("); `riposte-orchestrator store check` lists every damaged record"),
        "stderr: {}",
        failed.stderr
    );
}

const ONE_STEP: &str = r#"
name: one-step
version: 1
steps:
  - id: only
    action: core.noop
"#;

#[tokio::test]
async fn a_damaged_finished_run_is_left_out_and_reported_while_the_rest_is_served() {
    let mut orchestrator = Orchestrator::start();
    let _worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ONE_STEP).await;
    let damaged = api::start_run(&mut client, "one-step", json!({}))
        .await
        .run_id;
    let intact = api::start_run(&mut client, "one-step", json!({}))
        .await
        .run_id;
    for id in [&damaged, &intact] {
        api::wait_finished(&mut client, id, Duration::from_secs(20)).await;
    }
    orchestrator.terminate();
    let data = orchestrator.data_dir();
    let (intact_check, _) = store_check(&data).await;
    assert!(intact_check.success());
    damage_run(&data, &damaged);
    let (status, report) = store_check(&data).await;
    assert_eq!(status.code(), Some(1), "{report}");
    assert!(
        report.starts_with(&format!(
            "damaged: runs/{damaged}: checksum mismatch: the record changed after it was written\nchecked "
        )),
        "{report}"
    );
    assert!(report.ends_with(": 1 damaged\n"), "{report}");

    orchestrator.restart();
    let mut client = orchestrator.client();
    let listed: Vec<String> = client
        .list_runs(ListRunsRequest {
            playbook: "one-step".into(),
            ..Default::default()
        })
        .await
        .expect("ListRuns still answers")
        .into_inner()
        .runs
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        listed,
        std::slice::from_ref(&intact),
        "the damaged run is left out"
    );
    let refused = client
        .get_run(GetRunRequest {
            run_id: damaged.clone(),
        })
        .await
        .expect_err("the damaged run cannot be read");
    assert!(
        refused.message().starts_with(&format!(
            "store damaged: record `{damaged}` in `runs` does not read back (checksum mismatch: \
             the record changed after it was written)"
        )),
        "{refused:?}"
    );
    let url = orchestrator.url();
    wait_until(
        "health reports the damage",
        Duration::from_secs(10),
        async || {
            api::health_of(&url, "riposte.store").await.ok() == Some(ServingStatus::NotServing)
        },
    )
    .await;
    api::get_run(&mut client, &intact).await;

    // Salvage: every record that reads back, into a new folder, and serve from it.
    orchestrator.terminate();
    let salvaged_dir = tempfile::tempdir().expect("a temporary folder");
    let salvaged = salvaged_dir.path().join("data");
    let output = tokio::process::Command::new(&binaries().orchestrator)
        .args(["store", "salvage", "--data-dir"])
        .arg(&data)
        .arg("--to")
        .arg(&salvaged)
        .output()
        .await
        .expect("store salvage runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(
        report.starts_with(&format!("left behind: runs/{damaged}: ")),
        "{report}"
    );
    assert!(report.ends_with("; 1 left behind\n"), "{report}");
    let (status, report) = store_check(&salvaged).await;
    assert!(
        status.success(),
        "the salvaged folder reads back whole: {report}"
    );
    let from_salvage = Orchestrator::builder().data_dir(&salvaged).start();
    let _worker = Worker::start(&from_salvage.url(), &[], 2);
    let mut client = from_salvage.client();
    assert_eq!(
        api::get_run(&mut client, &intact).await.status(),
        RunStatus::Succeeded
    );
    let again = api::start_run(&mut client, "one-step", json!({}))
        .await
        .run_id;
    let again = api::wait_finished(&mut client, &again, Duration::from_secs(20)).await;
    assert_eq!(
        again.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&again)
    );
}

/// One task that takes long enough to be running when the orchestrator is stopped.
const SLOW: &str = r#"
name: slow
version: 1
steps:
  - id: hold
    action: core.delay
    with: { duration: 3s }
"#;

/// Runs being worked on when SIGTERM arrives.
const IN_FLIGHT: usize = 100;

#[tokio::test]
async fn sigterm_with_busy_and_idle_workers_and_open_watches_exits_within_the_grace_and_loses_nothing()
 {
    let mut orchestrator = Orchestrator::builder()
        .args(&["--shutdown-grace", "2s"])
        .start();
    let mut client = orchestrator.client();
    // 120 slots: 100 busy when SIGTERM comes, 20 long-polling.
    let workers: Vec<Worker> = (0..10)
        .map(|_| Worker::start(&orchestrator.url(), &[], 12))
        .collect();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    api::apply_playbook(&mut client, PARKED).await;
    api::apply_playbook(&mut client, SLOW).await;
    let mut parked = Vec::new();
    let mut watches = Vec::new();
    for _ in 0..5 {
        let run = api::start_run(&mut client, "parked", json!({})).await;
        let watch = HistoryWatch::start(&client, &run.run_id);
        watch
            .wait_kind("run.started", Duration::from_secs(10))
            .await;
        watches.push(watch);
        parked.push(run.run_id);
    }
    let mut slow = Vec::new();
    for _ in 0..IN_FLIGHT {
        slow.push(api::start_run(&mut client, "slow", json!({})).await.run_id);
    }
    wait_until(
        "every slow run's task is held by a worker",
        Duration::from_secs(20),
        async || {
            let workers = client
                .list_workers(ListWorkersRequest {})
                .await
                .map(|r| r.into_inner().workers)
                .unwrap_or_default();
            workers
                .iter()
                .map(|w| w.tasks_in_flight as usize)
                .sum::<usize>()
                == IN_FLIGHT
        },
    )
    .await;

    // The results are reported while the orchestrator is stopping or gone: the workers retry
    // them on the next one.
    let asked = Instant::now();
    let status = orchestrator.terminate();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "exits within the 2 s grace (and its own start-up of the wait), took {took:?}"
    );
    assert!(status.success(), "{status:?}");

    orchestrator.restart();
    let mut client = orchestrator.client();
    for id in &slow {
        let run = api::wait_finished(&mut client, id, Duration::from_secs(60)).await;
        assert_eq!(
            run.status(),
            RunStatus::Succeeded,
            "{}",
            api::describe(&run)
        );
        let history = api::history(&mut client, id).await;
        assert_eq!(
            api::count(&history, "task.succeeded"),
            1,
            "{:?}",
            api::kinds(&history)
        );
    }
    for id in &parked {
        assert_eq!(
            api::get_run(&mut client, id).await.status(),
            RunStatus::Running
        );
    }
}
