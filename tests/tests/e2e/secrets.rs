//! Secrets never leave the worker, and what the orchestrator keeps is its user's alone.
//!
//! The secret canary: an Entra token endpoint and an ARM endpoint that echo their requests
//! (every header and the form body) in their error answers make Azure-backed steps fail while
//! the worker holds a canary client secret. The canary (as is and form-encoded) and the bearer
//! tokens the worker obtained are in no run history (`riposte runs show`, text and JSON), no
//! CLI output, no log line of the orchestrator or the worker and no byte of any file in the data
//! dir, and each error still says what failed. The data dir is 0700 and its files 0600; one that
//! others could open is tightened at start with one warning; the removed `--alert-secret` fails
//! the start without echoing its token.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use riposte_proto::v1::{Run, RunStatus};
use riposte_tests::api::{self, Operator};
use riposte_tests::azure::{self as local, AzureServer, Fault};
use riposte_tests::orchestrator::start_failing;
use riposte_tests::{Orchestrator, Worker};
use serde_json::json;

/// The worker's client secret; its `~` is percent-encoded in the token request's form body.
const CANARY: &str = "canary-7Kq~f9Zx-never-leaves";
/// The canary as the form body carries it.
const CANARY_FORM: &str = "canary-7Kq%7Ef9Zx-never-leaves";
/// How every ARM token the local Azure issues starts (`arm-token-N`).
const ARM_TOKEN: &str = "arm-token-";
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

const BLOCK: &str = r#"
name: canary-block
version: 1
steps:
  - id: block
    action: firewall.block_ip
    with: { ip: 203.0.113.7, ttl: 1h }
"#;

/// Panics when `text` (named `what`) holds the canary or an ARM token.
fn assert_clean(what: &str, text: &[u8]) {
    for needle in [CANARY, CANARY_FORM, ARM_TOKEN] {
        let found = text
            .windows(needle.len())
            .any(|window| window == needle.as_bytes());
        assert!(
            !found,
            "{needle} is in {what}:\n{}",
            String::from_utf8_lossy(text)
        );
    }
}

/// Runs [`BLOCK`] and answers the error of its failed step.
async fn failed_block(client: &mut Operator) -> (Run, String) {
    let started = api::start_run(client, "canary-block", json!({})).await;
    let run = api::wait_finished(client, &started.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed, "{}", api::describe(&run));
    let error = api::step(&run, "block").error.clone();
    (run, error)
}

#[tokio::test]
async fn a_canary_secret_echoed_by_azure_reaches_no_history_output_log_or_file() {
    let azure = AzureServer::start(CANARY).await;
    let mut orchestrator = Orchestrator::builder().lease_timeout("5s").start();
    let worker = Worker::builder(&orchestrator.url())
        .args(&["--firewall-backend", "azure-nsg"])
        .azure(&azure, CANARY)
        .start();
    let mut client = orchestrator.client();
    worker.id(&mut client).await;
    api::apply_playbook(&mut client, BLOCK).await;

    // The token endpoint echoes the form body, client secret included.
    azure.fault(Fault {
        times: 1,
        ..Fault::echo("POST", "/oauth2/v2.0/token", 400)
    });
    let (token_run, token_error) = failed_block(&mut client).await;
    let tokens = azure.requests_to("POST", "/oauth2/v2.0/token");
    assert_eq!(tokens[0].form()["client_secret"], CANARY, "the echo had it");
    assert!(
        token_error.starts_with(&format!(
            "azure token request failed (client secret, tenant {}, client {}): invalid_request: \
             AADSTS900144: echo of the request: POST /login/",
            local::TENANT,
            local::CLIENT_ID
        )),
        "{token_error}"
    );
    assert!(
        token_error.contains("client_secret=[redacted]"),
        "{token_error}"
    );

    // ARM echoes the request, bearer token included.
    azure.fault(Fault::echo("GET", local::NSG_ID, 400));
    let (arm_run, arm_error) = failed_block(&mut client).await;
    let reads = azure.requests_to("GET", local::NSG_ID);
    let bearer = reads[0].header("authorization").unwrap_or_default();
    assert!(bearer.starts_with("Bearer arm-token-"), "the echo had it");
    assert!(
        arm_error.contains("failed: HTTP 400: GET /subscriptions/"),
        "{arm_error}"
    );
    assert!(
        arm_error.contains("authorization: Bearer [redacted]"),
        "{arm_error}"
    );

    for run in [&token_run, &arm_run] {
        assert_clean("the run", api::describe(run).as_bytes());
        for output in ["table", "json"] {
            let shown = orchestrator
                .cli(&["runs", "show", &run.run_id, "--output", output])
                .await;
            assert_eq!(shown.code(), 0, "{shown}");
            assert!(shown.stdout.contains("[redacted]"), "{shown}");
            assert_clean("runs show", shown.to_string().as_bytes());
        }
    }
    let listed = orchestrator
        .cli(&["runs", "list", "--output", "json"])
        .await;
    assert_clean("runs list", listed.to_string().as_bytes());
    let worker_log = worker.logs();
    assert!(worker_log.contains("task failed"), "{worker_log}");
    assert!(worker_log.contains("[redacted]"), "{worker_log}");
    assert_clean("the worker's log", worker_log.as_bytes());

    orchestrator.terminate();
    assert_clean("the orchestrator's log", orchestrator.logs().as_bytes());
    let data = orchestrator.data_dir();
    let (folders, files) = walk(&data);
    let mut stored = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).expect("readable");
        assert_clean(&file.display().to_string(), &bytes);
        stored.extend(bytes);
    }
    assert!(
        stored.windows(10).any(|w| w == b"[redacted]"),
        "the errors are stored as they were reported"
    );
    assert_private(&folders, &files);
}

