//! `riposte runs list|show|watch|cancel`.

use riposte_proto::v1::{CancelRunRequest, ListRunsRequest, RunStatus};
use serde_json::{Value, json};

use super::{now_ms, watch};
use crate::args::{CancelArgs, Format, ListRunsArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Lists runs, newest first.
pub async fn list(client: &mut Client, out: &mut Out, args: &ListRunsArgs) -> Result<Exit, Error> {
    let request = ListRunsRequest {
        playbook: args.playbook.clone().unwrap_or_default(),
        status: args
            .status
            .map_or(RunStatus::Unspecified, |status| status.to_proto()) as i32,
        limit: args.limit.unwrap_or(0),
    };
    let runs = client.list_runs(request).await?.runs;
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
    let finished = matches!(
        run.status(),
        RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
    );
    let history = if finished {
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
            out.line(&format!(
                "the run is still running; follow its history with `riposte runs watch {run_id}`"
            ))?;
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
        requested_by: args.requester.name(std::env::var("USER").ok()),
    };
    let run = client.cancel_run(request).await?;
    match out.format() {
        Format::Json => out.document(&json::run(&run, now_ms()))?,
        Format::Table => out.line(&text::cancelled(&run))?,
    }
    Ok(Exit::Success)
}
