//! The fault suite: real processes under real faults, and what became of every run they had
//! acknowledged. Each scenario starts its runs (each with an idempotency key, retried on any
//! error until acknowledged, as a careful client does), injects its fault, waits for every run
//! to end, and counts:
//!
//! - **acknowledged**: runs whose start was answered;
//! - **lost**: acknowledged runs the orchestrator no longer knows;
//! - **duplicated**: results recorded twice for the same step item (`task.succeeded`);
//! - **stuck**: acknowledged runs still running when the scenario's deadline passed;
//! - **damaged**: runs left out because a record of theirs was damaged on purpose, each named
//!   by `store check` (one that is not named counts as lost);
//! - **recovery**: from the fault to the orchestrator serving again (or the run moving on).
//!
//! The scenarios: the orchestrator killed (`kill -9`) and restarted; a worker killed and
//! replaced; a worker frozen (`SIGSTOP`) while it holds leases; the data dir's filesystem
//! filled mid-run, then freed (a tmpfs: needs root, [`disk_full`] runs only where host tests
//! do); a record damaged while the orchestrator is down; a second orchestrator started on the
//! data dir in use.
//!
//! `riposte-chaos` prints the table at full scale; the end-to-end tests run the same
//! scenarios at a small scale and assert 0 lost, 0 duplicated, 0 stuck.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riposte_proto::v1::{ListRunsRequest, RunStatus, StartRunRequest};
use tokio::sync::Semaphore;

use crate::api::{self, Operator};
use crate::disk::SmallDisk;
use crate::orchestrator::{damage_run, start_failing, store_check};
use crate::{Orchestrator, OrchestratorBuilder, Worker};
use tonic_health::pb::health_check_response::ServingStatus;

/// How much each scenario does.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Runs started per scenario (at most 1000: one ListRuns page).
    pub runs: usize,
    /// Faults injected per scenario.
    pub faults: usize,
}

impl Scale {
    /// What CI asserts on.
    pub const SMALL: Scale = Scale {
        runs: 60,
        faults: 4,
    };
    /// What `riposte-chaos` prints.
    pub const FULL: Scale = Scale {
        runs: 1000,
        faults: 50,
    };
}

/// What one scenario did to the runs.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub scenario: String,
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub stuck: usize,
    /// Runs left out because their records were damaged on purpose, and named by
    /// `store check`.
    pub damaged: usize,
    /// Each fault's time to recover.
    pub recovery: Vec<Duration>,
}

impl Outcome {
    /// Nothing lost, duplicated or stuck.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.stuck == 0
    }

    /// The table's header.
    pub fn header() -> String {
        format!(
            "{:<44} {:>12} {:>5} {:>10} {:>6} {:>7} {:>22}",
            "scenario",
            "acknowledged",
            "lost",
            "duplicated",
            "stuck",
            "damaged",
            "recovery median / max"
        )
    }

    /// One line of the table.
    pub fn row(&self) -> String {
        let mut recovery = self.recovery.clone();
        recovery.sort();
        let shown = match (recovery.get(recovery.len() / 2), recovery.last()) {
            (Some(median), Some(max)) => {
                format!("{} ms / {} ms", median.as_millis(), max.as_millis())
            }
            _ => "-".to_string(),
        };
        format!(
            "{:<44} {:>12} {:>5} {:>10} {:>6} {:>7} {:>22}",
            self.scenario,
            self.acknowledged,
            self.lost,
            self.duplicated,
            self.stuck,
            self.damaged,
            shown
        )
    }
}

/// Two steps, each a short task: a run holds a lease for a moment, twice.
const CHAIN: &str = r#"
name: chaos
version: 1
steps:
  - id: first
    action: core.delay
    with: { duration: 50ms }
  - id: second
    needs: [first]
    action: core.echo
    with: { done: true }
"#;

/// Starts at most this many runs at once.
const STARTS_OUTSTANDING: usize = 32;
/// How long the runs of a scenario may take to end after its last fault.
const SETTLE: Duration = Duration::from_secs(120);

/// A scenario's cast: an orchestrator with lease `lease`, two workers, the chain applied, and
/// the starts of `scale.runs` runs under way.
struct Stage {
    orchestrator: Orchestrator,
    workers: Vec<Worker>,
    client: Operator,
    starting: tokio::task::JoinHandle<Vec<String>>,
}

impl Stage {
    async fn open(lease: &str, prefix: &'static str, scale: Scale) -> Stage {
        Stage::open_with(Orchestrator::builder(), lease, prefix, scale).await
    }

    /// [`Stage::open`] with an orchestrator built from `builder`.
    async fn open_with(
        builder: OrchestratorBuilder,
        lease: &str,
        prefix: &'static str,
        scale: Scale,
    ) -> Stage {
        let orchestrator = builder.lease_timeout(lease).log("warn").start();
        let workers = vec![
            Worker::start(&orchestrator.url(), &[], 16),
            Worker::start(&orchestrator.url(), &[], 16),
        ];
        let mut client = orchestrator.client();
        for worker in &workers {
            worker.id(&mut client).await;
        }
        api::apply_playbook(&mut client, CHAIN).await;
        let starting = tokio::spawn(start_all(orchestrator.client(), prefix, scale.runs));
        Stage {
            orchestrator,
            workers,
            client,
            starting,
        }
    }

