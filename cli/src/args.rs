//! The command line: the verb tree with its flags (clap derive) and the pure parsers behind
//! the values that need more than a type (`KEY=VALUE`, `PLAYBOOK@VERSION`, the address).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use riposte_proto::v1::RunStatus;
use serde_json::{Map, Value};

use crate::client::{Addr, normalize_addr};

/// Where the orchestrator listens unless `--addr` or `RIPOSTE_ADDR` says otherwise.
pub const ADDR_DEFAULT: &str = "127.0.0.1:7470";

/// What the top-level help ends with: how the process exit code reads.
const EXIT_CODES: &str = "\
Exit codes:
  0  done; a followed run succeeded
  1  refused by the orchestrator, or failed (invalid playbook, failed run, permission denied)
  2  usage error, or the orchestrator cannot be reached
  3  a followed run was cancelled
  4  the event stream of a followed run was lost, or its final state is unknown
  5  a followed run halted (resume it with `riposte runs resume RUN_ID`, or cancel it)";

/// Operate a Riposte orchestrator: playbooks, runs, grants, approvals and workers.
#[derive(Debug, Parser)]
#[command(name = "riposte", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Orchestrator address, `https://HOST:PORT`, `http://HOST:PORT` (plaintext) or
    /// `HOST:PORT` (https when a TLS folder is found).
    #[arg(
        long,
        global = true,
        env = "RIPOSTE_ADDR",
        default_value = ADDR_DEFAULT,
        value_name = "URL",
        value_parser = normalize_addr,
    )]
    pub addr: Addr,
    /// A folder holding the orchestrator's CA (`ca.pem`) and this operator's certificate
    /// (`operator.pem`, `operator.key`), as `riposte certs operator` writes it [default:
    /// ./riposte-data/tls when it exists, what `riposte-orchestrator --dev` makes].
    #[arg(long, global = true, env = "RIPOSTE_TLS_DIR", value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,
    /// Output format: `table` for people, `json` for scripts (one document per command, one
    /// JSON object per line for streams).
    #[arg(long, global = true, value_enum, value_name = "FORMAT", default_value_t = Format::Table)]
    pub output: Format,
    /// Show times in this machine's time zone (RFC 3339 with its offset) instead of UTC.
    #[arg(long, global = true)]
    pub local: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, test, apply and inspect playbooks; list, compare, roll back and delete their
    /// versions.
    #[command(subcommand)]
    Playbook(PlaybookCommand),
    /// Start a run of a playbook, and optionally follow it to its end.
    Run(RunArgs),
    /// List, inspect, follow, cancel and repair runs, and export one as a playbook test.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List the open grants of all runs, and revoke one before its TTL.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// List the steps waiting for a decision, with exactly what each would do.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Approve (or with `--reject`, reject) a step waiting for a decision; prints the run's
    /// status after.
    Approve(ApproveArgs),
    /// Inspect the workers registered with the orchestrator.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// A certificate authority for a deployment: create it, then issue the orchestrator's
    /// server certificate and a client certificate per worker and operator (no orchestrator
    /// needed; see docs/security.md).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// The kill switch: pause containment (no block, disable or session revoke is handed to
    /// a worker; undos and other actions go on), resume it, or show its status.
    #[command(subcommand)]
    Containment(ContainmentCommand),
    /// Cron schedules that start runs by themselves: apply, list, history (the fate of every
    /// occurrence), trigger now, pause, resume and delete.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Alerts: send a payload as a listener would, list the alerts received with their fate,
    /// show one (entities, fate, run, payload), replay one through today's rules.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Alert rules: which alerts start which playbook, with dedup and budgets.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Who the orchestrator takes you for (your principal, as it verified your certificate or
    /// token), and what its policy lets you do.
    Whoami,
    /// The audit log (admin): every change and every refused request, who (as authenticated),
    /// from where, with the request's digest; hash-chained so that an edit shows.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Static API tokens for automation: make one (no orchestrator needed).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// The newest records (a table, or one JSON document).
    List(AuditListArgs),
    /// Every record the filters keep, newest first, one JSON object per line (for a SIEM).
    Export(AuditFilters),
    /// Check the whole chain; exit 1 naming the first record that breaks it.
    Verify,
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[command(flatten)]
    pub filters: AuditFilters,
    /// At most this many records [default: 50].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Every record.
    #[arg(long)]
    pub all: bool,
}

