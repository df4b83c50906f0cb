//! Azure VM patching through long-running operations (`patch.*`). `vm` is required: the ARM id
//! of the virtual machine, checked before any request.
//!
//! * assess: POST `assessPatches`, followed to its result; `pending` lists the available
//!   patches in scope (`security` = classified Critical or Security), `reboot_required` is the
//!   assessment's `rebootPending`. It changes nothing on the VM, so a dry run runs it too.
//! * install: POST `installPatches` with `maximumDuration` (ISO 8601 from `max_duration`),
//!   `rebootSetting` (never: Never, if_required: IfRequired, always: Always) and Linux
//!   parameters (security: Critical and Security; all: also Other; `packages` as
//!   `packageNameMasksToInclude`), followed through `InProgress` to its result. It succeeds only
//!   when the status is `Succeeded` and no patch failed; anything else fails with the counts
//!   and Azure's error. A dry run assesses and reports the POST it would send.
//! * verify: an assessment that fails when updates in scope (or of the named packages) are
//!   still pending. Azure reports pending updates, not installed versions, so `packages` in
//!   the output maps each named package to `null`.
//!
//! Windows VMs are not handled yet: the request carries Linux parameters only.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::super::patch::{Assess, Install, Reboot, Scope, Verify, verdict};
use super::super::{Context, Failure};
use super::errors::ApiError;
use super::id::Kind;
use super::rest::{Api, Call, Deadline};
use super::time::iso8601_duration;
use super::{ArmId, Client};

/// API version of `Microsoft.Compute` virtual machines.
const API_VERSION: &str = "2024-07-01";

/// See the family module.
pub(crate) async fn assess(
    client: &Client,
    assess: &Assess,
    cx: &Context,
) -> Result<Value, Failure> {
    let vm = vm_id(assess.vm.as_deref())?;
    let deadline = Deadline::for_task(cx);
    let result = run_assessment(client, &vm, &deadline).await?;
    Ok(json!({
        "backend": "azure",
        "vm": vm.as_str(),
        "scope": scope_name(assess.scope),
        "pending": pending(&result, assess.scope, &[]),
        "reboot_required": result.get("rebootPending").and_then(Value::as_bool).unwrap_or(false),
        "dry_run": cx.dry_run,
    }))
}

/// See the family module.
pub(crate) async fn install(
    client: &Client,
    install: &Install,
    cx: &Context,
) -> Result<Value, Failure> {
    let vm = vm_id(install.vm.as_deref())?;
    let deadline = Deadline::for_task(cx);
    let url = vm.url(&client.settings().arm_url, "/installPatches", API_VERSION);
    let post =
        Call::new("install patches", Api::Arm, Method::POST, url).json(install_body(install));
    let changes = vec![post.display()];
    if cx.dry_run {
        let result = run_assessment(client, &vm, &deadline).await?;
        return Ok(json!({
            "backend": "azure",
            "vm": vm.as_str(),
            "installed": [],
            "would_install": pending(&result, install.scope, &install.packages),
            "reboot_required": result.get("rebootPending").and_then(Value::as_bool).unwrap_or(false),
            "rebooted": false,
            "changes": changes,
            "dry_run": true,
        }));
    }
    let reply = client.call(&post, &deadline).await?;
    let result = client.finish(&post.op, reply, None, &deadline).await?;
    check_install(&vm, &result)?;
    let reboot = result
        .get("rebootStatus")
        .and_then(Value::as_str)
        .unwrap_or("");
    let installed: Vec<Value> = patches(&result, "patches")
        .filter(|p| text(p, "installationState").eq_ignore_ascii_case("installed"))
        .map(|p| json!({"name": text(p, "name"), "to": text(p, "version")}))
        .collect();
    Ok(json!({
        "backend": "azure",
        "vm": vm.as_str(),
        "status": text(&result, "status"),
        "installed": installed,
        "counts": counts(&result),
        "reboot_required": reboot.eq_ignore_ascii_case("required"),
        "rebooted": reboot.eq_ignore_ascii_case("started") || reboot.eq_ignore_ascii_case("completed"),
        "changes": changes,
        "dry_run": false,
    }))
}

