//! `riposte-bench`: measures Riposte's orchestration overhead beside the floor of this machine.
//!
//! Run it from the workspace root with
//!
//! ```text
//! cargo run --release -p riposte-tests --bin riposte-bench
//! ```
//!
//! It builds the release binaries of the orchestrator and the worker (through the end-to-end
//! harness, which spawns them as processes exactly as the tests do), then prints one table:
//!
//! - **The floor**, measured in the same run: a bare tonic unary round trip on loopback (an
//!   in-process server with only the health service, sequential calls) and one sled insert
//!   followed by a flush. `floor per step = gRPC round trip + sled insert&flush` (medians): the
//!   least one durable orchestration step can cost, since a step needs at least one call and
//!   one durable write.
//! - **Per-step overhead**: 50 sequential runs of `noop-chain` (five chained `core.noop`
//!   steps) with nothing else in flight, each timed from StartRun to its `run.finished` event
//!   on WatchRun, divided by 5. Target: within 4x of the floor.
//! - **Throughput**: 1,000 runs of `noop-chain` started with at most 64 StartRun calls
//!   outstanding, on two worker processes with `--concurrency 8`; steps per second until the
//!   last run finished. Target: at least 1,000 steps/s.
//! - **Orchestrator CPU per step** during the throughput run, from `/proc/PID/stat`
//!   (user + system time).
//! - **Restart to serving**: 1,000 runs parked (a `core.delay` step with no worker to take
//!   it), `kill -9`, restart on the same data folder; the time from the spawn to the first
//!   ListRuns answer, and, in a second restart, to the health check answering SERVING. Its
//!   floor is opening the same sled folder in-process. Target: under 1 s.
//! - **Where the time goes**: single calls as a client sees them (GetRun, the first event of
//!   WatchRun, the first call on a new connection) beside the bare round trip, and the per-step
//!   time as the orchestrator records it (`finished_at - created_at`), to tell time spent
//!   inside the orchestrator from time spent on the wire.
//!
//! - **Parked runs**: 10,000, then 100,000 runs parked on a durable 1-hour `sleep`: the orchestrator's RSS
//!   growth and the sled folder's size per parked run, and restart to the first ListRuns
//!   answer with all of them parked. Targets: at most 4 KiB RSS and 8 KiB disk per parked run,
//!   restart under 2 s.
//!
//! - **Big runs** (module [`fan_out`]): one `for_each` run of 1,000, 10,000 and 100,000
//!   items; bytes written per item (target: flat within 20 %), CPU per item, items per second.
//!   `riposte-bench fan-out [ITEMS...]` measures these only.
//!
//! - **Alerts** (module [`alerts`]): sustained ingestion over HTTP and over TCP syslog with a
//!   deduplicating rule on (targets: at least 10,000 alerts/s over HTTP and 20,000 over syslog;
//!   the orchestrator's peak RSS and the alerts' time to stored after each), and
//!   alert-to-first-action latency at 200 alerts/s open loop (target: p99 under 10 ms). `riposte-bench alerts`
//!   measures the floor and these only.
//!
//! A missed target is printed as MISSED; the exit code is 0 all the same, since this is a
//! measurement, not a test. A debug build measures the wrong thing and says so.

#![allow(
    clippy::disallowed_methods,
    reason = "tests act as users and operators do: they start processes, read clocks, send HTTP"
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod alerts;
mod fan_out;
mod floor;
mod parked;
mod report;
mod samples;
mod telemetry;
mod tls;
use parked::parked_on_timers;
use report::{Figure, Report, each_round, median_of, verdict};
use samples::{Samples, ms};

use floor::{Floor, grpc_round_trips, sled_insert_flush, sled_open};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use riposte_proto::v1::{
    GetRunRequest, ListRunsRequest, ListWorkersRequest, RunStatus, StartRunRequest,
    WatchRunRequest, operator_client::OperatorClient,
};
use riposte_tests::api::{self, Operator};
use riposte_tests::{Orchestrator, Worker};
use tokio::sync::{Semaphore, oneshot};
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Five chained no-op steps: the cost of orchestration alone.
const NOOP_CHAIN: &str = "name: noop-chain
version: 1
description: Five chained no-op steps; measures the cost of orchestration alone.
steps:
  - { id: a, action: core.noop }
  - { id: b, action: core.noop, needs: [a] }
  - { id: c, action: core.noop, needs: [b] }
  - { id: d, action: core.noop, needs: [c] }
  - { id: e, action: core.noop, needs: [d] }
