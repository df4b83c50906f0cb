//! What can go wrong in a command, and the exit code each outcome maps to.
//!
//! Commands return `Result<Exit, Error>`; `main` turns both into the process exit code and the
//! one-line message on stderr, in one place.

use std::io;

use tonic::Code;

/// How a command that ran to its end tells the shell what happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done; for a followed run, the run succeeded.
    Success,
    /// The command did its work and found a failure: an invalid playbook, a failed run.
    Failure,
    /// A followed run was cancelled.
    Cancelled,
    /// A followed run ended in a state this client does not know.
    Unknown,
    /// A followed run halted: it waits for an operator to resume or cancel it.
    Halted,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::Cancelled => 3,
            Exit::Unknown => 4,
            Exit::Halted => 5,
        }
    }
}

/// Why a command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or an input named on it is wrong (bad argument, unreadable file).
    #[error("{0}")]
    Usage(String),
    /// The orchestrator could not be reached, or the connection broke during a call.
    #[error(
        "cannot reach the orchestrator at {addr}: {cause} \
         (is riposte-orchestrator running? set --addr or RIPOSTE_ADDR)"
    )]
    Unreachable { addr: String, cause: String },
    /// The orchestrator answered the request with an error status.
    #[error("{}: {}", code_words(.0.code()), .0.message())]
    Refused(tonic::Status),
    /// A decision was asked for a step that is not in the list of pending approvals.
    #[error("run {run_id} step {step_id} is not waiting for a decision")]
    NotWaiting { run_id: String, step_id: String },
    /// The orchestrator's answer lacks something the protocol promises.
    #[error("unexpected answer from the orchestrator: {0}")]
    Reply(String),
    /// A followed run's event stream broke before the run finished.
    #[error("lost the event stream of run {run_id}: {cause}")]
    StreamLost { run_id: String, cause: String },
    /// Writing to stdout failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] io::Error),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Unreachable { .. } => 2,
            Error::Refused(_) | Error::NotWaiting { .. } | Error::Reply(_) | Error::Output(_) => 1,
            Error::StreamLost { .. } => 4,
        }
    }

    /// The lines to print on stderr: one, or one per line of a multi-line status message (the
    /// orchestrator sends every diagnostic of an invalid playbook, one per line).
    pub fn lines(&self) -> Vec<String> {
        match self {
            Error::Refused(status) if status.message().contains('\n') => {
                let mut lines = vec![format!("error: {}:", code_words(status.code()))];
                lines.extend(message_lines(status.message()).map(|line| format!("  {line}")));
                lines
            }
            other => vec![format!("error: {other}")],
        }
    }

    /// True when stdout was closed by its reader (`riposte runs list | head`), which is not a
    /// failure worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(error) if error.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// The non-empty lines of a status message.
pub fn message_lines(message: &str) -> impl Iterator<Item = &str> {
    message
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
}

/// A gRPC status code in words, as the CLI prints it (`not found`).
pub fn code_words(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_request_reads_as_code_and_message() {
        let error = Error::Refused(tonic::Status::not_found("playbook `nope` not found"));
        assert_eq!(
            error.lines(),
            ["error: not found: playbook `nope` not found"]
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn permission_denied_is_a_refusal_in_words() {
        let status = tonic::Status::permission_denied(
            "mallory is not in the approver groups of step `block` (secops)",
        );
        let error = Error::Refused(status);
        assert_eq!(
            error.lines(),
            [
                "error: permission denied: mallory is not in the approver groups of step \
                 `block` (secops)"
            ]
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn a_step_not_waiting_is_a_clear_failure() {
        let error = Error::NotWaiting {
            run_id: "r-1".into(),
            step_id: "block".into(),
        };
        assert_eq!(
            error.lines(),
            ["error: run r-1 step block is not waiting for a decision"]
        );
        assert_eq!(error.exit_code(), 1);
    }

    #[test]
    fn exit_codes_are_stable() {
        let codes: Vec<_> = [
            Exit::Success,
            Exit::Failure,
            Exit::Cancelled,
            Exit::Unknown,
            Exit::Halted,
        ]
        .into_iter()
        .map(Exit::code)
        .collect();
        assert_eq!(codes, [0, 1, 3, 4, 5]);
    }

    #[test]
    fn multi_line_message_is_printed_line_by_line() {
        let status = tonic::Status::invalid_argument("3:5: steps[0]: bad\n\n4:1: name: missing\n");
        let lines = Error::Refused(status).lines();
        assert_eq!(
            lines,
            [
                "error: invalid argument:",
                "  3:5: steps[0]: bad",
                "  4:1: name: missing"
            ]
        );
    }

    #[test]
    fn unreachable_names_the_address_and_the_way_out() {
        let error = Error::Unreachable {
            addr: "http://127.0.0.1:7470".into(),
            cause: "connection refused".into(),
        };
        assert_eq!(
            error.lines(),
            [
                "error: cannot reach the orchestrator at http://127.0.0.1:7470: connection refused \
                 (is riposte-orchestrator running? set --addr or RIPOSTE_ADDR)"
            ]
        );
        assert_eq!(error.exit_code(), 2);
    }
}
