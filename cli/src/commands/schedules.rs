//! `riposte schedules apply|list|history|trigger|pause|resume`: cron schedules and their
//! ledger.

use std::path::PathBuf;

use riposte_proto::v1::{
    ApplyScheduleResponse, DeleteScheduleRequest, GetScheduleHistoryRequest, PauseScheduleRequest,
    TriggerScheduleRequest,
};
use serde_json::Value;

use super::playbook::read_sources;
use super::{now_ms, pages, wanted};
use crate::args::{Format, ScheduleHistoryArgs, SchedulePauseArgs};
use crate::client::Client;
use crate::error::{Error, Exit, code_words, message_lines};
use crate::output::{Out, problem};
use crate::{json, text};

/// Applies each file; an invalid or refused file is reported (diagnostics on stderr) and the
/// others still go; exit 1 when any was not applied.
pub async fn apply(client: &mut Client, out: &mut Out, files: &[PathBuf]) -> Result<Exit, Error> {
    let mut documents = Vec::new();
    let mut failed = false;
    for source in read_sources(files)? {
        let outcome = match client.apply_schedule(source.text).await {
            Ok(reply) => Ok(reply),
            Err(Error::Refused(status)) => Err(status),
            Err(other) => return Err(other),
        };
        failed |= outcome
            .as_ref()
            .map_or(true, |reply| !reply.diagnostics.is_empty());
        match out.format() {
            Format::Json => documents.push(apply_document(&source.file, &outcome)),
            Format::Table => print_applied(out, &source.file, &outcome)?,
        }
    }
    if out.format() == Format::Json {
        out.document(&Value::Array(documents))?;
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

fn apply_document(file: &str, outcome: &Result<ApplyScheduleResponse, tonic::Status>) -> Value {
    match outcome {
        Ok(reply) => json::schedule_applied(file, reply),
        Err(status) => {
            let lines: Vec<_> = message_lines(status.message()).collect();
            json::refused(file, code_words(status.code()), &lines)
        }
    }
}

fn print_applied(
    out: &mut Out,
    file: &str,
    outcome: &Result<ApplyScheduleResponse, tonic::Status>,
) -> Result<(), Error> {
    match outcome {
        Ok(reply) if reply.diagnostics.is_empty() => out.line(&text::schedule_applied(reply)),
        Ok(reply) => {
            for diagnostic in &reply.diagnostics {
                problem(&text::diagnostic(file, diagnostic));
            }
            Ok(())
        }
        Err(status) => {
            for line in message_lines(status.message()) {
                problem(&text::refused(file, line));
            }
            Ok(())
        }
    }
}

pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let reply = client.list_schedules().await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(
            reply.schedules.iter().map(json::schedule).collect(),
        ))?,
        Format::Table => out.lines(&text::schedules(&reply.schedules, now_ms()))?,
    }
    Ok(Exit::Success)
}

/// A schedule's ledger, newest first, page after page until `--limit` (20) entries or, with
/// `--all`, every entry.
pub async fn history(
    client: &mut Client,
    out: &mut Out,
    args: &ScheduleHistoryArgs,
) -> Result<Exit, Error> {
    let entries = pages(
        wanted(args.all, args.limit, 20),
        async |limit, page_token| {
            let request = GetScheduleHistoryRequest {
                name: args.name.clone(),
                limit,
                page_token,
            };
            let page = client.schedule_history(request).await?;
            Ok((page.entries, page.next_page_token))
        },
    )
    .await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(
            entries.iter().map(json::ledger_entry).collect(),
        ))?,
        Format::Table => out.lines(&text::ledger(&entries))?,
    }
    Ok(Exit::Success)
}

pub async fn trigger(client: &mut Client, out: &mut Out, name: &str) -> Result<Exit, Error> {
    let request = TriggerScheduleRequest {
        name: name.to_string(),
    };
    let entry = client.trigger_schedule(request).await?;
    match out.format() {
        Format::Json => out.document(&json::ledger_entry(&entry))?,
        Format::Table => out.line(&text::triggered(&entry))?,
    }
    Ok(Exit::Success)
}

pub async fn pause(
    client: &mut Client,
    out: &mut Out,
    args: &SchedulePauseArgs,
    paused: bool,
) -> Result<Exit, Error> {
    let request = PauseScheduleRequest {
        name: args.name.clone(),
        reason: args.reason.clone().unwrap_or_default(),
    };
    let info = client.pause_schedule(request, paused).await?;
    match out.format() {
        Format::Json => out.document(&json::schedule(&info))?,
        Format::Table => out.lines(&text::schedules(std::slice::from_ref(&info), now_ms()))?,
    }
    Ok(Exit::Success)
}

/// Deletes a schedule.
pub async fn delete(client: &mut Client, out: &mut Out, name: &str) -> Result<Exit, Error> {
    let request = DeleteScheduleRequest { name: name.into() };
    let reply = client.delete_schedule(request).await?;
    match out.format() {
        Format::Json => out.document(&serde_json::json!({ "deleted": reply.name }))?,
        Format::Table => out.line(&format!(
            "deleted schedule {}; its history stays: riposte schedules history {}",
            reply.name, reply.name
        ))?,
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command, SchedulesCommand};
    use clap::Parser;

    fn parse(argv: &[&str]) -> SchedulesCommand {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()))
            .expect("a valid command line");
        match cli.command {
            Command::Schedules(command) => command,
            other => panic!("expected schedules, got {other:?}"),
        }
    }

    #[test]
    fn the_verbs_parse_with_their_arguments() {
        let SchedulesCommand::History(args) =
            parse(&["schedules", "history", "beat", "--limit", "5"])
        else {
            panic!("expected history");
        };
        assert_eq!((args.name.as_str(), args.limit), ("beat", Some(5)));
        let SchedulesCommand::Pause(args) = parse(&["schedules", "pause", "beat", "--reason", "x"])
        else {
            panic!("expected pause");
        };
        assert_eq!(args.reason.as_deref(), Some("x"));
        assert!(
            matches!(parse(&["schedules", "trigger", "beat"]), SchedulesCommand::Trigger(a) if a.name == "beat")
        );
        assert!(matches!(
            parse(&["schedules", "list"]),
            SchedulesCommand::List
        ));
        let refused =
            Cli::try_parse_from(["riposte", "schedules", "history", "beat", "--limit", "0"]);
        assert!(refused.is_err(), "a limit of 0 is refused");
    }
}
