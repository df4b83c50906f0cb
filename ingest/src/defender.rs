//! Microsoft Defender for Cloud security alerts → [`Alert`]s.
//!
//! Accepts the REST / Event Hubs export shape `{id, name, type, properties: {...}}`, the
//! flat shape of the workflow-automation connector (the same fields at the top level, in
//! PascalCase: keys are matched case-insensitively), and lists of either (a bare array or
//! `{"value": [...]}`), at most [`ALERTS_PER_PAYLOAD_MAX`]; one alert per element.
//!
//! - id: the ARM `id`, else `systemAlertId`; dedup hint `systemAlertId/status`.
//! - title `alertDisplayName`; severity `Informational|Low|Medium|High`; status
//!   `Active|InProgress|Resolved|Dismissed`; time `startTimeUtc`, else `timeGeneratedUtc`.
//! - entities: `entities[]` by their `type` (Sentinel entity fields, any casing), and
//!   virtual machines among `resourceIdentifiers[].azureResourceId` as victim hosts.

use serde_json::Value;

use super::alert::{self, Alert, Entities, Role, Severity, Source, Status};
use super::json::{self, get};
use super::{ALERTS_PER_PAYLOAD_MAX, Error, azure_monitor, sentinel, time};

/// Parses one alert or a list of alerts.
pub fn parse(bytes: &[u8]) -> Result<Vec<Alert>, Error> {
    let raw = json::load(bytes)?;
    let list = match (&raw, get(&raw, "value")) {
        (Value::Array(items), _) => Some(items),
        (_, Some(Value::Array(items))) => Some(items),
        _ => None,
    };
    let Some(items) = list else {
        return Ok(vec![parse_one(raw)?]);
    };
    if items.len() > ALERTS_PER_PAYLOAD_MAX {
        return Err(Error::TooManyAlerts {
            count: items.len(),
            max: ALERTS_PER_PAYLOAD_MAX,
        });
    }
    items.iter().cloned().map(parse_one).collect()
}

fn parse_one(raw: Value) -> Result<Alert, Error> {
    if !raw.is_object() {
        return Err(Error::WrongType {
            field: "alert",
            expected: "an object",
        });
    }
    let props = match get(&raw, "properties") {
        Some(p) => json::object(Some(p), "properties")?,
        None => &raw,
    };
    let system_id = json::optional(
        get(props, "systemAlertId"),
        "properties.systemAlertId",
        alert::ID_BYTES_MAX,
    )?;
    let arm_id = json::optional(get(&raw, "id"), "id", alert::ID_BYTES_MAX)?;
    let id = arm_id
        .or_else(|| system_id.clone())
        .ok_or(Error::Missing("properties.systemAlertId"))?;
    let title = json::required(
        get(props, "alertDisplayName"),
        "properties.alertDisplayName",
        alert::TITLE_BYTES_MAX,
    )?;
    let description = json::optional(
        get(props, "description"),
        "properties.description",
        alert::DESCRIPTION_BYTES_MAX,
    )?;
    let severity = json::scalar(get(props, "severity"), "properties.severity")?
        .and_then(|s| Severity::from_name(&s));
    let status = json::optional(get(props, "status"), "properties.status", 64)?;
    let time_ms = ["startTimeUtc", "timeGeneratedUtc"]
        .iter()
        .find_map(|k| json::text(get(props, k)).and_then(|t| time::rfc3339_ms(&t)));
    let entities = entities(props)?;
    let identity = system_id.unwrap_or_else(|| id.clone());
    let dedup_hint = alert::dedup_hint(identity, status.as_deref());
    let alert = Alert {
        id,
        source: Source::Defender,
        time_ms,
        severity,
        title,
        description,
        status: status.as_deref().map(Status::from_vendor),
        entities,
        dedup_hint,
        raw: raw.into(),
        note: None,
        revision: None,
    };
    alert::check_alert(&alert)?;
    Ok(alert)
}

fn entities(props: &Value) -> Result<Entities, Error> {
    let mut entities = Entities::default();
    for entity in json::array(get(props, "entities"), "properties.entities")? {
        let kind = json::text(get(entity, "type")).unwrap_or_default();
        sentinel::add_entity(&mut entities, &kind, entity)?;
    }
    let resources = json::array(
        get(props, "resourceIdentifiers"),
        "properties.resourceIdentifiers",
    )?;
    for resource in resources {
        let id = json::text(get(resource, "azureResourceId")).unwrap_or_default();
        if let Some(host) = azure_monitor::vm_host(&id, Role::Victim) {
            entities.add_host(host)?;
        }
    }
    Ok(entities)
}
