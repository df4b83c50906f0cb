//! ARM network: NSG deny rules and Azure Firewall IP Groups (`firewall.*`).
//!
//! **NSG** (`azure-nsg`): one Deny Inbound rule per blocked address or network in the managed
//! NSG, named after the target (`riposte-block-203-0-113-7-32`), so that a repeat finds it and
//! an unblock knows what to delete without any state. A new rule takes the lowest priority of
//! the configured range that no inbound rule of the NSG uses (read by a GET of the NSG just
//! before); its description carries the task key and the reason (at most 140 characters). The
//! PUT is followed through its `Azure-AsyncOperation` until it has succeeded.
//!
//! NSG rules have no expiry: `expires_at` is `null`, and the rule stays until the orchestrator's
//! grant revoke (`firewall.unblock_ip`, the step's undo) deletes it.
//!
//! **IP Group** (`azure-ip-group`): the address list of the managed IP group. A PUT replaces the
//! whole list, so each change is a GET, an edit and a PUT, polled to the end, with one writer
//! per IP group in this process (ARM declares no `If-Match` for IP groups).
//!
//! Writers of one NSG are serialized too, so that two blocks never pick the same priority.

use ipnet::IpNet;
use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use super::super::firewall::{Block, Unblock};
use super::super::{Context, Failure};
use super::errors::truncate;
use super::rest::{Api, Call, Deadline};
use super::{ArmId, Client};

/// API version of `Microsoft.Network`.
const API_VERSION: &str = "2024-05-01";
/// Every rule the worker owns starts with this.
const RULE_PREFIX: &str = "riposte-block-";
/// Longest NSG rule description Azure accepts.
const DESCRIPTION_BYTES_MAX: usize = 140;
/// What the output says about expiry, for both backends.
const NO_EXPIRY: &str = "azure keeps this block until it is removed: the orchestrator's grant \
                         revoke (firewall.unblock_ip) removes it";

/// See the family module.
pub(crate) async fn nsg_block(
    client: &Client,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    let nsg = configured(client.settings().nsg.as_ref(), "azure-nsg", "--azure-nsg")?;
    let deadline = Deadline::for_task(cx);
    let _writer = client.locks.lock(nsg.as_str()).await;
    let rules = read_rules(client, nsg, &deadline).await?;
    let name = rule_name(&block.target);
    let existing = rules.iter().find(|r| r.name.eq_ignore_ascii_case(&name));
    let output = |already_blocked: bool, priority: u16, changes: Vec<String>| {
        json!({
            "ip": block.target.to_string(),
            "backend": "azure-nsg",
            "already_blocked": already_blocked,
            "expires_at": null,
            "expiry": NO_EXPIRY,
            "nsg": nsg.as_str(),
            "rule": name,
            "priority": priority,
            "changes": changes,
            "dry_run": cx.dry_run,
        })
    };
    if let Some(rule) = existing
        && rule.denies_inbound(&block.target)
    {
        return Ok(output(true, rule.priority, Vec::new()));
    }
    let priority = match existing {
        Some(rule) => rule.priority,
        None => free_priority(&rules, client, nsg)?,
    };
    let url = nsg.url(
        &client.settings().arm_url,
        &format!("/securityRules/{name}"),
        API_VERSION,
    );
    let body = rule_body(block, priority, &cx.key);
    let put = Call::new("put nsg security rule", Api::Arm, Method::PUT, url.clone()).json(body);
    let changes = vec![put.display()];
    if cx.dry_run {
        return Ok(output(false, priority, changes));
    }
    let reply = client.call(&put, &deadline).await?;
    let result = client.finish(&put.op, reply, Some(&url), &deadline).await?;
    check_succeeded(&put.op, &result)?;
    Ok(output(false, priority, changes))
}