";
const NOOP_CHAIN_STEPS: u32 = 5;
/// Runs parked on a task no worker serves, queued beside the throughput run.
const UNSERVED_RUNS: usize = 8000;
/// One step no worker serves: no worker carries the label.
const UNSERVED: &str = "name: unserved
version: 1
steps:
  - id: wait
    action: core.noop
    labels: { pool: nobody }
";

/// A run that parks: its only step waits for a worker that never comes.
const PARK: &str = "name: park
version: 1
steps:
  - id: hold
    action: core.delay
    with: { duration: 1h }
    timeout: 2h
";

const FLOOR_CALLS: usize = 2000;
const FLOOR_WARMUP: usize = 200;
const LATENCY_RUNS: usize = 50;
const ORCHESTRATOR_CALLS: usize = 200;
const PROBE_CALLS: usize = 20;
const WARMUP_RUNS: usize = 20;
const THROUGHPUT_RUNS: usize = 1000;
const PARKED_RUNS: usize = 1000;
const START_OUTSTANDING_MAX: usize = 64;
const WORKERS: usize = 2;
const WORKER_CONCURRENCY: u32 = 8;
/// Size of the value in the sled floor, about one run record.
const FLOOR_VALUE_BYTES: usize = 1024;
/// Longest any one phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Targets from the design notes.
const PER_STEP_FLOOR_RATIO_MAX: f64 = 4.0;
const STEPS_PER_SECOND_MIN: f64 = 1000.0;
const RESTART_MAX: Duration = Duration::from_secs(1);

/// The orchestrator's allocator, so that the load generator, which shares the machine's cores
/// with it, spends as little of them as it can on allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("WARNING: this is a debug build; the figures are meaningless. Use --release.");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("tls") {
        tls::measure().await?.print();
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("telemetry") {
        telemetry::measure().await?.print();
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("fan-out") {
        let runs = fan_out::measure(&args[1..]).await?;
        fan_out::print(&runs);
        return Ok(());
    }
    progress("floor: gRPC round trips");
    let rtt = grpc_round_trips().await?;
    progress("floor: sled insert + flush + fdatasync");
    let flush = sled_insert_flush(true)?;
    progress("floor: sled insert + flush");
    let flush_unsynced = sled_insert_flush(false)?;
    let floor = Floor {
        rtt: rtt.median(),
        flush: flush.median(),
        flush_unsynced: flush_unsynced.median(),
    };

    progress("alerts");
    let alerts = alerts::measure().await?;
    if std::env::args().nth(1).as_deref() == Some("alerts") {
        alerts.print(floor.per_step());
        return Ok(());
    }
    progress("building and starting the orchestrator and the workers");
    let Workload {
        latency,
        inside,
        probes,
        throughput,
        throughput_unserved,
    } = run_workload(&[], true, None, &[]).await?;
    progress("the same without fdatasync (--durability process-crash)");
    let unsynced = run_workload(&["--durability", "process-crash"], false, None, &[]).await?;
    progress("restart with parked runs");
    let restart = restart_to_serving().await?;
    let mut parked = Vec::new();
    for count in parked::TIMER_PARKED_RUNS {
        progress(&format!("{count} runs parked on a 1-hour timer"));
        parked.push(parked_on_timers(count).await?);
    }
    let big = fan_out::measure(&[]).await?;
    let tls = tls::measure().await?;
    let telemetry = telemetry::measure().await?;

    Report {
        rtt,
        flush,
        flush_unsynced,
        floor,
        latency,
        inside,
        probes,
        throughput,
        throughput_unserved,
        unsynced,
        restart,
    }
    .print();
    for parked in &parked {
        parked.print();
    }
    fan_out::print(&big);
    alerts.print(floor.per_step());
    tls.print();
    telemetry.print();
    Ok(())
}

fn progress(what: &str) {
    eprintln!("riposte-bench: {what}...");
}

// ---------------------------------------------------------------------------------------------
// Riposte under load
// ---------------------------------------------------------------------------------------------

struct Throughput {
    elapsed: Duration,
    steps: u64,
    orchestrator_cpu: Duration,
    workers_cpu: Duration,
}

