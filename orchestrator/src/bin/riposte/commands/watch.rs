//! Following a run's event stream (`run --wait`, `runs watch`) and reading a finished run's
//! history (`runs show`).

use std::fmt::Display;

use riposte_proto::v1::{RunEvent, RunStatus};

use super::now_ms;
use crate::args::Format;
use crate::client::{Client, Events};
use crate::error::{Error, Exit};
use crate::output::{Out, problem};
use crate::{json, text};

/// The kind of the last event of every run's history.
const RUN_FINISHED: &str = "run.finished";

/// Prints each event of `events` as it arrives until the run finishes, then the run itself (a
/// summary line, or the final run as the last JSON line). The exit code tells how it ended.
pub async fn follow(
    client: &mut Client,
    out: &mut Out,
    mut events: Events,
    run_id: &str,
) -> Result<Exit, Error> {
    let status = loop {
        let event = match events.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return Err(lost(run_id, "the stream ended before the run finished")),
            Err(error) => return Err(lost(run_id, error)),
        };
        print_event(out, &event)?;
        if event.kind == RUN_FINISHED {
            break event.run_status();
        }
    };
    // The exit code rests on the finished event; the run is fetched only for the summary.
    match client.get_run(run_id).await {
        Ok(run) => match out.format() {
            Format::Json => out.record(&json::run(&run, now_ms()))?,
            Format::Table => out.line(&text::summary(&run, now_ms()))?,
        },
        Err(error) => error.lines().iter().for_each(|line| problem(line)),
    }
    Ok(exit(status))
}

/// The history of a finished run: every event up to `run.finished`.
pub async fn history(client: &mut Client, run_id: &str) -> Result<Vec<RunEvent>, Error> {
    let mut events = client.watch_run(run_id).await?;
    let mut history = Vec::new();
    while let Some(event) = events.next().await? {
        let finished = event.kind == RUN_FINISHED;
        history.push(event);
        if finished {
            break;
        }
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
        RunStatus::Running | RunStatus::Unspecified => Exit::Unknown,
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