/// See the family module.
pub(crate) async fn verify(
    client: &Client,
    verify: &Verify,
    cx: &Context,
) -> Result<Value, Failure> {
    let vm = vm_id(verify.vm.as_deref())?;
    let deadline = Deadline::for_task(cx);
    let result = run_assessment(client, &vm, &deadline).await?;
    let names: Vec<String> = verify.packages.keys().cloned().collect();
    let pending = pending(&result, verify.scope, &names);
    let mut problems = Vec::new();
    if !pending.is_empty() {
        let listed: Vec<&str> = pending
            .iter()
            .filter_map(|p| p.get("name").and_then(Value::as_str))
            .collect();
        problems.push(format!(
            "{} update(s) in scope still pending: {}",
            pending.len(),
            listed.join(", ")
        ));
    }
    let packages: Map<String, Value> = names.into_iter().map(|n| (n, Value::Null)).collect();
    let output = json!({
        "backend": "azure",
        "vm": vm.as_str(),
        "pending": pending,
        "packages": packages,
        "reboot_required": result.get("rebootPending").and_then(Value::as_bool).unwrap_or(false),
    });
    verdict(
        cx,
        &format!("vm {} is not patched", vm.name()),
        problems,
        output,
    )
}

fn vm_id(vm: Option<&str>) -> Result<ArmId, Failure> {
    let vm =
        vm.ok_or_else(|| Failure::invalid_input("`vm` is required by the azure patch backend"))?;
    ArmId::parse(vm, Kind::Vm).map_err(|e| Failure::invalid_input(format!("`vm`: {e}")))
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Security => "security",
        Scope::All => "all",
    }
}

fn install_body(install: &Install) -> Value {
    let reboot = match install.reboot {
        Reboot::Never => "Never",
        Reboot::IfRequired => "IfRequired",
        Reboot::Always => "Always",
    };
    let classifications = match install.scope {
        Scope::Security => vec!["Critical", "Security"],
        Scope::All => vec!["Critical", "Security", "Other"],
    };
    let mut linux = json!({"classificationsToInclude": classifications});
    if !install.packages.is_empty() {
        linux["packageNameMasksToInclude"] = json!(install.packages);
    }
    json!({
        "maximumDuration": iso8601_duration(install.max_duration),
        "rebootSetting": reboot,
        "linuxParameters": linux,
    })
}

/// POST assessPatches and follow it; fails unless the assessment succeeded.
async fn run_assessment(
    client: &Client,
    vm: &ArmId,
    deadline: &Deadline,
) -> Result<Value, Failure> {
    let url = vm.url(&client.settings().arm_url, "/assessPatches", API_VERSION);
    let post = Call::new("assess patches", Api::Arm, Method::POST, url);
    let reply = client.call(&post, deadline).await?;
    let result = client.finish(&post.op, reply, None, deadline).await?;
    let status = text(&result, "status");
    if status.eq_ignore_ascii_case("succeeded")
        || status.eq_ignore_ascii_case("completedwithwarnings")
    {
        return Ok(result);
    }
    let mut message = format!(
        "azure assess patches on vm {} ended {}",
        vm.name(),
        or_unknown(status)
    );
    if let Some(error) = error_summary(&result) {
        message.push_str(&format!(": {error}"));
    }
    Err(Failure::permanent(message))
}

/// Succeeded with no failed patch, or a failure naming the counts and the error.
fn check_install(vm: &ArmId, result: &Value) -> Result<(), Failure> {
    let status = text(result, "status");
    let failed = count(result, "failedPatchCount");
    if status.eq_ignore_ascii_case("succeeded") && failed == 0 {
        return Ok(());
    }
    let mut message = format!(
        "azure install patches on vm {} ended {}: {} installed, {failed} failed, {} pending, {} excluded",
        vm.name(),
        or_unknown(status),
        count(result, "installedPatchCount"),
        count(result, "pendingPatchCount"),
        count(result, "excludedPatchCount"),
    );
    if result.get("maintenanceWindowExceeded") == Some(&Value::Bool(true)) {
        message.push_str(", maintenance window exceeded");
    }
    if let Some(error) = error_summary(result) {
        message.push_str(&format!("; error {error}"));
    }
    Err(Failure::permanent(message))
}

