//! The apt backend of `patch.*`: apt-get on this host.
//!
//! Every command is an explicit `apt-get` argv with `DEBIAN_FRONTEND=noninteractive` and
//! `-o DPkg::Lock::Timeout=...` (workers on one machine share its dpkg database and wait for
//! each other). `apt-get update` does not honour that timeout for its lists lock, so it is
//! retried here while the lock is held, up to the same timeout.
//!
//! Pending updates are those of `apt-get -s upgrade`: upgrades of installed packages that need
//! no removal (held-back packages are not pending). An update is a security update when its
//! candidate comes from a security repository (label `Debian-Security` or a `*-security`
//! suite). `install` upgrades exactly the pending packages in scope with
//! `apt-get install --only-upgrade --no-remove`, so it never installs a package that was not
//! there (besides new dependencies) and never removes one; what changed is read back from the
//! dpkg database, not from apt's messages.
//!
//! A dry run runs only `apt-get -s`: it does not refresh the package lists (that would change
//! them) and reports what it would install.

pub(crate) mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::patch::{Assess, Install, Reboot, Scope, Verify, no_vm, verdict};
use super::{Context, Failure, run, run_checked};
use crate::clock;
use crate::exec::{self, Command};
use parse::{Instance, Pending};

/// How long a command waits for the dpkg lock (or the lists lock) unless configured.
const LOCK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// Longest `apt-get update` may take.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest a simulation or a dpkg query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause between two `apt-get update` attempts while another holds the lists lock.
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Most packages named in one failure message.
const NAMES_LISTED_MAX: usize = 20;
/// Present when a package asks for a reboot (Debian's update-notifier convention).
const REBOOT_REQUIRED_FILE: &str = "/run/reboot-required";
/// The delay `shutdown -r` is given, so that the result is reported before the host goes down.
const REBOOT_DELAY: &str = "+1";

const SOURCES_VAR: &str = "RIPOSTE_APT_SOURCES";
const STATE_DIR_VAR: &str = "RIPOSTE_APT_STATE_DIR";
const LOCK_TIMEOUT_VAR: &str = "RIPOSTE_APT_LOCK_TIMEOUT";

/// Where apt looks for packages and keeps its lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A sources list used instead of the system's (`/etc/apt/sources.list` and
    /// `sources.list.d` are then ignored). Requires `state_dir`.
    pub sources: Option<PathBuf>,
    /// A folder for apt's package lists and caches (`lists/`, `cache/`) instead of the system's,
    /// so that a private sources list does not replace the system's lists.
    pub state_dir: Option<PathBuf>,
    /// How long a command waits for the dpkg lock or the lists lock.
    pub lock_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            sources: None,
            state_dir: None,
            lock_timeout: LOCK_TIMEOUT_DEFAULT,
        }
    }
}

/// The apt flags of the worker.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "apt")]
pub struct Flags {
    /// A sources list apt uses instead of the system's (absolute path); needs --apt-state-dir
    /// [env: RIPOSTE_APT_SOURCES] [default: the system's]
    #[arg(long, value_name = "FILE")]
    apt_sources: Option<PathBuf>,

    /// A folder for apt's package lists and caches instead of the system's (absolute path)
    /// [env: RIPOSTE_APT_STATE_DIR] [default: the system's]
    #[arg(long, value_name = "DIR")]
    apt_state_dir: Option<PathBuf>,

    /// How long apt waits for the dpkg lock and the lists lock, e.g. `2m` [env:
    /// RIPOSTE_APT_LOCK_TIMEOUT] [default: 2m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    apt_lock_timeout: Option<Duration>,
}

