//! The `http.request` action, and the only place in the worker that builds an HTTP client.
//!
//! Input: `url` (required, http or https), `method` (default GET), `headers` (object of
//! strings), `json` (any JSON body) or `body` (text), `timeout` (default 30 s, capped by the
//! task's timeout), `response_bytes_max` (default 1 MiB, at most 10 MiB).
//!
//! Output: `{"status": 200, "headers": {...}, "body": ...}` where `body` is JSON when the
//! response says it is JSON (and parses), else text.
//!
//! Safety: the URL's host and port must be in the allowlist, checked before any connection.
//! Redirects are never followed (a 3xx comes back as the output), so a response cannot send the
//! worker to a host outside the allowlist. Proxy settings from the environment are ignored for
//! the same reason. The body is read in chunks and reading stops past the cap, whatever
//! `Content-Length` says.
//!
//! Dry runs: a safe request (GET, HEAD, OPTIONS: reads by HTTP's own rules, such as a health
//! check) is sent as usual; any other is not sent, and the output is `{"sent": false,
//! "dry_run": true, "method", "host"}`.
//!
//! Failures: connection errors, timeouts and 5xx are retryable; 4xx, refusals and bad input are
//! not. A status failure's message carries the status and a bounded prefix of the body.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use super::{Context, Failure, Fields, Input};
use crate::config::{AllowedHost, Host};

/// Time a request may take unless its input says otherwise.
const TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// Longest `timeout` an input may ask for (the task's timeout caps it further).
const TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// Largest response body read unless the input says otherwise.
const RESPONSE_BYTES_DEFAULT: u64 = 1024 * 1024;
/// Largest `response_bytes_max` an input may ask for.
const RESPONSE_BYTES_MAX: u64 = 10 * 1024 * 1024;
/// How much of an error response's body goes into the failure message.
const ERROR_BODY_PREFIX_BYTES: usize = 512;

/// How long the Azure client may take to open a connection.
const AZURE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The settings every client of the worker shares: rustls (the only TLS compiled in), no
/// redirects, no proxy from the environment, the worker's user agent.
#[expect(
    clippy::disallowed_methods,
    reason = "this is the HTTP door: every client of the worker is built here"
)]
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("riposte-worker/", env!("CARGO_PKG_VERSION")))
}

/// The `http.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Request,
}

impl Action {
    /// All `http.*` actions.
    pub(crate) const ALL: &[Action] = &[Action::Request];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Request => "http.request",
        }
    }
}

/// The HTTP connector: one client (connection pool) and the allowlist it enforces.
#[derive(Debug)]
pub(crate) struct Connector {
    client: reqwest::Client,
    allow_hosts: Vec<AllowedHost>,
}

impl Connector {
    /// Builds the client: rustls, no redirects, no proxy from the environment.
    pub(crate) fn new(allow_hosts: Vec<AllowedHost>) -> Result<Connector, crate::Error> {
        let client = client_builder().build().map_err(crate::Error::HttpClient)?;
        Ok(Connector {
            client,
            allow_hosts,
        })
    }

    /// Builds the client of the Azure backends, in its own connection pool: like this
    /// connector's (rustls, no redirects, no proxy from the environment, the worker's user
    /// agent) with a connect timeout. It has no allowlist: it only calls the Azure endpoints of
    /// the worker's settings.
    pub(crate) fn azure_client(&self) -> Result<reqwest::Client, crate::Error> {
        client_builder()
            .connect_timeout(AZURE_CONNECT_TIMEOUT)
            .build()
            .map_err(crate::Error::HttpClient)
    }

    /// Runs one `http.*` action.
    pub(crate) async fn execute(
        &self,
        action: Action,
        input: Input,
        cx: &Context,
    ) -> Result<Value, Failure> {
        match action {
            Action::Request => self.request(input, cx).await,
        }
    }

    async fn request(&self, input: Input, cx: &Context) -> Result<Value, Failure> {
        let request = Request::parse(input)?;
        let target = self.check_allowed(&request.url)?;
        if cx.dry_run && !request.method.is_safe() {
            return Ok(json!({
                "sent": false,
                "dry_run": true,
                "method": request.method.as_str(),
                "host": target,
            }));
        }
        let timeout = request.timeout.min(cx.timeout);
        match tokio::time::timeout(timeout, self.send(request, &target)).await {
            Ok(result) => result,
            Err(_) => {
                let timeout = humantime::format_duration(timeout);
                Err(Failure::retryable(format!(
                    "http request to {target} timed out after {timeout}"
                )))
            }
        }
    }

