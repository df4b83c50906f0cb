//! `riposte`: the operator command-line client of a Riposte orchestrator.
//!
//! It talks to the orchestrator only through the `Operator` gRPC service (`playbook test` asks
//! no orchestrator: it plays test files on this machine). This file parses the
//! command line, runs the command and turns its outcome into the exit code: 0 done, 1 refused
//! or failed (permission denied included), 2 usage or connection problem, 3 followed run
//! cancelled, 4 event stream lost, 5 followed run halted.

mod args;
mod client;
mod commands;
mod credentials;
mod display;
mod error;
mod json;
mod output;
mod text;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::args::{Cli, usage_error_line};
use crate::output::problem;

/// Exit code of a usage problem.
const USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            problem(&format!("error: cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::dispatch(cli)) {
        Ok(exit) => ExitCode::from(exit.code()),
        // The reader closed stdout (`| head`): nothing is wrong, and no one is listening.
        Err(error) if error.is_broken_pipe() => ExitCode::SUCCESS,
        Err(error) => {
            error.lines().iter().for_each(|line| problem(line));
            ExitCode::from(error.exit_code())
        }
    }
}

/// Help and version go to stdout as clap renders them; a refused command line is one line on
/// stderr and exit code 2.
fn clap_exit(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(USAGE)
        }
        _ => {
            problem(&usage_error_line(&error.render().to_string()));
            ExitCode::from(USAGE)
        }
    }
}
