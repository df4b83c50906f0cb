//! The local Azure's security feed: the Microsoft Sentinel incidents of workspace `law-soc`
//! and the Microsoft Graph security alerts, listed as their documented APIs list them, for
//! the alert pollers.
//!
//! - `GET {WORKSPACE_ID}/providers/Microsoft.SecurityInsights/incidents?api-version=2024-09-01`
//!   with `$filter` (`properties/lastModifiedTimeUtc` `ge`/`gt`/`le`/`lt` a time, joined by
//!   `and`), `$orderby=properties/lastModifiedTimeUtc asc`, `$top`: `{"value": [...],
//!   "nextLink": ...}`; `POST {incident id}/entities`: `{"entities": [...], "metaData": [...]}`.
//! - `GET /graph/v1.0/security/alerts_v2` with `$filter` (`lastUpdateDateTime`), `$top`:
//!   `{"@odata.context": ..., "value": [...], "@odata.nextLink": ...}`, in no particular
//!   order (Graph documents none).
//!
//! A next link carries a `$skipToken` that names the last item handed out (its modification
//! time and id): paging goes on after it however the list changed meanwhile. Every change
//! (an item added or updated, the main incident written) is stamped with the time now, as
//! Sentinel and Graph stamp it, strictly later than the one before, with seven fractional
//! digits as Sentinel writes them. `set_list_delay` slows each list and entities answer, so
//! that a poll takes long enough to be interrupted.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::{Answer, INCIDENT_ID, Request, arm_error, query_param};

/// The Log Analytics workspace of the Sentinel incidents.
pub const WORKSPACE_ID: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-soc/providers/Microsoft.OperationalInsights/workspaces/law-soc";

const FIXTURE_GRAPH_ALERT: &str = include_str!("../../fixtures/azure/graph-security-alert.json");

/// The feed's items and its clock.
#[derive(Debug, Default)]
pub(super) struct Feed {
    /// Incidents other than the main one: (resource, its number).
    pub(super) incidents: Vec<Value>,
    pub(super) alerts: Vec<Value>,
    /// The last stamp handed out (µs since the epoch).
    last_us: u128,
    pub(super) delay: Duration,
}

/// A list item's position for paging: its modification time and id.
type Key = (String, String);

impl Feed {
    /// A modification time now, later than every earlier one.
    pub(super) fn stamp(&mut self) -> String {
        let now = wall_clock()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        self.last_us = now.max(self.last_us + 1);
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(self.last_us as u64);
        let text = humantime::format_rfc3339_micros(time).to_string();
        // Sentinel writes seven digits.
        format!("{}0Z", text.trim_end_matches('Z'))
    }

    /// Adds an incident about `ip`; answers its ARM id.
    pub(super) fn add_incident(&mut self, title: &str, ip: &str) -> String {
        let number = 2000 + self.incidents.len();
        let name = format!("00000000-0000-4000-8000-{number:012}");
        let id = format!("{WORKSPACE_ID}/providers/Microsoft.SecurityInsights/incidents/{name}");
        let stamp = self.stamp();
        self.incidents.push(json!({
            "id": id,
            "name": name,
            "type": "Microsoft.SecurityInsights/Incidents",
            "etag": "\"00000001-0000-0000-0000-000000000000\"",
            "properties": {
                "title": title,
                "description": format!("Connections from {ip}"),
                "severity": "High",
                "status": "New",
                "owner": {"objectId": null, "email": null, "assignedTo": null, "userPrincipalName": null},
                "labels": [],
                "incidentNumber": number,
                "createdTimeUtc": stamp,
                "lastModifiedTimeUtc": stamp,
                "firstActivityTimeUtc": stamp,
                "additionalData": {"alertsCount": 1, "commentsCount": 0},
                "relatedEntitiesIp": ip,
            },
        }));
        id
    }

    /// Adds a Graph security alert about `ip`; answers its id.
    pub(super) fn add_alert(&mut self, title: &str, ip: &str) -> String {
        let mut alert: Value = serde_json::from_str(FIXTURE_GRAPH_ALERT).expect("fixture");
        let id = format!("da6375{:014}_{}", self.alerts.len(), 756343937);
        let stamp = self.stamp();
        alert["id"] = json!(id);
        alert["providerAlertId"] = json!(id);
        alert["title"] = json!(title);
        alert["createdDateTime"] = json!(stamp);
        alert["lastUpdateDateTime"] = json!(stamp);
        alert["evidence"][0]["ipAddress"] = json!(ip);
        self.alerts.push(alert);
        id
    }

    /// Changes an incident or an alert (a new status), stamping it now.
    pub(super) fn update(&mut self, id: &str, status: &str) -> bool {
        let stamp = self.stamp();
        if let Some(incident) = self.incidents.iter_mut().find(|i| i["id"] == id) {
            incident["properties"]["status"] = json!(status);
            incident["properties"]["lastModifiedTimeUtc"] = json!(stamp);
            return true;
        }
        if let Some(alert) = self.alerts.iter_mut().find(|a| a["id"] == id) {
            alert["status"] = json!(status);
            alert["lastUpdateDateTime"] = json!(stamp);
            return true;
        }
        false
    }

