//! Where the binaries under test come from: built once per test process with the same profile
//! as the test itself, then found next to it in the target directory.
//!
//! `cargo test -p riposte-tests` builds only this package's targets, so the orchestrator, the
//! worker and the CLI are built here, by a nested `cargo build` that runs after the outer cargo
//! has finished compiling (it holds no lock while tests run).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The three binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `riposte-orchestrator`.
    pub orchestrator: PathBuf,
    /// `riposte-worker`.
    pub worker: PathBuf,
    /// `riposte`, the operator CLI.
    pub cli: PathBuf,
}

/// The binaries, built on the first call (every later call, from any thread, waits for it).
///
/// Panics with cargo's errors when the build failed (once per process: the build is not
/// retried by every test).
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Result<Binaries, String>> = OnceLock::new();
    match BINARIES.get_or_init(build) {
        Ok(binaries) => binaries,
        Err(message) => panic!("{message}"),
    }
}

/// Lines of cargo's output kept in the failure message.
const BUILD_OUTPUT_LINES_MAX: usize = 60;

fn build() -> Result<Binaries, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace");
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args([
            "--bins",
            "-p",
            "riposte-orchestrator",
            "-p",
            "riposte-worker",
            "-p",
            "riposte-cli",
        ]);
    // Same profile as this process, so that both land in the directory we look in.
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run cargo to build the binaries under test: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|line| !line.trim_start().starts_with("Compiling"))
            .take(BUILD_OUTPUT_LINES_MAX)
            .collect();
        return Err(format!(
            "building the binaries under test failed ({}):\n{}",
            output.status,
            errors.join("\n")
        ));
    }
    let dir = profile_dir();
    let found = |name: &str| {
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} is missing after the build", path.display()))
        }
    };
    Ok(Binaries {
        orchestrator: found("riposte-orchestrator")?,
        worker: found("riposte-worker")?,
        cli: found("riposte")?,
    })
}

/// `target/<profile>`: a test runs from `target/<profile>/deps/`, a binary of this package
/// from `target/<profile>/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let dir = exe.parent().expect("an executable lives in a directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().expect("deps/ has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}
