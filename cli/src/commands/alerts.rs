//! `riposte alerts send|list|show|replay|sources`: hand an alert payload to the orchestrator
//! as a listener would, read back every alert received with its fate, and the pollers'
//! condition.

use riposte_proto::v1::{
    AlertInfo, AlertSourceInfo, GetAlertRequest, IngestAlertRequest, ListAlertsRequest,
};
use serde_json::{Value, json};

use super::{pages, wanted};
use crate::args::{AlertSendArgs, AlertsListArgs, Format, ReplayArgs};
use crate::client::Client;
use crate::display;
use crate::error::{Error, Exit};
use crate::output::{Out, fields, lines, table};

/// Largest payload file read, in bytes (the orchestrator refuses more than 256 KiB anyway;
/// reading a little more lets it say so).
const PAYLOAD_FILE_BYTES_MAX: u64 = 1024 * 1024;

pub async fn send(client: &mut Client, out: &mut Out, args: &AlertSendArgs) -> Result<Exit, Error> {
    let payload = read_payload(&args.file)?;
    let request = IngestAlertRequest {
        source: args.source.clone(),
        payload,
    };
    let reply = client.ingest_alert(request).await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(reply.alerts.iter().map(document).collect()))?,
        Format::Table => out.lines(&summary(&reply.alerts))?,
    }
    Ok(Exit::Success)
}

/// Lists alerts, newest first, page after page until `--limit` (100) alerts or, with
/// `--all`, every alert.
pub async fn list(
    client: &mut Client,
    out: &mut Out,
    args: &AlertsListArgs,
) -> Result<Exit, Error> {
    let alerts = pages(
        wanted(args.all, args.limit, 100),
        async |limit, page_token| {
            let page = client
                .list_alerts(ListAlertsRequest { limit, page_token })
                .await?;
            Ok((page.alerts, page.next_page_token))
        },
    )
    .await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(alerts.iter().map(document).collect()))?,
        Format::Table => out.lines(&summary(&alerts))?,
    }
    Ok(Exit::Success)
}

pub async fn show(client: &mut Client, out: &mut Out, id: &str) -> Result<Exit, Error> {
    let alert = client
        .get_alert(GetAlertRequest { id: id.to_string() })
        .await?;
    match out.format() {
        Format::Json => out.document(&document(&alert))?,
        Format::Table => out.lines(&detail(&alert))?,
    }
    Ok(Exit::Success)
}

/// Ingests a stored alert's payload again (a new alert, its own fate), or with `--dry-run`
/// tests it against the enabled rules.
pub async fn replay(client: &mut Client, out: &mut Out, args: &ReplayArgs) -> Result<Exit, Error> {
    let alert = client
        .get_alert(GetAlertRequest {
            id: args.id.clone(),
        })
        .await?;
    // A generic endpoint's alerts (`generic/NAME`) are generic payloads.
    let source = alert
        .source
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let payload = alert.payload.into_bytes();
    if args.dry_run {
        return super::rules::test_payload(client, out, &source, payload).await;
    }
    let reply = client
        .ingest_alert(IngestAlertRequest { source, payload })
        .await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(reply.alerts.iter().map(document).collect()))?,
        Format::Table => out.lines(&summary(&reply.alerts))?,
    }
    Ok(Exit::Success)
}

pub(super) fn read_payload(file: &std::path::Path) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let unreadable =
        |e: std::io::Error| Error::Usage(format!("cannot read {}: {e}", file.display()));
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .take(PAYLOAD_FILE_BYTES_MAX)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(PAYLOAD_FILE_BYTES_MAX).read_to_end(&mut bytes))
            .map_err(unreadable)?;
    }
    Ok(bytes)
}

fn summary(alerts: &[AlertInfo]) -> Vec<String> {
    let mut t = table(&[
        "ID", "RECEIVED", "SOURCE", "SEVERITY", "FATE", "RUN", "TITLE",
    ]);
    for a in alerts {
        t.add_row(vec![
            a.id.clone(),
            display::timestamp(a.received_ms).unwrap_or_else(|| "-".into()),
            a.source.clone(),
            or_dash(&a.severity),
            a.fate.clone(),
            or_dash(&a.run_id),
            a.title.clone(),
        ]);
    }
    lines(&t)
}

