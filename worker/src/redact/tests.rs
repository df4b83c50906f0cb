//! The redactor's cases, one table per net: known values in every form they take, the patterns,
//! and what must stay.

use super::*;

const SECRET: &str = "s3cr3t~Value_9+/Zq";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature";

fn redactor() -> Redactor {
    let redactor = Redactor::default();
    redactor.register(SECRET);
    redactor.register_token(TOKEN);
    redactor
}

fn check(redactor: &Redactor, cases: &[(&str, &str)]) {
    for (input, expected) in cases {
        assert_eq!(redactor.redact(input), *expected, "input: {input}");
    }
}

#[test]
fn known_values_in_every_form() {
    let cases: &[(&str, &str)] = &[
        (
            "HTTP 400: echo s3cr3t~Value_9+/Zq end",
            "HTTP 400: echo [redacted] end",
        ),
        ("form s3cr3t%7EValue_9%2B%2FZq!", "form [redacted]!"),
        ("lower s3cr3t%7eValue_9%2b%2fZq!", "lower [redacted]!"),
        ("url s3cr3t~Value_9%2B%2FZq!", "url [redacted]!"),
        (
            "twice s3cr3t~Value_9+/Zq s3cr3t~Value_9+/Zq",
            "twice [redacted] [redacted]",
        ),
        ("glued xs3cr3t~Value_9+/Zqy", "glued x[redacted]y"),
        (
            "cut by a bound: s3cr3t~Value...",
            "cut by a bound: [redacted]...",
        ),
        (
            "token eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature.",
            "token [redacted].",
        ),
        ("cut token eyJ0eXAiOiJKV1Qi", "cut token [redacted]"),
        ("short prefix s3cr3t~ stays", "short prefix s3cr3t~ stays"),
        ("nothing here", "nothing here"),
    ];
    check(&redactor(), cases);
}

#[test]
fn a_value_the_patterns_would_also_find_is_redacted_once() {
    let redactor = redactor();
    let cases: &[(&str, &str)] = &[
        (
            "authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.payload.signature",
            "authorization: Bearer [redacted]",
        ),
        (
            r#"{"authorization": ["s3cr3t~Value_9+/Zq"]}"#,
            r#"{"authorization": ["[redacted]"]}"#,
        ),
        (
            r#"{"client_secret":"s3cr3t~Value_9+/Zq"}"#,
            r#"{"client_secret":"[redacted]"}"#,
        ),
        (
            "client_secret=s3cr3t%7EValue_9%2B%2FZq&x=1",
            "client_secret=[redacted]&x=1",
        ),
    ];
    check(&redactor, cases);
}