/// See the family module.
pub(crate) async fn nsg_unblock(
    client: &Client,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let nsg = configured(client.settings().nsg.as_ref(), "azure-nsg", "--azure-nsg")?;
    let deadline = Deadline::for_task(cx);
    let name = rule_name(&unblock.target);
    let url = nsg.url(
        &client.settings().arm_url,
        &format!("/securityRules/{name}"),
        API_VERSION,
    );
    let delete = Call::new(
        "delete nsg security rule",
        Api::Arm,
        Method::DELETE,
        url.clone(),
    )
    .allow_not_found();
    let output = |was_blocked: bool, changes: Vec<String>| {
        json!({
            "ip": unblock.target.to_string(),
            "backend": "azure-nsg",
            "was_blocked": was_blocked,
            "nsg": nsg.as_str(),
            "rule": name,
            "changes": changes,
            "dry_run": cx.dry_run,
        })
    };
    if cx.dry_run {
        let get = Call::new("get nsg security rule", Api::Arm, Method::GET, url).allow_not_found();
        let reply = client.call(&get, &deadline).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(output(false, Vec::new()));
        }
        return Ok(output(true, vec![delete.display()]));
    }
    let _writer = client.locks.lock(nsg.as_str()).await;
    let reply = client.call(&delete, &deadline).await?;
    // ARM answers a DELETE of a missing resource with 204 (or 404).
    if matches!(reply.status, StatusCode::NOT_FOUND | StatusCode::NO_CONTENT) {
        return Ok(output(false, Vec::new()));
    }
    client.finish(&delete.op, reply, None, &deadline).await?;
    Ok(output(true, vec![delete.display()]))
}

/// See the family module.
pub(crate) async fn nsg_list(client: &Client, cx: &Context) -> Result<Value, Failure> {
    let nsg = configured(client.settings().nsg.as_ref(), "azure-nsg", "--azure-nsg")?;
    let deadline = Deadline::for_task(cx);
    let rules = read_rules(client, nsg, &deadline).await?;
    let blocked: Vec<Value> = rules
        .iter()
        .filter(|r| r.name.starts_with(RULE_PREFIX))
        .map(|r| {
            json!({
                "ip": r.sources.first().cloned().unwrap_or_default(),
                "rule": r.name,
                "priority": r.priority,
                "access": r.access,
                "description": r.description,
            })
        })
        .collect();
    Ok(json!({"backend": "azure-nsg", "nsg": nsg.as_str(), "blocked": blocked}))
}

/// See the family module.
pub(crate) async fn ip_group_block(
    client: &Client,
    block: &Block,
    cx: &Context,
) -> Result<Value, Failure> {
    let group = configured(
        client.settings().ip_group.as_ref(),
        "azure-ip-group",
        "--azure-ip-group",
    )?;
    let deadline = Deadline::for_task(cx);
    let _writer = client.locks.lock(group.as_str()).await;
    let (url, current) = read_group(client, group, &deadline).await?;
    let addresses = addresses(&current);
    let output = |already_blocked: bool, changes: Vec<String>| {
        json!({
            "ip": block.target.to_string(),
            "backend": "azure-ip-group",
            "already_blocked": already_blocked,
            "expires_at": null,
            "expiry": NO_EXPIRY,
            "ip_group": group.as_str(),
            "changes": changes,
            "dry_run": cx.dry_run,
        })
    };
    if addresses.iter().any(|a| same_target(a, &block.target)) {
        return Ok(output(true, Vec::new()));
    }
    let mut updated = addresses;
    updated.push(block.target.to_string());
    let put = group_put(url, &current, updated);
    let changes = vec![put.display()];
    if !cx.dry_run {
        write_group(client, &put, &deadline).await?;
    }
    Ok(output(false, changes))
}