impl Throughput {
    fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_per_step(&self) -> Duration {
        self.orchestrator_cpu / self.steps as u32
    }

    fn workers_cpu_per_step(&self) -> Duration {
        self.workers_cpu / self.steps as u32
    }
}

struct Workload {
    /// Per step, as the client sees it: StartRun to `run.finished` on WatchRun, / 5.
    latency: Samples,
    /// Per step, as the orchestrator records it: the run's `finished_at - created_at`, / 5.
    inside: Samples,
    /// Round trips against the orchestrator, to see where client-visible time goes.
    probes: Probes,
    throughput: Throughput,
    /// The throughput run again, with [`UNSERVED_RUNS`] tasks no worker serves queued.
    throughput_unserved: Option<Throughput>,
}

/// The per-step and throughput workloads on an orchestrator started with `args` (serving TLS
/// with certificates from `tls`, when given, its workers with `workers_args`); with `unserved`,
/// the throughput run again beside tasks no worker serves.
async fn run_workload(
    args: &[&str],
    unserved: bool,
    tls: Option<&riposte_tests::pki::Pki>,
    workers_args: &[&str],
) -> Result<Workload> {
    let mut builder = Orchestrator::builder().log("warn").args(args);
    let mut worker_args: Vec<String> = workers_args.iter().map(|a| a.to_string()).collect();
    if let Some(pki) = tls {
        let (orchestrator, worker) = tls::flags(pki);
        let orchestrator: Vec<&str> = orchestrator.iter().map(String::as_str).collect();
        builder = builder.tls(pki).args(&orchestrator);
        worker_args.extend(worker);
    }
    let orchestrator = builder.start();
    let worker_args: Vec<&str> = worker_args.iter().map(String::as_str).collect();
    let workers = start_workers(&orchestrator, &worker_args).await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, NOOP_CHAIN).await;

    progress("warm-up");
    let mut last = String::new();
    for _ in 0..WARMUP_RUNS {
        last = run_to_end(&mut client, "noop-chain").await?.0;
    }
    progress("orchestrator round trips");
    let probes = probe(&orchestrator, &mut client, &last).await?;
    progress("per-step overhead, one run at a time");
    let mut latency = Vec::with_capacity(LATENCY_RUNS);
    let mut inside = Vec::with_capacity(LATENCY_RUNS);
    for _ in 0..LATENCY_RUNS {
        let (run_id, elapsed) = run_to_end(&mut client, "noop-chain").await?;
        latency.push(elapsed / NOOP_CHAIN_STEPS);
        let run = api::get_run(&mut client, &run_id).await;
        let recorded =
            Duration::from_millis((run.finished_at_ms - run.created_at_ms).max(0) as u64);
        inside.push(recorded / NOOP_CHAIN_STEPS);
    }

    progress("throughput");
    let throughput = measure_throughput(&orchestrator, &workers, &mut client).await?;
    let throughput_unserved = match unserved {
        false => None,
        true => {
            progress("throughput beside 8,000 tasks no worker serves");
            api::apply_playbook(&mut client, UNSERVED).await;
            start_runs(&client, "unserved", UNSERVED_RUNS).await?;
            Some(measure_throughput(&orchestrator, &workers, &mut client).await?)
        }
    };
    Ok(Workload {
        latency: Samples::new(latency),
        inside: Samples::new(inside),
        probes,
        throughput,
        throughput_unserved,
    })
}

/// [`THROUGHPUT_RUNS`] runs of the chain, at most [`START_OUTSTANDING_MAX`] starts
/// outstanding, timed until the last one finished.
async fn measure_throughput(
    orchestrator: &Orchestrator,
    workers: &[Worker],
    client: &mut Operator,
) -> Result<Throughput> {
    let worker_pids: Vec<u32> = workers.iter().map(Worker::pid).collect();
    let cpu_before = cpu_time(orchestrator.pid())?;
    let workers_before = total_cpu_time(&worker_pids)?;
    let started_ms = epoch_ms();
    let ids = start_runs(client, "noop-chain", THROUGHPUT_RUNS).await?;
    let finished_ms = wait_all_finished(client, &ids).await?;
    Ok(Throughput {
        elapsed: Duration::from_millis((finished_ms - started_ms).max(1) as u64),
        steps: THROUGHPUT_RUNS as u64 * u64::from(NOOP_CHAIN_STEPS),
        orchestrator_cpu: cpu_time(orchestrator.pid())? - cpu_before,
        workers_cpu: total_cpu_time(&worker_pids)? - workers_before,
    })
}

