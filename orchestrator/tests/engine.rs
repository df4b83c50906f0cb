//! The middle tier: the orchestrator's engine behind its request door, with a real sled store
//! in a temporary folder and a manual clock, driven by requests alone (no gRPC, no processes).
//! The test plays the worker (register, poll, report) and moves time; each scenario asserts
//! the transcript an operator would read: the run's history with times relative to its start,
//! the alerts' fates, the schedule's ledger.

use std::sync::Arc;
use std::time::Duration;

use expect_test::{Expect, expect};
use riposte_orchestrator::clock::Clock;
use riposte_orchestrator::door::{
    Caller, Node, Request, alerts, playbooks, runs, schedules, sources, workers,
};
use riposte_orchestrator::engine::pollers::{Claimed, Page, PollClaim};
use riposte_orchestrator::engine::{Engine, Settings, StartRequest};
use riposte_orchestrator::pollers::Poller;
use riposte_orchestrator::store::{Options, RunFilter, Store};
use riposte_scheduler::guard::Policy;
use riposte_scheduler::state::{HistoryEvent, RunId, RunStatus};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// 2026-01-05T08:00:00Z, a Monday: where every manual clock starts.
const START_MS: i64 = 1_767_600_000_000;
const LEASE: Duration = Duration::from_secs(10);
const WORKER: &str = "w1";

/// The engine behind its door, on a store in a temporary folder, with a manual clock.
struct Bench {
    node: Arc<Node>,
    clock: Clock,
    dir: tempfile::TempDir,
    pollers: Vec<Poller>,
}

impl Bench {
    fn open() -> Bench {
        Bench::with_pollers(Vec::new())
    }

    /// [`Bench::open`] with these alert pollers configured.
    fn with_pollers(pollers: Vec<Poller>) -> Bench {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let clock = Clock::manual(START_MS);
        let store = Store::open(dir.path(), Options::default()).expect("the store opens");
        let node = open_node(store, &clock, &pollers);
        Bench {
            node,
            clock,
            dir,
            pollers,
        }
    }

    /// The orchestrator stopped and started again on the same folder, `down` later.
    async fn restart(self, down: Duration) -> Bench {
        self.restart_with(down, async || {}).await
    }

