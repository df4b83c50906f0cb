//! Cron schedules end to end: a schedule fires runs by itself, an operator triggers, pauses
//! and resumes it, an invalid one is refused with positions; after a `kill -9` kept down
//! across several fire times, each catch-up policy records exactly what it documents and no
//! scheduled instant ever gets two runs; a run longer than the period is not overlapped under
//! `skip`, and under `queue_one` exactly one occurrence waits for it and starts when it ends.

use std::collections::BTreeMap;
use std::time::Duration;

use riposte_proto::v1::{
    ApplyScheduleRequest, GetScheduleHistoryRequest, LedgerEntry, ListRunsRequest,
    ListSchedulesRequest, Run, ScheduleInfo,
};
use riposte_tests::api::{self, Operator};
use riposte_tests::response::{now_ms, wait_wall_clock_past};
use riposte_tests::{Orchestrator, Worker, wait_for, wait_until};

const ECHO: &str = r#"
name: beat-echo
version: 1
steps:
  - id: say
    action: core.echo
    with: { message: "tick" }
"#;

const SLOW: &str = r#"
name: slow
version: 1
steps:
  - id: hold
    action: core.delay
    with: { duration: 5s }
"#;

/// Long enough for several 2-second occurrences and a restart.
const FIRE_TIMEOUT: Duration = Duration::from_secs(20);
/// Downtime: at least three 2-second occurrences fall strictly inside it, past the grace.
const DOWNTIME_MS: i64 = 9_000;
/// The orchestrator's `--schedule-grace` in these tests.
const GRACE_MS: i64 = 1_000;

fn every_two_seconds(name: &str, playbook: &str, extra: &str) -> String {
    format!("name: {name}\ncron: \"*/2 * * * * *\"\nplaybook: {playbook}\n{extra}")
}

async fn apply(client: &mut Operator, source: &str) -> ScheduleInfo {
    let reply = client
        .apply_schedule(ApplyScheduleRequest {
            source: source.into(),
        })
        .await
        .unwrap_or_else(|status| panic!("ApplySchedule refused: {status:?}"))
        .into_inner();
    assert!(reply.diagnostics.is_empty(), "{:?}", reply.diagnostics);
    reply.schedule.expect("the stored schedule")
}

async fn history(client: &mut Operator, name: &str) -> Vec<LedgerEntry> {
    client
        .get_schedule_history(GetScheduleHistoryRequest {
            name: name.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("GetScheduleHistory refused: {status:?}"))
        .into_inner()
        .entries
}

async fn schedule(client: &mut Operator, name: &str) -> ScheduleInfo {
    client
        .list_schedules(ListSchedulesRequest {})
        .await
        .expect("ListSchedules")
        .into_inner()
        .schedules
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("schedule {name} listed"))
}

