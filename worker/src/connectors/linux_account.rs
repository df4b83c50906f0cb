//! The Linux backend of `identity.*`: local accounts of this host.
//!
//! The account name is checked as a POSIX login name before anything runs; the passwd and
//! shadow entries are read through `getent`, and every change is verified by reading the shadow
//! entry back, because `usermod` exits 0 in cases where it changed nothing.
//!
//! Disabling is `usermod -L -e 1`: the password hash gets a `!` prefix (password logins fail) and
//! the account expires on day 1 (1970-01-02), which PAM's account stack refuses for every login
//! path that enforces expiry, SSH keys included. Day 1, not 0: shadow(5) says 0 may be read as
//! "never expires". The prior lock state and expiry field are returned as `previous` so that
//! `enable_account` restores them exactly.
//!
//! An account with uid 0 is always refused. Disabling an account and ending its sessions also
//! refuse an account whose uid on this host is below the worker's `--protected-uid-below`
//! (1000 by default): system accounts are protected here as well as by the orchestrator's
//! guard, whatever name they were given by. The uid is read from the passwd entry before
//! anything else is read or run. Re-enabling only restores, and is not held back by it.

use std::time::Duration;

use serde_json::{Value, json};

use super::identity::{Disable, Enable, RevokeSessions};
use super::{Context, Failure, run, run_checked};
use crate::clock;
use crate::exec::{self, Command};

/// Longest login name accepted (the Linux and shadow limit).
const LOGIN_NAME_BYTES_MAX: usize = 32;
/// Longest time one `getent`, `usermod`, `pgrep` or `pkill` may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `revoke_sessions` waits for killed processes to disappear.
const KILL_SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two checks while killed processes disappear.
const KILL_SETTLE_POLL: Duration = Duration::from_millis(50);
/// The shadow expiry field `disable` sets: day 1 since the epoch.
const EXPIRED: &str = "1";
/// Longest expiry field accepted in `previous` (days since the epoch).
const EXPIRY_DIGITS_MAX: usize = 10;
/// `getent`'s exit code for a key that is not in the database.
const GETENT_NOT_FOUND: i32 = 2;
/// `pgrep`/`pkill` exit code when no process matched.
const PROCPS_NONE_MATCHED: i32 = 1;

/// The state of an account that `disable` records and `enable` restores.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    /// The password hash starts with `!`.
    locked: bool,
    /// Field 8 of the shadow entry as it was (days since the epoch; empty means never).
    expiry: String,
}

impl State {
    fn to_json(&self) -> Value {
        json!({ "locked": self.locked, "expiry": self.expiry })
    }

    fn disabled(&self) -> bool {
        self.locked && self.expiry == EXPIRED
    }
}

/// A local account as `getent` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Account {
    uid: u32,
    /// Field 2 of the shadow entry.
    hash: String,
    state: State,
}

