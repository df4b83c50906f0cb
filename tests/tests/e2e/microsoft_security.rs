//! The Microsoft security round trip end to end. Writing back to Sentinel: a Sentinel incident
//! sent as Sentinel's
//! automation delivers it starts, through a rule, a playbook that comments on the incident and
//! labels it, run by a worker with `--sentinel-backend azure` against the local Sentinel. The
//! first write of the label meets a stale etag (a forced 412): the worker reads the incident
//! again and writes with the new etag. The run succeeds; the local server
//! holds the comment (naming the run) and the label, and its record of requests shows the
//! retry. The built-in `ip-block`, started the same way, blocks the incident's address in the
//! NSG, then comments on the incident and labels it. A Defender for Cloud alert pushed as its
//! workflow automation sends it blocks its attacker's address the same way, and leaves
//! Sentinel alone.

use std::time::Duration;

use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::alerts::apply_rule;
use riposte_tests::azure::{self as local, AzureServer, Fault};
use riposte_tests::{Orchestrator, Worker, api, response};
use serde_json::json;

const SECRET: &str = "local-test-secret-Zq8";
const TIMEOUT: Duration = Duration::from_secs(60);

const ACK: &str = r#"
name: sentinel-ack
version: 1
steps:
  - id: comment
    action: sentinel.comment
    with:
      incident: "{{ trigger.id }}"
      message: "Riposte is on it: run {{ run.id }} (riposte runs show {{ run.id }})"
  - id: label
    needs: [comment]
    action: sentinel.update_incident
    with: { incident: "{{ trigger.id }}", status: Active, labels_add: [riposte] }
    undo:
      action: sentinel.update_incident
      with: { incident: "{{ trigger.id }}", labels_remove: "{{ steps.label.output.labels_added }}" }
"#;

const RULE: &str = r#"
name: sentinel-ack
match: "alert.source == 'sentinel'"
playbook: sentinel-ack
"#;

/// The Sentinel incident fixture, as Sentinel's automation delivers it.
const INCIDENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ingest/tests/fixtures/ingest/sentinel-incident-trigger.json"
);

/// Sends the incident with `riposte alerts send`; the id of the run it started.
async fn send_incident(orchestrator: &Orchestrator) -> String {
    let sent = orchestrator
        .cli(&[
            "--output", "json", "alerts", "send", "-f", INCIDENT, "--source", "sentinel",
        ])
        .await;
    assert_eq!(sent.code(), 0, "{sent}");
    let sent: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    sent[0]["run_id"]
        .as_str()
        .expect("a run started")
        .to_owned()
}

fn labels(incident: &serde_json::Value) -> Vec<&str> {
    incident["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_sentinel_incident_gets_a_comment_and_a_label_through_a_stale_etag() {
    let azure = AzureServer::start(SECRET).await;
    let orchestrator = Orchestrator::builder().start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&["--sentinel-backend", "azure"])
        .azure(&azure, SECRET)
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, ACK).await;
    let applied = apply_rule(&orchestrator, RULE).await;
    assert_eq!(applied.code(), 0, "{applied}");
    // The incident's id arrives in lower case, as Sentinel writes it.
    let incident_tail = local::INCIDENT_ID.rsplit_once("/incidents/").unwrap().1;
    azure.fault(Fault {
        times: 1,
        ..Fault::arm_error(
            "PUT",
            incident_tail,
            412,
            json!({"error": {"code": "PreconditionFailed", "message": "The etag is stale."}}),
        )
    });

    let run_id = send_incident(&orchestrator).await;
    let run = api::wait_finished(&mut client, &run_id, TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}\n{}",
        api::describe(&run),
        worker.log_tail()
    );

    let comments = azure.incident_comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0].1.contains(&format!("run {run_id}")),
        "{comments:?}"
    );
    let incident = azure.incident();
    assert_eq!(incident["status"], "Active");
    assert_eq!(labels(&incident), ["ssh", "riposte"]);
    let record: Vec<String> = azure
        .requests()
        .iter()
        .filter(|r| r.path.contains(incident_tail))
        .map(|r| {
            let tail = r.path.rsplit_once(incident_tail).unwrap().1;
            format!(
                "{} {}",
                r.method,
                if tail.is_empty() {
                    "incident"
                } else {
                    "comment"
                }
            )
        })
        .collect();
    assert_eq!(
        record,
        [
            "PUT comment",
            "GET incident",
            "PUT incident",
            "GET incident",
            "PUT incident"
        ],
        "the comment, then the label: a stale write, a read, the write again"
    );
}

