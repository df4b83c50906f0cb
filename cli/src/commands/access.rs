//! `riposte whoami` and `riposte tokens new`.

use std::io::Write;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::args::{Format, TokenNewArgs};
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;

/// Prints the caller's principal as the orchestrator established it, and its grants.
pub async fn whoami(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let me = client.who_am_i().await?;
    let playbooks = match me.all_playbooks {
        true => vec!["*".to_string()],
        false => me.playbooks.clone(),
    };
    match out.format() {
        Format::Json => out.document(&json!({
            "principal": me.principal,
            "method": me.method,
            "label": me.label,
            "roles": me.roles,
            "groups": me.groups,
            "permissions": me.permissions,
            "playbooks": playbooks,
        }))?,
        Format::Table => {
            let list = |items: &[String]| match items.is_empty() {
                true => "-".to_string(),
                false => items.join(", "),
            };
            out.lines(&[
                format!("principal    {} ({})", me.principal, me.method),
                format!("roles        {}", list(&me.roles)),
                format!("groups       {}", list(&me.groups)),
                format!("permissions  {}", list(&me.permissions)),
                format!("may run      {}", list(&playbooks)),
            ])?
        }
    }
    Ok(Exit::Success)
}

/// Writes a new API token to `args.out` (0600, never over an existing file) and prints the
/// entry of the orchestrator's tokens file that admits it. The token itself is never printed.
pub fn new_token(out: &mut Out, args: &TokenNewArgs) -> Result<Exit, Error> {
    let name_ok = !args.name.is_empty()
        && args.name.len() <= 64
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(Error::Usage(format!(
            "token name `{}`: use 1 to 64 letters, digits, `-`, `_` or `.`",
            args.name
        )));
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Usage(format!("no randomness for a token: {e}")))?;
    let token = format!("rpt_{}", hex(&bytes));
    let digest = hex(&Sha256::digest(token.as_bytes()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&args.out)
        .and_then(|mut file| file.write_all(format!("{token}\n").as_bytes()));
    written.map_err(|e| {
        Error::Usage(format!(
            "cannot write the token to {}: {e}",
            args.out.display()
        ))
    })?;
    match out.format() {
        Format::Json => out.document(&json!({
            "name": args.name,
            "principal": format!("token:{}", args.name),
            "sha256": digest,
            "file": args.out.display().to_string(),
        }))?,
        Format::Table => out.lines(&[
            format!(
                "# token:{} written to {}; add to the --api-tokens file:",
                args.name,
                args.out.display()
            ),
            format!("  - name: {}", args.name),
            format!("    sha256: {digest}"),
        ])?,
    }
    Ok(Exit::Success)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
