//! Tests of the audit log, on real sled files: entries staged and appended chain and verify,
//! a staged entry is written with the change it records (and survives a crash with it),
//! housekeeping leaves it staged, each kind of tampering is named at the right record, and
//! the key is made private and refused when it is not.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use riposte_scheduler::Part;

use super::*;
use crate::store::tests::{full_run, put, stored_alert};

fn entry(n: u64, action: &str) -> AuditEntry {
    AuditEntry {
        at_ms: 1_000 + n as i64,
        principal: format!("alice{}", n % 2),
        method: "certificate".into(),
        source: "192.0.2.7:5000".into(),
        action: action.into(),
        target: format!("target-{n}"),
        digest: "ab".repeat(32),
        outcome: "ok".into(),
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, Options::default()).expect("opens")
}

/// The store opened again on `dir` once the last handle of the one before let go of it.
async fn reopen(dir: &Path, options: Options) -> Result<Store, Error> {
    for _ in 0..2_000 {
        match Store::open(dir, options.clone()) {
            Err(Error::Locked { .. }) => tokio::time::sleep(Duration::from_millis(5)).await,
            opened => return opened,
        }
    }
    panic!("the store opens again");
}

/// A store in `dir` with `n` records appended, durable.
async fn chain(dir: &Path, n: u64) -> Store {
    let store = open(dir);
    for seq in 1..=n {
        let mut entry = entry(seq, "run.start");
        if seq % 2 == 0 {
            entry.outcome = "permission denied".into();
        }
        store.audit_append(entry).expect("appended");
    }
    store.last_write().durable().await.expect("durable");
    store
}

/// The record stored at `seq`, read raw.
fn raw(store: &Store, seq: u64) -> AuditRecord {
    let value = store.audit.get(record_key(seq)).expect("read");
    decode("audit", &record_key(seq), &value.expect("stored")).expect("reads back")
}

/// Stores `record` at `seq` as someone who knows the format but not the key would: its JSON,
/// sealed with a valid checksum.
fn forge(store: &Store, seq: u64, record: &AuditRecord) {
    store
        .audit
        .insert(record_key(seq), json(record))
        .expect("written");
}

fn remove(store: &Store, seq: u64) {
    store.audit.remove(record_key(seq)).expect("removed");
}

fn broken(store: &Store) -> (u64, String) {
    match store.audit_verify().expect("walks") {
        AuditVerdict::Broken { seq, why } => (seq, why),
        intact => panic!("not detected: {intact:?}"),
    }
}

fn intact(store: &Store) -> u64 {
    match store.audit_verify().expect("walks") {
        AuditVerdict::Intact { records, head_mac } => {
            let last = store.audit_page(&AuditFilter::default(), None, 1);
            let last = last.expect("listed").records.pop();
            assert_eq!(head_mac, last.map_or(ZERO_MAC.to_string(), |r| r.mac));
            records
        }
        broken => panic!("not intact: {broken:?}"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("present")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn entries_appended_and_staged_by_every_write_chain_and_verify() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = open(dir.path());
    assert_eq!(intact(&store), 0, "an empty log is intact");
    store
        .audit_append(entry(1, "run.cancel"))
        .expect("appended");
    let stage = |n| store.audit_next(entry(n, "change"));

    stage(2);
    let playbook = StoredPlaybook {
        name: "p".into(),
        version: 1,
        source: "s".into(),
        applied_at_ms: 1,
    };
    store.put_playbook(&playbook).expect("written");
    stage(3);
    store
        .put_containment(&Containment::default())
        .expect("written");
    stage(4);
    let rule = StoredRule {
        name: "r".into(),
        source: "s".into(),
        applied_at_ms: 1,
        disabled: None,
    };
    store.put_rule(&rule).expect("written");
    stage(5);
    let schedule = StoredSchedule {
        name: "beat".into(),
        source: "s".into(),
        applied_at_ms: 1,
    };
    let state = ScheduleState::default();
    store.put_schedule(&schedule, &state).expect("written");
    stage(6);
    store.put_schedule_state("beat", &state).expect("written");
    stage(7);
    let mut alert = [stored_alert()];
    let payloads = crate::store::pack(&mut alert, &[(0..1, b"the payload")]);
    let alerts = AlertWrite {
        alerts: &alert,
        payloads: &payloads,
        ..AlertWrite::default()
    };
    store.put_alerts(&[], &alerts).expect("written as a batch");
    stage(8);
    let alert = stored_alert();
    let alerts = AlertWrite {
        alerts: std::slice::from_ref(&alert),
        budgets: vec![("r", BudgetState::default())],
        ..AlertWrite::default()
    };
    store
        .put_alerts(&[], &alerts)
        .expect("written in a transaction");
    stage(9);
    put(&store, &full_run(), vec![Part::All]);
    stage(10);
    let fire = ScheduleWrite {
        name: "beat",
        state: &state,
        entries: &[],
    };
    store
        .put_runs_scheduled(&[], &[], Some(&fire))
        .expect("written");
    assert_eq!(
        store.audit_unwritten(),
        None,
        "every staged entry was taken"
    );
    let mut refused = entry(11, "run.start");
    refused.outcome = "playbook p@9 not found".into();
    let seq = store.audit_append(refused.clone()).expect("appended");
    seq.durable().await.expect("durable");

    assert_eq!(intact(&store), 11);
    let page = store
        .audit_page(&AuditFilter::default(), None, 100)
        .expect("listed");
    assert_eq!(page.next, None);
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=11).rev().collect::<Vec<_>>(), "newest first");
    assert_eq!(page.records[0].entry, refused);
    assert_eq!(page.records[1].entry, entry(10, "change"));
    assert_eq!(page.records[10].prev, ZERO_MAC);
    for pair in page.records.windows(2) {
        assert_eq!(pair[0].prev, pair[1].mac, "chained");
    }
    let checked = store.check().expect("checks");
    assert!(checked.damaged.is_empty(), "{:?}", checked.damaged);
}

