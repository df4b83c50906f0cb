//! `sentinel.*` against the local Sentinel incident: comments written once per task, updates
//! read, changed and written back with the incident's etag, read again after a stale one.

use riposte_test_support::azure::{self as local, AzureServer, Fault};
use serde_json::{Value, json};

use super::super::sentinel::{Comment, Update};
use super::tests::{client, cx, settings};
use super::*;

const SECRET: &str = "local-test-secret-Zq8";

fn labels(incident: &Value) -> Vec<&str> {
    incident["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["labelName"].as_str().unwrap())
        .collect()
}

fn update(labels_add: &[&str]) -> Update {
    Update {
        incident: local::INCIDENT_ID.into(),
        status: Some("Active"),
        labels_add: labels_add.iter().map(|l| l.to_string()).collect(),
        ..Update::default()
    }
}

#[tokio::test]
async fn a_comment_is_written_once_however_often_its_task_is_tried() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    let comment = Comment {
        incident: local::INCIDENT_ID.into(),
        message: "Riposte blocked 203.0.113.45 for 24h (run 0190).".into(),
    };
    let first = incidents::comment(&client, &comment, &cx(false))
        .await
        .unwrap();
    let again = incidents::comment(&client, &comment, &cx(false))
        .await
        .unwrap();
    assert_eq!(first["comment_id"], again["comment_id"]);
    assert_eq!(
        server.incident_comments(),
        [(
            first["comment_id"].as_str().unwrap().to_owned(),
            comment.message.clone()
        )]
    );
    let dry = incidents::comment(&client, &comment, &cx(true))
        .await
        .unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        server.requests_to("PUT", "").len(),
        2,
        "a dry run writes nothing"
    );
}

#[tokio::test]
async fn an_update_adds_a_label_and_its_undo_removes_only_that_label() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    let out = incidents::update(&client, &update(&["riposte", "ssh"]), &cx(false))
        .await
        .unwrap();
    assert_eq!(
        out["labels_added"],
        json!(["riposte"]),
        "ssh was there: {out}"
    );
    assert_eq!(out["previous"]["status"], "New");
    assert_eq!(out["previous"]["labels"], json!(["ssh"]));
    let incident = server.incident();
    assert_eq!(incident["status"], "Active");
    assert_eq!(labels(&incident), ["ssh", "riposte"]);

    let undo = Update {
        incident: local::INCIDENT_ID.into(),
        labels_remove: vec!["riposte".into()],
        ..Update::default()
    };
    let out = incidents::update(&client, &undo, &cx(false)).await.unwrap();
    assert_eq!(out["labels_removed"], json!(["riposte"]));
    assert_eq!(labels(&server.incident()), ["ssh"]);

    // Nothing left to change: nothing is written.
    let puts = server.requests_to("PUT", local::INCIDENT_ID).len();
    let out = incidents::update(&client, &undo, &cx(false)).await.unwrap();
    assert_eq!(out["changed"], json!([]));
    assert_eq!(server.requests_to("PUT", local::INCIDENT_ID).len(), puts);
}

#[tokio::test]
async fn a_stale_etag_is_read_again_and_written_with_the_new_one() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    server.fault(Fault {
        times: 1,
        ..Fault::arm_error(
            "PUT",
            local::INCIDENT_ID,
            412,
            json!({"error": {"code": "PreconditionFailed", "message": "The etag is stale."}}),
        )
    });
    incidents::update(&client, &update(&["riposte"]), &cx(false))
        .await
        .unwrap();
    let calls: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with(local::INCIDENT_ID))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(calls, ["GET", "PUT", "GET", "PUT"]);
    assert_eq!(labels(&server.incident()), ["ssh", "riposte"]);

    // An incident that changes under every write: the update gives up, retryable.
    server.fault(Fault::arm_error(
        "PUT",
        local::INCIDENT_ID,
        412,
        json!({"error": {"code": "PreconditionFailed", "message": "The etag is stale."}}),
    ));
    let failure = incidents::update(&client, &update(&["again"]), &cx(false))
        .await
        .unwrap_err();
    assert!(failure.retryable);
    assert_eq!(
        failure.message,
        "azure update incident failed: the incident changed under each of 3 writes (stale \
         etag, 412)"
    );
}

#[tokio::test]
async fn a_dry_run_reads_the_incident_and_writes_nothing() {
    let server = AzureServer::start(SECRET).await;
    let client = client(&settings(&server));
    let out = incidents::update(&client, &update(&["riposte"]), &cx(true))
        .await
        .unwrap();
    assert_eq!(out["dry_run"], true);
    assert!(
        out["changes"][0].as_str().unwrap().starts_with("PUT "),
        "{out}"
    );
    assert!(server.requests_to("PUT", "").is_empty());
    assert_eq!(server.incident()["status"], "New");
}
