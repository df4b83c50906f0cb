//! Unit tests of the store: what is written together, what is pruned, what a payload costs.

use super::*;

fn entry(scheduled_ms: i64, manual: bool, fate: LedgerFate) -> LedgerEntry {
    LedgerEntry {
        scheduled_ms,
        manual,
        fate,
        caught_up: false,
        through_ms: None,
        run_id: None,
        error: String::new(),
        by: String::new(),
        recorded_ms: 0,
    }
}

fn write(store: &Store, name: &str, cursor_ms: i64, entries: &[LedgerEntry]) -> Seq {
    let state = ScheduleState {
        cursor_ms,
        ..ScheduleState::default()
    };
    let write = ScheduleWrite {
        name,
        state: &state,
        entries,
    };
    store
        .put_runs_scheduled(&[], &[], Some(&write))
        .expect("written")
}

#[tokio::test]
async fn a_schedule_and_its_state_round_trip_and_an_apply_replaces_the_source() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let stored = StoredSchedule {
        name: "beat".into(),
        source: "v1".into(),
        applied_at_ms: 1,
    };
    let state = ScheduleState {
        cursor_ms: 5,
        paused: true,
        ..ScheduleState::default()
    };
    store.put_schedule(&stored, &state).expect("stored");
    let replaced = StoredSchedule {
        source: "v2".into(),
        ..stored.clone()
    };
    let seq = store.put_schedule(&replaced, &state).expect("stored");
    seq.durable().await.expect("durable");
    assert_eq!(store.schedules().expect("read"), vec![(replaced, state)]);
}

#[tokio::test]
async fn the_ledger_is_newest_first_per_schedule_and_moves_the_cursor_with_it() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let stored = StoredSchedule {
        name: "a".into(),
        source: String::new(),
        applied_at_ms: 0,
    };
    store
        .put_schedule(&stored, &ScheduleState::default())
        .expect("stored");
    let entries = [
        entry(-2_000, false, LedgerFate::Missed),
        entry(3_000, false, LedgerFate::Fired),
        entry(3_000, true, LedgerFate::SkippedOverlap),
        entry(1_000, false, LedgerFate::Paused),
    ];
    write(&store, "a", 3_000, &entries);
    write(
        &store,
        "ab",
        9_000,
        &[entry(9_000, false, LedgerFate::Fired)],
    );
    let order: Vec<(i64, bool)> = store
        .ledger("a", 10)
        .expect("read")
        .iter()
        .map(|e| (e.scheduled_ms, e.manual))
        .collect();
    assert_eq!(
        order,
        vec![
            (3_000, true),
            (3_000, false),
            (1_000, false),
            (-2_000, false)
        ],
        "another schedule's entries (`ab`) never mix in"
    );
    assert_eq!(store.ledger("a", 2).expect("read").len(), 2);
    let (_, state) = store.schedules().expect("read").remove(0);
    assert_eq!(
        state.cursor_ms, 3_000,
        "the cursor moved in the same transaction"
    );
}

#[tokio::test]
async fn pruning_keeps_the_newest_entries() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let entries: Vec<LedgerEntry> = (0..10)
        .map(|n| entry(n * 1_000, false, LedgerFate::Fired))
        .collect();
    write(&store, "a", 9_000, &entries);
    assert_eq!(store.prune_ledger("a", 4).expect("pruned"), 6);
    assert_eq!(store.ledger_len("a").expect("counted"), 4);
    let kept: Vec<i64> = store
        .ledger("a", 100)
        .expect("read")
        .iter()
        .map(|e| e.scheduled_ms)
        .collect();
    assert_eq!(kept, vec![9_000, 8_000, 7_000, 6_000]);
    assert_eq!(store.prune_ledger("a", 4).expect("pruned"), 0);
}

