//! Syslog messages (RFC 3164 and RFC 5424) → [`Alert`]s, with CEF detected in the MSG.
//!
//! One message at a time: a UDP datagram, or a frame cut from a TCP stream by
//! [`super::framing::FrameDecoder`]. The whole message must be UTF-8 (headers are ASCII by
//! both RFCs; a leading BOM before the RFC 5424 MSG is dropped) and at most
//! [`SYSLOG_MESSAGE_BYTES_MAX`]. A trailing LF, CR or NUL is dropped.
//!
//! Senders are read as rsyslog and syslog-ng read them:
//! - `<PRI>` (0–191). A message without one, or with one that cannot be read, is taken whole
//!   with priority 13 (user.notice), as RFC 3164 §4.3.3 tells a receiver (`pri_assumed`).
//! - After PRI, a digit and a space means RFC 5424, anything else RFC 3164
//!   (`Mmm dd hh:mm:ss [HOSTNAME] MSG`): the word after the timestamp is the HOSTNAME only
//!   when it reads as one (letters, digits, `.`, `-`, `_`, `:`, not ending in `:`), so a TAG
//!   (`app:`, `app[42]:`) or `CEF:0|...` right after the timestamp stays in MSG. A message
//!   without that timestamp keeps everything after PRI as MSG.
//! - Control characters a relay escaped as `#` and three octal digits (rsyslog's `#012` for
//!   a newline) are restored in MSG.
//! - MSG starting with `CEF:` (or containing ` CEF:`, after a TAG or any header) is CEF: the
//!   alert is the CEF alert ([`Source::Cef`]), timed by `rt`, else by the RFC 5424 timestamp
//!   (RFC 3164 has no year: no time). Otherwise, or when the CEF cannot be read, the alert
//!   is [`Source::Syslog`]: title the first line of MSG, description MSG, severity from PRI,
//!   no entities, id a content hash, and a [`Alert::note`] saying why the CEF was not read.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::alert::{self, Alert, Entities, Severity, Source};
use super::{Error, cef, time};

/// Largest syslog message accepted, in bytes.
pub const SYSLOG_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// The priority of a message without a readable `<PRI>` (user.notice, RFC 3164 §4.3.3).
const PRI_ASSUMED: u8 = 13;

/// RFC 5424 field limits, in bytes.
const HOSTNAME_BYTES_MAX: usize = 255;
const APP_NAME_BYTES_MAX: usize = 48;
const PROCID_BYTES_MAX: usize = 128;
const MSGID_BYTES_MAX: usize = 32;
const TIMESTAMP_BYTES_MAX: usize = 64;

/// Structured data: SD-ID → (PARAM-NAME → unescaped value).
pub type StructuredData = BTreeMap<String, BTreeMap<String, String>>;

/// One parsed syslog message. NILVALUE `-` fields are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Syslog {
    pub pri: u8,
    pub facility: u8,
    pub severity: u8,
    /// `Some(1)` for RFC 5424, `None` for RFC 3164.
    pub version: Option<u8>,
    pub timestamp: Option<String>,
    pub hostname: Option<String>,
    pub app_name: Option<String>,
    pub procid: Option<String>,
    pub msgid: Option<String>,
    pub structured_data: Option<StructuredData>,
    pub msg: String,
    /// No readable `<PRI>`: the priority is [`PRI_ASSUMED`] and the whole message is read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pri_assumed: bool,
}

