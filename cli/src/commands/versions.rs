//! `riposte playbook versions|diff|default|delete`: a playbook's versions, the differences
//! between two, which one is the default (a rollback), and deleting one nothing uses.

use riposte_proto::v1::{
    DeletePlaybookVersionRequest, GetPlaybookRequest, ListPlaybookVersionsRequest,
    SetDefaultPlaybookVersionRequest,
};
use serde_json::json;
use similar::TextDiff;

use crate::args::{DiffArgs, Format, VersionArgs};
use crate::client::Client;
use crate::display;
use crate::error::{Error, Exit};
use crate::output::{Out, lines, table};

/// Every version, oldest first, the default marked.
pub async fn list(client: &mut Client, out: &mut Out, name: &str) -> Result<Exit, Error> {
    let request = ListPlaybookVersionsRequest { name: name.into() };
    let reply = client.list_playbook_versions(request).await?;
    match out.format() {
        Format::Json => {
            let versions: Vec<_> = reply
                .versions
                .iter()
                .map(|p| {
                    json!({
                        "version": p.version,
                        "default": p.version == reply.default_version,
                        "applied_at": display::timestamp(p.applied_at_ms),
                        "description": p.description,
                    })
                })
                .collect();
            out.document(&json!({ "name": name, "versions": versions }))?;
        }
        Format::Table => {
            let mut rows = table(&["VERSION", "DEFAULT", "APPLIED", "DESCRIPTION"]);
            for p in &reply.versions {
                rows.add_row(vec![
                    p.version.to_string(),
                    if p.version == reply.default_version {
                        "yes"
                    } else {
                        ""
                    }
                    .to_string(),
                    display::timestamp(p.applied_at_ms).unwrap_or_else(|| "-".into()),
                    p.description.clone(),
                ]);
            }
            out.lines(&lines(&rows))?;
        }
    }
    Ok(Exit::Success)
}

/// The unified diff of two versions' sources; exit 1 when they differ (as `diff` does).
pub async fn diff(client: &mut Client, out: &mut Out, args: &DiffArgs) -> Result<Exit, Error> {
    let mut source = async |version: u32| -> Result<String, Error> {
        let request = GetPlaybookRequest {
            name: args.name.clone(),
            version,
        };
        Ok(client.get_playbook(request).await?.source)
    };
    let (from, to) = (source(args.from).await?, source(args.to).await?);
    let diff = TextDiff::from_lines(&from, &to);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{}@{}", args.name, args.from),
            &format!("{}@{}", args.name, args.to),
        )
        .to_string();
    match out.format() {
        Format::Json => out.document(&json!({ "same": from == to, "diff": text }))?,
        Format::Table if from == to => out.line("the two versions are the same")?,
        Format::Table => out.text(&text)?,
    }
    Ok(if from == to {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Makes a version the default.
pub async fn set_default(
    client: &mut Client,
    out: &mut Out,
    args: &VersionArgs,
) -> Result<Exit, Error> {
    let request = SetDefaultPlaybookVersionRequest {
        name: args.name.clone(),
        version: args.version,
    };
    let playbook = client.set_default_playbook_version(request).await?;
    match out.format() {
        Format::Json => {
            out.document(&json!({ "name": playbook.name, "default_version": playbook.version }))?
        }
        Format::Table => out.line(&format!(
            "{} runs version {} when no version is named",
            playbook.name, playbook.version
        ))?,
    }
    Ok(Exit::Success)
}

/// Deletes a version.
pub async fn delete(client: &mut Client, out: &mut Out, args: &VersionArgs) -> Result<Exit, Error> {
    let request = DeletePlaybookVersionRequest {
        name: args.name.clone(),
        version: args.version,
    };
    let playbook = client.delete_playbook_version(request).await?;
    match out.format() {
        Format::Json => out.document(
            &json!({ "deleted": { "name": playbook.name, "version": playbook.version } }),
        )?,
        Format::Table => out.line(&format!("deleted {}@{}", playbook.name, playbook.version))?,
    }
    Ok(Exit::Success)
}
