//! What the alert tests (and the benchmark) share: a playbook that echoes the IP a rule
//! passes it, and applying a rule through `riposte rules apply`.

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
