//! A throwaway apt repository on the local file system, for end-to-end tests of the apt
//! backend: one tiny package (a unique name, one file under `/usr/share/<name>/`) built in
//! several versions with `dpkg-deb --build`, indexed with `dpkg-scanpackages`, described by a
//! Release file (so that `apt-get -s` names its label and suite) and served as
//! `deb [trusted=yes] file:/... ./`. Nothing leaves the machine.
//!
//! Packages installed through [`AptRepo::install`] are purged when the repository is dropped,
//! also when the test fails. Every dpkg operation goes through `apt-get` with a lock timeout,
//! because several tests (and the workers they start) share the machine's dpkg database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempfile::TempDir;

/// How long a test's apt-get waits for the dpkg lock, in seconds.
const LOCK_TIMEOUT_SECS: u32 = 300;

/// A file-based apt repository of one package.
pub struct AptRepo {
    dir: TempDir,
    package: String,
    installed: bool,
}

/// A package name unique to this test process and call: `prefix`, the pid and a counter.
pub fn unique_package(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

impl AptRepo {
    /// Builds `package` in each of `versions` and indexes them; the Release file names
    /// `label` and `suite` (a suite ending in `-security` makes them security updates).
    pub fn build(package: &str, versions: &[&str], label: &str, suite: &str) -> AptRepo {
        let dir = tempfile::Builder::new()
            .prefix(&format!("riposte-apt-{package}-"))
            .tempdir()
            .expect("a temporary folder");
        // apt's download sandbox user must be able to read the repository.
        make_readable(dir.path());
        let repo = AptRepo {
            dir,
            package: package.to_owned(),
            installed: false,
        };
        std::fs::create_dir(repo.pool()).expect("the pool folder");
        for version in versions {
            repo.build_deb(version);
        }
        repo.index(label, suite);
        let line = format!("deb [trusted=yes] file:{} ./\n", repo.pool().display());
        std::fs::write(repo.sources(), line).expect("the sources list");
        repo
    }

    /// The package's name.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// A sources list naming only this repository (for `--apt-sources`).
    pub fn sources(&self) -> PathBuf {
        self.dir.path().join("sources.list")
    }

    /// A fresh folder for apt's lists and caches (for `--apt-state-dir`), one per worker.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("state-{name}"));
        std::fs::create_dir_all(&dir).expect("a state folder");
        make_readable(&dir);
        dir
    }

    /// The built `.deb` of `version`.
    pub fn deb(&self, version: &str) -> PathBuf {
        self.pool()
            .join(format!("{}_{version}_all.deb", self.package))
    }

    /// Installs `version` from its `.deb` (waiting for the dpkg lock); the package is purged
    /// when the repository is dropped.
    pub fn install(&mut self, version: &str) {
        self.installed = true;
        let deb = self.deb(version);
        let deb = deb.to_str().expect("a UTF-8 path");
        self.apt_get(&["-y", "install", deb])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            installed_version(&self.package).as_deref(),
            Some(version),
            "{} {version} is installed",
            self.package
        );
    }

    /// Removes the package and its files.
    pub fn purge(&self) -> Result<(), String> {
        self.apt_get(&["-y", "purge", &self.package])
    }

    /// The worker arguments that point its apt backend at this repository, with the private
    /// state folder `state`.
    pub fn worker_args(&self, state: &Path) -> Vec<String> {
        vec![
            "--patch-backend".into(),
            "apt".into(),
            "--apt-sources".into(),
            self.sources().display().to_string(),
            "--apt-state-dir".into(),
            state.display().to_string(),
        ]
    }

    fn pool(&self) -> PathBuf {
        self.dir.path().join("pool")
    }

    fn build_deb(&self, version: &str) {
        let root = self.dir.path().join(format!("build-{version}"));
        let share = root.join("usr/share").join(&self.package);
        std::fs::create_dir_all(root.join("DEBIAN")).expect("DEBIAN");
        std::fs::create_dir_all(&share).expect("usr/share");
        std::fs::write(share.join("version"), format!("{version}\n")).expect("payload");
        let control = format!(
            "Package: {}\nVersion: {version}\nArchitecture: all\nMaintainer: Riposte tests \
             <tests@example.invalid>\nSection: misc\nPriority: optional\nDescription: throwaway \
             package of a Riposte end-to-end test\n",
            self.package
        );
        std::fs::write(root.join("DEBIAN/control"), control).expect("control");
        let mut command = Command::new("dpkg-deb");
        command
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(self.deb(version));
        run(&mut command).unwrap_or_else(|e| panic!("{e}"));
    }

    fn index(&self, label: &str, suite: &str) {
        let output = Command::new("dpkg-scanpackages")
            .args(["--multiversion", ".", "/dev/null"])
            .current_dir(self.pool())
            .output()
            .expect("dpkg-scanpackages runs (package dpkg-dev)");
        assert!(output.status.success(), "dpkg-scanpackages: {output:?}");
        std::fs::write(self.pool().join("Packages"), &output.stdout).expect("Packages");
        let release = format!(
            "Origin: {label}\nLabel: {label}\nSuite: {suite}\nCodename: {suite}\n\
             Architectures: all\nDescription: throwaway repository of a Riposte test\n"
        );
        std::fs::write(self.pool().join("Release"), release).expect("Release");
    }

    /// apt-get with this repository only and its own lists, waiting for the dpkg lock.
    /// Runs `apt-get update` for the worker state folder `state`, as an operator would have
    /// before a dry run (a dry run reads the lists it finds and never updates them).
    pub fn update_lists(&self, state: &Path) {
        self.apt_get_in(state, &["update"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn apt_get(&self, args: &[&str]) -> Result<(), String> {
        self.apt_get_in(&self.state_dir("harness"), args)
    }

    fn apt_get_in(&self, state: &Path, args: &[&str]) -> Result<(), String> {
        for sub in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(state.join(sub)).expect("apt folders");
        }
        let options = [
            format!("DPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"),
            format!("Dir::Etc::SourceList={}", self.sources().display()),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            format!("Dir::State::Lists={}", state.join("lists").display()),
            format!("Dir::Cache={}", state.join("cache").display()),
        ];
        let mut command = Command::new("apt-get");
        command.env("DEBIAN_FRONTEND", "noninteractive").arg("-q");
        for option in &options {
            command.args(["-o", option]);
        }
        run(command.args(args))
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        if self.installed
            && let Err(e) = self.purge()
        {
            eprintln!("cleanup: {e}");
        }
    }
}

/// The installed version of `package`, `None` when it is not installed.
pub fn installed_version(package: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}\t${db:Status-Abbrev}", "--", package])
        .output()
        .expect("dpkg-query runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (version, status) = text.split_once('\t')?;
    status.starts_with("ii").then(|| version.to_owned())
}

fn make_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Runs `command`; an error describes a failure to start or a non-zero exit.
fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{command:?} cannot start: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}
