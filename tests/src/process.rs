//! One child process under test: spawned with an explicit argv and a scrubbed environment, its
//! output captured to log files, signalled by pid, and killed when dropped.
//!
//! This module is the only place that spawns the long-running binaries or sends them signals.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a process may take to print its first line of stdout.
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process may take to exit after SIGTERM.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// A running (or exited) child process with its logs.
pub(crate) struct Process {
    /// What to call it in messages: `orchestrator`, `worker w3`.
    label: String,
    child: Option<Child>,
    logs: Vec<PathBuf>,
    /// The first line the process printed on stdout, when it was asked to report one.
    first_line: Option<String>,
}

/// How a process's stdout is handled.
pub(crate) enum Stdout {
    /// Appended to this file.
    Log(PathBuf),
    /// The first line is kept (see [`Process::first_line`]), every line is appended to this file.
    FirstLineThenLog(PathBuf),
}

impl Process {
    /// Spawns `program` with `args`; stderr is appended to `stderr_log`. Variables starting with
    /// `RIPOSTE_` and `RUST_LOG` are removed from the environment so that the caller's shell
    /// cannot change what is tested; `env` sets what the process needs.
    pub(crate) fn spawn(
        label: impl Into<String>,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        stdout: Stdout,
        stderr_log: &Path,
    ) -> Process {
        let label = label.into();
        let mut command = Command::new(program);
        command.args(args).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("RIPOSTE_") || key == "RUST_LOG" {
                command.env_remove(key.as_ref());
            }
        }
        command.envs(env.iter().copied());
        command.stderr(append(stderr_log));
        let (stdout_log, wants_first_line) = match stdout {
            Stdout::Log(path) => (path, false),
            Stdout::FirstLineThenLog(path) => (path, true),
        };
        if wants_first_line {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(append(&stdout_log));
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({}): {e}", program.display()));
        let mut process = Process {
            label,
            child: None,
            logs: vec![stderr_log.to_path_buf(), stdout_log.clone()],
            first_line: None,
        };
        if wants_first_line {
            let pipe = child.stdout.take().expect("stdout is piped");
            process.child = Some(child);
            process.first_line = Some(process.read_first_line(pipe, stdout_log));
        } else {
            process.child = Some(child);
        }
        process
    }

    /// Waits for the first line on stdout, then copies the rest to `log` on a thread that ends
    /// when the process closes its stdout.
    fn read_first_line(&mut self, pipe: impl Read + Send + 'static, log: PathBuf) -> String {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut out = append_file(&log);
            let mut lines = BufReader::new(pipe).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = std::io::Write::write_all(&mut out, format!("{first}\n").as_bytes());
                let _ = tx.send(first);
            }
            drop(tx);
            for line in lines.map_while(Result::ok) {
                let _ = std::io::Write::write_all(&mut out, format!("{line}\n").as_bytes());
            }
        });
        match rx.recv_timeout(FIRST_LINE_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                panic!(
                    "{} printed no first line on stdout ({e}; exit status {status:?})\n{}",
                    self.label,
                    self.log_tail()
                )
            }
        }
    }

    /// The first line printed on stdout (for a process spawned with
    /// [`Stdout::FirstLineThenLog`]).
    pub(crate) fn first_line(&self) -> &str {
        self.first_line
            .as_deref()
            .expect("this process was spawned to report its first line")
    }

    /// The operating-system process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} has been reaped", self.label))
    }

    /// True while the process has not exited.
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait on a child").is_none(),
            None => false,
        }
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An already exited child makes kill fail; waiting still reaps it.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` to the process.
    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).expect("a pid fits in i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.label));
    }

    /// SIGTERM, then waits for the exit and returns its status.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + TERMINATE_TIMEOUT;
        let child = self.child.as_mut().expect("the child is not reaped");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait on a child") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM\n{}",
                self.label,
                self.log_tail()
            );
            // Polling the exit status of a child: there is no portable way to wait with a bound.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of each log, for a failure message.
    pub(crate) fn log_tail(&self) -> String {
        self.log_lines(LOG_TAIL_LINES)
    }

    /// Every line of each log, under the same headers as [`Process::log_tail`].
    pub(crate) fn logs(&self) -> String {
        self.log_lines(usize::MAX)
    }

    fn log_lines(&self, max: usize) -> String {
        let mut text = String::new();
        for log in &self.logs {
            let content = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let from = lines.len().saturating_sub(max);
            text.push_str(&format!(
                "----- {} {} (last {} of {} lines) -----\n",
                self.label,
                log.display(),
                lines.len() - from,
                lines.len()
            ));
            for line in &lines[from..] {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        self.kill9();
    }
}

fn append_file(path: &Path) -> File {
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open the log {}: {e}", path.display()))
}

fn append(path: &Path) -> Stdio {
    Stdio::from(append_file(path))
}
