//! The `patch.*` actions: assess, install and verify package updates.
//!
//! Inputs are parsed into typed requests here, before any backend is called: package names are
//! checked against the distribution's rules (so a name can never carry shell syntax or an
//! option), versions likewise. Installation is non-interactive and bounded in time.
//!
//! Output of `assess`: `{"backend", "scope", "pending": [{"name", "current"?, "candidate",
//! "security"}], "reboot_required", "dry_run"}`; of `install`: `{"backend", "installed":
//! [{"name", "from"?, "to"}], "reboot_required", "rebooted", "changes", "dry_run"}`; of `verify`
//! (fails when the host is not patched, except in a dry run): `{"backend", "pending": [...],
//! "packages": {name: version}, "reboot_required", "passed", "problems"}`.
//!
//! `install` on an Azure VM also takes `classifications` (Azure's names, instead of those the
//! scope selects) and, for a Windows VM, `kb_include`, `kb_exclude` and
//! `exclude_kbs_requiring_reboot`; a backend that patches its own host refuses them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, apt, azure, dnf};

/// Longest installation one action may ask for.
pub(crate) const MAX_DURATION_MAX: Duration = Duration::from_secs(6 * 3600);
/// Installation time unless the input says otherwise.
pub(crate) const MAX_DURATION_DEFAULT: Duration = Duration::from_secs(3600);
/// Most package names (or KB numbers, or classifications) in one request.
pub(crate) const PACKAGES_MAX: usize = 1000;

/// The `patch.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Assess,
    Install,
    Verify,
}

impl Action {
    /// All `patch.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Assess, Action::Install, Action::Verify];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Assess => "patch.assess",
            Action::Install => "patch.install",
            Action::Verify => "patch.verify",
        }
    }
}

/// Where the `patch.*` actions take effect, chosen by the worker's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// apt-get on this host.
    Apt,
    /// dnf on this host (or on the system under --dnf-installroot).
    Dnf,
    /// Azure VM assessPatches / installPatches.
    Azure,
}

/// Which updates count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only updates from security sources (Debian-Security, updateinfo advisories, the
    /// Critical and Security classifications).
    Security,
    /// Every update.
    All,
}

/// Whether the host may reboot after installing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reboot {
    Never,
    IfRequired,
    Always,
}

/// `patch.assess`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assess {
    pub(crate) scope: Scope,
    pub(crate) vm: Option<String>,
}

/// `patch.install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Install {
    pub(crate) scope: Scope,
    /// Only these packages (valid names); empty means every pending update in scope.
    pub(crate) packages: Vec<String>,
    pub(crate) reboot: Reboot,
    pub(crate) max_duration: Duration,
    pub(crate) vm: Option<String>,
    /// Azure update classifications to install instead of the scope's (Azure VMs only).
    pub(crate) classifications: Vec<String>,
    /// Knowledge-base articles to install only, or never: `KB` and digits (Windows VMs only).
    pub(crate) kb_include: Vec<String>,
    pub(crate) kb_exclude: Vec<String>,
    /// Leave out updates that may need a reboot (Windows VMs only).
    pub(crate) exclude_kbs_requiring_reboot: bool,
}

impl Install {
    /// Refuses what only an Azure VM understands, for a backend that patches its own host
    /// (`backend` names it).
    pub(crate) fn on_this_host(&self, backend: &str) -> Result<(), Failure> {
        let azure_only = [
            ("vm", self.vm.is_some()),
            ("classifications", !self.classifications.is_empty()),
            ("kb_include", !self.kb_include.is_empty()),
            ("kb_exclude", !self.kb_exclude.is_empty()),
            (
                "exclude_kbs_requiring_reboot",
                self.exclude_kbs_requiring_reboot,
            ),
        ];
        match azure_only.iter().find(|(_, set)| *set) {
            Some((input, _)) => Err(azure_only_input(input, backend)),
            None => Ok(()),
        }
    }
}

/// Refuses a `vm` for a backend that patches its own host (`backend` names it).
pub(crate) fn no_vm(vm: &Option<String>, backend: &str) -> Result<(), Failure> {
    match vm {
        Some(_) => Err(azure_only_input("vm", backend)),
        None => Ok(()),
    }
}

fn azure_only_input(input: &str, backend: &str) -> Failure {
    Failure::invalid_input(format!(
        "`{input}` is only for the azure backend; the {backend} backend patches its own host"
    ))
}

/// `patch.verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verify {
    pub(crate) scope: Scope,
    /// Package name to the least version required (valid names and versions).
    pub(crate) packages: BTreeMap<String, String>,
    pub(crate) vm: Option<String>,
}

