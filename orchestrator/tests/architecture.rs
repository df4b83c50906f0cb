//! The dependency graph is part of the architecture: checks it from `cargo metadata`.
//!
//! - `riposte-playbooks` is pure: no IO or async crates.
//! - `riposte-proto` is a leaf: none of our crates.
//! - `riposte-worker` depends on neither the orchestrator nor the playbook language.

use std::process::Command;

use serde_json::Value;

fn dependencies(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let pkg = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("package {package} is in the workspace"));
    pkg["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn playbooks_is_pure() {
    let deps = dependencies("riposte-playbooks");
    for banned in [
        "tokio",
        "sled",
        "tonic",
        "reqwest",
        "hyper",
        "riposte-proto",
    ] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "riposte-playbooks depends on {banned}"
        );
    }
}

#[test]
fn proto_is_a_leaf() {
    let deps = dependencies("riposte-proto");
    assert!(
        !deps.iter().any(|d| d.starts_with("riposte-")),
        "riposte-proto depends on {deps:?}"
    );
}

#[test]
fn worker_stays_independent() {
    let deps = dependencies("riposte-worker");
    for banned in ["riposte-orchestrator", "riposte-playbooks", "sled"] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "riposte-worker depends on {banned}"
        );
    }
}

/// The pure cores inside the orchestrator crate (the DAG scheduler, alert parsing, schedule
/// planning, the guard) do no IO and read no clock: no path of theirs names an IO or async
/// crate, the store, the clock module or the system clocks.
#[test]
fn pure_cores_do_no_io() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let banned = [
        "tokio",
        "sled",
        "tonic",
        "reqwest",
        "std::fs",
        "std::net::Tcp",
        "std::net::Udp",
        "crate::store",
        "crate::clock",
        "SystemTime::now",
        "Instant::now",
        "Utc::now",
        "Local::now",
    ];
    let mut files = Vec::new();
    for dir in ["scheduler", "ingest", "schedule"] {
        collect_rs(&src.join(dir), &mut files);
    }
    files.push(src.join("guard.rs"));
    assert!(files.len() > 10, "the pure cores are found: {files:?}");
    for file in files {
        let source = std::fs::read_to_string(&file).expect("source file");
        // Code only: comments may name what the code does not touch.
        let code: Vec<&str> = source
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect();
        let text = code.join("\n");
        for word in banned {
            assert!(
                !text.contains(word),
                "{} mentions `{word}`: the pure cores do no IO",
                file.display()
            );
        }
    }
}

fn collect_rs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}