/// Which audit records `list` and `export` keep.
#[derive(Debug, Args)]
pub struct AuditFilters {
    /// Only this principal's records, e.g. `cert:alice`.
    #[arg(long, value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// Only this action (`run.start`) or family (`run.*`).
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only records that were carried out (`ok`) or refused (`refused`).
    #[arg(long, value_parser = ["ok", "refused"])]
    pub outcome: Option<String>,
    /// Only records of the last DURATION, e.g. `24h`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<std::time::Duration>,
}

impl AuditFilters {
    /// `--since` as the earliest time in ms since the epoch; 0 without it.
    pub fn since_ms(&self) -> i64 {
        self.since.map_or(0, |since| {
            crate::commands::now_ms() - since.as_millis() as i64
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Write a new token to FILE (readable by you alone) and print the line to add to the
    /// orchestrator's `--api-tokens` file; the principal is `token:NAME`.
    New(TokenNewArgs),
}

#[derive(Debug, Args)]
pub struct TokenNewArgs {
    /// The token's name: 1 to 64 letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// Where to write the token (created, mode 0600; an existing file is not overwritten).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ContainmentCommand {
    /// Hold every task of a containment action at the dispatch door until resumed; prints
    /// the status.
    Pause(ReasonArgs),
    /// Hand the held tasks out again; prints the status.
    Resume(ReasonArgs),
    /// Whether containment is paused, by whom, since when, why, and how many tasks are held.
    Status,
}

#[derive(Debug, Args)]
pub struct ReasonArgs {
    /// Why, recorded with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PlaybookCommand {
    /// Check playbooks without applying them; prints `FILE:LINE:COL: PATH: MESSAGE` per
    /// problem and exits 1 when any playbook is invalid.
    Validate(Files),
    /// Apply playbooks: store each as a new version, or confirm it is unchanged.
    Apply(Files),
    /// List each playbook at its default version (the latest, unless rolled back with
    /// `playbook default`).
    List,
    /// Show a playbook's parameters and steps.
    Show(ShowArgs),
    /// Every stored version of a playbook, and which is the default (the one a run, rule or
    /// schedule naming no version gets).
    Versions(PlaybookName),
    /// The differences between two versions' sources, as a unified diff.
    Diff(DiffArgs),
    /// Make a version the default (roll back); `0` or the latest follows the latest again.
    Default(VersionArgs),
    /// Delete a version that no rule, schedule or live run uses.
    Delete(VersionArgs),
    /// Run playbook tests offline (no orchestrator, no worker): each test file plays runs of
    /// its playbook through the real compiler and scheduler on a manual clock, with scripted
    /// action results, approvals and operator actions, and checks what they expect. A folder
    /// stands for its `*.test.yaml` files. Exits 1 when any test fails (docs/first-month.md).
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct PlaybookName {
    /// The playbook's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The playbook's name.
    pub name: String,
    /// The older version.
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub from: u32,
    /// The newer version.
    #[arg(value_parser = clap::value_parser!(u32).range(1..))]
    pub to: u32,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// The playbook's name.
    pub name: String,
    /// The version.
    pub version: u32,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files (`*.test.yaml`) or folders holding them.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Also write a JUnit XML report to this file, for CI.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Print each test's run history, also when it passes.
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct Files {
    /// Playbook YAML files; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Playbook name.
    pub name: String,
    /// Version to show [default: the default version: the latest, unless rolled back].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub version: Option<u32>,
    /// Print exactly the stored YAML source instead (it can be piped into `playbook apply`);
    /// with `--output json`, the source is a field beside the rest.
    #[arg(long)]
    pub source: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Playbook to run: `NAME` for its default version (the latest, unless rolled back), or
    /// `NAME@VERSION`.
    #[arg(value_name = "PLAYBOOK[@VERSION]", value_parser = parse_playbook_ref)]
    pub playbook: PlaybookRef,
    /// A parameter as `KEY=VALUE` (repeatable). Values are sent as strings; the orchestrator
    /// converts them to the declared parameter types.
    #[arg(
        short = 'p',
        long = "param",
        value_name = "KEY=VALUE",
        value_parser = parse_param,
        conflicts_with = "params_json"
    )]
    pub params: Vec<Param>,
    /// All parameters as one JSON object, e.g. `{"ip": "203.0.113.7", "duration": "1h"}`.
    #[arg(long, value_name = "JSON", value_parser = parse_params_json)]
    pub params_json: Option<Map<String, Value>>,
    /// Start at most one run for this key: repeating the command answers the existing run.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// A plan: every task is sent as a dry run (connectors report what they would change and
    /// change nothing); sleeps, grant TTLs and approvals are recorded and fire at once; no
    /// concurrency key is taken; guards still apply.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the run until it finishes, one line per event. Exit code: 0 succeeded, 1 failed,
    /// 3 cancelled, 4 event stream lost or final state unknown, 5 halted (a rollout that
    /// waits for `riposte runs resume` or a cancel). A queued run is followed until it ends.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List(ListRunsArgs),
    /// Show a run: its state, its steps with their outputs and, once it has finished, its
    /// history.
    Show(RunId),
    /// Follow a run: its history, then live events until it finishes. Exit codes as for
    /// `riposte run --wait`.
    Watch(RunId),
    /// Ask the orchestrator to cancel a run; prints the run's new status.
    Cancel(CancelArgs),
    /// Run a failed step again (its failed items, for a `for_each` step); reopens a failed
    /// run. Prints the run's new status.
    RetryStep(StepRepairArgs),
    /// Mark a failed or stuck step as skipped so that the run goes on without it. Prints the
    /// run's new status.
    SkipStep(StepRepairArgs),
    /// Continue a halted rollout: the failures so far are forgiven, a failed health gate is
    /// waived. Prints the run's new status.
    Resume(ResumeArgs),
    /// Write a finished run as a playbook test (YAML, on standard output): its parameters,
    /// what each task answered, what approvers and operators did, and what the run showed.
    /// `riposte playbook test` plays it again; the playbook itself is
    /// `riposte playbook show NAME --version N --source`.
    ExportTest(ExportTestArgs),
}

#[derive(Debug, Args)]
pub struct ExportTestArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The test's `playbook:` line: the playbook file, relative to the test file [default:
    /// NAME.yaml].
    #[arg(long, value_name = "PATH")]
    pub playbook_file: Option<PathBuf>,
    /// The test's name [default: "run RUN_ID replayed"].
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct StepRepairArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The step's id.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// Why, recorded in the run's history with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// Why, recorded in the run's history with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunId {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
}

#[derive(Debug, Args)]
pub struct ListRunsArgs {
    /// Only runs of this playbook.
    #[arg(long, value_name = "NAME")]
    pub playbook: Option<String>,
    /// Only runs in this state.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// At most this many runs [default: 100]; more than one page is fetched as needed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Every run the filters keep, page after page.
    #[arg(long)]
    pub all: bool,
}

/// The run states one can filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    Queued,
    Running,
    Halted,
    Succeeded,
    Failed,
    Cancelled,
}

impl StatusFilter {
    /// The wire value of this state.
    pub fn to_proto(self) -> RunStatus {
        match self {
            StatusFilter::Queued => RunStatus::Queued,
            StatusFilter::Running => RunStatus::Running,
            StatusFilter::Halted => RunStatus::Halted,
            StatusFilter::Succeeded => RunStatus::Succeeded,
            StatusFilter::Failed => RunStatus::Failed,
            StatusFilter::Cancelled => RunStatus::Cancelled,
        }
    }
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// Why the run is cancelled, recorded with it.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// List the open grants of all runs (a run does not end while it holds one), with when
    /// each expires and the action that revokes it.
    List,
    /// Revoke a grant now, before its TTL; prints the grant's new status.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The run that holds the grant.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The step that opened the grant.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// The `for_each` item whose grant to revoke (0 for a step without `for_each`).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub item: u32,
    /// Why, recorded in the run's history with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Show each step waiting for a decision: its run, action, approver groups, decisions so
    /// far, deadline, the digest to approve and the rendered input it would act on.
    List,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run's id.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// The step waiting for a decision.
    #[arg(value_name = "STEP")]
    pub step: String,
    /// Reject instead of approve.
    #[arg(long)]
    pub reject: bool,
    /// A comment recorded with the decision.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
    /// The SHA-256 digest (64 hex digits) of the inputs you reviewed. Without it, the step's
    /// current digest is fetched and its input printed on stderr before the decision is sent;
    /// with it, a decision about other inputs is refused.
    #[arg(long, value_name = "HEX", value_parser = parse_digest)]
    pub digest: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Creates a CA in DIR: `ca.pem` (give it to the orchestrator as --client-ca, and to
    /// workers and operators) and `ca.key` (0600; keep it offline). Refuses to overwrite one.
    Init {
        /// The CA's folder (created).
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issues the orchestrator's server certificate: DIR/server.pem and server.key.
    Server {
        /// The CA's folder.
        dir: PathBuf,
        /// A DNS name or IP address clients dial it by; repeat for more.
        #[arg(long = "name", required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u64,
    },
    /// Issues a worker certificate naming identity NAME: DIR/worker-NAME.pem and .key (the
    /// worker's --tls-cert and --tls-key); the worker policy says what NAME may offer.
    Worker {
        /// The CA's folder.
        dir: PathBuf,
        /// The worker's identity.
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u64,
    },
    /// Issues an operator certificate naming NAME into the folder DIR/operator-NAME, with the
    /// CA beside it: the CLI's --tls-dir.
    Operator {
        /// The CA's folder.
        dir: PathBuf,
        /// The operator's identity.
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 397)]
        days: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkersCommand {
    /// List the registered workers with their load.
    List,
}

/// A playbook and the version to run; version 0 means its default version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybookRef {
    pub name: String,
    pub version: u32,
}

/// One `-p KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: String,
}

/// Parses `NAME` or `NAME@VERSION` (VERSION a positive integer).
pub(crate) fn parse_playbook_ref(text: &str) -> Result<PlaybookRef, String> {
    let (name, version) = match text.rsplit_once('@') {
        None => (text, 0),
        Some((name, version)) => {
            let version = version
                .parse::<u32>()
                .ok()
                .filter(|version| *version > 0)
                .ok_or_else(|| {
                    format!("expected NAME@VERSION with VERSION a positive integer, got `{text}`")
                })?;
            (name, version)
        }
    };
    if name.is_empty() {
        return Err(format!("expected a playbook name, got `{text}`"));
    }
    Ok(PlaybookRef {
        name: name.to_string(),
        version,
    })
}

/// Parses `KEY=VALUE`; the value may be empty and may contain `=`.
pub(crate) fn parse_param(text: &str) -> Result<Param, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!(
            "expected KEY=VALUE with a non-empty KEY, got `{text}`"
        ));
    }
    Ok(Param {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Parses the `--params-json` object.
pub(crate) fn parse_params_json(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(params)) => Ok(params),
        Ok(_) => Err("expected a JSON object".to_string()),
        Err(error) => Err(format!("invalid JSON: {error}")),
    }
}

/// Parses a SHA-256 digest: 64 hex digits, answered in lowercase as the orchestrator prints it.
pub(crate) fn parse_digest(text: &str) -> Result<String, String> {
    let digest = text.trim();
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "expected a SHA-256 digest of 64 hex digits, got `{text}`"
        ));
    }
    Ok(digest.to_ascii_lowercase())
}

/// The one line to print for a command line clap refused: the first paragraph of clap's
/// message, joined (`error: the following required arguments were not provided: <FILE>...`).
pub fn usage_error_line(rendered: &str) -> String {
    rendered
        .trim_start()
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

mod objects;
#[cfg(test)]
mod tests;

pub use objects::*;