    /// [`Bench::restart`], doing `meanwhile` while the orchestrator is down.
    async fn restart_with(self, down: Duration, meanwhile: impl AsyncFnOnce()) -> Bench {
        let Bench {
            node,
            clock,
            dir,
            pollers,
        } = self;
        node.flush().await.expect("flushed");
        drop(node);
        clock.advance(down);
        meanwhile().await;
        // The store's flusher lets go of the folder once the last handle is gone: try for up
        // to 10 s.
        let mut tries = 0;
        let store = loop {
            match Store::open(dir.path(), Options::default()) {
                Ok(store) => break store,
                Err(e) if tries == 2_000 => panic!("the store opens again: {e}"),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let node = open_node(store, &clock, &pollers);
        Bench {
            node,
            clock,
            dir,
            pollers,
        }
    }

    async fn handle<R: Request>(&self, request: R) -> R::Reply {
        match self.node.handle(Caller::Internal, request).await {
            Ok(reply) => reply,
            Err(e) => panic!("{} refused: {e}", std::any::type_name::<R>()),
        }
    }

    /// Moves time by `by`, then fires whatever fell due.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.node.tick();
    }

    async fn apply_playbook(&self, source: &str) {
        self.handle(playbooks::ApplyPlaybook {
            source: source.into(),
        })
        .await;
    }

    async fn start(&self, playbook: &str, params: Value) -> RunId {
        let Value::Object(params) = params else {
            panic!("params are an object")
        };
        let start = StartRequest {
            playbook: playbook.into(),
            version: 0,
            params,
            idempotency_key: String::new(),
            requested_by: "alice".into(),
            dry_run: false,
            trigger: Value::Null,
            trace: None,
        };
        self.handle(runs::StartRun(start)).await.run.state.id
    }

    /// Registers the test as a worker offering `actions`.
    async fn register(&self, actions: &[&str]) {
        self.handle(workers::Register {
            caller: None,
            id: WORKER.into(),
            name: WORKER.into(),
            labels: Default::default(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            concurrency: 4,
        })
        .await;
    }

    /// Takes the next task, reports `outcome` for it and answers its action.
    async fn work(&self, outcome: Result<Value, (&str, bool)>) -> String {
        let poll = workers::PollTask {
            caller: None,
            worker: WORKER.into(),
            wait: Duration::ZERO,
        };
        let task = self.handle(poll).await.expect("a task is ready");
        let report = workers::ReportResult {
            caller: None,
            worker: WORKER.into(),
            task_id: task.task_id,
            token: task.token,
            outcome: outcome.map_err(|(message, retryable)| (message.to_string(), retryable)),
        };
        self.handle(report).await;
        task.task.action
    }

    async fn nothing_to_do(&self) {
        let poll = workers::PollTask {
            caller: None,
            worker: WORKER.into(),
            wait: Duration::ZERO,
        };
        assert!(self.handle(poll).await.is_none(), "no task is ready");
    }

    async fn status(&self, run: RunId) -> RunStatus {
        self.handle(runs::GetRun { run }).await.state.status
    }

    /// The run's history as lines: `+seconds kind step[#item] (attempt)`.
    async fn transcript(&self, run: RunId) -> String {
        let mut events = self.handle(runs::WatchRun { run }).await;
        let mut lines = Vec::new();
        while let Some(event) = events.recv().await {
            lines.push(line(&event));
        }
        lines.join("\n")
    }
}

fn open_node(store: Store, clock: &Clock, pollers: &[Poller]) -> Arc<Node> {
    let settings = Settings {
        lease: LEASE,
        poll_wait_max: Duration::from_secs(1),
        platform: Default::default(),
        guard: Policy::new(vec![], &[], 1000, 24, 64, None),
        schedule_grace: Duration::from_secs(60),
        schedule_to_start: Some(Duration::from_secs(15 * 60)),
        spans: None,
        metrics: false,
        end_unoffered: false,
        pollers: pollers.to_vec(),
    };
    let engine = Engine::open(store, settings, clock.clone(), Arc::new(Notify::new()))
        .expect("the engine opens");
    // The engine's tests call as the one anonymous worker.
    let anonymous = workers::WorkerAccess::new(Default::default(), true);
    let node = Arc::new(Node::new(engine, 16, None).with_worker_access(anonymous));
    // What fell due while it was down fires at once.
    node.tick();
    node
}

fn line(event: &HistoryEvent) -> String {
    let mut line = format!("+{}s {}", (event.at_ms - START_MS) / 1000, event.kind);
    if !event.step.is_empty() {
        line.push(' ');
        line.push_str(&event.step);
        if event.item > 0 {
            line.push_str(&format!("#{}", event.item));
        }
    }
    if event.attempt > 0 {
        line.push_str(&format!(" ({})", event.attempt));
    }
    line
}

fn check(actual: &str, expected: Expect) {
    expected.assert_eq(actual);
}

const RETRY_THEN_SLEEP: &str = r#"
name: retry-then-sleep
version: 1
steps:
  - id: flaky
    action: core.noop
    retry: { attempts: 3, backoff: exponential, initial: 2s, max: 1m }
  - id: wait
    needs: [flaky]
    sleep: 1h
  - id: after
    needs: [wait]
    action: core.noop
"#;

#[tokio::test]
async fn a_run_retries_with_backoff_sleeps_an_hour_across_a_restart_and_finishes() {
    let bench = Bench::open();
    bench.apply_playbook(RETRY_THEN_SLEEP).await;
    bench.register(&["core.noop"]).await;
    let run = bench.start("retry-then-sleep", json!({})).await;

    bench.work(Err(("upstream busy", true))).await;
    bench.nothing_to_do().await;
    // The first backoff is 2 s: not yet due after 1 s.
    bench.advance(Duration::from_secs(1));
    bench.nothing_to_do().await;
    bench.advance(Duration::from_secs(1));
    bench.work(Err(("upstream busy", true))).await;
    bench.advance(Duration::from_secs(4));
    assert_eq!(bench.work(Ok(json!({"ok": true}))).await, "core.noop");
    bench.nothing_to_do().await;

    // The sleep is a durable timer: the orchestrator is down for 30 minutes of it.
    let bench = bench.restart(Duration::from_secs(30 * 60)).await;
    bench.register(&["core.noop"]).await;
    assert_eq!(bench.status(run).await, RunStatus::Running);
    bench.nothing_to_do().await;
    bench.advance(Duration::from_secs(30 * 60));
    // Silent for half an hour, the worker was forgotten; it registers again, as told.
    bench.register(&["core.noop"]).await;
    bench.work(Ok(json!({}))).await;
    assert_eq!(bench.status(run).await, RunStatus::Succeeded);

    check(
        &bench.transcript(run).await,
        expect![[r#"
            +0s run.started
            +0s step.started flaky
            +0s task.leased flaky (1)
            +0s task.failed flaky (1)
            +0s task.retry_scheduled flaky (2)
            +2s task.leased flaky (2)
            +2s task.failed flaky (2)
            +2s task.retry_scheduled flaky (3)
            +6s task.leased flaky (3)
            +6s task.succeeded flaky (3)
            +6s step.succeeded flaky
            +6s step.sleeping wait
            +3606s step.woke wait
            +3606s step.succeeded wait
            +3606s step.started after
            +3606s task.leased after (1)
            +3606s task.succeeded after (1)
            +3606s step.succeeded after
            +3606s run.finished"#]],
    );
}

const IP_ECHO: &str = r#"
name: ip-echo
version: 1
params:
  ip: { type: ip, required: true }
steps:
  - id: echo
    action: core.echo
    with: { ip: "{{ params.ip }}" }
"#;

const STORM_RULE: &str = r#"
name: brute-force
match: "alert.source == 'cef'"
playbook: ip-echo
params:
  ip: "{{ alert.entities.ips[0].address }}"
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 10m }
"#;

#[tokio::test]
async fn an_alert_storm_coalesces_into_one_run_per_address_and_records_every_alert() {
    let bench = Bench::open();
    bench.apply_playbook(IP_ECHO).await;
    let applied = bench
        .handle(alerts::ApplyRule {
            source: STORM_RULE.into(),
        })
        .await;
    assert!(matches!(applied, alerts::RuleOutcome::Applied(Some(_))));

    let mut fates = std::collections::BTreeMap::<(String, String), usize>::new();
    let mut runs = std::collections::BTreeSet::new();
    for i in 0..60 {
        // Two attackers, the second one a minute into the storm.
        let src = if i % 3 == 2 {
            "198.51.100.9"
        } else {
            "203.0.113.7"
        };
        let line = format!("CEF:0|Vendor|IDS|1.0|100|ssh brute force|8|src={src} cnt={i}");
        let ingest = alerts::IngestAlert {
            slot: bench
                .node
                .ingest_slot(alerts::Feed::Grpc)
                .expect("room in the queue"),
            source: "cef".into(),
            trace: None,
            payload: line.into_bytes().into(),
        };
        for alert in bench.handle(ingest).await {
            let fate = format!("{:?}", alert.fate);
            *fates.entry((src.to_string(), fate)).or_default() += 1;
            runs.extend(alert.run_id);
        }
        bench.advance(Duration::from_secs(1));
    }
    check(
        &format!("{fates:#?}"),
        expect![[r#"
            {
                (
                    "198.51.100.9",
                    "Deduplicated",
                ): 19,
                (
                    "198.51.100.9",
                    "Started",
                ): 1,
                (
                    "203.0.113.7",
                    "Deduplicated",
                ): 39,
                (
                    "203.0.113.7",
                    "Started",
                ): 1,
            }"#]],
    );
    assert_eq!(runs.len(), 2, "one run per address");
    let listed = bench
        .handle(runs::ListRuns {
            filter: RunFilter::default(),
            before: None,
            limit: 100,
        })
        .await;
    assert_eq!(listed.runs.len(), 2, "no other run was started");
    let stored = bench
        .handle(alerts::ListAlerts {
            before: None,
            limit: 1000,
        })
        .await
        .alerts;
    assert_eq!(stored.len(), 60, "every alert is recorded with its fate");

    // Past the window, the same address starts a new run.
    bench.advance(Duration::from_secs(10 * 60));
    let ingest = alerts::IngestAlert {
        slot: bench
            .node
            .ingest_slot(alerts::Feed::Grpc)
            .expect("room in the queue"),
        source: "cef".into(),
        trace: None,
        payload: bytes::Bytes::from_static(
            b"CEF:0|Vendor|IDS|1.0|100|ssh brute force|8|src=203.0.113.7",
        ),
    };
    let again = bench.handle(ingest).await;
    assert_eq!(format!("{:?}", again[0].fate), "Started");
    assert!(!runs.contains(&again[0].run_id.expect("a run")));
}

const TICK: &str = "name: tick\nversion: 1\nsteps:\n  - { id: a, action: core.noop }\n";

#[tokio::test]
async fn a_schedule_catches_up_after_downtime_as_its_policy_says_and_never_fires_twice() {
    let bench = Bench::open();
    bench.apply_playbook(TICK).await;
    for (name, policy) in [
        ("all", "catch_up: all\ncatch_up_max: 3"),
        ("latest", "catch_up: latest"),
        ("skip", "catch_up: skip"),
    ] {
        let source = format!(
            "name: {name}\ncron: \"*/10 * * * *\"\nplaybook: tick\n{policy}\noverlap: allow\n"
        );
        let applied = bench.handle(schedules::ApplySchedule { source }).await;
        if let schedules::ScheduleApplied::Invalid(diagnostics) = applied {
            panic!("{name}: {diagnostics:?}");
        }
    }
    // 08:10 fires on time for every schedule.
    bench.advance(Duration::from_secs(10 * 60));

    // Down from 08:10 to 09:05: 08:20 through 09:00 (five occurrences) fall in the outage.
    let bench = bench.restart(Duration::from_secs(55 * 60)).await;
    // And a second restart decides nothing twice.
    let bench = bench.restart(Duration::from_secs(1)).await;

    let started = bench
        .handle(runs::ListRuns {
            filter: RunFilter {
                playbook: "tick".into(),
                status: None,
            },
            before: None,
            limit: 100,
        })
        .await;
    assert_eq!(
        started.runs.len(),
        3 + 3 + 1,
        "on time, caught up, and nothing twice"
    );
    let mut ledgers = Vec::new();
    for name in ["all", "latest", "skip"] {
        let entries = bench
            .handle(schedules::GetScheduleHistory {
                name: name.into(),
                before: None,
                limit: 100,
            })
            .await
            .entries;
        let mut lines: Vec<String> = entries
            .iter()
            .rev()
            .map(|e| {
                let through = e
                    .through_ms
                    .map(|t| format!(" through +{}m", (t - START_MS) / 60_000))
                    .unwrap_or_default();
                format!(
                    "  +{}m {:?}{}{}{}",
                    (e.scheduled_ms - START_MS) / 60_000,
                    e.fate,
                    if e.caught_up { " caught up" } else { "" },
                    through,
                    if e.run_id.is_some() { " run" } else { "" },
                )
            })
            .collect();
        lines.insert(0, format!("{name}:"));
        ledgers.push(lines.join("\n"));
    }
    check(
        &ledgers.join("\n"),
        expect![[r#"
            all:
              +10m Fired run
              +20m Missed caught up run
              +30m Missed caught up run
              +40m Missed caught up run
              +50m Missed
              +60m Missed
            latest:
              +10m Fired run
              +20m Missed
              +30m Missed
              +40m Missed
              +50m Missed
              +60m Missed caught up run
            skip:
              +10m Fired run
              +20m Missed
              +30m Missed
              +40m Missed
              +50m Missed
              +60m Missed"#]],
    );
}

const BLOCK: &str = r#"
name: block
version: 1
steps:
  - id: block
    action: core.noop
"#;

#[tokio::test]
async fn a_task_no_worker_offers_shows_why_it_waits_then_fails_at_schedule_to_start() {
    let bench = Bench::open();
    bench.apply_playbook(BLOCK).await;
    bench.register(&["core.echo"]).await;
    let run = bench.start("block", json!({})).await;

    let view = bench.handle(runs::GetRun { run }).await;
    assert_eq!(view.waiting, ["queued (no worker offers core.noop)"]);
    bench.advance(Duration::from_secs(15 * 60 - 1));
    assert_eq!(bench.status(run).await, RunStatus::Running);
    bench.advance(Duration::from_secs(1));
    assert_eq!(bench.status(run).await, RunStatus::Failed);
    let view = bench.handle(runs::GetRun { run }).await;
    assert_eq!(view.waiting, [""], "a failed step waits for nothing");
    assert_eq!(
        view.state.error.as_deref(),
        Some(
            "step block failed: not started within 15m (schedule_to_start): no worker took its \
             core.noop task"
        )
    );
    check(
        &bench.transcript(run).await,
        expect![[r#"
            +0s run.started
            +0s step.started block
            +900s task.start_timed_out block (1)
            +900s step.failed block
            +900s run.finished"#]],
    );
}

const NOOP: &str = r#"
name: noop
version: 1
steps:
  - id: only
    action: core.noop
"#;

const PARKED: &str = r#"
name: parked
version: 1
steps:
  - id: nap
    sleep: 30d
"#;

impl Bench {
    /// Every page of ListRuns with `filter`, `limit` runs a page: the run ids in order.
    async fn all_pages(&self, filter: RunFilter, limit: usize) -> Vec<Vec<RunId>> {
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let list = runs::ListRuns {
                filter: filter.clone(),
                before,
                limit,
            };
            let page = self.handle(list).await;
            pages.push(page.runs.iter().map(|v| v.state.id).collect());
            match page.next {
                Some(next) => before = Some(next),
                None => return pages,
            }
        }
    }
}

#[tokio::test]
async fn runs_list_page_by_page_through_their_indexes_and_finished_ones_are_pruned() {
    let bench = Bench::open();
    bench.apply_playbook(NOOP).await;
    bench.apply_playbook(PARKED).await;
    bench.register(&["core.noop"]).await;
    let mut finished = Vec::new();
    for _ in 0..5 {
        finished.push(bench.start("noop", json!({})).await);
        bench.work(Ok(json!({}))).await;
        bench.advance(Duration::from_millis(10));
    }
    let parked = [
        bench.start("parked", json!({})).await,
        bench.start("parked", json!({})).await,
    ];

    let noop = RunFilter {
        playbook: "noop".into(),
        status: None,
    };
    let pages = bench.all_pages(noop.clone(), 2).await;
    let newest_first: Vec<RunId> = finished.iter().rev().copied().collect();
    assert_eq!(pages.concat(), newest_first, "every run once, newest first");
    assert_eq!(pages[0].len(), 2);
    let running = RunFilter {
        playbook: String::new(),
        status: Some(RunStatus::Running),
    };
    let parked_newest_first: Vec<RunId> = parked.iter().rev().copied().collect();
    assert_eq!(
        bench.all_pages(running, 10).await.concat(),
        parked_newest_first
    );

    // Two days on, the finished runs are past a one-day retention; the running ones stay.
    bench.advance(Duration::from_secs(2 * 86_400));
    let removed = bench
        .node
        .prune_runs(Duration::from_secs(86_400), 1_000_000)
        .await
        .expect("pruned");
    assert_eq!(removed, 5);
    assert!(bench.all_pages(noop, 10).await.concat().is_empty());
    let over_count = bench
        .node
        .prune_runs(Duration::from_secs(86_400), 1)
        .await
        .expect("pruned");
    assert_eq!(over_count, 0, "running runs are kept, whatever the count");
    let gone = bench
        .node
        .handle(Caller::Internal, runs::GetRun { run: finished[0] })
        .await;
    assert!(gone.is_err(), "a pruned run is gone");
    assert_eq!(bench.status(parked[0]).await, RunStatus::Running);
}

#[tokio::test]
async fn a_data_dir_of_the_previous_format_gets_its_index_on_open() {
    let bench = Bench::open();
    bench.apply_playbook(NOOP).await;
    bench.register(&["core.noop"]).await;
    let run = bench.start("noop", json!({})).await;
    bench.work(Ok(json!({}))).await;
    let dir = bench.dir.path().to_path_buf();
    let bench = bench
        .restart_with(Duration::ZERO, async || {
            // What the previous format wrote: no playbook index, no format version. The
            // store's flusher lets go of the folder once the last handle is gone.
            #[expect(
                clippy::disallowed_methods,
                reason = "the test writes a data dir as the previous format did"
            )]
            let db = loop {
                match sled::open(&dir) {
                    Ok(db) => break db,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            };
            db.drop_tree("run_playbooks").expect("dropped");
            db.open_tree("settings")
                .expect("settings")
                .remove("format")
                .expect("removed");
            db.flush().expect("flushed");
        })
        .await;
    let noop = RunFilter {
        playbook: "noop".into(),
        status: None,
    };
    assert_eq!(bench.all_pages(noop, 10).await.concat(), [run]);
}

#[tokio::test]
async fn a_worker_without_a_heartbeat_for_a_lease_is_fenced_and_told_why_until_it_registers() {
    let bench = Bench::open();
    bench.apply_playbook(NOOP).await;
    bench.register(&["core.noop"]).await;
    bench.advance(LEASE + Duration::from_secs(1));
    let poll = workers::PollTask {
        caller: None,
        worker: WORKER.into(),
        wait: Duration::ZERO,
    };
    let refused = bench
        .node
        .handle(Caller::Internal, poll)
        .await
        .expect_err("a fenced worker");
    assert_eq!(
        refused.to_string(),
        "worker w1 is not registered: it was fenced after 10s without a heartbeat (its leases \
         go to others); register again"
    );
    bench.register(&["core.noop"]).await;
    let run = bench.start("noop", json!({})).await;
    bench.work(Ok(json!({}))).await;
    assert_eq!(bench.status(run).await, RunStatus::Succeeded);
}

const WINDOWED: &str = r#"
name: windowed
version: 1
steps:
  - id: patch
    for_each: "{{ ['web-1', 'web-2', 'web-3'] }}"
    action: core.echo
    with: { host: "{{ item }}" }
    waves: { canary: 1, batch: 1, window: "mon 08:00-08:01" }
"#;

impl Bench {
    /// Takes the next task and works on it for `busy` (heartbeating its lease), then reports
    /// success.
    async fn work_for(&self, busy: Duration) {
        let poll = workers::PollTask {
            caller: None,
            worker: WORKER.into(),
            wait: Duration::ZERO,
        };
        let task = self.handle(poll).await.expect("a task is ready");
        let mut left = busy;
        while !left.is_zero() {
            let step = left.min(Duration::from_secs(5));
            self.advance(step);
            left -= step;
            let heartbeat = workers::Heartbeat {
                caller: None,
                worker: WORKER.into(),
                held: vec![(task.task_id.clone(), task.token)],
            };
            assert!(self.handle(heartbeat).await.is_empty(), "the lease holds");
        }
        let report = workers::ReportResult {
            caller: None,
            worker: WORKER.into(),
            task_id: task.task_id,
            token: task.token,
            outcome: Ok(json!({})),
        };
        self.handle(report).await;
    }
}

/// A three-wave rollout whose maintenance window closes while its first wave is still
/// patching: that host finishes, the second wave is held (shown on the step, durable across a
/// restart) and starts when the window opens again a week later; the third follows inside it.
#[tokio::test]
async fn a_rollout_holds_its_next_wave_outside_the_window_and_goes_on_at_the_next_opening() {
    let bench = Bench::open();
    bench.apply_playbook(WINDOWED).await;
    bench.register(&["core.echo"]).await;
    let run = bench.start("windowed", json!({})).await;

    bench.work_for(Duration::from_secs(90)).await;
    bench.nothing_to_do().await;
    let view = bench.handle(runs::GetRun { run }).await;
    assert_eq!(
        view.waiting,
        ["next wave held for its maintenance window until 2026-01-12T08:00:00.000Z"]
    );
    assert_eq!(view.state.status, RunStatus::Running);

    let bench = bench.restart(Duration::from_secs(24 * 3600)).await;
    bench.register(&["core.echo"]).await;
    bench.nothing_to_do().await;
    bench.advance(Duration::from_secs(6 * 24 * 3600 - 90 - 1));
    bench.register(&["core.echo"]).await;
    bench.nothing_to_do().await;
    bench.advance(Duration::from_secs(1));
    bench.register(&["core.echo"]).await;
    bench.work_for(Duration::from_secs(10)).await;
    bench.work_for(Duration::from_secs(10)).await;
    assert_eq!(bench.status(run).await, RunStatus::Succeeded);
    check(
        &bench.transcript(run).await,
        expect![[r#"
            +0s run.started
            +0s step.started patch
            +0s wave.started patch
            +0s task.leased patch (1)
            +90s task.succeeded patch (1)
            +90s wave.held patch
            +604800s wave.released patch
            +604800s wave.started patch
            +604800s task.leased patch#1 (1)
            +604810s task.succeeded patch#1 (1)
            +604810s wave.started patch
            +604810s task.leased patch#2 (1)
            +604820s task.succeeded patch#2 (1)
            +604820s step.succeeded patch
            +604820s run.finished"#]],
    );
}

/// A Graph security alert as a poller hands it over, last updated at `updated`.
fn graph_alert(id: &str, updated: &str) -> Vec<u8> {
    let alert = json!({"id": id, "title": format!("alert {id}"), "status": "new", "lastUpdateDateTime": updated});
    serde_json::to_vec(&alert).unwrap()
}

impl Bench {
    async fn claim_poll(&self) -> PollClaim {
        let claim = sources::ClaimPoll {
            caller: None,
            worker: WORKER.into(),
        };
        match self.handle(claim).await {
            Claimed::Poll(claim) => *claim,
            Claimed::AskAgain(wait) => panic!("no poll, ask again in {wait:?}"),
        }
    }

    /// Hands over page `page` of `claim`: its answer, or the refusal's message.
    async fn page(
        &self,
        claim: &PollClaim,
        token: u64,
        page: u32,
        items: &[Vec<u8>],
        more: bool,
    ) -> Result<String, String> {
        let report = sources::ReportPage {
            caller: None,
            worker: WORKER.into(),
            poller: claim.poller.clone(),
            token,
            page,
            outcome: Page::Items {
                items: items.to_vec(),
                more,
            },
        };
        match self.node.handle(Caller::Internal, report).await {
            Ok(taken) => Ok(format!(
                "ingested {}, already seen {}, go on {}",
                taken.ingested, taken.already_seen, taken.go_on
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[tokio::test]
async fn a_polled_page_is_taken_once_and_a_lapsed_or_stale_claim_writes_nothing() {
    let pollers = riposte_orchestrator::pollers::parse(
        "pollers:\n  - name: xdr\n    kind: defender_alerts\n    every: 1m\n    settle: 1m\n    look_back: 1h\n    timeout: 30s\n",
    )
    .unwrap();
    let bench = Bench::with_pollers(pollers);
    bench.register(&["defender.list_alerts"]).await;
    let first = bench.claim_poll().await;
    check(
        &first.input.to_string(),
        expect![[
            r#"{"modified_from":"2026-01-05T07:00:00.000Z","modified_to":"2026-01-05T07:59:00.000Z","page_size":50}"#
        ]],
    );
    let a1 = graph_alert("a1", "2026-01-05T07:10:00.1234567Z");
    let a2 = graph_alert("a2", "2026-01-05T07:20:00Z");
    let token = first.token;
    let answers = [
        bench
            .page(&first, token, 0, &[a1.clone(), a2.clone()], true)
            .await,
        // Sent again (its answer was lost): taken already, nothing written.
        bench
            .page(&first, token, 0, &[a1.clone(), a2.clone()], true)
            .await,
        bench.page(&first, token, 2, &[], false).await,
        bench.page(&first, token + 1, 1, &[], false).await,
    ];
    check(
        &format!("{answers:#?}"),
        expect![[r#"
            [
                Ok(
                    "ingested 2, already seen 0, go on true",
                ),
                Ok(
                    "ingested 0, already seen 0, go on true",
                ),
                Err(
                    "page 2 of poller `xdr` comes before page 1",
                ),
                Err(
                    "poller `xdr` is not held by this claim (it lapsed, or the orchestrator restarted); the next claim starts again from the stored cursor",
                ),
            ]"#]],
    );
    // The worker dies: its claim lapses after the page's timeout and a lease; the next claim
    // lists the same window again (Graph lists in no order: the cursor waits for the end).
    bench.advance(Duration::from_secs(41));
    bench.register(&["defender.list_alerts"]).await;
    let second = bench.claim_poll().await;
    assert_eq!(second.input["modified_from"], first.input["modified_from"]);
    assert!(second.token > first.token);
    let late = bench.page(&first, first.token, 1, &[], false).await;
    let a2_changed = graph_alert("a2", "2026-01-05T07:30:00Z");
    let again = bench
        .page(&second, second.token, 0, &[a1, a2_changed], false)
        .await;
    check(
        &format!("{late:?}\n{again:?}"),
        expect![[r#"
        Err("poller `xdr` is not held by this claim (it lapsed, or the orchestrator restarted); the next claim starts again from the stored cursor")
        Ok("ingested 1, already seen 1, go on false")"#]],
    );

    let bench = bench.restart(Duration::from_secs(1)).await;
    let (sources, _) = bench.handle(sources::ListAlertSources).await;
    let state = &sources[0].state;
    let alerts = bench
        .handle(alerts::ListAlerts {
            before: None,
            limit: 0,
        })
        .await
        .alerts;
    let mut seen: Vec<String> = alerts
        .iter()
        .map(|a| format!("{} revision {:?}", a.alert.id, a.alert.revision))
        .collect();
    seen.sort();
    check(
        &format!(
            "{seen:#?}\ncursor {:?}, alerts {}, revisions {}",
            state.cursor_ms.map(|c| c - START_MS),
            state.alerts,
            state.revisions
        ),
        expect![[r#"
            [
                "a1 revision Some(1)",
                "a2 revision Some(1)",
                "a2 revision Some(2)",
            ]
            cursor Some(-19000), alerts 2, revisions 1"#]],
    );
}