    /// A page of incidents (`main` is the main incident's resource, listed with the others).
    pub(super) fn list_incidents(&self, r: &Request, main: Value, base: &str) -> Answer {
        let filter = match Filter::parse(&r.query, "properties/lastModifiedTimeUtc") {
            Ok(filter) => filter,
            Err(why) => return arm_error(400, "BadRequest", &why),
        };
        let order = param(&r.query, "$orderby");
        if order.as_deref() != Some("properties/lastModifiedTimeUtc asc") {
            let why =
                "this server lists incidents only in $orderby=properties/lastModifiedTimeUtc asc";
            return arm_error(400, "BadRequest", why);
        }
        let mut all: Vec<Value> = self.incidents.iter().map(without_ip).collect();
        all.push(main);
        let key = |i: &Value| -> Key {
            let at = i["properties"]["lastModifiedTimeUtc"]
                .as_str()
                .unwrap_or("");
            (at.to_owned(), i["id"].as_str().unwrap_or("").to_owned())
        };
        let (value, next) = page(all, &filter, r, key);
        let next_link = next.map(|token| {
            let path = format!("{WORKSPACE_ID}/providers/Microsoft.SecurityInsights/incidents");
            format!("{base}{path}?{}&$skipToken={token}", without_skip(&r.query))
        });
        Answer::json(200, json!({"value": value, "nextLink": next_link}))
    }

    /// The entities of incident `id` (`main_ip` for the main one).
    pub(super) fn entities(&self, id: &str) -> Option<Value> {
        let ip = match id.eq_ignore_ascii_case(INCIDENT_ID) {
            true => "203.0.113.45".to_owned(),
            false => self
                .incidents
                .iter()
                .find(|i| i["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id)))?["properties"]
                ["relatedEntitiesIp"]
                .as_str()?
                .to_owned(),
        };
        Some(json!({
            "entities": [{
                "id": format!("{id}/entities/ip-{ip}"),
                "name": format!("ip-{ip}"),
                "type": "Microsoft.SecurityInsights/Entities",
                "kind": "Ip",
                "properties": {"address": ip, "friendlyName": ip},
            }],
            "metaData": [{"count": 1, "entityKind": "Ip"}],
        }))
    }

    /// A page of Graph security alerts.
    pub(super) fn list_alerts(&self, r: &Request, base: &str) -> Answer {
        let filter = match Filter::parse(&r.query, "lastUpdateDateTime") {
            Ok(filter) => filter,
            Err(why) => return arm_error(400, "BadRequest", &why),
        };
        let key = |a: &Value| -> Key {
            let at = a["lastUpdateDateTime"].as_str().unwrap_or("");
            (at.to_owned(), a["id"].as_str().unwrap_or("").to_owned())
        };
        let (value, next) = page(self.alerts.clone(), &filter, r, key);
        let next_link = next.map(|token| {
            let query = without_skip(&r.query);
            format!("{base}/graph/v1.0/security/alerts_v2?{query}&$skipToken={token}")
        });
        let mut body = json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#security/alerts_v2",
            "value": value,
        });
        if let Some(link) = next_link {
            body["@odata.nextLink"] = json!(link);
        }
        Answer::json(200, body)
    }
}

/// The incident as listed: without the address the feed keeps for its entities.
fn without_ip(incident: &Value) -> Value {
    let mut incident = incident.clone();
    if let Some(p) = incident["properties"].as_object_mut() {
        p.remove("relatedEntitiesIp");
    }
    incident
}

/// The items `filter` lets through, in key order, after the `$skipToken`, at most `$top`; and
/// the token of the next page when more follow.
fn page(
    items: Vec<Value>,
    filter: &Filter,
    r: &Request,
    key: impl Fn(&Value) -> Key,
) -> (Vec<Value>, Option<String>) {
    let top = param(&r.query, "$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let after: Option<Key> = param(&r.query, "$skipToken").and_then(|t| {
        let (at, id) = t.split_once('|')?;
        Some((at.to_owned(), id.to_owned()))
    });
    let mut listed: Vec<(Key, Value)> = items
        .into_iter()
        .map(|item| (key(&item), item))
        .filter(|(k, _)| filter.admits(&k.0))
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    let more = listed.len() > top;
    listed.truncate(top);
    let next = match (more, listed.last()) {
        (true, Some(((at, id), _))) => Some(format!("{at}%7C{id}")),
        _ => None,
    };
    (listed.into_iter().map(|(_, item)| item).collect(), next)
}

/// `$filter` bounds on one time field: `FIELD ge|gt|le|lt TIME [and ...]`.
struct Filter {
    bounds: Vec<(String, SystemTime)>,
}

impl Filter {
    fn parse(query: &str, field: &str) -> Result<Filter, String> {
        let Some(text) = param(query, "$filter") else {
            return Ok(Filter { bounds: Vec::new() });
        };
        let mut bounds = Vec::new();
        for clause in text.split(" and ") {
            let parts: Vec<&str> = clause.split_whitespace().collect();
            let [name, op, time] = parts[..] else {
                return Err(format!("Invalid $filter clause '{clause}'"));
            };
            if name != field || !["ge", "gt", "le", "lt"].contains(&op) {
                return Err(format!("Invalid $filter clause '{clause}'"));
            }
            let time = humantime::parse_rfc3339(time)
                .map_err(|e| format!("Invalid time '{time}' in $filter: {e}"))?;
            bounds.push((op.to_owned(), time));
        }
        Ok(Filter { bounds })
    }

    fn admits(&self, at: &str) -> bool {
        let Ok(at) = humantime::parse_rfc3339(at) else {
            return false;
        };
        self.bounds.iter().all(|(op, t)| match op.as_str() {
            "ge" => at >= *t,
            "gt" => at > *t,
            "le" => at <= *t,
            _ => at < *t,
        })
    }
}

/// A query parameter, decoded.
fn param(query: &str, key: &str) -> Option<String> {
    query_param(query, key)
}

/// The query without its `$skipToken`, as sent.
fn without_skip(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.starts_with("$skipToken=") && !pair.starts_with("%24skipToken="))
        .collect::<Vec<_>>()
        .join("&")
}

#[expect(
    clippy::disallowed_methods,
    reason = "the local Azure stands for a third party and stamps changes with its own time"
)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}
