//! One function per verb: each asks the orchestrator through [`Client`] and prints through
//! [`Out`] in the chosen format, returning how the command ended.

mod access;
mod alerts;
mod approvals;
mod audit;
mod certs;
mod containment;
mod grants;
mod playbook;
mod playtest;
mod rules;
mod run;
mod runs;
mod schedules;
mod versions;
mod watch;
mod workers;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::{
    AlertsCommand, ApprovalsCommand, AuditCommand, Cli, Command, GrantsCommand, PlaybookCommand,
    RulesCommand, RunsCommand, SchedulesCommand, TokensCommand, WorkersCommand,
};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;

/// Runs the command the operator typed.
pub async fn dispatch(cli: Cli) -> Result<Exit, Error> {
    crate::display::show_local_times(cli.local);
    if let Command::Certs(command) = &cli.command {
        return certs::run(command, &mut Out::new(cli.output));
    }
    if let Command::Tokens(TokensCommand::New(args)) = &cli.command {
        return access::new_token(&mut Out::new(cli.output), args);
    }
    if let Command::Playbook(PlaybookCommand::Test(args)) = &cli.command {
        return playtest::test(&mut Out::new(cli.output), args);
    }
    let found = Path::new(crate::client::DEV_TLS_DIR);
    let tls_dir = cli
        .tls_dir
        .as_deref()
        .or_else(|| found.join("ca.pem").exists().then_some(found));
    let token = crate::credentials::from_env().await?;
    let mut client = Client::new(crate::client::target(&cli.addr, tls_dir)?, token);
    let mut out = Out::new(cli.output);
    let (client, out) = (&mut client, &mut out);
    match cli.command {
        Command::Playbook(PlaybookCommand::Validate(args)) => {
            playbook::validate(client, out, &args.files).await
        }
        Command::Playbook(PlaybookCommand::Apply(args)) => {
            playbook::apply(client, out, &args.files).await
        }
        Command::Playbook(PlaybookCommand::List) => playbook::list(client, out).await,
        Command::Playbook(PlaybookCommand::Show(args)) => playbook::show(client, out, &args).await,
        Command::Playbook(PlaybookCommand::Test(_)) => unreachable!("played before connecting"),
        Command::Playbook(PlaybookCommand::Versions(args)) => {
            versions::list(client, out, &args.name).await
        }
        Command::Playbook(PlaybookCommand::Diff(args)) => versions::diff(client, out, &args).await,
        Command::Playbook(PlaybookCommand::Default(args)) => {
            versions::set_default(client, out, &args).await
        }
        Command::Playbook(PlaybookCommand::Delete(args)) => {
            versions::delete(client, out, &args).await
        }
        Command::Run(args) => run::start(client, out, &args).await,
        Command::Runs(RunsCommand::List(args)) => runs::list(client, out, &args).await,
        Command::Runs(RunsCommand::Show(args)) => runs::show(client, out, &args.run_id).await,
        Command::Runs(RunsCommand::Watch(args)) => runs::watch(client, out, &args.run_id).await,
        Command::Runs(RunsCommand::Cancel(args)) => runs::cancel(client, out, &args).await,
        Command::Runs(RunsCommand::RetryStep(args)) => runs::retry_step(client, out, &args).await,
        Command::Runs(RunsCommand::SkipStep(args)) => runs::skip_step(client, out, &args).await,
        Command::Runs(RunsCommand::Resume(args)) => runs::resume(client, out, &args).await,
        Command::Runs(RunsCommand::ExportTest(args)) => playtest::export(client, out, &args).await,
        Command::Grants(GrantsCommand::List) => grants::list(client, out).await,
        Command::Grants(GrantsCommand::Revoke(args)) => grants::revoke(client, out, &args).await,
        Command::Approvals(ApprovalsCommand::List) => approvals::list(client, out).await,
        Command::Approve(args) => approvals::approve(client, out, &args).await,
        Command::Workers(WorkersCommand::List) => workers::list(client, out).await,
        Command::Certs(_) | Command::Tokens(_) => unreachable!("handled before connecting"),
        Command::Whoami => access::whoami(client, out).await,
        Command::Audit(AuditCommand::List(args)) => audit::list(client, out, &args).await,
        Command::Audit(AuditCommand::Export(args)) => audit::export(client, out, &args).await,
        Command::Audit(AuditCommand::Verify) => audit::verify(client, out).await,
        Command::Containment(command) => containment::run(client, out, &command).await,
        Command::Schedules(SchedulesCommand::Apply(args)) => {
            schedules::apply(client, out, &args.files).await
        }
        Command::Schedules(SchedulesCommand::List) => schedules::list(client, out).await,
        Command::Schedules(SchedulesCommand::History(args)) => {
            schedules::history(client, out, &args).await
        }
        Command::Schedules(SchedulesCommand::Trigger(args)) => {
            schedules::trigger(client, out, &args.name).await
        }
        Command::Schedules(SchedulesCommand::Pause(args)) => {
            schedules::pause(client, out, &args, true).await
        }
        Command::Schedules(SchedulesCommand::Resume(args)) => {
            schedules::pause(client, out, &args, false).await
        }
        Command::Schedules(SchedulesCommand::Delete(args)) => {
            schedules::delete(client, out, &args.name).await
        }
        Command::Alerts(AlertsCommand::Send(args)) => alerts::send(client, out, &args).await,
        Command::Alerts(AlertsCommand::List(args)) => alerts::list(client, out, &args).await,
        Command::Alerts(AlertsCommand::Show(args)) => alerts::show(client, out, &args.id).await,
        Command::Alerts(AlertsCommand::Replay(args)) => alerts::replay(client, out, &args).await,
        Command::Alerts(AlertsCommand::Sources) => alerts::sources(client, out).await,
        Command::Rules(RulesCommand::Apply(args)) => rules::apply(client, out, &args.files).await,
        Command::Rules(RulesCommand::List) => rules::list(client, out).await,
        Command::Rules(RulesCommand::Show(args)) => rules::show(client, out, &args.name).await,
        Command::Rules(RulesCommand::Disable(args)) => {
            rules::enable(client, out, &args, false).await
        }
        Command::Rules(RulesCommand::Enable(args)) => rules::enable(client, out, &args, true).await,
        Command::Rules(RulesCommand::Delete(args)) => rules::delete(client, out, &args.name).await,
        Command::Rules(RulesCommand::Test(args)) => rules::test(client, out, &args).await,
    }
}

/// The current time in Unix epoch milliseconds: the only place the CLI reads the clock (to show
/// how long unfinished things have been going).
#[expect(clippy::disallowed_methods, reason = "this is the CLI's clock")]
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Entries one page holds at most (the server's bound on a list call).
const PAGE_MAX: usize = 1000;

/// How many entries a list command wants: all of them, `--limit`, or its default.
fn wanted(all: bool, limit: Option<u32>, default: u32) -> usize {
    match all {
        true => usize::MAX,
        false => limit.unwrap_or(default) as usize,
    }
}

/// Fetches page after page until `wanted` entries or the last page. `fetch(limit, token)`
/// answers a page and the token of the next ("" after the last).
async fn pages<T>(
    wanted: usize,
    mut fetch: impl AsyncFnMut(u32, String) -> Result<(Vec<T>, String), Error>,
) -> Result<Vec<T>, Error> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let limit = (wanted - entries.len()).min(PAGE_MAX) as u32;
        let (page, next) = fetch(limit, page_token).await?;
        entries.extend(page);
        page_token = next;
        if page_token.is_empty() || entries.len() >= wanted {
            return Ok(entries);
        }
    }
}
