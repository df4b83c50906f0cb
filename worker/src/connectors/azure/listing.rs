//! Pages of what alert pollers pull: Microsoft Sentinel incidents of a workspace (ARM,
//! `Microsoft.SecurityInsights/incidents`, api-version 2024-09-01) and Microsoft Graph security
//! alerts (`/v1.0/security/alerts_v2`), modified within a window, one page per call.
//!
//! * Sentinel: `$filter` on `properties/lastModifiedTimeUtc` (ge the window's start, le its
//!   end), `$orderby` it ascending, `$top` the page size; each incident's entities are read
//!   (POST `incidents/{id}/entities`) and the incident is handed on as Sentinel's incident
//!   trigger hands it to a playbook: `{"object": incident}` with the entities in
//!   `object.properties.relatedEntities`.
//! * Graph: `$filter` on `lastUpdateDateTime` (ge, le), `$top` the page size; each alert as
//!   listed.
//! * The next page is the answer's `nextLink` (`@odata.nextLink`), followed only on the API's
//!   own origin: it carries the token.
//!
//! Output: `{"items": [...], "next_link": URL | null}`.

use reqwest::{Method, Url};
use serde_json::{Value, json};

use super::super::{Context, Failure};
use super::Client;
use super::id::ArmId;
use super::rest::{Api, Call, Deadline, same_origin};

/// API version of `Microsoft.SecurityInsights`.
const API_VERSION: &str = "2024-09-01";

/// One page to fetch: the window, the page size, and where a previous page left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// RFC 3339, checked.
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) page_size: u32,
    pub(crate) next_link: Option<Url>,
}

/// A page of Sentinel incidents of `workspace`, each with its entities.
pub(crate) async fn sentinel_incidents(
    client: &Client,
    workspace: &ArmId,
    window: &Window,
    cx: &Context,
) -> Result<Value, Failure> {
    let deadline = Deadline::for_task(cx);
    let arm = &client.settings().arm_url;
    let url = match &window.next_link {
        Some(link) => followed(link, arm, "nextLink")?,
        None => {
            let mut url = workspace.url(
                arm,
                "/providers/Microsoft.SecurityInsights/incidents",
                API_VERSION,
            );
            let field = "properties/lastModifiedTimeUtc";
            url.query_pairs_mut()
                .append_pair(
                    "$filter",
                    &format!("{field} ge {} and {field} le {}", window.from, window.to),
                )
                .append_pair("$orderby", &format!("{field} asc"))
                .append_pair("$top", &window.page_size.to_string());
            url
        }
    };
    let list = Call::new("list incidents", Api::Arm, Method::GET, url);
    let reply = client.call(&list, &deadline).await?;
    let mut items = Vec::new();
    for incident in page(&reply.body, "value", "list incidents")? {
        let mut incident = incident.clone();
        let id = incident["id"].as_str().unwrap_or_default().to_owned();
        let incident_id = ArmId::parse(&id, super::id::Kind::Incident).map_err(|e| {
            Failure::permanent(format!("azure list incidents: an incident's id: {e}"))
        })?;
        let url = incident_id.url(arm, "/entities", API_VERSION);
        let entities =
            Call::new("read incident entities", Api::Arm, Method::POST, url).json(json!({}));
        let answer = client.call(&entities, &deadline).await?;
        let related = answer.body["entities"].clone();
        if let Some(properties) = incident["properties"].as_object_mut() {
            properties.insert("relatedEntities".into(), related);
        }
        items.push(json!({"object": incident}));
    }
    Ok(json!({
        "items": items,
        "next_link": next(&reply.body, "nextLink"),
    }))
}

/// A page of Microsoft Graph security alerts.
pub(crate) async fn graph_alerts(
    client: &Client,
    window: &Window,
    cx: &Context,
) -> Result<Value, Failure> {
    let deadline = Deadline::for_task(cx);
    let graph = &client.settings().graph_url;
    let url = match &window.next_link {
        Some(link) => followed(link, graph, "@odata.nextLink")?,
        None => {
            let base = graph.as_str().trim_end_matches('/');
            let mut url = Url::parse(&format!("{base}/v1.0/security/alerts_v2"))
                .map_err(|e| Failure::permanent(format!("the Graph URL: {e}")))?;
            let field = "lastUpdateDateTime";
            url.query_pairs_mut()
                .append_pair(
                    "$filter",
                    &format!("{field} ge {} and {field} le {}", window.from, window.to),
                )
                .append_pair("$top", &window.page_size.to_string());
            url
        }
    };
    let list = Call::new("list security alerts", Api::Graph, Method::GET, url);
    let reply = client.call(&list, &deadline).await?;
    let items = page(&reply.body, "value", "list security alerts")?.to_vec();
    Ok(json!({
        "items": items,
        "next_link": next(&reply.body, "@odata.nextLink"),
    }))
}

/// The items of a list answer.
fn page<'a>(body: &'a Value, key: &str, op: &str) -> Result<&'a [Value], Failure> {
    body[key]
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| Failure::permanent(format!("azure {op}: the answer has no `{key}` list")))
}

fn next(body: &Value, key: &str) -> Value {
    body[key]
        .as_str()
        .filter(|link| !link.is_empty())
        .map_or(Value::Null, Value::from)
}

/// A next-page link, on the API's own origin only.
fn followed(link: &Url, base: &Url, what: &str) -> Result<Url, Failure> {
    if !same_origin(link, base) {
        return Err(Failure::permanent(format!(
            "`next_link`: a {what} is followed only on {}, not {}",
            super::rest::target(base),
            super::rest::target(link)
        )));
    }
    Ok(link.clone())
}

/// Largest page accepted.
const PAGE_SIZE_MAX: u64 = 100;

/// The window of a list action's input (`modified_from`, `modified_to`, RFC 3339; `page_size`;
/// `next_link`), checked.
pub(crate) fn window(fields: &mut super::super::Fields) -> Result<Window, Failure> {
    let mut time = |key: &str| {
        let text = fields.required_string(key)?;
        humantime::parse_rfc3339(&text).map_err(|e| {
            Failure::invalid_input(format!("`{key}`: {text:?} is not RFC 3339: {e}"))
        })?;
        Ok::<_, Failure>(text)
    };
    let from = time("modified_from")?;
    let to = time("modified_to")?;
    let page_size = fields.u64("page_size")?.unwrap_or(50);
    if !(1..=PAGE_SIZE_MAX).contains(&page_size) {
        return Err(Failure::invalid_input(format!(
            "`page_size` must be 1 to {PAGE_SIZE_MAX}, not {page_size}"
        )));
    }
    let next_link = match fields.string("next_link")? {
        Some(link) if !link.is_empty() => Some(
            Url::parse(&link).map_err(|e| Failure::invalid_input(format!("`next_link`: {e}")))?,
        ),
        _ => None,
    };
    Ok(Window {
        from,
        to,
        page_size: page_size as u32,
        next_link,
    })
}