/// Each alert poller's condition.
pub async fn sources(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let sources = client.list_alert_sources().await?.sources;
    match out.format() {
        Format::Json => {
            let docs = sources.iter().map(source_document).collect();
            out.document(&Value::Array(docs))?
        }
        Format::Table => {
            let mut t = table(&[
                "POLLER",
                "KIND",
                "LAST SUCCESS",
                "LAG",
                "ALERTS",
                "REVISIONS",
                "ERRORS",
                "CLAIMED BY",
                "LAST ERROR OR WHY NOT POLLED",
            ]);
            for s in &sources {
                t.add_row(vec![
                    s.name.clone(),
                    s.kind.clone(),
                    display::timestamp(s.last_success_ms).unwrap_or_else(|| "never".into()),
                    match s.cursor_ms {
                        0 => "-".into(),
                        _ => display::duration(s.lag_ms),
                    },
                    s.alerts.to_string(),
                    s.revisions.to_string(),
                    s.errors.to_string(),
                    or_dash(&s.claimed_by),
                    match s.unserved {
                        true => format!("no connected worker offers {}", s.action),
                        false => or_dash(&s.last_error),
                    },
                ]);
            }
            if sources.is_empty() {
                out.lines(&["no pollers (the orchestrator's --pollers names them)".to_string()])?
            } else {
                out.lines(&lines(&t))?
            }
        }
    }
    Ok(Exit::Success)
}

fn source_document(s: &AlertSourceInfo) -> Value {
    let time = |ms: i64| display::timestamp(ms);
    json!({
        "name": s.name,
        "kind": s.kind,
        "action": s.action,
        "every_ms": s.every_ms,
        "cursor": time(s.cursor_ms),
        "last_success": time(s.last_success_ms),
        "lag_ms": (s.cursor_ms != 0).then_some(s.lag_ms),
        "last_error": (!s.last_error.is_empty()).then_some(&s.last_error),
        "last_error_at": time(s.last_error_ms),
        "errors": s.errors,
        "alerts": s.alerts,
        "revisions": s.revisions,
        "claimed_by": (!s.claimed_by.is_empty()).then_some(&s.claimed_by),
        "unserved": s.unserved.then(|| format!("no connected worker offers {}", s.action)),
        "next": time(s.next_ms),
    })
}

fn detail(a: &AlertInfo) -> Vec<String> {
    let mut pairs = vec![
        ("id", a.id.clone()),
        ("source", a.source.clone()),
        (
            "received",
            display::timestamp(a.received_ms).unwrap_or_else(|| "-".into()),
        ),
        ("alert id", a.alert_id.clone()),
        ("title", a.title.clone()),
        ("severity", or_dash(&a.severity)),
        ("fate", a.fate.clone()),
        ("rule", or_dash(&a.rule)),
        ("run", or_dash(&a.run_id)),
        ("detail", or_dash(&a.detail)),
    ];
    let alert: Value = serde_json::from_str(&a.alert_json).unwrap_or(Value::Null);
    if let Some(note) = alert["note"].as_str() {
        pairs.push(("note", note.to_string()));
    }
    if let Some(revision) = alert["revision"].as_u64() {
        pairs.push(("revision", revision.to_string()));
    }
    let mut out = fields(&pairs);
    out.push("entities:".to_string());
    out.extend(a.entities.iter().map(|e| format!("  {e}")));
    if !a.payload.is_empty() {
        out.push("payload:".to_string());
        let pretty = serde_json::from_str::<Value>(&a.payload)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok());
        let text = pretty.unwrap_or_else(|| a.payload.trim_end().to_string());
        out.extend(text.lines().map(|l| format!("  {l}")));
    }
    out
}

fn document(a: &AlertInfo) -> Value {
    let alert: Value = serde_json::from_str(&a.alert_json).unwrap_or(Value::Null);
    json!({
        "id": a.id,
        "source": a.source,
        "received_ms": a.received_ms,
        "received": display::timestamp(a.received_ms),
        "alert_id": a.alert_id,
        "title": a.title,
        "severity": a.severity,
        "fate": a.fate,
        "run_id": a.run_id,
        "rule": a.rule,
        "detail": a.detail,
        "entities": a.entities,
        "alert": alert,
        "payload": a.payload,
    })
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_string()
    }
}
