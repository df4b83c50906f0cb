//! The one door upstream text passes through before it leaves the worker: every task failure
//! message (what the orchestrator records in the run's history) and every log line that
//! quotes an upstream answer go through [`Redactor::redact`].
//!
//! An upstream that echoes its request (a misbehaving proxy, a debugging endpoint, an attacker's
//! server) would otherwise put the worker's credentials into a step error. Two nets catch them:
//!
//! - **Known values.** Every secret the worker holds is registered: the Azure client secret
//!   when the worker starts, each access token when the token cache obtains it (the latest
//!   [`TOKENS_MAX`]), and for one task the credentials its own input carries (sensitive
//!   `headers`, a password in the `url`). Each is looked for as is, percent-encoded (form and
//!   URL forms, either hex case) and JSON-escaped; a run of at least [`PREFIX_BYTES_MIN`] bytes
//!   of a value's beginning counts too, so a value cut by a message's length bound is caught.
//! - **Patterns**, for credentials the worker never saw: the value of an `Authorization` or
//!   `Proxy-Authorization` header (`Authorization: Bearer [redacted]`), a long token after
//!   `Bearer`, the value of `client_secret`, `client_assertion`, `assertion`, `access_token`,
//!   `refresh_token`, `id_token`, `password`, `passwd`, `secret`, `api_key` and `x-api-key` in
//!   header, form, query, JSON (also escaped inside a JSON string) and percent-encoded forms,
//!   and the user info of a URL.
//!
//! Every match becomes `[redacted]`; what is around it (the status, the error code, the
//! upstream's message) stays, so the error still says what failed.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, LazyLock, RwLock};

use regex::{Captures, Regex};
use serde_json::Value;

/// What a secret is replaced by.
pub(crate) const REDACTED: &str = "[redacted]";
/// What a secret is replaced by until every net has run, so that no pattern takes a
/// replacement (or a part of it) for a value.
const MARK: char = '\u{1}';
/// Access tokens looked for: the latest this many the worker obtained (older ones expired).
pub(crate) const TOKENS_MAX: usize = 32;
/// A run of a known value's first bytes at least this long is redacted as the value itself.
pub(crate) const PREFIX_BYTES_MIN: usize = 12;

/// The secrets of one worker and the patterns; cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    known: Arc<RwLock<Known>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor")
    }
}

/// Registered values, each with its encoded forms.
#[derive(Default)]
struct Known {
    /// Configured secrets, for the life of the worker.
    configured: Vec<Vec<String>>,
    /// Obtained tokens, oldest first.
    tokens: VecDeque<Vec<String>>,
}