/// Runs one `patch.*` action on `backend`.
pub(crate) async fn execute(
    shared: &Shared,
    backend: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::Assess => {
            let mut fields = Fields::new(input, &["scope", "vm"])?;
            let assess = Assess {
                scope: scope(&mut fields)?,
                vm: fields.string("vm")?,
            };
            match backend {
                Backend::Apt => apt::assess(&shared.apt, &assess, cx).await,
                Backend::Dnf => dnf::assess(&shared.dnf, &assess, cx).await,
                Backend::Azure => azure::compute::assess(&shared.azure, &assess, cx).await,
            }
        }
        Action::Install => {
            let known = [
                "scope",
                "packages",
                "reboot",
                "max_duration",
                "vm",
                "classifications",
                "kb_include",
                "kb_exclude",
                "exclude_kbs_requiring_reboot",
            ];
            let mut fields = Fields::new(input, &known)?;
            let install = Install {
                scope: scope(&mut fields)?,
                packages: package_list(&mut fields)?,
                reboot: reboot(&mut fields)?,
                max_duration: fields
                    .duration("max_duration", MAX_DURATION_MAX)?
                    .unwrap_or(MAX_DURATION_DEFAULT),
                vm: fields.string("vm")?,
                classifications: fields.strings("classifications", PACKAGES_MAX, classification)?,
                kb_include: fields.strings("kb_include", PACKAGES_MAX, kb_number)?,
                kb_exclude: fields.strings("kb_exclude", PACKAGES_MAX, kb_number)?,
                exclude_kbs_requiring_reboot: fields
                    .boolean("exclude_kbs_requiring_reboot")?
                    .unwrap_or(false),
            };
            match backend {
                Backend::Apt => apt::install(&shared.apt, &install, cx).await,
                Backend::Dnf => dnf::install(&shared.dnf, &install, cx).await,
                Backend::Azure => azure::compute::install(&shared.azure, &install, cx).await,
            }
        }
        Action::Verify => {
            let mut fields = Fields::new(input, &["scope", "packages", "vm"])?;
            let verify = Verify {
                scope: scope(&mut fields)?,
                packages: package_versions(&mut fields)?,
                vm: fields.string("vm")?,
            };
            match backend {
                Backend::Apt => apt::verify(&shared.apt, &verify, cx).await,
                Backend::Dnf => dnf::verify(&shared.dnf, &verify, cx).await,
                Backend::Azure => azure::compute::verify(&shared.azure, &verify, cx).await,
            }
        }
    }
}

/// The end of every backend's `verify`: with no problem, `output` with `"passed": true`; with
/// problems, a permanent failure `"{subject}: {problems}"`, except in a dry run, which reports
/// them (`"passed": false`, `"problems"`) and succeeds: the changes being verified were never
/// made, so a plan must not stop at its own check.
pub(crate) fn verdict(
    cx: &Context,
    subject: &str,
    problems: Vec<String>,
    mut output: Value,
) -> Result<Value, Failure> {
    if !problems.is_empty() && !cx.dry_run {
        return Err(Failure::permanent(format!(
            "{subject}: {}",
            problems.join("; ")
        )));
    }
    if let Value::Object(map) = &mut output {
        map.insert("passed".into(), Value::Bool(problems.is_empty()));
        map.insert("problems".into(), problems.into());
        map.insert("dry_run".into(), Value::Bool(cx.dry_run));
    }
    Ok(output)
}

fn scope(fields: &mut Fields) -> Result<Scope, Failure> {
    match fields.string("scope")?.as_deref().map(str::trim) {
        None | Some("security") => Ok(Scope::Security),
        Some("all") => Ok(Scope::All),
        Some(other) => Err(Failure::invalid_input(format!(
            "`scope` {other:?} is not security or all"
        ))),
    }
}

fn reboot(fields: &mut Fields) -> Result<Reboot, Failure> {
    match fields.string("reboot")?.as_deref().map(str::trim) {
        None | Some("never") => Ok(Reboot::Never),
        Some("if_required") => Ok(Reboot::IfRequired),
        Some("always") => Ok(Reboot::Always),
        Some(other) => Err(Failure::invalid_input(format!(
            "`reboot` {other:?} is not never, if_required or always"
        ))),
    }
}

fn package_list(fields: &mut Fields) -> Result<Vec<String>, Failure> {
    fields.strings("packages", PACKAGES_MAX, package_name)
}

