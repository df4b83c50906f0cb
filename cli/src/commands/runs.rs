//! `riposte runs list|show|watch|cancel|retry-step|skip-step|resume`.

use riposte_proto::v1::{CancelRunRequest, ListRunsRequest, RepairRequest, Run, RunStatus};
use serde_json::{Value, json};

use super::{now_ms, pages, wanted, watch};
use crate::args::{CancelArgs, Format, ListRunsArgs, ResumeArgs, StepRepairArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Lists runs, newest first, page after page until `--limit` (100) runs or, with `--all`,
/// every run.
pub async fn list(client: &mut Client, out: &mut Out, args: &ListRunsArgs) -> Result<Exit, Error> {
    let wanted = wanted(args.all, args.limit, 100);
    let runs = pages(wanted, async |limit, page_token| {
        let request = ListRunsRequest {
            playbook: args.playbook.clone().unwrap_or_default(),
            status: args
                .status
                .map_or(RunStatus::Unspecified, |status| status.to_proto())
                as i32,
            limit,
            page_token,
        };
        let page = client.list_runs(request).await?;
        Ok((page.runs, page.next_page_token))
    })
    .await?;
    let now = now_ms();
    match out.format() {
        Format::Json => out.document(&runs.iter().map(|run| json::run(run, now)).collect())?,
        Format::Table => out.lines(&text::runs(&runs, now))?,
    }
    Ok(Exit::Success)
}

/// Shows a run and its steps and, once it has finished, its history.
///
/// The history of a running run is not shown: WatchRun does not mark where the stored history
/// ends and live events begin, so any cut-off would be a guess. `runs watch` follows it.
pub async fn show(client: &mut Client, out: &mut Out, run_id: &str) -> Result<Exit, Error> {
    let run = client.get_run(run_id).await?;
    let history = if text::ended(run.status()) {
        Some(watch::history(client, run_id).await?)
    } else {
        None
    };
    let now = now_ms();
    match (out.format(), history) {
        (Format::Json, history) => {
            let events = history.map(|events| events.iter().map(json::event).collect::<Value>());
            out.document(&json!({ "run": json::run(&run, now), "events": events }))?;
        }
        (Format::Table, Some(history)) => {
            out.lines(&text::run(&run, now))?;
            out.line("")?;
            out.line("HISTORY")?;
            let lines: Vec<_> = history.iter().map(text::event).collect();
            out.lines(&lines)?;
        }
        (Format::Table, None) => {
            out.lines(&text::run(&run, now))?;
            out.line("")?;
            out.lines(&text::unfinished(&run))?;
        }
    }
    Ok(Exit::Success)
}

/// Follows a run: its history, then live events until it finishes.
pub async fn watch(client: &mut Client, out: &mut Out, run_id: &str) -> Result<Exit, Error> {
    let events = client.watch_run(run_id).await?;
    watch::follow(client, out, events, run_id).await
}

/// Asks for a run's cancellation and prints its new status.
pub async fn cancel(client: &mut Client, out: &mut Out, args: &CancelArgs) -> Result<Exit, Error> {
    let request = CancelRunRequest {
        run_id: args.run_id.clone(),
        reason: args.reason.clone().unwrap_or_default(),
    };
    let run = client.cancel_run(request).await?;
    match out.format() {
        Format::Json => out.document(&json::run(&run, now_ms()))?,
        Format::Table => out.line(&text::cancelled(&run))?,
    }
    Ok(Exit::Success)
}

/// Runs a failed step again and prints the run's new status.
pub async fn retry_step(
    client: &mut Client,
    out: &mut Out,
    args: &StepRepairArgs,
) -> Result<Exit, Error> {
    let run = client.retry_step(step_repair(args)).await?;
    print_repaired(out, &run)
}

/// Skips a step and prints the run's new status.
pub async fn skip_step(
    client: &mut Client,
    out: &mut Out,
    args: &StepRepairArgs,
) -> Result<Exit, Error> {
    let run = client.skip_step(step_repair(args)).await?;
    print_repaired(out, &run)
}

/// Resumes a halted run and prints its new status.
pub async fn resume(client: &mut Client, out: &mut Out, args: &ResumeArgs) -> Result<Exit, Error> {
    let request = RepairRequest {
        run_id: args.run_id.clone(),
        step_id: String::new(),
        reason: args.reason.clone().unwrap_or_default(),
    };
    let run = client.resume_run(request).await?;
    print_repaired(out, &run)
}

/// The request of a repair of one step; an empty reason lets the orchestrator record its own.
fn step_repair(args: &StepRepairArgs) -> RepairRequest {
    RepairRequest {
        run_id: args.run_id.clone(),
        step_id: args.step.clone(),
        reason: args.reason.clone().unwrap_or_default(),
    }
}

fn print_repaired(out: &mut Out, run: &Run) -> Result<Exit, Error> {
    match out.format() {
        Format::Json => out.document(&json::run(run, now_ms()))?,
        Format::Table => out.line(&text::repaired(run))?,
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command, RunsCommand};
    use clap::Parser;

    fn command(argv: &[&str]) -> RunsCommand {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()));
        match cli.map(|cli| cli.command) {
            Ok(Command::Runs(command)) => command,
            other => panic!("expected a runs command, got {other:?}"),
        }
    }

    #[test]
    fn step_repairs_name_the_step_the_operator_and_the_reason() {
        let RunsCommand::RetryStep(args) = command(&[
            "runs",
            "retry-step",
            "r-1",
            "block",
            "--reason",
            "firewall fixed",
        ]) else {
            panic!("expected retry-step");
        };
        let request = step_repair(&args);
        assert_eq!(
            request,
            RepairRequest {
                run_id: "r-1".into(),
                step_id: "block".into(),
                reason: "firewall fixed".into(),
            }
        );
        let RunsCommand::SkipStep(args) = command(&["runs", "skip-step", "r-1", "notify"]) else {
            panic!("expected skip-step");
        };
        assert_eq!(step_repair(&args).reason, "");
    }
}
