//! Azure VM patching through long-running operations (`patch.*`). `vm` is required: the ARM id
//! of the virtual machine, checked before any request.
//!
//! * assess: POST `assessPatches`, followed to its result; `pending` lists the available
//!   patches in scope (`security` = classified Critical or Security), `reboot_required` is the
//!   assessment's `rebootPending`. It changes nothing on the VM, so a dry run runs it too.
//! * install: reads the VM's OS (`storageProfile.osDisk.osType`), then POSTs `installPatches`
//!   with `maximumDuration` (ISO 8601 from `max_duration`), `rebootSetting` (never: Never,
//!   if_required: IfRequired, always: Always) and the parameters of that OS, followed through
//!   `InProgress` to its result. Linux: `classificationsToInclude` (security: Critical and
//!   Security; all: also Other) and `packages` as `packageNameMasksToInclude`. Windows:
//!   `classificationsToInclude` (security: Critical and Security; all: every Windows
//!   classification), `kbNumbersToInclude` / `kbNumbersToExclude` from `kb_include` /
//!   `kb_exclude`, and `excludeKbsRequiringReboot`. `classifications` replaces the scope's
//!   list, checked against the OS's names; `packages` on a Windows VM is refused before
//!   anything is sent, and the KB inputs on a Linux VM are ignored and listed as `ignored`
//!   (so that one rollout can name KBs for a fleet of both). It succeeds only when the status is
//!   `Succeeded` and no patch failed; anything else fails with the counts and Azure's error.
//!   A dry run reads the VM, assesses and reports the POST it would send.
//! * verify: an assessment that fails when updates in scope (or of the named packages) are
//!   still pending. Azure reports pending updates, not installed versions, so `packages` in
//!   the output maps each named package to `null`.

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

/// `classificationsToInclude` a Linux VM knows (`VMGuestPatchClassificationLinux`).
const LINUX_CLASSIFICATIONS: &[&str] = &["Critical", "Security", "Other"];
/// `classificationsToInclude` a Windows VM knows (`VMGuestPatchClassificationWindows`).
const WINDOWS_CLASSIFICATIONS: &[&str] = &[
    "Critical",
    "Security",
    "UpdateRollUp",
    "FeaturePack",
    "ServicePack",
    "Definition",
    "Tools",
    "Updates",
];

/// The operating system of a VM, which decides the parameters `installPatches` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Os {
    Linux,
    Windows,
}