#[tokio::test]
async fn expired_dedup_entries_are_pruned_and_live_ones_kept() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let run = RunId(uuid::Uuid::now_v7());
    let write = AlertWrite {
        alerts: &[],
        payloads: &[],
        dedup: vec![
            (
                "r",
                "old",
                DedupEntry {
                    run_id: run,
                    expires_ms: 1_000,
                },
            ),
            (
                "r",
                "live",
                DedupEntry {
                    run_id: run,
                    expires_ms: 5_000,
                },
            ),
        ],
        budgets: vec![(
            "r",
            BudgetState {
                period_start_ms: 0,
                runs: 3,
            },
        )],
        poll: None,
    };
    store.put_alerts(&[], &write).expect("written");
    let live = DedupExpiry::new("r", "live", &write.dedup[1].2);
    assert_eq!(
        store.prune_dedup(2_000).expect("pruned"),
        vec![live.clone()]
    );
    assert_eq!(store.dedup_entry("r", "old").expect("read"), None);
    assert_eq!(
        store
            .dedup_entry("r", "live")
            .expect("read")
            .map(|e| e.expires_ms),
        Some(5_000)
    );
    assert_eq!(store.budget("r").expect("read").runs, 3);

    // Given back by expiry: an entry given a later window since stays, as does one still
    // live; one no longer stored is passed over.
    let entry = |expires_ms| DedupEntry {
        run_id: run,
        expires_ms,
    };
    let renewed = |expires_ms| AlertWrite {
        dedup: vec![("r", "again", entry(expires_ms))],
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &renewed(1_500)).expect("written");
    let first_window = DedupExpiry::new("r", "again", &entry(1_500));
    store.put_alerts(&[], &renewed(9_000)).expect("written");
    let gone = DedupExpiry::new("r", "old", &entry(1_000));
    let taken = [first_window, gone, live.clone()];
    assert_eq!(
        store.remove_expired_dedup(&taken, 3_000).expect("removed"),
        0
    );
    assert!(store.dedup_entry("r", "again").expect("read").is_some());
    assert!(store.dedup_entry("r", "live").expect("read").is_some());
    assert_eq!(
        store.remove_expired_dedup(&[live], 5_000).expect("removed"),
        1
    );
    assert_eq!(store.dedup_entry("r", "live").expect("read"), None);
    assert_eq!(
        store.dedup_entry("r", "again").expect("read"),
        Some(entry(9_000))
    );
}

pub(super) fn stored_alert() -> StoredAlert {
    let alert = riposte_ingest::parse(
        &riposte_ingest::Format::Cef,
        b"CEF:0|V|P|1|1|t|5|src=203.0.113.9",
    )
    .expect("a CEF line")
    .remove(0);
    // One clock for the test process: its ids are distinct and ordered.
    static CLOCK: std::sync::LazyLock<crate::clock::Clock> =
        std::sync::LazyLock::new(|| crate::clock::Clock::manual(1));
    let id = CLOCK.new_alert_id();
    StoredAlert {
        id,
        source: "cef".into(),
        received_ms: 1,
        alert,
        payload: String::new(),
        payload_id: None,
        payload_index: None,
        fate: AlertFate::MatchedNothing,
        run_id: None,
        rule: String::new(),
        detail: String::new(),
        trace: None,
    }
}

#[tokio::test]
async fn a_payload_is_stored_once_beside_its_alerts_and_pruned_with_them() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    // A payload of two alerts, packed with another one's.
    let mut three = [stored_alert(), stored_alert(), stored_alert()];
    let large = format!(
        "{{\"alerts\": [{}]}}",
        ["{\"severity\": \"high\"}"; 100].join(", ")
    );
    let payloads = payload::pack(&mut three, &[(0..2, large.as_bytes()), (2..3, b"small")]);
    assert_eq!(payloads.len(), 1, "one pack");
    let [first, second, third] = three.clone();
    let write = AlertWrite {
        alerts: &three,
        payloads: &payloads,
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &write).expect("written in one batch");
    let mut fourth = [stored_alert()];
    let payloads = payload::pack(&mut fourth, &[(0..1, b"another")]);
    let [fourth] = fourth;
    let write = AlertWrite {
        alerts: std::slice::from_ref(&fourth),
        payloads: &payloads,
        budgets: vec![("r", BudgetState::default())],
        ..AlertWrite::default()
    };
    store
        .put_alerts(&[], &write)
        .expect("written in a transaction");

    assert_eq!(store.alerts_len().expect("counted"), 4);
    let listed = store.alerts(10).expect("listed");
    let ids: Vec<_> = listed.iter().map(|a| a.id).collect();
    assert_eq!(
        ids,
        vec![fourth.id, third.id, second.id, first.id],
        "newest first, no payload rows"
    );
    assert!(
        listed.iter().all(|a| a.payload.is_empty()),
        "a list has no payloads"
    );
    let payload_of = |alert: &StoredAlert| store.alert(alert.id).expect("read").map(|a| a.payload);
    assert_eq!(payload_of(&first).as_deref(), Some(large.as_str()));
    assert_eq!(
        payload_of(&second).as_deref(),
        Some(large.as_str()),
        "shared"
    );
    assert_eq!(payload_of(&third).as_deref(), Some("small"));
    assert_eq!(payload_of(&fourth).as_deref(), Some("another"));

    assert_eq!(store.prune_alerts(2).expect("pruned"), 2);
    assert_eq!(store.alerts_len().expect("counted"), 2);
    assert_eq!(payload_of(&first), None);
    assert_eq!(
        payload_of(&third).as_deref(),
        Some("small"),
        "a pack stays while one of its alerts does"
    );
    assert_eq!(store.prune_alerts(1).expect("pruned"), 1);
    let gone = payload::read(&store.alerts, &third).expect("read");
    assert_eq!(gone, None, "the pack went with its last alert");
    assert_eq!(
        store.alerts.len(),
        2,
        "the fourth alert and its payload, nothing else"
    );
    assert_eq!(payload_of(&fourth).as_deref(), Some("another"));
}