async fn runs_of(client: &mut Operator, playbook: &str) -> Vec<Run> {
    client
        .list_runs(ListRunsRequest {
            playbook: playbook.into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("ListRuns")
        .into_inner()
        .runs
}

/// Waits until the ledger of `name` holds an entry matching `wanted`; answers the ledger.
async fn wait_entry(
    client: &mut Operator,
    name: &str,
    what: &str,
    wanted: impl Fn(&LedgerEntry) -> bool,
) -> Vec<LedgerEntry> {
    wait_for(what, FIRE_TIMEOUT, async || {
        let entries = history(client, name).await;
        if entries.iter().any(&wanted) {
            Ok(entries)
        } else {
            Err(format!("{entries:#?}"))
        }
    })
    .await
}

fn fired(entry: &LedgerEntry) -> bool {
    entry.fate == "fired" && !entry.manual
}

/// Every run of the schedule's runs is the one its ledger names, once per scheduled instant.
async fn assert_one_run_per_instant(client: &mut Operator, name: &str, playbook: &str) {
    let entries = history(client, name).await;
    let runs: Vec<Run> = runs_of(client, playbook)
        .await
        .into_iter()
        .filter(|r| r.requested_by == format!("service:schedule/{name}"))
        .collect();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        *per_key.entry(run.idempotency_key.clone()).or_default() += 1;
    }
    assert!(
        per_key.values().all(|n| *n == 1),
        "one run per scheduled instant: {per_key:#?}"
    );
    let with_run: Vec<&LedgerEntry> = entries.iter().filter(|e| !e.run_id.is_empty()).collect();
    assert_eq!(with_run.len(), runs.len(), "{entries:#?}\n{per_key:#?}");
    for entry in with_run {
        let key = match entry.manual {
            true => format!("schedule:{name}:manual:{}", entry.scheduled_ms),
            false => format!("schedule:{name}:{}", entry.scheduled_ms),
        };
        let run = runs
            .iter()
            .find(|r| r.run_id == entry.run_id)
            .unwrap_or_else(|| panic!("the run of {entry:?} exists"));
        assert_eq!(run.idempotency_key, key);
    }
}

#[tokio::test]
async fn a_schedule_fires_by_itself_and_an_operator_triggers_pauses_and_resumes_it() {
    let orchestrator = Orchestrator::builder()
        .args(&["--schedule-grace", "1s"])
        .principal("alice", &["author"])
        .principal("bob", &["author"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 2);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ECHO).await;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("beat.yaml");
    std::fs::write(&file, every_two_seconds("beat", "beat-echo", "")).expect("written");
    let file = file.display().to_string();

    let applied = orchestrator.cli(&["schedules", "apply", &file]).await;
    assert_eq!(applied.code(), 0, "{applied}");
    assert!(
        applied.stdout.contains("applied schedule beat"),
        "{applied}"
    );

    let entries = wait_entry(&mut client, "beat", "two occurrences fired", |_| true).await;
    let entries = match entries.iter().filter(|e| fired(e)).count() >= 2 {
        true => entries,
        false => {
            wait_for("two occurrences fired", FIRE_TIMEOUT, async || {
                let entries = history(&mut client, "beat").await;
                match entries.iter().filter(|e| fired(e)).count() >= 2 {
                    true => Ok(entries),
                    false => Err(format!("{entries:#?}")),
                }
            })
            .await
        }
    };
    for entry in entries.iter().filter(|e| fired(e)) {
        assert_eq!(
            entry.scheduled_ms % 2_000,
            0,
            "on the even second: {entry:?}"
        );
        let run = api::get_run(&mut client, &entry.run_id).await;
        assert_eq!(run.requested_by, "service:schedule/beat");
        api::wait_finished(&mut client, &entry.run_id, FIRE_TIMEOUT).await;
    }
    assert!(
        entries
            .windows(2)
            .all(|w| w[0].scheduled_ms > w[1].scheduled_ms),
        "newest first: {entries:#?}"
    );

    let triggered = orchestrator
        .cli_as(
            "alice",
            &["--output", "json", "schedules", "trigger", "beat"],
        )
        .await;
    assert_eq!(triggered.code(), 0, "{triggered}");
    let manual = triggered.json();
    assert_eq!(manual["manual"], true, "{manual}");
    assert_eq!(manual["by"], "token:alice", "{manual}");
    let fate = manual["fate"].as_str().expect("a fate");
    assert!(fate == "fired" || fate == "skipped_overlap", "{manual}");
    let manual_ms = manual["scheduled_ms"].as_i64().expect("scheduled_ms");
    let entries = history(&mut client, "beat").await;
    assert!(
        entries
            .iter()
            .any(|e| e.manual && e.scheduled_ms == manual_ms && e.by == "token:alice"),
        "the manual entry is in the ledger: {entries:#?}"
    );

    let paused = orchestrator
        .cli_as(
            "bob",
            &["schedules", "pause", "beat", "--reason", "maintenance"],
        )
        .await;
    assert_eq!(paused.code(), 0, "{paused}");
    let paused_at = now_ms();
    assert!(schedule(&mut client, "beat").await.paused);
    let entries = wait_entry(
        &mut client,
        "beat",
        "an occurrence is recorded paused",
        |e| e.fate == "paused",
    )
    .await;
    assert!(
        entries
            .iter()
            .filter(|e| !e.manual && e.scheduled_ms > paused_at)
            .all(|e| e.fate == "paused" && e.run_id.is_empty()),
        "nothing fires while paused: {entries:#?}"
    );

    let resumed = orchestrator
        .cli_as("bob", &["schedules", "resume", "beat"])
        .await;
    assert_eq!(resumed.code(), 0, "{resumed}");
    let resumed_at = now_ms();
    wait_entry(&mut client, "beat", "it fires again after resume", |e| {
        fired(e) && e.scheduled_ms > resumed_at
    })
    .await;

    let listed = orchestrator.cli(&["schedules", "list"]).await;
    assert_eq!(listed.code(), 0, "{listed}");
    assert!(
        listed.stdout.contains("beat") && listed.stdout.contains("*/2 * * * * *"),
        "{listed}"
    );
    let table = orchestrator
        .cli(&["schedules", "history", "beat", "--limit", "50"])
        .await;
    assert_eq!(table.code(), 0, "{table}");
    for word in ["fired", "paused", "manual"] {
        assert!(table.stdout.contains(word), "{word} in {table}");
    }
    assert_one_run_per_instant(&mut client, "beat", "beat-echo").await;
}

#[tokio::test]
async fn an_invalid_schedule_is_refused_with_positions_and_changes_nothing() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, ECHO).await;
    let good = "name: nightly\ncron: \"30 2 * * *\"\nplaybook: beat-echo\n";
    apply(&mut client, good).await;

    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("bad.yaml");
    let bad = "name: nightly\ncron: \"61 2 * * *\"\nplaybook: beat-echo\novrlap: skip\n";
    std::fs::write(&file, bad).expect("written");
    let file = file.display().to_string();
    let refused = orchestrator.cli(&["schedules", "apply", &file]).await;
    assert_eq!(refused.code(), 1, "{refused}");
    assert!(
        refused.stderr.contains(&format!("{file}:2:")),
        "the cron problem with its line: {refused}"
    );
    assert!(
        refused.stderr.contains(&format!("{file}:4:1:")),
        "the unknown field with line and column: {refused}"
    );
    let json = orchestrator
        .cli(&["--output", "json", "schedules", "apply", &file])
        .await;
    assert_eq!(json.code(), 1, "{json}");
    let diagnostics = json.json()[0]["diagnostics"]
        .as_array()
        .cloned()
        .expect("diagnostics");
    assert!(diagnostics.len() >= 2, "every problem: {diagnostics:?}");
    assert!(
        diagnostics
            .iter()
            .all(|d| d["line"].as_u64().unwrap_or(0) > 0)
    );

    let kept = schedule(&mut client, "nightly").await;
    assert_eq!(kept.cron, "30 2 * * *", "the stored schedule is unchanged");
    let missing = "name: orphan\ncron: \"* * * * *\"\nplaybook: no-such-playbook\n";
    let status = client
        .apply_schedule(ApplyScheduleRequest {
            source: missing.into(),
        })
        .await
        .expect_err("a schedule of a missing playbook is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let listed = client
        .list_schedules(ListSchedulesRequest {})
        .await
        .expect("ListSchedules")
        .into_inner()
        .schedules;
    assert_eq!(listed.len(), 1, "{listed:?}");
}