    /// Waits for the starts, then for the runs to end, and counts.
    async fn settle(self, scenario: &str, recovery: Vec<Duration>) -> Outcome {
        self.settle_damaged(scenario, recovery, &[]).await
    }

    /// [`Stage::settle`] when the runs `damaged` had a record damaged on purpose: they count
    /// as damaged if `store check` names each of them once the orchestrator is stopped, as lost
    /// otherwise.
    async fn settle_damaged(
        mut self,
        scenario: &str,
        recovery: Vec<Duration>,
        damaged: &[String],
    ) -> Outcome {
        let ids = self.starting.await.expect("the starts end");
        let mut client = self.orchestrator.client();
        let mut outcome = settle(scenario, &mut client, ids, recovery).await;
        drop(self.workers);
        if !damaged.is_empty() {
            self.orchestrator.terminate();
            let (_, report) = store_check(&self.orchestrator.data_dir()).await;
            let named = damaged
                .iter()
                .filter(|id| report.contains(&format!("runs/{id}: ")))
                .count();
            outcome.lost -= damaged.len();
            outcome.lost += damaged.len() - named;
            outcome.damaged = named;
        }
        outcome
    }
}

/// Before each fault.
const FAULT_EVERY: Duration = Duration::from_millis(150);

/// The orchestrator killed with `kill -9` and restarted on the same data, `scale.faults` times,
/// while `scale.runs` runs start and run.
pub async fn coordinator_kills(scale: Scale) -> Outcome {
    let mut stage = Stage::open("2s", "coordinator", scale).await;
    let mut recovery = Vec::new();
    for _ in 0..scale.faults {
        tokio::time::sleep(FAULT_EVERY).await;
        let killed = Instant::now();
        stage.orchestrator.restart();
        stage.orchestrator.wait_serving().await;
        recovery.push(killed.elapsed());
    }
    stage
        .settle("coordinator kill -9 during runs", recovery)
        .await
}

/// A worker killed with `kill -9` and replaced, `scale.faults` times, while the runs run.
pub async fn worker_kills(scale: Scale) -> Outcome {
    let mut stage = Stage::open("1s", "worker", scale).await;
    let mut recovery = Vec::new();
    for fault in 0..scale.faults {
        tokio::time::sleep(FAULT_EVERY).await;
        let victim = fault % stage.workers.len();
        let killed = Instant::now();
        stage.workers[victim].kill9();
        let replacement = Worker::start(&stage.orchestrator.url(), &[], 16);
        replacement.id(&mut stage.client).await;
        recovery.push(killed.elapsed());
        stage.workers[victim] = replacement;
    }
    stage.settle("worker kill -9 during runs", recovery).await
}

/// One of two workers frozen (SIGSTOP) for three leases while it holds leases, then thawed,
/// at most 5 times.
pub async fn frozen_worker(scale: Scale) -> Outcome {
    let stage = Stage::open("1s", "frozen", scale).await;
    for fault in 0..scale.faults.min(5) {
        tokio::time::sleep(FAULT_EVERY).await;
        let frozen = &stage.workers[fault % stage.workers.len()];
        frozen.sigstop();
        tokio::time::sleep(Duration::from_secs(3)).await;
        frozen.sigcont();
    }
    // A freeze has no recovery of its own to time: its runs moving on is what settles.
    stage
        .settle("worker SIGSTOP holding leases", Vec::new())
        .await
}

/// The data dir on a 64 MiB tmpfs (with an 8 MiB reserve), filled completely while runs run,
/// for 2 s, then freed, at most 3 times; recovery is from freeing the space to the store
/// serving again. Needs root (it mounts a filesystem).
pub async fn disk_full(scale: Scale) -> Outcome {
    let disk = SmallDisk::mount("64m");
    let data = disk.path().join("data");
    let builder = Orchestrator::builder()
        .data_dir(&data)
        .args(&["--min-free-space", "8MiB"]);
    let stage = Stage::open_with(builder, "2s", "disk", scale).await;
    let url = stage.orchestrator.url();
    let mut recovery = Vec::new();
    for _ in 0..scale.faults.min(3) {
        tokio::time::sleep(FAULT_EVERY).await;
        let filler = disk.fill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::fs::remove_file(&filler).expect("the filler is removed");
        let freed = Instant::now();
        crate::wait_until("the store serves again", SETTLE, async || {
            api::health_of(&url, "riposte.store").await.ok() == Some(ServingStatus::Serving)
        })
        .await;
        recovery.push(freed.elapsed());
    }
    let outcome = stage
        .settle("disk full mid-run, then freed", recovery)
        .await;
    drop(disk);
    outcome
}

