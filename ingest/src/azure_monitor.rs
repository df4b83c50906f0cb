//! Azure Monitor common alert schema (action group webhook) → one [`Alert`].
//!
//! - id: `essentials.alertId`; dedup hint `alertId/monitorCondition` (Azure retries
//!   deliveries; a Fired and its Resolved are two different notifications).
//! - title: `essentials.alertRule` (null for budget alerts: then the description, then
//!   `monitoringService`); severity `Sev0`..`Sev4` (see [`super::alert`]); time
//!   `firedDateTime`; status `monitorCondition`.
//! - entities: dimensions of `alertContext.condition.allOf[]` (Log Alerts V2 carry the
//!   attacker IP as a dimension such as `SourceIP`; the role comes from the dimension name),
//!   and virtual machines among `alertTargetIDs` as victim hosts.

use serde_json::Value;

use super::alert::{self, Account, Alert, Entities, Host, Raw, Role, Severity, Source, Status};
use super::json::{self, Keep, get};
use super::{Error, time};

const SCHEMA_ID: &str = "azureMonitorCommonAlertSchema";

/// Every key [`alert`] reads of a body, and no other; the rest (most of it: the alert
/// context's queries, links and custom properties) is kept as text in `raw`.
const READ: Keep = Keep::Keys(&[
    ("schemaId", Keep::All),
    (
        "data",
        Keep::Keys(&[
            (
                "essentials",
                Keep::Keys(&[
                    ("alertId", Keep::All),
                    ("monitorCondition", Keep::All),
                    ("description", Keep::All),
                    ("alertRule", Keep::All),
                    ("monitoringService", Keep::All),
                    ("severity", Keep::All),
                    ("firedDateTime", Keep::All),
                    ("alertTargetIDs", Keep::All),
                ]),
            ),
            (
                "alertContext",
                Keep::Keys(&[(
                    "condition",
                    Keep::Keys(&[("allOf", Keep::Keys(&[("dimensions", Keep::All)]))]),
                )]),
            ),
        ]),
    ),
]);

/// Parses one common-schema webhook body.
pub fn parse(bytes: &[u8]) -> Result<Alert, Error> {
    let (read, raw) = json::load_kept(bytes, &READ)?;
    alert(&read, raw)
}

/// The alert of a body, from what [`READ`] names of it.
fn alert(read: &Value, raw: Raw) -> Result<Alert, Error> {
    check_schema(read)?;
    let data = json::object(get(read, "data"), "data")?;
    let essentials = json::object(get(data, "essentials"), "data.essentials")?;
    let id = json::required(
        get(essentials, "alertId"),
        "essentials.alertId",
        alert::ID_BYTES_MAX,
    )?;
    let condition = json::optional(
        get(essentials, "monitorCondition"),
        "essentials.monitorCondition",
        64,
    )?;
    let description = json::optional(
        get(essentials, "description"),
        "essentials.description",
        alert::DESCRIPTION_BYTES_MAX,
    )?;
    let title = title(essentials, description.as_deref())?;
    let severity = json::scalar(get(essentials, "severity"), "essentials.severity")?
        .and_then(|s| Severity::from_azure_monitor(&s));
    let time_ms = json::text(get(essentials, "firedDateTime")).and_then(|t| time::rfc3339_ms(&t));
    let context = json::optional_object(get(data, "alertContext"), "data.alertContext")?;
    let mut entities = Entities::default();
    dimension_entities(context, &mut entities)?;
    target_entities(essentials, &mut entities)?;
    let dedup_hint = alert::dedup_hint(id.clone(), condition.as_deref());
    let alert = Alert {
        id,
        source: Source::AzureMonitor,
        time_ms,
        severity,
        title,
        description,
        status: condition.as_deref().map(Status::from_vendor),
        entities,
        dedup_hint,
        raw,
        note: None,
        revision: None,
    };
    alert::check_alert(&alert)?;
    Ok(alert)
}

fn check_schema(raw: &Value) -> Result<(), Error> {
    match json::scalar(get(raw, "schemaId"), "schemaId")? {
        Some(s) if !s.eq_ignore_ascii_case(SCHEMA_ID) => {
            Err(Error::Schema(alert::truncate(&s, 64)))
        }
        _ => Ok(()),
    }
}

fn title(essentials: &Value, description: Option<&str>) -> Result<String, Error> {
    let rule = json::optional(
        get(essentials, "alertRule"),
        "essentials.alertRule",
        alert::TITLE_BYTES_MAX,
    )?;
    let service = json::text(get(essentials, "monitoringService"));
    Ok(rule
        .or_else(|| description.map(|d| alert::truncate(d, alert::TITLE_BYTES_MAX)))
        .or(service)
        .unwrap_or_else(|| "Azure Monitor alert".to_string()))
}

