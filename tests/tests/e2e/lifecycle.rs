//! Every object's life at the CLI: a rule is tested against the shipped fixtures (matches and
//! non-matches, with the parameters and dedup key it would use, and the run that would absorb
//! a repeat) without anything stored, then disabled, enabled and deleted; a schedule is
//! deleted and its history stays; a playbook's versions are listed, compared, rolled back
//! and deleted when nothing uses them; each change is in the audit log with who made it.

use riposte_tests::Orchestrator;
use riposte_tests::alerts::{AZURE_FIXTURE, ECHO_IP, apply_rule, send_azure_monitor};

const BLOCK_SOURCE_IP: &str = r#"
name: echo-attacker
match: "alert.source == 'azure_monitor' and alert.severity in ['high', 'critical']"
playbook: ip-echo
params: { ip: "{{ alert.entities.ips[0].address }}" }
dedup: { key: "{{ alert.entities.ips[0].address }}", window: 1h }
"#;

const DEFENDER_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ingest/tests/fixtures/ingest/defender-alert.json"
);

async fn test_rules(orchestrator: &Orchestrator, file: &str, source: &str) -> serde_json::Value {
    let args = [
        "--output", "json", "rules", "test", "-f", file, "--source", source,
    ];
    let out = orchestrator.cli(&args).await;
    assert_eq!(out.code(), 0, "{out}");
    out.json()
}

async fn json(orchestrator: &Orchestrator, args: &[&str]) -> serde_json::Value {
    let out = orchestrator
        .cli(&[&["--output", "json"][..], args].concat())
        .await;
    assert_eq!(out.code(), 0, "{out}");
    out.json()
}

