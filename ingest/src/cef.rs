//! ArcSight Common Event Format (CEF): the header, the extension, and CEF → [`Alert`].
//!
//! `CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension`
//!
//! - Header fields: `\|` is a pipe, `\\` a backslash (any other `\x` is kept as is); a field
//!   may be empty. Version must be `0` or `1`, spaces around it are ignored (`CEF: 0|`). A
//!   missing 7th pipe (no extension) is accepted; fewer fields are not.
//! - Extension: `key=value` pairs separated by spaces; a value runs to the space before the
//!   next `key=` whose `=` is unescaped, so values may hold spaces (the last value is trimmed
//!   at the end). Escapes `\=`, `\\`, `\n`, `\r`, and `\|` (which some senders write though
//!   `|` needs no escape there). An unescaped `=` that does not
//!   end a key (`[A-Za-z0-9_.-]+` after a space) stays in the value, as senders that forget
//!   to escape URLs expect. A repeated key: the last wins.
//! - Alert: title `Name`; description `msg`; time `rt` (epoch ms); severity from the header
//!   (see [`super::alert`]); `src`/`dst` (and `c6a2`/`c6a3` for IPv6) are attacker/victim IPs,
//!   `shost`/`dhost` hosts (or IPs when they are IPs), `suser`/`duser` accounts with the
//!   `sntdom`/`dntdom` domains. id `vendor|product|externalId` when `externalId` is present
//!   (also the dedup hint), else a content hash of the message (no dedup hint).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::alert::{self, Account, Alert, Entities, Host, Role, Severity, Source};
use super::{Error, time};

/// Longest CEF message accepted, in bytes.
pub const CEF_BYTES_MAX: usize = 64 * 1024;
/// Most extension pairs in one message.
pub const EXTENSION_PAIRS_MAX: usize = 512;
/// Longest extension key, in bytes.
pub const EXTENSION_KEY_BYTES_MAX: usize = 64;

/// One parsed CEF message; header and extension values unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cef {
    pub version: String,
    pub device_vendor: String,
    pub device_product: String,
    pub device_version: String,
    pub signature_id: String,
    pub name: String,
    /// As sent: an integer 0–10 or `Unknown|Low|Medium|High|Very-High`.
    pub severity: String,
    pub extensions: BTreeMap<String, String>,
}

/// Parses a CEF message starting with `CEF:`.
pub fn parse(text: &str) -> Result<Cef, Error> {
    if text.len() > CEF_BYTES_MAX {
        return Err(Error::Cef(format!(
            "message of {} bytes exceeds {CEF_BYTES_MAX}",
            text.len()
        )));
    }
    let body = text
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("cef:"))
        .map(|_| &text[4..])
        .ok_or_else(|| Error::Cef("does not start with CEF:".into()))?;
    let (fields, extension) = split_header(body)?;
    let [
        version,
        vendor,
        product,
        device_version,
        signature_id,
        name,
        severity,
    ] = fields;
    let version = version.trim().to_string();
    if version != "0" && version != "1" {
        return Err(Error::Cef(format!(
            "unsupported version {:?}",
            alert::truncate(&version, 16)
        )));
    }
    Ok(Cef {
        version,
        device_vendor: vendor,
        device_product: product,
        device_version,
        signature_id,
        name,
        severity: severity.trim().to_string(),
        extensions: parse_extension(extension)?,
    })
}

/// The 7 unescaped header fields and the rest (the extension).
fn split_header(body: &str) -> Result<([String; 7], &str), Error> {
    let mut fields: Vec<String> = Vec::with_capacity(7);
    let mut current = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('|' | '\\'))) => current.push(e),
                Some((_, other)) => {
                    current.push('\\');
                    current.push(other);
                }
                None => current.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut current));
                if fields.len() == 7 {
                    let rest = &body[i + 1..];
                    return Ok((to_array(fields), rest));
                }
            }
            c => current.push(c),
        }
    }
    if fields.len() == 6 {
        fields.push(current);
        return Ok((to_array(fields), ""));
    }
    Err(Error::Cef(format!(
        "header has {} of 7 fields",
        fields.len() + 1
    )))
}