/// See the family module.
pub(crate) async fn ip_group_unblock(
    client: &Client,
    unblock: &Unblock,
    cx: &Context,
) -> Result<Value, Failure> {
    let group = configured(
        client.settings().ip_group.as_ref(),
        "azure-ip-group",
        "--azure-ip-group",
    )?;
    let deadline = Deadline::for_task(cx);
    let _writer = client.locks.lock(group.as_str()).await;
    let (url, current) = read_group(client, group, &deadline).await?;
    let addresses = addresses(&current);
    let kept: Vec<String> = addresses
        .iter()
        .filter(|a| !same_target(a, &unblock.target))
        .cloned()
        .collect();
    let was_blocked = kept.len() != addresses.len();
    let mut changes = Vec::new();
    if was_blocked {
        let put = group_put(url, &current, kept);
        changes.push(put.display());
        if !cx.dry_run {
            write_group(client, &put, &deadline).await?;
        }
    }
    Ok(json!({
        "ip": unblock.target.to_string(),
        "backend": "azure-ip-group",
        "was_blocked": was_blocked,
        "ip_group": group.as_str(),
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// See the family module.
pub(crate) async fn ip_group_list(client: &Client, cx: &Context) -> Result<Value, Failure> {
    let group = configured(
        client.settings().ip_group.as_ref(),
        "azure-ip-group",
        "--azure-ip-group",
    )?;
    let deadline = Deadline::for_task(cx);
    let (_, current) = read_group(client, group, &deadline).await?;
    let blocked: Vec<Value> = addresses(&current)
        .into_iter()
        .map(|ip| json!({"ip": ip}))
        .collect();
    Ok(json!({"backend": "azure-ip-group", "ip_group": group.as_str(), "blocked": blocked}))
}

fn configured<'a>(id: Option<&'a ArmId>, backend: &str, flag: &str) -> Result<&'a ArmId, Failure> {
    id.ok_or_else(|| Failure::permanent(format!("the {backend} backend needs {flag}")))
}

/// `riposte-block-` and the target with `.`, `:` and `/` turned into `-`: a valid rule name
/// (letters, digits, `-`; starts with a letter, ends with a digit).
pub(crate) fn rule_name(target: &IpNet) -> String {
    let text: String = target
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{RULE_PREFIX}{text}")
}

/// An NSG security rule, as far as the worker cares.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    priority: u16,
    direction: String,
    access: String,
    sources: Vec<String>,
    description: String,
}

impl Rule {
    fn from_json(value: &Value) -> Option<Rule> {
        let p = value.get("properties")?;
        let text = |key: &str| p.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
        let mut sources: Vec<String> = p
            .get("sourceAddressPrefixes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect();
        let single = text("sourceAddressPrefix");
        if !single.is_empty() {
            sources.insert(0, single);
        }
        Some(Rule {
            name: value.get("name")?.as_str()?.to_owned(),
            priority: u16::try_from(p.get("priority")?.as_u64()?).ok()?,
            direction: text("direction"),
            access: text("access"),
            sources,
            description: text("description"),
        })
    }

    fn denies_inbound(&self, target: &IpNet) -> bool {
        self.access.eq_ignore_ascii_case("deny")
            && self.direction.eq_ignore_ascii_case("inbound")
            && self.sources.len() == 1
            && same_target(&self.sources[0], target)
    }
}

async fn read_rules(
    client: &Client,
    nsg: &ArmId,
    deadline: &Deadline,
) -> Result<Vec<Rule>, Failure> {
    let url = nsg.url(&client.settings().arm_url, "", API_VERSION);
    let get = Call::new("get network security group", Api::Arm, Method::GET, url);
    let body = client.call(&get, deadline).await?.body;
    let rules = body
        .get("properties")
        .and_then(|p| p.get("securityRules"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            Failure::permanent(format!(
                "azure get network security group: the answer for {nsg} has no properties.securityRules"
            ))
        })?;
    Ok(rules.iter().filter_map(Rule::from_json).collect())
}

/// The lowest priority of the configured range that no inbound rule uses.
fn free_priority(rules: &[Rule], client: &Client, nsg: &ArmId) -> Result<u16, Failure> {
    let range = client.settings().nsg_priorities.clone();
    let (low, high) = (*range.start(), *range.end());
    range
        .into_iter()
        .find(|p| {
            !rules
                .iter()
                .any(|r| r.priority == *p && r.direction.eq_ignore_ascii_case("inbound"))
        })
        .ok_or_else(|| {
            Failure::permanent(format!(
                "no free priority in {low}-{high} for a new rule in nsg {nsg}: every one is used \
                 by an inbound rule (widen --azure-nsg-priorities or unblock addresses)"
            ))
        })
}

fn rule_body(block: &Block, priority: u16, key: &str) -> Value {
    let reason = if block.reason.trim().is_empty() {
        "blocked".to_owned()
    } else {
        block.reason.trim().to_owned()
    };
    let description = truncate(&format!("riposte {key}: {reason}"), DESCRIPTION_BYTES_MAX);
    json!({
        "properties": {
            "description": description,
            "protocol": "*",
            "sourcePortRange": "*",
            "destinationPortRange": "*",
            "sourceAddressPrefix": block.target.to_string(),
            "destinationAddressPrefix": "*",
            "access": "Deny",
            "priority": priority,
            "direction": "Inbound",
        }
    })
}

/// Fails unless a final resource body (when it has a provisioning state) says it succeeded.
fn check_succeeded(op: &str, body: &Value) -> Result<(), Failure> {
    let state = body
        .get("properties")
        .and_then(|p| p.get("provisioningState"))
        .and_then(Value::as_str);
    match state {
        None => Ok(()),
        Some(state) if state.eq_ignore_ascii_case("succeeded") => Ok(()),
        Some(state) => Err(Failure::retryable(format!(
            "azure {op}: the resource is in provisioning state {state} after the operation"
        ))),
    }
}

async fn read_group(
    client: &Client,
    group: &ArmId,
    deadline: &Deadline,
) -> Result<(Url, Value), Failure> {
    let url = group.url(&client.settings().arm_url, "", API_VERSION);
    let get = Call::new("get ip group", Api::Arm, Method::GET, url.clone());
    let body = client.call(&get, deadline).await?.body;
    if body
        .get("properties")
        .and_then(|p| p.get("ipAddresses"))
        .is_none()
    {
        return Err(Failure::permanent(format!(
            "azure get ip group: the answer for {group} has no properties.ipAddresses"
        )));
    }
    Ok((url, body))
}

fn addresses(group: &Value) -> Vec<String> {
    group
        .get("properties")
        .and_then(|p| p.get("ipAddresses"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The PUT of the whole group with `addresses` (location and tags kept as they are).
fn group_put(url: Url, current: &Value, addresses: Vec<String>) -> Call {
    let mut body = json!({
        "location": current.get("location").cloned().unwrap_or(Value::Null),
        "properties": {"ipAddresses": addresses},
    });
    if let Some(tags) = current.get("tags").filter(|t| t.is_object()) {
        body["tags"] = tags.clone();
    }
    Call::new("put ip group", Api::Arm, Method::PUT, url).json(body)
}

async fn write_group(client: &Client, put: &Call, deadline: &Deadline) -> Result<(), Failure> {
    let reply = client.call(put, deadline).await?;
    let result = client
        .finish(&put.op, reply, Some(&put.url), deadline)
        .await?;
    check_succeeded(&put.op, &result)
}

/// True when an entry (`203.0.113.7`, `203.0.113.7/32`, `198.51.100.0/28`) is `target`.
fn same_target(entry: &str, target: &IpNet) -> bool {
    let entry = entry.trim();
    if let Ok(addr) = entry.parse::<std::net::IpAddr>() {
        return IpNet::from(addr) == *target;
    }
    entry
        .parse::<IpNet>()
        .is_ok_and(|net| net.trunc() == *target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_derived_from_the_target() {
        let v4: IpNet = "203.0.113.7/32".parse().unwrap();
        assert_eq!(rule_name(&v4), "riposte-block-203-0-113-7-32");
        let v6: IpNet = "2001:db8::/48".parse().unwrap();
        assert_eq!(rule_name(&v6), "riposte-block-2001-db8---48");
    }

    #[test]
    fn entries_compare_as_networks() {
        let target: IpNet = "203.0.113.45/32".parse().unwrap();
        assert!(same_target("203.0.113.45", &target));
        assert!(same_target("203.0.113.45/32", &target));
        assert!(!same_target("203.0.113.0/24", &target));
        assert!(!same_target("10.0.0.1-10.0.0.9", &target));
    }

    #[test]
    fn descriptions_are_bounded() {
        let block = Block {
            target: "203.0.113.7/32".parse().unwrap(),
            ttl: std::time::Duration::from_secs(60),
            reason: "x".repeat(300),
        };
        let body = rule_body(&block, 100, "run/step/0");
        let description = body["properties"]["description"].as_str().unwrap();
        assert!(description.len() <= DESCRIPTION_BYTES_MAX, "{description}");
        assert!(
            description.starts_with("riposte run/step/0: xxx"),
            "{description}"
        );
    }
}
