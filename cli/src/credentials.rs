//! Where the CLI's bearer token comes from, never a flag's value (it would sit in the shell's
//! history and in every process listing): `RIPOSTE_TOKEN_FILE` names a file holding an API
//! token or an OIDC token, or `RIPOSTE_TOKEN_COMMAND` a command that prints one (e.g.
//! `az account get-access-token --resource api://riposte --query accessToken -o tsv`). Without
//! either, the operator certificate of the TLS folder is the credential.

use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// Longest token read; an OIDC token is a few KiB.
const TOKEN_BYTES_MAX: usize = 16 * 1024;
/// How long a token command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A bearer token, kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The `authorization` header value.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// The token the environment names: `RIPOSTE_TOKEN_FILE`, else `RIPOSTE_TOKEN_COMMAND`, else
/// none.
pub async fn from_env() -> Result<Option<Token>, Error> {
    if let Some(path) = std::env::var_os("RIPOSTE_TOKEN_FILE").filter(|p| !p.is_empty()) {
        let path = Path::new(&path);
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!(
                "RIPOSTE_TOKEN_FILE {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        return read("RIPOSTE_TOKEN_FILE", &text).map(Some);
    }
    if let Some(command) = std::env::var("RIPOSTE_TOKEN_COMMAND")
        .ok()
        .filter(|c| !c.trim().is_empty())
    {
        return run(&command).await.map(Some);
    }
    Ok(None)
}

/// The token in `text` (one line, surrounding blanks ignored).
fn read(origin: &str, text: &str) -> Result<Token, Error> {
    let token = text.trim();
    if token.is_empty() || token.len() > TOKEN_BYTES_MAX || token.contains(char::is_whitespace) {
        return Err(Error::Usage(format!(
            "{origin} does not hold one token (one line, no spaces, at most {TOKEN_BYTES_MAX} \
             bytes)"
        )));
    }
    Ok(Token(token.to_string()))
}

/// Runs the token command with `sh -c`; its standard output is the token.
async fn run(command: &str) -> Result<Token, Error> {
    #[expect(
        clippy::disallowed_methods,
        reason = "the operator's own token command, run once per CLI invocation with its \
                  output capped; the worker's process door is for actions"
    )]
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.output())
        .await
        .map_err(|_| {
            Error::Usage(format!(
                "RIPOSTE_TOKEN_COMMAND did not finish within {COMMAND_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| Error::Usage(format!("RIPOSTE_TOKEN_COMMAND did not start: {e}")))?;
    if !output.status.success() {
        return Err(Error::Usage(format!(
            "RIPOSTE_TOKEN_COMMAND failed ({})",
            output.status
        )));
    }
    let text = String::from_utf8(output.stdout)
        .map_err(|_| Error::Usage("RIPOSTE_TOKEN_COMMAND printed no text".into()))?;
    read("RIPOSTE_TOKEN_COMMAND's output", &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_one_line_and_never_shown() {
        let token = read("x", " rpt_abc\n").unwrap();
        assert_eq!(token.header(), "Bearer rpt_abc");
        assert_eq!(format!("{token:?}"), "Token(…)");
        assert!(read("x", "a b").is_err());
        assert!(read("x", "\n").is_err());
    }

    #[tokio::test]
    async fn a_token_command_prints_the_token() {
        assert_eq!(
            run("echo rpt_xyz").await.unwrap().header(),
            "Bearer rpt_xyz"
        );
        assert!(run("exit 3").await.is_err());
    }
}