fn to_array(fields: Vec<String>) -> [String; 7] {
    let mut it = fields.into_iter();
    std::array::from_fn(|_| it.next().unwrap_or_default())
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// Byte ranges `(key_start, eq)` of the keys of an extension.
fn key_positions(ext: &str) -> Vec<(usize, usize)> {
    let b = ext.as_bytes();
    let mut keys = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'=' => {
                let start = (0..i).rev().take_while(|&j| is_key_byte(b[j])).last();
                if let Some(start) = start {
                    let at_boundary = start == 0 || b[start - 1] == b' ';
                    if at_boundary && i - start <= EXTENSION_KEY_BYTES_MAX {
                        keys.push((start, i));
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    keys
}

/// Parses the extension into its unescaped pairs.
pub fn parse_extension(ext: &str) -> Result<BTreeMap<String, String>, Error> {
    let keys = key_positions(ext);
    if keys.len() > EXTENSION_PAIRS_MAX {
        return Err(Error::Cef(format!(
            "{} extension pairs exceed {EXTENSION_PAIRS_MAX}",
            keys.len()
        )));
    }
    let mut pairs = BTreeMap::new();
    for (n, &(start, eq)) in keys.iter().enumerate() {
        let value = match keys.get(n + 1) {
            Some(&(next, _)) => &ext[eq + 1..next - 1],
            None => ext[eq + 1..].trim_end(),
        };
        pairs.insert(ext[start..eq].to_string(), unescape_value(value));
    }
    Ok(pairs)
}

/// Unescapes an extension value (`\=`, `\\`, `\|`, `\n`, `\r`; other `\x` kept as is).
pub fn unescape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('=' | '\\' | '|')) => out.push(e),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Escapes an extension value so [`parse_extension`] reads it back unchanged.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a header field (`\` and `|`).
pub fn escape_header(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|")
}

/// Parses a bare CEF line (UTF-8, at most [`CEF_BYTES_MAX`]; a trailing newline is dropped)
/// into an alert.
pub fn parse_alert(bytes: &[u8]) -> Result<Alert, Error> {
    if bytes.len() > CEF_BYTES_MAX {
        return Err(Error::PayloadTooLarge {
            bytes: bytes.len(),
            max: CEF_BYTES_MAX,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.trim_end_matches(['\r', '\n', '\0']);
    let cef = parse(text)?;
    let raw = serde_json::json!({ "cef": cef });
    to_alert(&cef, raw, None, bytes)
}

/// Builds the alert of a parsed CEF message: `raw` is what is kept, `fallback_ms` the time
/// when there is no `rt` (the syslog header's), `message` the bytes hashed when the message
/// has no `externalId`.
pub fn to_alert(
    cef: &Cef,
    raw: Value,
    fallback_ms: Option<i64>,
    message: &[u8],
) -> Result<Alert, Error> {
    let ext = |k: &str| {
        cef.extensions
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let external =
        ext("externalId").map(|e| format!("{}|{}|{e}", cef.device_vendor, cef.device_product));
    let alert = Alert {
        id: external.clone().unwrap_or_else(|| content_id(message)),
        source: Source::Cef,
        time_ms: ext("rt").and_then(time::epoch_ms_text).or(fallback_ms),
        severity: Severity::from_cef(&cef.severity),
        title: cef.name.clone(),
        description: ext("msg").map(str::to_string),
        status: None,
        entities: entities(cef)?,
        dedup_hint: external,
        raw: raw.into(),
        note: None,
        revision: None,
    };
    alert::check_alert(&alert)?;
    Ok(alert)
}

/// `sha256:` and the first 16 bytes of the SHA-256 of `message`, in hex.
pub(crate) fn content_id(message: &[u8]) -> String {
    let digest = Sha256::digest(message);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn entities(cef: &Cef) -> Result<Entities, Error> {
    let ext = |k: &str| {
        cef.extensions
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let mut entities = Entities::default();
    let sides = [
        (Role::Attacker, "src", "c6a2", "shost", "suser", "sntdom"),
        (Role::Victim, "dst", "c6a3", "dhost", "duser", "dntdom"),
    ];
    for (role, ip, ip6, host, user, domain) in sides {
        for key in [ip, ip6] {
            if let Some(v) = ext(key) {
                entities.add_ip(v, Some(role))?;
            }
        }
        if let Some(h) = ext(host)
            && !entities.add_ip(h, Some(role))?
        {
            entities.add_host(Host {
                name: h.split('.').next().unwrap_or(h).to_string(),
                fqdn: h.contains('.').then(|| h.to_string()),
                azure_id: None,
                role: Some(role),
            })?;
        }
        if let Some(u) = ext(user) {
            let mut account = Account::from_text(u, Some(role));
            if account.domain.is_none() {
                account.domain = ext(domain).map(str::to_string);
            }
            entities.add_account(account)?;
        }
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_escapes() {
        let cef = parse(r"CEF:0|A\|B|P\\Q|1|sig|N \| x|3|").unwrap();
        assert_eq!(cef.device_vendor, "A|B");
        assert_eq!(cef.device_product, r"P\Q");
        assert_eq!(cef.name, "N | x");
        assert!(cef.extensions.is_empty());
    }

    #[test]
    fn extension_values() {
        let pairs =
            parse_extension(r"a=1 2 3 b=x\=y c=C:\\ d=line\nnext\r e=a|b f=u?v=w  ").unwrap();
        assert_eq!(pairs["a"], "1 2 3");
        assert_eq!(pairs["b"], "x=y");
        assert_eq!(pairs["c"], "C:\\");
        assert_eq!(pairs["d"], "line\nnext\r");
        assert_eq!(pairs["e"], "a|b");
        assert_eq!(pairs["f"], "u?v=w");
    }

    #[test]
    fn malformed_headers() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(err("CEF:0|a|b|c"), "invalid cef: header has 4 of 7 fields");
        assert_eq!(
            err("CEF:2|a|b|c|d|e|5|x=1"),
            "invalid cef: unsupported version \"2\""
        );
        assert_eq!(
            err("LEEF:1.0|a|b|c|d|"),
            "invalid cef: does not start with CEF:"
        );
        assert_eq!(
            err(r"CEF:0|a|b|c|d|e\|5"),
            "invalid cef: header has 6 of 7 fields"
        );
    }
}