/// [`WORKERS`] worker processes with `--concurrency` [`WORKER_CONCURRENCY`] and `args`,
/// registered with the orchestrator.
async fn start_workers(orchestrator: &Orchestrator, args: &[&str]) -> Vec<Worker> {
    let workers: Vec<Worker> = (0..WORKERS)
        .map(|_| {
            Worker::builder(&orchestrator.url())
                .concurrency(WORKER_CONCURRENCY)
                .args(args)
                .log("warn")
                .start()
        })
        .collect();
    let mut client = orchestrator.client();
    for worker in &workers {
        worker.id(&mut client).await;
    }
    workers
}

fn epoch_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
}

/// Client-visible costs of single calls to the orchestrator.
struct Probes {
    /// GetRun of a finished run on a warm connection.
    get_run: Samples,
    /// WatchRun of a finished run: from the call to its first event.
    first_event: Samples,
    /// ListWorkers as the first call on a new connection (what each CLI command pays).
    first_call: Samples,
}

async fn probe(orchestrator: &Orchestrator, client: &mut Operator, run_id: &str) -> Result<Probes> {
    let mut get_run = Vec::with_capacity(ORCHESTRATOR_CALLS);
    for _ in 0..ORCHESTRATOR_CALLS {
        let started = Instant::now();
        client
            .get_run(GetRunRequest {
                run_id: run_id.into(),
            })
            .await?;
        get_run.push(started.elapsed());
    }
    let mut first_event = Vec::with_capacity(PROBE_CALLS);
    let mut first_call = Vec::with_capacity(PROBE_CALLS);
    for _ in 0..PROBE_CALLS {
        let started = Instant::now();
        let request = WatchRunRequest {
            run_id: run_id.into(),
        };
        let mut events = client.watch_run(request).await?.into_inner();
        events.next().await.context("an empty history")??;
        first_event.push(started.elapsed());

        let mut fresh = orchestrator.client();
        let started = Instant::now();
        fresh.list_workers(ListWorkersRequest {}).await?;
        first_call.push(started.elapsed());
    }
    Ok(Probes {
        get_run: Samples::new(get_run),
        first_event: Samples::new(first_event),
        first_call: Samples::new(first_call),
    })
}

/// Starts a run and follows it to `run.finished`; its id and the time from the start request
/// to the end.
async fn run_to_end(client: &mut Operator, playbook: &str) -> Result<(String, Duration)> {
    let started = Instant::now();
    let run = client
        .start_run(start_request(playbook))
        .await?
        .into_inner();
    let run_id = run.run.context("StartRun answered no run")?.run_id;
    let mut events = client
        .watch_run(WatchRunRequest {
            run_id: run_id.clone(),
        })
        .await?
        .into_inner();
    while let Some(event) = events.next().await {
        let event = event?;
        if event.kind == "run.finished" {
            if event.run_status() != RunStatus::Succeeded {
                bail!(
                    "run {run_id} ended {:?}: {}",
                    event.run_status(),
                    event.message
                );
            }
            return Ok((run_id, started.elapsed()));
        }
    }
    bail!("the history of run {run_id} ended before run.finished")
}

fn start_request(playbook: &str) -> StartRunRequest {
    StartRunRequest {
        playbook: playbook.into(),
        params_json: "{}".into(),
        ..Default::default()
    }
}

/// Starts `count` runs with at most [`START_OUTSTANDING_MAX`] StartRun calls outstanding;
/// returns their ids in the order they were started.
async fn start_runs(client: &Operator, playbook: &str, count: usize) -> Result<Vec<String>> {
    let permits = Arc::new(Semaphore::new(START_OUTSTANDING_MAX));
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..count {
        let permit = permits.clone().acquire_owned().await?;
        let mut client: OperatorClient<_> = client.clone();
        let request = start_request(playbook);
        calls.spawn(async move {
            let reply = client.start_run(request).await;
            drop(permit);
            (index, reply)
        });
    }
    let mut ids = vec![String::new(); count];
    while let Some(joined) = calls.join_next().await {
        let (index, reply) = joined?;
        let run = reply
            .context("StartRun")?
            .into_inner()
            .run
            .context("StartRun answered no run")?;
        ids[index] = run.run_id;
    }
    Ok(ids)
}

