//! The edge: a test file read from disk with the playbook it names (relative to it), compiled,
//! and every test in it played. A folder stands for every `*.test.yaml` in it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Outcome, parse, run};

/// How one test file went.
#[derive(Debug)]
pub struct FileOutcome {
    pub path: PathBuf,
    /// The playbook's name, or the file's problem when it could not be played at all.
    pub playbook: Result<String, Error>,
    /// One per test, in file order: how it went, or why it could not be played.
    pub tests: Vec<(String, Result<Outcome, Error>)>,
}

impl FileOutcome {
    pub fn passed(&self) -> usize {
        self.tests
            .iter()
            .filter(|(_, t)| t.as_ref().is_ok_and(Outcome::passed))
            .count()
    }

    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed() + usize::from(self.playbook.is_err())
    }
}

/// The test files named: files as given, folders as their `*.test.yaml` files, sorted.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| io(path, &e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".test.yaml"))
            .collect();
        if found.is_empty() {
            return Err(Error::File(vec![format!(
                "{}: no *.test.yaml file in this folder",
                path.display()
            )]));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Reads, compiles and plays one test file.
pub fn run_file(path: &Path) -> FileOutcome {
    let mut outcome = FileOutcome {
        path: path.to_path_buf(),
        playbook: Err(Error::File(Vec::new())),
        tests: Vec::new(),
    };
    let suite = match read(path).and_then(|text| parse(&text)) {
        Ok(suite) => suite,
        Err(e) => {
            outcome.playbook = Err(e);
            return outcome;
        }
    };
    let file = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&suite.playbook);
    let compiled = read(&file).and_then(|source| {
        riposte_playbooks::compile(&source).map_err(|problems| {
            let lines = problems
                .iter()
                .map(|p| format!("{}:{p}", file.display()))
                .collect();
            Error::File(lines)
        })
    });
    let playbook = match compiled {
        Ok(playbook) => Arc::new(playbook),
        Err(e) => {
            outcome.playbook = Err(e);
            return outcome;
        }
    };
    outcome.playbook = Ok(playbook.name.clone());
    outcome.tests = suite
        .tests
        .iter()
        .map(|case| (case.name.clone(), run(&playbook, case)))
        .collect();
    outcome
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| io(path, &e))
}

fn io(path: &Path, error: &std::io::Error) -> Error {
    Error::File(vec![format!("{}: {error}", path.display())])
}
