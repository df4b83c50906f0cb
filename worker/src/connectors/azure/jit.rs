//! Defender for Cloud just-in-time VM access (`access.*`).
//!
//! **Grant**: GET the configured policy to check that the VM and port are in it, then POST
//! `.../jitNetworkAccessPolicies/{name}/initiate?api-version=2020-01-01` with an absolute
//! `endTimeUtc` (now + ttl, RFC 3339 UTC) and `allowedSourceAddressPrefix` = the source. Azure
//! answers 202 with the request; `expires_at` is the `endTimeUtc` it accepted. Azure closes the
//! port by itself at that time, whatever happens to the worker or the orchestrator. The
//! initiate request has no protocol field: the policy's port rule decides it.
//!
//! **Revoke**: the JIT API has no way to end a request early (the 2020-01-01 API has no
//! revoke operation). So the revoke reads the policy and looks for an active request of this VM,
//! port and source:
//! * none, or all ended: success with `was_open: false`;
//! * one that ends within [`ENDING_SOON`]: a retryable failure, so that the orchestrator retries
//!   and the retry succeeds once Azure has closed the port;
//! * otherwise a permanent failure saying that Azure JIT cannot be revoked early and when the
//!   access ends, so that an operator can close it another way (for example a deny rule).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use reqwest::Method;
use serde_json::{Value, json};

use super::super::access::{Grant, Revoke};
use super::super::{Context, Failure};
use super::id::Kind;
use super::rest::{Api, Call, Deadline};
use super::time::{format_rfc3339, parse_rfc3339};
use super::{ArmId, Client};
use crate::clock;

/// API version of `Microsoft.Security` JIT policies.
const API_VERSION: &str = "2020-01-01";
/// A request that ends within this time counts as "about to end": the revoke asks for a retry.
pub(crate) const ENDING_SOON: Duration = Duration::from_secs(120);

/// See the family module.
pub(crate) async fn grant(client: &Client, grant: &Grant, cx: &Context) -> Result<Value, Failure> {
    let vm = vm_id(grant.vm.as_deref())?;
    let policy = policy(client)?;
    let deadline = Deadline::for_task(cx);
    let body = read_policy(client, policy, &deadline).await?;
    check_port_in_policy(&body, policy, &vm, grant.port)?;
    let end = clock::wall() + grant.ttl;
    let end_text = format_rfc3339(end);
    let url = policy.url(&client.settings().arm_url, "/initiate", API_VERSION);
    let mut request = json!({
        "virtualMachines": [{
            "id": vm.as_str(),
            "ports": [{
                "number": grant.port,
                "endTimeUtc": end_text,
                "allowedSourceAddressPrefix": grant.source.to_string(),
            }],
        }],
    });
    if !grant.justification.is_empty() {
        request["justification"] = json!(grant.justification);
    }
    let post = Call::new("initiate jit access", Api::Arm, Method::POST, url).json(request);
    let mut output = json!({
        "source_ip": grant.source.to_string(),
        "port": grant.port,
        "protocol": grant.protocol.name(),
        "backend": "azure-jit",
        "vm": vm.as_str(),
        "policy": policy.as_str(),
        "expires_at": end_text,
        "changes": [post.display()],
        "dry_run": cx.dry_run,
    });
    if cx.dry_run {
        return Ok(output);
    }
    let reply = client.call(&post, &deadline).await?;
    let port = accepted_port(&reply.body, &vm, grant.port);
    if let Some(port) = port {
        if let Some(end) = port.get("endTimeUtc").and_then(Value::as_str)
            && let Some(at) = parse_rfc3339(end)
        {
            output["expires_at"] = json!(format_rfc3339(at));
        }
        output["status"] = port.get("status").cloned().unwrap_or(Value::Null);
    }
    Ok(output)
}

/// See the family module.
pub(crate) async fn revoke(
    client: &Client,
    revoke: &Revoke,
    cx: &Context,
) -> Result<Value, Failure> {
    let vm = vm_id(revoke.vm.as_deref())?;
    let policy = policy(client)?;
    let deadline = Deadline::for_task(cx);
    let body = read_policy(client, policy, &deadline).await?;
    let now = clock::wall();
    let open_until = active_until(&body, &vm, revoke.port, revoke.source, now);
    let Some(until) = open_until else {
        return Ok(json!({
            "source_ip": revoke.source.to_string(),
            "port": revoke.port,
            "protocol": revoke.protocol.name(),
            "backend": "azure-jit",
            "vm": vm.as_str(),
            "was_open": false,
            "changes": [],
            "dry_run": cx.dry_run,
        }));
    };
    let left = until.duration_since(now).unwrap_or_default();
    let when = format_rfc3339(until);
    let what = format!(
        "access of {} to port {} of vm {}",
        revoke.source,
        revoke.port,
        vm.name()
    );
    if left <= ENDING_SOON {
        return Err(Failure::retryable(format!(
            "azure jit {what} is still open until {when} (in {}s); azure jit cannot be revoked \
             early, retry after it ends",
            left.as_secs()
        )));
    }
    Err(Failure::permanent(format!(
        "azure jit cannot be revoked early: {what} ends at {when} (in {}); close it another \
         way if it must end sooner",
        humantime::format_duration(Duration::from_secs(left.as_secs()))
    )))
}

fn vm_id(vm: Option<&str>) -> Result<ArmId, Failure> {
    let vm =
        vm.ok_or_else(|| Failure::invalid_input("`vm` is required by the azure-jit backend"))?;
    ArmId::parse(vm, Kind::Vm).map_err(|e| Failure::invalid_input(format!("`vm`: {e}")))
}