#[test]
fn json_escaped_values() {
    let redactor = Redactor::default();
    redactor.register(r#"quo"te\back"#);
    check(
        &redactor,
        &[(r#"{"x":"quo\"te\\back"}"#, r#"{"x":"[redacted]"}"#)],
    );
}

#[test]
fn patterns_find_credentials_the_worker_never_saw() {
    let cases: &[(&str, &str)] = &[
        (
            "Authorization: Bearer abc.def-ghi",
            "Authorization: Bearer [redacted]",
        ),
        (
            "authorization:basic dXNlcjpwYXNz",
            "authorization:basic [redacted]",
        ),
        (
            "Proxy-Authorization: Basic dXNlcjpwYXNz",
            "Proxy-Authorization: Basic [redacted]",
        ),
        ("Authorization: rawtoken x", "Authorization: [redacted] x"),
        (
            r#"{"headers":{"Authorization":"Bearer abc"}}"#,
            r#"{"headers":{"Authorization":"Bearer [redacted]"}}"#,
        ),
        (
            r#"{"authorization": ["Bearer abc"]}"#,
            r#"{"authorization": ["Bearer [redacted]"]}"#,
        ),
        (
            r#"message: {\"Authorization\":\"Bearer abc\"}"#,
            r#"message: {\"Authorization\":\"Bearer [redacted]\"}"#,
        ),
        (
            "authorization=Bearer%20abc&x=1",
            "authorization=Bearer%20[redacted]&x=1",
        ),
        (
            "client_id=c&client_secret=hunter2%7E&scope=s",
            "client_id=c&client_secret=[redacted]&scope=s",
        ),
        ("client-secret: hunter2", "client-secret: [redacted]"),
        (
            "AZURE_CLIENT_SECRET=hunter2",
            "AZURE_CLIENT_SECRET=[redacted]",
        ),
        (
            r#"{"access_token":"abc","token_type":"Bearer"}"#,
            r#"{"access_token":"[redacted]","token_type":"Bearer"}"#,
        ),
        (
            r#"{"refresh_token" : "abc", "id_token": 'def'}"#,
            r#"{"refresh_token" : "[redacted]", "id_token": '[redacted]'}"#,
        ),
        (
            r#"{\"password\":\"p w\",\"user\":\"bob\"}"#,
            r#"{\"password\":\"[redacted]\",\"user\":\"bob\"}"#,
        ),
        (
            "assertion=eyJhbGc&client_assertion_type=urn:jwt-bearer",
            "assertion=[redacted]&client_assertion_type=urn:jwt-bearer",
        ),
        ("client_assertion=eyJhbGc", "client_assertion=[redacted]"),
        (r#"{"password":"","x":1}"#, r#"{"password":"","x":1}"#),
        ("q=access_token%3Dabc%26x", "q=access_token%3D[redacted]"),
        (
            "q=%22password%22%3A%22p%20w%22%2C",
            "q=%22password%22%3A%22[redacted]%22%2C",
        ),
        (
            "x-api-key: k-123; api_key=k-456",
            "x-api-key: [redacted]; api_key=[redacted]",
        ),
        ("passwd=x secret: y", "passwd=[redacted] secret: [redacted]"),
        (
            "the request had bearer eyJ0eXAiOiJKV1QiLCJhbGciOi",
            "the request had bearer [redacted]",
        ),
        (
            "GET https://bob:pa55@example.com/x",
            "GET https://[redacted]@example.com/x",
        ),
        (
            "truncated access_token\":\"eyJ0eXAiOiJKV1Qi...",
            "truncated access_token\":\"[redacted]\"",
        ),
    ];
    check(&Redactor::default(), cases);
}

#[test]
fn what_says_what_failed_stays() {
    let cases: &[&str] = &[
        "azure token request failed: invalid_client: AADSTS7000215: Invalid client secret provided. (error codes 7000215)",
        "azure read nsg failed: HTTP 400: Bad Request",
        "azure token response has no access_token",
        "http 401 Unauthorized from api.example:443: authorization failed",
        "invalid input: unknown field `password` (expected `url`, `method`)",
        "a bearer token is required",
        "https://management.azure.com/subscriptions/x?api-version=2024-05-01",
        "",
    ];
    let redactor = redactor();
    for text in cases {
        assert_eq!(redactor.redact(text), *text);
    }
}

#[test]
fn the_latest_tokens_are_kept() {
    let redactor = Redactor::default();
    for n in 0..=TOKENS_MAX {
        redactor.register_token(&format!("{n:04}-token-number"));
    }
    assert_eq!(redactor.redact("0000-token-number"), "0000-token-number");
    assert_eq!(redactor.redact("0001-token-number"), REDACTED);
    let last = format!("{TOKENS_MAX:04}-token-number");
    assert_eq!(redactor.redact(&last), REDACTED);
    redactor.register("   ");
    assert_eq!(
        redactor.redact("   "),
        "   ",
        "a blank value is not registered"
    );
}

#[test]
fn a_clone_shares_the_values() {
    let redactor = Redactor::default();
    let clone = redactor.clone();
    clone.register_token("registered-through-a-clone");
    assert_eq!(redactor.redact("registered-through-a-clone"), REDACTED);
}

#[test]
fn a_task_input_carries_its_own_credentials() {
    let input = r#"{
        "url": "https://bob:pa55w0rd@api.example/x",
        "headers": {"X-Auth-Token": "tok-123", "Authorization": "Basic dXNlcjpwYXNz", "Accept": "text/plain", "Api-Key": 7}
    }"#;
    let extra = input_secrets(input);
    assert_eq!(extra, ["dXNlcjpwYXNz", "tok-123", "pa55w0rd"]);
    let redactor = Redactor::default();
    assert_eq!(
        redactor.redact_with("echo tok-123 dXNlcjpwYXNz pa55w0rd text/plain", &extra),
        "echo [redacted] [redacted] [redacted] text/plain"
    );
    assert!(input_secrets("[1]").is_empty());
    assert!(input_secrets("not json").is_empty());
}

#[test]
fn non_ascii_text_around_a_value() {
    let redactor = Redactor::default();
    redactor.register("ключ-секрет-длинный");
    assert_eq!(redactor.redact("é ключ-секрет-длинный é"), "é [redacted] é");
    assert_eq!(redactor.redact("é ключ-сек"), "é [redacted]");
}
