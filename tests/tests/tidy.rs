//! Checks over the source tree that keep the architecture true: the dependency graph, the
//! purity of the cores, a `//!` header on every file, the size of files, typed errors.
//!
//! The dependency graph is checked from `cargo metadata`, over the resolved graph (what a
//! crate pulls in through its dependencies counts too):
//!
//! - The pure cores (`riposte-playbooks`, `riposte-scheduler`, `riposte-ingest`) reach no IO
//!   or async crate and none of the wire API.
//! - `riposte-proto` is a leaf: none of our crates.
//! - `riposte-worker` depends on neither the orchestrator nor the language or the cores.
//! - `riposte-cli` talks gRPC only: none of the server's crates.
//! - The fuzz targets (their own workspace) depend on `riposte-ingest` alone.
//!
//! Over the sources: a `//!` header on every file, no file over 700 lines, and no public
//! function answering `Result<_, String>`.
//!
//! What the crate graph cannot see (a pure core calling `std::fs` or reading a clock) is
//! checked over the pure cores' sources by [`pure_cores_do_no_io`].

#![allow(
    clippy::disallowed_methods,
    reason = "tests act as users and operators do: they start processes, read clocks, send HTTP"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The workspace root.
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
}

fn metadata(manifest: &Path, resolve: bool) -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["metadata", "--format-version", "1", "--offline"])
        .arg("--manifest-path")
        .arg(manifest);
    if resolve {
        // The graph as built here: other platforms' crates were never downloaded.
        command.args(["--filter-platform", &host()]);
    } else {
        command.arg("--no-deps");
    }
    let out = command.output().expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

/// The host's target triple, from `rustc -vV`.
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_string()
}

/// The workspace's resolved graph: package name → names of its normal (not dev, not build)
/// dependencies.
struct Graph(BTreeMap<String, BTreeSet<String>>);

impl Graph {
    /// Read once per test process.
    fn load() -> &'static Graph {
        static GRAPH: OnceLock<Graph> = OnceLock::new();
        GRAPH.get_or_init(Graph::read)
    }

    fn read() -> Graph {
        let meta = metadata(&workspace().join("Cargo.toml"), true);
        let names: BTreeMap<&str, &str> = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        let mut graph = BTreeMap::new();
        for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
            let normal = node["deps"]
                .as_array()
                .expect("deps")
                .iter()
                .filter(|d| {
                    d["dep_kinds"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null()))
                })
                .map(|d| names[d["pkg"].as_str().unwrap()].to_string())
                .collect();
            graph.insert(names[node["id"].as_str().unwrap()].to_string(), normal);
        }
        Graph(graph)
    }

    /// Every package `package` reaches through normal dependencies, itself excluded.
    fn reach(&self, package: &str) -> BTreeSet<String> {
        assert!(
            self.0.contains_key(package),
            "package {package} is in the workspace"
        );
        let mut seen = BTreeSet::new();
        let mut todo = vec![package.to_string()];
        while let Some(next) = todo.pop() {
            for dep in self.0.get(&next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        seen
    }

    /// Fails naming each of `banned` that `package` reaches.
    fn assert_reaches_none(&self, package: &str, banned: &[&str]) {
        let reach = self.reach(package);
        let found: Vec<&&str> = banned.iter().filter(|b| reach.contains(**b)).collect();
        assert!(
            found.is_empty(),
            "{package} depends (directly or through its dependencies) on {found:?}"
        );
    }
}

/// What a pure core may not reach: IO, async, the network, the store, the wire.
const IMPURE: &[&str] = &[
    "tokio",
    "mio",
    "sled",
    "tonic",
    "axum",
    "hyper",
    "reqwest",
    "riposte-proto",
];

#[test]
fn pure_cores_reach_no_io_crate() {
    let graph = Graph::load();
    let cores = ["riposte-playbooks", "riposte-scheduler", "riposte-ingest"];
    // Playbook tests read their files (std::fs), and reach no other IO.
    for core in cores.into_iter().chain(["riposte-playtest"]) {
        graph.assert_reaches_none(core, IMPURE);
    }
}

#[test]
fn the_check_sees_what_a_crate_reaches() {
    // The orchestrator does reach tokio and sled, through itself and its dependencies: a check
    // that found nothing there would be blind.
    let graph = Graph::load();
    let reach = graph.reach("riposte-orchestrator");
    for expected in [
        "tokio",
        "sled",
        "mio",
        "riposte-scheduler",
        "riposte-ingest",
    ] {
        assert!(reach.contains(expected), "orchestrator reaches {expected}");
    }
}

#[test]
fn proto_is_a_leaf() {
    let graph = Graph::load();
    let ours: Vec<String> = graph
        .reach("riposte-proto")
        .into_iter()
        .filter(|d| d.starts_with("riposte-"))
        .collect();
    assert!(ours.is_empty(), "riposte-proto depends on {ours:?}");
}

#[test]
fn worker_stays_independent() {
    Graph::load().assert_reaches_none(
        "riposte-worker",
        &[
            "riposte-orchestrator",
            "riposte-playbooks",
            "riposte-scheduler",
            "riposte-ingest",
            "riposte-tests",
            "riposte-test-support",
            "sled",
        ],
    );
}

/// The CLI reaches the orchestrator by gRPC only; it links the pure language crates (through
/// `playtest`) to play playbook tests offline, and nothing of the server.
#[test]
fn cli_talks_grpc_only() {
    Graph::load().assert_reaches_none(
        "riposte-cli",
        &[
            "riposte-orchestrator",
            "riposte-worker",
            "riposte-ingest",
            "riposte-test-support",
            "sled",
        ],
    );
}

#[test]
fn fuzz_targets_depend_on_ingest_alone() {
    let manifest = workspace().join("ingest/fuzz/Cargo.toml");
    let meta = metadata(&manifest, false);
    let package = &meta["packages"][0];
    let deps: BTreeSet<&str> = package["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        deps,
        BTreeSet::from(["libfuzzer-sys", "riposte-ingest"]),
        "the fuzz targets' dependencies"
    );
}

/// The pure cores do no IO and read no clock: no line of their code names an IO module, the
/// system clocks, or the orchestrator's doors.
#[test]
fn pure_cores_do_no_io() {
    let banned = [
        "tokio",
        "std::fs",
        "std::net::Tcp",
        "std::net::Udp",
        "std::process",
        "std::env::var",
        "SystemTime::now",
        "Instant::now",
        "Utc::now",
        "Local::now",
        "thread::sleep",
    ];
    let mut files = Vec::new();
    for dir in ["playbooks/src", "scheduler/src", "ingest/src"] {
        collect_rs(&workspace().join(dir), &mut files);
    }
    assert!(files.len() > 30, "the pure cores are found: {files:?}");
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

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every Rust file of the workspace (the fuzz targets too), but build output.
fn workspace_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(workspace()).expect("the workspace folder") {
        let path = entry.expect("a folder entry").path();
        let name = path.file_name().unwrap_or_default();
        if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
            collect_rs(&path, &mut files);
        }
    }
    files.retain(|f| !f.components().any(|c| c.as_os_str() == "target"));
    files
}

