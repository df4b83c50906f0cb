//! Microsoft Sentinel incidents (`sentinel.*`), through Azure Resource Manager
//! (`Microsoft.SecurityInsights`, api-version 2024-09-01).
//!
//! * comment: PUT `incidents/{id}/comments/{commentId}` with the message. The comment id is
//!   derived from the task's idempotency key and the incident, so a retried task writes the
//!   same comment again instead of a second one. A dry run reads the incident and reports the
//!   PUT.
//! * update: GET the incident, change what the input names (labels added to and removed from
//!   the incident's own, an owner by user principal name or object id), PUT it back whole with
//!   the `etag` it was read with. A write that finds the etag stale (412, or a 409 that is not
//!   "another operation in progress") reads again and retries, at most [`WRITES_MAX`] times.
//!   An update that changes nothing sends nothing. A dry run reads and reports the PUT.

use reqwest::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::super::sentinel::{Comment, Update};
use super::super::{Context, Failure};
use super::Client;
use super::id::{ArmId, Kind, is_guid};
use super::rest::{Api, Call, Deadline};

/// API version of `Microsoft.SecurityInsights`.
const API_VERSION: &str = "2024-09-01";
/// Writes of one update before a stale etag is given up on.
pub(crate) const WRITES_MAX: u32 = 3;

