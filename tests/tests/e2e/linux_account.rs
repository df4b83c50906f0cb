//! The Linux backend of `identity.*` for real: a throwaway local account with a password, an
//! orchestrator and a worker with `--identity-backend linux`, and playbooks that disable the
//! account (undo: re-enable it with the recorded previous state), end its processes, and refuse
//! bad input.
//!
//! "Disabled" is checked twice: in the shadow entry (a `!` before the unchanged hash, expiry on
//! day 1) and through real PAM login paths: `su` run as root, which skips authentication
//! (`pam_rootok`) but still runs the account stack, where `pam_unix` refuses an expired
//! account; and `su` run as `nobody`, which must authenticate with the account's password
//! through `pam_unix` (the locked hash) and then pass the account stack. Both checks are shown
//! to pass before and after, and a wrong password is shown to fail, so that a check cannot pass
//! or fail for the wrong reason.
//!
//! Accounts are named with the pid and a counter, so the tests may run in parallel; each is
//! removed at the end, also when a test fails.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use riposte_proto::v1::{CancelRunRequest, RunStatus, StepStatus};
use riposte_tests::api::{self, HistoryWatch};
use riposte_tests::host;
use riposte_tests::response::{self, lines, of_step};
use riposte_tests::{Orchestrator, Worker, wait_until};
use serde_json::json;

const RUN_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The expiry the account has before the test: day 47482 since the epoch (2100-01-01), so
/// that re-enabling must restore a value, not merely clear it.
const PRIOR_EXPIRY: &str = "47482";

/// Disable, then hold the run open until the test cancels it, which runs the undo.
const CONTAIN: &str = r#"
name: contain-account
version: 1
params:
  account: { type: string, required: true }
steps:
  - id: disable
    action: identity.disable_account
    with: { account: "{{ params.account }}", reason: "e2e containment" }
    undo:
      action: identity.enable_account
      with: { account: "{{ params.account }}", previous: "{{ steps.disable.output.previous }}" }
  - id: hold
    needs: [disable]
    sleep: 10m
"#;

const REVOKE: &str = r#"
name: revoke-account
version: 1
params:
  account: { type: string, required: true }
steps:
  - id: revoke
    action: identity.revoke_sessions
    with: { account: "{{ params.account }}" }
"#;

const DISABLE_ONLY: &str = r#"
name: disable-only
version: 1
params:
  account: { type: string, required: true }
steps:
  - id: disable
    action: identity.disable_account
    with: { account: "{{ params.account }}" }
"#;

/// A local account with a home and a password; removed with its processes when dropped.
struct TestUser {
    name: String,
    password: String,
}

impl TestUser {
    fn create() -> TestUser {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("rip{}u{n}", std::process::id());
        let password = format!("Pw-{name}-{}", n * 7919);
        run(Command::new("useradd").args(["-m", "-s", "/bin/bash", &name]));
        let user = TestUser { name, password };
        let line = format!("{}:{}\n", user.name, user.password);
        run_with_stdin(Command::new("chpasswd"), &line);
        run(Command::new("usermod").args(["-e", PRIOR_EXPIRY, &user.name]));
        user
    }

    /// Field 2 (the hash) and field 8 (the expiry) of the shadow entry.
    fn shadow(&self) -> (String, String) {
        let output = Command::new("getent")
            .args(["shadow", &self.name])
            .output()
            .expect("getent runs");
        let line = String::from_utf8_lossy(&output.stdout).into_owned();
        let fields: Vec<&str> = line.trim_end().split(':').collect();
        assert_eq!(fields.len(), 9, "shadow entry of {}: {line:?}", self.name);
        (fields[1].to_owned(), fields[7].to_owned())
    }

