//! `riposte workers list`.

use crate::args::Format;
use crate::client::Client;
use crate::error::{Error, Exit};
use crate::output::Out;
use crate::{json, text};

/// Lists the registered workers with their load.
pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let workers = client.list_workers().await?.workers;
    match out.format() {
        Format::Json => out.document(&workers.iter().map(json::worker).collect())?,
        Format::Table => out.lines(&text::workers(&workers))?,
    }
    Ok(Exit::Success)
}
