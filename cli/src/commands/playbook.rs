//! `riposte playbook validate|apply|list|show`.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use prost::Message;
use riposte_proto::v1::{
    ApplyPlaybookResponse, Diagnostic, Diagnostics, GetPlaybookRequest, ValidatePlaybookResponse,
};
use serde_json::Value;
use tonic::Code;

use crate::args::{Format, ShowArgs};
use crate::client::Client;
use crate::error::{Error, Exit, code_words, message_lines};
use crate::output::{Out, problem};
use crate::{json, text};

/// A playbook file's name as printed, and its content.
pub(super) struct Source {
    pub(super) file: String,
    pub(super) text: String,
}

/// Validates each file; exit 1 when any is invalid.
pub async fn validate(
    client: &mut Client,
    out: &mut Out,
    files: &[PathBuf],
) -> Result<Exit, Error> {
    let sources = read_sources(files)?;
    let mut documents = Vec::new();
    let mut invalid = false;
    for source in sources {
        let reply = client.validate_playbook(source.text).await?;
        invalid |= !reply.diagnostics.is_empty();
        match out.format() {
            Format::Json => documents.push(json::validation(
                &source.file,
                &reply.diagnostics,
                reply.playbook.as_ref(),
            )),
            Format::Table => out.lines(&validation_lines(&source.file, &reply))?,
        }
    }
    if out.format() == Format::Json {
        out.document(&Value::Array(documents))?;
    }
    Ok(if invalid {
        Exit::Failure
    } else {
        Exit::Success
    })
}

fn validation_lines(file: &str, reply: &ValidatePlaybookResponse) -> Vec<String> {
    if reply.diagnostics.is_empty() {
        return vec![text::valid(file, reply.playbook.as_ref())];
    }
    reply
        .diagnostics
        .iter()
        .map(|diagnostic| text::diagnostic(file, diagnostic))
        .collect()
}

/// Applies each file; a refused file is reported and the others still go; exit 1 when any was
/// refused.
pub async fn apply(client: &mut Client, out: &mut Out, files: &[PathBuf]) -> Result<Exit, Error> {
    let sources = read_sources(files)?;
    let mut documents = Vec::new();
    let mut refused = false;
    for source in sources {
        let outcome = match client.apply_playbook(source.text).await {
            Ok(reply) => Ok(reply),
            Err(Error::Refused(status)) => Err(status),
            Err(other) => return Err(other),
        };
        refused |= outcome.is_err();
        match out.format() {
            Format::Json => documents.push(apply_document(&source.file, &outcome)),
            Format::Table => print_applied(out, &source.file, &outcome)?,
        }
    }
    if out.format() == Format::Json {
        out.document(&Value::Array(documents))?;
    }
    Ok(if refused {
        Exit::Failure
    } else {
        Exit::Success
    })
}

fn apply_document(file: &str, outcome: &Result<ApplyPlaybookResponse, tonic::Status>) -> Value {
    match outcome {
        Ok(reply) => json::applied(file, reply),
        Err(status) => match diagnostics_of(status) {
            Some(diagnostics) => json::invalid(file, code_words(status.code()), &diagnostics),
            None => {
                let lines: Vec<_> = message_lines(status.message()).collect();
                json::refused(file, code_words(status.code()), &lines)
            }
        },
    }
}

/// The diagnostics an INVALID_ARGUMENT status carries in its details, if any.
fn diagnostics_of(status: &tonic::Status) -> Option<Vec<Diagnostic>> {
    if status.code() != Code::InvalidArgument || status.details().is_empty() {
        return None;
    }
    let details = Diagnostics::decode(status.details()).ok()?;
    (!details.diagnostics.is_empty()).then_some(details.diagnostics)
}

/// The outcome on stdout; a refusal on stderr, one line per diagnostic.
fn print_applied(
    out: &mut Out,
    file: &str,
    outcome: &Result<ApplyPlaybookResponse, tonic::Status>,
) -> Result<(), Error> {
    let status = match outcome {
        Ok(reply) => return out.line(&text::applied(reply)),
        Err(status) => status,
    };
    if let Some(diagnostics) = diagnostics_of(status) {
        for d in &diagnostics {
            problem(&text::diagnostic(file, d));
        }
        return Ok(());
    }
    for line in message_lines(status.message()) {
        if status.code() == Code::InvalidArgument {
            problem(&text::refused(file, line));
        } else {
            problem(&text::refused(
                file,
                &format!("{}: {line}", code_words(status.code())),
            ));
        }
    }
    Ok(())
}

/// Lists the latest version of each playbook.
pub async fn list(client: &mut Client, out: &mut Out) -> Result<Exit, Error> {
    let playbooks = client.list_playbooks().await?.playbooks;
    match out.format() {
        Format::Json => out.document(&playbooks.iter().map(json::playbook).collect())?,
        Format::Table => out.lines(&text::playbooks(&playbooks))?,
    }
    Ok(Exit::Success)
}

/// Shows one playbook, with its source when asked.
pub async fn show(client: &mut Client, out: &mut Out, args: &ShowArgs) -> Result<Exit, Error> {
    let request = GetPlaybookRequest {
        name: args.name.clone(),
        version: args.version.unwrap_or(0),
    };
    let playbook = client.get_playbook(request).await?;
    match out.format() {
        Format::Json if args.source => out.document(&json::playbook_with_source(&playbook))?,
        Format::Json => out.document(&json::playbook(&playbook))?,
        Format::Table if args.source => out.text(&playbook.source)?,
        Format::Table => out.lines(&text::playbook(&playbook))?,
    }
    Ok(Exit::Success)
}

/// Reads every file before anything is sent, so an unreadable file stops the command before
/// any playbook is applied.
pub(super) fn read_sources(files: &[PathBuf]) -> Result<Vec<Source>, Error> {
    files.iter().map(|path| read_source(path)).collect()
}

fn read_source(path: &Path) -> Result<Source, Error> {
    if path == Path::new("-") {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| Error::Usage(format!("cannot read standard input: {error}")))?;
        return Ok(Source {
            file: "<stdin>".to_string(),
            text,
        });
    }
    let file = path.display().to_string();
    match fs::read_to_string(path) {
        Ok(text) => Ok(Source { file, text }),
        Err(error) => Err(Error::Usage(format!("cannot read {file}: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(diagnostics: Vec<Diagnostic>) -> tonic::Status {
        let details = Diagnostics { diagnostics };
        tonic::Status::with_details(
            Code::InvalidArgument,
            "5:3: steps[0].action: unknown action",
            details.encode_to_vec().into(),
        )
    }

    #[test]
    fn diagnostics_are_read_from_the_status_details_not_its_message() {
        let unknown = Diagnostic {
            message: "unknown action `core.nope`".into(),
            path: "steps[0].action".into(),
            line: 5,
            column: 13,
        };
        let status = refusal(vec![unknown.clone()]);
        assert_eq!(diagnostics_of(&status), Some(vec![unknown.clone()]));
        let document = apply_document("p.yaml", &Err(status));
        assert_eq!(
            document["error"]["messages"][0],
            "5:13: steps[0].action: unknown action `core.nope`"
        );
        assert_eq!(document["error"]["diagnostics"][0]["line"], 5);
        assert_eq!(
            text::diagnostic("p.yaml", &unknown),
            "p.yaml:5:13: steps[0].action: unknown action `core.nope`"
        );
        // Another refusal, or one without details, is read from its message.
        assert_eq!(diagnostics_of(&tonic::Status::invalid_argument("x")), None);
        assert_eq!(diagnostics_of(&tonic::Status::not_found("x")), None);
    }
}
