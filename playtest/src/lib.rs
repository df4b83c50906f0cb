//! Playbook tests: runs of a playbook played offline through the real compiler and the real
//! scheduler, on a manual clock, with the answers of actions, approvers and operators scripted
//! by a test file, and compared with what the test expects (steps run and skipped, undo order,
//! grants opened and revoked, approvals requested, the final status and outputs).
//!
//! Pure but for `file`, the edge that reads a test file and its playbook. Codemap: [`format`]
//! (the test file), `sim` (the run played), `expect` (what it shows against what is expected,
//! with diffs), [`export`] (a test file written from a finished run's history).

mod expect;
pub mod export;
mod file;
pub mod format;
mod sim;

use std::sync::Arc;

use riposte_playbooks::Playbook;

pub use expect::{Mismatch, contains};
pub use file::{FileOutcome, expand, run_file};
pub use format::{Case, Suite, parse};
pub use sim::{START_DEFAULT_MS, WORKER};

/// Why a test could not be played: the file or the test itself is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.join("\n"))]
    File(Vec<String>),
    #[error("{0}")]
    Case(String),
}

/// How one test went.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Empty when the test passed.
    pub mismatches: Vec<Mismatch>,
    /// Things the run refused or that could not happen (an event after the end); each fails
    /// the test.
    pub problems: Vec<String>,
    /// The run's history, one line per entry, time counted from the start.
    pub history: Vec<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty() && self.problems.is_empty()
    }
}

/// Plays one test of `playbook` and compares what happened with what it expects.
pub fn run(playbook: &Arc<Playbook>, case: &Case) -> Result<Outcome, Error> {
    let played = sim::play(playbook.clone(), case)?;
    let facts = expect::Facts::of(playbook, &played);
    let mismatches = facts.compare(&case.expect)?;
    let history = played
        .history
        .iter()
        .map(|event| {
            let at = (event.at_ms - played.start_ms).max(0) as u64;
            let mut line = format!(
                "{:>8} {}",
                riposte_playbooks::format_duration_ms(at),
                event.kind
            );
            if !event.step.is_empty() {
                line.push_str(&format!(" {}", event.step));
                if event.item > 0 {
                    line.push_str(&format!("[{}]", event.item));
                }
            }
            if event.attempt > 0 {
                line.push_str(&format!(" attempt {}", event.attempt));
            }
            if !event.message.is_empty() {
                line.push_str(&format!(": {}", event.message));
            }
            line
        })
        .collect();
    Ok(Outcome {
        name: case.name.clone(),
        mismatches,
        problems: played.problems,
        history,
    })
}

/// Reads a duration of a test file (`at`, `takes`, `ended`).
pub(crate) fn duration_ms(what: &str, text: &str) -> Result<i64, Error> {
    riposte_playbooks::parse_duration_ms(text)
        .map(|ms| ms as i64)
        .map_err(|e| Error::Case(format!("{what}: {e}")))
}