/// Parses one syslog message.
pub fn parse(bytes: &[u8]) -> Result<Syslog, Error> {
    if bytes.len() > SYSLOG_MESSAGE_BYTES_MAX {
        return Err(Error::PayloadTooLarge {
            bytes: bytes.len(),
            max: SYSLOG_MESSAGE_BYTES_MAX,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let (pri, rest, pri_assumed) = match pri(text) {
        Ok((pri, rest)) => (pri, rest, false),
        Err(_) => (PRI_ASSUMED, text, true),
    };
    let mut message = match rfc5424_version(rest) {
        Some((version, after)) => rfc5424(version, after)?,
        None => rfc3164(rest),
    };
    if let Cow::Owned(restored) = unescape_octal(&message.msg) {
        message.msg = restored;
    }
    message.pri_assumed = pri_assumed;
    message.pri = pri;
    message.facility = pri / 8;
    message.severity = pri % 8;
    Ok(message)
}

/// `<PRI>` → (PRI, the rest).
fn pri(text: &str) -> Result<(u8, &str), Error> {
    let rest = text
        .strip_prefix('<')
        .ok_or_else(|| Error::Syslog("missing <pri>".into()))?;
    let end = rest
        .find('>')
        .filter(|&e| (1..=3).contains(&e))
        .ok_or_else(|| Error::Syslog("invalid <pri>".into()))?;
    let digits = &rest[..end];
    let value = digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse::<u16>().ok())
        .flatten()
        .filter(|v| *v <= 191)
        .ok_or_else(|| Error::Syslog(format!("invalid pri {:?}", digits)))?;
    Ok((value as u8, &rest[end + 1..]))
}

/// RFC 5424 starts with VERSION (1–2 digits, not 0) and a space.
fn rfc5424_version(rest: &str) -> Option<(u8, &str)> {
    let (version, after) = rest.split_once(' ')?;
    let ok = (1..=2).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_digit());
    let version: u8 = version.parse().ok().filter(|v| ok && *v > 0)?;
    Some((version, after))
}

fn empty(version: Option<u8>, msg: String) -> Syslog {
    Syslog {
        pri: 0,
        facility: 0,
        severity: 0,
        version,
        timestamp: None,
        hostname: None,
        app_name: None,
        procid: None,
        msgid: None,
        structured_data: None,
        msg,
        pri_assumed: false,
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Mmm dd hh:mm:ss [HOSTNAME] MSG`, leniently.
fn rfc3164(rest: &str) -> Syslog {
    let Some(stamp) = rest.get(..15).filter(|s| is_3164_timestamp(s)) else {
        return empty(None, rest.to_string());
    };
    let after = rest[15..].trim_start_matches(' ');
    let (word, msg) = after.split_once(' ').unwrap_or((after, ""));
    let mut message = if is_hostname(word) {
        let mut message = empty(None, msg.to_string());
        message.hostname = Some(word.to_string());
        message
    } else {
        empty(None, after.to_string())
    };
    message.timestamp = Some(stamp.to_string());
    message
}

/// A word that reads as a HOSTNAME (a name, an IPv4 or IPv6 address), not as a TAG (`app:`,
/// `app[42]:`) or the start of CEF (`CEF:0|...`).
fn is_hostname(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= HOSTNAME_BYTES_MAX
        && !word.ends_with(':')
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
}

/// Restores the control characters a relay escaped as `#` and three octal digits (`#012` a
/// newline, `#011` a tab); a trailing newline that results is dropped, like the message's own.
/// Borrowed (no copy) when there is no `#`, as in most messages.
fn unescape_octal(msg: &str) -> Cow<'_, str> {
    if !msg.contains('#') {
        return Cow::Borrowed(msg);
    }
    let bytes = msg.as_bytes();
    let mut out = String::with_capacity(msg.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'#' && d.iter().all(|b| (b'0'..=b'7').contains(b)))
            .map(|d| d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0')))
            .filter(|code| *code < 0o40 || *code == 0o177);
        match code.and_then(char::from_u32) {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                let c = msg[i..].chars().next().expect("i is at a char boundary");
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Cow::Owned(out.trim_end_matches(['\n', '\r', '\0']).to_string())
}

fn is_3164_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let day = (b[4] == b' ' || b[4].is_ascii_digit()) && b[5].is_ascii_digit();
    let clock = [7, 8, 10, 11, 13, 14]
        .iter()
        .all(|&i| b[i].is_ascii_digit());
    s.get(..3).is_some_and(|m| MONTHS.contains(&m))
        && b[3] == b' '
        && day
        && b[6] == b' '
        && clock
        && b[9] == b':'
        && b[12] == b':'
}

/// The header fields after VERSION, structured data and MSG.
fn rfc5424(version: u8, rest: &str) -> Result<Syslog, Error> {
    let mut parts = rest.splitn(6, ' ');
    let mut field = |name: &str, max: usize| -> Result<Option<String>, Error> {
        let value = parts
            .next()
            .ok_or_else(|| Error::Syslog(format!("rfc 5424 header ends before {name}")))?;
        if value.len() > max {
            return Err(Error::Syslog(format!(
                "rfc 5424 {name} of {} bytes exceeds {max}",
                value.len()
            )));
        }
        Ok(Some(value.to_string()).filter(|v| v != "-"))
    };
    let timestamp = field("timestamp", TIMESTAMP_BYTES_MAX)?;
    let hostname = field("hostname", HOSTNAME_BYTES_MAX)?;
    let app_name = field("app-name", APP_NAME_BYTES_MAX)?;
    let procid = field("procid", PROCID_BYTES_MAX)?;
    let msgid = field("msgid", MSGID_BYTES_MAX)?;
    let tail = parts
        .next()
        .ok_or_else(|| Error::Syslog("rfc 5424 header ends before structured-data".into()))?;
    let (structured_data, after) = structured_data(tail)?;
    let msg = match after.strip_prefix(' ') {
        Some(m) => m.strip_prefix('\u{feff}').unwrap_or(m),
        None if after.is_empty() => "",
        None => return Err(Error::Syslog("no space after structured-data".into())),
    };
    Ok(Syslog {
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        ..empty(Some(version), msg.to_string())
    })
}

/// `-` or `[id k="v" ...]...` → (parsed, rest).
fn structured_data(text: &str) -> Result<(Option<StructuredData>, &str), Error> {
    if let Some(rest) = text.strip_prefix('-') {
        return Ok((None, rest));
    }
    let mut data = StructuredData::new();
    let mut rest = text;
    if !rest.starts_with('[') {
        return Err(Error::Syslog("structured-data must be - or [...]".into()));
    }
    while let Some(inner) = rest.strip_prefix('[') {
        let (id, params, after) = element(inner)?;
        data.entry(id).or_default().extend(params);
        rest = after;
    }
    Ok((Some(data), rest))
}

type Element<'a> = (String, BTreeMap<String, String>, &'a str);

/// One SD-ELEMENT after its `[`: SD-ID, params, the rest after `]`.
fn element(text: &str) -> Result<Element<'_>, Error> {
    let unterminated = || Error::Syslog("unterminated structured-data element".into());
    let id_end = text.find([' ', ']']).ok_or_else(unterminated)?;
    let id = text[..id_end].to_string();
    if id.is_empty() || id.len() > 32 {
        return Err(Error::Syslog("invalid sd-id".into()));
    }
    let mut params = BTreeMap::new();
    let mut rest = &text[id_end..];
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            return Ok((id, params, after));
        }
        let body = rest.strip_prefix(' ').ok_or_else(unterminated)?;
        let (name, after) = body.split_once("=\"").ok_or_else(unterminated)?;
        if name.is_empty() || name.len() > 32 || name.contains([' ', ']', '"']) {
            return Err(Error::Syslog("invalid sd-param name".into()));
        }
        let (value, after) = quoted(after).ok_or_else(unterminated)?;
        params.insert(name.to_string(), value);
        rest = after;
    }
}