/// See the module docs.
pub(crate) async fn comment(
    client: &Client,
    comment: &Comment,
    cx: &Context,
) -> Result<Value, Failure> {
    let incident = incident_id(&comment.incident)?;
    let deadline = Deadline::for_task(cx);
    let comment_id = comment_id(&cx.key, &incident);
    let url = incident.url(
        &client.settings().arm_url,
        &format!("/comments/{comment_id}"),
        API_VERSION,
    );
    let put = Call::new("add incident comment", Api::Arm, Method::PUT, url)
        .json(json!({"properties": {"message": comment.message}}));
    let changes = vec![put.display()];
    if cx.dry_run {
        read(client, &incident, &deadline).await?;
    } else {
        client.call(&put, &deadline).await?;
    }
    Ok(json!({
        "incident": incident.as_str(),
        "comment_id": comment_id,
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// See the module docs.
pub(crate) async fn update(
    client: &Client,
    update: &Update,
    cx: &Context,
) -> Result<Value, Failure> {
    let incident = incident_id(&update.incident)?;
    let deadline = Deadline::for_task(cx);
    let mut writes = 0;
    loop {
        let current = read(client, &incident, &deadline).await?;
        let properties = &current["properties"];
        let planned = plan(update, properties);
        let mut output = json!({
            "incident": incident.as_str(),
            "changed": planned.changed,
            "labels_added": planned.labels_added,
            "labels_removed": planned.labels_removed,
            "previous": previous(properties),
            "changes": [],
            "dry_run": cx.dry_run,
        });
        if planned.changed.is_empty() {
            return Ok(output);
        }
        let url = incident.url(&client.settings().arm_url, "", API_VERSION);
        let put = Call::new("update incident", Api::Arm, Method::PUT, url)
            .json(json!({"etag": current["etag"], "properties": planned.properties}))
            .allow_stale();
        output["changes"] = json!([put.display()]);
        if cx.dry_run {
            return Ok(output);
        }
        writes += 1;
        let reply = client.call(&put, &deadline).await?;
        if reply.status.is_success() {
            return Ok(output);
        }
        if writes >= WRITES_MAX {
            return Err(Failure::retryable(format!(
                "azure update incident failed: the incident changed under each of {writes} \
                 writes (stale etag, {})",
                reply.status.as_u16()
            )));
        }
        tracing::info!(
            incident = incident.name(),
            status = reply.status.as_u16(),
            "incident etag stale, reading it again"
        );
    }
}

fn incident_id(text: &str) -> Result<ArmId, Failure> {
    ArmId::parse(text, Kind::Incident)
        .map_err(|e| Failure::invalid_input(format!("`incident`: {e}")))
}

async fn read(client: &Client, incident: &ArmId, deadline: &Deadline) -> Result<Value, Failure> {
    let url = incident.url(&client.settings().arm_url, "", API_VERSION);
    let get = Call::new("read incident", Api::Arm, Method::GET, url);
    let reply = client.call(&get, deadline).await?;
    if !reply.body["properties"].is_object() {
        return Err(Failure::permanent(format!(
            "azure read incident {}: the answer has no properties",
            incident.name()
        )));
    }
    Ok(reply.body)
}

/// A comment id that is the same for every attempt of one task on one incident: a GUID made of
/// the SHA-256 of both.
fn comment_id(task: &str, incident: &ArmId) -> String {
    let digest = Sha256::digest(format!(
        "{task}\n{}",
        incident.as_str().to_ascii_lowercase()
    ));
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The properties to write back and what differs.
struct Planned {
    properties: Value,
    changed: Vec<&'static str>,
    labels_added: Vec<String>,
    labels_removed: Vec<String>,
}

/// `properties` with `update` applied. Read-only fields are left out of the write.
fn plan(update: &Update, properties: &Value) -> Planned {
    let mut out: Map<String, Value> = Map::new();
    for key in [
        "title",
        "description",
        "severity",
        "status",
        "classification",
        "classificationReason",
        "classificationComment",
        "owner",
        "labels",
        "firstActivityTimeUtc",
        "lastActivityTimeUtc",
    ] {
        if let Some(value) = properties.get(key).filter(|v| !v.is_null()) {
            out.insert(key.to_owned(), value.clone());
        }
    }
    let mut changed = Vec::new();
    let mut set = |key: &'static str, value: Option<Value>| {
        if let Some(value) = value
            && out.get(key) != Some(&value)
        {
            out.insert(key.to_owned(), value);
            changed.push(key);
        }
    };
    set("status", update.status.map(Value::from));
    set("severity", update.severity.map(Value::from));
    set("classification", update.classification.map(Value::from));
    set(
        "classificationReason",
        update.classification_reason.map(Value::from),
    );
    set(
        "classificationComment",
        update.classification_comment.clone().map(Value::from),
    );
    let owner = update.owner.as_ref().map(|owner| match is_guid(owner) {
        true => json!({"objectId": owner}),
        false => json!({"userPrincipalName": owner}),
    });
    let owner_changed = owner.as_ref().is_some_and(|owner| {
        let now = &properties["owner"];
        owner
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| now[k] != *v)
    });
    if let (Some(owner), true) = (owner, owner_changed) {
        out.insert("owner".into(), owner);
        changed.push("owner");
    }
    let mut labels: Vec<Value> = properties["labels"].as_array().cloned().unwrap_or_default();
    let name = |label: &Value| label["labelName"].as_str().unwrap_or("").to_owned();
    let had = |wanted: &str, labels: &[Value]| labels.iter().any(|l| name(l) == wanted);
    let labels_added: Vec<String> = update
        .labels_add
        .iter()
        .filter(|l| !had(l, &labels))
        .cloned()
        .collect();
    let labels_removed: Vec<String> = update
        .labels_remove
        .iter()
        .filter(|l| had(l, &labels))
        .cloned()
        .collect();
    if !labels_added.is_empty() || !labels_removed.is_empty() {
        labels.retain(|l| !labels_removed.contains(&name(l)));
        labels.extend(
            labels_added
                .iter()
                .map(|l| json!({"labelName": l, "labelType": "User"})),
        );
        out.insert("labels".into(), Value::Array(labels));
        changed.push("labels");
    }
    Planned {
        properties: Value::Object(out),
        changed,
        labels_added,
        labels_removed,
    }
}

/// What an undo or an operator needs of the incident before the change.
fn previous(properties: &Value) -> Value {
    let labels: Vec<&Value> = properties["labels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| &l["labelName"])
        .collect();
    json!({
        "status": properties["status"],
        "severity": properties["severity"],
        "classification": properties["classification"],
        "owner": properties["owner"]["userPrincipalName"],
        "labels": labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident() -> Value {
        json!({
            "title": "SSH brute force", "severity": "High", "status": "New",
            "labels": [{"labelName": "auto", "labelType": "System"}],
            "owner": {"objectId": null, "userPrincipalName": null},
            "incidentNumber": 42, "createdTimeUtc": "2026-01-15T10:00:00Z",
        })
    }

    #[test]
    fn a_plan_keeps_what_it_does_not_change_and_leaves_read_only_fields_out() {
        let update = Update {
            incident: String::new(),
            status: Some("Active"),
            labels_add: vec!["riposte".into(), "auto".into()],
            owner: Some("alice@contoso.com".into()),
            ..Update::default()
        };
        let planned = plan(&update, &incident());
        assert_eq!(planned.changed, ["status", "owner", "labels"]);
        assert_eq!(planned.labels_added, ["riposte"], "auto was there already");
        assert_eq!(
            planned.properties,
            json!({
                "title": "SSH brute force", "severity": "High", "status": "Active",
                "owner": {"userPrincipalName": "alice@contoso.com"},
                "labels": [
                    {"labelName": "auto", "labelType": "System"},
                    {"labelName": "riposte", "labelType": "User"},
                ],
            })
        );
        let again = Update {
            status: Some("New"),
            labels_remove: vec!["absent".into()],
            ..update
        };
        let same = plan(
            &Update {
                owner: None,
                labels_add: Vec::new(),
                ..again
            },
            &incident(),
        );
        assert!(same.changed.is_empty(), "{:?}", same.changed);
    }

    #[test]
    fn a_comment_id_is_stable_per_task_and_incident() {
        let id = |text: &str| ArmId::parse(text, Kind::Incident).unwrap();
        let incident = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/law/providers/Microsoft.SecurityInsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5";
        let a = comment_id("run/comment/0", &id(incident));
        assert!(is_guid(&a), "{a}");
        assert_eq!(
            a,
            comment_id(
                "run/comment/0",
                &id(&incident
                    .to_uppercase()
                    .replace("SUBSCRIPTIONS", "subscriptions"))
            )
        );
        assert_ne!(a, comment_id("run/comment/1", &id(incident)));
    }
}