#[tokio::test]
async fn a_record_exports_as_one_flat_json_line() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 1).await;
    let record = raw(&store, 1);
    let line = serde_json::to_string(&record).expect("serializes");
    assert!(!line.contains('\n'));
    let object: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    for field in [
        "seq",
        "at_ms",
        "principal",
        "method",
        "source",
        "action",
        "target",
        "digest",
        "outcome",
        "prev",
        "mac",
    ] {
        assert!(object.get(field).is_some(), "{field} in {line}");
    }
    assert_eq!(
        serde_json::from_str::<AuditRecord>(&line).ok(),
        Some(record)
    );
}

#[tokio::test]
async fn a_staged_entry_is_written_with_its_run_and_both_survive_a_crash_and_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = open(dir.path());
    let run = full_run();
    store.audit_next(entry(1, "run.start"));
    put(&store, &run, vec![Part::All])
        .durable()
        .await
        .expect("durable");

    // What a `kill -9` after the flush leaves: the files as they are, the store still open.
    let image = tempfile::tempdir().expect("a temporary folder");
    copy_dir(dir.path(), image.path());
    let crashed = open(image.path());
    assert_eq!(crashed.run(run.id).expect("reads"), Some(run.clone()));
    assert_eq!(raw(&crashed, 1).entry, entry(1, "run.start"));
    assert_eq!(intact(&crashed), 1);
    drop(crashed);

    drop(store);
    let store = reopen(dir.path(), Options::default()).await.expect("opens");
    assert_eq!(store.run(run.id).expect("reads"), Some(run));
    assert_eq!(intact(&store), 1);
    store
        .audit_append(entry(2, "run.cancel"))
        .expect("appended");
    assert_eq!(raw(&store, 2).prev, raw(&store, 1).mac, "the chain goes on");
    assert_eq!(intact(&store), 2);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("listed") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            std::fs::create_dir_all(&target).expect("created");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copied");
        }
    }
}

#[tokio::test]
async fn an_entry_no_write_took_is_given_back_and_housekeeping_takes_none() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = open(dir.path());
    store.audit_next(entry(1, "run.start"));
    store.prune_runs(i64::MAX, 0).expect("pruned");
    store.prune_alerts(10).expect("pruned");
    store.prune_dedup(i64::MAX).expect("pruned");
    store.prune_ledger("beat", 0).expect("pruned");
    let mut unwritten = store.audit_unwritten().expect("still staged");
    assert_eq!(unwritten, entry(1, "run.start"));
    assert_eq!(store.audit_unwritten(), None, "given back once");
    assert!(store.audit.is_empty(), "nothing was written");

    unwritten.outcome = "run not found".into();
    store.audit_append(unwritten.clone()).expect("appended");
    assert_eq!(raw(&store, 1).entry, unwritten);
    assert_eq!(intact(&store), 1);
}

#[tokio::test]
async fn a_record_edited_without_the_key_is_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 5).await;
    let mut record = raw(&store, 4);
    assert_eq!(record.entry.outcome, "permission denied");
    record.entry.outcome = "ok".into();
    forge(&store, 4, &record);
    let (seq, why) = broken(&store);
    assert_eq!(seq, 4);
    assert!(why.contains("MAC does not match"), "{why}");
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 5).await;
    remove(&store, 3);
    let (seq, why) = broken(&store);
    assert_eq!(seq, 3);
    assert!(why.contains("missing (deleted)"), "{why}");
}