/// A PARAM-VALUE up to its closing quote (escapes `\"`, `\\`, `\]`) → (value, rest).
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\\' | ']'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return None,
            },
            c => value.push(c),
        }
    }
    None
}

/// Where CEF starts in a MSG: at 0, or after a space (a TAG before it).
fn find_cef(msg: &str) -> Option<usize> {
    if msg.starts_with("CEF:") {
        return Some(0);
    }
    msg.find(" CEF:").map(|i| i + 1)
}

/// Parses one syslog message into its alert (CEF or plain; see the module docs).
pub fn parse_alert(bytes: &[u8]) -> Result<Alert, Error> {
    let message = parse(bytes)?;
    let header_ms = match message.version {
        Some(_) => message.timestamp.as_deref().and_then(time::rfc3339_ms),
        None => None,
    };
    let mut cef_error = None;
    if let Some(at) = find_cef(&message.msg) {
        let read = cef::parse(&message.msg[at..]).and_then(|parsed| {
            let raw = serde_json::json!({ "syslog": message, "cef": parsed });
            cef::to_alert(&parsed, raw, header_ms, bytes)
        });
        match read {
            Ok(alert) => return Ok(alert),
            Err(e) => cef_error = Some(e.to_string()),
        }
    }
    let first_line = message.msg.lines().next().unwrap_or("").trim();
    let title = match first_line {
        "" => message
            .app_name
            .clone()
            .unwrap_or_else(|| "syslog message".into()),
        line => alert::truncate(line, alert::TITLE_BYTES_MAX),
    };
    let alert = Alert {
        id: cef::content_id(bytes),
        source: Source::Syslog,
        time_ms: header_ms,
        severity: Some(Severity::from_syslog(message.severity)),
        title,
        description: Some(message.msg.clone()).filter(|m| !m.is_empty()),
        status: None,
        entities: Entities::default(),
        dedup_hint: None,
        raw: serde_json::json!({ "syslog": message }).into(),
        note: cef_error.map(|why| format!("not read as CEF: {why}")),
        revision: None,
    };
    alert::check_alert(&alert)?;
    Ok(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_structured_data_and_bom() {
        let m = parse(
            "<165>1 2003-10-11T22:14:15.003Z host app - ID47 [ex@32473 iut=\"3\" eventSource=\"App\\]x\\\"\"][b@1 k=\"v\"] \u{feff}hello"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            (m.pri, m.facility, m.severity, m.version),
            (165, 20, 5, Some(1))
        );
        let sd = m.structured_data.unwrap();
        assert_eq!(sd["ex@32473"]["eventSource"], "App]x\"");
        assert_eq!(sd["b@1"]["k"], "v");
        assert_eq!(m.msgid.as_deref(), Some("ID47"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msg, "hello");
    }

    #[test]
    fn rfc3164_without_timestamp_keeps_everything() {
        let m = parse(b"<13>just text").unwrap();
        assert_eq!(
            (m.timestamp, m.hostname, m.msg.as_str()),
            (None, None, "just text")
        );
    }

    #[test]
    fn without_a_readable_pri_the_whole_message_has_priority_13() {
        for text in ["no pri", "<192>x", "<1a>x", "<>x"] {
            let m = parse(text.as_bytes()).unwrap();
            assert_eq!((m.pri, m.facility, m.severity), (13, 1, 5), "{text}");
            assert!(m.pri_assumed, "{text}");
            assert_eq!(m.msg, text);
        }
        assert!(!parse(b"<13>x").unwrap().pri_assumed);
    }

    #[test]
    fn a_word_after_the_bsd_timestamp_is_a_hostname_only_when_it_reads_as_one() {
        let host = |text: &str| {
            let m = parse(text.as_bytes()).unwrap();
            (m.hostname, m.msg)
        };
        assert_eq!(
            host("<13>Jan 15 10:00:00 fw-01.example.com hello"),
            (Some("fw-01.example.com".into()), "hello".into())
        );
        assert_eq!(
            host("<13>Jan 15 10:00:00 2001:db8::1 hello"),
            (Some("2001:db8::1".into()), "hello".into())
        );
        for msg in [
            "sshd[42]: hello",
            "app: hello",
            "CEF:0|a|b|c|d|e|1|",
            "<local0.info> x",
        ] {
            assert_eq!(
                host(&format!("<13>Jan 15 10:00:00 {msg}")),
                (None, msg.into())
            );
        }
    }

    #[test]
    fn octal_escapes_of_a_relay_are_restored() {
        assert_eq!(unescape_octal("a#012b#011c#012"), "a\nb\tc");
        assert_eq!(
            unescape_octal("#1 #01 #0123 #101 #8aa é#012"),
            "#1 #01 \n3 #101 #8aa é"
        );
    }

    #[test]
    fn header_errors() {
        let err = |b: &[u8]| parse(b).unwrap_err().to_string();
        assert_eq!(
            err(b"<1>1 ts host"),
            "invalid syslog: rfc 5424 header ends before app-name"
        );
        assert_eq!(
            err(b"<1>1 - - - - - [x a=\"b\""),
            "invalid syslog: unterminated structured-data element"
        );
        assert_eq!(
            err(b"<1>\xff"),
            "payload is not utf-8 (invalid byte at offset 3)"
        );
    }

    #[test]
    fn plain_syslog_is_an_alert() {
        let a = parse_alert(b"<11>1 2025-01-15T10:00:00Z h sshd 1 - - boom\nmore").unwrap();
        assert_eq!(a.source, Source::Syslog);
        assert_eq!(a.title, "boom");
        assert_eq!(a.severity, Some(Severity::High));
        assert_eq!(a.time_ms, Some(1_736_935_200_000));
    }
}