    /// Parses `url` and checks it against the allowlist without sending anything; answers
    /// `host:port`.
    pub(crate) fn check_url(&self, url: &str) -> Result<String, Failure> {
        self.check_allowed(&parse_url(url)?)
    }

    /// Refuses a URL whose host and port no allowlist entry allows; answers `host:port` for
    /// messages (never the full URL, which may carry credentials).
    fn check_allowed(&self, url: &Url) -> Result<String, Failure> {
        let host = url.host_str().map(Host::from_url_host);
        let port = url.port_or_known_default();
        let (Some(host), Some(port)) = (host, port) else {
            return Err(Failure::invalid_input("`url` must name a host"));
        };
        let target = format!("{host}:{port}");
        if self
            .allow_hosts
            .iter()
            .any(|allowed| allowed.allows(&host, port))
        {
            return Ok(target);
        }
        let message =
            format!("host {target} is not allowed: it is not in the worker's --http-allow-hosts");
        Err(Failure::permanent(message))
    }

    async fn send(&self, request: Request, target: &str) -> Result<Value, Failure> {
        let mut builder = self
            .client
            .request(request.method, request.url)
            .headers(request.headers);
        builder = match request.body {
            Body::Empty => builder,
            Body::Json(value) => builder.json(&value),
            Body::Text(text) => builder.body(text),
        };
        let sent = match builder.build() {
            Ok(built) => send(&self.client, built, "http").await,
            Err(e) => Err(e),
        };
        let mut response = sent.map_err(|e| transport_failure(target, e))?;
        let status = response.status();
        let headers = headers_json(response.headers());
        let is_json = is_json(response.headers());
        let body = read_capped(&mut response, request.response_bytes_max, target).await?;
        if status.is_client_error() || status.is_server_error() {
            return Err(status_failure(status, target, &body.bytes));
        }
        if !body.complete {
            let cap = request.response_bytes_max;
            return Err(Failure::permanent(format!(
                "response body from {target} is larger than response_bytes_max ({cap} bytes)"
            )));
        }
        let body = decode_body(body.bytes, is_json);
        Ok(json!({ "status": status.as_u16(), "headers": headers, "body": body }))
    }
}

/// Sends one outbound request of a connector (`upstream`: `http`, `azure`, `entra`): the
/// door every connector's HTTP call passes. Its `http.client` span continues the task's trace,
/// and the request carries that span's `traceparent`; its duration, status class and any 429
/// are counted ([`crate::telemetry`]).
pub(crate) async fn send(
    client: &reqwest::Client,
    mut request: reqwest::Request,
    upstream: &'static str,
) -> Result<reqwest::Response, reqwest::Error> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "http.client",
        otel.name = %format_args!("{} {upstream}", request.method()),
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
        riposte.upstream = upstream,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = span.in_scope(riposte_telemetry::TraceParent::current) {
        riposte_telemetry::context::to_headers(&parent, request.headers_mut());
    }
    let started = crate::clock::monotonic();
    let result = client.execute(request).instrument(span.clone()).await;
    let metrics = crate::telemetry::metrics();
    let class = match &result {
        Ok(response) => {
            let status = response.status().as_u16();
            span.record("http.response.status_code", status);
            if status == 429 {
                metrics
                    .upstream_throttled
                    .add(1, &[opentelemetry::KeyValue::new("upstream", upstream)]);
            }
            crate::telemetry::status_class(status)
        }
        Err(_) => "transport",
    };
    let labels = [
        opentelemetry::KeyValue::new("upstream", upstream),
        opentelemetry::KeyValue::new("status_class", class),
    ];
    metrics
        .upstream_duration
        .record(started.elapsed().as_secs_f64(), &labels);
    if matches!(class, "4xx" | "5xx" | "transport") {
        metrics.upstream_errors.add(1, &labels);
    }
    result
}

/// A validated `http.request` input.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
    timeout: Duration,
    response_bytes_max: u64,
}

#[derive(Debug)]
enum Body {
    Empty,
    Json(Value),
    Text(String),
}

