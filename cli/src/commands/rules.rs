//! `riposte rules apply|list|show|disable|enable|delete|test`: the alert rules that start
//! playbooks, in evaluation order.

use std::path::PathBuf;

use riposte_proto::v1::{
    ApplyRuleRequest, DeleteRuleRequest, GetRuleRequest, ListRulesRequest, RuleInfo, RuleVerdict,
    SetRuleEnabledRequest, TestRulesRequest,
};
use serde_json::{Value, json};

use super::playbook::read_sources;
use crate::args::{AlertSendArgs, Format, RuleChangeArgs};
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

/// One rule, with its source.
pub async fn show(client: &mut Client, out: &mut Out, name: &str) -> Result<Exit, Error> {
    let rule = client
        .get_rule(GetRuleRequest { name: name.into() })
        .await?;
    match out.format() {
        Format::Json => {
            let mut doc = document(&rule);
            doc["source"] = json!(rule.source);
            out.document(&doc)?;
        }
        Format::Table => {
            print(out, std::slice::from_ref(&rule))?;
            out.line("")?;
            out.text(&rule.source)?;
        }
    }
    Ok(Exit::Success)
}

/// Disables or enables a rule.
pub async fn enable(
    client: &mut Client,
    out: &mut Out,
    args: &RuleChangeArgs,
    enabled: bool,
) -> Result<Exit, Error> {
    let request = SetRuleEnabledRequest {
        name: args.name.clone(),
        enabled,
        reason: args.reason.clone().unwrap_or_default(),
    };
    let rule = client.set_rule_enabled(request).await?;
    print(out, std::slice::from_ref(&rule))?;
    Ok(Exit::Success)
}

/// Deletes a rule.
pub async fn delete(client: &mut Client, out: &mut Out, name: &str) -> Result<Exit, Error> {
    let rule = client
        .delete_rule(DeleteRuleRequest { name: name.into() })
        .await?;
    match out.format() {
        Format::Json => out.document(&json!({ "deleted": document(&rule) }))?,
        Format::Table => out.line(&format!("deleted rule {}", rule.name))?,
    }
    Ok(Exit::Success)
}

/// What the enabled rules would do with each alert of a payload; nothing is stored.
pub async fn test(client: &mut Client, out: &mut Out, args: &AlertSendArgs) -> Result<Exit, Error> {
    let payload = super::alerts::read_payload(&args.file)?;
    test_payload(client, out, &args.source, payload).await
}

/// What the enabled rules would do with each alert of `payload` from `source`.
pub(super) async fn test_payload(
    client: &mut Client,
    out: &mut Out,
    source: &str,
    payload: Vec<u8>,
) -> Result<Exit, Error> {
    let request = TestRulesRequest {
        source: source.to_string(),
        payload,
    };
    let reply = client.test_rules(request).await?;
    match out.format() {
        Format::Json => {
            let verdicts = reply.verdicts.iter().map(verdict_document).collect();
            out.document(&Value::Array(verdicts))?;
        }
        Format::Table => {
            for (index, v) in reply.verdicts.iter().enumerate() {
                if index > 0 {
                    out.line("")?;
                }
                out.lines(&verdict_lines(v))?;
            }
        }
    }
    Ok(Exit::Success)
}

fn verdict_lines(v: &RuleVerdict) -> Vec<String> {
    let alert: Value = serde_json::from_str(&v.alert_json).unwrap_or_default();
    let title = alert["title"].as_str().unwrap_or_default();
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    crate::output::fields(&[
        (
            "alert",
            format!("{title} ({})", alert["severity"].as_str().unwrap_or("-")),
        ),
        ("would be", v.fate.clone()),
        ("rule", or_dash(&v.rule)),
        ("playbook", or_dash(&v.playbook)),
        ("params", or_dash(&v.params_json)),
        ("dedup key", or_dash(&v.dedup_key)),
        ("absorbed by", or_dash(&v.run_id)),
        ("why", v.detail.clone()),
    ])
}

fn verdict_document(v: &RuleVerdict) -> Value {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    json!({
        "alert": parse(&v.alert_json),
        "fate": v.fate,
        "rule": v.rule,
        "playbook": v.playbook,
        "params": parse(&v.params_json),
        "dedup_key": v.dedup_key,
        "run_id": v.run_id,
        "detail": v.detail,
    })
}

fn print(out: &mut Out, rules: &[RuleInfo]) -> Result<(), Error> {
    match out.format() {
        Format::Json => out.document(&Value::Array(rules.iter().map(document).collect())),
        Format::Table => {
            let mut t = table(&[
                "ORDER", "NAME", "ENABLED", "PLAYBOOK", "DEDUP", "BUDGET", "MATCH",
            ]);
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
                let enabled = match r.enabled {
                    true => "yes".to_string(),
                    false => format!("no (by {}: {})", r.disabled_by, r.disabled_reason),
                };
                t.add_row(vec![
                    r.order.to_string(),
                    r.name.clone(),
                    enabled,
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
        "enabled": r.enabled,
        "disabled_by": r.disabled_by,
        "disabled_at_ms": r.disabled_at_ms,
        "disabled_reason": r.disabled_reason,
    })
}