#[tokio::test]
async fn a_rule_is_tested_disabled_enabled_and_deleted_and_every_change_is_audited() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    riposte_tests::api::apply_playbook(&mut client, ECHO_IP).await;
    let out = apply_rule(&orchestrator, BLOCK_SOURCE_IP).await;
    assert_eq!(out.code(), 0, "{out}");

    let verdicts = test_rules(&orchestrator, AZURE_FIXTURE, "azure_monitor").await;
    let verdict = &verdicts[0];
    assert_eq!(verdict["fate"], "started", "{verdict}");
    assert_eq!(verdict["rule"], "echo-attacker");
    assert_eq!(verdict["playbook"], "ip-echo@0");
    assert_eq!(verdict["params"], serde_json::json!({"ip": "203.0.113.45"}));
    assert_eq!(verdict["dedup_key"], "203.0.113.45");
    let other = test_rules(&orchestrator, DEFENDER_FIXTURE, "defender").await;
    assert_eq!(other[0]["fate"], "matched_nothing", "{other}");
    assert_eq!(other[0]["rule"], "");
    // The old spelling of the source is still accepted, with a warning.
    let table = orchestrator
        .cli(&[
            "rules",
            "test",
            "-f",
            AZURE_FIXTURE,
            "--source",
            "azure-monitor",
        ])
        .await;
    let warning = "warning: source `azure-monitor` is now spelled `azure_monitor`";
    assert!(table.stderr.contains(warning), "{table}");
    assert!(table.stdout.contains("would be:    started"), "{table}");
    assert!(
        table
            .stdout
            .contains(r#"params:      {"ip":"203.0.113.45"}"#),
        "{table}"
    );
    let stored = json(&orchestrator, &["alerts", "list"]).await;
    assert_eq!(stored, serde_json::json!([]), "a test stores nothing");
    let runs = json(&orchestrator, &["runs", "list"]).await;
    assert_eq!(runs, serde_json::json!([]), "a test starts nothing");

    let sent = send_azure_monitor(&orchestrator, AZURE_FIXTURE).await;
    let run_id = sent.json()[0]["run_id"].as_str().unwrap().to_string();
    let repeat = test_rules(&orchestrator, AZURE_FIXTURE, "azure_monitor").await;
    assert_eq!(repeat[0]["fate"], "deduplicated", "{repeat}");
    assert_eq!(
        repeat[0]["run_id"],
        run_id.as_str(),
        "the run that would absorb it"
    );

    let reason = ["--reason", "too noisy"];
    let off = orchestrator
        .cli(&[&["rules", "disable", "echo-attacker"][..], &reason].concat())
        .await;
    assert_eq!(off.code(), 0, "{off}");
    assert!(off.stdout.contains("no (by token:e2e: too noisy)"), "{off}");
    let disabled = test_rules(&orchestrator, AZURE_FIXTURE, "azure_monitor").await;
    assert_eq!(disabled[0]["fate"], "matched_nothing", "{disabled}");
    let again = apply_rule(&orchestrator, BLOCK_SOURCE_IP).await;
    assert_eq!(again.code(), 0, "{again}");
    let shown = json(&orchestrator, &["rules", "show", "echo-attacker"]).await;
    assert_eq!(
        shown["enabled"], false,
        "applying again keeps it disabled: {shown}"
    );
    assert_eq!(shown["source"], BLOCK_SOURCE_IP);
    let on = orchestrator
        .cli(&["rules", "enable", "echo-attacker"])
        .await;
    assert_eq!(on.code(), 0, "{on}");
    let enabled = test_rules(&orchestrator, AZURE_FIXTURE, "azure_monitor").await;
    assert_eq!(enabled[0]["fate"], "deduplicated", "{enabled}");

    let deleted = orchestrator
        .cli(&["rules", "delete", "echo-attacker"])
        .await;
    assert_eq!(deleted.code(), 0, "{deleted}");
    assert_eq!(
        json(&orchestrator, &["rules", "list"]).await,
        serde_json::json!([])
    );
    let gone = orchestrator.cli(&["rules", "show", "echo-attacker"]).await;
    assert_eq!(gone.code(), 1, "{gone}");
    assert!(
        gone.stderr.contains("no rule named `echo-attacker`"),
        "{gone}"
    );

    let audit = json(&orchestrator, &["audit", "list", "--all"]).await;
    let done = |action: &str| {
        audit.as_array().unwrap().iter().any(|r| {
            r["action"] == action && r["principal"] == "token:e2e" && r["target"] == "echo-attacker"
        })
    };
    for action in ["rule.apply", "rule.set_enabled", "rule.delete"] {
        assert!(done(action), "{action} in {audit:#}");
    }
}

#[tokio::test]
async fn a_deleted_schedule_fires_no_more_and_its_history_stays() {
    let orchestrator = Orchestrator::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nightly.yaml");
    let source = "name: nightly\ncron: \"0 3 * * *\"\nplaybook: hello\nparams: { name: night }\n";
    std::fs::write(&file, source).unwrap();
    let mut client = orchestrator.client();
    let hello = "name: hello\nversion: 1\nparams:\n  name: { type: string }\nsteps:\n  - id: greet\n    action: core.echo\n    with: { message: \"hello {{ params.name }}\" }\n";
    riposte_tests::api::apply_playbook(&mut client, hello).await;
    let applied = orchestrator
        .cli(&["schedules", "apply", file.to_str().unwrap()])
        .await;
    assert_eq!(applied.code(), 0, "{applied}");
    let fired = orchestrator.cli(&["schedules", "trigger", "nightly"]).await;
    assert_eq!(fired.code(), 0, "{fired}");

    let deleted = orchestrator.cli(&["schedules", "delete", "nightly"]).await;
    assert_eq!(deleted.code(), 0, "{deleted}");
    assert!(
        deleted.stdout.contains("deleted schedule nightly"),
        "{deleted}"
    );
    assert_eq!(
        json(&orchestrator, &["schedules", "list"]).await,
        serde_json::json!([])
    );
    let history = json(&orchestrator, &["schedules", "history", "nightly"]).await;
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");
    let again = orchestrator.cli(&["schedules", "delete", "nightly"]).await;
    assert_eq!(again.code(), 1, "{again}");
    let audit = json(&orchestrator, &["audit", "list", "--all"]).await;
    let recorded = audit.as_array().unwrap().iter().any(|r| {
        r["action"] == "schedule.delete" && r["target"] == "nightly" && r["outcome"] == "ok"
    });
    assert!(recorded, "{audit:#}");
}

