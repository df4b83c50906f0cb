//! Operators with OIDC bearer tokens (Entra ID's shape), against a local identity provider
//! whose keys this test generates: a valid token is a principal with its groups, and each way
//! a token can be wrong is refused UNAUTHENTICATED with its own reason, the token never echoed.

use riposte_proto::v1::WhoAmIRequest;
use riposte_tests::Orchestrator;
use riposte_tests::access;
use riposte_tests::oidc::{Issuer, Key, forged, hs256};
use serde_json::{Value, json};
use tonic::Code;

const OID: &str = "5f1c2a9e-0d4b-4a57-9a1e-3c2b1a0f9e8d";

fn now_s() -> i64 {
    let now = std::time::SystemTime::now();
    now.duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// `claims` with `name` set to `value`.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

/// WhoAmI presenting `token`: the principal, or the refusal.
async fn whoami(orchestrator: &Orchestrator, token: &str) -> Result<String, tonic::Status> {
    let mut client = access::operator(orchestrator.channel(), Some(token));
    let me = client.who_am_i(WhoAmIRequest {}).await?.into_inner();
    Ok(format!("{} {:?} {:?}", me.principal, me.groups, me.roles))
}

#[tokio::test]
async fn an_oidc_token_is_a_principal_and_every_bad_one_is_refused_with_its_reason() {
    let key = Key::generate("key-1");
    let issuer = Issuer::start(&[&key]).await;
    let flags = issuer.flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let orchestrator = Orchestrator::builder()
        .args(&flags)
        .policy("groups:\n  soc-analysts:\n    roles: [responder]\n")
        .start();
    let now = now_s();
    let valid = issuer.claims(OID, &["soc-analysts"], now);
    let unpublished = Key::generate("key-2");

    // A kid the orchestrator has not seen: it fetches the provider's keys (a rotation may
    // have happened), then refuses the token; another one within 30 s fetches nothing.
    let unknown = unpublished.sign("key-2", &valid);
    let refused = whoami(&orchestrator, &unknown).await.expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused
            .message()
            .contains("a key the identity provider does not publish"),
        "{refused:?}"
    );
    assert_eq!(issuer.requests(), 1, "one fetch for the unknown kid");
    let again = whoami(&orchestrator, &unknown).await.expect_err("refused");
    assert_eq!(again.code(), Code::Unauthenticated);
    assert_eq!(issuer.requests(), 1, "no second fetch within 30 s");

    let me = whoami(&orchestrator, &key.sign("key-1", &valid))
        .await
        .expect("a valid token is accepted");
    assert_eq!(
        me,
        format!("oidc:{OID} [\"soc-analysts\"] [\"responder\"]"),
        "the principal is the token's oid, its groups the token's"
    );
    assert_eq!(
        issuer.requests(),
        1,
        "the keys fetched for the unknown kid serve"
    );

    // The CLI reads the token from a file, never from a flag.
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(file.path(), key.sign("key-1", &valid)).expect("written");
    let out =
        riposte_tests::cli::cli_with(&orchestrator.url(), None, Some(file.path()), &["whoami"])
            .await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains(&format!("oidc:{OID} (oidc)")), "{out}");

    let other = Key::generate("key-1");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            key.sign("key-1", &with(valid.clone(), "exp", json!(now - 3600))),
            "the token expired",
        ),
        (
            "not yet valid",
            key.sign("key-1", &with(valid.clone(), "nbf", json!(now + 3600))),
            "the token is not valid yet",
        ),
        (
            "another audience",
            key.sign("key-1", &with(valid.clone(), "aud", json!("api://other"))),
            "audience",
        ),
        (
            "another issuer",
            key.sign(
                "key-1",
                &with(valid.clone(), "iss", json!("https://evil.example/v2.0")),
            ),
            "issuer",
        ),
        (
            "another tenant",
            key.sign("key-1", &with(valid.clone(), "tid", json!("someone-else"))),
            "tenant",
        ),
        (
            "signed by another key under the published kid",
            other.sign("key-1", &valid),
            "signature does not verify",
        ),
        (
            "alg none",
            forged(&json!({"alg": "none", "kid": "key-1"}), &valid, ""),
            "algorithm none is not allowed",
        ),
        (
            "HS256 with the public key as the secret",
            hs256("key-1", &valid, &key.public),
            "algorithm HS256 is not allowed",
        ),
    ];
    for (what, token, reason) in &cases {
        let refused = whoami(&orchestrator, token)
            .await
            .expect_err(&format!("{what} is refused"));
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}: {refused:?}");
        assert!(refused.message().contains(reason), "{what}: {refused:?}");
        let signature = token.rsplit('.').next().unwrap_or_default();
        assert!(
            signature.is_empty() || !refused.message().contains(signature),
            "{what}: the refusal never quotes the token"
        );
    }
    assert_eq!(
        issuer.requests(),
        1,
        "no refusal above fetched the keys again"
    );
}
