//! The alerts' pure parts and their bookkeeping of the store, tested without a door.

use std::time::Duration;

use super::super::Settings;
use super::*;

#[tokio::test]
async fn expired_dedup_entries_are_removed_by_expiry_and_a_later_window_stays() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(dir.path(), store::Options::default()).expect("opens");
    let run = RunId(uuid::Uuid::from_u128(1));
    let entry = |expires_ms| DedupEntry {
        run_id: run,
        expires_ms,
    };
    let write = |key, expires_ms| {
        let write = AlertWrite {
            dedup: vec![("r", key, entry(expires_ms))],
            ..AlertWrite::default()
        };
        store.put_alerts(&[], &write).expect("written");
    };
    for (key, expires_ms) in [("old", 1_000), ("again", 9_000), ("live", 5_000)] {
        write(key, expires_ms);
    }
    let settings = Settings {
        lease: Duration::from_secs(10),
        poll_wait_max: Duration::from_secs(1),
        platform: Default::default(),
        guard: riposte_scheduler::guard::Policy::new(vec![], &[], 1000, 24, 64, None),
        schedule_grace: Duration::from_secs(60),
        schedule_to_start: None,
        spans: None,
        metrics: false,
        end_unoffered: false,
        pollers: Vec::new(),
    };
    let mut alerts = Alerts::open(&store, &Clock::manual(500), &settings).expect("opens");
    assert_eq!(alerts.dedup_expiries.len(), 3, "read once at start");
    // `again` had a window that ended at 1,500 before its entry for 9,000 was written.
    alerts
        .dedup_expiries
        .push(Reverse(DedupExpiry::new("r", "again", &entry(1_500))));

    alerts.remove_expired_dedup(900).expect("nothing expired");
    assert_eq!(alerts.dedup_expiries.len(), 4);
    assert!(store.dedup_entry("r", "old").expect("read").is_some());
    alerts.remove_expired_dedup(6_000).expect("removed");
    assert_eq!(store.dedup_entry("r", "old").expect("read"), None);
    assert_eq!(store.dedup_entry("r", "live").expect("read"), None);
    assert_eq!(
        store.dedup_entry("r", "again").expect("read"),
        Some(entry(9_000))
    );
    let left: Vec<i64> = alerts
        .dedup_expiries
        .iter()
        .map(|e| e.0.expires_ms)
        .collect();
    assert_eq!(
        left,
        vec![9_000],
        "what expired is taken out, the rest kept"
    );
}

#[test]
fn a_budget_starts_again_each_period_and_never_goes_back_to_an_earlier_one() {
    let hour = 3_600_000;
    let state = BudgetState {
        period_start_ms: 5 * hour,
        runs: 20,
    };
    assert_eq!(in_period(state, 5 * hour), state);
    assert_eq!(in_period(state, 6 * hour).runs, 0);
    // Received before the period of the count: still counted in it, not started afresh.
    assert_eq!(in_period(state, 4 * hour), state);
}

#[test]
fn every_source_has_a_parser_and_others_are_refused() {
    for source in SOURCES {
        assert!(format_of(source).is_ok(), "{source}");
    }
    assert!(matches!(
        format_of("splunk"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn an_oversize_payload_is_resource_exhausted_and_bad_json_invalid() {
    let big = vec![b' '; ingest::PAYLOAD_BYTES_MAX + 1];
    let e = ingest::parse(&Format::AzureMonitor, &big).expect_err("too large");
    assert!(matches!(ingest_error(e), Error::ResourceExhausted(_)));
    let e = ingest::parse(&Format::AzureMonitor, b"{\"schemaId\":").expect_err("truncated");
    assert!(matches!(ingest_error(e), Error::InvalidArgument(_)));
}

#[test]
fn raw_is_seen_by_a_rule_that_reads_it_and_kept_out_of_the_stored_alert() {
    let renderer = Arc::new(Renderer::new());
    let rule = |source: &str| {
        let rule = rules::parse(source, &renderer).expect("a valid rule");
        let stored = StoredRule {
            name: rule.name.clone(),
            source: source.to_string(),
            applied_at_ms: 0,
            disabled: None,
        };
        (rule, stored)
    };
    let fired = rule(
        "name: fired\nmatch: \"alert.raw.data.essentials.monitorCondition == 'Fired'\"\nplaybook: p\n",
    );
    let plain = rule("name: plain\nmatch: \"alert.severity == 'high'\"\nplaybook: p\n");
    assert!(fired.0.reads_raw && !plain.0.reads_raw);
    let payload = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ingest/tests/fixtures/ingest/azure-monitor-common-log-alert.json"
    ))
    .expect("the fixture");
    for (rules, expected) in [(vec![fired], "fired"), (vec![plain], "plain")] {
        let rules = AlertRules {
            rules: Arc::new(rules),
            renderer: renderer.clone(),
            clock: Clock::manual(1_000),
        };
        let decided =
            decide("azure-monitor", payload.clone().into(), &rules, None).expect("parsed");
        let (alert, view, decision) = decided.alerts.into_iter().next().expect("one alert");
        assert!(
            matches!(decision, Decision::Start { index: 0, .. }),
            "{expected}: {decision:?}"
        );
        assert_eq!(
            alert.raw.into_value(),
            Value::Null,
            "the stored alert has no raw"
        );
        assert_eq!(
            view.into_trigger()["raw"]["data"]["essentials"]["monitorCondition"],
            "Fired",
            "the run's trigger has it"
        );
    }
}