/// Missed entries strictly inside the downtime (past the grace when the orchestrator came
/// back), oldest first.
fn missed_in(entries: &[LedgerEntry], down_ms: i64, up_ms: i64) -> Vec<LedgerEntry> {
    let mut inside: Vec<LedgerEntry> = entries
        .iter()
        .filter(|e| !e.manual && e.scheduled_ms > down_ms && e.scheduled_ms < up_ms - GRACE_MS)
        .cloned()
        .collect();
    inside.sort_by_key(|e| e.scheduled_ms);
    inside
}

#[tokio::test]
async fn after_downtime_each_catch_up_policy_records_what_it_documents_and_never_fires_twice() {
    let mut orchestrator = Orchestrator::builder()
        .args(&["--schedule-grace", "1s"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ECHO).await;
    apply(
        &mut client,
        &every_two_seconds("skip", "beat-echo", "catch_up: skip\n"),
    )
    .await;
    // `allow`: a run fired just before the kill may still be active after the restart, and
    // under `skip` it would (as documented) skip the catch-up too.
    let latest = "catch_up: latest\noverlap: allow\n";
    apply(
        &mut client,
        &every_two_seconds("latest", "beat-echo", latest),
    )
    .await;
    let all = "catch_up: all\ncatch_up_max: 2\noverlap: allow\n";
    apply(&mut client, &every_two_seconds("all", "beat-echo", all)).await;
    for name in ["skip", "latest", "all"] {
        wait_entry(&mut client, name, "the schedule fired once", fired).await;
    }

    orchestrator.kill9();
    let down_ms = now_ms();
    wait_wall_clock_past(down_ms + DOWNTIME_MS).await;
    let up_ms = now_ms();
    orchestrator.restart();
    orchestrator.wait_serving().await;
    for name in ["skip", "latest", "all"] {
        wait_until("the downtime is planned", FIRE_TIMEOUT, async || {
            schedule(&mut client, name).await.cursor_ms >= up_ms
        })
        .await;
    }

    let skip = history(&mut client, "skip").await;
    let missed = missed_in(&skip, down_ms, up_ms);
    assert!(
        missed.len() >= 3,
        "three fire times passed while down: {skip:#?}"
    );
    assert!(
        missed
            .iter()
            .all(|e| e.fate == "missed" && !e.caught_up && e.run_id.is_empty()),
        "skip starts none of them: {skip:#?}"
    );
    assert!(skip.iter().all(|e| !e.caught_up), "{skip:#?}");

    let latest = history(&mut client, "latest").await;
    let missed = missed_in(&latest, down_ms, up_ms);
    assert!(missed.len() >= 3, "{latest:#?}");
    assert!(missed.iter().all(|e| e.fate == "missed"), "{latest:#?}");
    let caught: Vec<&LedgerEntry> = latest.iter().filter(|e| e.caught_up).collect();
    assert_eq!(caught.len(), 1, "latest starts exactly one: {latest:#?}");
    let newest_missed = latest
        .iter()
        .filter(|e| e.fate == "missed")
        .map(|e| e.scheduled_ms)
        .max();
    assert_eq!(Some(caught[0].scheduled_ms), newest_missed, "{latest:#?}");
    assert!(!caught[0].run_id.is_empty(), "{latest:#?}");

    let all = history(&mut client, "all").await;
    let missed = missed_in(&all, down_ms, up_ms);
    assert!(missed.len() >= 3, "{all:#?}");
    let mut every_missed: Vec<&LedgerEntry> = all.iter().filter(|e| e.fate == "missed").collect();
    every_missed.sort_by_key(|e| e.scheduled_ms);
    let caught: Vec<bool> = every_missed.iter().map(|e| e.caught_up).collect();
    let mut expected = vec![false; caught.len()];
    expected[0] = true;
    expected[1] = true;
    assert_eq!(caught, expected, "the two oldest are caught up: {all:#?}");
    assert!(
        every_missed
            .iter()
            .all(|e| e.caught_up != e.run_id.is_empty()),
        "caught up ones have a run, the rest none: {all:#?}"
    );

    for name in ["skip", "latest", "all"] {
        assert_one_run_per_instant(&mut client, name, "beat-echo").await;
        wait_entry(&mut client, name, "it fires again after the restart", |e| {
            fired(e) && e.scheduled_ms > up_ms
        })
        .await;
    }
    // The restart again, before any new fire time: nothing decided is decided twice.
    let before: Vec<LedgerEntry> = history(&mut client, "all").await;
    orchestrator.restart();
    orchestrator.wait_serving().await;
    let after = history(&mut client, "all").await;
    for entry in &before {
        assert!(
            after.iter().any(|e| e == entry),
            "the ledger keeps {entry:?} as it was"
        );
    }
    for name in ["skip", "latest", "all"] {
        assert_one_run_per_instant(&mut client, name, "beat-echo").await;
    }
}

/// An orchestrator and a worker with the schedule `name` firing the 5 s `slow` playbook every
/// 2 seconds under `overlap`.
async fn slow_every_two_seconds(name: &str, overlap: &str) -> (Orchestrator, Worker, Operator) {
    let orchestrator = Orchestrator::builder()
        .args(&["--schedule-grace", "1s"])
        .start();
    let worker = Worker::start(&orchestrator.url(), &[], 4);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, SLOW).await;
    let extra = format!("overlap: {overlap}\n");
    apply(&mut client, &every_two_seconds(name, "slow", &extra)).await;
    (orchestrator, worker, client)
}