impl Flags {
    /// The settings from the flags, else the environment, else the defaults. Pure.
    pub(crate) fn settings(
        self,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<Settings, crate::Error> {
        use crate::config::{pick, pick_absolute};
        let sources = pick_absolute(self.apt_sources, env, SOURCES_VAR, "--apt-sources")?;
        let state_dir = pick_absolute(self.apt_state_dir, env, STATE_DIR_VAR, "--apt-state-dir")?;
        let lock_timeout = pick(self.apt_lock_timeout, env, LOCK_TIMEOUT_VAR, parse_duration)?
            .unwrap_or(LOCK_TIMEOUT_DEFAULT);
        let settings = Settings {
            sources,
            state_dir,
            lock_timeout,
        };
        settings.validate().map_err(crate::Error::Config)?;
        Ok(settings)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

impl Settings {
    /// A private sources list needs a private state folder (the paths are absolute, see
    /// [`crate::config::pick_absolute`]).
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.sources.is_some() && self.state_dir.is_none() {
            return Err(
                "--apt-sources needs --apt-state-dir, or apt-get update would replace the \
                 system's package lists"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The `-o` options every apt-get command gets. Pure.
    fn options(&self) -> Vec<String> {
        let mut options = vec![format!(
            "DPkg::Lock::Timeout={}",
            self.lock_timeout.as_secs()
        )];
        if let Some(sources) = &self.sources {
            options.push(format!("Dir::Etc::SourceList={}", sources.display()));
            options.push("Dir::Etc::SourceParts=/dev/null".to_owned());
        }
        if let Some(dir) = &self.state_dir {
            options.push(format!("Dir::State::Lists={}", dir.join("lists").display()));
            options.push(format!("Dir::Cache={}", dir.join("cache").display()));
        }
        options
            .into_iter()
            .flat_map(|o| ["-o".to_owned(), o])
            .collect()
    }

    /// `apt-get -q OPTIONS ARGS`, non-interactive. Pure.
    fn apt_get<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Command {
        let argv = ["-q".to_owned()]
            .into_iter()
            .chain(self.options())
            .chain(args.iter().map(|a| a.as_ref().to_owned()));
        Command::new("apt-get", argv)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .timeout(timeout)
    }

    /// The upgrade of exactly `names`, never removing a package, keeping changed conffiles.
    fn install_command(&self, names: &[String], simulate: bool, timeout: Duration) -> Command {
        let mut args: Vec<String> = if simulate {
            vec!["-s".into()]
        } else {
            ["-y", "-o", "Dpkg::Options::=--force-confdef"]
                .into_iter()
                .chain(["-o", "Dpkg::Options::=--force-confold"])
                .map(str::to_owned)
                .collect()
        };
        args.extend(["--no-remove", "install", "--only-upgrade", "--"].map(str::to_owned));
        args.extend(names.iter().cloned());
        self.apt_get(&args, timeout)
    }
}

/// See [`super::patch`].
pub(crate) async fn assess(
    settings: &Settings,
    assess: &Assess,
    cx: &Context,
) -> Result<Value, Failure> {
    no_vm(&assess.vm, "apt")?;
    if !cx.dry_run {
        update(settings, cx).await?;
    }
    let pending = pending(settings, assess.scope, cx).await?;
    Ok(json!({
        "backend": "apt",
        "scope": scope_name(assess.scope),
        "pending": pending.iter().map(Pending::to_json).collect::<Vec<_>>(),
        "reboot_required": reboot_required(),
        "lists_updated": !cx.dry_run,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::patch`].
pub(crate) async fn install(
    settings: &Settings,
    install: &Install,
    cx: &Context,
) -> Result<Value, Failure> {
    install.on_this_host("apt")?;
    if !cx.dry_run {
        update(settings, cx).await?;
    }
    let in_scope = pending(settings, install.scope, cx).await?;
    let (selected, not_pending) = select(&in_scope, &install.packages);
    let names: Vec<String> = selected.iter().map(|p| p.name.clone()).collect();
    let timeout = install.max_duration.min(cx.timeout);
    let command = settings.install_command(&names, cx.dry_run, timeout);
    let mut changes = Vec::new();
    let mut installed = Vec::new();
    let mut would_install = Vec::new();
    if !names.is_empty() {
        changes.push(settings.install_command(&names, false, timeout).display());
        if cx.dry_run {
            let output = run_checked(&command, apt_failed).await?;
            let simulation = parse::simulation(&output.stdout).map_err(Failure::permanent)?;
            would_install = simulation.pending.iter().map(Pending::to_json).collect();
        } else {
            installed = upgrade(&command, &selected).await?;
        }
    }
    let reboot_required = reboot_required();
    let reboot = match install.reboot {
        Reboot::Never => false,
        Reboot::IfRequired => reboot_required,
        Reboot::Always => true,
    };
    if reboot {
        let shutdown = reboot_command();
        changes.push(shutdown.display());
        if !cx.dry_run {
            run_checked(&shutdown, apt_failed).await?;
        }
    }
    Ok(json!({
        "backend": "apt",
        "scope": scope_name(install.scope),
        "installed": installed,
        "would_install": would_install,
        "not_pending": not_pending,
        "reboot_required": reboot_required,
        "rebooted": reboot && !cx.dry_run,
        "reboot_scheduled": (reboot && !cx.dry_run).then_some("in 1 minute"),
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::patch`].
pub(crate) async fn verify(
    settings: &Settings,
    verify: &Verify,
    cx: &Context,
) -> Result<Value, Failure> {
    no_vm(&verify.vm, "apt")?;
    if !cx.dry_run {
        update(settings, cx).await?;
    }
    let pending = pending(settings, verify.scope, cx).await?;
    let names: Vec<String> = verify.packages.keys().cloned().collect();
    let versions = installed_versions(&names).await?;
    let mut problems = Vec::new();
    for (name, required) in &verify.packages {
        match versions.get(name) {
            None => problems.push(format!("{name} is not installed ({required} required)")),
            Some(version) if !version_at_least(version, required).await? => {
                problems.push(format!("{name} is at {version}, {required} required"));
            }
            Some(_) => {}
        }
    }
    if !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(describe_pending).collect();
        problems.push(format!(
            "{} update(s) pending in scope {}: {}",
            pending.len(),
            scope_name(verify.scope),
            listed(&names)
        ));
    }
    let output = json!({
        "backend": "apt",
        "scope": scope_name(verify.scope),
        "pending": pending.iter().map(describe_pending).collect::<Vec<_>>(),
        "packages": versions,
        "reboot_required": reboot_required(),
        "lists_updated": !cx.dry_run,
    });
    verdict(cx, "not patched", problems, output)
}

/// The apt backend acts on this host only.
fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Security => "security",
        Scope::All => "all",
    }
}

/// The pending updates in `scope`, from `apt-get -s upgrade`.
async fn pending(settings: &Settings, scope: Scope, cx: &Context) -> Result<Vec<Pending>, Failure> {
    let command = settings.apt_get(&["-s", "upgrade"], QUERY_TIMEOUT.min(cx.timeout));
    let output = run_checked(&command, apt_failed).await?;
    let simulation = parse::simulation(&output.stdout).map_err(Failure::permanent)?;
    Ok(in_scope(simulation.pending, scope))
}

/// Keeps the updates in `scope`. Pure.
fn in_scope(pending: Vec<Pending>, scope: Scope) -> Vec<Pending> {
    match scope {
        Scope::All => pending,
        Scope::Security => pending.into_iter().filter(Pending::security).collect(),
    }
}

/// The pending updates to install: those named in `packages` (all when it is empty), and the
/// named packages that have no pending update in scope. Pure.
fn select(pending: &[Pending], packages: &[String]) -> (Vec<Pending>, Vec<String>) {
    if packages.is_empty() {
        return (pending.to_vec(), Vec::new());
    }
    let wanted: BTreeSet<&str> = packages.iter().map(String::as_str).collect();
    let base = |p: &Pending| p.name.split(':').next().unwrap_or_default().to_owned();
    let selected: Vec<Pending> = pending
        .iter()
        .filter(|p| wanted.contains(p.name.as_str()) || wanted.contains(base(p).as_str()))
        .cloned()
        .collect();
    let found: BTreeSet<String> = selected
        .iter()
        .flat_map(|p| [p.name.clone(), base(p)])
        .collect();
    let not_pending = wanted
        .into_iter()
        .filter(|name| !found.contains(*name))
        .map(str::to_owned)
        .collect();
    (selected, not_pending)
}

/// Runs the install and reads back what changed; every selected package must have reached
/// its candidate.
async fn upgrade(command: &Command, selected: &[Pending]) -> Result<Vec<Value>, Failure> {
    let before = dpkg_listing().await?;
    let output = run(command).await.map_err(|failure| {
        Failure::permanent(format!(
            "{failure} (an interrupted dpkg may need `dpkg --configure -a`)"
        ))
    })?;
    if !output.success() {
        return Err(apt_failed(command, &output));
    }
    let after = dpkg_listing().await?;
    let changes = parse::changes(&before, &after);
    let missed: Vec<String> = selected
        .iter()
        .filter(|p| !reached(&after, p))
        .map(describe_pending)
        .collect();
    if !missed.is_empty() {
        return Err(Failure::permanent(format!(
            "`{}` exited 0 but these packages are not at their candidate: {}",
            command.display(),
            listed(&missed)
        )));
    }
    Ok(changes.iter().map(parse::Change::to_json).collect())
}

/// The package is installed at its candidate version. Pure.
fn reached(listing: &BTreeMap<Instance, String>, pending: &Pending) -> bool {
    let name = pending.name.split(':').next().unwrap_or_default();
    let key = (name.to_owned(), pending.arch.clone());
    listing.get(&key) == Some(&pending.candidate)
}

fn describe_pending(pending: &Pending) -> String {
    let current = pending.current.as_deref().unwrap_or("none");
    format!("{} ({current} -> {})", pending.name, pending.candidate)
}

/// At most [`NAMES_LISTED_MAX`] entries, then how many more.
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

/// `apt-get update`, retried while another process holds the lists lock (apt-get does not
/// wait for that lock by itself), up to the lock timeout.
async fn update(settings: &Settings, cx: &Context) -> Result<(), Failure> {
    if let Some(dir) = &settings.state_dir {
        make_state_dir(dir)?;
    }
    let command = settings.apt_get(&["update"], UPDATE_TIMEOUT.min(cx.timeout));
    let deadline = clock::monotonic() + settings.lock_timeout;
    loop {
        let output = run(&command).await?;
        if output.success() {
            return Ok(());
        }
        if !lock_held(&output) || clock::monotonic() >= deadline {
            let failure = apt_failed(&command, &output);
            return Err(Failure::retryable(failure.message));
        }
        tokio::time::sleep(LOCK_RETRY_PAUSE).await;
    }
}

/// The private lists and cache folders with the `partial` subfolders apt expects (a few
/// local `mkdir`s, done in place).
fn make_state_dir(dir: &Path) -> Result<(), Failure> {
    for sub in ["lists/partial", "cache/archives/partial"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure::permanent(format!("cannot create {}: {e}", path.display())))?;
    }
    Ok(())
}

/// apt or dpkg could not get a lock (another package operation is running).
fn lock_held(output: &exec::Output) -> bool {
    output.stderr.contains("Could not get lock") || output.stderr.contains("Unable to acquire")
}

/// Every installed package instance and its version.
async fn dpkg_listing() -> Result<BTreeMap<Instance, String>, Failure> {
    let command = Command::new(
        "dpkg-query",
        ["-W".to_owned(), format!("-f={}", parse::DPKG_QUERY_FORMAT)],
    )
    .timeout(QUERY_TIMEOUT);
    let output = run_checked(&command, apt_failed).await?;
    Ok(parse::installed(&output.stdout))
}

/// The installed version of each of `names` that is installed (one per name; for a package
/// installed for several architectures, the versions are equal by Multi-Arch rules).
async fn installed_versions(names: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let args = ["-W".to_owned(), format!("-f={}", parse::DPKG_QUERY_FORMAT)]
        .into_iter()
        .chain(["--".to_owned()])
        .chain(names.iter().cloned());
    let command = Command::new("dpkg-query", args).timeout(QUERY_TIMEOUT);
    // Exit 1 when some name is unknown; the known ones are still listed.
    let output = run(&command).await?;
    if !matches!(output.code, Some(0 | 1)) {
        return Err(apt_failed(&command, &output));
    }
    Ok(parse::installed(&output.stdout)
        .into_iter()
        .map(|((name, _), version)| (name, version))
        .collect())
}

/// `dpkg --compare-versions VERSION ge REQUIRED`.
async fn version_at_least(version: &str, required: &str) -> Result<bool, Failure> {
    let command = Command::new("dpkg", ["--compare-versions", version, "ge", required])
        .timeout(QUERY_TIMEOUT);
    let output = run(&command).await?;
    match output.code {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(apt_failed(&command, &output)),
    }
}

/// A package asked for a reboot (one local `stat`, done in place).
pub(crate) fn reboot_required() -> bool {
    Path::new(REBOOT_REQUIRED_FILE).exists()
}

/// `shutdown -r +1 MESSAGE`: the result is reported before the host goes down.
pub(crate) fn reboot_command() -> Command {
    Command::new(
        "shutdown",
        [
            "-r",
            REBOOT_DELAY,
            "riposte patch.install: rebooting after updates",
        ],
    )
}

/// A failed apt or dpkg command: retryable when a lock was held, permanent otherwise. The
/// message is the first `E:` line when there is one.
fn apt_failed(command: &Command, output: &exec::Output) -> Failure {
    let code = output
        .code
        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
    let detail = output
        .stderr
        .lines()
        .find(|l| l.starts_with("E: "))
        .unwrap_or_else(|| output.first_line());
    let message = format!("`{}` exited with {code}: {detail}", command.display());
    if lock_held(output) {
        Failure::retryable(message)
    } else {
        Failure::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private() -> Settings {
        Settings {
            sources: Some("/srv/repo/sources.list".into()),
            state_dir: Some("/var/lib/riposte/apt".into()),
            lock_timeout: Duration::from_secs(120),
        }
    }

    #[test]
    fn argv_is_explicit_and_non_interactive() {
        let command =
            private().install_command(&["rip-demo".into()], false, Duration::from_secs(60));
        assert_eq!(
            command.display(),
            "apt-get -q -o DPkg::Lock::Timeout=120 -o Dir::Etc::SourceList=/srv/repo/sources.list \
             -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=/var/lib/riposte/apt/lists \
             -o Dir::Cache=/var/lib/riposte/apt/cache -y -o Dpkg::Options::=--force-confdef \
             -o Dpkg::Options::=--force-confold --no-remove install --only-upgrade -- rip-demo"
        );
        assert_eq!(
            command.env,
            [("DEBIAN_FRONTEND".to_owned(), "noninteractive".to_owned())]
        );
        let command =
            Settings::default().install_command(&["a1".into()], true, Duration::from_secs(1));
        assert_eq!(
            command.display(),
            "apt-get -q -o DPkg::Lock::Timeout=120 -s --no-remove install --only-upgrade -- a1"
        );
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(private().validate(), Ok(()));
        assert_eq!(Settings::default().validate(), Ok(()));
        let lists_missing = Settings {
            state_dir: None,
            ..private()
        };
        assert!(
            lists_missing
                .validate()
                .unwrap_err()
                .contains("--apt-state-dir")
        );
    }

    #[test]
    fn flags_then_environment_then_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            apt: Flags,
        }
        let env = std::collections::HashMap::from([
            (SOURCES_VAR.to_owned(), "/env/sources.list".to_owned()),
            (STATE_DIR_VAR.to_owned(), "/env/state".to_owned()),
            (LOCK_TIMEOUT_VAR.to_owned(), "5s".to_owned()),
        ]);
        let cli = Cli::parse_from(["x", "--apt-sources", "/flag/sources.list"]);
        let settings = cli.apt.settings(&env).unwrap();
        assert_eq!(settings.sources, Some("/flag/sources.list".into()));
        assert_eq!(settings.state_dir, Some("/env/state".into()));
        assert_eq!(settings.lock_timeout, Duration::from_secs(5));
        let none = Cli::parse_from(["x"])
            .apt
            .settings(&Default::default())
            .unwrap();
        assert_eq!(none, Settings::default());
        let only_sources = std::collections::HashMap::from([(
            SOURCES_VAR.to_owned(),
            "/env/sources.list".to_owned(),
        )]);
        assert!(Cli::parse_from(["x"]).apt.settings(&only_sources).is_err());
    }

    fn pending(name: &str, security: bool) -> Pending {
        let suite = if security {
            "stable-security"
        } else {
            "stable"
        };
        let arch = name.split_once(':').map_or("amd64", |(_, arch)| arch);
        parse::simulation(&format!("Inst {name} [1] (2 Debian:12/{suite} [{arch}])"))
            .unwrap()
            .pending
            .remove(0)
    }

    #[test]
    fn scope_and_selection() {
        let all = vec![
            pending("a1", true),
            pending("b1", false),
            pending("c1:i386", true),
        ];
        let security = in_scope(all.clone(), Scope::Security);
        let names: Vec<&str> = security.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a1", "c1:i386"]);
        assert_eq!(in_scope(all.clone(), Scope::All).len(), 3);
        let (selected, not_pending) = select(&security, &[]);
        assert_eq!((selected.len(), not_pending.len()), (2, 0));
        let wanted = ["c1".to_owned(), "b1".to_owned(), "zz".to_owned()];
        let (selected, not_pending) = select(&security, &wanted);
        assert_eq!(selected.len(), 1);
        assert_eq!(selected[0].name, "c1:i386");
        assert_eq!(not_pending, ["b1", "zz"], "b1 is pending, but not in scope");
    }

    #[test]
    fn candidate_reached_by_name_and_arch() {
        let p = pending("c1:i386", true);
        let mut listing = BTreeMap::new();
        listing.insert(("c1".to_owned(), "amd64".to_owned()), "2".to_owned());
        assert!(!reached(&listing, &p), "another architecture");
        let p = pending("c1", true);
        assert!(reached(&listing, &p));
    }

    #[test]
    fn long_lists_are_cut() {
        let names: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
        let text = listed(&names);
        assert!(text.ends_with("p19 and 5 more"), "{text}");
    }
}
