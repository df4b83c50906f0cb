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
        payload: None,
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
    };
    store.put_alerts(&[], &write).expect("written");
    assert_eq!(store.prune_dedup(2_000).expect("pruned"), 1);
    assert_eq!(store.dedup_entry("r", "old").expect("read"), None);
    assert_eq!(
        store
            .dedup_entry("r", "live")
            .expect("read")
            .map(|e| e.expires_ms),
        Some(5_000)
    );
    assert_eq!(store.budget("r").expect("read").runs, 3);
}

fn stored_alert(payload_id: Option<uuid::Uuid>) -> StoredAlert {
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
        payload_id: Some(payload_id.unwrap_or(id)),
        fate: AlertFate::MatchedNothing,
        run_id: None,
        rule: String::new(),
        detail: String::new(),
    }
}

#[tokio::test]
async fn a_payload_is_stored_once_beside_its_alerts_and_pruned_with_them() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), Options::default()).expect("opens");
    let first = stored_alert(None);
    let second = stored_alert(first.payload_id);
    let pair = [first.clone(), second.clone()];
    let write = AlertWrite {
        alerts: &pair,
        payload: Some((first.id, b"the payload")),
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &write).expect("written in one batch");
    let third = stored_alert(None);
    let write = AlertWrite {
        alerts: std::slice::from_ref(&third),
        payload: Some((third.id, b"another")),
        budgets: vec![("r", BudgetState::default())],
        ..AlertWrite::default()
    };
    store
        .put_alerts(&[], &write)
        .expect("written in a transaction");

    assert_eq!(store.alerts_len().expect("counted"), 3);
    let listed = store.alerts(10).expect("listed");
    let ids: Vec<_> = listed.iter().map(|a| a.id).collect();
    assert_eq!(
        ids,
        vec![third.id, second.id, first.id],
        "newest first, no payload rows"
    );
    assert!(
        listed.iter().all(|a| a.payload.is_empty()),
        "a list has no payloads"
    );
    let shown = store.alert(second.id).expect("read").expect("stored");
    assert_eq!(shown.payload, "the payload", "shared with the first alert");
    let shown = store.alert(third.id).expect("read").expect("stored");
    assert_eq!(shown.payload, "another");

    assert_eq!(store.prune_alerts(2).expect("pruned"), 2);
    assert_eq!(store.alerts_len().expect("counted"), 1);
    assert_eq!(store.alert(first.id).expect("read"), None);
    let gone = store.alerts.get(payload_key(first.id)).expect("read");
    assert_eq!(gone, None, "its payload went with it");
    let kept = store.alert(third.id).expect("read").expect("kept");
    assert_eq!(kept.payload, "another");
}
