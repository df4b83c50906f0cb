//! `riposte playbook test` (offline: the files are played on this machine, no orchestrator is
//! asked) and `riposte runs export-test` (a finished run's history written as a test file).

use std::fmt::Write as _;
use std::path::PathBuf;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use riposte_playtest::export::{Entry, Recording, Step};
use riposte_playtest::{FileOutcome, Outcome};
use riposte_proto::v1::GetPlaybookRequest;
use serde_json::{Map, Value, json};

use super::watch;
use crate::args::{ExportTestArgs, Format, TestArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{display, text};

/// Plays every test file; exit 1 when any test fails or cannot be played.
pub fn test(out: &mut Out, args: &TestArgs) -> Result<Exit, Error> {
    let files = riposte_playtest::expand(&args.paths).map_err(|e| Error::Usage(e.to_string()))?;
    let outcomes: Vec<FileOutcome> = files
        .iter()
        .map(|file| riposte_playtest::run_file(file))
        .collect();
    let (passed, failed) = outcomes
        .iter()
        .fold((0, 0), |(p, f), o| (p + o.passed(), f + o.failed()));
    match out.format() {
        Format::Json => out.document(&Value::Array(outcomes.iter().map(file_json).collect()))?,
        Format::Table => {
            for outcome in &outcomes {
                out.lines(&file_lines(outcome, args.verbose))?;
            }
            out.line(&format!(
                "{passed} passed, {failed} failed ({} files)",
                outcomes.len()
            ))?;
        }
    }
    if let Some(path) = &args.junit {
        let xml = junit(&outcomes)?;
        std::fs::write(path, xml).map_err(|e| {
            Error::Usage(format!(
                "cannot write the JUnit report {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(if failed == 0 {
        Exit::Success
    } else {
        Exit::Failure
    })
}

fn file_lines(outcome: &FileOutcome, verbose: bool) -> Vec<String> {
    let file = outcome.path.display();
    let mut lines = Vec::new();
    if let Err(e) = &outcome.playbook {
        lines.push(format!("FAIL {file}: cannot be played"));
        lines.extend(e.to_string().lines().map(|l| format!("     {l}")));
        return lines;
    }
    for (name, result) in &outcome.tests {
        match result {
            Ok(o) if o.passed() => {
                lines.push(format!("ok   {file}: {name}"));
                if verbose {
                    lines.extend(o.history.iter().map(|h| format!("     {h}")));
                }
            }
            Ok(o) => {
                lines.push(format!("FAIL {file}: {name}"));
                let text = failure_text(o);
                let indented = text
                    .lines()
                    .map(|l| format!("     {l}").trim_end().to_string());
                lines.extend(indented);
            }
            Err(e) => {
                lines.push(format!("FAIL {file}: {name}: the test cannot be played"));
                lines.push(format!("     {e}"));
            }
        }
    }
    lines
}

/// Why a test failed: each expectation's diff, each problem, then the run's history.
fn failure_text(outcome: &Outcome) -> String {
    let mut text = String::new();
    for mismatch in &outcome.mismatches {
        let _ = writeln!(text, "{mismatch}");
    }
    for problem in &outcome.problems {
        let _ = writeln!(text, "{problem}");
    }
    let _ = writeln!(text, "history:");
    for line in &outcome.history {
        let _ = writeln!(text, "  {line}");
    }
    text
}

fn file_json(outcome: &FileOutcome) -> Value {
    let tests: Vec<Value> = outcome
        .tests
        .iter()
        .map(|(name, result)| match result {
            Ok(o) => json!({
                "name": name,
                "passed": o.passed(),
                "mismatches": o.mismatches.iter().map(|m| json!({
                    "what": m.what, "expected": m.expected, "actual": m.actual,
                })).collect::<Vec<_>>(),
                "problems": o.problems,
                "history": o.history,
            }),
            Err(e) => json!({ "name": name, "passed": false, "error": e.to_string() }),
        })
        .collect();
    json!({
        "file": outcome.path.display().to_string(),
        "playbook": outcome.playbook.as_ref().ok(),
        "error": outcome.playbook.as_ref().err().map(ToString::to_string),
        "tests": tests,
    })
}

/// The JUnit XML report: a suite per file, a case per test.
fn junit(outcomes: &[FileOutcome]) -> Result<String, Error> {
    let mut report = Report::new("riposte playbook test");
    for outcome in outcomes {
        let mut suite = TestSuite::new(outcome.path.display().to_string());
        if let Err(e) = &outcome.playbook {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message("the file cannot be played");
            status.set_description(e.to_string());
            suite.add_test_case(TestCase::new("(file)", status));
        }
        for (name, result) in &outcome.tests {
            let status = match result {
                Ok(o) if o.passed() => TestCaseStatus::success(),
                Ok(o) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let what: Vec<&str> = o.mismatches.iter().map(|m| m.what.as_str()).collect();
                    status.set_message(match what.is_empty() {
                        true => "the run did something it should not".to_string(),
                        false => format!("not as expected: {}", what.join(", ")),
                    });
                    status.set_description(failure_text(o));
                    status
                }
                Err(e) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
                    status.set_message("the test cannot be played");
                    status.set_description(e.to_string());
                    status
                }
            };
            suite.add_test_case(TestCase::new(name.as_str(), status));
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .map_err(|e| Error::Reply(format!("cannot write the JUnit report: {e}")))
}

/// Writes a finished run as a test file on standard output.
pub async fn export(
    client: &mut Client,
    out: &mut Out,
    args: &ExportTestArgs,
) -> Result<Exit, Error> {
    let run = client.get_run(&args.run_id).await?;
    if !text::ended(run.status()) {
        return Err(Error::Usage(format!(
            "run {} has not ended ({}); a test is written from a finished run",
            run.run_id,
            display::run_status(run.status())
        )));
    }
    let history = watch::history(client, &args.run_id).await?;
    let request = GetPlaybookRequest {
        name: run.playbook.clone(),
        version: run.version,
    };
    let playbook = client.get_playbook(request).await?;
    let compiled = riposte_playbooks::compile(&playbook.source).map_err(|_| {
        Error::Reply(format!(
            "the stored playbook {}@{} does not compile here",
            run.playbook, run.version
        ))
    })?;
    let params: Map<String, Value> = serde_json::from_str(&run.params_json).unwrap_or_default();
    let steps = run
        .steps
        .iter()
        .map(|step| Step {
            id: step.id.clone(),
            status: display::step_status(step.status()).to_string(),
            output: serde_json::from_str(&step.output_json).unwrap_or(Value::Null),
            for_each: compiled
                .step_index(&step.id)
                .is_some_and(|i| compiled.steps[i].for_each.is_some()),
        })
        .collect();
    let recording = Recording {
        playbook_file: args
            .playbook_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", run.playbook)))
            .display()
            .to_string(),
        run_id: run.run_id.clone(),
        params,
        requested_by: run.requested_by.clone(),
        dry_run: run.dry_run,
        created_at_ms: run.created_at_ms,
        status: display::run_status(run.status()).to_string(),
        error: run.error.clone(),
        steps,
        history: history
            .iter()
            .map(|e| Entry {
                at_ms: e.at_ms,
                kind: e.kind.clone(),
                step: e.step_id.clone(),
                item: e.item,
                attempt: e.attempt,
                message: e.message.clone(),
            })
            .collect(),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("run {} replayed", run.run_id));
    out.text(&riposte_playtest::export::test_file(&recording, &name))?;
    Ok(Exit::Success)
}
