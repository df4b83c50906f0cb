//! Writing back to Microsoft Sentinel end to end: a Sentinel incident sent as Sentinel's
//! automation delivers it starts, through a rule, a playbook that comments on the incident and
//! labels it, run by a worker with `--sentinel-backend azure` against the local Sentinel. The
//! first write of the label meets a stale etag (a forced 412): the worker reads the incident
//! again and writes with the new etag. The run succeeds; the local server
//! holds the comment (naming the run) and the label, and its record of requests shows the
//! retry.

use std::time::Duration;

use riposte_proto::v1::RunStatus;
use riposte_tests::alerts::apply_rule;
use riposte_tests::azure::{self as local, AzureServer, Fault};
use riposte_tests::{Orchestrator, Worker, api};
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

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ingest/tests/fixtures/ingest/sentinel-incident-trigger.json"
    );
    let sent = orchestrator
        .cli(&[
            "--output", "json", "alerts", "send", "-f", fixture, "--source", "sentinel",
        ])
        .await;
    assert_eq!(sent.code(), 0, "{sent}");
    let sent: serde_json::Value = serde_json::from_str(&sent.stdout).unwrap();
    let run_id = sent[0]["run_id"]
        .as_str()
        .expect("a run started")
        .to_owned();
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
    let labels: Vec<&str> = incident["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["ssh", "riposte"]);
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
