//! A throwaway dnf repository and system root on the local file system, for end-to-end tests
//! of the dnf backend: one tiny noarch package built in several versions with `rpmbuild`,
//! indexed with `createrepo_c`, its newest version published as a security update by an
//! `updateinfo.xml` added with `modifyrepo_c`, and a dnf configuration naming only this
//! repository. The system to patch is an install root in the same folder, holding a release
//! package (so that dnf finds its `$releasever`) and the package's oldest version. Nothing
//! leaves the machine and nothing touches the host's rpm database: dropping the repository
//! removes it all.

use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

/// The release the install root declares (`system-release(releasever)`).
const RELEASEVER: &str = "1";
/// The release of every built package.
const RELEASE: &str = "1";

/// A file-based dnf repository of one package and an install root to patch.
pub struct DnfRepo {
    dir: TempDir,
    package: String,
}

impl DnfRepo {
    /// Builds `package` in each of `versions` (oldest first), indexes them, marks the newest a
    /// security update, and installs the oldest in a fresh install root.
    pub fn build(package: &str, versions: &[&str]) -> DnfRepo {
        let dir = tempfile::Builder::new()
            .prefix(&format!("riposte-dnf-{package}-"))
            .tempdir()
            .expect("a temporary folder");
        let repo = DnfRepo {
            dir,
            package: package.to_owned(),
        };
        std::fs::create_dir(repo.pool()).expect("the repository folder");
        for version in versions {
            let rpm = repo.build_rpm(package, version, "");
            std::fs::rename(
                &rpm,
                repo.pool().join(rpm.file_name().expect("a file name")),
            )
            .expect("move the rpm into the repository");
        }
        repo.index(versions.last().expect("at least one version"));
        let config = format!(
            "[main]\ngpgcheck=0\nreposdir=\ninstall_weak_deps=0\n\n[riposte-test]\n\
             name=throwaway repository of a Riposte test\nbaseurl=file://{}\ngpgcheck=0\n",
            repo.pool().display()
        );
        std::fs::write(repo.config(), config).expect("dnf.conf");
        let release = repo.build_rpm(
            "riposte-test-release",
            RELEASEVER,
            &format!(
                "Provides: system-release\nProvides: system-release(releasever) = {RELEASEVER}\n"
            ),
        );
        let oldest = format!("{package}-{}-{RELEASE}", versions[0]);
        let release = release.to_str().expect("a UTF-8 path");
        repo.dnf(&[
            "--releasever",
            RELEASEVER,
            "-y",
            "install",
            release,
            &oldest,
        ]);
        repo
    }

    /// The package's name.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The dnf configuration naming only this repository (for `--dnf-config`).
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("dnf.conf")
    }

    /// The system to patch (for `--dnf-installroot`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The worker arguments that make its dnf backend patch the install root from this
    /// repository.
    pub fn worker_args(&self) -> Vec<String> {
        vec![
            "--patch-backend".into(),
            "dnf".into(),
            "--dnf-config".into(),
            self.config().display().to_string(),
            "--dnf-installroot".into(),
            self.root().display().to_string(),
        ]
    }

    /// Fetches the repository's metadata into the root's cache, as an operator would before
    /// a dry run (a dry run reads the cache and never refreshes it).
    pub fn makecache(&self) {
        self.dnf(&["-q", "makecache"]);
    }

    /// The installed `VERSION-RELEASE` of the package in the install root, `None` when it is
    /// not installed.
    pub fn installed_version(&self) -> Option<String> {
        let output = Command::new("rpm")
            .arg("--root")
            .arg(self.root())
            .args(["-q", "--qf", "%{VERSION}-%{RELEASE}", &self.package])
            .output()
            .expect("rpm runs (package rpm)");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn pool(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Builds `name` at `version` (one file under `/usr/share/<name>/`) with the extra spec
    /// lines `preamble`; answers the built rpm.
    fn build_rpm(&self, name: &str, version: &str, preamble: &str) -> PathBuf {
        let top = self.dir.path().join(format!("build-{name}-{version}"));
        std::fs::create_dir_all(top.join("SPECS")).expect("SPECS");
        let spec = format!(
            "Name: {name}\nVersion: {version}\nRelease: {RELEASE}\nSummary: throwaway package \
             of a Riposte test\nLicense: MIT\nBuildArch: noarch\n{preamble}\n\
             %description\nthrowaway package of a Riposte test\n\n\
             %install\nmkdir -p %{{buildroot}}/usr/share/{name}\n\
             echo {version} > %{{buildroot}}/usr/share/{name}/version\n\n\
             %files\n/usr/share/{name}/version\n"
        );
        let spec_file = top.join("SPECS").join(format!("{name}.spec"));
        std::fs::write(&spec_file, spec).expect("the spec file");
        let mut command = Command::new("rpmbuild");
        command
            .arg("-bb")
            .arg("--define")
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec_file);
        run(&mut command, "rpmbuild (package rpm)");
        top.join("RPMS/noarch")
            .join(format!("{name}-{version}-{RELEASE}.noarch.rpm"))
    }

    /// Indexes the repository and publishes `version` as a security advisory.
    fn index(&self, version: &str) {
        run(
            Command::new("createrepo_c").arg("-q").arg(self.pool()),
            "createrepo_c (package createrepo-c)",
        );
        let package = &self.package;
        let updateinfo = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<updates>
  <update from="tests@example.invalid" status="stable" type="security" version="1.4">
    <id>RIPOSTE-TEST-0001</id>
    <title>{package} security update</title>
    <severity>Important</severity>
    <issued date="2026-01-01 00:00:00"/>
    <description>throwaway advisory of a Riposte test</description>
    <pkglist>
      <collection short="riposte-test">
        <name>riposte-test</name>
        <package name="{package}" version="{version}" release="{RELEASE}" epoch="0" arch="noarch">
          <filename>{package}-{version}-{RELEASE}.noarch.rpm</filename>
        </package>
      </collection>
    </pkglist>
  </update>
</updates>
"#
        );
        let file = self.dir.path().join("updateinfo.xml");
        std::fs::write(&file, updateinfo).expect("updateinfo.xml");
        run(
            Command::new("modifyrepo_c")
                .args(["--mdtype", "updateinfo"])
                .arg(&file)
                .arg(self.pool().join("repodata")),
            "modifyrepo_c (package createrepo-c)",
        );
    }

    /// dnf with this repository's configuration on the install root.
    fn dnf(&self, args: &[&str]) {
        let mut command = Command::new("dnf");
        command
            .arg("-c")
            .arg(self.config())
            .arg(format!("--installroot={}", self.root().display()))
            .args(args);
        run(&mut command, "dnf (package dnf)");
    }
}

/// Runs `command` (`what` names it and its package); panics with its output when it fails.
fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} cannot start: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