#[tokio::test]
async fn a_run_longer_than_the_period_is_not_overlapped_under_skip() {
    let (_orchestrator, _worker, mut client) = slow_every_two_seconds("slow", "skip").await;

    let entries = wait_for(
        "two skipped, then a second fire",
        FIRE_TIMEOUT,
        async || {
            let entries = history(&mut client, "slow").await;
            match entries.iter().filter(|e| fired(e)).count() >= 2 {
                true => Ok(entries),
                false => Err(format!("{entries:#?}")),
            }
        },
    )
    .await;
    let mut oldest_first = entries.clone();
    oldest_first.sort_by_key(|e| e.scheduled_ms);
    let first = oldest_first.iter().position(fired).expect("a first fire");
    let second = first
        + 1
        + oldest_first[first + 1..]
            .iter()
            .position(fired)
            .expect("a second fire");
    let between = &oldest_first[first + 1..second];
    assert!(
        between.len() >= 2,
        "at least two occurrences while the 5 s run ran: {entries:#?}"
    );
    assert!(
        between
            .iter()
            .all(|e| e.fate == "skipped_overlap" && e.run_id.is_empty()),
        "{entries:#?}"
    );
    let first_run = api::get_run(&mut client, &oldest_first[first].run_id).await;
    assert!(
        first_run.finished_at_ms > 0
            && first_run.finished_at_ms <= oldest_first[second].scheduled_ms + GRACE_MS,
        "the second fire came after the first run ended: {first_run:?}"
    );
    assert!(
        between
            .iter()
            .all(|e| e.scheduled_ms < first_run.finished_at_ms),
        "skipped only while the run was active: {entries:#?}"
    );
    assert_one_run_per_instant(&mut client, "slow", "slow").await;
}