/// Every file opens with a `//!` comment that says what it is for.
#[test]
fn every_file_says_what_it_is_for() {
    let files = workspace_sources();
    assert!(files.len() > 100, "the sources are found: {}", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|file| {
            let source = std::fs::read_to_string(file).expect("source file");
            !source.trim_start().starts_with("//!")
        })
        .map(|file| {
            file.strip_prefix(workspace())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

/// The path of `file` in the workspace, and whether it is test code (tests, their data, their
/// harness and the servers that stand in for third parties).
fn relative(file: &Path) -> (String, bool) {
    let relative = file
        .strip_prefix(workspace())
        .unwrap()
        .to_string_lossy()
        .to_string();
    let is_test = relative.contains("/tests/")
        || relative.ends_with("/tests.rs")
        || relative.starts_with("tests/")
        || relative.starts_with("test-support/");
    (relative, is_test)
}

/// No public function returns `Result<_, String>`: a caller gets an error type it can match
/// on (a command-line value parser, which clap wraps in its own message, stays crate-private).
#[test]
fn public_functions_return_typed_errors() {
    let mut problems = Vec::new();
    for file in workspace_sources() {
        let (relative, is_test) = relative(&file);
        if is_test {
            continue;
        }
        let source = std::fs::read_to_string(&file).expect("source file");
        for (at, _) in source.match_indices("pub fn ") {
            let signature = source[at..]
                .split(['{', ';'])
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let returns = signature.split_once("->").map(|(_, r)| r.replace(' ', ""));
            if let Some(returns) = returns
                && returns.starts_with("Result<")
                && returns.ends_with(",String>")
            {
                let line = source[..at].lines().count() + 1;
                problems.push(format!("{relative}:{line}: {signature}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "public functions returning Result<_, String>: {problems:#?}"
    );
}

/// Lines a source file may have, tests aside.
const FILE_LINES_MAX: usize = 700;

/// No source file outside the tests grows past [`FILE_LINES_MAX`] lines: a longer one is split
/// by concern.
#[test]
fn files_stay_small() {
    let mut problems = Vec::new();
    for file in workspace_sources() {
        let (relative, is_test) = relative(&file);
        if is_test && !relative.starts_with("tests/src/") {
            continue;
        }
        let lines = std::fs::read_to_string(&file)
            .expect("source file")
            .lines()
            .count();
        if lines > FILE_LINES_MAX {
            problems.push(format!(
                "{relative}: {lines} lines, at most {FILE_LINES_MAX}"
            ));
        }
    }
    assert!(problems.is_empty(), "files too long: {problems:#?}");
}