/// A run with every field set, so that a field the records forget shows.
pub(super) fn full_run() -> RunState {
    use riposte_scheduler::state::{
        ApprovalState, Decision, GrantState, Phase, RunStatus, StepState, StepStatus, UndoEntry,
        Unit, UnitStatus, WaveState,
    };
    let unit = |n: u32, status: UnitStatus| Unit {
        status,
        attempt: n + 1,
        lease_losses: n,
        input: serde_json::json!({"item": n}),
        labels: [("pool".to_string(), "a".to_string())].into(),
        output: Some(serde_json::json!({"done": n})),
        error: Some(format!("error {n}")),
        accepted_token: Some(u64::from(n) + 10),
        held: n == 1,
        start_by_ms: Some(i64::from(n) + 100),
    };
    let undo = |n: u32| UndoEntry {
        step: 0,
        item: n,
        action: "core.echo".into(),
        unit: unit(n, UnitStatus::Pending),
        grant: Some(GrantState {
            subject: format!("user-{n}"),
            opened_at_ms: 1,
            expires_ms: 2,
        }),
    };
    RunState {
        id: RunId(uuid::Uuid::now_v7()),
        playbook: "full".into(),
        version: 3,
        params: serde_json::json!({"hosts": ["a", "b", "c"]}),
        trigger: serde_json::json!({"alert": "x"}),
        requested_by: "alice".into(),
        idempotency_key: "key".into(),
        status: RunStatus::Running,
        created_at_ms: 5,
        finished_at_ms: Some(6),
        error: Some("why".into()),
        steps: vec![
            StepState {
                status: StepStatus::Running,
                units: (0..3)
                    .map(|n| unit(n, UnitStatus::Backoff { due_ms: 9 }))
                    .collect(),
                output: Some(serde_json::json!(["x"])),
                error: Some("step error".into()),
                started_at_ms: Some(7),
                finished_at_ms: Some(8),
                due_ms: Some(9),
                approval: Some(Box::new(ApprovalState {
                    digest: "d".into(),
                    due_ms: 10,
                    decisions: vec![Decision {
                        who: "bob".into(),
                        approve: true,
                        comment: "ok".into(),
                        at_ms: 11,
                        digest: "d".into(),
                    }],
                })),
                waves: Some(Box::new(WaveState {
                    wave: 1,
                    end: 2,
                    failures_forgiven: 1,
                    gate: Some(unit(7, UnitStatus::Queued)),
                    gate_passed: true,
                    held_until_ms: Some(99),
                })),
            },
            StepState::waiting(),
        ],
        history_seq: 12,
        phase: Phase::Compensating {
            outcome: RunStatus::Failed,
            error: Some("undoing".into()),
        },
        undo: vec![undo(0)],
        concurrency_key: Some("host-a".into()),
        deadline_ms: Some(13),
        dry_run: true,
        trace: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

pub(super) fn put(store: &Store, run: &RunState, parts: Vec<Part>) -> Seq {
    let write = RunWrite {
        state: run,
        parts,
        history: Vec::new(),
    };
    store.put_runs(&[write], RunKey::None).expect("written")
}

#[tokio::test]
async fn a_run_is_written_as_records_and_a_change_writes_only_the_records_it_names() {
    use riposte_scheduler::state::{StepState, UnitStatus};
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let mut run = full_run();
    put(&store, &run, vec![Part::All]);
    assert_eq!(store.run(run.id).expect("reads"), Some(run.clone()));

    // Named: item 1, the step's output, a new undo entry. Not named: item 2.
    run.steps[0].units[1].status = UnitStatus::Succeeded;
    run.steps[0].output = None;
    run.undo.push(run.undo[0].clone());
    let mut unnamed = run.clone();
    unnamed.steps[0].units[2].status = UnitStatus::Failed;
    let parts = vec![
        Part::Unit { step: 0, item: 1 },
        Part::Output { step: 0 },
        Part::Undo(1),
    ];
    put(&store, &unnamed, parts)
        .durable()
        .await
        .expect("durable");
    assert_eq!(
        store.run(run.id).expect("reads"),
        Some(run.clone()),
        "what was named is written, and nothing else"
    );

    // A step reset to waiting: its units and output are gone, whatever records remain.
    run.steps[0] = StepState::waiting();
    put(
        &store,
        &run,
        vec![Part::Units { step: 0 }, Part::Output { step: 0 }],
    );
    assert_eq!(store.run(run.id).expect("reads"), Some(run.clone()));
}

#[tokio::test]
async fn a_run_missing_a_record_its_head_counts_is_damaged_with_the_record_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let run = full_run();
    put(&store, &run, vec![Part::All]);
    store
        .run_records
        .remove(records::key(run.id, records::UNIT, 0, 1))
        .expect("removed");
    let error = store.run(run.id).expect_err("damaged");
    assert_eq!(
        error.to_string(),
        format!(
            "store damaged: run {} lacks its record of step 0 item 1",
            run.id
        )
    );
    assert_eq!(error.damaged_record(), Some(format!("runs/{}", run.id)));
    let checked = store.check().expect("checks");
    let damaged: Vec<String> = checked
        .damaged
        .iter()
        .map(|(key, why)| format!("{key}: {why}"))
        .collect();
    assert_eq!(damaged, [format!("runs/{}: {error}", run.id)]);
}

#[tokio::test]
async fn a_flipped_byte_in_a_unit_record_is_reported_with_its_key_and_the_run_left_out() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let damaged = full_run();
    let intact = full_run();
    put(&store, &damaged, vec![Part::All]);
    put(&store, &intact, vec![Part::All]);
    let key = records::key(damaged.id, records::UNIT, 0, 1);
    let mut value = store
        .run_records
        .get(&key)
        .expect("read")
        .expect("stored")
        .to_vec();
    let last = value.len() - 2;
    value[last] ^= 0x04; // still JSON: a digit or a letter changes
    store.run_records.insert(&key, value).expect("written");

    let error = store.run(damaged.id).expect_err("damaged");
    let name = format!("run_records/{}/unit/0/1", damaged.id);
    assert_eq!(error.damaged_record(), Some(name.clone()));
    assert_eq!(store.run(intact.id).expect("reads"), Some(intact.clone()));
    let checked = store.check().expect("checks");
    let reported: Vec<String> = checked
        .damaged
        .iter()
        .map(|(key, why)| format!("{key}: {why}"))
        .collect();
    assert_eq!(
        reported,
        [format!(
            "{name}: checksum mismatch: the record changed after it was written"
        )]
    );
}

