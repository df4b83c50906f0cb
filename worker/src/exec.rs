//! The only door through which the worker starts processes.
//!
//! Every command is an explicit argv (never a shell, so alert data can never become shell
//! syntax), runs with a cleared environment plus the variables the caller names, has a timeout,
//! keeps at most [`OUTPUT_BYTES_MAX`] of each of stdout and stderr, and is killed when its
//! future is dropped (task abandoned, worker draining, step timeout).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Most bytes of stdout, and of stderr, kept from one command; the rest is read and dropped so
/// the child never blocks on a full pipe.
pub(crate) const OUTPUT_BYTES_MAX: usize = 1024 * 1024;
/// Longest time any command may run, whatever its caller asks.
pub(crate) const TIMEOUT_MAX: Duration = Duration::from_secs(3 * 3600);

/// `PATH` given to every command: the system directories, never the worker's own `PATH`.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command to run.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    /// The program, by absolute path or a name looked up in [`PATH`].
    pub(crate) program: String,
    /// Its arguments, passed as they are.
    pub(crate) args: Vec<String>,
    /// Environment variables besides `PATH` and `LC_ALL=C`.
    pub(crate) env: Vec<(String, String)>,
    /// Bytes written to its stdin, which is then closed; `None` gives it `/dev/null`.
    pub(crate) stdin: Option<Vec<u8>>,
    /// How long it may run before it is killed (capped by [`TIMEOUT_MAX`]).
    pub(crate) timeout: Duration,
}

impl Command {
    /// `program` with `args`, no extra environment, no stdin, a 60 s timeout.
    pub(crate) fn new<I, S>(program: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            program: program.to_owned(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// Sets the timeout.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Command {
        self.timeout = timeout;
        self
    }

    /// Adds an environment variable.
    pub(crate) fn env(mut self, key: &str, value: &str) -> Command {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Feeds `bytes` to the command's stdin.
    pub(crate) fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Command {
        self.stdin = Some(bytes.into());
        self
    }

    /// The command as an operator would type it, for messages and dry runs.
    pub(crate) fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(quote)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a finished command left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Output {
    /// The exit code; `None` when a signal ended it.
    pub(crate) code: Option<i32>,
    /// Stdout, lossily decoded, at most [`OUTPUT_BYTES_MAX`] bytes.
    pub(crate) stdout: String,
    /// Stderr, lossily decoded, at most [`OUTPUT_BYTES_MAX`] bytes.
    pub(crate) stderr: String,
}

impl Output {
    /// Exit code 0.
    pub(crate) fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The first line of stderr (or of stdout when stderr is empty), for error messages.
    pub(crate) fn first_line(&self) -> &str {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
    }
}

/// Why a command did not run to an exit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The program could not be started (not installed, not executable).
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    /// It ran past its timeout and was killed.
    #[error("`{command}` timed out after {}", humantime::format_duration(*timeout))]
    Timeout { command: String, timeout: Duration },
    /// Reading its output or waiting for it failed.
    #[error("`{command}`: {source}")]
    Io {
        command: String,
        source: std::io::Error,
    },
}

/// Runs `command` to its exit, its timeout, or the drop of this future (which kills it).
///
/// The work is boxed: its read buffers make it tens of KiB, and backends nest it deep inside
/// their own futures, which on a tokio worker thread's stack must stay small.
pub(crate) async fn run(command: &Command) -> Result<Output, Error> {
    Box::pin(run_to_exit(command)).await
}

#[expect(
    clippy::disallowed_methods,
    reason = "this is the process door: every process of the worker starts here"
)]
async fn run_to_exit(command: &Command) -> Result<Output, Error> {
    let timeout = command.timeout.min(TIMEOUT_MAX);
    let mut child = tokio::process::Command::new(&command.program)
        .args(&command.args)
        .env_clear()
        .env("PATH", PATH)
        .env("LC_ALL", "C")
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(if command.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            program: command.program.clone(),
            source,
        })?;
    let io_error = |source| Error::Io {
        command: command.display(),
        source,
    };
    let stdin = child.stdin.take();
    let input = command.stdin.clone();
    let feed = async move {
        if let (Some(mut pipe), Some(bytes)) = (stdin, input) {
            // A child that exits without reading its stdin is not an error of ours.
            let _ = pipe.write_all(&bytes).await;
        }
    };
    let stdout = read_capped(child.stdout.take());
    let stderr = read_capped(child.stderr.take());
    let finished = async {
        let ((), stdout, stderr) = tokio::join!(feed, stdout, stderr);
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, stdout?, stderr?))
    };
    match tokio::time::timeout(timeout, finished).await {
        Ok(Ok((status, stdout, stderr))) => Ok(Output {
            code: status.code(),
            stdout,
            stderr,
        }),
        Ok(Err(source)) => Err(io_error(source)),
        Err(_) => Err(Error::Timeout {
            command: command.display(),
            timeout,
        }),
    }
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_BYTES_MAX`] bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> std::io::Result<String> {
    let Some(mut pipe) = pipe else {
        return Ok(String::new());
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let room = OUTPUT_BYTES_MAX.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    Ok(String::from_utf8_lossy(&kept).into_owned())
}

/// Quotes one argv element for display only (nothing is ever run through a shell).
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_argv_without_a_shell() {
        let out = run(&Command::new("echo", ["a;b", "$HOME"])).await.unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "a;b $HOME\n");
    }

    #[tokio::test]
    async fn environment_is_cleared() {
        let out = run(&Command::new("env", Vec::<String>::new()).env("X", "1"))
            .await
            .unwrap();
        let mut lines: Vec<_> = out.stdout.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["LC_ALL=C", &format!("PATH={PATH}"), "X=1"]);
    }

    #[tokio::test]
    async fn stdin_output_cap_and_exit_code() {
        let out = run(&Command::new("head", ["-c", "2000000", "/dev/zero"]))
            .await
            .unwrap();
        assert_eq!(out.stdout.len(), OUTPUT_BYTES_MAX);
        let out = run(&Command::new("sh", ["-c", "cat; exit 3"]).stdin("hi"))
            .await
            .unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (Some(3), "hi"));
    }

    #[tokio::test]
    async fn timeout_kills() {
        let command = Command::new("sleep", ["30"]).timeout(Duration::from_millis(100));
        let err = run(&command).await.unwrap_err();
        assert_eq!(err.to_string(), "`sleep 30` timed out after 100ms");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = run(&Command::new("riposte-no-such-program", ["x"]))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot start `riposte-no-such-program`")
        );
    }

    #[test]
    fn display_quotes() {
        let c = Command::new("nft", ["add", "element", "{ 1.2.3.4 }", "it's"]);
        assert_eq!(c.display(), r"nft add element '{ 1.2.3.4 }' 'it'\''s'");
    }
}