fn policy(client: &Client) -> Result<&ArmId, Failure> {
    client
        .settings()
        .jit_policy
        .as_ref()
        .ok_or_else(|| Failure::permanent("the azure-jit backend needs --azure-jit-policy"))
}

async fn read_policy(
    client: &Client,
    policy: &ArmId,
    deadline: &Deadline,
) -> Result<Value, Failure> {
    let url = policy.url(&client.settings().arm_url, "", API_VERSION);
    let get = Call::new("get jit policy", Api::Arm, Method::GET, url);
    Ok(client.call(&get, deadline).await?.body)
}

/// The VM entries of the policy (`properties.virtualMachines`).
fn check_port_in_policy(
    policy_body: &Value,
    policy: &ArmId,
    vm: &ArmId,
    port: u16,
) -> Result<(), Failure> {
    let vms = policy_body
        .get("properties")
        .and_then(|p| p.get("virtualMachines"))
        .and_then(Value::as_array);
    let entry = vms.into_iter().flatten().find(|v| {
        v.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| vm.same_as(id))
    });
    let Some(entry) = entry else {
        return Err(Failure::permanent(format!(
            "vm {vm} is not in jit policy {policy}: add it to the policy first"
        )));
    };
    let has_port =
        ports(entry).any(|p| p.get("number").and_then(Value::as_u64) == Some(u64::from(port)));
    if has_port {
        Ok(())
    } else {
        Err(Failure::permanent(format!(
            "port {port} of vm {vm} is not in jit policy {policy}: add it to the policy first"
        )))
    }
}

fn ports(vm_entry: &Value) -> impl Iterator<Item = &Value> {
    vm_entry
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The port of this VM in the 202 body of an initiate.
fn accepted_port<'a>(body: &'a Value, vm: &ArmId, port: u16) -> Option<&'a Value> {
    body.get("virtualMachines")?
        .as_array()?
        .iter()
        .filter(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| vm.same_as(id))
        })
        .flat_map(ports)
        .find(|p| p.get("number").and_then(Value::as_u64) == Some(u64::from(port)))
}

/// The latest end of an active request of `vm`, `port` and `source` in the policy's
/// `properties.requests`, when one is still open at `now`.
fn active_until(
    policy_body: &Value,
    vm: &ArmId,
    port: u16,
    source: IpAddr,
    now: SystemTime,
) -> Option<SystemTime> {
    let requests = policy_body
        .get("properties")
        .and_then(|p| p.get("requests"))
        .and_then(Value::as_array)?;
    requests
        .iter()
        .filter_map(|r| r.get("virtualMachines").and_then(Value::as_array))
        .flatten()
        .filter(|v| {
            v.get("id")
                .and_then(Value::as_str)
                .is_some_and(|id| vm.same_as(id))
        })
        .flat_map(ports)
        .filter(|p| p.get("number").and_then(Value::as_u64) == Some(u64::from(port)))
        .filter(|p| allows_source(p, source))
        .filter(|p| {
            let status = p.get("status").and_then(Value::as_str).unwrap_or("");
            !status.eq_ignore_ascii_case("revoked")
        })
        .filter_map(|p| {
            p.get("endTimeUtc")
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
        })
        .filter(|end| *end > now)
        .max()
}

/// True when the port request admits `source` (by the single prefix or the list).
fn allows_source(port: &Value, source: IpAddr) -> bool {
    let single = port
        .get("allowedSourceAddressPrefix")
        .and_then(Value::as_str);
    let many = port
        .get("allowedSourceAddressPrefixes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    single.into_iter().chain(many).any(|prefix| {
        let prefix = prefix.trim();
        prefix == "*"
            || prefix.parse::<IpAddr>().is_ok_and(|ip| ip == source)
            || prefix
                .parse::<IpNet>()
                .is_ok_and(|net| net.contains(&source))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: &str = "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web-01";

    fn policy_with(end: &str, status: &str) -> Value {
        json!({"properties": {"requests": [{
            "virtualMachines": [{"id": VM.to_lowercase(), "ports": [{
                "number": 22, "allowedSourceAddressPrefix": "198.51.100.7",
                "endTimeUtc": end, "status": status
            }]}]
        }]}})
    }

    #[test]
    fn finds_the_active_request_of_this_vm_port_and_source() {
        let vm = ArmId::parse(VM, Kind::Vm).unwrap();
        let source: IpAddr = "198.51.100.7".parse().unwrap();
        let now = parse_rfc3339("2025-01-15T10:30:00Z").unwrap();
        let end = parse_rfc3339("2025-01-15T11:00:00Z").unwrap();
        let body = policy_with("2025-01-15T11:00:00.0000000Z", "Initiated");
        assert_eq!(active_until(&body, &vm, 22, source, now), Some(end));
        assert_eq!(
            active_until(&body, &vm, 3389, source, now),
            None,
            "another port"
        );
        let other: IpAddr = "198.51.100.8".parse().unwrap();
        assert_eq!(
            active_until(&body, &vm, 22, other, now),
            None,
            "another source"
        );
        let later = parse_rfc3339("2025-01-15T11:00:01Z").unwrap();
        assert_eq!(active_until(&body, &vm, 22, source, later), None, "ended");
        let revoked = policy_with("2025-01-15T11:00:00Z", "Revoked");
        assert_eq!(
            active_until(&revoked, &vm, 22, source, now),
            None,
            "revoked"
        );
    }

    #[test]
    fn the_vm_is_required_and_checked() {
        let missing = vm_id(None).unwrap_err();
        assert_eq!(
            missing.message,
            "invalid input: `vm` is required by the azure-jit backend"
        );
        let bad = vm_id(Some("/subscriptions/x/vm")).unwrap_err();
        assert!(
            bad.message
                .contains("is not the ARM id of a virtual machine"),
            "{bad:?}"
        );
    }
}
