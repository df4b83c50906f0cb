//! Static API tokens, for automation that cannot hold a certificate or an OIDC token. The
//! file (`--api-tokens`) holds only each token's SHA-256, never the token:
//!
//! ```yaml
//! tokens:
//!   - name: soar-bridge                # the principal is `token:soar-bridge`
//!     sha256: 3f1c…                    # `riposte tokens new NAME` prints this line
//! ```
//!
//! A token is `rpt_` and 64 hex digits (256 random bits), so a lookup by its digest is as
//! good as comparing it in constant time: nothing an attacker can choose makes a near miss.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What every API token starts with; a bearer token without it is taken for a JWT.
pub const PREFIX: &str = "rpt_";

/// The tokens file, by digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    by_digest: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tokens: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
}

/// Why a tokens file does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTokens(String);

impl Tokens {
    /// Parses a tokens file's text.
    pub fn parse(text: &str) -> Result<Tokens, InvalidTokens> {
        let file: File =
            marked_yaml::from_yaml(0, text).map_err(|e| InvalidTokens(e.to_string()))?;
        let mut by_digest = HashMap::new();
        for entry in file.tokens {
            let name_ok = !entry.name.is_empty()
                && entry.name.len() <= 64
                && entry
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return Err(InvalidTokens(format!(
                    "token name `{}` must be 1 to 64 letters, digits, `-`, `_` or `.`",
                    entry.name
                )));
            }
            let digest = entry.sha256.to_ascii_lowercase();
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(InvalidTokens(format!(
                    "token `{}`: `sha256` must be 64 hex digits",
                    entry.name
                )));
            }
            if let Some(other) = by_digest.insert(digest, entry.name.clone()) {
                return Err(InvalidTokens(format!(
                    "tokens `{other}` and `{}` have the same digest",
                    entry.name
                )));
            }
        }
        Ok(Tokens { by_digest })
    }

    /// The name of the token `token`, when the file lists it.
    pub fn name_of(&self, token: &str) -> Option<&str> {
        self.by_digest.get(&digest(token)).map(String::as_str)
    }
}

/// Hex SHA-256 of a token, as the file holds it.
pub fn digest(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Hex SHA-256 of `bytes` (a token, a request's message).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_token_names_its_principal_and_others_name_nothing() {
        let token = format!("{PREFIX}{}", "ab".repeat(32));
        let file = format!("tokens:\n  - name: ci\n    sha256: {}\n", digest(&token));
        let tokens = Tokens::parse(&file).unwrap();
        assert_eq!(tokens.name_of(&token), Some("ci"));
        assert_eq!(tokens.name_of(&format!("{token}x")), None);
        assert!(Tokens::parse("tokens:\n  - name: ci\n    sha256: 12\n").is_err());
        assert!(Tokens::parse("tokens:\n  - name: 'a b'\n    sha256: 12\n").is_err());
    }
}