/// See [`super::identity`].
pub(crate) async fn disable(
    disable: &Disable,
    uid_below: u32,
    cx: &Context,
) -> Result<Value, Failure> {
    let name = login_name(&disable.account)?;
    let account = read_modifiable(name, uid_below).await?;
    let previous = account.state.clone();
    let command = usermod(&["-L", "-e", EXPIRED], name);
    let already = previous.disabled();
    let changes = if already {
        Vec::new()
    } else {
        vec![command.display()]
    };
    if !already && !cx.dry_run {
        run_checked(&command, command_failed).await?;
        let after = read_account(name).await?;
        if !after.state.disabled() {
            return Err(Failure::permanent(format!(
                "`{}` exited 0 but the shadow entry of {name} shows {}",
                command.display(),
                describe(&after.state)
            )));
        }
        tracing::info!(account = name, reason = %disable.reason, "account disabled");
    }
    Ok(json!({
        "account": name,
        "backend": "linux",
        "already_disabled": already,
        "previous": previous.to_json(),
        "reason": disable.reason,
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::identity`].
pub(crate) async fn enable(enable: &Enable, cx: &Context) -> Result<Value, Failure> {
    let name = login_name(&enable.account)?;
    let target = match &enable.previous {
        Some(previous) => parse_previous(previous)?,
        None => State {
            locked: false,
            expiry: String::new(),
        },
    };
    // Undo: only uid 0 is refused.
    let account = read_modifiable(name, 0).await?;
    let plan = plan_enable(&account, &target);
    let command = (!plan.args.is_empty()).then(|| usermod(&plan.args, name));
    let changes: Vec<String> = command.iter().map(Command::display).collect();
    if let (Some(command), false) = (&command, cx.dry_run) {
        run_checked(command, command_failed).await?;
        let after = read_account(name).await?;
        if after.state != plan.expected {
            return Err(Failure::permanent(format!(
                "`{}` exited 0 but the shadow entry of {name} shows {}, not {}",
                command.display(),
                describe(&after.state),
                describe(&plan.expected)
            )));
        }
    }
    Ok(json!({
        "account": name,
        "backend": "linux",
        "already_enabled": command.is_none(),
        "restored": target.to_json(),
        "warnings": plan.warnings,
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// See [`super::identity`].
pub(crate) async fn revoke_sessions(
    revoke: &RevokeSessions,
    uid_below: u32,
    cx: &Context,
) -> Result<Value, Failure> {
    let name = login_name(&revoke.account)?;
    let account = read_modifiable(name, uid_below).await?;
    let uid = account.uid.to_string();
    let pids = processes_of(&uid).await?;
    let command = Command::new("pkill", ["-KILL", "-u", uid.as_str()]).timeout(COMMAND_TIMEOUT);
    let changes = if pids.is_empty() {
        Vec::new()
    } else {
        vec![command.display()]
    };
    if !pids.is_empty() && !cx.dry_run {
        let output = run(&command).await?;
        if !output.success() && output.code != Some(PROCPS_NONE_MATCHED) {
            return Err(command_failed(&command, &output));
        }
        wait_gone(&uid, name).await?;
    }
    Ok(json!({
        "account": name,
        "backend": "linux",
        "sessions_ended": if cx.dry_run { 0 } else { pids.len() },
        "processes": pids.len(),
        "changes": changes,
        "dry_run": cx.dry_run,
    }))
}

/// What `enable` runs and the state it must leave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EnablePlan {
    /// `usermod` options (`-U`, `-e DAYS`); empty when nothing is to change.
    args: Vec<String>,
    expected: State,
    warnings: Vec<String>,
}

/// Decides how to bring `account` to `target`. Pure.
///
/// The account is unlocked only when the target is unlocked (a lock that predates the disable
/// stays), and never locked. A hash that is only `!` has no password behind it: `usermod -U`
/// would warn, exit 0 and change nothing, so it is not run and a warning says so.
fn plan_enable(account: &Account, target: &State) -> EnablePlan {
    let mut args = Vec::new();
    let mut warnings = Vec::new();
    let mut expected = account.state.clone();
    if account.state.locked && !target.locked {
        let rest = &account.hash[1..];
        if rest.is_empty() {
            warnings.push(
                "the account has no password (its hash is only `!`): it stays locked for \
                 password logins"
                    .to_owned(),
            );
        } else {
            args.push("-U".to_owned());
            expected.locked = rest.starts_with('!');
            if expected.locked {
                warnings.push(
                    "the hash carries more than one `!`: one `usermod -U` leaves it locked"
                        .to_owned(),
                );
            }
        }
    }
    if account.state.expiry != target.expiry {
        args.extend(["-e".to_owned(), target.expiry.clone()]);
        expected.expiry = target.expiry.clone();
    }
    EnablePlan {
        args,
        expected,
        warnings,
    }
}

/// Checks a POSIX login name: `[a-z_][a-z0-9_-]*`, an optional trailing `$`, at most 32
/// bytes. Pure; nothing runs with a name that fails it.
fn login_name(account: &str) -> Result<&str, Failure> {
    let body = account.strip_suffix('$').unwrap_or(account);
    let valid = !body.is_empty()
        && account.len() <= LOGIN_NAME_BYTES_MAX
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(account)
    } else {
        Err(Failure::invalid_input(format!(
            "{account:?} is not a valid login name ([a-z_][a-z0-9_-]*, an optional trailing $, \
             at most {LOGIN_NAME_BYTES_MAX} bytes)"
        )))
    }
}

/// Reads `previous` as `disable` wrote it. Pure.
fn parse_previous(previous: &Value) -> Result<State, Failure> {
    let invalid = || {
        Failure::invalid_input(
            "`previous` must be the disable's output: {\"locked\": bool, \"expiry\": \"days\"}",
        )
    };
    let object = previous.as_object().ok_or_else(invalid)?;
    if object.keys().any(|k| k != "locked" && k != "expiry") {
        return Err(invalid());
    }
    let locked = object
        .get("locked")
        .and_then(Value::as_bool)
        .ok_or_else(invalid)?;
    let expiry = object
        .get("expiry")
        .and_then(Value::as_str)
        .ok_or_else(invalid)?;
    let digits = expiry.len() <= EXPIRY_DIGITS_MAX && expiry.chars().all(|c| c.is_ascii_digit());
    if !digits {
        return Err(Failure::invalid_input(format!(
            "`previous.expiry` {expiry:?} is not empty or a number of days"
        )));
    }
    Ok(State {
        locked,
        expiry: expiry.to_owned(),
    })
}

/// The uid from a `getent passwd` line of `name`. Pure.
fn parse_passwd(line: &str, name: &str) -> Result<u32, String> {
    let fields: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
    if fields.len() != 7 || fields[0] != name {
        return Err(format!("unexpected passwd entry for {name}"));
    }
    fields[2]
        .parse()
        .map_err(|_| format!("passwd entry of {name} has uid {:?}", fields[2]))
}

/// The hash and state from a `getent shadow` line of `name`. Pure.
fn parse_shadow(line: &str, name: &str) -> Result<(String, State), String> {
    let fields: Vec<&str> = line.trim_end_matches('\n').split(':').collect();
    if fields.len() != 9 || fields[0] != name {
        return Err(format!("unexpected shadow entry for {name}"));
    }
    let hash = fields[1].to_owned();
    let state = State {
        locked: hash.starts_with('!'),
        expiry: fields[7].to_owned(),
    };
    Ok((hash, state))
}

/// The state in words, for messages.
fn describe(state: &State) -> String {
    let lock = if state.locked { "locked" } else { "unlocked" };
    let expiry = if state.expiry.is_empty() {
        "no expiry".to_owned()
    } else {
        format!("expiry day {}", state.expiry)
    };
    format!("{lock}, {expiry}")
}

/// Refuses uid 0, and a uid below `uid_below`. Pure.
fn check_uid(name: &str, uid: u32, uid_below: u32) -> Result<(), Failure> {
    if uid == 0 {
        return Err(Failure::permanent(format!(
            "refused: {name} has uid 0 (a superuser account is never changed)"
        )));
    }
    if uid < uid_below {
        return Err(Failure::permanent(format!(
            "refused: account {name} has uid {uid}, below {uid_below}: system accounts are \
             protected"
        )));
    }
    Ok(())
}

/// Reads the account's uid and checks it ([`check_uid`]) before its shadow entry is read.
async fn read_modifiable(name: &str, uid_below: u32) -> Result<Account, Failure> {
    let uid = read_uid(name).await?;
    check_uid(name, uid, uid_below)?;
    read_shadow(name, uid).await
}

/// Reads the passwd and shadow entries of `name`; an unknown name is a permanent failure.
async fn read_account(name: &str) -> Result<Account, Failure> {
    let uid = read_uid(name).await?;
    read_shadow(name, uid).await
}

/// The uid in the passwd entry of `name`.
async fn read_uid(name: &str) -> Result<u32, Failure> {
    let passwd = getent("passwd", name)
        .await?
        .ok_or_else(|| Failure::permanent(format!("no such account: {name}")))?;
    parse_passwd(&passwd, name).map_err(Failure::permanent)
}

/// The shadow entry of `name`, whose uid is `uid`.
async fn read_shadow(name: &str, uid: u32) -> Result<Account, Failure> {
    let shadow = getent("shadow", name).await?.ok_or_else(|| {
        Failure::permanent(format!(
            "{name} has no shadow entry (or the worker may not read the shadow database)"
        ))
    })?;
    let (hash, state) = parse_shadow(&shadow, name).map_err(Failure::permanent)?;
    Ok(Account { uid, hash, state })
}

/// `getent DATABASE NAME`: the entry, or `None` when there is none.
async fn getent(database: &str, name: &str) -> Result<Option<String>, Failure> {
    let command = Command::new("getent", [database, name]).timeout(COMMAND_TIMEOUT);
    let output = run(&command).await?;
    match output.code {
        Some(0) => Ok(Some(output.stdout)),
        Some(GETENT_NOT_FOUND) => Ok(None),
        _ => Err(command_failed(&command, &output)),
    }
}

/// `usermod OPTIONS -- NAME`.
fn usermod<S: AsRef<str>>(options: &[S], name: &str) -> Command {
    let args = options
        .iter()
        .map(|o| o.as_ref().to_owned())
        .chain(["--".to_owned(), name.to_owned()]);
    Command::new("usermod", args).timeout(COMMAND_TIMEOUT)
}

/// The pids of the processes whose effective user is `uid`.
async fn processes_of(uid: &str) -> Result<Vec<u32>, Failure> {
    let command = Command::new("pgrep", ["-u", uid]).timeout(COMMAND_TIMEOUT);
    let output = run(&command).await?;
    match output.code {
        Some(0) => Ok(output
            .stdout
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .collect()),
        Some(PROCPS_NONE_MATCHED) => Ok(Vec::new()),
        _ => Err(command_failed(&command, &output)),
    }
}

/// Waits until no process of `uid` is left; SIGKILL is delivered asynchronously.
async fn wait_gone(uid: &str, name: &str) -> Result<(), Failure> {
    let deadline = clock::monotonic() + KILL_SETTLE_TIMEOUT;
    loop {
        let left = processes_of(uid).await?;
        if left.is_empty() {
            return Ok(());
        }
        if clock::monotonic() >= deadline {
            return Err(Failure::retryable(format!(
                "{} processes of {name} are still running after SIGKILL: {left:?}",
                left.len()
            )));
        }
        tokio::time::sleep(KILL_SETTLE_POLL).await;
    }
}

/// A command's non-zero exit as a failure: retrying the same command will not help.
fn command_failed(command: &Command, output: &exec::Output) -> Failure {
    let code = output
        .code
        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
    Failure::permanent(format!(
        "`{}` exited with {code}: {}",
        command.display(),
        output.first_line()
    ))
}

#[cfg(test)]
mod tests {
    use riposte_test_support::host;

    use super::*;

    fn state(locked: bool, expiry: &str) -> State {
        State {
            locked,
            expiry: expiry.to_owned(),
        }
    }

    fn account(hash: &str, expiry: &str) -> Account {
        Account {
            uid: 1000,
            hash: hash.to_owned(),
            state: state(hash.starts_with('!'), expiry),
        }
    }

    #[test]
    fn login_names() {
        for good in ["alice", "_svc", "a-b_c9", "host$", "a"] {
            assert_eq!(login_name(good), Ok(good), "{good}");
        }
        let long = "a".repeat(33);
        for bad in [
            "", "$", "Alice", "9lives", "-rf", "a;b", "a b", "$(id)", "a$b", "ä", &long,
        ] {
            let err = login_name(bad).unwrap_err();
            assert!(!err.retryable);
            assert!(err.message.contains("not a valid login name"), "{bad}");
        }
    }

    #[test]
    fn passwd_and_shadow_entries() {
        let line = "alice:x:1001:1001:Alice,,,:/home/alice:/bin/bash\n";
        assert_eq!(parse_passwd(line, "alice"), Ok(1001));
        assert!(parse_passwd(line, "bob").is_err());
        assert!(parse_passwd("alice:x:abc:1:::\n", "alice").is_err());
        let line = "alice:!$y$j9T$abc:19800:0:99999:7::1:\n";
        let (hash, got) = parse_shadow(line, "alice").unwrap();
        assert_eq!((hash.as_str(), got), ("!$y$j9T$abc", state(true, "1")));
        let (_, got) = parse_shadow("alice:$y$x:19800:0:99999:7:::\n", "alice").unwrap();
        assert_eq!(got, state(false, ""));
        assert!(parse_shadow("alice:x:1\n", "alice").is_err());
    }

    #[test]
    fn previous_round_trips_and_is_checked() {
        let previous = state(false, "20000");
        assert_eq!(parse_previous(&previous.to_json()), Ok(previous));
        for bad in [
            json!("x"),
            json!({"locked": "no", "expiry": ""}),
            json!({"locked": false}),
            json!({"locked": false, "expiry": "-e 0"}),
            json!({"locked": false, "expiry": "", "shell": "/bin/sh"}),
        ] {
            assert!(parse_previous(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enable_restores_exactly_what_was_there() {
        // Disabled from an unlocked account with no expiry: unlock and clear.
        let plan = plan_enable(&account("!$y$abc", "1"), &state(false, ""));
        assert_eq!(plan.args, ["-U", "-e", ""]);
        assert_eq!(plan.expected, state(false, ""));
        // A lock that predates the disable stays; the old expiry comes back.
        let plan = plan_enable(&account("!$y$abc", "1"), &state(true, "20000"));
        assert_eq!(plan.args, ["-e", "20000"]);
        assert_eq!(plan.expected, state(true, "20000"));
        // Already as it should be: nothing runs.
        let plan = plan_enable(&account("$y$abc", ""), &state(false, ""));
        assert!(plan.args.is_empty());
    }

    #[test]
    fn a_hash_of_only_bang_is_not_unlocked_but_reported() {
        let plan = plan_enable(&account("!", "1"), &state(false, ""));
        assert_eq!(plan.args, ["-e", ""]);
        assert_eq!(plan.expected, state(true, ""));
        assert_eq!(plan.warnings.len(), 1);
        // A doubly locked hash stays locked after one -U, and the plan expects that.
        let plan = plan_enable(&account("!!$y$abc", "1"), &state(false, ""));
        assert_eq!(plan.expected, state(true, ""));
    }

    #[test]
    fn usermod_ends_options_before_the_name() {
        let command = usermod(&["-L", "-e", "1"], "alice");
        assert_eq!(command.display(), "usermod -L -e 1 -- alice");
    }

    #[test]
    fn uid_zero_and_uids_below_the_minimum_are_refused() {
        for (uid, below, refused) in [
            (0, 0, true),
            (0, 1000, true),
            (1, 1000, true),
            (999, 1000, true),
            (1000, 1000, false),
            (65534, 1000, false),
            (1, 0, false),
        ] {
            let result = check_uid("x", uid, below);
            assert_eq!(
                result.is_err(),
                refused,
                "uid {uid} below {below}: {result:?}"
            );
            assert!(result.err().is_none_or(|e| !e.retryable));
        }
        assert_eq!(
            check_uid("daemon", 1, 1000).unwrap_err().message,
            "refused: account daemon has uid 1, below 1000: system accounts are protected"
        );
    }

    /// `daemon` (uid 1 on Debian) is refused by disable and revoke, dry run or not, before
    /// anything changes: its shadow entry stays as it was and a process of it keeps running.
    /// Re-enabling (an undo) is not held back.
    #[tokio::test]
    #[expect(
        clippy::disallowed_methods,
        reason = "the test starts a process as `daemon`, as any service would run"
    )]
    async fn a_system_account_is_refused_before_anything_runs() {
        if !host::enabled() {
            return;
        }
        let uid = read_uid("daemon")
            .await
            .expect("the host has a daemon account");
        assert!((1..1000).contains(&uid), "daemon has uid {uid}");
        let shadow = getent("shadow", "daemon").await.unwrap();
        let mut process = std::process::Command::new("setpriv")
            .args([
                "--reuid=daemon",
                "--regid=daemon",
                "--clear-groups",
                "sleep",
                "60",
            ])
            .spawn()
            .expect("setpriv runs");
        let expected = format!(
            "refused: account daemon has uid {uid}, below 1000: system accounts are protected"
        );
        for dry_run in [false, true] {
            let cx = Context {
                dry_run,
                ..Context::test(COMMAND_TIMEOUT)
            };
            let disable_daemon = Disable {
                account: "daemon".to_owned(),
                reason: "test".to_owned(),
            };
            let failure = disable(&disable_daemon, 1000, &cx).await.unwrap_err();
            assert_eq!(failure.message, expected);
            assert!(!failure.retryable);
            let revoke = RevokeSessions {
                account: "daemon".to_owned(),
            };
            let failure = revoke_sessions(&revoke, 1000, &cx).await.unwrap_err();
            assert_eq!(failure.message, expected);
            assert!(!failure.retryable);
        }
        let running = process.try_wait().expect("the process is there");
        let _ = process.kill();
        let _ = process.wait();
        assert_eq!(running, None, "the process of daemon was not killed");
        assert_eq!(getent("shadow", "daemon").await.unwrap(), shadow);
        let enable_daemon = Enable {
            account: "daemon".to_owned(),
            previous: None,
        };
        let cx = Context {
            dry_run: true,
            ..Context::test(COMMAND_TIMEOUT)
        };
        let out = enable(&enable_daemon, &cx)
            .await
            .expect("an undo only restores");
        assert_eq!(out["account"], "daemon", "{out}");
    }
}
