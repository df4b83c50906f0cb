//! Microsoft Graph security alerts (`/security/alerts_v2`, the alerts of Microsoft Defender
//! XDR and Defender for Cloud) → [`Alert`]s, as a poller pulls them.
//!
//! Accepts one alert object or a page (`{"value": [...]}`), at most [`ALERTS_PER_PAYLOAD_MAX`].
//! The alert's source is `defender`: the same rules answer a Defender alert whether it was
//! pushed (the REST shape, [`super::defender`]) or pulled through Graph.
//!
//! - id `id`; dedup hint `id/status`; title `title`; severity `informational|low|medium|high`
//!   (`unknown` is none); status `new|inProgress|resolved`; time `firstActivityDateTime`, else
//!   `createdDateTime`.
//! - entities from `evidence[]` by `@odata.type`: `ipEvidence` (`ipAddress`), `userEvidence`
//!   (`userAccount`: `accountName`, `domainName`, `userPrincipalName`, `userSid`,
//!   `azureAdUserId`), `deviceEvidence` (`deviceDnsName`, else `hostName`), with the role
//!   `attacker` (roles `attacker`, `source`) or victim (`compromised`, `destination`,
//!   `victim`); other evidence stays in `raw`.

use serde_json::Value;

use super::alert::{self, Account, Alert, Entities, Host, Role, Severity, Source, Status};
use super::json::{self, get};
use super::{ALERTS_PER_PAYLOAD_MAX, Error, time};

/// Parses one alert or a page of alerts.
pub fn parse(bytes: &[u8]) -> Result<Vec<Alert>, Error> {
    let raw = json::load(bytes)?;
    let Some(Value::Array(items)) = get(&raw, "value") else {
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
    let raw = json::object(Some(&raw), "alert")?.clone();
    let id = json::required(get(&raw, "id"), "id", alert::ID_BYTES_MAX)?;
    let title = json::required(get(&raw, "title"), "title", alert::TITLE_BYTES_MAX)?;
    let description = json::optional(
        get(&raw, "description"),
        "description",
        alert::DESCRIPTION_BYTES_MAX,
    )?;
    let severity =
        json::scalar(get(&raw, "severity"), "severity")?.and_then(|s| Severity::from_name(&s));
    let status = json::optional(get(&raw, "status"), "status", 64)?;
    let time_ms = ["firstActivityDateTime", "createdDateTime"]
        .iter()
        .find_map(|k| json::text(get(&raw, k)).and_then(|t| time::rfc3339_ms(&t)));
    let entities = evidence(&raw)?;
    let dedup_hint = alert::dedup_hint(id.clone(), status.as_deref());
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

fn evidence(raw: &Value) -> Result<Entities, Error> {
    let mut entities = Entities::default();
    for item in json::array(get(raw, "evidence"), "evidence")? {
        let kind = json::text(get(item, "@odata.type")).unwrap_or_default();
        let kind = kind.rsplit('.').next().unwrap_or_default();
        let role = role(item);
        let field =
            |value: &Value, keys: &[&str]| keys.iter().find_map(|k| json::text(get(value, k)));
        match kind.to_ascii_lowercase().as_str() {
            "ipevidence" => {
                if let Some(address) = field(item, &["ipAddress"]) {
                    entities.add_ip(&address, role)?;
                }
            }
            "userevidence" => {
                let account = get(item, "userAccount").cloned().unwrap_or(Value::Null);
                let upn = field(&account, &["userPrincipalName"]);
                let Some(name) = field(&account, &["accountName"]).or_else(|| upn.clone()) else {
                    continue;
                };
                entities.add_account(Account {
                    name,
                    upn,
                    domain: field(&account, &["domainName"]),
                    sid: field(&account, &["userSid"]),
                    aad_id: field(&account, &["azureAdUserId"]),
                    role,
                })?;
            }
            "deviceevidence" => {
                let fqdn = field(item, &["deviceDnsName"]);
                let name = field(item, &["hostName"]).or_else(|| {
                    fqdn.as_deref()
                        .map(|f| f.split('.').next().unwrap_or(f).to_owned())
                });
                let Some(name) = name else { continue };
                entities.add_host(Host {
                    name,
                    fqdn,
                    azure_id: None,
                    role,
                })?;
            }
            _ => {}
        }
    }
    Ok(entities)
}

/// An evidence item's part in the alert, from its `roles`.
fn role(item: &Value) -> Option<Role> {
    let roles = get(item, "roles")?.as_array()?;
    let has = |names: &[&str]| {
        roles
            .iter()
            .filter_map(Value::as_str)
            .any(|r| names.iter().any(|n| r.eq_ignore_ascii_case(n)))
    };
    if has(&["attacker", "source"]) {
        Some(Role::Attacker)
    } else if has(&["compromised", "destination", "victim"]) {
        Some(Role::Victim)
    } else {
        None
    }
}
