//! `riposte audit list`, `export` and `verify`: the orchestrator's tamper-evident record of
//! every change and every refusal.

use riposte_proto::v1::{AuditRecord, ListAuditRequest};
use serde_json::{Value, json};

use crate::args::{AuditFilters, AuditListArgs, Format};
use crate::client::Client;
use crate::display::timestamp;
use crate::error::{Error, Exit};
use crate::output::{Out, lines, table};

/// Records per page asked for.
const PAGE: u32 = 500;

/// The newest records matching the filters, as a table or one JSON document.
pub async fn list(client: &mut Client, out: &mut Out, args: &AuditListArgs) -> Result<Exit, Error> {
    let limit = match args.all {
        true => usize::MAX,
        false => args.limit.unwrap_or(50) as usize,
    };
    let mut records = Vec::new();
    pages(client, &args.filters, limit, |record| records.push(record)).await?;
    match out.format() {
        Format::Json => out.document(&Value::Array(records.iter().map(record_json).collect()))?,
        Format::Table => {
            let mut rows = table(&[
                "SEQ",
                "AT",
                "PRINCIPAL",
                "ACTION",
                "TARGET",
                "SOURCE",
                "OUTCOME",
            ]);
            for r in &records {
                rows.add_row(vec![
                    r.seq.to_string(),
                    timestamp(r.at_ms).unwrap_or_default(),
                    r.principal.clone(),
                    r.action.clone(),
                    r.target.clone(),
                    r.source.clone(),
                    r.outcome.clone(),
                ]);
            }
            out.lines(&lines(&rows))?
        }
    }
    Ok(Exit::Success)
}

/// Every record matching the filters, newest first, one JSON object per line (for a SIEM).
pub async fn export(
    client: &mut Client,
    out: &mut Out,
    filters: &AuditFilters,
) -> Result<Exit, Error> {
    let mut failed = None;
    pages(client, filters, usize::MAX, |record| {
        if failed.is_none()
            && let Err(e) = out.record(&record_json(&record))
        {
            failed = Some(e);
        }
    })
    .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(Exit::Success),
    }
}

/// Walks the chain; exit 1 and the first broken record when it is broken.
pub async fn verify(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let verdict = client.verify_audit().await?;
    match out.format() {
        Format::Json => out.document(&json!({
            "intact": verdict.intact,
            "records": verdict.records,
            "broken_seq": verdict.broken_seq,
            "why": verdict.why,
            "head_mac": verdict.head_mac,
        }))?,
        Format::Table if verdict.intact => out.line(&format!(
            "intact: {} records; head MAC {}",
            verdict.records, verdict.head_mac
        ))?,
        Format::Table => out.line(&format!(
            "broken at record {}: {}",
            verdict.broken_seq, verdict.why
        ))?,
    }
    Ok(match verdict.intact {
        true => Exit::Success,
        false => Exit::Failure,
    })
}

/// Feeds `each` the records page after page, at most `limit`.
async fn pages(
    client: &mut Client,
    args: &AuditFilters,
    limit: usize,
    mut each: impl FnMut(AuditRecord),
) -> Result<(), Error> {
    let mut seen = 0;
    let mut token = String::new();
    loop {
        let request = ListAuditRequest {
            principal: args.principal.clone().unwrap_or_default(),
            action: args.action.clone().unwrap_or_default(),
            outcome: args.outcome.clone().unwrap_or_default(),
            since_ms: args.since_ms(),
            until_ms: 0,
            limit: PAGE.min((limit - seen).min(u32::MAX as usize) as u32),
            page_token: token,
        };
        let page = client.list_audit(request).await?;
        for record in page.records {
            seen += 1;
            each(record);
        }
        if seen >= limit || page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

fn record_json(r: &AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "at": timestamp(r.at_ms),
        "at_ms": r.at_ms,
        "principal": r.principal,
        "method": r.method,
        "source": r.source,
        "action": r.action,
        "target": r.target,
        "digest": r.digest,
        "outcome": r.outcome,
        "prev": r.prev,
        "mac": r.mac,
    })
}