/// The orchestrator killed mid-run, at most 3 times; each time one finished run's head gets a
/// flipped byte before the restart. Each damaged run must be left out and named; no other run
/// may be lost.
pub async fn damaged_records(scale: Scale) -> Outcome {
    let mut stage = Stage::open("2s", "damaged", scale).await;
    let mut recovery = Vec::new();
    let mut damaged: Vec<String> = Vec::new();
    for _ in 0..scale.faults.min(3) {
        tokio::time::sleep(FAULT_EVERY).await;
        let victim = crate::wait_for("a finished run to damage", SETTLE, async || {
            let request = ListRunsRequest {
                playbook: "chaos".into(),
                status: RunStatus::Succeeded as i32,
                limit: 1000,
                ..Default::default()
            };
            let runs = stage
                .client
                .list_runs(request)
                .await
                .map_err(|e| e.to_string())?;
            runs.into_inner()
                .runs
                .into_iter()
                .map(|r| r.run_id)
                .find(|id| !damaged.contains(id))
                .ok_or_else(|| "none finished yet".to_string())
        })
        .await;
        stage.orchestrator.kill9();
        damage_run(&stage.orchestrator.data_dir(), &victim);
        damaged.push(victim);
        let killed = Instant::now();
        stage.orchestrator.restart();
        stage.orchestrator.wait_serving().await;
        recovery.push(killed.elapsed());
    }
    stage
        .settle_damaged("record damaged while down", recovery, &damaged)
        .await
}

/// A second orchestrator started on the data dir in use, `scale.faults` times while the runs
/// run: each must exit non-zero within 2 s naming the holder; recovery is the time it took to
/// exit. The runs of the first go on untouched.
pub async fn locked_data_dir(scale: Scale) -> Outcome {
    let stage = Stage::open("2s", "locked", scale).await;
    let data = stage.orchestrator.data_dir();
    let mut recovery = Vec::new();
    for _ in 0..scale.faults {
        tokio::time::sleep(FAULT_EVERY).await;
        let started = Instant::now();
        let args = ["--listen", "127.0.0.1:0", "--log", "warn"];
        let output = start_failing(&data, &args, Duration::from_secs(2)).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("is locked by"), "{stderr}");
        recovery.push(started.elapsed());
    }
    stage
        .settle("second orchestrator on a data dir in use", recovery)
        .await
}

/// Starts `count` runs with keys `{prefix}-{i}`, each retried until acknowledged; answers
/// their ids.
async fn start_all(client: Operator, prefix: &str, count: usize) -> Vec<String> {
    let permits = Arc::new(Semaphore::new(STARTS_OUTSTANDING));
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await.expect("open");
        let mut client = client.clone();
        let key = format!("{prefix}-{i}");
        starts.spawn(async move {
            let id = start_until_acknowledged(&mut client, &key).await;
            drop(permit);
            id
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(id) = starts.join_next().await {
        ids.push(id.expect("a start"));
    }
    ids
}

async fn start_until_acknowledged(client: &mut Operator, key: &str) -> String {
    let deadline = Instant::now() + SETTLE;
    loop {
        let request = StartRunRequest {
            playbook: "chaos".into(),
            params_json: "{}".into(),
            idempotency_key: key.into(),
            ..Default::default()
        };
        match client.start_run(request).await {
            Ok(reply) => return reply.into_inner().run.expect("a run").run_id,
            Err(status) if Instant::now() < deadline => {
                let _ = status;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("StartRun {key} never acknowledged: {status:?}"),
        }
    }
}

/// Waits for the acknowledged runs to end, then counts what became of them.
async fn settle(
    scenario: &str,
    client: &mut Operator,
    ids: Vec<String>,
    recovery: Vec<Duration>,
) -> Outcome {
    let deadline = Instant::now() + SETTLE;
    let listed = loop {
        let request = ListRunsRequest {
            playbook: "chaos".into(),
            limit: 1000,
            ..Default::default()
        };
        if let Ok(reply) = client.list_runs(request).await {
            let runs = reply.into_inner().runs;
            let running = runs.iter().any(|r| r.status() == RunStatus::Running);
            if !running || Instant::now() > deadline {
                break runs;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let by_id: HashMap<&str, RunStatus> = listed
        .iter()
        .map(|r| (r.run_id.as_str(), r.status()))
        .collect();
    let lost = ids
        .iter()
        .filter(|id| !by_id.contains_key(id.as_str()))
        .count();
    let stuck = ids
        .iter()
        .filter(|id| by_id.get(id.as_str()) == Some(&RunStatus::Running))
        .count();
    let mut duplicated = 0;
    for id in ids.iter().filter(|id| by_id.contains_key(id.as_str())) {
        let history = api::history(client, id).await;
        let mut succeeded: HashMap<(String, u32), usize> = HashMap::new();
        for event in history.iter().filter(|e| e.kind == "task.succeeded") {
            *succeeded
                .entry((event.step_id.clone(), event.item))
                .or_default() += 1;
        }
        duplicated += succeeded.values().map(|n| n - 1).sum::<usize>();
    }
    Outcome {
        scenario: scenario.to_string(),
        acknowledged: ids.len(),
        lost,
        duplicated,
        stuck,
        damaged: 0,
        recovery,
    }
}
