//! The `notify.*` actions: tell people what automation did, through an incoming webhook.
//!
//! `notify.webhook` input: `url` (required; its host must be in the worker's
//! `--http-allow-hosts`, like every outbound request), `text` (required), `title`, `format`:
//! - `teams`: a Microsoft Teams incoming-webhook MessageCard (`@type`, `summary`, `title`, `text`),
//! - `slack`: a Slack incoming-webhook message (`text`, the title in bold on the first line),
//! - `json` (default): `{"title", "text", "key"}` with the task's idempotency key, so a receiver
//!   can drop the repeat of a retried notification.
//!
//! It is one POST through the `http.request` machinery (allowlist, no redirects, bounded
//! response, 5xx retryable, 4xx permanent). In a dry run nothing is sent: the output shows the
//! request that would be. Output: `{"format", "status"?, "sent", "request": {"host", "json"},
//! "dry_run"}`; the URL itself is never reported (webhook URLs carry their secret).

use serde_json::{Map, Value, json};

use super::{Context, Failure, Fields, Input, Shared, http};

/// Longest `text` or `title` sent.
const TEXT_BYTES_MAX: usize = 16 * 1024;

/// The `notify.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Webhook,
}

impl Action {
    /// All `notify.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Webhook];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Webhook => "notify.webhook",
        }
    }
}

/// The message shape the receiving webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Teams,
    Slack,
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Teams => "teams",
            Format::Slack => "slack",
            Format::Json => "json",
        }
    }
}

/// Runs one `notify.*` action.
pub(crate) async fn execute(
    shared: &Shared,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::Webhook => webhook(shared, input, cx).await,
    }
}

async fn webhook(shared: &Shared, input: Input, cx: &Context) -> Result<Value, Failure> {
    let mut fields = Fields::new(input, &["url", "text", "title", "format"])?;
    let url = fields.required_string("url")?;
    let text = bounded("text", fields.required_string("text")?)?;
    let title = bounded("title", fields.string("title")?.unwrap_or_default())?;
    let format = match fields.string("format")?.as_deref().map(str::trim) {
        None | Some("json") => Format::Json,
        Some("teams") => Format::Teams,
        Some("slack") => Format::Slack,
        Some(other) => {
            return Err(Failure::invalid_input(format!(
                "`format` {other:?} is not teams, slack or json"
            )));
        }
    };
    let body = message(format, &title, &text, &cx.key);
    // Webhook URLs are bearer secrets: only the host and port are ever reported.
    let target = shared.http.check_url(&url)?;
    let request = json!({ "host": target, "json": body });
    if cx.dry_run {
        return Ok(json!({
            "format": format.name(),
            "sent": false,
            "request": request,
            "dry_run": true,
        }));
    }
    let mut input = Map::new();
    input.insert("url".into(), Value::String(url));
    input.insert("method".into(), Value::String("POST".into()));
    input.insert("json".into(), body);
    let response = shared
        .http
        .execute(http::Action::Request, input, cx)
        .await?;
    Ok(json!({
        "format": format.name(),
        "status": response.get("status").cloned().unwrap_or(Value::Null),
        "sent": true,
        "request": request,
        "dry_run": false,
    }))
}

fn bounded(key: &str, text: String) -> Result<String, Failure> {
    if text.len() > TEXT_BYTES_MAX {
        return Err(Failure::invalid_input(format!(
            "`{key}` is longer than {TEXT_BYTES_MAX} bytes"
        )));
    }
    Ok(text)
}

/// The webhook body for `format`. Pure.
fn message(format: Format, title: &str, text: &str, key: &str) -> Value {
    match format {
        Format::Teams => json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": if title.is_empty() { text } else { title },
            "title": title,
            "text": text,
        }),
        Format::Slack if title.is_empty() => json!({ "text": text }),
        Format::Slack => json!({ "text": format!("*{title}*\n{text}") }),
        Format::Json => json!({ "title": title, "text": text, "key": key }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::connectors::http::tests::Server;

    fn shared(server: &Server) -> Shared {
        Shared::test(server.connector())
    }

    fn input(value: Value) -> Input {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        }
    }

    #[tokio::test]
    async fn posts_a_teams_card_and_reports_only_the_host() {
        let server = Server::start().await;
        let url = server.url("/echo");
        let cx = Context::test(Duration::from_secs(5));
        let out = execute(
            &shared(&server),
            Action::Webhook,
            input(json!({"url": url, "text": "blocked", "title": "T", "format": "teams"})),
            &cx,
        )
        .await
        .expect("sent");
        assert_eq!(
            (out["sent"].clone(), out["status"].clone()),
            (json!(true), json!(200))
        );
        assert!(
            !out.to_string().contains("/echo"),
            "the url path is never reported: {out}"
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        let body: Value = serde_json::from_slice(&seen[0].body).expect("json body");
        assert_eq!(body["@type"], "MessageCard");
        assert_eq!(body["text"], "blocked");
    }

    #[tokio::test]
    async fn dry_run_sends_nothing_and_bad_input_is_refused() {
        let server = Server::start().await;
        let cx = Context {
            dry_run: true,
            ..Context::test(Duration::from_secs(5))
        };
        let out = execute(
            &shared(&server),
            Action::Webhook,
            input(json!({"url": server.url("/echo"), "text": "x", "format": "slack"})),
            &cx,
        )
        .await
        .expect("planned");
        assert_eq!(out["sent"], json!(false));
        assert_eq!(out["request"]["json"], json!({"text": "x"}));
        let refused = execute(
            &shared(&server),
            Action::Webhook,
            input(json!({"url": server.url("/echo"), "text": "x", "format": "sms"})),
            &Context::test(Duration::from_secs(5)),
        )
        .await
        .expect_err("unknown format");
        assert_eq!(
            refused.message,
            "invalid input: `format` \"sms\" is not teams, slack or json"
        );
        let outside = execute(
            &shared(&server),
            Action::Webhook,
            input(json!({"url": "http://192.0.2.1:9/hook", "text": "x"})),
            &Context::test(Duration::from_secs(5)),
        )
        .await
        .expect_err("not allowed");
        assert!(
            outside.message.contains("not allowed"),
            "{}",
            outside.message
        );
        assert!(server.seen().is_empty());
    }

    #[test]
    fn shapes() {
        let teams = message(Format::Teams, "T", "x", "r/s/0");
        assert_eq!(teams["@type"], "MessageCard");
        assert_eq!(teams["summary"], "T");
        assert_eq!(
            message(Format::Slack, "T", "x", "k"),
            json!({"text": "*T*\nx"})
        );
        assert_eq!(message(Format::Slack, "", "x", "k"), json!({"text": "x"}));
        assert_eq!(
            message(Format::Json, "T", "x", "r/s/0"),
            json!({"title": "T", "text": "x", "key": "r/s/0"})
        );
    }
}
