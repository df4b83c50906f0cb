//! The arguments of the commands on alerts, rules and schedules.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Apply rule files: store each (replacing one of the same name); prints
    /// `FILE:LINE:COL: PATH: MESSAGE` per problem and exits 1 when any file is invalid.
    Apply(RuleFiles),
    /// The rules in evaluation order, disabled ones too.
    List,
    /// One rule: its settings, whether it is enabled, and its YAML source.
    Show(RuleName),
    /// Disable a rule: it matches no alert until enabled (applying it again keeps it
    /// disabled). Recorded with your name and the reason.
    Disable(RuleChangeArgs),
    /// Enable a disabled rule.
    Enable(RuleChangeArgs),
    /// Delete a rule; alerts it decided keep their fate and run.
    Delete(RuleName),
    /// Which enabled rule an alert payload would match, the parameters it would pass, its
    /// dedup key and whether an existing run would absorb it; nothing is stored or started.
    Test(AlertSendArgs),
}

#[derive(Debug, Args)]
pub struct RuleFiles {
    /// Rule YAML files; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScheduleFiles {
    /// Schedule YAML files; `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RuleName {
    /// The rule's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct RuleChangeArgs {
    /// The rule's name.
    pub name: String,
    /// Why, recorded with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// Send an alert payload (stored durably with its fate before the answer).
    Send(AlertSendArgs),
    /// The alerts received, newest first, with their fate and run.
    List(AlertsListArgs),
    /// One alert: when it came, its fate and run, its normalised entities and the payload as
    /// received (pretty JSON, or the syslog line).
    Show(AlertId),
    /// Run a stored alert's payload through today's rules again: as a new alert with its own
    /// fate, or with `--dry-run` only say what would happen (nothing stored or started).
    Replay(ReplayArgs),
    /// The alert pollers (Sentinel incidents, Defender alerts): each one's cursor, last
    /// success, lag, errors, what it ingested and which worker holds it now.
    Sources,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The alert's id (from `alerts list`).
    pub id: String,
    /// Only say which rule would match, with which parameters and fate.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct AlertSendArgs {
    /// The payload file (`-` for stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Which format it is in.
    #[arg(long, value_parser = alert_source())]
    pub source: String,
}

#[derive(Debug, Args)]
pub struct AlertsListArgs {
    /// At most this many alerts [default: 100]; more than one page is fetched as needed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Every alert stored, page after page.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct AlertId {
    /// The alert's id (as listed).
    pub id: String,
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Apply schedule files: store each (replacing one of the same name) or confirm it is
    /// unchanged; prints `FILE:LINE:COL: PATH: MESSAGE` per problem and exits 1 when any file
    /// is invalid or refused.
    Apply(ScheduleFiles),
    /// List the schedules with their next fire and the fate of their latest occurrence.
    List,
    /// The ledger of a schedule, newest first: each occurrence's fate and its run.
    History(ScheduleHistoryArgs),
    /// Fire one run now (through the overlap policy; ignores pause and windows).
    Trigger(ScheduleName),
    /// Record each occurrence as `paused` until resumed; nothing fires or catches up later.
    Pause(SchedulePauseArgs),
    /// Fire again from the next occurrence on.
    Resume(SchedulePauseArgs),
    /// Delete a schedule: it fires no more; runs it started go on and its history stays
    /// readable.
    Delete(ScheduleName),
}

#[derive(Debug, Args)]
pub struct ScheduleName {
    /// The schedule's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ScheduleHistoryArgs {
    /// The schedule's name.
    pub name: String,
    /// At most this many entries [default: 20]; more than one page is fetched as needed.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "all")]
    pub limit: Option<u32>,
    /// Every entry of the ledger, page after page.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct SchedulePauseArgs {
    /// The schedule's name.
    pub name: String,
    /// Why, recorded with your name.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `--source`: an alert source in its one spelling (the ones `--help` lists); an old spelling
/// is accepted, hidden from `--help`, with a warning on stderr.
fn alert_source() -> impl clap::builder::TypedValueParser<Value = String> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    let spellings = riposte_proto::ALERT_SOURCES
        .iter()
        .map(|name| PossibleValue::new(*name))
        .chain(
            riposte_proto::ALERT_SOURCES_RENAMED
                .iter()
                .map(|(old, _)| PossibleValue::new(*old).hide(true)),
        );
    PossibleValuesParser::new(spellings).map(|text| match riposte_proto::alert_source(&text) {
        Some((name, true)) => {
            crate::output::problem(&format!(
                "warning: source `{text}` is now spelled `{name}` (as rules see it); accepted"
            ));
            name.to_string()
        }
        Some((name, false)) => name.to_string(),
        None => text,
    })
}