#[tokio::test]
async fn two_swapped_records_are_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 5).await;
    let (two, three) = (raw(&store, 2), raw(&store, 3));
    forge(&store, 2, &three);
    forge(&store, 3, &two);
    let (seq, why) = broken(&store);
    assert_eq!(seq, 2);
    assert!(why.contains("holds record 3"), "{why}");
}

#[tokio::test]
async fn a_cut_tail_with_a_record_forged_under_another_key_is_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 5).await;
    remove(&store, 5);
    remove(&store, 4);
    // Everything right (seq, prev, a SHA-256 HMAC over the canonical bytes) but the key.
    let wrong = Key::from_bytes([7; 32]);
    let entry = entry(4, "containment.set");
    let prev = raw(&store, 3).mac;
    let mac = hex(&record_mac(&wrong, 4, &prev, &entry).finalize().into_bytes());
    let forged = AuditRecord {
        seq: 4,
        entry,
        prev,
        mac,
    };
    forge(&store, 4, &forged);
    let (seq, why) = broken(&store);
    assert_eq!(seq, 4);
    assert!(why.contains("written without the key"), "{why}");
}

#[tokio::test]
async fn a_damaged_seal_is_named() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 3).await;
    let mut value = store
        .audit
        .get(record_key(2))
        .expect("read")
        .expect("stored")
        .to_vec();
    let last = value.len() - 3;
    value[last] ^= 0x01;
    store.audit.insert(record_key(2), value).expect("written");
    let (seq, why) = broken(&store);
    assert_eq!(seq, 2);
    assert!(why.contains("checksum mismatch"), "{why}");
    let reported = store.check().expect("checks").damaged;
    let reported: Vec<String> = reported
        .iter()
        .map(|(at, why)| format!("{at}: {why}"))
        .collect();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(
        reported[0].starts_with("audit/2: checksum mismatch"),
        "{reported:?}"
    );
    assert!(
        reported[1].starts_with("audit/2: the audit chain is broken"),
        "{reported:?}"
    );
}

#[tokio::test]
async fn a_tail_cut_while_running_or_while_down_is_named_and_stays_a_gap() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 5).await;
    let fifth = raw(&store, 5).mac;
    remove(&store, 5);
    remove(&store, 4);
    let (seq, why) = broken(&store);
    assert_eq!((seq, why.contains("the tail was cut")), (4, true), "{why}");

    drop(store);
    let store = reopen(dir.path(), Options::default()).await.expect("opens");
    let (seq, why) = broken(&store);
    assert_eq!(seq, 4, "the stored head names the cut: {why}");
    assert!(why.contains("the tail was cut"), "{why}");
    store.audit_append(entry(6, "run.start")).expect("appended");
    assert_eq!(
        raw(&store, 6).prev,
        fifth,
        "the chain goes on after the stored head"
    );
    let (seq, why) = broken(&store);
    assert_eq!(seq, 4, "a later write keeps the gap: {why}");
}

#[tokio::test]
async fn a_tail_cut_with_its_stored_head_removed_or_forged_stays_a_gap() {
    for forged in [false, true] {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = chain(dir.path(), 5).await;
        remove(&store, 5);
        remove(&store, 4);
        if forged {
            let wrong = Key::from_bytes([9; 32]);
            let mac = raw(&store, 3).mac;
            let head = StoredHead {
                seq: 3,
                tag: hex(&head_mac(&wrong, 3, &mac).finalize().into_bytes()),
                mac,
            };
            store
                .settings
                .insert(HEAD_KEY, json(&head))
                .expect("written");
        } else {
            store.settings.remove(HEAD_KEY).expect("removed");
        }
        drop(store);
        let store = reopen(dir.path(), Options::default()).await.expect("opens");
        assert_eq!(broken(&store).0, 4, "forged: {forged}");
        store.audit_append(entry(6, "run.start")).expect("appended");
        let (seq, why) = broken(&store);
        assert_eq!(seq, 4, "forged: {forged}: {why}");
        assert!(why.contains("missing (deleted)"), "{why}");
    }
}

#[tokio::test]
async fn fields_are_bounded_on_character_boundaries() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = open(dir.path());
    let mut long = entry(1, "run.start");
    long.principal = format!("a{}", "é".repeat(300));
    long.target = "t".repeat(1000);
    long.outcome = "x".repeat(5000);
    store.audit_append(long).expect("appended");
    let stored = raw(&store, 1).entry;
    assert_eq!(stored.principal.len(), 255, "not inside the 128th é");
    assert_eq!(stored.target.len(), 256);
    assert_eq!(stored.outcome.len(), 1024);
    assert_eq!(intact(&store), 1);
}