impl Redactor {
    /// A configured secret (e.g. the Azure client secret), looked for as long as the worker runs.
    pub(crate) fn register(&self, secret: &str) {
        let forms = forms(secret);
        if forms.is_empty() {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if !known.configured.contains(&forms) {
            known.configured.push(forms);
        }
    }

    /// A token the worker obtained; the oldest is forgotten past [`TOKENS_MAX`].
    pub(crate) fn register_token(&self, token: &str) {
        let forms = forms(token);
        if forms.is_empty() {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.tokens.contains(&forms) {
            return;
        }
        if known.tokens.len() == TOKENS_MAX {
            known.tokens.pop_front();
        }
        known.tokens.push_back(forms);
    }

    /// `text` without any registered secret and without any credential the patterns find.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.redact_with(text, &[])
    }

    /// Like [`Redactor::redact`], also redacting `extra` (the credentials of one task, see
    /// [`input_secrets`]).
    pub(crate) fn redact_with(&self, text: &str, extra: &[String]) -> String {
        let mut spans = Vec::new();
        {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            let values = known.configured.iter().chain(&known.tokens);
            for form in values.flatten() {
                find_value(text, form, &mut spans);
            }
        }
        for value in extra {
            for form in forms(value) {
                find_value(text, &form, &mut spans);
            }
        }
        let text = replace_spans(text, spans);
        patterns(&text).replace(MARK, REDACTED)
    }
}

/// The credentials a task's input carries: the values of its `headers` whose names say they
/// hold a credential (without their scheme: `x` of `Bearer x`), and the password of its `url`.
/// Empty for an input that is not a JSON object.
pub(crate) fn input_secrets(input_json: &str) -> Vec<String> {
    let Ok(Value::Object(input)) = serde_json::from_str::<Value>(input_json) else {
        return Vec::new();
    };
    let mut secrets = Vec::new();
    if let Some(Value::Object(headers)) = input.get("headers") {
        for (name, value) in headers {
            let Value::String(value) = value else {
                continue;
            };
            if is_sensitive_header(name) {
                // `Bearer x`: the credential alone (the scheme says what failed).
                let credential = match value.trim().split_once(char::is_whitespace) {
                    Some((_, credential)) => credential,
                    None => value,
                };
                secrets.push(credential.trim().to_owned());
            }
        }
    }
    let url = input.get("url").and_then(Value::as_str);
    if let Some(url) = url.and_then(|url| reqwest::Url::parse(url).ok())
        && let Some(password) = url.password()
    {
        secrets.push(password.to_owned());
    }
    secrets
}

fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth",
        "token",
        "secret",
        "key",
        "password",
        "cookie",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// The forms a value may take in upstream text: as is, percent-encoded as a form field and as
/// a URL part (either hex case), and JSON-escaped. Empty for a blank value.
fn forms(value: &str) -> Vec<String> {
    let value = value.trim();
    if value.is_empty() {
        return Vec::new();
    }
    let json = serde_json::to_string(value).unwrap_or_default();
    let candidates = [
        value.to_owned(),
        percent_encode(value, b"*-._", true),
        percent_encode(value, b"-._~", false),
        json[1..json.len() - 1].to_owned(),
    ];
    let mut forms: Vec<String> = Vec::new();
    for form in candidates {
        let lower = lower_hex(&form);
        for form in [form, lower] {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// `value` with every byte but ASCII alphanumerics and `keep` as `%XX`; a space as `+` when
/// `plus` (the form encoding).
fn percent_encode(value: &str, keep: &[u8], plus: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for &byte in value.as_bytes() {
        match byte {
            b' ' if plus => out.push('+'),
            b if b.is_ascii_alphanumeric() || keep.contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `%XX` escapes with lowercase hex digits.
fn lower_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3).unwrap_or(&rest[at..]);
        out.push_str(&escape.to_ascii_lowercase());
        rest = &rest[at + escape.len()..];
    }
    out.push_str(rest);
    out
}

/// Adds the byte range of every occurrence of `value` in `text`, and of every run of at least
/// [`PREFIX_BYTES_MIN`] bytes of its beginning.
fn find_value(text: &str, value: &str, spans: &mut Vec<Range<usize>>) {
    let (text_bytes, value_bytes) = (text.as_bytes(), value.as_bytes());
    let needle = &value[..floor_char_boundary(value, PREFIX_BYTES_MIN.min(value.len()))];
    if needle.is_empty() {
        return;
    }
    let mut from = 0;
    while let Some(at) = text[from..].find(needle) {
        let start = from + at;
        let mut end = start + needle.len();
        while end < text_bytes.len()
            && end - start < value_bytes.len()
            && text_bytes[end] == value_bytes[end - start]
        {
            end += 1;
        }
        let end = floor_char_boundary(text, end);
        spans.push(start..end);
        from = end.max(start + 1);
        from = ceil_char_boundary(text, from);
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    while at < text.len() && !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// `text` with each of `spans` (merged where they overlap or touch) replaced by [`MARK`].
fn replace_spans(text: &str, mut spans: Vec<Range<usize>>) -> Cow<'_, str> {
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_by_key(|span| span.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut current: Option<Range<usize>> = None;
    for span in spans {
        match &mut current {
            Some(open) if span.start <= open.end => open.end = open.end.max(span.end),
            _ => {
                if let Some(done) = current.take() {
                    out.push_str(&text[copied..done.start]);
                    out.push(MARK);
                    copied = done.end;
                }
                current = Some(span);
            }
        }
    }
    if let Some(done) = current {
        out.push_str(&text[copied..done.start]);
        out.push(MARK);
        copied = done.end;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// A quote as it may appear around a key or a value: plain, escaped inside a JSON string, or
/// percent-encoded.
const QUOTE: &str = r#"(?:\\?["']|%22|%27)"#;
/// A key's separator: `:` or `=`, plain or percent-encoded, with the quotes and spaces around.
const SEPARATOR: &str = r"\s*(?:[:=]|%3[aAdD])\s*";
/// An unquoted value: up to a space, a quote, an escape, a field separator or a [`MARK`].
const BARE: &str = r#"[^\s"'<>\\,;&\x01]+"#;

/// `Authorization: Bearer x`, `"authorization": ["Basic x"]`, `Authorization=Bearer%20x`.
static AUTHORIZATION: LazyLock<Regex> = LazyLock::new(|| {
    let schemes = "bearer|basic|digest|negotiate|ntlm|pop|sharedkey|sharedaccesssignature|token";
    regex(&format!(
        r"(?i)(?P<head>(?:proxy-)?authorization{QUOTE}?{SEPARATOR}(?:\[\s*)?{QUOTE}?\s*(?:(?:{schemes})(?:\s+|%20|\+))?)(?P<value>{BARE}|\x01)"
    ))
});

/// `client_secret=x`, `"access_token": "x"`, `\"password\":\"x\"`, `api-key: x`.
static CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    let keys = r"client[_-]?secret|client[_-]?assertion|assertion|access[_-]?token|refresh[_-]?token|id[_-]?token|password|passwd|secret|x-api-key|api[_-]?key";
    let quoted = r#"\\?"[^"\\\x01]+(?:\\?")?|'[^'\\\x01]+'?|%2[27](?:[^&\s%\x01]|%(?:[013-9a-fA-F][0-9a-fA-F]|2[013-689a-fA-F]))+(?:%2[27])?"#;
    regex(&format!(
        r"(?i)(?P<head>(?:{keys}){QUOTE}?{SEPARATOR})(?P<value>{quoted}|{BARE})"
    ))
});

/// A long token after `Bearer` where no header name says so.
static BEARER: LazyLock<Regex> = LazyLock::new(|| {
    regex(r"(?i)(?P<head>\bbearer(?:\s+|%20|\+))(?P<value>[a-z0-9\-._~+/]{16,}=*)")
});

/// `https://user:password@host`.
static USER_INFO: LazyLock<Regex> = LazyLock::new(|| {
    regex(r#"(?i)(?P<head>\b[a-z][a-z0-9+.-]*://)(?P<value>[^/\s:@"'<>\x01]+:[^/\s@"'<>\x01]*)@"#)
});

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the redaction patterns are valid")
}

/// `text` with every credential the patterns find redacted, its quotes kept.
fn patterns(text: &str) -> Cow<'_, str> {
    let mut text = Cow::Borrowed(text);
    for pattern in [&*AUTHORIZATION, &*CREDENTIAL, &*BEARER] {
        if let Cow::Owned(replaced) = pattern.replace_all(&text, keep_quotes) {
            text = Cow::Owned(replaced);
        }
    }
    if let Cow::Owned(replaced) = USER_INFO.replace_all(&text, "${head}\x01@") {
        text = Cow::Owned(replaced);
    }
    text
}

/// The head, then [`MARK`] inside the value's quotes, if it had any.
fn keep_quotes(captures: &Captures<'_>) -> String {
    let value = &captures["value"];
    let quote = ["\\\"", "\"", "'", "%22", "%27"]
        .into_iter()
        .find(|quote| value.starts_with(quote))
        .unwrap_or("");
    format!("{}{quote}{MARK}{quote}", &captures["head"])
}

#[cfg(test)]
mod tests;
