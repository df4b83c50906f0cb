//! Data-driven tests of `compile`: every `tests/data/*.yaml` is compiled and the outcome is
//! compared with the `.expected` file beside it (the plan of a valid playbook, or the
//! diagnostics of an invalid one, one per line). A case named `ok-*` must compile and one
//! named `err-*` must not, so that a snapshot update cannot silently flip a case.
//!
//! To accept new outcomes: `UPDATE_EXPECT=1 cargo test -p riposte-playbooks --test cases`,
//! then review the diff of `tests/data/`.
//!
//! Also here: every playbook in `examples/` compiles, and the crate depends on no IO library.

use std::fs;
use std::path::{Path, PathBuf};

/// The text a case is compared on, and whether it compiled.
fn outcome(source: &str) -> (bool, String) {
    match riposte_playbooks::compile(source) {
        Ok(playbook) => (true, playbook.plan()),
        Err(diagnostics) => {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            (false, lines.join("\n") + "\n")
        }
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Checks one case; returns a description of the mismatch, if any.
fn check_case(path: &Path, update: bool) -> Option<String> {
    let source = fs::read_to_string(path).expect("case source");
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let (compiled, actual) = outcome(&source);
    let must_compile = name.starts_with("ok-");
    if !must_compile && !name.starts_with("err-") {
        return Some(format!("{name}: case names start with `ok-` or `err-`"));
    }
    if compiled != must_compile {
        return Some(format!(
            "{name}: compiled = {compiled}, expected {must_compile}:\n{actual}"
        ));
    }
    let expected_path = path.with_extension("expected");
    let expected = fs::read_to_string(&expected_path).unwrap_or_default();
    if expected == actual {
        return None;
    }
    if update {
        fs::write(&expected_path, &actual).expect("write expected file");
        return None;
    }
    Some(format!(
        "{name}: outcome differs\n--- expected\n{expected}--- actual\n{actual}"
    ))
}

#[test]
fn data_cases_match_their_expected_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let files = yaml_files(&dir);
    assert!(
        files.len() >= 40,
        "only {} cases found in {}",
        files.len(),
        dir.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| check_case(path, update))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed (UPDATE_EXPECT=1 accepts new outcomes):\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn every_expected_file_has_a_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for entry in fs::read_dir(&dir).expect("data dir") {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "expected") {
            assert!(
                path.with_extension("yaml").exists(),
                "orphan {}",
                path.display()
            );
        }
    }
}

#[test]
fn every_example_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let files = yaml_files(&dir);
    let names: Vec<_> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect();
    for required in [
        "approval-demo.yaml",
        "diamond.yaml",
        "grant-demo.yaml",
        "hello.yaml",
        "noop-chain.yaml",
        "retry.yaml",
    ] {
        assert!(names.contains(&required), "examples/{required} is missing");
    }
    for path in &files {
        let source = fs::read_to_string(path).expect("example source");
        if let Err(diagnostics) = riposte_playbooks::compile(&source) {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            panic!("{} does not compile:\n{}", path.display(), lines.join("\n"));
        }
    }
}

#[test]
fn every_builtin_playbook_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("builtin");
    let files = yaml_files(&dir);
    let mut names: Vec<_> = files
        .iter()
        .filter_map(|p| p.file_name()?.to_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "account-disable.yaml",
            "ip-block.yaml",
            "jit-access-grant.yaml",
            "patch-deployment.yaml"
        ]
    );
    for path in &files {
        let source = fs::read_to_string(path).expect("playbook source");
        match riposte_playbooks::compile(&source) {
            Ok(playbook) => {
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                assert_eq!(
                    playbook.name,
                    stem,
                    "{} is named after its file",
                    path.display()
                );
            }
            Err(diagnostics) => {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                panic!("{} does not compile:\n{}", path.display(), lines.join("\n"));
            }
        }
    }
}

#[test]
fn examples_have_the_documented_shape() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let load = |name: &str| {
        let source = fs::read_to_string(dir.join(name)).expect("example source");
        riposte_playbooks::compile(&source).expect("example compiles")
    };
    let hello = load("hello.yaml");
    assert_eq!(hello.steps.len(), 1);
    assert_eq!(hello.steps[0].action, "core.echo");
    assert_eq!(hello.params[0].default, Some(serde_json::json!("world")));

    let chain = load("noop-chain.yaml");
    let ids: Vec<&str> = chain.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    assert!(chain.params.is_empty());
    assert!(chain.steps.iter().all(|s| s.action == "core.noop"));

    let retry = load("retry.yaml");
    assert_eq!(retry.steps[0].retry.attempts, 3);
    assert_eq!(
        retry.steps[0].retry.backoff,
        riposte_playbooks::Backoff::Fixed
    );
    assert_eq!(retry.steps[0].retry.initial_ms, 100);
    assert_eq!(
        retry.steps[0].with["attempts_failing"],
        serde_json::json!(2)
    );

    let diamond = load("diamond.yaml");
    assert!(diamond.steps.iter().any(|s| s.when.is_some()));
    assert!(
        diamond
            .steps
            .iter()
            .any(|s| s.for_each.as_ref().is_some_and(|f| f.concurrency == 2))
    );

    let grant = load("grant-demo.yaml");
    assert_eq!(grant.steps.len(), 1);
    let open = &grant.steps[0];
    assert_eq!(open.action, "core.echo");
    assert_eq!(
        open.undo.as_ref().map(|u| u.action.as_str()),
        Some("core.echo")
    );
    let ttl = &open.grant.as_ref().expect("a grant").ttl;
    assert_eq!(ttl, "{{ params.duration }}");
    assert_eq!(grant.params[0].name, "duration");
    assert_eq!(grant.params[0].default, Some(serde_json::json!("30s")));
    assert_eq!(grant.params[1].ty, riposte_playbooks::ParamType::String);

    let approval = load("approval-demo.yaml");
    assert_eq!(approval.steps.len(), 1);
    let act = &approval.steps[0];
    assert_eq!(act.kind, riposte_playbooks::StepKind::Action);
    assert_eq!(act.action, "core.echo");
    assert_eq!(
        act.approval,
        Some(riposte_playbooks::Approval {
            approvers: vec!["soc-leads".to_string()],
            min: 1,
            timeout_ms: 15 * 60 * 1000,
            on_timeout: riposte_playbooks::ApprovalOutcome::Reject,
        })
    );
}

/// The language is pure: its manifest names no runtime, storage or network library.
#[test]
fn the_crate_depends_on_no_io_library() {
    let manifest = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("manifest");
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    for forbidden in ["tokio", "sled", "tonic", "reqwest", "futures", "hyper"] {
        assert!(
            !dependencies
                .lines()
                .any(|line| line.trim_start().starts_with(forbidden)),
            "playbooks must not depend on {forbidden}"
        );
    }
}