impl Request {
    fn parse(input: Input) -> Result<Request, Failure> {
        let known = [
            "url",
            "method",
            "headers",
            "json",
            "body",
            "timeout",
            "response_bytes_max",
        ];
        let mut fields = Fields::new(input, &known)?;
        let url = parse_url(&fields.required_string("url")?)?;
        let method = parse_method(fields.string("method")?.as_deref().unwrap_or("GET"))?;
        let headers = parse_headers(fields.object("headers")?.unwrap_or_default())?;
        let body = match (fields.value("json"), fields.string("body")?) {
            (Some(_), Some(_)) => {
                return Err(Failure::invalid_input(
                    "give either `json` or `body`, not both",
                ));
            }
            (Some(value), None) => Body::Json(value),
            (None, Some(text)) => Body::Text(text),
            (None, None) => Body::Empty,
        };
        let timeout = fields
            .duration("timeout", TIMEOUT_MAX)?
            .unwrap_or(TIMEOUT_DEFAULT);
        let response_bytes_max = fields
            .u64("response_bytes_max")?
            .unwrap_or(RESPONSE_BYTES_DEFAULT);
        if response_bytes_max > RESPONSE_BYTES_MAX {
            return Err(Failure::invalid_input(format!(
                "`response_bytes_max` {response_bytes_max} exceeds the maximum of {RESPONSE_BYTES_MAX}"
            )));
        }
        Ok(Request {
            method,
            url,
            headers,
            body,
            timeout,
            response_bytes_max,
        })
    }
}

fn parse_url(text: &str) -> Result<Url, Failure> {
    let url = Url::parse(text).map_err(|e| Failure::invalid_input(format!("`url`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Failure::invalid_input(format!(
            "`url` must use http or https, not {}",
            url.scheme()
        )));
    }
    Ok(url)
}

fn parse_method(text: &str) -> Result<Method, Failure> {
    Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
        .map_err(|_| Failure::invalid_input(format!("`method` {text:?} is not an http method")))
}

fn parse_headers(object: Map<String, Value>) -> Result<HeaderMap, Failure> {
    let mut headers = HeaderMap::new();
    for (name, value) in object {
        let Value::String(value) = value else {
            return Err(Failure::invalid_input(format!(
                "`headers`: the value of {name:?} must be a string"
            )));
        };
        let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Failure::invalid_input(format!("`headers`: {name:?} is not a valid header name"))
        })?;
        let header_value = HeaderValue::from_str(&value).map_err(|_| {
            Failure::invalid_input(format!(
                "`headers`: the value of {name:?} is not a valid header value"
            ))
        })?;
        headers.append(header_name, header_value);
    }
    Ok(headers)
}

/// A body read up to a cap.
pub(crate) struct Capped {
    pub(crate) bytes: Vec<u8>,
    /// False when the body went on past the cap (the rest was not read).
    pub(crate) complete: bool,
}

/// Reads the body chunk by chunk and stops as soon as it passes `cap` bytes.
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: u64,
    target: &str,
) -> Result<Capped, Failure> {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_failure(target, e))?
    {
        if bytes.len() + chunk.len() > cap {
            let room = cap - bytes.len();
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Capped {
                bytes,
                complete: false,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Capped {
        bytes,
        complete: true,
    })
}

fn headers_json(headers: &HeaderMap) -> Map<String, Value> {
    let mut object = Map::new();
    for name in headers.keys() {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect();
        object.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
    }
    object
}

/// True for `application/json` and `application/*+json`.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn decode_body(bytes: Vec<u8>, is_json: bool) -> Value {
    if is_json && let Ok(value) = serde_json::from_slice(&bytes) {
        return value;
    }
    match String::from_utf8(bytes) {
        Ok(text) => Value::String(text),
        Err(e) => Value::String(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn status_failure(status: StatusCode, target: &str, body: &[u8]) -> Failure {
    let prefix = &body[..body.len().min(ERROR_BODY_PREFIX_BYTES)];
    let prefix = String::from_utf8_lossy(prefix);
    let mut message = format!("http {status} from {target}");
    if !prefix.trim().is_empty() {
        message.push_str(": ");
        message.push_str(prefix.trim());
    }
    Failure {
        message,
        retryable: status.is_server_error(),
        retry_after: None,
    }
}

/// A failure to connect, send or read: retryable, with the whole error chain (without the URL).
pub(crate) fn transport_failure(target: &str, error: reqwest::Error) -> Failure {
    let error = error.without_url();
    let mut message = format!("http request to {target} failed");
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        // Layers often repeat their source's text; keep each piece once.
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = e.source();
    }
    Failure::retryable(message)
}

#[cfg(test)]
pub(crate) mod tests;
