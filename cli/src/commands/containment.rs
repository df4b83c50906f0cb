//! `riposte containment pause|resume|status`: the kill switch for containment actions.

use riposte_proto::v1::ContainmentRequest;

use super::now_ms;
use crate::args::{ContainmentCommand, Format};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Pauses, resumes or shows the kill switch.
pub async fn run(
    client: &mut Client,
    out: &mut Out,
    command: &ContainmentCommand,
) -> Result<Exit, Error> {
    let status = match command {
        ContainmentCommand::Pause(args) => {
            client
                .pause_containment(request(args.reason.as_deref()))
                .await?
        }
        ContainmentCommand::Resume(args) => {
            client
                .resume_containment(request(args.reason.as_deref()))
                .await?
        }
        ContainmentCommand::Status => client.get_containment().await?,
    };
    match out.format() {
        Format::Json => out.document(&json::containment(&status))?,
        Format::Table => out.lines(&text::containment(&status, now_ms()))?,
    }
    Ok(Exit::Success)
}

/// The request; an empty reason lets the orchestrator record its own.
fn request(reason: Option<&str>) -> ContainmentRequest {
    ContainmentRequest {
        reason: reason.unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> (ContainmentCommand, ()) {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()))
            .expect("a valid command line");
        match cli.command {
            Command::Containment(command) => (command, ()),
            other => panic!("expected containment, got {other:?}"),
        }
    }

    #[test]
    fn pause_carries_why() {
        let (command, ()) = parse(&["containment", "pause", "--reason", "false positives"]);
        let ContainmentCommand::Pause(args) = command else {
            panic!("expected pause");
        };
        let request = request(args.reason.as_deref());
        assert_eq!(request.reason, "false positives");
        let (command, _) = parse(&["containment", "resume"]);
        assert!(matches!(command, ContainmentCommand::Resume(ref a) if a.reason.is_none()));
        let (command, _) = parse(&["containment", "status"]);
        assert!(matches!(command, ContainmentCommand::Status));
    }
}
