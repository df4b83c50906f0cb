//! The Microsoft security round trip end to end, against the local ARM server:
//!
//! - A Sentinel incident, sent as Sentinel's automation delivers it, starts through a rule a
//!   playbook that comments on the incident and labels it, on a worker with
//!   `--sentinel-backend azure`. The first write of the label meets a stale etag (a forced
//!   412): the worker reads the incident again and writes with the new etag. The run
//!   succeeds; the local server holds the comment (naming the run) and the label, and its
//!   record of requests shows the retry.
//! - The built-in `ip-block`, started the same way, blocks the incident's address in the NSG,
//!   then comments on the incident and labels it.
//! - A Defender for Cloud alert, pushed as its workflow automation sends it, blocks its
//!   attacker's address the same way and leaves Sentinel alone.

use std::time::Duration;

use riposte_proto::v1::{RunStatus, StepStatus};
use riposte_tests::alerts::apply_rule;
use riposte_tests::api::Operator;
use riposte_tests::azure::{self as local, AzureServer, Fault};
use riposte_tests::{Orchestrator, Worker, api, response};
use serde_json::{Value, json};

const SECRET: &str = "local-test-secret-Zq8";
const TIMEOUT: Duration = Duration::from_secs(60);

/// The Sentinel incident and the Defender for Cloud alert, as each is delivered.
const INCIDENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ingest/tests/fixtures/ingest/sentinel-incident-trigger.json"
);
const DEFENDER_ALERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ingest/tests/fixtures/ingest/defender-alert.json"
);

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

const ACK_RULE: &str = r#"
name: sentinel-ack
match: "alert.source == 'sentinel'"
playbook: sentinel-ack
"#;

/// A rule that starts `ip-block` for the first address of an alert from `source`.
fn block_rule(source: &str) -> String {
    format!(
        r#"
name: block-from-{source}
match: "alert.source == '{source}' and alert.entities.ips | length > 0"
playbook: ip-block
params:
  ip: "{{{{ alert.entities.ips[0].address }}}}"
  duration: 1h
  reason: "{{{{ alert.title }}}}"
"#
    )
}

/// A local Azure, an orchestrator with `rule` applied, and a worker with the `sentinel`
/// backend and `backends`.
struct Fleet {
    azure: AzureServer,
    worker: Worker,
    client: Operator,
    orchestrator: Orchestrator,
}

impl Fleet {
    async fn start(backends: &[&str], rule: &str) -> Fleet {
        let azure = AzureServer::start(SECRET).await;
        let orchestrator = Orchestrator::builder().start();
        let worker = Worker::builder(&orchestrator.url())
            .args(&["--sentinel-backend", "azure"])
            .args(backends)
            .azure(&azure, SECRET)
            .start();
        let mut client = orchestrator.client();
        worker.id(&mut client).await;
        let applied = apply_rule(&orchestrator, rule).await;
        assert_eq!(applied.code(), 0, "{applied}");
        Fleet {
            azure,
            worker,
            client,
            orchestrator,
        }
    }

    /// Sends `file` as `source` with `riposte alerts send`; the id of the run it started.
    async fn send(&self, file: &str, source: &str) -> String {
        let args = ["--output", "json", "alerts", "send", "-f", file];
        let sent = self
            .orchestrator
            .cli(&[&args[..], &["--source", source]].concat())
            .await;
        assert_eq!(sent.code(), 0, "{sent}");
        let sent: Value = serde_json::from_str(&sent.stdout).unwrap();
        sent[0]["run_id"]
            .as_str()
            .expect("a run started")
            .to_owned()
    }

    /// Waits until `step` of `run_id` succeeded (an `ip-block` run holds its block for an
    /// hour, so the run itself does not end).
    async fn wait_step(&mut self, run_id: &str, step: &str) -> riposte_proto::v1::Run {
        response::wait_step(
            &mut self.client,
            run_id,
            step,
            StepStatus::Succeeded,
            TIMEOUT,
        )
        .await
    }
}

fn labels(incident: &Value) -> Vec<&str> {
    incident["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_sentinel_incident_gets_a_comment_and_a_label_through_a_stale_etag() {
    let mut fleet = Fleet::start(&[], ACK_RULE).await;
    api::apply_playbook(&mut fleet.client, ACK).await;
    // The incident's id arrives in lower case, as Sentinel writes it.
    let incident_tail = local::INCIDENT_ID.rsplit_once("/incidents/").unwrap().1;
    fleet.azure.fault(Fault {
        times: 1,
        ..Fault::arm_error(
            "PUT",
            incident_tail,
            412,
            json!({"error": {"code": "PreconditionFailed", "message": "The etag is stale."}}),
        )
    });

    let run_id = fleet.send(INCIDENT, "sentinel").await;
    let run = api::wait_finished(&mut fleet.client, &run_id, TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}\n{}",
        api::describe(&run),
        fleet.worker.log_tail()
    );
    let azure = &fleet.azure;
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
            let what = if tail.is_empty() {
                "incident"
            } else {
                "comment"
            };
            format!("{} {what}", r.method)
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

#[tokio::test]
async fn the_built_in_ip_block_started_from_an_incident_blocks_then_comments_and_labels_it() {
    let rule = block_rule("sentinel");
    let mut fleet = Fleet::start(&["--firewall-backend", "azure-nsg"], &rule).await;
    let run_id = fleet.send(INCIDENT, "sentinel").await;
    let run = fleet.wait_step(&run_id, "incident_update").await;
    assert_eq!(api::step(&run, "block").status(), StepStatus::Succeeded);
    let azure = &fleet.azure;
    let rules = azure.requests_to("PUT", "/securityRules/riposte-block-203-0-113-45-32");
    assert_eq!(rules.len(), 1, "the NSG rule for the incident's address");
    let comments = azure.incident_comments();
    assert_eq!(comments.len(), 1, "{comments:?}");
    let comment = &comments[0].1;
    assert!(
        comment.starts_with("Riposte blocked 203.0.113.45 for 1h.")
            && comment.contains(&format!("riposte runs show {run_id}")),
        "{comments:?}"
    );
    let incident = azure.incident();
    assert_eq!(incident["status"], "Active");
    assert_eq!(labels(&incident), ["ssh", "riposte-contained"]);
}

#[tokio::test]
async fn a_defender_alert_pushed_blocks_its_attacker_with_the_built_in() {
    let rule = block_rule("defender");
    let mut fleet = Fleet::start(&["--firewall-backend", "azure-nsg"], &rule).await;
    let run_id = fleet.send(DEFENDER_ALERT, "defender").await;
    let run = fleet.wait_step(&run_id, "block").await;
    assert_eq!(api::json(&run.params_json)["ip"], "203.0.113.50");
    let azure = &fleet.azure;
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
