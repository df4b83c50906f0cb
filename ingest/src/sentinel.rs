//! Microsoft Sentinel incident trigger (the Logic Apps "incident" trigger body) → one
//! [`Alert`] for the incident.
//!
//! One POST is one incident and yields one alert: the incident is what Sentinel is updated
//! with (its ARM id `object.id`) and what a playbook answers; the member alerts
//! (`object.properties.alerts[]`, at most [`super::ALERTS_PER_PAYLOAD_MAX`]) stay in `raw`.
//! Entities come from `object.properties.relatedEntities[]` (`kind` `Ip`, `Account`,
//! `Host`), keys matched case-insensitively. Sentinel entities carry no role.
//!
//! - id `object.id`; dedup hint `lower(object.id)/status` (ARM ids are case-insensitive).
//! - title, description, severity (`Informational|Low|Medium|High`), status
//!   (`New|Active|Closed`); time `firstActivityTimeUtc`, else `createdTimeUtc`.

use serde_json::Value;

use super::alert::{self, Account, Alert, Entities, Host, Severity, Source, Status};
use super::json::{self, get};
use super::{ALERTS_PER_PAYLOAD_MAX, Error, time};

/// Parses one incident trigger body.
pub fn parse(bytes: &[u8]) -> Result<Alert, Error> {
    let raw = json::load(bytes)?;
    let object = json::object(get(&raw, "object"), "object")?;
    let props = json::object(get(object, "properties"), "object.properties")?;
    let id = json::required(get(object, "id"), "object.id", alert::ID_BYTES_MAX)?;
    let title = json::required(
        get(props, "title"),
        "object.properties.title",
        alert::TITLE_BYTES_MAX,
    )?;
    let description = json::optional(
        get(props, "description"),
        "object.properties.description",
        alert::DESCRIPTION_BYTES_MAX,
    )?;
    let severity = json::scalar(get(props, "severity"), "object.properties.severity")?
        .and_then(|s| Severity::from_name(&s));
    let status = json::optional(get(props, "status"), "object.properties.status", 64)?;
    let time_ms = ["firstActivityTimeUtc", "createdTimeUtc"]
        .iter()
        .find_map(|k| json::text(get(props, k)).and_then(|t| time::rfc3339_ms(&t)));
    let members = json::array(get(props, "alerts"), "object.properties.alerts")?;
    if members.len() > ALERTS_PER_PAYLOAD_MAX {
        return Err(Error::TooManyAlerts {
            count: members.len(),
            max: ALERTS_PER_PAYLOAD_MAX,
        });
    }
    let mut entities = Entities::default();
    let related = json::array(
        get(props, "relatedEntities"),
        "object.properties.relatedEntities",
    )?;
    for entity in related {
        let kind = json::text(get(entity, "kind")).unwrap_or_default();
        let properties = json::optional_object(get(entity, "properties"), "entity properties")?;
        add_entity(&mut entities, &kind, properties)?;
    }
    let lowered = id.to_ascii_lowercase();
    let dedup_hint = alert::dedup_hint(lowered, status.as_deref());
    let alert = Alert {
        id,
        source: Source::Sentinel,
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

/// Adds one entity in the Sentinel entity schema (`kind`/`type` `ip`, `account`, `host`,
/// any casing; other kinds are ignored). Shared with Defender for Cloud.
pub(crate) fn add_entity(entities: &mut Entities, kind: &str, props: &Value) -> Result<(), Error> {
    let field = |keys: &[&str]| keys.iter().find_map(|k| json::text(get(props, k)));
    match kind.to_ascii_lowercase().as_str() {
        "ip" => {
            if let Some(address) = field(&["address"]) {
                entities.add_ip(&address, None)?;
            }
        }
        "account" => {
            let Some(name) = field(&["accountName", "name", "userPrincipalName"]) else {
                return Ok(());
            };
            let upn = field(&["userPrincipalName"])
                .or_else(|| field(&["upnSuffix"]).map(|suffix| format!("{name}@{suffix}")));
            entities.add_account(Account {
                upn,
                domain: field(&["ntDomain", "dnsDomain"]),
                sid: field(&["sid"]),
                aad_id: field(&["aadUserId"]),
                role: None,
                name,
            })?;
        }
        "host" => {
            let Some(name) = field(&["hostName", "netBiosName", "name"]) else {
                return Ok(());
            };
            let fqdn = field(&["fqdn"])
                .or_else(|| field(&["dnsDomain"]).map(|domain| format!("{name}.{domain}")));
            entities.add_host(Host {
                fqdn,
                azure_id: field(&["azureID", "azureResourceId"]),
                role: None,
                name,
            })?;
        }
        _ => {}
    }
    Ok(())
}