/// Dimensions `{name, value}` of every criterion of `alertContext.condition.allOf`.
fn dimension_entities(context: &Value, entities: &mut Entities) -> Result<(), Error> {
    let condition = json::optional_object(get(context, "condition"), "alertContext.condition")?;
    for criterion in json::array(get(condition, "allOf"), "alertContext.condition.allOf")? {
        for dimension in json::array(get(criterion, "dimensions"), "dimensions")? {
            let name = json::text(get(dimension, "name")).unwrap_or_default();
            if let Some(value) = json::text(get(dimension, "value")) {
                add_dimension(entities, &name, &value)?;
            }
        }
    }
    Ok(())
}

/// One dimension: an IP if it parses as one, else a host or an account by its name.
pub(crate) fn add_dimension(entities: &mut Entities, name: &str, value: &str) -> Result<(), Error> {
    let role = Role::from_hint(name);
    if entities.add_ip(value, role)? {
        return Ok(());
    }
    let key = name.to_ascii_lowercase();
    let hosts = ["computer", "computername", "host", "hostname", "devicename"];
    let accounts = [
        "user",
        "username",
        "account",
        "accountname",
        "userprincipalname",
        "upn",
    ];
    if hosts.contains(&key.as_str()) {
        entities.add_host(host(value, role))?;
    } else if accounts.iter().any(|a| key.ends_with(a)) {
        entities.add_account(Account::from_text(value, role))?;
    }
    Ok(())
}

fn host(name: &str, role: Option<Role>) -> Host {
    let name = name.trim();
    let fqdn = name.contains('.').then(|| name.to_string());
    Host {
        name: name.split('.').next().unwrap_or(name).to_string(),
        fqdn,
        role,
        ..Host::default()
    }
}

/// Virtual machines among `alertTargetIDs` are the victim hosts.
fn target_entities(essentials: &Value, entities: &mut Entities) -> Result<(), Error> {
    for target in json::array(
        get(essentials, "alertTargetIDs"),
        "essentials.alertTargetIDs",
    )? {
        if let Some(host) = json::text(Some(target)).and_then(|id| vm_host(&id, Role::Victim)) {
            entities.add_host(host)?;
        }
    }
    Ok(())
}

/// A host for an ARM id of a virtual machine (`.../providers/Microsoft.Compute/virtualMachines/NAME`).
pub(crate) fn vm_host(arm_id: &str, role: Role) -> Option<Host> {
    let lower = arm_id.to_ascii_lowercase();
    let at = lower.find("/providers/microsoft.compute/virtualmachines/")?;
    let tail = &arm_id[at + "/providers/microsoft.compute/virtualmachines/".len()..];
    let name = tail.split('/').next().filter(|n| !n.is_empty())?;
    Some(Host {
        name: name.to_string(),
        fqdn: None,
        azure_id: Some(arm_id.to_string()),
        role: Some(role),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`READ`] leaves out is never what [`alert`] reads: each body gives the same
    /// alert, or the same refusal, read whole.
    #[test]
    fn the_keys_read_are_all_the_parser_needs() {
        let fixture = include_str!("../tests/fixtures/ingest/azure-monitor-common-log-alert.json");
        let bodies = [
            fixture.to_string(),
            fixture
                .replace("\"essentials\"", "\"Essentials\"")
                .replace("\"allOf\"", "\"ALLOF\""),
            fixture.replace("\"alertRule\"", "\"other\""),
            r#"{"data": {"essentials": {"alertId": "a", "description": "budget", "severity": 2},
                "alertContext": null}}"#
                .to_string(),
            r#"{"data": {"essentials": {"alertId": "a", "monitoringService": "Budget"},
                "alertContext": {"condition": {"allOf": [{"dimensions": [
                    {"name": "UserName", "value": "alice"}, {"name": "host", "value": "h.example"}
                ]}]}}}}"#
                .to_string(),
            r#"{"data": {"essentials": {"alertId": "a"}, "alertContext": {"condition": 1}}}"#
                .to_string(),
            r#"{"schemaId": "other", "data": {}}"#.to_string(),
        ];
        for body in bodies {
            let whole = json::load(body.as_bytes()).expect("JSON");
            let expected = alert(&whole, Raw::from(whole.clone()));
            assert_eq!(parse(body.as_bytes()), expected, "{body}");
        }
    }
}
