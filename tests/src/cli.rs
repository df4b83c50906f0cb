//! The `riposte` operator CLI as a user runs it: one process per command, its exit code and
//! both output streams captured.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::binaries::binaries;

/// Longest a CLI command may take (a `run --wait` included).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// What one CLI command did.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// The exit code, panicking when there is none.
    pub fn code(&self) -> i32 {
        self.code
            .unwrap_or_else(|| panic!("the CLI was killed by a signal\n{self}"))
    }

    /// stdout parsed as one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document: {e}\n{self}"))
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `riposte --addr URL ARGS...` and waits for it (at most a minute).
pub async fn cli(url: &str, args: &[&str]) -> CliOutput {
    cli_in(url, None, args).await
}

/// The same with `--tls-dir DIR` (the CA, and the operator's certificate) when given.
pub async fn cli_in(url: &str, tls_dir: Option<&std::path::Path>, args: &[&str]) -> CliOutput {
    cli_with(url, tls_dir, None, args).await
}

/// The same, presenting the token in `token_file` (`RIPOSTE_TOKEN_FILE`) when given.
pub async fn cli_with(
    url: &str,
    tls_dir: Option<&std::path::Path>,
    token_file: Option<&std::path::Path>,
    args: &[&str],
) -> CliOutput {
    let mut command = Command::new(&binaries().cli);
    command.arg("--addr").arg(url);
    if let Some(dir) = tls_dir {
        command.arg("--tls-dir").arg(dir);
    }
    command.args(args);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("RIPOSTE_") {
            command.env_remove(key.as_ref());
        }
    }
    if let Some(file) = token_file {
        command.env("RIPOSTE_TOKEN_FILE", file);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("the riposte CLI starts");
    let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "`riposte {}` took more than {CLI_TIMEOUT:?}",
                args.join(" ")
            )
        })
        .expect("the riposte CLI's output");
    CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