/// Each kind of record, written as the orchestrator writes it, carries its checksum: a check
/// of the whole store finds nothing damaged, and every value but the format is sealed.
#[tokio::test]
async fn every_kind_of_record_is_sealed() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let stored = StoredPlaybook {
        name: "p".into(),
        version: 1,
        source: "s".into(),
        applied_at_ms: 1,
    };
    store.put_playbook(&stored).expect("written");
    store.put_playbook_default("p", Some(1)).expect("written");
    store
        .put_containment(&Containment::default())
        .expect("written");
    let rule = StoredRule {
        name: "r".into(),
        source: "s".into(),
        applied_at_ms: 1,
        disabled: Some(super::Disabled {
            by: "token:a".into(),
            at_ms: 1,
            reason: "noisy".into(),
        }),
    };
    store.put_rule(&rule).expect("written");
    let schedule = StoredSchedule {
        name: "beat".into(),
        source: "v1".into(),
        applied_at_ms: 1,
    };
    store
        .put_schedule(&schedule, &ScheduleState::default())
        .expect("written");
    write(&store, "beat", 5, &[entry(5, false, LedgerFate::Fired)]);
    let mut alert = [stored_alert()];
    let payloads = payload::pack(&mut alert, &[(0..1, b"the payload")]);
    let write = AlertWrite {
        alerts: &alert,
        payloads: &payloads,
        budgets: vec![("r", BudgetState::default())],
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &write).expect("written");
    let run = full_run();
    let history = HistoryEvent {
        seq: 1,
        at_ms: 1,
        kind: "run.started".into(),
        step: String::new(),
        item: 0,
        attempt: 0,
        worker: String::new(),
        message: String::new(),
        run_status: None,
    };
    let write = RunWrite {
        state: &run,
        parts: vec![Part::All],
        history: vec![&history],
    };
    store
        .put_runs(&[write], RunKey::Claim("key", run.id))
        .expect("written");
    let entry = AuditEntry {
        at_ms: 1,
        outcome: "ok".into(),
        ..AuditEntry::default()
    };
    store.audit_append(entry).expect("written");

    let checked = store.check().expect("checks");
    assert!(checked.damaged.is_empty(), "{:?}", checked.damaged);
    for (name, tree, _) in store.trees() {
        for entry in tree.iter() {
            let (key, value) = entry.expect("read");
            let exempt = value.is_empty() || (name == "settings" && key.as_ref() == b"format");
            assert!(
                exempt || seal::is_sealed(&value),
                "{name}/{} is not sealed",
                key_text(&key)
            );
        }
    }
}