/// A knowledge-base article number, `KB` and 4 to 9 digits (`5034441` is read as
/// `KB5034441`).
fn kb_number(text: &str) -> Result<String, Failure> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("KB")
        .or_else(|| trimmed.strip_prefix("kb"))
        .unwrap_or(trimmed);
    if (4..=9).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(format!("KB{digits}"))
    } else {
        Err(Failure::invalid_input(format!(
            "{text:?} is not a KB number (KB and 4 to 9 digits, e.g. KB5034441)"
        )))
    }
}

/// An Azure update classification: letters only (which ones the VM's OS knows is checked by
/// the backend).
fn classification(text: &str) -> Result<String, Failure> {
    let valid =
        !text.is_empty() && text.len() <= 32 && text.chars().all(|c| c.is_ascii_alphabetic());
    if valid {
        Ok(text.to_owned())
    } else {
        Err(Failure::invalid_input(format!(
            "{text:?} is not an update classification (e.g. Critical, Security)"
        )))
    }
}

fn package_versions(fields: &mut Fields) -> Result<BTreeMap<String, String>, Failure> {
    let Some(map) = fields.object("packages")? else {
        return Ok(BTreeMap::new());
    };
    if map.len() > PACKAGES_MAX {
        return Err(Failure::invalid_input(format!(
            "`packages` has more than {PACKAGES_MAX} names"
        )));
    }
    map.into_iter()
        .map(|(name, version)| {
            let name = package_name(&name)?;
            let Value::String(version) = version else {
                return Err(Failure::invalid_input(format!(
                    "`packages.{name}` must be a version string"
                )));
            };
            let version = package_version(&name, &version)?;
            Ok((name, version))
        })
        .collect()
}

/// A package name by Debian policy (which also covers RPM names in practice): lowercase
/// letters, digits, `+`, `-`, `.`, at least two characters, starting with a letter or digit.
pub(crate) fn package_name(name: &str) -> Result<String, Failure> {
    let valid = name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(Failure::invalid_input(format!(
            "{name:?} is not a valid package name (lowercase letters, digits, '+', '-', '.')"
        )))
    }
}

/// A package version: Debian's `[epoch:]upstream[-revision]` characters.
fn package_version(name: &str, version: &str) -> Result<String, Failure> {
    let valid = !version.is_empty()
        && version.len() <= 128
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c));
    if valid {
        Ok(version.to_owned())
    } else {
        Err(Failure::invalid_input(format!(
            "`packages.{name}`: {version:?} is not a valid version"
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields(value: Value) -> Fields {
        let Value::Object(map) = value else {
            unreachable!("an object literal")
        };
        Fields::new(map, &["scope", "packages", "reboot", "max_duration", "vm"]).expect("known")
    }

    #[test]
    fn package_names_never_carry_shell_or_options() {
        for bad in [
            "curl; rm -rf /",
            "$(id)",
            "-y",
            "--purge",
            "a",
            "Curl",
            "pkg name",
            "x`y`",
        ] {
            let err = package_name(bad).expect_err(bad);
            assert!(
                err.message.contains("is not a valid package name"),
                "{}",
                err.message
            );
            assert!(!err.retryable);
        }
        for good in [
            "openssl",
            "libssl3",
            "g++",
            "python3.11",
            "linux-image-6.1.0-13-amd64",
        ] {
            assert_eq!(package_name(good).expect(good), good);
        }
    }

    #[test]
    fn lists_and_versions_are_checked_item_by_item() {
        let err = package_list(&mut fields(json!({"packages": ["openssl", "a;b"]})))
            .expect_err("bad item");
        assert_eq!(
            err.message,
            "invalid input: \"a;b\" is not a valid package name (lowercase letters, digits, '+', '-', '.')"
        );
        let err = package_versions(&mut fields(json!({"packages": {"openssl": "3.0; reboot"}})))
            .expect_err("bad version");
        assert_eq!(
            err.message,
            "invalid input: `packages.openssl`: \"3.0; reboot\" is not a valid version"
        );
        let ok = package_versions(&mut fields(
            json!({"packages": {"openssl": "1:3.0.11-1~deb12u2"}}),
        ))
        .expect("valid");
        assert_eq!(ok["openssl"], "1:3.0.11-1~deb12u2");
    }

    #[test]
    fn scope_and_reboot_are_closed_sets() {
        assert_eq!(scope(&mut fields(json!({}))).unwrap(), Scope::Security);
        assert_eq!(
            scope(&mut fields(json!({"scope": "all"}))).unwrap(),
            Scope::All
        );
        assert!(scope(&mut fields(json!({"scope": "everything"}))).is_err());
        assert_eq!(
            reboot(&mut fields(json!({"reboot": "if_required"}))).unwrap(),
            Reboot::IfRequired
        );
        assert!(reboot(&mut fields(json!({"reboot": "now"}))).is_err());
    }
}
