//! `riposte approvals list` and `riposte approve`.

use riposte_proto::v1::{DecideRequest, PendingApproval};

use super::now_ms;
use crate::args::{ApproveArgs, Format};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::{Out, problem};
use crate::{json, text};

/// Lists the steps waiting for a decision, each with the input it would act on.
pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let approvals = client.list_approvals().await?.approvals;
    match out.format() {
        Format::Json => out.document(&approvals.iter().map(json::approval).collect())?,
        Format::Table => out.lines(&text::approvals(&approvals, now_ms()))?,
    }
    Ok(Exit::Success)
}

/// Approves or rejects a step and prints the run's status after.
///
/// The decision binds to a digest of the step's inputs. Given with `--digest`, it is sent as
/// is; otherwise the step's current digest is looked up, and the input it stands for printed
/// on stderr first, so that what is decided is on record next to the decision.
pub async fn approve(
    client: &mut Client,
    out: &mut Out,
    args: &ApproveArgs,
) -> Result<Exit, Error> {
    let approve = !args.reject;
    let digest = match &args.digest {
        Some(digest) => digest.clone(),
        None => {
            let approvals = client.list_approvals().await?.approvals;
            let pending = find(&approvals, &args.run_id, &args.step)?;
            problem(&text::deciding(approve, pending));
            pending.digest.clone()
        }
    };
    let run = client.decide(decide_request(args, digest)).await?;
    match out.format() {
        Format::Json => out.document(&json::run(&run, now_ms()))?,
        Format::Table => out.line(&text::decided(&run, &args.step, approve))?,
    }
    Ok(Exit::Success)
}

/// The pending approval of `step` in run `run_id`.
fn find<'a>(
    approvals: &'a [PendingApproval],
    run_id: &str,
    step: &str,
) -> Result<&'a PendingApproval, Error> {
    approvals
        .iter()
        .find(|approval| approval.run_id == run_id && approval.step_id == step)
        .ok_or_else(|| Error::NotWaiting {
            run_id: run_id.to_string(),
            step_id: step.to_string(),
        })
}

fn decide_request(args: &ApproveArgs, digest: String) -> DecideRequest {
    DecideRequest {
        run_id: args.run_id.clone(),
        step_id: args.step.clone(),
        approve: !args.reject,
        digest,
        comment: args.comment.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parse(argv: &[&str]) -> (ApproveArgs, ()) {
        let cli = Cli::try_parse_from(std::iter::once("riposte").chain(argv.iter().copied()))
            .expect("a valid command line");
        match cli.command {
            Command::Approve(args) => (args, ()),
            other => panic!("expected approve, got {other:?}"),
        }
    }

    fn pending(run_id: &str, step_id: &str) -> PendingApproval {
        PendingApproval {
            run_id: run_id.into(),
            step_id: step_id.into(),
            digest: format!("{run_id}/{step_id}"),
            ..PendingApproval::default()
        }
    }

    #[test]
    fn approving_sends_the_digest_and_the_comment() {
        let digest = "AB".repeat(32);
        let (args, ()) = parse(&[
            "approve",
            "r-1",
            "block",
            "--comment",
            "checked the IP",
            "--digest",
            &digest,
        ]);
        assert_eq!(args.digest.as_deref(), Some("ab".repeat(32).as_str()));
        let request = decide_request(&args, "ab".repeat(32));
        let expected = DecideRequest {
            run_id: "r-1".into(),
            step_id: "block".into(),
            approve: true,
            digest: "ab".repeat(32),
            comment: "checked the IP".into(),
        };
        assert_eq!(request, expected);
    }

    #[test]
    fn reject_sends_a_negative_decision() {
        let (args, ()) = parse(&["approve", "r-1", "block", "--reject"]);
        assert_eq!(args.digest, None);
        let request = decide_request(&args, "d".into());
        assert!(!request.approve);
        assert_eq!(request.comment, "");
    }

    #[test]
    fn the_pending_approval_is_found_by_run_and_step() {
        let approvals = [pending("r-1", "gate"), pending("r-2", "block")];
        assert_eq!(
            find(&approvals, "r-2", "block").unwrap().digest,
            "r-2/block"
        );
        let error = find(&approvals, "r-1", "block").unwrap_err();
        assert_eq!(
            error.to_string(),
            "run r-1 step block is not waiting for a decision"
        );
        assert_eq!(error.exit_code(), 1);
    }
}