fn error_summary(result: &Value) -> Option<String> {
    let error = result.get("error").filter(|e| e.is_object())?;
    let body = json!({ "error": error });
    Some(ApiError::from_body(reqwest::StatusCode::OK, &body, b"").summary())
}

fn counts(result: &Value) -> Value {
    json!({
        "installed": count(result, "installedPatchCount"),
        "failed": count(result, "failedPatchCount"),
        "pending": count(result, "pendingPatchCount"),
        "excluded": count(result, "excludedPatchCount"),
        "not_selected": count(result, "notSelectedPatchCount"),
    })
}

/// The available patches in `scope`, limited to `names` when there are any.
fn pending(result: &Value, scope: Scope, names: &[String]) -> Vec<Value> {
    patches(result, "availablePatches")
        .filter(|p| scope == Scope::All || is_security(p))
        .filter(|p| names.is_empty() || names.iter().any(|n| n == text(p, "name")))
        .map(|p| {
            let mut item = json!({
                "name": text(p, "name"),
                "candidate": text(p, "version"),
                "security": is_security(p),
                "classifications": p.get("classifications").cloned().unwrap_or(json!([])),
                "patch_id": text(p, "patchId"),
            });
            if !text(p, "kbId").is_empty() {
                item["kb_id"] = json!(text(p, "kbId"));
            }
            item
        })
        .collect()
}

fn patches<'a>(result: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    result
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn is_security(patch: &Value) -> bool {
    patch
        .get("classifications")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|c| c.eq_ignore_ascii_case("critical") || c.eq_ignore_ascii_case("security"))
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn count(value: &Value, key: &str) -> u64 {
    value.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn or_unknown(status: &str) -> &str {
    if status.is_empty() {
        "without a status"
    } else {
        status
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../test-support/fixtures/azure/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn install_request_maps_the_input() {
        let install = Install {
            scope: Scope::All,
            packages: vec!["openssl".into()],
            reboot: Reboot::IfRequired,
            max_duration: Duration::from_secs(7200),
            vm: None,
        };
        assert_eq!(
            install_body(&install),
            json!({
                "maximumDuration": "PT2H",
                "rebootSetting": "IfRequired",
                "linuxParameters": {
                    "classificationsToInclude": ["Critical", "Security", "Other"],
                    "packageNameMasksToInclude": ["openssl"],
                },
            })
        );
    }

    #[test]
    fn pending_security_patches_of_an_assessment() {
        let mut result = fixture("arm-lro-assesspatches-result.json");
        assert!(
            pending(&result, Scope::Security, &[]).is_empty(),
            "no Critical/Security patch"
        );
        assert_eq!(pending(&result, Scope::All, &[]).len(), 2);
        result["availablePatches"][0]["classifications"] = json!(["Security"]);
        let security = pending(&result, Scope::Security, &[]);
        assert_eq!(security.len(), 1);
        assert_eq!(security[0]["kb_id"], "2267602");
        assert_eq!(security[0]["security"], true);
    }

    #[test]
    fn an_install_with_warnings_fails_with_its_counts() {
        let vm = ArmId::parse(
            "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
            Kind::Vm,
        )
        .unwrap();
        let result = fixture("arm-lro-installpatches-result-linux.json");
        let error = check_install(&vm, &result).unwrap_err();
        assert_eq!(
            error.message,
            "azure install patches on vm vm1 ended CompletedWithWarnings: 2 installed, 0 failed, \
             1 pending, 1 excluded, maintenance window exceeded"
        );
        let mut ok = result.clone();
        ok["status"] = json!("Succeeded");
        assert!(check_install(&vm, &ok).is_ok());
    }
}