impl Os {
    fn name(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
        }
    }
}

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
    let os = os_of(client, &vm, &deadline).await?;
    let body = install_body(install, os)?;
    let ignored = ignored(install, os);
    let url = vm.url(&client.settings().arm_url, "/installPatches", API_VERSION);
    let post = Call::new("install patches", Api::Arm, Method::POST, url).json(body);
    let changes = vec![post.display()];
    if cx.dry_run {
        let result = run_assessment(client, &vm, &deadline).await?;
        return Ok(json!({
            "backend": "azure",
            "vm": vm.as_str(),
            "os": os.name(),
            "ignored": ignored,
            "installed": [],
            "would_install": listed(&result, |p| selects(install, os, p)),
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
        .map(|p| {
            let mut item = json!({"name": text(p, "name"), "to": text(p, "version")});
            if !text(p, "kbId").is_empty() {
                item["kb_id"] = json!(text(p, "kbId"));
            }
            item
        })
        .collect();
    Ok(json!({
        "backend": "azure",
        "vm": vm.as_str(),
        "os": os.name(),
        "ignored": ignored,
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

/// GET the VM: its OS disk's `osType`.
async fn os_of(client: &Client, vm: &ArmId, deadline: &Deadline) -> Result<Os, Failure> {
    let url = vm.url(&client.settings().arm_url, "", API_VERSION);
    let get = Call::new("read virtual machine", Api::Arm, Method::GET, url);
    let reply = client.call(&get, deadline).await?;
    let os_type = reply.body["properties"]["storageProfile"]["osDisk"]["osType"]
        .as_str()
        .unwrap_or("");
    if os_type.eq_ignore_ascii_case("windows") {
        Ok(Os::Windows)
    } else if os_type.eq_ignore_ascii_case("linux") {
        Ok(Os::Linux)
    } else {
        Err(Failure::permanent(format!(
            "azure read virtual machine {}: its OS disk names no osType Linux or Windows \
             (found {os_type:?})",
            vm.name()
        )))
    }
}

/// The inputs of `install` that a VM running `os` does not use.
fn ignored(install: &Install, os: Os) -> Vec<&'static str> {
    let windows_only = [
        ("kb_include", !install.kb_include.is_empty()),
        ("kb_exclude", !install.kb_exclude.is_empty()),
        (
            "exclude_kbs_requiring_reboot",
            install.exclude_kbs_requiring_reboot,
        ),
    ];
    match os {
        Os::Windows => Vec::new(),
        Os::Linux => windows_only
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect(),
    }
}

/// The classifications `install` asks of a VM running `os`, in Azure's spelling: those named
/// (each one the OS knows), else the scope's.
fn classifications(install: &Install, os: Os) -> Result<Vec<&'static str>, Failure> {
    let known = match os {
        Os::Linux => LINUX_CLASSIFICATIONS,
        Os::Windows => WINDOWS_CLASSIFICATIONS,
    };
    if install.classifications.is_empty() {
        return Ok(match install.scope {
            Scope::Security => vec!["Critical", "Security"],
            Scope::All => known.to_vec(),
        });
    }
    install
        .classifications
        .iter()
        .map(|c| {
            known
                .iter()
                .find(|k| k.eq_ignore_ascii_case(c))
                .copied()
                .ok_or_else(|| {
                    Failure::invalid_input(format!(
                        "`classifications`: {c:?} is not a {} update classification ({})",
                        os.name(),
                        known.join(", ")
                    ))
                })
        })
        .collect()
}

/// The `installPatches` body for a VM running `os`; refuses inputs that OS cannot honour.
fn install_body(install: &Install, os: Os) -> Result<Value, Failure> {
    let reboot = match install.reboot {
        Reboot::Never => "Never",
        Reboot::IfRequired => "IfRequired",
        Reboot::Always => "Always",
    };
    let classifications = classifications(install, os)?;
    let parameters = match os {
        // The KB inputs narrow or widen what a Windows VM installs; a Linux VM has no KBs, so
        // a fleet of both can share them (the output lists them as ignored).
        Os::Linux => {
            let mut linux = json!({"classificationsToInclude": classifications});
            if !install.packages.is_empty() {
                linux["packageNameMasksToInclude"] = json!(install.packages);
            }
            ("linuxParameters", linux)
        }
        // Package names would narrow a Linux VM's update; ignoring them on Windows would
        // install more than asked.
        Os::Windows => {
            if !install.packages.is_empty() {
                return Err(Failure::invalid_input(
                    "`packages` does not apply to a windows VM; name KB numbers in `kb_include`",
                ));
            }
            let mut windows = json!({
                "classificationsToInclude": classifications,
                "excludeKbsRequiringReboot": install.exclude_kbs_requiring_reboot,
            });
            if !install.kb_include.is_empty() {
                windows["kbNumbersToInclude"] = json!(install.kb_include);
            }
            if !install.kb_exclude.is_empty() {
                windows["kbNumbersToExclude"] = json!(install.kb_exclude);
            }
            ("windowsParameters", windows)
        }
    };
    let mut body = json!({
        "maximumDuration": iso8601_duration(install.max_duration),
        "rebootSetting": reboot,
    });
    body[parameters.0] = parameters.1;
    Ok(body)
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
    listed(result, |p| {
        (scope == Scope::All || is_security(p))
            && (names.is_empty() || names.iter().any(|n| n == text(p, "name")))
    })
}

/// The available patches `keep` selects, as `pending` lists them.
fn listed(result: &Value, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    patches(result, "availablePatches")
        .filter(|p| keep(p))
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

/// Whether `install` on a VM running `os` would install the available patch `p`, as Azure
/// selects: an excluded KB never, an included KB always, else its classification (and, on
/// Linux, its name when `packages` are named; the `all` scope takes every class); with `exclude_kbs_requiring_reboot`, only what
/// never reboots.
fn selects(install: &Install, os: Os, p: &Value) -> bool {
    let kb = text(p, "kbId");
    let kb_listed =
        |list: &[String]| !kb.is_empty() && list.iter().any(|k| k.strip_prefix("KB") == Some(kb));
    if kb_listed(&install.kb_exclude) {
        return false;
    }
    if install.exclude_kbs_requiring_reboot
        && !text(p, "rebootBehavior").eq_ignore_ascii_case("NeverReboots")
    {
        return false;
    }
    if kb_listed(&install.kb_include) {
        return true;
    }
    if !install.packages.is_empty() && !install.packages.iter().any(|n| n == text(p, "name")) {
        return false;
    }
    if install.classifications.is_empty() && install.scope == Scope::All {
        return true;
    }
    let Ok(wanted) = classifications(install, os) else {
        return false;
    };
    classifications_of(p).any(|c| wanted.iter().any(|w| same_class(w, c)))
}

fn patches<'a>(result: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    result
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Classified Critical or Security, in Azure's words or the publisher's (`Security Updates`).
fn is_security(patch: &Value) -> bool {
    classifications_of(patch).any(|c| same_class(c, "Critical") || same_class(c, "Security"))
}

fn classifications_of(patch: &Value) -> impl Iterator<Item = &str> {
    patch
        .get("classifications")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Whether two classification names are the same class: Azure's request names
/// (`UpdateRollUp`, `Definition`) and the assessment's publisher names (`Update Rollups`,
/// `Definition Updates`) compare equal, ignoring case, spaces, a trailing `Updates` and a
/// plural `s`.
fn same_class(a: &str, b: &str) -> bool {
    fn key(name: &str) -> String {
        let mut key: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if key.len() > "updates".len()
            && let Some(stem) = key.strip_suffix("updates")
        {
            key = stem.to_owned();
        }
        if let Some(stem) = key.strip_suffix('s') {
            key = stem.to_owned();
        }
        key
    }
    key(a) == key(b)
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

    fn install(scope: Scope) -> Install {
        Install {
            scope,
            packages: Vec::new(),
            reboot: Reboot::IfRequired,
            max_duration: Duration::from_secs(7200),
            vm: None,
            classifications: Vec::new(),
            kb_include: Vec::new(),
            kb_exclude: Vec::new(),
            exclude_kbs_requiring_reboot: false,
        }
    }

    #[test]
    fn install_request_maps_the_input() {
        let mut linux = install(Scope::All);
        linux.packages = vec!["openssl".into()];
        assert_eq!(
            install_body(&linux, Os::Linux).unwrap(),
            json!({
                "maximumDuration": "PT2H",
                "rebootSetting": "IfRequired",
                "linuxParameters": {
                    "classificationsToInclude": ["Critical", "Security", "Other"],
                    "packageNameMasksToInclude": ["openssl"],
                },
            })
        );
        let mut windows = install(Scope::Security);
        windows.reboot = Reboot::Never;
        windows.kb_include = vec!["KB5034441".into()];
        windows.kb_exclude = vec!["KB890830".into()];
        windows.exclude_kbs_requiring_reboot = true;
        assert_eq!(
            install_body(&windows, Os::Windows).unwrap(),
            json!({
                "maximumDuration": "PT2H",
                "rebootSetting": "Never",
                "windowsParameters": {
                    "classificationsToInclude": ["Critical", "Security"],
                    "kbNumbersToInclude": ["KB5034441"],
                    "kbNumbersToExclude": ["KB890830"],
                    "excludeKbsRequiringReboot": true,
                },
            })
        );
        let mut chosen = install(Scope::Security);
        chosen.classifications = vec!["definition".into(), "Security".into()];
        assert_eq!(
            install_body(&chosen, Os::Windows).unwrap()["windowsParameters"]["classificationsToInclude"],
            json!(["Definition", "Security"])
        );
    }

    #[test]
    fn inputs_of_the_other_os_are_refused_or_ignored() {
        let mut kbs = install(Scope::Security);
        kbs.kb_exclude = vec!["KB890830".into()];
        let body = install_body(&kbs, Os::Linux).unwrap();
        assert_eq!(
            body["linuxParameters"],
            json!({"classificationsToInclude": ["Critical", "Security"]})
        );
        assert_eq!(ignored(&kbs, Os::Linux), ["kb_exclude"]);
        assert!(ignored(&kbs, Os::Windows).is_empty());
        let mut packages = install(Scope::Security);
        packages.packages = vec!["openssl".into()];
        assert_eq!(
            install_body(&packages, Os::Windows).unwrap_err().message,
            "invalid input: `packages` does not apply to a windows VM; name KB numbers in `kb_include`"
        );
        let mut classes = install(Scope::Security);
        classes.classifications = vec!["Definition".into()];
        assert_eq!(
            install_body(&classes, Os::Linux).unwrap_err().message,
            "invalid input: `classifications`: \"Definition\" is not a linux update classification (Critical, Security, Other)"
        );
    }

    #[test]
    fn a_dry_run_selects_as_azure_does() {
        let result = fixture("arm-lro-assesspatches-result.json");
        let kb = |list: &[Value]| -> Vec<String> {
            list.iter()
                .map(|p| p["kb_id"].as_str().unwrap().to_owned())
                .collect()
        };
        // Neither patch is Critical or Security: nothing, unless a KB is included.
        let mut windows = install(Scope::Security);
        assert!(listed(&result, |p| selects(&windows, Os::Windows, p)).is_empty());
        windows.kb_include = vec!["KB890830".into()];
        assert_eq!(
            kb(&listed(&result, |p| selects(&windows, Os::Windows, p))),
            ["890830"]
        );
        // `Definition` matches the publisher's `Definition Updates`; an excluded KB never.
        let mut definitions = install(Scope::Security);
        definitions.classifications = vec!["Definition".into(), "UpdateRollUp".into()];
        assert_eq!(
            kb(&listed(&result, |p| selects(&definitions, Os::Windows, p))),
            ["2267602", "890830"]
        );
        definitions.kb_exclude = vec!["KB2267602".into()];
        assert_eq!(
            kb(&listed(&result, |p| selects(&definitions, Os::Windows, p))),
            ["890830"]
        );
        // Only what never reboots.
        definitions.kb_exclude.clear();
        definitions.exclude_kbs_requiring_reboot = true;
        assert_eq!(
            kb(&listed(&result, |p| selects(&definitions, Os::Windows, p))),
            ["2267602"]
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