#[tokio::test]
async fn a_data_dir_open_to_others_is_tightened_at_start_with_one_warning() {
    let parent = tempfile::tempdir().expect("a temporary folder");
    let data = parent.path().join("data");
    std::fs::create_dir(&data).expect("created");
    std::fs::write(data.join("notes"), "left by hand").expect("written");
    set_mode(&data, 0o755);
    set_mode(&data.join("notes"), 0o644);
    let orchestrator = Orchestrator::builder().data_dir(&data).start();
    let (folders, files) = walk(&data);
    assert_private(&folders, &files);
    let logs = orchestrator.logs();
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("store.data_dir_tightened"))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    assert!(warnings[0].contains("WARN"), "{logs}");
    assert!(warnings[0].contains(&data.display().to_string()), "{logs}");
}

#[tokio::test]
async fn the_removed_alert_secret_flag_fails_the_start_without_echoing_the_token() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--alert-secret",
        "sentinel=tok-canary-55",
    ];
    let output = start_failing(&dir.path().join("data"), &args, Duration::from_secs(10)).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(output.stdout, b"", "no banner");
    assert_eq!(
        stderr.trim_end(),
        "error: --alert-secret was removed: a command line is visible to every local user; put \
         SOURCE=TOKEN lines in a file readable only by the orchestrator's user and give it with \
         --alert-secrets-file (or RIPOSTE_ALERT_SECRETS_FILE)"
    );
    assert!(!stderr.contains("tok-canary"));
}

/// Every folder (`dir` included) and every file under `dir`.
fn walk(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut folders, mut files) = (vec![dir.to_path_buf()], Vec::new());
    let mut next = 0;
    while let Some(folder) = folders.get(next).cloned() {
        next += 1;
        for entry in std::fs::read_dir(&folder).expect("a readable folder") {
            let entry = entry.expect("an entry");
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    (folders, files)
}

/// Every folder is 0700 and every file 0600.
fn assert_private(folders: &[PathBuf], files: &[PathBuf]) {
    let mode = |path: &PathBuf| {
        let metadata = std::fs::metadata(path).expect("present");
        (
            path.display().to_string(),
            metadata.permissions().mode() & 0o777,
        )
    };
    for (path, mode) in folders.iter().map(mode) {
        assert_eq!(mode, 0o700, "{path} is {mode:o}");
    }
    assert!(!files.is_empty(), "the data dir has files");
    for (path, mode) in files.iter().map(mode) {
        assert_eq!(mode, 0o600, "{path} is {mode:o}");
    }
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