#[tokio::test]
async fn a_new_data_dir_is_private_and_an_open_one_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .expect("present")
            .permissions()
            .mode()
            & 0o777
    };
    let set = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let parent = tempfile::tempdir().expect("a temporary folder");
    let fresh = parent.path().join("a/data");
    drop(Store::open(&fresh, Options::default()).expect("opens"));
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("LOCK")), 0o600);

    let open = parent.path().join("open");
    std::fs::create_dir_all(open.join("blobs")).expect("created");
    std::fs::write(open.join("blobs/1"), "blob").expect("written");
    std::fs::write(open.join("stray"), "x").expect("written");
    set(&open, 0o755);
    set(&open.join("blobs"), 0o775);
    set(&open.join("blobs/1"), 0o644);
    set(&open.join("stray"), 0o666);
    let store = Store::open(&open, Options::default()).expect("opens");
    assert_eq!(mode(&open), 0o700);
    assert_eq!(mode(&open.join("blobs")), 0o700);
    assert_eq!(mode(&open.join("blobs/1")), 0o600);
    assert_eq!(mode(&open.join("stray")), 0o600);
    assert_eq!(
        disk::make_private(&open).expect("walked"),
        0,
        "nothing left open"
    );
    drop(store);
}

#[tokio::test]
async fn a_payload_stored_alone_before_packs_still_reads() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let large = "{\"severity\": \"high\"} ".repeat(50);
    let mut alerts = [stored_alert(), stored_alert()];
    let forms = [
        (b'z', lz4_flex::compress_prepend_size(large.as_bytes())),
        (b'p', b"as received".to_vec()),
    ];
    for (alert, (form, bytes)) in alerts.iter_mut().zip(forms) {
        alert.payload_id = Some(alert.id);
        let mut key = alert.id.as_bytes().to_vec();
        key.push(form);
        store
            .alerts
            .insert(key, seal::seal(&bytes))
            .expect("written");
    }
    let write = AlertWrite {
        alerts: &alerts,
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &write).expect("written");
    let payload_of = |alert: &StoredAlert| store.alert(alert.id).expect("read").map(|a| a.payload);
    assert_eq!(payload_of(&alerts[0]), Some(large));
    assert_eq!(payload_of(&alerts[1]).as_deref(), Some("as received"));
    let report = store.check().expect("checked");
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
}
