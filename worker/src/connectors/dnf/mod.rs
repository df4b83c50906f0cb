//! The dnf backend of `patch.*`: dnf on this host (RHEL, Fedora and relatives).
//!
//! Pending updates come from `dnf check-update` (exit 100: updates listed, 0: none, 1: error),
//! security ones from `dnf check-update --security` (updateinfo advisories of type security).
//! `install` runs `dnf -y upgrade [--security] [NAMES]` and reads what changed back from the
//! rpm database; `verify` compares installed versions with rpm's own ordering. dnf exits 200
//! when another process holds its lock: that failure is retryable.
//!
//! A dry run reads from dnf's cache only (`-C`, no metadata refresh) and changes nothing.
//!
//! [`Settings`] may point dnf at its own configuration file (`-c`: a local mirror's
//! repositories only, say) and at a system image under another root (`--installroot`, with
//! rpm's `--root`): a chroot, a mounted image, a container root. Such a root is never
//! rebooted.

mod parse;

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::apt::parse::{Change, changes};
use super::patch::{Assess, Install, Reboot, Scope, Verify, no_vm, verdict};
use super::{Context, Failure, run, run_checked};
use crate::exec::{self, Command};
use parse::Update;

/// Longest a `dnf check-update` or an rpm query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(600);
/// `dnf check-update`: updates are available.
const UPDATES_AVAILABLE: i32 = 100;
/// dnf could not get its lock.
const LOCK_PROBLEM: i32 = 200;
/// Most packages named in one failure message.
const NAMES_LISTED_MAX: usize = 20;

const CONFIG_VAR: &str = "RIPOSTE_DNF_CONFIG";
const INSTALLROOT_VAR: &str = "RIPOSTE_DNF_INSTALLROOT";

/// Which configuration dnf reads and which system it patches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// dnf's configuration file (`-c`) instead of `/etc/dnf/dnf.conf`.
    pub config: Option<PathBuf>,
    /// The root of the system to patch instead of `/` (`--installroot`, rpm's `--root`).
    pub installroot: Option<PathBuf>,
}

/// The dnf flags of the worker.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "dnf")]
pub struct Flags {
    /// dnf's configuration file instead of /etc/dnf/dnf.conf (absolute path), e.g. one naming
    /// only a local mirror's repositories [env: RIPOSTE_DNF_CONFIG] [default: the system's]
    #[arg(long, value_name = "FILE")]
    dnf_config: Option<PathBuf>,

    /// Patch the system under DIR (a chroot, a mounted image) instead of this host (absolute
    /// path); such a system is never rebooted [env: RIPOSTE_DNF_INSTALLROOT] [default: /]
    #[arg(long, value_name = "DIR")]
    dnf_installroot: Option<PathBuf>,
}

impl Flags {
    /// The settings from the flags, else the environment. Pure.
    pub(crate) fn settings(
        self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Settings, crate::Error> {
        use crate::config::pick_absolute;
        Ok(Settings {
            config: pick_absolute(self.dnf_config, env, CONFIG_VAR, "--dnf-config")?,
            installroot: pick_absolute(
                self.dnf_installroot,
                env,
                INSTALLROOT_VAR,
                "--dnf-installroot",
            )?,
        })
    }
}

impl Settings {
    /// `dnf [-c CONFIG] [--installroot DIR] ARGS`. Pure.
    fn dnf<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Command {
        let mut argv: Vec<String> = Vec::new();
        if let Some(config) = &self.config {
            argv.extend(["-c".to_owned(), config.display().to_string()]);
        }
        if let Some(root) = &self.installroot {
            argv.push(format!("--installroot={}", root.display()));
        }
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Command::new("dnf", argv).timeout(timeout)
    }

    /// `rpm [--root DIR] ARGS`. Pure.
    fn rpm<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut argv: Vec<String> = Vec::new();
        if let Some(root) = &self.installroot {
            argv.extend(["--root".to_owned(), root.display().to_string()]);
        }
        argv.extend(args.iter().map(|a| a.as_ref().to_owned()));
        Command::new("rpm", argv).timeout(QUERY_TIMEOUT)
    }
}