    /// `su` as root: no authentication, but PAM's account stack (expiry) still runs.
    fn root_su_allowed(&self) -> bool {
        Command::new("su")
            .args(["-s", "/bin/true", &self.name, "-c", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("su runs")
            .success()
    }

    /// `su` as `nobody` with `password` on stdin: PAM authentication (the hash) and the
    /// account stack; true when a shell ran as the account.
    fn password_login_allowed(&self, password: &str) -> bool {
        let mut child = Command::new("runuser")
            .args(["-u", "nobody", "--", "su", &self.name, "-c", "id -un"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("runuser runs");
        let mut stdin = child.stdin.take().expect("stdin");
        // su may exit before it reads (an expired account): ignore a broken pipe.
        let _ = stdin.write_all(format!("{password}\n").as_bytes());
        drop(stdin);
        let output = child.wait_with_output().expect("su ends");
        let stdout = String::from_utf8_lossy(&output.stdout);
        output.status.success() && stdout.trim() == self.name
    }

    /// A long-running process of the account, as a session would have.
    fn start_process(&self) -> Child {
        Command::new("runuser")
            .args(["-u", &self.name, "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("runuser runs")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-u", &self.name])
            .status();
        let removed = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .stderr(Stdio::null())
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            eprintln!("cleanup: userdel {} failed", self.name);
        }
    }
}

fn run(command: &mut Command) {
    let status = command.status().expect("the command starts");
    assert!(status.success(), "{command:?}: {status}");
}

fn run_with_stdin(mut command: Command, input: &str) {
    let mut child = command
        .stdin(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("stdin written");
    let status = child.wait().expect("the command ends");
    assert!(status.success(), "{command:?}: {status}");
}

async fn orchestrator_and_worker() -> (Orchestrator, Worker) {
    // The connector is under test, not the platform's approval rules: the playbooks here
    // call it bare.
    let orchestrator = Orchestrator::builder().policy("approvals: []").start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&["--identity-backend", "linux"])
        .start();
    worker.id(&mut orchestrator.client()).await;
    (orchestrator, worker)
}

#[tokio::test]
async fn disable_locks_and_expires_the_account_and_the_undo_restores_it_exactly() {
    if !host::enabled() {
        return;
    }
    let user = TestUser::create();
    let before = user.shadow();
    assert_eq!(before.1, PRIOR_EXPIRY);
    assert!(!before.0.starts_with('!'), "a usable hash: {before:?}");
    assert!(
        user.root_su_allowed(),
        "an enabled account passes the account stack"
    );
    assert!(
        user.password_login_allowed(&user.password),
        "an enabled account logs in with its password"
    );
    assert!(
        !user.password_login_allowed("wrong password"),
        "the password check can fail"
    );

    let (orchestrator, _worker) = orchestrator_and_worker().await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, CONTAIN).await;
    let run = api::start_run(
        &mut client,
        "contain-account",
        json!({"account": user.name}),
    )
    .await;
    let watch = HistoryWatch::start(&client, &run.run_id);
    let disabled = response::wait_step(
        &mut client,
        &run.run_id,
        "disable",
        StepStatus::Succeeded,
        RUN_TIMEOUT,
    )
    .await;

    let output = api::json(&api::step(&disabled, "disable").output_json);
    assert_eq!(output["already_disabled"], false, "{output}");
    assert_eq!(
        output["previous"],
        json!({"locked": false, "expiry": PRIOR_EXPIRY}),
        "{output}"
    );
    assert_eq!(output["dry_run"], false);
    let (hash, expiry) = user.shadow();
    assert_eq!(
        hash,
        format!("!{}", before.0),
        "locked: a `!` before the hash"
    );
    assert_eq!(expiry, "1", "expired on day 1");
    assert!(!user.root_su_allowed(), "PAM refuses the expired account");
    assert!(
        !user.password_login_allowed(&user.password),
        "the right password no longer logs in"
    );

    client
        .cancel_run(CancelRunRequest {
            run_id: run.run_id.clone(),
            reason: "incident closed".into(),
        })
        .await
        .expect("CancelRun");
    let ended = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    watch.wait_kind("run.finished", EVENT_TIMEOUT).await;
    let events = watch.events();
    let history = lines(&events);
    assert_eq!(ended.status(), RunStatus::Cancelled, "{history:#?}");
    let undone = of_step(&events, "undo.succeeded", "disable");
    assert_eq!(undone.len(), 1, "the enable ran once: {history:#?}");

    assert_eq!(user.shadow(), before, "the previous state, exactly");
    assert!(
        user.root_su_allowed(),
        "re-enabled: the account stack passes"
    );
    assert!(
        user.password_login_allowed(&user.password),
        "re-enabled: the password logs in again"
    );
}

#[tokio::test]
async fn revoke_sessions_ends_the_processes_of_the_account() {
    if !host::enabled() {
        return;
    }
    let user = TestUser::create();
    let mut process = user.start_process();
    let name = user.name.clone();
    wait_until("the account has a process", EVENT_TIMEOUT, async || {
        Command::new("pgrep")
            .args(["-u", &name])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
    .await;

    let (orchestrator, _worker) = orchestrator_and_worker().await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, REVOKE).await;
    let run = api::start_run(&mut client, "revoke-account", json!({"account": user.name})).await;
    let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    let output = api::json(&api::step(&run, "revoke").output_json);
    let ended = output["sessions_ended"].as_u64().expect("a count");
    assert!(ended >= 1, "{output}");

    let status = process.wait().expect("the process ends");
    assert!(!status.success(), "killed, not finished: {status}");
    let left = Command::new("pgrep")
        .args(["-u", &user.name])
        .status()
        .expect("pgrep runs");
    assert_eq!(left.code(), Some(1), "no process of the account is left");
}

#[tokio::test]
async fn bad_accounts_are_refused_with_a_reason_before_anything_changes() {
    if !host::enabled() {
        return;
    }
    let (orchestrator, _worker) = orchestrator_and_worker().await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, DISABLE_ONLY).await;
    let marker = std::env::temp_dir().join(format!("riposte-pwned-{}", std::process::id()));
    let unknown = format!("ripnobody{}", std::process::id());
    let hostile = format!("x$(touch {})", marker.display());
    let root_before = root_shadow();
    // `root` never reaches the worker: the platform guard refuses it. A second name for uid 0
    // passes the guard, and the worker refuses it on its own.
    let alias = SuperuserAlias::create();
    for (account, fragment) in [
        (unknown.as_str(), format!("no such account: {unknown}")),
        (
            "root",
            "refused by guard: account root is protected".to_owned(),
        ),
        (
            alias.name.as_str(),
            format!("refused: {} has uid 0", alias.name),
        ),
        (hostile.as_str(), "is not a valid login name".to_owned()),
        ("bob;reboot", "is not a valid login name".to_owned()),
    ] {
        let run = api::start_run(&mut client, "disable-only", json!({"account": account})).await;
        let run = response::wait_ended(&mut client, &run.run_id, RUN_TIMEOUT).await;
        assert_eq!(
            run.status(),
            RunStatus::Failed,
            "{account}: {}",
            api::describe(&run)
        );
        let step = api::step(&run, "disable");
        assert!(
            step.error.contains(&fragment),
            "{account}: the error must contain {fragment:?}: {:?}",
            step.error
        );
        assert!(
            step.attempts <= 1,
            "{account}: a permanent failure is not retried ({} attempts)",
            step.attempts
        );
    }
    assert!(!marker.exists(), "no shell ever saw the account name");
    assert_eq!(root_shadow(), root_before, "root is untouched");
}

/// A second account name for uid 0 (`useradd -o -u 0`), without a home; removed by name when
/// dropped. Never `pkill -u` it: that would mean every process of root.
struct SuperuserAlias {
    name: String,
}

impl SuperuserAlias {
    fn create() -> SuperuserAlias {
        let name = format!("rip{}root", std::process::id());
        run(Command::new("useradd").args([
            "-o",
            "-u",
            "0",
            "-M",
            "-s",
            "/usr/sbin/nologin",
            &name,
        ]));
        SuperuserAlias { name }
    }
}

impl Drop for SuperuserAlias {
    fn drop(&mut self) {
        let removed = Command::new("userdel")
            .args(["-f", &self.name])
            .stderr(Stdio::null())
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            eprintln!("cleanup: userdel {} failed", self.name);
        }
    }
}

/// Root's shadow entry as it is.
fn root_shadow() -> String {
    let output = Command::new("getent")
        .args(["shadow", "root"])
        .output()
        .expect("getent runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}