#[tokio::test]
async fn under_queue_one_one_occurrence_waits_for_the_long_run_and_starts_when_it_ends() {
    let (_orchestrator, _worker, mut client) = slow_every_two_seconds("queued", "queue_one").await;

    let entries = wait_for(
        "a fire, then a queued occurrence that got its run",
        FIRE_TIMEOUT,
        async || {
            let entries = history(&mut client, "queued").await;
            let started_queued = entries
                .iter()
                .any(|e| e.fate == "queued" && !e.run_id.is_empty());
            match started_queued {
                true => Ok(entries),
                false => Err(format!("{entries:#?}")),
            }
        },
    )
    .await;
    let mut oldest_first = entries.clone();
    oldest_first.sort_by_key(|e| e.scheduled_ms);
    let first = oldest_first.iter().position(fired).expect("a first fire");
    let queued = first
        + 1
        + oldest_first[first + 1..]
            .iter()
            .position(|e| e.fate == "queued")
            .expect("a queued occurrence after the first fire");
    assert_eq!(
        queued,
        first + 1,
        "the next occurrence is the one held: {entries:#?}"
    );
    let skipped: Vec<_> = oldest_first[queued + 1..]
        .iter()
        .take_while(|e| e.fate != "fired")
        .collect();
    assert!(
        !skipped.is_empty()
            && skipped
                .iter()
                .all(|e| e.fate == "skipped_overlap" && e.run_id.is_empty()),
        "with one held, the others are skipped: {entries:#?}"
    );
    let first_run = api::get_run(&mut client, &oldest_first[first].run_id).await;
    let queued_run = api::get_run(&mut client, &oldest_first[queued].run_id).await;
    assert!(
        first_run.finished_at_ms > 0 && queued_run.created_at_ms >= first_run.finished_at_ms,
        "the held run started only once the first had ended: {first_run:?} {queued_run:?}"
    );
    assert!(
        queued_run.created_at_ms - first_run.finished_at_ms < 2_000,
        "and as soon as it ended, not at a later occurrence: {first_run:?} {queued_run:?}"
    );
    assert_one_run_per_instant(&mut client, "queued", "slow").await;
}
