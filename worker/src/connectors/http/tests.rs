//! Tests of `http.request` against a real HTTP/1.1 server on 127.0.0.1 (port 0), written with
//! a bare tokio listener so the tests see exactly what reached the server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Largest request head the test server reads.
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// A local HTTP server that answers by path and records what it saw.
pub(crate) struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (count, log) = (Arc::clone(&connections), Arc::clone(&seen));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, addr, Arc::clone(&log)));
            }
        });
        Server {
            addr,
            connections,
            seen,
            task,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn connector(&self) -> Connector {
        let allowed = self
            .addr
            .to_string()
            .parse()
            .expect("the server address is an allowed host");
        Connector::new(vec![allowed]).expect("connector builds")
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

async fn serve(mut stream: TcpStream, addr: SocketAddr, log: Arc<Mutex<Vec<Seen>>>) {
    let Some(seen) = read_request(&mut stream).await else {
        return;
    };
    log.lock().expect("seen lock").push(seen.clone());
    let response = respond(&seen, addr).await;
    let _ = stream.write_all(&response).await;
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buffer.len() > HEAD_BYTES_MAX {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (method, path) = (
        request_line.next()?.to_owned(),
        request_line.next()?.to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, v)| v.parse().ok());
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length.unwrap_or(0) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn respond(seen: &Seen, addr: SocketAddr) -> Vec<u8> {
    match seen.path.as_str() {
        "/json" => reply(
            "200 OK",
            "application/json",
            br#"{"hello":"world","n":[1,2]}"#,
        ),
        "/text" => reply("200 OK", "text/plain", b"plain text"),
        "/echo" => {
            let content_type = header(seen, "content-type").unwrap_or("application/octet-stream");
            let mut response = reply("200 OK", content_type, &seen.body);
            let method = format!("X-Method: {}\r\n", seen.method);
            let at = response
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(0, |p| p + 2);
            response.splice(at..at, method.into_bytes());
            response
        }
        "/big" => {
            // No Content-Length: the body runs until the connection closes.
            let mut response =
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
                    .to_vec();
            response.extend(std::iter::repeat_n(b'a', 64 * 1024));
            response
        }
        "/status/500" => reply(
            "500 Internal Server Error",
            "text/plain",
            b"database on fire",
        ),
        "/status/404" => reply("404 Not Found", "text/plain", b"no such thing"),
        "/status/400-echo" => {
            // A misbehaving upstream: the whole request back in the error body.
            let mut echo = format!("{} {}\n", seen.method, seen.path);
            for (name, value) in &seen.headers {
                echo.push_str(&format!("{name}: {value}\n"));
            }
            echo.push_str(&String::from_utf8_lossy(&seen.body));
            reply("400 Bad Request", "text/plain", echo.as_bytes())
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            reply("200 OK", "text/plain", b"late")
        }
        "/redirect" => {
            let location = format!("Location: http://{addr}/json\r\n");
            let mut response = reply("302 Found", "text/plain", b"");
            let at = response
                .windows(2)
                .position(|w| w == b"\r\n")
                .map_or(0, |p| p + 2);
            response.splice(at..at, location.into_bytes());
            response
        }
        _ => reply("404 Not Found", "text/plain", b"unknown path"),
    }
}

fn reply(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    response
}

fn cx() -> Context {
    Context::test(Duration::from_secs(30))
}

async fn request(connector: &Connector, input: Value) -> Result<Value, Failure> {
    let Value::Object(input) = input else {
        panic!("test input must be an object");
    };
    connector.execute(Action::Request, input, &cx()).await
}

#[tokio::test]
async fn get_json() {
    let server = Server::start().await;
    let output = request(&server.connector(), json!({"url": server.url("/json")}))
        .await
        .expect("get succeeds");
    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["content-type"], "application/json");
    assert_eq!(output["body"], json!({"hello": "world", "n": [1, 2]}));
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/json")
    );
}

#[tokio::test]
async fn text_body_is_a_string() {
    let server = Server::start().await;
    let output = request(&server.connector(), json!({"url": server.url("/text")}))
        .await
        .expect("get succeeds");
    assert_eq!(output["body"], "plain text");
}

#[tokio::test]
async fn post_json_is_echoed() {
    let server = Server::start().await;
    let input = json!({
        "url": server.url("/echo"),
        "method": "post",
        "headers": {"X-Request-Id": "abc-123"},
        "json": {"ip": "203.0.113.7", "ttl": 3600},
    });
    let output = request(&server.connector(), input)
        .await
        .expect("post succeeds");
    assert_eq!(output["status"], 200);
    assert_eq!(output["headers"]["x-method"], "POST");
    assert_eq!(output["body"], json!({"ip": "203.0.113.7", "ttl": 3600}));
    let seen = server.seen();
    assert_eq!(header(&seen[0], "x-request-id"), Some("abc-123"));
    assert_eq!(header(&seen[0], "content-type"), Some("application/json"));
}

#[tokio::test]
async fn a_dry_run_sends_only_safe_requests() {
    let server = Server::start().await;
    let dry = Context {
        dry_run: true,
        ..cx()
    };
    let connector = server.connector();
    let post = json!({"url": server.url("/echo"), "method": "POST", "json": {"a": 1}});
    let Value::Object(post) = post else {
        unreachable!("an object literal")
    };
    let planned = connector
        .execute(Action::Request, post, &dry)
        .await
        .expect("planned");
    assert_eq!(planned["sent"], false);
    assert_eq!(planned["method"], "POST");
    assert!(server.seen().is_empty(), "a dry run sent a POST");
    let Value::Object(get) = json!({"url": server.url("/json")}) else {
        unreachable!("an object literal")
    };
    let read = connector
        .execute(Action::Request, get, &dry)
        .await
        .expect("a GET is sent");
    assert_eq!(read["status"], 200);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn text_body_is_sent() {
    let server = Server::start().await;
    let input = json!({"url": server.url("/echo"), "method": "PUT", "body": "hello"});
    let output = request(&server.connector(), input)
        .await
        .expect("put succeeds");
    assert_eq!(output["body"], "hello");
    assert_eq!(server.seen()[0].body, b"hello");
}

#[tokio::test]
async fn host_outside_the_allowlist_is_refused_without_connecting() {
    let server = Server::start().await;
    let other_port: AllowedHost = "127.0.0.1:1".parse().expect("entry parses");
    let by_name: AllowedHost = "localhost".parse().expect("entry parses");
    let cases = [Vec::new(), vec![other_port], vec![by_name]];
    for allow_hosts in cases {
        let connector = Connector::new(allow_hosts).expect("connector builds");
        let failure = request(&connector, json!({"url": server.url("/json")}))
            .await
            .expect_err("refused");
        let expected = format!(
            "host {} is not allowed: it is not in the worker's --http-allow-hosts",
            server.addr
        );
        assert_eq!(failure, Failure::permanent(expected));
    }
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "the server must see no connection"
    );
}

#[tokio::test]
async fn response_over_the_cap_fails() {
    let server = Server::start().await;
    let input = json!({"url": server.url("/big"), "response_bytes_max": 1000});
    let failure = request(&server.connector(), input)
        .await
        .expect_err("too large");
    let expected = format!(
        "response body from {} is larger than response_bytes_max (1000 bytes)",
        server.addr
    );
    assert_eq!(failure, Failure::permanent(expected));
    let output = request(&server.connector(), json!({"url": server.url("/big")}))
        .await
        .expect("fits in 1 MiB");
    assert_eq!(output["body"].as_str().map(str::len), Some(64 * 1024));
}

#[tokio::test]
async fn server_error_is_retryable_and_client_error_is_not() {
    let server = Server::start().await;
    let connector = server.connector();
    let failure = request(&connector, json!({"url": server.url("/status/500")}))
        .await
        .expect_err("500");
    let expected = format!(
        "http 500 Internal Server Error from {}: database on fire",
        server.addr
    );
    assert_eq!(failure, Failure::retryable(expected));
    let failure = request(&connector, json!({"url": server.url("/status/404")}))
        .await
        .expect_err("404");
    let expected = format!("http 404 Not Found from {}: no such thing", server.addr);
    assert_eq!(failure, Failure::permanent(expected));
}

#[tokio::test]
async fn slow_response_times_out() {
    let server = Server::start().await;
    let input = json!({"url": server.url("/slow"), "timeout": "200ms"});
    let failure = request(&server.connector(), input)
        .await
        .expect_err("times out");
    let expected = format!("http request to {} timed out after 200ms", server.addr);
    assert_eq!(failure, Failure::retryable(expected));
}

#[tokio::test]
async fn the_task_timeout_caps_the_request_timeout() {
    let server = Server::start().await;
    let Value::Object(input) = json!({"url": server.url("/slow")}) else {
        unreachable!("a json object literal");
    };
    let cx = Context::test(Duration::from_millis(150));
    let failure = server
        .connector()
        .execute(Action::Request, input, &cx)
        .await
        .expect_err("times out");
    assert_eq!(
        failure,
        Failure::retryable(format!(
            "http request to {} timed out after 150ms",
            server.addr
        ))
    );
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let connector = Connector::new(vec![addr.to_string().parse().expect("entry parses")])
        .expect("connector builds");
    let failure = request(&connector, json!({"url": format!("http://{addr}/")}))
        .await
        .expect_err("refused");
    assert!(failure.retryable, "{failure:?}");
    assert!(
        failure
            .message
            .starts_with(&format!("http request to {addr} failed: ")),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("Connection refused"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = Server::start().await;
    let output = request(&server.connector(), json!({"url": server.url("/redirect")}))
        .await
        .expect("302 is an output");
    assert_eq!(output["status"], 302);
    assert_eq!(output["headers"]["location"], server.url("/json"));
    assert_eq!(
        server.seen().len(),
        1,
        "the redirect target must not be requested"
    );
}

#[tokio::test]
async fn bad_input_is_refused() {
    let connector = Connector::new(Vec::new()).expect("connector builds");
    let cases = [
        (json!({}), "invalid input: `url` is required"),
        (
            json!({"url": "not a url"}),
            "invalid input: `url`: relative URL without a base",
        ),
        (
            json!({"url": "ftp://example.com/"}),
            "invalid input: `url` must use http or https, not ftp",
        ),
        (
            json!({"url": "http://x/", "method": "GE T"}),
            "invalid input: `method` \"GE T\" is not an http method",
        ),
        (
            json!({"url": "http://x/", "json": {}, "body": "x"}),
            "invalid input: give either `json` or `body`, not both",
        ),
        (
            json!({"url": "http://x/", "headers": {"a": 1}}),
            "invalid input: `headers`: the value of \"a\" must be a string",
        ),
        (
            json!({"url": "http://x/", "timeout": "soon"}),
            "invalid input: `timeout`: invalid duration \"soon\": expected number at 0",
        ),
        (
            json!({"url": "http://x/", "response_bytes_max": 20_000_000}),
            "invalid input: `response_bytes_max` 20000000 exceeds the maximum of 10485760",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            request(&connector, input).await,
            Err(Failure::permanent(expected))
        );
    }
}