const GREET_V1: &str = "name: greet\nversion: 1\nsteps:\n  - id: say\n    action: core.echo\n    with: { message: one }\n";
const GREET_V2: &str = "name: greet\nversion: 2\nsteps:\n  - id: say\n    action: core.echo\n    with: { message: two }\n";

#[tokio::test]
async fn a_playbook_is_rolled_back_and_a_version_nothing_uses_is_deleted() {
    let orchestrator = Orchestrator::start();
    let worker = riposte_tests::Worker::start(&orchestrator.url(), &[], 1);
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    riposte_tests::api::apply_playbook(&mut client, GREET_V1).await;
    riposte_tests::api::apply_playbook(&mut client, GREET_V2).await;
    let rule = "name: greeter\nmatch: \"alert.source == 'generic'\"\nplaybook: greet\n";
    assert_eq!(apply_rule(&orchestrator, rule).await.code(), 0);

    let versions = json(&orchestrator, &["playbook", "versions", "greet"]).await;
    let listed: Vec<(u64, bool)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["default"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [(1, false), (2, true)], "{versions}");
    let diff = orchestrator
        .cli(&["playbook", "diff", "greet", "1", "2"])
        .await;
    assert_eq!(diff.code(), 1, "they differ: {diff}");
    assert!(diff.stdout.contains("-version: 1\n+version: 2"), "{diff}");
    assert!(
        diff.stdout
            .contains("-    with: { message: one }\n+    with: { message: two }"),
        "{diff}"
    );

    let refused = orchestrator
        .cli(&["playbook", "delete", "greet", "2"])
        .await;
    assert_eq!(refused.code(), 1, "{refused}");
    assert!(
        refused.stderr.contains("rule `greeter` starts it"),
        "{refused}"
    );

    let rolled = orchestrator
        .cli(&["playbook", "default", "greet", "1"])
        .await;
    assert_eq!(rolled.code(), 0, "{rolled}");
    assert!(
        rolled
            .stdout
            .contains("greet runs version 1 when no version is named"),
        "{rolled}"
    );
    let ran = orchestrator
        .cli(&["--output", "json", "run", "greet", "--wait"])
        .await;
    assert_eq!(ran.code(), 0, "{ran}");
    let last = ran.stdout.lines().last().unwrap();
    let run: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        run["version"], 1,
        "a start naming no version gets the default: {run}"
    );
    let listed = json(&orchestrator, &["playbook", "list"]).await;
    let greet = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "greet")
        .cloned();
    assert_eq!(greet.unwrap()["version"], 1, "{listed}");

    let pinned = orchestrator
        .cli(&["playbook", "delete", "greet", "1"])
        .await;
    assert_eq!(pinned.code(), 1, "{pinned}");
    assert!(
        pinned.stderr.contains("it is the default version"),
        "{pinned}"
    );
    let deleted = orchestrator
        .cli(&["playbook", "delete", "greet", "2"])
        .await;
    assert_eq!(
        deleted.code(),
        0,
        "the rule follows the default, 1: {deleted}"
    );
    let versions = json(&orchestrator, &["playbook", "versions", "greet"]).await;
    assert_eq!(
        versions["versions"].as_array().map(Vec::len),
        Some(1),
        "{versions}"
    );

    let audit = json(&orchestrator, &["audit", "list", "--all"]).await;
    for (action, target) in [
        ("playbook.set_default", "greet@1"),
        ("playbook.delete", "greet@2"),
    ] {
        let found = audit.as_array().unwrap().iter().any(|r| {
            r["action"] == action && r["target"] == target && r["principal"] == "token:e2e"
        });
        assert!(found, "{action} {target} in {audit:#}");
    }
}
