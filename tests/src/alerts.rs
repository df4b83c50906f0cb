//! What the alert tests (and the benchmark) share: a playbook that echoes the IP a rule
//! passes it, applying a rule through `riposte rules apply`, and sending the shared Azure
//! Monitor fixture through `riposte alerts send`.

use crate::{CliOutput, Orchestrator};

/// A playbook with one `core.echo` step that says its `ip` parameter.
pub const ECHO_IP: &str = r#"
name: ip-echo
version: 1
params:
  ip: { type: string }
steps:
  - id: say
    action: core.echo
    with: { message: "{{ params.ip }}" }
"#;

/// Applies the rule `source` with `riposte rules apply FILE`.
pub async fn apply_rule(orchestrator: &Orchestrator, source: &str) -> CliOutput {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("rule.yaml");
    std::fs::write(&file, source).expect("written");
    orchestrator
        .cli(&["rules", "apply", file.to_str().expect("utf-8")])
        .await
}

/// The shared Azure Monitor alert fixture.
pub const AZURE_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/alerts/azure-monitor-common-log-alert.json"
);

/// Sends `file` as an Azure Monitor payload with `riposte --output json alerts send`.
pub async fn send_azure_monitor(orchestrator: &Orchestrator, file: &str) -> CliOutput {
    orchestrator
        .cli(&[
            "--output",
            "json",
            "alerts",
            "send",
            "-f",
            file,
            "--source",
            "azure_monitor",
        ])
        .await
}
