//! `riposte rules apply|list`: the alert rules that start playbooks, in evaluation order.

use std::path::PathBuf;

use riposte_proto::v1::{ApplyRuleRequest, ListRulesRequest, RuleInfo};
use serde_json::{Value, json};

use super::playbook::read_sources;
use crate::args::Format;
use crate::client::Client;
use crate::error::{Error, Exit, message_lines};
use crate::output::{Out, lines, problem, table};
use crate::text;

/// Applies each file; an invalid or refused file is reported on stderr and the others still
/// go; exit 1 when any was not applied.
pub async fn apply(client: &mut Client, out: &mut Out, files: &[PathBuf]) -> Result<Exit, Error> {
    let mut applied = Vec::new();
    let mut failed = false;
    for source in read_sources(files)? {
        let request = ApplyRuleRequest {
            source: source.text,
        };
        match client.apply_rule(request).await {
            Ok(reply) if reply.diagnostics.is_empty() => {
                applied.extend(reply.rule);
            }
            Ok(reply) => {
                failed = true;
                for diagnostic in &reply.diagnostics {
                    problem(&text::diagnostic(&source.file, diagnostic));
                }
            }
            Err(Error::Refused(status)) => {
                failed = true;
                for line in message_lines(status.message()) {
                    problem(&text::refused(&source.file, line));
                }
            }
            Err(other) => return Err(other),
        }
    }
    print(out, &applied)?;
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let reply = client.list_rules(ListRulesRequest {}).await?;
    print(out, &reply.rules)?;
    Ok(Exit::Success)
}

fn print(out: &mut Out, rules: &[RuleInfo]) -> Result<(), Error> {
    match out.format() {
        Format::Json => out.document(&Value::Array(rules.iter().map(document).collect())),
        Format::Table => {
            let mut t = table(&["ORDER", "NAME", "PLAYBOOK", "DEDUP", "BUDGET", "MATCH"]);
            for r in rules {
                let dedup = if r.dedup_key.is_empty() {
                    "-".to_string()
                } else {
                    format!("{} / {} ms", r.dedup_key, r.dedup_window_ms)
                };
                let budget = match r.budget_runs {
                    0 => "-".to_string(),
                    n => format!("{n} per {} ms", r.budget_per_ms),
                };
                let playbook = match r.version {
                    0 => r.playbook.clone(),
                    v => format!("{}@{v}", r.playbook),
                };
                t.add_row(vec![
                    r.order.to_string(),
                    r.name.clone(),
                    playbook,
                    dedup,
                    budget,
                    r.r#match.clone(),
                ]);
            }
            out.lines(&lines(&t))
        }
    }
}

fn document(r: &RuleInfo) -> Value {
    json!({
        "name": r.name,
        "order": r.order,
        "match": r.r#match,
        "playbook": r.playbook,
        "version": r.version,
        "dedup_key": r.dedup_key,
        "dedup_window_ms": r.dedup_window_ms,
        "budget_runs": r.budget_runs,
        "budget_per_ms": r.budget_per_ms,
        "applied_at_ms": r.applied_at_ms,
    })
}
