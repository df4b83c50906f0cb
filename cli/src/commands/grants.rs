//! `riposte grants list|revoke`.

use riposte_proto::v1::RevokeGrantRequest;

use super::now_ms;
use crate::args::{Format, RevokeArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Lists the open grants of all runs.
pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let grants = client.list_grants().await?.grants;
    match out.format() {
        Format::Json => out.document(&grants.iter().map(json::grant).collect())?,
        Format::Table => out.lines(&text::grants(&grants, now_ms()))?,
    }
    Ok(Exit::Success)
}

/// Revokes one grant now and prints its new status.
pub async fn revoke(client: &mut Client, out: &mut Out, args: &RevokeArgs) -> Result<Exit, Error> {
    let grant = client.revoke_grant(revoke_request(args)).await?;
    match out.format() {
        Format::Json => out.document(&json::grant(&grant))?,
        Format::Table => out.line(&text::grant(&grant))?,
    }
    Ok(Exit::Success)
}

/// The RevokeGrant request; an empty reason lets the orchestrator record its own.
fn revoke_request(args: &RevokeArgs) -> RevokeGrantRequest {
    RevokeGrantRequest {
        run_id: args.run_id.clone(),
        step_id: args.step.clone(),
        item: args.item,
        reason: args.reason.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command, GrantsCommand};
    use clap::Parser;

    fn request(argv: &[&str]) -> RevokeGrantRequest {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()))
            .expect("a valid command line");
        match cli.command {
            Command::Grants(GrantsCommand::Revoke(args)) => revoke_request(&args),
            other => panic!("expected grants revoke, got {other:?}"),
        }
    }

    #[test]
    fn revoke_names_the_grant() {
        let request = request(&[
            "grants",
            "revoke",
            "r-1",
            "block",
            "--item",
            "3",
            "--reason",
            "incident closed",
        ]);
        let expected = RevokeGrantRequest {
            run_id: "r-1".into(),
            step_id: "block".into(),
            item: 3,
            reason: "incident closed".into(),
        };
        assert_eq!(request, expected);
    }

    #[test]
    fn revoke_defaults_to_item_zero_and_no_reason() {
        let request = request(&["grants", "revoke", "r-1", "block"]);
        assert_eq!((request.item, request.reason.as_str()), (0, ""));
    }
}