/// See [`super::patch`].
pub(crate) async fn assess(
    settings: &Settings,
    assess: &Assess,
    cx: &Context,
) -> Result<Value, Failure> {
    no_vm(&assess.vm, "dnf")?;
    let pending = pending(settings, assess.scope, cx).await?;
    Ok(json!({
        "backend": "dnf",
        "scope": scope_name(assess.scope),
        "pending": pending.to_json(settings).await?,
        "reboot_required": reboot_required(settings).await,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::patch`].
pub(crate) async fn install(
    settings: &Settings,
    install: &Install,
    cx: &Context,
) -> Result<Value, Failure> {
    install.on_this_host("dnf")?;
    if settings.installroot.is_some() && install.reboot == Reboot::Always {
        return Err(Failure::invalid_input(
            "`reboot: always` cannot apply to a system under --dnf-installroot: it is never \
             rebooted",
        ));
    }
    let pending = pending(settings, install.scope, cx).await?;
    let wanted: BTreeSet<&str> = install.packages.iter().map(String::as_str).collect();
    let selected: Vec<&Update> = pending
        .in_scope
        .iter()
        .filter(|u| wanted.is_empty() || wanted.contains(u.name.as_str()))
        .collect();
    let found: BTreeSet<&str> = selected.iter().map(|u| u.name.as_str()).collect();
    let not_pending: Vec<&str> = wanted.difference(&found).copied().collect();
    let timeout = install.max_duration.min(cx.timeout);
    // Without `packages`, dnf upgrades everything in scope by itself.
    let names: Vec<String> = if wanted.is_empty() {
        Vec::new()
    } else {
        selected.iter().map(|u| u.name.clone()).collect()
    };
    let command = upgrade_command(settings, install.scope, &names, timeout);
    let mut changes_made = Vec::new();
    let mut installed = Vec::new();
    if !selected.is_empty() {
        changes_made.push(command.display());
        if !cx.dry_run {
            installed = upgrade(settings, &command, &selected).await?;
        }
    }
    let reboot_required = reboot_required(settings).await;
    let reboot = match install.reboot {
        Reboot::Never => false,
        Reboot::IfRequired => reboot_required == Some(true),
        Reboot::Always => true,
    };
    if reboot {
        let shutdown = super::apt::reboot_command();
        changes_made.push(shutdown.display());
        if !cx.dry_run {
            run_checked(&shutdown, dnf_failed).await?;
        }
    }
    Ok(json!({
        "backend": "dnf",
        "scope": scope_name(install.scope),
        "installed": installed,
        "would_install": if cx.dry_run { pending_json(&selected) } else { Vec::new() },
        "not_pending": not_pending,
        "reboot_required": reboot_required,
        "rebooted": reboot && !cx.dry_run,
        "changes": changes_made,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::patch`].
pub(crate) async fn verify(
    settings: &Settings,
    verify: &Verify,
    cx: &Context,
) -> Result<Value, Failure> {
    no_vm(&verify.vm, "dnf")?;
    let pending = pending(settings, verify.scope, cx).await?;
    let names: Vec<String> = verify.packages.keys().cloned().collect();
    let versions: BTreeMap<String, String> = rpm_query(settings, &names)
        .await?
        .into_iter()
        .map(|((name, _), version)| (name, version))
        .collect();
    let mut problems = Vec::new();
    for (name, required) in &verify.packages {
        match versions.get(name) {
            None => problems.push(format!("{name} is not installed ({required} required)")),
            Some(version) if parse::compare_evr(version, required) == Ordering::Less => {
                problems.push(format!("{name} is at {version}, {required} required"));
            }
            Some(_) => {}
        }
    }
    if !pending.in_scope.is_empty() {
        let names: Vec<String> = pending
            .in_scope
            .iter()
            .map(|u| format!("{} ({})", u.name, u.candidate))
            .collect();
        problems.push(format!(
            "{} update(s) pending in scope {}: {}",
            names.len(),
            scope_name(verify.scope),
            listed(&names)
        ));
    }
    let pending: Vec<String> = pending
        .in_scope
        .iter()
        .map(|u| format!("{} ({})", u.name, u.candidate))
        .collect();
    let output = json!({
        "backend": "dnf",
        "scope": scope_name(verify.scope),
        "pending": pending,
        "packages": versions,
        "reboot_required": reboot_required(settings).await,
    });
    verdict(cx, "not patched", problems, output)
}

/// The updates `check-update` lists, those in scope, and which of them are security updates.
struct PendingUpdates {
    in_scope: Vec<Update>,
    security: BTreeSet<(String, String)>,
}

impl PendingUpdates {
    /// The `pending` list with each package's installed version.
    async fn to_json(&self, settings: &Settings) -> Result<Vec<Value>, Failure> {
        let names: Vec<String> = self.in_scope.iter().map(|u| u.name.clone()).collect();
        let current = rpm_query(settings, &names).await?;
        Ok(self
            .in_scope
            .iter()
            .map(|u| {
                let key = (u.name.clone(), u.arch.clone());
                u.to_json(current.get(&key), self.security.contains(&key))
            })
            .collect())
    }
}

fn pending_json(updates: &[&Update]) -> Vec<Value> {
    updates.iter().map(|u| u.to_json(None, false)).collect()
}

/// `dnf check-update` in scope; for the `all` scope also the security listing, to classify.
async fn pending(
    settings: &Settings,
    scope: Scope,
    cx: &Context,
) -> Result<PendingUpdates, Failure> {
    let timeout = QUERY_TIMEOUT.min(cx.timeout);
    let security = check_update(settings, true, cx.dry_run, timeout).await?;
    let security_keys = security
        .iter()
        .map(|u| (u.name.clone(), u.arch.clone()))
        .collect();
    let in_scope = match scope {
        Scope::Security => security,
        Scope::All => check_update(settings, false, cx.dry_run, timeout).await?,
    };
    Ok(PendingUpdates {
        in_scope,
        security: security_keys,
    })
}

/// `dnf -q check-update [--security]`, refreshing metadata unless `cache_only`.
fn check_update_command(
    settings: &Settings,
    security: bool,
    cache_only: bool,
    timeout: Duration,
) -> Command {
    let mut args = vec![
        "-q",
        if cache_only { "-C" } else { "--refresh" },
        "check-update",
    ];
    if security {
        args.push("--security");
    }
    settings.dnf(&args, timeout)
}

async fn check_update(
    settings: &Settings,
    security: bool,
    cache_only: bool,
    timeout: Duration,
) -> Result<Vec<Update>, Failure> {
    let command = check_update_command(settings, security, cache_only, timeout);
    let output = run(&command).await?;
    match output.code {
        Some(0) => Ok(Vec::new()),
        Some(UPDATES_AVAILABLE) => parse::check_update(&output.stdout).map_err(Failure::permanent),
        _ => Err(dnf_failed(&command, &output)),
    }
}

/// `dnf -y upgrade [--security] [NAMES]` (names are validated package names, never options).
fn upgrade_command(
    settings: &Settings,
    scope: Scope,
    names: &[String],
    timeout: Duration,
) -> Command {
    let mut args: Vec<String> = vec!["-y".into(), "upgrade".into()];
    if scope == Scope::Security {
        args.push("--security".into());
    }
    args.extend(names.iter().cloned());
    settings.dnf(&args, timeout)
}

/// Runs the upgrade and reads back what changed; every selected update must have landed.
async fn upgrade(
    settings: &Settings,
    command: &Command,
    selected: &[&Update],
) -> Result<Vec<Value>, Failure> {
    let before = rpm_all(settings).await?;
    let output = run(command).await?;
    if !output.success() {
        return Err(dnf_failed(command, &output));
    }
    let after = rpm_all(settings).await?;
    let missed: Vec<String> = selected
        .iter()
        .filter(|u| after.get(&(u.name.clone(), u.arch.clone())) != Some(&u.candidate))
        .map(|u| format!("{} ({})", u.name, u.candidate))
        .collect();
    if !missed.is_empty() {
        return Err(Failure::permanent(format!(
            "`{}` exited 0 but these packages are not at their candidate: {}",
            command.display(),
            listed(&missed)
        )));
    }
    Ok(changes(&before, &after)
        .iter()
        .map(Change::to_json)
        .collect())
}

/// Every installed package.
async fn rpm_all(settings: &Settings) -> Result<BTreeMap<(String, String), String>, Failure> {
    let command = settings.rpm(&["-qa", "--qf", parse::RPM_QUERY_FORMAT]);
    let output = run_checked(&command, dnf_failed).await?;
    Ok(parse::rpm_listing(&output.stdout))
}

/// The installed instances of `names` (rpm exits 1 when one is not installed).
async fn rpm_query(
    settings: &Settings,
    names: &[String],
) -> Result<BTreeMap<(String, String), String>, Failure> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let args: Vec<String> = ["-q", "--qf", parse::RPM_QUERY_FORMAT]
        .into_iter()
        .map(str::to_owned)
        .chain(names.iter().cloned())
        .collect();
    let command = settings.rpm(&args);
    let output = run(&command).await?;
    if !matches!(output.code, Some(0 | 1)) {
        return Err(dnf_failed(&command, &output));
    }
    Ok(parse::rpm_listing(&output.stdout))
}

/// `needs-restarting -r` (dnf-utils): exit 1 means a reboot is needed; `None` when it cannot
/// tell (not installed, or a system under an install root, which is not running).
async fn reboot_required(settings: &Settings) -> Option<bool> {
    if settings.installroot.is_some() {
        return None;
    }
    let command = Command::new("needs-restarting", ["-r"]).timeout(QUERY_TIMEOUT);
    match run(&command).await.ok()?.code {
        Some(0) => Some(false),
        Some(1) => Some(true),
        _ => None,
    }
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Security => "security",
        Scope::All => "all",
    }
}

fn listed(entries: &[String]) -> String {
    let mut text = entries
        .iter()
        .take(NAMES_LISTED_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > NAMES_LISTED_MAX {
        text.push_str(&format!(" and {} more", entries.len() - NAMES_LISTED_MAX));
    }
    text
}

/// A failed dnf or rpm command: retryable on a lock problem (exit 200), permanent otherwise.
fn dnf_failed(command: &Command, output: &exec::Output) -> Failure {
    let code = output
        .code
        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
    let message = format!(
        "`{}` exited with {code}: {}",
        command.display(),
        output.first_line()
    );
    if output.code == Some(LOCK_PROBLEM) {
        Failure::retryable(message)
    } else {
        Failure::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let timeout = Duration::from_secs(1);
        let host = Settings::default();
        assert_eq!(
            check_update_command(&host, true, false, timeout).display(),
            "dnf -q --refresh check-update --security"
        );
        assert_eq!(
            check_update_command(&host, false, true, timeout).display(),
            "dnf -q -C check-update"
        );
        let names = ["openssl".to_owned(), "kernel".to_owned()];
        assert_eq!(
            upgrade_command(&host, Scope::Security, &names, timeout).display(),
            "dnf -y upgrade --security openssl kernel"
        );
        assert_eq!(
            upgrade_command(&host, Scope::All, &[], timeout).display(),
            "dnf -y upgrade"
        );
        assert_eq!(host.rpm(&["-qa"]).display(), "rpm -qa");

        let image = Settings {
            config: Some("/etc/riposte/dnf.conf".into()),
            installroot: Some("/srv/image".into()),
        };
        assert_eq!(
            upgrade_command(&image, Scope::All, &[], timeout).display(),
            "dnf -c /etc/riposte/dnf.conf --installroot=/srv/image -y upgrade"
        );
        assert_eq!(image.rpm(&["-qa"]).display(), "rpm --root /srv/image -qa");
    }

    #[test]
    fn lock_problems_are_retryable() {
        let command = Command::new("dnf", ["-y", "upgrade"]);
        let output = |code| exec::Output {
            code: Some(code),
            stdout: String::new(),
            stderr: "Error: lock held\n".into(),
        };
        assert!(dnf_failed(&command, &output(LOCK_PROBLEM)).retryable);
        let failure = dnf_failed(&command, &output(1));
        assert!(!failure.retryable);
        assert_eq!(
            failure.message,
            "`dnf -y upgrade` exited with code 1: Error: lock held"
        );
    }
}
