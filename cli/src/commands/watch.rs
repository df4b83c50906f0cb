//! Following a run's event stream (`run --wait`, `runs watch`) and reading a finished run's
//! history (`runs show`).

use std::fmt::Display;

use riposte_proto::v1::{Run, RunEvent, RunStatus};

use super::now_ms;
use crate::args::Format;
use crate::client::{Client, Events};
use crate::error::{Error, Exit};
use crate::output::{Out, problem};
use crate::{json, text};

/// The kind of the last event of every run's history.
const RUN_FINISHED: &str = "run.finished";
/// The kind of the event of a rollout that stopped to wait for an operator.
const RUN_HALTED: &str = "run.halted";

/// Prints each event of `events` as it arrives until the run finishes, then the run itself (a
/// summary line, or the final run as the last JSON line). The exit code tells how it ended.
///
/// A queued run is followed until it ends. A run that halts stops the following with exit code
/// 5, as it waits for an operator; a halt (or an end) that the run has since left behind (it was
/// resumed or reopened) is history, and the following goes on.
pub async fn follow(
    client: &mut Client,
    out: &mut Out,
    mut events: Events,
    run_id: &str,
) -> Result<Exit, Error> {
    loop {
        let event = match events.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(lost(run_id, "the stream ended before the run finished")),
            Err(error) => return Err(lost(run_id, error)),
        };
        print_event(out, &event)?;
        match event.kind.as_str() {
            RUN_FINISHED => {
                let run = client.get_run(run_id).await;
                if run.as_ref().is_ok_and(|run| !text::ended(run.status())) {
                    continue;
                }
                // The exit code rests on the finished event; the run is fetched only for the
                // summary.
                print_final(out, run)?;
                return Ok(exit(event.run_status()));
            }
            RUN_HALTED => {
                let run = client.get_run(run_id).await;
                if run
                    .as_ref()
                    .is_ok_and(|run| run.status() != RunStatus::Halted)
                {
                    continue;
                }
                print_halted(out, run, run_id, &event.message)?;
                return Ok(Exit::Halted);
            }
            _ => {}
        }
    }
}

/// The summary of a run that ended: one line, or the run as the last JSON line.
fn print_final(out: &mut Out, run: Result<Run, Error>) -> Result<(), Error> {
    match run {
        Ok(run) => match out.format() {
            Format::Json => out.record(&json::run(&run, now_ms())),
            Format::Table if run.dry_run => {
                out.line(&text::summary(&run, now_ms()))?;
                out.lines(&text::plan(&run))
            }
            Format::Table => out.line(&text::summary(&run, now_ms())),
        },
        Err(error) => {
            error.lines().iter().for_each(|line| problem(line));
            Ok(())
        }
    }
}

/// A halted run: its steps (what succeeded, failed, is still pending) and the way out, on
/// stdout for people; the run as the last JSON line and the way out on stderr for scripts.
fn print_halted(
    out: &mut Out,
    run: Result<Run, Error>,
    run_id: &str,
    message: &str,
) -> Result<(), Error> {
    let run = match run {
        Ok(run) => run,
        Err(error) => {
            error.lines().iter().for_each(|line| problem(line));
            let line = text::halted(run_id, message);
            if out.format() == Format::Table {
                return out.line(&line);
            }
            problem(&line);
            return Ok(());
        }
    };
    let error = if run.error.is_empty() {
        message
    } else {
        &run.error
    };
    let line = text::halted(run_id, error);
    match out.format() {
        Format::Json => {
            out.record(&json::run(&run, now_ms()))?;
            problem(&line);
            Ok(())
        }
        Format::Table => {
            out.line("")?;
            out.lines(&text::run(&run, now_ms()))?;
            out.line("")?;
            out.line(&line)
        }
    }
}

/// The history of a finished run: every stored event, including those recorded after
/// `run.finished` (late results rejected, a reopen by a repair). The stream of a finished run
/// ends after its stored history.
pub async fn history(client: &mut Client, run_id: &str) -> Result<Vec<RunEvent>, Error> {
    let mut events = client.watch_run(run_id).await?;
    let mut history = Vec::new();
    while let Some(event) = events.next().await? {
        history.push(event);
    }
    Ok(history)
}

/// The error for a stream that broke before the run finished.
pub fn lost(run_id: &str, cause: impl Display) -> Error {
    Error::StreamLost {
        run_id: run_id.to_string(),
        cause: cause.to_string(),
    }
}

fn print_event(out: &mut Out, event: &RunEvent) -> Result<(), Error> {
    match out.format() {
        Format::Json => out.record(&json::event(event)),
        Format::Table => out.line(&text::event(event)),
    }
}

/// The exit code of a followed run that ended with `status`.
fn exit(status: RunStatus) -> Exit {
    match status {
        RunStatus::Succeeded => Exit::Success,
        RunStatus::Failed => Exit::Failure,
        RunStatus::Cancelled => Exit::Cancelled,
        RunStatus::Running | RunStatus::Queued | RunStatus::Halted | RunStatus::Unspecified => {
            Exit::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_final_status() {
        let codes: Vec<_> = [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::Unspecified,
        ]
        .into_iter()
        .map(|status| exit(status).code())
        .collect();
        assert_eq!(codes, [0, 1, 3, 4]);
    }
}