/// Waits until no run is running (one cheap ListRuns every 20 ms), checks that every run in
/// `ids` succeeded, and returns the latest `finished_at_ms` among them: the end as the
/// orchestrator recorded it, independent of how fast this client noticed.
async fn wait_all_finished(client: &mut Operator, ids: &[String]) -> Result<i64> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let request = ListRunsRequest {
            playbook: "noop-chain".into(),
            status: RunStatus::Running as i32,
            limit: 1,
            ..Default::default()
        };
        if client
            .list_runs(request)
            .await?
            .into_inner()
            .runs
            .is_empty()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("runs still running after {PHASE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let request = ListRunsRequest {
        limit: 1000,
        ..Default::default()
    };
    let runs = client.list_runs(request).await?.into_inner().runs;
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut finished_ms = 0;
    let mut seen = 0;
    for run in runs.iter().filter(|r| wanted.contains(r.run_id.as_str())) {
        if run.status() != RunStatus::Succeeded {
            bail!("run {} ended {:?}: {}", run.run_id, run.status(), run.error);
        }
        finished_ms = finished_ms.max(run.finished_at_ms);
        seen += 1;
    }
    if seen != ids.len() {
        bail!("{seen} of {} runs listed", ids.len());
    }
    Ok(finished_ms)
}

/// User plus system CPU time of a process so far, from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    // There, field 0 is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
    let after = stat
        .rsplit_once(')')
        .context("unexpected /proc stat format")?
        .1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
        .context("the clock tick rate is unknown")?;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn total_cpu_time(pids: &[u32]) -> Result<Duration> {
    pids.iter().map(|pid| cpu_time(*pid)).sum()
}

// ---------------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------------

struct Restart {
    parked: usize,
    disk_bytes: u64,
    to_address_line: Duration,
    to_list_runs: Duration,
    to_health: Duration,
    recovered: usize,
    sled_open: Duration,
}

async fn restart_to_serving() -> Result<Restart> {
    let mut orchestrator = Orchestrator::builder().log("warn").start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, PARK).await;
    let ids = start_runs(&client, "park", PARKED_RUNS).await?;
    let parked = running_runs(&mut client).await?;
    if parked != ids.len() {
        bail!("{parked} runs parked, expected {}", ids.len());
    }
    let disk_bytes = folder_bytes(&orchestrator.data_dir())?;

    // First restart: until ListRuns answers.
    orchestrator.kill9();
    let started = Instant::now();
    orchestrator.restart();
    let to_address_line = started.elapsed();
    let mut client = orchestrator.client();
    let first = ListRunsRequest {
        limit: 1,
        ..Default::default()
    };
    retry_until_ok(async || client.list_runs(first.clone()).await.map(|_| ())).await?;
    let to_list_runs = started.elapsed();
    let recovered = running_runs(&mut client).await?;

    // Second restart: until the health check answers SERVING.
    orchestrator.kill9();
    let started = Instant::now();
    orchestrator.restart();
    let mut health = HealthClient::new(api::channel(&orchestrator.url()));
    retry_until_ok(async || {
        let reply = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        match reply.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(tonic::Status::unavailable(format!("{other:?}"))),
        }
    })
    .await?;
    let to_health = started.elapsed();

    orchestrator.kill9();
    let sled_open = sled_open(&orchestrator.data_dir())?;
    Ok(Restart {
        parked,
        disk_bytes,
        to_address_line,
        to_list_runs,
        to_health,
        recovered,
        sled_open,
    })
}

async fn running_runs(client: &mut Operator) -> Result<usize> {
    let request = ListRunsRequest {
        status: RunStatus::Running as i32,
        limit: 1000,
        ..Default::default()
    };
    Ok(client.list_runs(request).await?.into_inner().runs.len())
}

/// Calls `call` until it succeeds, at most [`PHASE_TIMEOUT`]; a refused connection (the server
/// is not bound yet) is retried after 1 ms so that the measurement stays fine-grained.
async fn retry_until_ok(mut call: impl AsyncFnMut() -> Result<(), tonic::Status>) -> Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(status) if Instant::now() > deadline => bail!("never answered: {status}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

fn folder_bytes(path: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            folder_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
