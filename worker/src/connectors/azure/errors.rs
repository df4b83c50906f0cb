//! Azure error bodies turned into one clear line, and which of them are worth retrying.
//!
//! Accepted shapes (keys matched case-insensitively): the ARM and Graph envelope
//! `{"error": {code, message, target?, details?, innerError?}}` (`innerError` a string in
//! Network, an object elsewhere), the unwrapped `{code, message, ...}` some operations answer,
//! and the token endpoint's `{"error": "invalid_client", "error_description", "error_codes"}`.
//! Anything else becomes `HTTP <status>` with a bounded prefix of the body.

use reqwest::StatusCode;
use serde_json::{Map, Value};

/// Longest message kept from an error body.
const MESSAGE_BYTES_MAX: usize = 600;
/// Most `details` entries quoted.
const DETAILS_MAX: usize = 3;

/// The code and message of an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    /// E.g. `BadArgument`, `accessDenied`, `invalid_client`.
    pub(crate) code: String,
    /// Human-readable, bounded, on one line.
    pub(crate) message: String,
}

impl ApiError {
    /// Reads the error out of a response body.
    pub(crate) fn from_body(status: StatusCode, body: &Value, raw: &[u8]) -> ApiError {
        if let Some(error) = get(body, "error") {
            match error {
                Value::Object(error) => return from_object(status, error),
                Value::String(code) => return from_token_error(code, body),
                _ => {}
            }
        }
        if let Value::Object(object) = body
            && get(body, "code").is_some()
        {
            return from_object(status, object);
        }
        let text = String::from_utf8_lossy(raw);
        let message = match text.trim() {
            "" => status.canonical_reason().unwrap_or("no body").to_owned(),
            text => text.to_owned(),
        };
        ApiError {
            code: format!("HTTP {}", status.as_u16()),
            message: one_line(&message),
        }
    }

    /// `<code>: <message>`.
    pub(crate) fn summary(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }

    /// True for conflicts that mean "another operation is still running on this resource":
    /// retrying after a while succeeds.
    pub(crate) fn is_operation_in_progress(&self) -> bool {
        let code = self.code.to_ascii_lowercase();
        code.contains("inprogress") || code.contains("anotheroperation")
    }
}

fn from_object(status: StatusCode, error: &Map<String, Value>) -> ApiError {
    let text = |key: &str| {
        error
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .and_then(|(_, v)| v.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let code = text("code")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let mut message = text("message").unwrap_or("no message").to_owned();
    if let Some(target) = text("target") {
        message.push_str(&format!(" (target {target})"));
    }
    let inner = error
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("innerError"))
        .map(|(_, v)| v);
    match inner {
        Some(Value::String(inner)) if !inner.trim().is_empty() => {
            message.push_str(&format!(" (inner error: {})", inner.trim()));
        }
        Some(Value::Object(inner)) => {
            if let Some(detail) = inner.get("errordetail").and_then(Value::as_str) {
                message.push_str(&format!(" (inner error: {detail})"));
            }
        }
        _ => {}
    }
    let details = error
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("details"))
        .and_then(|(_, v)| v.as_array());
    let details: Vec<String> = details
        .into_iter()
        .flatten()
        .filter_map(detail_summary)
        .take(DETAILS_MAX)
        .collect();
    if !details.is_empty() {
        message.push_str(&format!("; details: {}", details.join("; ")));
    }
    ApiError {
        code,
        message: one_line(&message),
    }
}

fn detail_summary(detail: &Value) -> Option<String> {
    let field = |key: &str| {
        detail
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match (field("code"), field("message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (Some(text), None) | (None, Some(text)) => Some(text.to_owned()),
        (None, None) => {
            // A policy denial carries its meaning in additionalInfo.
            let info = detail.get("additionalInfo")?.as_array()?.first()?;
            let kind = info.get("type")?.as_str()?;
            let name = info
                .get("info")
                .and_then(|i| i.get("policyDefinitionDisplayName"))
                .and_then(Value::as_str);
            Some(match name {
                Some(name) => format!("{kind}: {name}"),
                None => kind.to_owned(),
            })
        }
    }
}

/// The token endpoint's error: branch on `error` and `error_codes`; the description's first
/// line (`AADSTS...: ...`) goes into the message for operators.
fn from_token_error(code: &str, body: &Value) -> ApiError {
    let codes: Vec<String> = body
        .get("error_codes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .map(|c| c.to_string())
        .collect();
    let description = body
        .get("error_description")
        .and_then(Value::as_str)
        .and_then(|d| d.lines().next())
        .unwrap_or("no description");
    let mut message = description.trim().to_owned();
    if !codes.is_empty() {
        message.push_str(&format!(" (error codes {})", codes.join(", ")));
    }
    ApiError {
        code: code.to_owned(),
        message: one_line(&message),
    }
}

/// The value of `key` in an object, matching the key case-insensitively.
fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Newlines folded, bounded to [`MESSAGE_BYTES_MAX`] on a character boundary.
fn one_line(text: &str) -> String {
    let folded: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    truncate(&folded, MESSAGE_BYTES_MAX)
}

/// At most `max` bytes, cut on a character boundary, with `...` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(status: u16, body: Value) -> ApiError {
        let raw = body.to_string();
        ApiError::from_body(StatusCode::from_u16(status).unwrap(), &body, raw.as_bytes())
    }

    #[test]
    fn wrapped_envelope_with_policy_details() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../../test-support/fixtures/azure/arm-error-envelope.json"
        ))
        .unwrap();
        let error = parse(400, body);
        assert_eq!(error.code, "BadArgument");
        assert_eq!(
            error.message,
            "The provided database 'foo' has an invalid username.; details: PolicyViolation: Allowed locations"
        );
    }

    #[test]
    fn unwrapped_error_with_string_inner_error() {
        let body = json!({"code": "InvalidIpAddress", "message": "Bad\nprefix", "innerError": "at index 2"});
        let error = parse(400, body);
        assert_eq!(
            error.summary(),
            "InvalidIpAddress: Bad prefix (inner error: at index 2)"
        );
    }

    #[test]
    fn graph_error_with_object_inner_error() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../../test-support/fixtures/azure/graph-error-generic.json"
        ))
        .unwrap();
        let error = parse(403, body);
        assert_eq!(
            error.summary(),
            "accessDenied: The caller doesn't have permission to perform the action."
        );
    }

    #[test]
    fn token_error_keeps_the_code_and_the_first_line() {
        let body: Value = serde_json::from_str(include_str!(
            "../../../../test-support/fixtures/azure/entra-token-error-400.json"
        ))
        .unwrap();
        let error = parse(400, body);
        assert_eq!(error.code, "invalid_scope");
        assert!(
            error.message.starts_with("AADSTS70011: The provided value"),
            "{error:?}"
        );
        assert!(error.message.ends_with("(error codes 70011)"), "{error:?}");
        assert!(!error.message.contains("Trace ID"), "{error:?}");
    }

    #[test]
    fn unknown_bodies_and_in_progress_codes() {
        let error = ApiError::from_body(StatusCode::BAD_GATEWAY, &Value::Null, b"<html>bad</html>");
        assert_eq!(error.summary(), "HTTP 502: <html>bad</html>");
        let conflict = parse(
            409,
            json!({"error": {"code": "AnotherOperationInProgress", "message": "x"}}),
        );
        assert!(conflict.is_operation_in_progress());
        let other = parse(409, json!({"error": {"code": "Conflict", "message": "x"}}));
        assert!(!other.is_operation_in_progress());
    }

    #[test]
    fn truncates_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 4), "h...");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