const BLOCK_FROM_SENTINEL: &str = r#"
name: block-from-sentinel
match: "alert.source == 'sentinel' and alert.entities.ips | length > 0"
playbook: ip-block
params:
  ip: "{{ alert.entities.ips[0].address }}"
  duration: 1h
  reason: "{{ alert.title }}"
"#;

#[tokio::test]
async fn the_built_in_ip_block_started_from_an_incident_blocks_then_comments_and_labels_it() {
    let azure = AzureServer::start(SECRET).await;
    let orchestrator = Orchestrator::builder().start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&[
            "--firewall-backend",
            "azure-nsg",
            "--sentinel-backend",
            "azure",
        ])
        .azure(&azure, SECRET)
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    let applied = apply_rule(&orchestrator, BLOCK_FROM_SENTINEL).await;
    assert_eq!(applied.code(), 0, "{applied}");

    let run_id = send_incident(&orchestrator).await;
    // The block holds for its hour; the write-back ends the steps.
    let run = response::wait_step(
        &mut client,
        &run_id,
        "incident_update",
        StepStatus::Succeeded,
        TIMEOUT,
    )
    .await;
    assert_eq!(api::step(&run, "block").status(), StepStatus::Succeeded);
    let rules = azure.requests_to("PUT", "/securityRules/riposte-block-203-0-113-45-32");
    assert_eq!(rules.len(), 1, "the NSG rule for the incident's address");
    let comments = azure.incident_comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(
        comments[0]
            .1
            .starts_with("Riposte blocked 203.0.113.45 for 1h.")
            && comments[0]
                .1
                .contains(&format!("riposte runs show {run_id}")),
        "{comments:?}"
    );
    let incident = azure.incident();
    assert_eq!(incident["status"], "Active");
    assert_eq!(labels(&incident), ["ssh", "riposte-contained"]);
}

const BLOCK_FROM_DEFENDER: &str = r#"
name: block-from-defender
match: "alert.source == 'defender' and alert.entities.ips | length > 0"
playbook: ip-block
params:
  ip: "{{ alert.entities.ips[0].address }}"
  duration: 1h
  reason: "{{ alert.title }}"
"#;

#[tokio::test]
async fn a_defender_alert_pushed_blocks_its_attacker_with_the_built_in() {
    let azure = AzureServer::start(SECRET).await;
    let orchestrator = Orchestrator::builder().start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&[
            "--firewall-backend",
            "azure-nsg",
            "--sentinel-backend",
            "azure",
        ])
        .azure(&azure, SECRET)
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    let applied = apply_rule(&orchestrator, BLOCK_FROM_DEFENDER).await;
    assert_eq!(applied.code(), 0, "{applied}");
    let alert = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ingest/tests/fixtures/ingest/defender-alert.json"
    );
    let sent = orchestrator
        .cli(&[
            "--output", "json", "alerts", "send", "-f", alert, "--source", "defender",
        ])
        .await;
    assert_eq!(sent.code(), 0, "{sent}");
    let sent: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    let run_id = sent[0]["run_id"]
        .as_str()
        .expect("a run started")
        .to_owned();
    let run = response::wait_step(
        &mut client,
        &run_id,
        "block",
        StepStatus::Succeeded,
        TIMEOUT,
    )
    .await;
    assert_eq!(api::json(&run.params_json)["ip"], "203.0.113.50");
    let rules = azure.requests_to("PUT", "/securityRules/riposte-block-203-0-113-50-32");
    assert_eq!(rules.len(), 1, "the NSG rule for the alert's attacker");
    for step in ["incident_comment", "incident_update"] {
        assert_eq!(
            api::step(&run, step).status(),
            StepStatus::Skipped,
            "{step}"
        );
    }
    assert!(azure.incident_comments().is_empty());
}