#[tokio::test]
async fn a_page_filters_and_goes_on_before_its_cursor() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = chain(dir.path(), 10).await;
    let mut other = entry(11, "playbook.apply");
    other.principal = "bob".into();
    store.audit_append(other).expect("appended");
    let seqs = |filter: &AuditFilter, before, limit| {
        let page = store.audit_page(filter, before, limit).expect("listed");
        let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
        (seqs, page.next)
    };
    let all = AuditFilter::default();
    assert_eq!(seqs(&all, None, 3), (vec![11, 10, 9], Some(9)));
    assert_eq!(seqs(&all, Some(9), 3), (vec![8, 7, 6], Some(6)));
    assert_eq!(seqs(&all, Some(3), 3), (vec![2, 1], None));
    let bob = AuditFilter {
        principal: "bob".into(),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&bob, None, 10), (vec![11], None));
    let runs = AuditFilter {
        action: "run.*".into(),
        outcome: Some(AuditOutcome::Refused),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&runs, None, 10), (vec![10, 8, 6, 4, 2], None));
    let exact = AuditFilter {
        action: "run".into(),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&exact, None, 10), (vec![], None), "exact unless `*`");
    let window = AuditFilter {
        outcome: Some(AuditOutcome::Ok),
        since_ms: Some(1_003),
        until_ms: Some(1_007),
        ..AuditFilter::default()
    };
    assert_eq!(seqs(&window, None, 10), (vec![7, 5, 3], None));
}

#[tokio::test]
async fn the_key_is_made_private_and_a_shared_or_missing_one_is_refused() {
    let parent = tempfile::tempdir().expect("a temporary folder");
    let data = parent.path().join("data");
    let store = open(&data);
    let key = data.join(AUDIT_KEY_FILE);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read(&key).expect("read").len(), 32);
    store.audit_append(entry(1, "run.start")).expect("appended");
    drop(store);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let refused = reopen(&data, Options::default()).await.err();
    let refused = refused
        .expect("a key others may read is refused")
        .to_string();
    assert!(
        refused.starts_with(&format!("audit key {} is not usable: ", key.display()))
            && refused.contains("open to other users (mode 0644)"),
        "{refused}"
    );
    assert_eq!(
        mode(&key),
        0o644,
        "refused, not tightened with the data dir"
    );

    std::fs::remove_file(&key).expect("removed");
    let refused = reopen(&data, Options::default()).await.err();
    let refused = refused.expect("a missing key is refused").to_string();
    assert!(refused.contains("is missing"), "{refused}");
    assert!(!key.exists(), "no new key for an old chain");

    std::fs::write(&key, b"short").expect("written");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let refused = reopen(&data, Options::default()).await.err();
    let refused = refused.expect("a short key is refused").to_string();
    assert!(refused.contains("holds 5 bytes"), "{refused}");

    // Outside the data dir.
    let outside = parent.path().join("keys/audit.key");
    std::fs::create_dir_all(outside.parent().expect("a folder")).expect("created");
    let options = Options {
        audit_key: Some(outside.clone()),
        ..Options::default()
    };
    let elsewhere = parent.path().join("elsewhere");
    drop(reopen(&elsewhere, options.clone()).await.expect("opens"));
    assert_eq!(mode(&outside), 0o600);
    assert!(!elsewhere.join(AUDIT_KEY_FILE).exists());
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let refused = reopen(&elsewhere, options).await.err();
    let refused = refused.expect("refused").to_string();
    assert!(refused.contains("mode 0640"), "{refused}");
}

#[tokio::test]
async fn a_salvage_gives_the_new_data_dir_the_key_its_chain_verifies_with() {
    let parent = tempfile::tempdir().expect("a temporary folder");
    let old = parent.path().join("old");
    let new = parent.path().join("new");
    let from = chain(&old, 3).await;
    let into = open(&new);
    let salvaged = from.salvage(&into).expect("salvaged");
    assert!(salvaged.left.is_empty(), "{:?}", salvaged.left);
    assert_eq!(intact(&into), 3);
    let key = |dir: &Path| std::fs::read(dir.join(AUDIT_KEY_FILE)).expect("read");
    assert_eq!(key(&old), key(&new));
    assert_eq!(mode(&new.join(AUDIT_KEY_FILE)), 0o600);
    into.audit_append(entry(4, "run.start")).expect("appended");
    assert_eq!(intact(&into), 4);
}
